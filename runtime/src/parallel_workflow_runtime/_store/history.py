"""The run history: PostgreSQL when DATABASE_URL is set, otherwise an SQLite file.

`run`, `serve` and `history` all open it here, so that runs from the command line and over
HTTP land in one history. Agno stores each run (status, step results, timings) and its session
state in the database's own tables; the runtime keeps its own beside them (store/tables.py:
cursors, ticks), brought to this version's definitions by Alembic when the history is opened.
"""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from pydantic import ValidationError

from parallel_workflow_runtime._core.config import AGGREGATION_STEP, REPORT_STEP
from parallel_workflow_runtime._core.masking import masked
from parallel_workflow_runtime._core.results import Aggregation
from parallel_workflow_runtime._core.settings import Settings, load_settings, sqlite_file
from parallel_workflow_runtime._core.usage import HistoryError, missing_extra
from parallel_workflow_runtime._store.database import (
    advisory_lock,
    bounded_lock_waits,
    create_private,
    file_lock,
    reason,
)

if TYPE_CHECKING:
    from agno.db.base import BaseDb

POSTGRES_SCHEMES = ("postgresql", "postgresql+psycopg", "postgres")
# Agno's run ids are UUIDs: 36 characters; `history show` takes their first few.
WHOLE_ID_LENGTH = 36
# The names of the tables Agno creates (agno_sessions, agno_runs, ...).
AGNO_TABLE_PREFIX = "agno_"


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
        example = "postgresql+psycopg://user:password@host:5432/dbname"
        try:
            parts = urlsplit(database_url)
            parts.port  # noqa: B018 - reading it checks it: ValueError for `:abc`, `:99999`
        except ValueError as error:
            message = f"DATABASE_URL is not a valid URL: {error}; use {example}"
            raise HistoryError(message) from None
        if parts.scheme not in POSTGRES_SCHEMES:
            location = HistoryLocation(database_url=database_url)
            raise HistoryError(
                f"DATABASE_URL must be a PostgreSQL URL such as {example}, got {location}"
            )
        if parts.scheme == "postgres":  # as Heroku and others write it; SQLAlchemy does not
            database_url = parts._replace(scheme="postgresql+psycopg").geturl()
        return HistoryLocation(database_url=database_url)
    return HistoryLocation(sqlite_file=sqlite_file(settings))


def open_history(location: HistoryLocation | None = None) -> BaseDb:
    """Agno's database for the history, checked: HistoryError says in one line why it cannot
    be used. Its tables exist once it is open, whoever else opens it at the same moment."""
    location = location or history_location()
    if location.database_url is not None:
        try:
            from parallel_workflow_runtime._store.history_postgres import PostgresHistory
        except ImportError:
            raise MissingExtra(missing_extra("DATABASE_URL (PostgreSQL)", "postgres")) from None
        from parallel_workflow_runtime._store.agno_adapter import engine_of

        db: BaseDb = PostgresHistory(db_url=location.database_url, id="history")
        bounded_lock_waits(engine_of(db))
        lock: contextlib.AbstractContextManager[object] = advisory_lock(db)
    else:
        try:
            from parallel_workflow_runtime._store.history_db import SqliteHistory
        except ImportError:
            raise MissingExtra(missing_extra("the run history (SQLite)", "serve")) from None
        assert location.sqlite_file is not None
        prepare_sqlite_file(location.sqlite_file)
        db = SqliteHistory(db_file=str(location.sqlite_file), id="history")
        lock = file_lock(location.sqlite_file.with_name(location.sqlite_file.name + ".lock"))
    # Installed with the sqlite and postgres extras, which opening the database needed.
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from parallel_workflow_runtime._store.agno_adapter import agno_table, engine_of
    from parallel_workflow_runtime._store.migrate import UnknownRevision, migrate

    try:
        # Reading the schema fails at once on a server that does not answer or a file that
        # is not a database, where Agno would only log it and carry on.
        with engine_of(db).connect() as connection:
            inspect(connection).get_table_names()
        # Agno creates a table on first use, without a lock: two processes starting on a
        # fresh database race and one loses its run ("table ... already exists"). It also
        # prints a traceback of a failure to create one (a full disk, say) before it raises:
        # HistoryError below says what went wrong, in one line. (sys.stderr is the whole
        # process's: silenced for Agno's two calls only, not what other threads print.)
        with lock:
            with contextlib.redirect_stderr(io.StringIO()):
                for table in ("sessions", "runs"):
                    agno_table(db, table, create=True)
            # Ours (the connector sources' cursors, the schedules' ticks): Alembic's revisions.
            migrate(engine_of(db))
    except ModuleNotFoundError as error:
        if error.name != "alembic":
            raise
        extra = "serve" if location.database_url is None else "postgres"
        raise MissingExtra(missing_extra(f"the run history in {location}", extra)) from None
    except UnknownRevision as error:
        raise HistoryError(f"cannot use the history in {location}: {error}") from None
    except SQLAlchemyError as error:
        raise HistoryError(f"cannot use the history in {location}: {reason(error)}") from None
    except OSError as error:  # the lock file: a full disk, a folder without write access
        raise HistoryError(f"cannot use the history in {location}: {error.strerror}") from None
    return db


