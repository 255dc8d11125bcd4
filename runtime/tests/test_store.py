"""The runtime's own tables (store/): Alembic's migrations make, from an empty database, the
tables that runtime 0.9.0 made, keep a 0.9.0 history's cursors and ticks as they were, run
once when 16 processes open a fresh history at the same moment, and cost nothing (no Alembic
imported) when the history is at the head. SQLite, and PostgreSQL when TEST_DATABASE_URL is
set. The 0.9.0 histories in data/ were written by 0.9.0's own code (data/history_0_9_0.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from agno.db.in_memory import InMemoryDb
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from parallel_workflow_runtime._store import agno_adapter, tables
from parallel_workflow_runtime._store.cursors import CursorStore
from parallel_workflow_runtime._store.history import HistoryError, HistoryLocation, open_history
from parallel_workflow_runtime._store.migrate import (
    HEAD,
    MIGRATIONS,
    VERSION_TABLE,
    current_revision,
    migrate,
)
from parallel_workflow_runtime._store.ticks import TickStore

from .conftest import forked_at_once
from .data.history_0_9_0 import EXPECTED_CURSORS, EXPECTED_TICKS, HELD_BY, SCHEDULE, WORKFLOW
from .test_history import fresh_postgres  # noqa: F401  (a fixture, used by name)

DATA = Path(__file__).with_name("data")
SQLITE_0_9_0 = DATA / "history-0.9.0.sqlite"
POSTGRESQL_0_9_0 = DATA / "history-0.9.0.postgresql.sql"
OURS = (tables.CURSORS, tables.TICKS)
SOURCE = Path(agno_adapter.__file__).parents[1]


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes databases with nothing in them, their URLs: new SQLite files, or new PostgreSQL
    databases (dropped afterwards)."""
    if request.param == "sqlite":
        yield lambda: f"sqlite:///{tmp_path / f'{uuid.uuid4().hex[:12]}.sqlite'}"
        return
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if not url:
        pytest.skip("no PostgreSQL server: set TEST_DATABASE_URL to run this against one")
    server = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def database() -> str:
        made.append(f"store_{uuid.uuid4().hex[:12]}")
        with server.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{made[-1]}"')
        return sqlalchemy.make_url(url).set(database=made[-1]).render_as_string(False)

    yield database
    with server.connect() as connection:
        for name in made:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    server.dispose()


@pytest.fixture
def empty_database(new_database: Callable[[], str]) -> str:
    return new_database()


def history_0_9_0(url: str) -> None:
    """Put the 0.9.0 history into the empty database at `url`."""
    if url.startswith("sqlite"):
        shutil.copyfile(SQLITE_0_9_0, sqlalchemy.make_url(url).database or "")
        return
    # pg_dump's SQL, run as it is, but for psql's own commands (\restrict), which are not SQL.
    script = "\n".join(
        line
        for line in POSTGRESQL_0_9_0.read_text(encoding="utf-8").splitlines()
        if not line.startswith("\\")
    )
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(script)
    engine.dispose()


def location(url: str) -> HistoryLocation:
    if url.startswith("sqlite"):
        return HistoryLocation(sqlite_file=Path(sqlalchemy.make_url(url).database or ""))
    return HistoryLocation(database_url=url)


