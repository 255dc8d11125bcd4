"""The runtime's tables brought to this version's definitions (tables.py) by Alembic, when a
history is opened (history.open_history, under the lock it holds while tables are created:
the SQLite file's lock file, PostgreSQL's advisory lock). Processes that open a fresh history
at the same moment migrate it once; the others find it at the head.

Alembic records the revision in a table of its own, named for this package
(VERSION_TABLE), so that a user's Alembic or Agno's never reads or moves it. A history written
before migrations (runtime 0.9.0) has our tables and no version table: revision 0001 creates
only what is missing, and records it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection, Engine

log = logging.getLogger("parallel_workflow_runtime")

VERSION_TABLE = "parallel_workflow_alembic_version"
MIGRATIONS = Path(__file__).with_name("migrations")
# The newest revision in migrations/versions/, which tests/test_store.py checks against
# Alembic's own reading of them. Known here, so that opening a history that is at the head
# reads one row and imports no Alembic (a third of a second at every `run`).
HEAD = "0001"


class UnknownRevision(Exception):
    """The history's tables are at a revision this version does not ship: a newer version of
    the runtime migrated them."""


def migrate(engine: Engine) -> bool:
    """Bring the runtime's tables in `engine`'s database to the head revision; whether it had
    to (False: they were at the head already, and nothing was written). The caller holds the
    lock that keeps two processes from migrating at once."""
    with engine.begin() as connection:
        current = current_revision(connection)
        if current == HEAD:
            return False
        from alembic import command
        from alembic.script import ScriptDirectory

        known = {script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}
        if current is not None and current not in known:
            raise UnknownRevision(
                f"its tables are at revision {current} (table {VERSION_TABLE}), which this"
                f" version of parallel-workflow-runtime does not know (its newest is {HEAD}):"
                " a newer version migrated them; run that one"
            )
        command.upgrade(alembic_config(connection), "head")
    log.info("the history's tables migrated from revision %s to %s", current, HEAD)
    return True


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None: never migrated), as Alembic's version table
    holds it: one row, as the revisions here follow one another without branches."""
    from sqlalchemy import inspect, text

    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    revision: str | None = connection.execute(
        text(f"SELECT version_num FROM {VERSION_TABLE}")
    ).scalar()
    return revision


def alembic_config(connection: Connection) -> Config:
    """Alembic's configuration without an alembic.ini: the migrations shipped in this package,
    run on `connection` (migrations/env.py takes it from the attributes)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config
