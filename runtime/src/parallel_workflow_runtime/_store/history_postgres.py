"""The history in PostgreSQL (DATABASE_URL): Agno's adapter, writing each fact of a run once
(history_db.py). A module of its own so that only a run that uses PostgreSQL imports it."""

from agno.db.postgres import PostgresDb

from parallel_workflow_runtime._store.history_db import StoresEachFactOnce


class PostgresHistory(StoresEachFactOnce, PostgresDb):
    """The history in PostgreSQL."""
