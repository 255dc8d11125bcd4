"""The one module that reaches past Agno's public database interface (`agno.db.base.BaseDb`);
every other module of the runtime goes through it. Agno is bounded to the versions the suite
passed on (runtime/pyproject.toml): a new one may change any of these, and this module is where
to look when it does.

What it uses, and why:

- `db.db_engine`: the SQLAlchemy engine of Agno's SQLite and PostgreSQL adapters (a
  constructor argument and attribute of `SqliteDb` and `PostgresDb`, not part of `BaseDb`).
  Our own tables (cursors, ticks), their migrations, the locks taken while tables are created,
  the schema check and SQLite's VACUUM run on it, so that they share Agno's connection pool and
  database.
- `db._get_table(table_type=..., create_table_if_not_found=...)` (private): Agno's own tables.
  With `create_table_if_not_found=True`, to create them under the history's lock: Agno creates
  a table on first use without one, and of 16 processes starting on a fresh database, some
  lost their run ("table agno_runs already exists"). Without it, the runs table itself, for the
  one query Agno's interface lacks: run ids that start with a prefix (`history show 1a2b3c4d`).
- `db.db_file`: the SQLite file, whose lock file sits beside it (None on PostgreSQL).

Agno's bulk `upsert_sessions` writes without calling the `upsert_session` that history_db.py
overrides: history_db.py overrides it too. Agno's async paths (`await db.upsert_session`) are
taken only for its `AsyncBaseDb` adapters, which the history never is: a workflow's `arun`
on the history calls the sync methods that history_db.py overrides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from agno.db.base import BaseDb
    from sqlalchemy import Engine, Table


class NotAnSqlDatabase(TypeError):
    """An Agno database without an SQLAlchemy engine (JsonDb, InMemoryDb, ...): the history
    is SQLite or PostgreSQL."""


def engine_of(db: BaseDb) -> Engine:
    """The SQLAlchemy engine of Agno's SQLite or PostgreSQL adapter (`db.db_engine`)."""
    engine = getattr(db, "db_engine", None)
    if engine is None:
        raise NotAnSqlDatabase(
            f"the history must be Agno's SqliteDb or PostgresDb, not {type(db).__name__}:"
            " it has no db_engine"
        )
    return cast("Engine", engine)


def agno_table(db: BaseDb, table_type: str, create: bool = False) -> Table | None:
    """Agno's table of `table_type` ("sessions", "runs", "traces", "spans"), created if
    `create` and missing (`db._get_table`); None if it does not exist."""
    get_table = getattr(db, "_get_table", None)
    if get_table is None:
        raise NotAnSqlDatabase(
            f"the history must be Agno's SqliteDb or PostgresDb, not {type(db).__name__}:"
            " it has no _get_table"
        )
    return cast("Table | None", get_table(table_type=table_type, create_table_if_not_found=create))


def sqlite_file_of(db: BaseDb) -> str | None:
    """The SQLite file of Agno's SqliteDb (`db.db_file`); None for PostgreSQL."""
    db_file = getattr(db, "db_file", None)
    return db_file if isinstance(db_file, str) and db_file else None