def schema(engine: sqlalchemy.Engine) -> dict[str, Any]:
    """Our tables as the database describes them: columns (name, type, nullable, default),
    primary key, indexes, unique and foreign keys."""
    inspector = sqlalchemy.inspect(engine)
    return {
        table: {
            "columns": [
                (column["name"], str(column["type"]), column["nullable"], column["default"])
                for column in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
            "indexes": inspector.get_indexes(table),
            "unique": inspector.get_unique_constraints(table),
            "foreign_keys": inspector.get_foreign_keys(table),
        }
        for table in OURS
    }


def rows(engine: sqlalchemy.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of our tables, in the order of their keys."""
    with engine.connect() as connection:
        return {
            table.name: [
                tuple(row)
                for row in connection.execute(
                    sqlalchemy.select(table).order_by(*table.primary_key.columns)
                )
            ]
            for table in tables.metadata.sorted_tables
        }


def test_head_is_the_newest_revision_and_tables_py_is_what_the_revisions_make(
    tmp_path: Path,
) -> None:
    assert ScriptDirectory(str(MIGRATIONS)).get_current_head() == HEAD
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'history.sqlite'}")
    assert migrate(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        # What autogenerate would write into a new revision: nothing, for our tables.
        differences = [
            difference
            for difference in compare_metadata(context, tables.metadata)
            if VERSION_TABLE not in str(difference)
        ]
    engine.dispose()
    assert differences == []


def test_an_empty_database_gets_the_tables_that_0_9_0_made(
    new_database: Callable[[], str],
) -> None:
    engine = sqlalchemy.create_engine(new_database())
    assert migrate(engine)
    made = schema(engine)
    with engine.connect() as connection:
        assert current_revision(connection) == HEAD
    assert set(sqlalchemy.inspect(engine).get_table_names()) == {*OURS, VERSION_TABLE}
    engine.dispose()

    # The same tables as a history that 0.9.0 wrote (its Table.create(checkfirst=True)).
    old_url = new_database()
    history_0_9_0(old_url)
    old = sqlalchemy.create_engine(old_url)
    assert schema(old) == made
    old.dispose()


def test_a_0_9_0_history_keeps_its_cursors_and_ticks_and_is_recorded_at_the_head(
    empty_database: str,
) -> None:
    history_0_9_0(empty_database)
    engine = sqlalchemy.create_engine(empty_database)
    before_schema, before_rows = schema(engine), rows(engine)
    assert before_rows[tables.CURSORS] and before_rows[tables.TICKS]
    with engine.connect() as connection:
        assert current_revision(connection) is None  # 0.9.0 had no migrations

    db = open_history(location(empty_database))

    assert schema(engine) == before_schema
    assert rows(engine) == before_rows
    with engine.connect() as connection:
        assert current_revision(connection) == HEAD
    # Read by this version's code as 0.9.0 wrote them.
    cursors = CursorStore.of(db)
    kept = {cursor.source_id: cursor.state for cursor in cursors.all(WORKFLOW)}
    assert kept == {key: value for key, value in EXPECTED_CURSORS.items() if value is not None}
    # The claim 0.9.0 left on `users` ran out long ago: another run takes it.
    assert cursors.claim(WORKFLOW, "users", "a-new-run") is None
    assert cursors.holder(WORKFLOW, ["users"], HELD_BY) is not None
    ticks = list(reversed(TickStore.of(db).rows(schedule=SCHEDULE)))
    assert [(t.at, t.state, t.reason, t.run_id, t.manual) for t in ticks] == EXPECTED_TICKS
    # Opened again: nothing to do.
    assert not migrate(engine)
    engine.dispose()


@pytest.mark.integration
def test_sixteen_processes_opening_a_fresh_history_migrate_it_once(empty_database: str) -> None:
    found = forked_at_once(16, open_when_all_are_ready, empty_database)

    assert len(found) == 16, found
    assert [outcome for outcome in found if outcome.startswith("failed")] == []
    assert sorted(found) == ["at the head"] * 15 + ["migrated"]
    engine = sqlalchemy.create_engine(empty_database)
    with engine.connect() as connection:
        assert current_revision(connection) == HEAD
        versions = connection.exec_driver_sql(f"SELECT count(*) FROM {VERSION_TABLE}")
        assert versions.scalar_one() == 1
    engine.dispose()


def open_when_all_are_ready(barrier: Any, outcomes: Any, url: str) -> None:
    """One process: open the history when the 15 others do; whether it migrated it."""
    said: list[str] = []

    class Said(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    logger = logging.getLogger("parallel_workflow_runtime")
    logger.addHandler(Said())
    logger.setLevel(logging.INFO)
    barrier.wait()
    try:
        open_history(location(url))
    except Exception as error:
        outcomes.append(f"failed: {error}")
        return
    outcomes.append("migrated" if any("migrated" in line for line in said) else "at the head")


@pytest.mark.integration
def test_a_history_at_the_head_is_opened_without_importing_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    engine = sqlalchemy.create_engine(url)
    migrate(engine)
    engine.dispose()
    program = (
        "import sys, time, sqlalchemy\n"
        "from parallel_workflow_runtime._store.migrate import migrate\n"
        "engine = sqlalchemy.create_engine(sys.argv[1])\n"
        "engine.connect().close()\n"
        "began = time.perf_counter()\n"
        "print(migrate(engine), 'alembic' in sys.modules, time.perf_counter() - began)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, url], capture_output=True, text=True, check=True
    )
    migrated, imported, seconds = result.stdout.split()
    assert (migrated, imported) == ("False", "False"), result.stdout
    assert float(seconds) < 0.5  # a read of one row (about a millisecond, unloaded)


@pytest.mark.parametrize("revision", ["9999"])
def test_a_history_a_newer_version_migrated_is_one_line_naming_its_revision(
    empty_database: str, revision: str
) -> None:
    open_history(location(empty_database))
    engine = sqlalchemy.create_engine(empty_database)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version_num = '{revision}'")
    engine.dispose()

    with pytest.raises(HistoryError) as raised:
        open_history(location(empty_database))
    message = str(raised.value)
    assert "\n" not in message
    assert f"revision {revision}" in message and f"its newest is {HEAD}" in message


def test_an_agno_database_without_sql_is_refused_in_one_line() -> None:
    with pytest.raises(agno_adapter.NotAnSqlDatabase, match="not InMemoryDb: it has no db_engine"):
        agno_adapter.engine_of(InMemoryDb())
    with pytest.raises(agno_adapter.NotAnSqlDatabase, match="not InMemoryDb: it has no _get_table"):
        agno_adapter.agno_table(InMemoryDb(), "runs")


@pytest.mark.parametrize("private", ["db_engine", "_get_table", "db_file"])
def test_only_the_adapter_reaches_into_agnos_databases(private: str) -> None:
    """Agno's private database API is used in store/agno_adapter.py and nowhere else."""
    users = sorted(
        str(path.relative_to(SOURCE))
        for path in SOURCE.rglob("*.py")
        if f".{private}" in path.read_text(encoding="utf-8")
        or f'"{private}"' in path.read_text(encoding="utf-8")
    )
    assert users == ["_store/agno_adapter.py"]


def test_a_history_without_alembic_installed_is_one_line_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "alembic", None)  # as if it were not installed
    with pytest.raises(HistoryError) as raised:
        open_history(HistoryLocation(sqlite_file=tmp_path / "history.sqlite"))
    assert "\n" not in str(raised.value)
    assert "needs the runtime's serve extra" in str(raised.value)


# --- waits for locks ---------------------------------------------------------------------------


@pytest.mark.integration
def test_a_postgresql_history_waits_for_a_lock_at_most_5_s_keeping_the_urls_own_options(
    request: pytest.FixtureRequest,
) -> None:
    # (SQLite's wait for its file's write lock is Python's sqlite3 default, 5 s.)
    url = str(request.getfixturevalue("fresh_postgres"))
    own = sqlalchemy.make_url(url).update_query_dict({"options": "-c statement_timeout=60000"})
    engine = agno_adapter.engine_of(
        open_history(location(own.render_as_string(hide_password=False)))
    )
    with engine.connect() as connection:
        settings = [
            connection.exec_driver_sql(f"SHOW {name}").scalar_one()
            for name in ("lock_timeout", "statement_timeout")
        ]
    engine.dispose()
    assert settings == ["5s", "1min"]
