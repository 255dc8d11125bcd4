"""The run history: PostgreSQL when DATABASE_URL is set, otherwise an SQLite file.

`run`, `serve` and `history` all open it here, so that runs from the command line and over
HTTP land in one history. Agno stores each run (status, step results, timings) and its session
state in the database's own tables, which it creates on first use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import ValidationError

from .config import AGGREGATION_STEP
from .results import Aggregation
from .settings import Settings, load_settings

if TYPE_CHECKING:
    from agno.db.base import BaseDb

POSTGRES_SCHEMES = ("postgresql", "postgresql+psycopg", "postgres")
SECRET_QUERY_KEYS = ("password", "pass", "pwd", "passfile", "sslpassword")


class HistoryError(RuntimeError):
    """The history cannot be used: printed as one line, exit code 2."""


def masked(url: str) -> str:
    """A database URL fit to show: every password it carries, in the user info or the query,
    replaced by `***`."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:***@{netloc.rpartition('@')[2]}"
    query = urlencode(
        [
            (key, "***" if key.lower() in SECRET_QUERY_KEYS else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    return parts._replace(netloc=netloc, query=query).geturl()


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
    sqlite_file = settings.history_db.strip() or settings.history.sqlite_file
    return HistoryLocation(sqlite_file=Path(sqlite_file))


def open_history(location: HistoryLocation | None = None) -> BaseDb:
    """Agno's database for the history; the SQLite file and its folder appear on first use."""
    location = location or history_location()
    if location.database_url is not None:
        try:
            from agno.db.postgres import PostgresDb
        except ImportError:
            raise HistoryError(
                'DATABASE_URL needs PostgreSQL support: pip install -e ".[postgres]"'
            ) from None
        return PostgresDb(db_url=location.database_url, id="history")
    try:
        from agno.db.sqlite import SqliteDb
    except ImportError:
        raise HistoryError(
            'the run history needs SQLite support: pip install -e ".[serve]"'
        ) from None
    return SqliteDb(db_file=str(location.sqlite_file), id="history")


def history_for_run() -> BaseDb | None:
    """The history that `run` records into, or None when SQLite support is not installed
    (the library-only install) and no DATABASE_URL asks for PostgreSQL."""
    location = history_location()
    try:
        return open_history(location)
    except HistoryError:
        if location.database_url is not None:
            raise
        return None


def recent_runs(db: BaseDb, workflow_id: str | None, limit: int) -> list[RunRecord]:
    """The newest runs first, of one workflow or of all."""
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
    records = []
    for row in rows:
        run = row.get("run_data") or {}
        records.append(
            RunRecord(
                run_id=row["run_id"],
                session_id=row["session_id"],
                workflow_id=row["workflow_id"],
                started=datetime.fromtimestamp(row["created_at"], UTC),
                status=str(row["status"]),
                duration_seconds=(run.get("metrics") or {}).get("duration"),
                aggregation=_aggregation(run.get("step_results") or []),
            )
        )
    return records


def _aggregation(step_results: list[dict[str, Any]]) -> Aggregation | None:
    # The Aggregation step's content is the aggregation as JSON text (see steps.py).
    for step in step_results:
        if step.get("step_name") == AGGREGATION_STEP and isinstance(step.get("content"), str):
            try:
                return Aggregation.model_validate(json.loads(step["content"]))
            except (json.JSONDecodeError, ValidationError):
                return None  # a run stored by an older version of this project
    return None