def prepare_sqlite_file(sqlite_file: Path) -> None:
    """The history's SQLite file, made (private) if it is not there, and checked
    (check_sqlite_file): HistoryError says in one line why it cannot be used."""
    try:
        create_private(sqlite_file)
    except OSError as error:
        raise HistoryError(
            f"cannot use the history in {sqlite_file}: {error.strerror or error}"
        ) from None
    check_sqlite_file(sqlite_file)


def check_sqlite_file(sqlite_file: Path) -> None:
    """HistoryError if the SQLite file is another program's database (creating Agno's tables
    in it would change a file that is not ours) or is damaged (Agno would find out in the
    middle of a run, with a traceback). Read-only, before Agno opens it: opening it would
    already write to it (Agno switches it to write-ahead logging)."""
    try:
        uri = f"{sqlite_file.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master")]
            if tables and not any(table.startswith(AGNO_TABLE_PREFIX) for table in tables):
                raise HistoryError(
                    f"{sqlite_file} is not a run history: it holds other tables "
                    f"({', '.join(sorted(tables)[:3])}); choose another file"
                )
            # Every page's structure, which reading a few rows would not check: about 0.2 s
            # for a history of 180 MB.
            (problem,) = db.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.Error as error:
        raise HistoryError(f"cannot use the history in {sqlite_file}: {error}") from None
    if problem != "ok":
        raise HistoryError(
            f"cannot use the history in {sqlite_file}: the file is damaged "
            f"({' '.join(problem.split())}): move it away to start a new history"
        )


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


def create_trace_tables(db: BaseDb) -> None:
    """Agno's tables of traces and spans, made under the history's lock as open_history makes
    the others: its exporter would make them on first use, and of 16 traced runs starting on
    a fresh database, those that lost the race would lose their spans."""
    from parallel_workflow_runtime._store.agno_adapter import agno_table, sqlite_file_of

    db_file = sqlite_file_of(db)
    lock: contextlib.AbstractContextManager[object] = (
        file_lock(Path(db_file).with_name(Path(db_file).name + ".lock"))
        if db_file
        else advisory_lock(db)
    )
    with lock, contextlib.redirect_stderr(io.StringIO()):
        for table in ("traces", "spans"):
            agno_table(db, table, create=True)


def stored_run(db: BaseDb, run_id: str) -> RunRecord:
    """The run whose id is `run_id`, or starts with it (`history` shows the first 8
    characters); HistoryError names an unknown or ambiguous id."""
    if not run_id:
        raise HistoryError(f"no run {run_id!r} in the history")
    with _reading():
        # A whole id (as the server's page route gets it) is a primary-key lookup.
        row = db.get_run(run_id, deserialize=False)
        if row is None and len(run_id) < WHOLE_ID_LENGTH:
            matching = _ids_starting_with(db, run_id)
            if len(matching) > 1:
                raise HistoryError(f"{run_id!r} is the start of several run ids: give more of it")
            row = db.get_run(matching[0], deserialize=False) if matching else None
    if not isinstance(row, dict):
        raise HistoryError(f"no run {run_id!r} in the history")
    return _record(row)


def _ids_starting_with(db: BaseDb, prefix: str) -> list[str]:
    """At most two ids of stored runs that start with `prefix`: only the ids are read, so
    a lookup holds two short strings in memory whatever the size of the history."""
    from sqlalchemy import select

    from parallel_workflow_runtime._store.agno_adapter import agno_table, engine_of

    table = agno_table(db, "runs")
    if table is None:
        return []
    query = select(table.c.run_id).where(table.c.run_id.startswith(prefix, autoescape=True))
    with engine_of(db).connect() as connection:
        return [str(run_id) for run_id in connection.execute(query.limit(2)).scalars()]


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
        report=_report(run),
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
        try:
            cutoff = datetime.now(UTC) - older_than
        except OverflowError:  # before the year 1: no run is that old
            cutoff = datetime.min.replace(tzinfo=UTC)
        doomed = [record for record in records if record.started < cutoff]
        kept = [record for record in records if record.started >= cutoff]
    if doomed:
        db.delete_runs([record.run_id for record in doomed])
        # A session may hold several runs (a client can pass its own session_id): keep it
        # while one of them stays.
        keep_sessions = {record.session_id for record in kept}
        db.delete_sessions(sorted({record.session_id for record in doomed} - keep_sessions))
        _give_space_back(db)
    return len(doomed)


def _give_space_back(db: BaseDb) -> None:
    """SQLite keeps a deleted run's pages in its file for later runs: VACUUM rewrites the file
    without them, so that pruning shrinks it. (PostgreSQL's autovacuum makes the space
    reusable but does not shrink the tables; its VACUUM FULL would lock them meanwhile, so that
    is left to the database's administrator.)"""
    from sqlalchemy import text

    from parallel_workflow_runtime._store.agno_adapter import engine_of

    engine = engine_of(db)
    if engine.dialect.name == "sqlite":
        # Not inside a transaction, where SQLite refuses to VACUUM.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM"))
            # The rewritten pages go through the write-ahead log first: empty it into the file.
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


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


def _report(run: dict[str, Any]) -> str | None:
    step_results = run.get("step_results") or []
    for step in step_results:
        if step.get("step_name") == REPORT_STEP and step.get("success", True):
            content = step.get("content")
            if content is None and step is step_results[-1]:
                # The last step's content is stored once, as the run's (see history_db.py).
                content = run.get("content")
            return content if isinstance(content, str) else None
    return None
