"""The run history: PostgreSQL when DATABASE_URL is set, otherwise an SQLite file.

`run`, `serve` and `history` all open it here, so that runs from the command line and over
HTTP land in one history. Agno stores each run (status, step results, timings) and its session
state in the database's own tables, which it creates on first use.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from pydantic import ValidationError

from .config import AGGREGATION_STEP, REPORT_STEP
from .database import advisory_lock, create_private, file_lock, masked, reason
from .results import Aggregation
from .settings import Settings, load_settings, sqlite_file

if TYPE_CHECKING:
    from agno.db.base import BaseDb

POSTGRES_SCHEMES = ("postgresql", "postgresql+psycopg", "postgres")


class HistoryError(RuntimeError):
    """The history cannot be used: printed as one line, exit code 2."""


class MissingExtra(HistoryError):
    """The package that the history's database needs is not installed."""


@dataclass(frozen=True)
class HistoryLocation:
    """Where the history is: a PostgreSQL URL, or else an SQLite file."""

    database_url: str | None = None
    sqlite_file: Path | None = None

    def __str__(self) -> str:
        # Shown in messages and logs, so never with the database password.
        return str(self.sqlite_file) if self.database_url is None else masked(self.database_url)


@dataclass(frozen=True)
class RunRecord:
    """One run, as the history recorded it."""

    run_id: str
    session_id: str
    workflow_id: str
    started: datetime
    status: str
    duration_seconds: float | None
    aggregation: Aggregation | None  # None when the run stopped before its Aggregation step
    report: str | None = None  # the Report step's Markdown, when it succeeded


def history_location(settings: Settings | None = None) -> HistoryLocation:
    settings = settings or load_settings()
    database_url = settings.database_url.strip()
    if database_url:
        location = HistoryLocation(database_url=database_url)
        if urlsplit(database_url).scheme not in POSTGRES_SCHEMES:
            raise HistoryError(
                "DATABASE_URL must be a PostgreSQL URL such as "
                f"postgresql+psycopg://user:password@host:5432/dbname, got {location}"
            )
        return location
    return HistoryLocation(sqlite_file=sqlite_file(settings))


def open_history(location: HistoryLocation | None = None) -> BaseDb:
    """Agno's database for the history, checked: HistoryError says in one line why it cannot
    be used. Its tables exist once it is open, whoever else opens it at the same moment."""
    location = location or history_location()
    if location.database_url is not None:
        try:
            from agno.db.postgres import PostgresDb
        except ImportError:
            raise MissingExtra(
                'DATABASE_URL needs PostgreSQL support: pip install -e ".[postgres]"'
            ) from None
        db: BaseDb = PostgresDb(db_url=location.database_url, id="history")
        lock: contextlib.AbstractContextManager[object] = advisory_lock(db)
    else:
        try:
            from agno.db.sqlite import SqliteDb
        except ImportError:
            raise MissingExtra(
                'the run history needs SQLite support: pip install -e ".[serve]"'
            ) from None
        assert location.sqlite_file is not None
        create_private(location.sqlite_file)
        db = SqliteDb(db_file=str(location.sqlite_file), id="history")
        lock = file_lock(location.sqlite_file.with_name(location.sqlite_file.name + ".lock"))
    # Installed with Agno's sqlite and postgres extras, which opening the database needed.
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    try:
        # Reading the schema fails at once on a server that does not answer or a file that
        # is not a database, where Agno would only log it and carry on.
        with db.db_engine.connect() as connection:  # type: ignore[attr-defined]
            inspect(connection).get_table_names()
        with lock:
            # Agno creates a table on first use, without a lock: two processes starting on a
            # fresh database race and one loses its run ("table ... already exists").
            for table in ("sessions", "runs"):
                db._get_table(table_type=table, create_table_if_not_found=True)  # type: ignore[attr-defined]
    except SQLAlchemyError as error:
        raise HistoryError(f"cannot use the history in {location}: {reason(error)}") from None
    return db


def existing_history(location: HistoryLocation) -> BaseDb | None:
    """The history to read, or None when its SQLite file does not exist yet: nothing has run,
    and opening it would create it."""
    if location.sqlite_file is not None and not location.sqlite_file.exists():
        return None
    return open_history(location)


def history_for_run() -> BaseDb | None:
    """The history that `run` records into, or None when SQLite support is not installed
    (the library-only install) and no DATABASE_URL asks for PostgreSQL."""
    location = history_location()
    try:
        return open_history(location)
    except MissingExtra:
        if location.database_url is not None:
            raise
        return None


