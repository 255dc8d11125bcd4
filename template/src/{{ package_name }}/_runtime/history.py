"""The run history: PostgreSQL when DATABASE_URL is set, otherwise an SQLite file.

`run`, `serve` and `history` all open it here, so that runs from the command line and over
HTTP land in one history. Agno stores each run (status, step results, timings) and its session
state in the database's own tables, which it creates on first use.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import yaml

if TYPE_CHECKING:
    from agno.db.base import BaseDb

SETTINGS_PATH = Path(__file__).with_name("settings.yaml")
DATABASE_URL_ENV = "DATABASE_URL"
HISTORY_DB_ENV = "{{ package_name | upper }}_HISTORY_DB"
POSTGRES_SCHEMES = ("postgresql", "postgresql+psycopg", "postgres")


class HistoryError(RuntimeError):
    """The history cannot be used: printed as one line, exit code 2."""


@dataclass(frozen=True)
class HistoryLocation:
    """Where the history is: a PostgreSQL URL, or else an SQLite file."""

    database_url: str | None = None
    sqlite_file: Path | None = None

    def __str__(self) -> str:
        # Shown in messages and logs, so never with the database password.
        if self.database_url is None:
            return str(self.sqlite_file)
        url = urlsplit(self.database_url)
        if url.password is None:
            return self.database_url
        host = url.netloc.rpartition("@")[2]
        return url._replace(netloc=f"{url.username}:***@{host}").geturl()


@dataclass(frozen=True)
class RunRecord:
    """One run, as the history recorded it."""

    run_id: str
    session_id: str
    workflow_id: str
    started: datetime
    status: str
    duration_seconds: float | None
    aggregation: dict[str, Any] | None  # None when the run stopped before its Aggregation step


def history_location() -> HistoryLocation:
    database_url = os.environ.get(DATABASE_URL_ENV, "").strip()
    if database_url:
        location = HistoryLocation(database_url=database_url)
        if urlsplit(database_url).scheme not in POSTGRES_SCHEMES:
            raise HistoryError(
                f"{DATABASE_URL_ENV} must be a PostgreSQL URL such as "
                f"postgresql+psycopg://user:password@host:5432/dbname, got {location}"
            )
        return location
    sqlite_file = os.environ.get(HISTORY_DB_ENV, "").strip() or _settings()["sqlite_file"]
    return HistoryLocation(sqlite_file=Path(sqlite_file))


def open_history(location: HistoryLocation | None = None) -> BaseDb:
    """Agno's database for the history; the SQLite file and its folder appear on first use."""
    location = location or history_location()
    if location.database_url is not None:
        try:
            from agno.db.postgres import PostgresDb
        except ImportError:
            raise HistoryError(
                f'{DATABASE_URL_ENV} needs PostgreSQL support: pip install -e ".[postgres]"'
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


def recent_runs(
    db: BaseDb, aggregation_steps: dict[str, str], workflow_id: str | None, limit: int
) -> list[RunRecord]:
    """The newest runs first; `aggregation_steps` maps workflow ids to their Aggregation step."""
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
        step_name = aggregation_steps.get(row["workflow_id"], "Aggregation")
        records.append(
            RunRecord(
                run_id=row["run_id"],
                session_id=row["session_id"],
                workflow_id=row["workflow_id"],
                started=datetime.fromtimestamp(row["created_at"], UTC),
                status=str(row["status"]),
                duration_seconds=(run.get("metrics") or {}).get("duration"),
                aggregation=_aggregation(run.get("step_results") or [], step_name),
            )
        )
    return records


def _aggregation(step_results: list[dict[str, Any]], step_name: str) -> dict[str, Any] | None:
    # The Aggregation step's content is the aggregation as JSON text (see workflow.py).
    for step in step_results:
        if step.get("step_name") == step_name and isinstance(step.get("content"), str):
            try:
                aggregation: dict[str, Any] = json.loads(step["content"])
            except json.JSONDecodeError:
                return None
            return aggregation
    return None


def _settings() -> dict[str, Any]:
    data = yaml.safe_load(SETTINGS_PATH.read_text(encoding="utf-8"))
    history = data.get("history") if isinstance(data, dict) else None
    if not isinstance(history, dict) or not str(history.get("sqlite_file") or "").strip():
        raise HistoryError(f"{SETTINGS_PATH}: history.sqlite_file must be a file path")
    return history