def recent_runs(db: BaseDb, workflow_id: str | None, limit: int | None) -> list[RunRecord]:
    """The newest runs first, of one workflow or of all."""
    records = [_record(row) for row in _rows(db, workflow_id, limit)]
    # Agno orders by the second a run started; the aggregation orders runs within it.
    return sorted(records, key=lambda record: (record.started, _started(record)), reverse=True)


def stored_run(db: BaseDb, run_id: str) -> RunRecord:
    """The run whose id is `run_id`, or starts with it (`history` shows the first 8
    characters); HistoryError names an unknown or ambiguous id."""
    if not run_id:
        raise HistoryError(f"no run {run_id!r} in the history")
    # A whole id (as the server's page route gets it) is one row; only a prefix needs them all.
    with _reading():
        row = db.get_run(run_id, deserialize=False)
    if isinstance(row, dict):
        return _record(row)
    found = [record for record in recent_runs(db, None, None) if record.run_id.startswith(run_id)]
    if not found:
        raise HistoryError(f"no run {run_id!r} in the history")
    if len(found) > 1:
        raise HistoryError(f"{run_id!r} is the start of {len(found)} run ids: give more of it")
    return found[0]


def _record(row: dict[str, Any]) -> RunRecord:
    """A run as Agno stores it (a row of its runs table), as this project reads it."""
    run = row.get("run_data") or {}
    step_results = run.get("step_results") or []
    return RunRecord(
        run_id=row["run_id"],
        session_id=row["session_id"],
        workflow_id=row["workflow_id"],
        started=datetime.fromtimestamp(row["created_at"], UTC),
        status=str(row["status"]),
        duration_seconds=(run.get("metrics") or {}).get("duration"),
        aggregation=_aggregation(step_results),
        report=_report(step_results),
    )


def _started(record: RunRecord) -> float:
    return record.aggregation.started_at if record.aggregation is not None else 0.0


def prune(
    db: BaseDb, workflow_id: str | None, keep: int | None, older_than: timedelta | None
) -> int:
    """Delete the runs (and their sessions) past the newest `keep`, or older than
    `older_than`; the number of runs deleted."""
    records = recent_runs(db, workflow_id, None)  # newest first, to the microsecond
    if keep is not None:
        doomed, kept = records[keep:], records[:keep]
    else:
        assert older_than is not None
        cutoff = datetime.now(UTC) - older_than
        doomed = [record for record in records if record.started < cutoff]
        kept = [record for record in records if record.started >= cutoff]
    if doomed:
        db.delete_runs([record.run_id for record in doomed])
        # A session may hold several runs (a client can pass its own session_id): keep it
        # while one of them stays.
        keep_sessions = {record.session_id for record in kept}
        db.delete_sessions(sorted({record.session_id for record in doomed} - keep_sessions))
    return len(doomed)


@contextlib.contextmanager
def _reading() -> Iterator[None]:
    """Reads of the history: a database error becomes a one-line HistoryError."""
    from sqlalchemy.exc import SQLAlchemyError  # there is a database: its extra is installed

    try:
        yield
    except SQLAlchemyError as error:
        raise HistoryError(f"cannot read the history: {reason(error)}") from None


def _rows(db: BaseDb, workflow_id: str | None, limit: int | None) -> list[dict[str, Any]]:
    """The stored runs, newest first, as Agno's rows; HistoryError if it cannot read them."""
    with _reading():
        rows, _ = cast(
            tuple[list[dict[str, Any]], int],
            db.get_runs(
                workflow_id=workflow_id,
                sort_by="created_at",
                sort_order="desc",
                limit=limit,
                deserialize=False,
            ),
        )
    return rows


def _aggregation(step_results: list[dict[str, Any]]) -> Aggregation | None:
    # The Aggregation step's content is the aggregation as JSON text (see steps.py).
    for step in step_results:
        if step.get("step_name") == AGGREGATION_STEP and isinstance(step.get("content"), str):
            try:
                return Aggregation.model_validate(json.loads(step["content"]))
            except (json.JSONDecodeError, ValidationError):
                return None  # a run stored by an older version of this project
    return None


def _report(step_results: list[dict[str, Any]]) -> str | None:
    for step in step_results:
        if step.get("step_name") == REPORT_STEP and step.get("success", True):
            content = step.get("content")
            return content if isinstance(content, str) else None
    return None
