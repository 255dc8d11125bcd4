"""`sql.backend`: dlt's sqlalchemy, pyarrow, connectorx and pandas backends, each installed one
against SQLite files and the test PostgreSQL (TEST_DATABASE_URL). Whatever the backend, and
whether run() reads rows one by one or `rows.batches()`, it gets the same values, and the
cursor (its value, the keys of the rows at it, its target) moves the same way, so that a
backend can be changed between runs. Real workflow runs with their history, as in
test_connectors."""

from __future__ import annotations

import datetime
import decimal
import importlib.util
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from parallel_workflow_runtime._connectors.connectors import ConnectorRun
from parallel_workflow_runtime._core.config import ConfigError, Source, SourceLimits, load_config
from parallel_workflow_runtime._core.connector_config import SqlBlock
from parallel_workflow_runtime._core.results import SourceError, SourceSummary
from parallel_workflow_runtime._store.cursors import CursorStore
from parallel_workflow_runtime._store.history import open_history

from . import connector_sources
from .test_connectors import by_id, keys, run, write_config

BACKENDS = [
    backend
    for backend, package in [
        ("sqlalchemy", "sqlalchemy"),
        ("pyarrow", "pyarrow"),
        ("connectorx", "connectorx"),
        ("pandas", "pandas"),
    ]
    if importlib.util.find_spec(package) is not None
]
START = datetime.datetime(2026, 11, 1, 8, 0)
PENNY = decimal.Decimal("0.01")


@dataclass
class Database:
    url: str
    dialect: str  # sqlite, postgresql
    table: str

    def execute(self, *statements: str, rows: list[dict[str, Any]] | None = None) -> None:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url)
        with engine.begin() as connection:
            for statement in statements:
                if rows:
                    connection.execute(text(statement), rows)
                else:
                    connection.execute(text(statement))
        engine.dispose()

    def decimal(self, value: decimal.Decimal) -> decimal.Decimal | float:
        """A decimal as the driver takes it: sqlite3 takes none (NUMERIC stores a float)."""
        return float(value) if self.dialect == "sqlite" else value

    def time(self, value: datetime.datetime) -> datetime.datetime | str:
        """A timestamp as SQLAlchemy writes one to SQLite, with its microseconds: a WHERE
        compares the text, and `'... 11:00:00' >= '... 11:00:00.000000'` is false."""
        return value.strftime("%Y-%m-%d %H:%M:%S.%f") if self.dialect == "sqlite" else value

    def insert(self, ids: range, hours: int = 3) -> None:
        """Rows of every type; `hours` rows share each updated_at (the cursor's last value is
        shared by several rows, whose keys the cursor keeps). Every seventh has NULLs."""
        rows = [
            {
                "id": n,
                "big": None if n % 7 == 0 else 2**53 + n,
                "amount": None if n % 7 == 0 else n * 1.25,
                # Never a whole number: SQLite would store it as an integer (see below).
                "price": None if n % 7 == 0 else self.decimal(decimal.Decimal(n) / 4 + PENNY),
                "at": None if n % 7 == 0 else self.time(START + datetime.timedelta(minutes=n)),
                "at_tz": None if n % 7 == 0 else (START + datetime.timedelta(days=n)).isoformat(),
                "note": None if n % 7 == 0 else f"note {n} é",
                "updated_at": self.time(START + datetime.timedelta(hours=n // hours)),
            }
            for n in ids
        ]
        names = ", ".join(rows[0])
        values = ", ".join(f":{name}" for name in rows[0])
        self.execute(f"INSERT INTO {self.table} ({names}) VALUES ({values})", rows=rows)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A table of every type the rows carry, on an SQLite file or on the test PostgreSQL."""
    if request.param == "sqlite":
        found = Database(f"sqlite:///{tmp_path / 'kinds.sqlite'}", "sqlite", "kinds")
        found.execute(
            "CREATE TABLE kinds (id INTEGER PRIMARY KEY, big INTEGER, amount REAL,"
            " price NUMERIC(10, 2), at TIMESTAMP, at_tz TEXT, note TEXT,"
            " updated_at TIMESTAMP NOT NULL)"
        )
        yield found
        return
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set (scripts/postgres start)")
    found = Database(url, "postgresql", f"kinds_{os.getpid()}_{time.monotonic_ns()}")
    found.execute(
        f"CREATE TABLE {found.table} (id integer PRIMARY KEY, big bigint, amount double"
        " precision, price numeric(10, 2), at timestamp, at_tz timestamptz, note text,"
        " updated_at timestamp NOT NULL)"
    )
    yield found
    found.execute(f"DROP TABLE IF EXISTS {found.table}")


def sql_source(source_id: str, table: str, backend: str, **block: Any) -> dict[str, Any]:
    return {
        "id": source_id,
        "name": source_id,
        "kind": "sql",
        "sql": {
            "url_env": "KINDS_URL",
            "table": table,
            "cursor": "updated_at",
            "backend": backend,
            "chunk_size": 4,  # several chunks, and rows at one value across two of them
            **block,
        },
    }


def read(database: Database, backend: str, batches: bool, **block: Any) -> list[dict[str, Any]]:
    """The rows run() gets from the table on `backend`, one by one or from rows.batches()."""
    got: list[dict[str, Any]] = []

    def collect(source: Source, rows: Any) -> SourceSummary:
        if batches:
            for batch in rows.batches():
                got.extend(batch.to_pylist())
        else:
            got.extend(rows)
        return SourceSummary(records=len(got))

    source = Source(
        id="kinds",
        name="Kinds",
        settings={},
        folder=Path.cwd(),
        limits=SourceLimits(timeout_seconds=120),
        kind="sql",
        connector=SqlBlock.model_validate(
            {"url_env": "KINDS_URL", "table": database.table, "backend": backend, **block}
        ),
    )
    ConnectorRun(collect)(source)
    return got


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_hands_run_the_same_values_as_rows_and_as_batches(
    database: Database, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database.insert(range(1, 16))
    if database.dialect == "postgresql":  # a float NaN, which SQLite cannot store
        database.execute(f"UPDATE {database.table} SET amount = 'NaN' WHERE id = 2")
    monkeypatch.setenv("KINDS_URL", database.url)
    expected = by_key(read(database, "sqlalchemy", False, cursor="updated_at", chunk_size=4))

    for batches in (False, True):
        # By id: rows that share a cursor value come in no set order.
        got = by_key(read(database, backend, batches, cursor="updated_at", chunk_size=4))

        assert [row["id"] for row in got] == list(range(1, 16))
        if backend == "pandas":  # pandas reads a NaN as a missing value (README.md)
            expected = [{**row, "amount": nan_as_none(row["amount"])} for row in expected]
        assert comparable(got) == comparable(expected), (backend, batches)
        first = got[0]
        assert type(first["price"]) is decimal.Decimal and str(first["price"]) == "0.26"
        assert type(first["at"]) is datetime.datetime and first["at"].tzinfo is None
        assert type(first["big"]) is int and first["big"] == 2**53 + 1
        assert type(first["note"]) is str and got[6]["note"] is None
        if database.dialect == "postgresql":  # the same instant, whatever the time zone
            assert first["at_tz"] == expected[0]["at_tz"] and first["at_tz"].tzinfo is not None


def by_key(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: row["id"])


def nan_as_none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with NaN as a string (NaN is not equal to itself)."""
    return [
        {key: "NaN" if nan_as_none(value) is None and value is not None else value
         for key, value in row.items()}
        for row in rows
    ]  # fmt: skip


def cursors() -> dict[str, Any]:
    return {
        cursor.source_id: cursor.state
        for cursor in CursorStore.of(open_history()).all("connectors")
    }


def test_the_cursor_moves_alike_on_every_backend_and_survives_a_change_of_backend(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One source per backend over the same table, half of them reading batches: each reads
    every row once over four runs, with rows coming at the cursor's last value; their cursors
    are the same (value and keys); then each source moves to the next backend and goes on
    from its cursor, none read again, no cursor reset."""
    folder = tmp_path / "workflow"
    folder.mkdir()
    monkeypatch.setenv("KINDS_URL", database.url)
    ids = [f"on_{backend}" for backend in BACKENDS]
    functions = {
        source_id: connector_sources.collect_batches if index % 2 else connector_sources.collect
        for index, source_id in enumerate(ids)
    }

    def one_run(shift: int) -> dict[str, Any]:
        config = write_config(
            folder,
            *(
                sql_source(source_id, database.table, BACKENDS[(index + shift) % len(BACKENDS)])
                for index, source_id in enumerate(ids)
            ),
        )
        return by_id(run(config, functions=functions))

    database.insert(range(1, 11))  # the last value, 11:00, held by ids 9 and 10
    first = one_run(0)
    database.insert(range(11, 15))  # 11 at 11:00 still, then 12 to 14 at 12:00
    second = one_run(0)
    kept = cursors()
    database.insert(range(15, 19))
    third = one_run(1)  # every source on the next backend
    fourth = one_run(2)

    for source_id in ids:
        assert sorted(keys(first[source_id])) == list(range(1, 11)), first[source_id]
        assert sorted(keys(second[source_id])) == list(range(11, 15)), second[source_id]
        assert sorted(keys(third[source_id])) == list(range(15, 19)), third[source_id]
        assert fourth[source_id].records == 0, fourth[source_id]
        for result in (first, second, third, fourth):
            assert result[source_id].warnings == [], result[source_id].warnings
    states = {source_id: state for source_id, state in kept.items()}
    assert len({repr(state) for state in states.values()}) == 1, states
    state = states[ids[0]]
    assert state["value"] == {"datetime": "2026-11-01T12:00:00"}
    assert len(state["seen"]) == 3  # ids 12, 13, 14
    assert state["target"].endswith(f"table {database.table}, cursor updated_at")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_null_cursor_and_a_partial_read_behave_alike_on_every_backend(
    database: Database, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run() that stops after a row or a batch keeps the cursor where it was; a NULL in the
    cursor column fails the source, whichever way it reads."""
    folder = tmp_path / "workflow"
    folder.mkdir()
    monkeypatch.setenv("KINDS_URL", database.url)
    database.insert(range(1, 13))
    nulls = Database(database.url, database.dialect, f"{database.table}_nulls")
    nulls.execute(
        f"CREATE TABLE {nulls.table} (id integer PRIMARY KEY, updated_at integer)",
        f"INSERT INTO {nulls.table} VALUES (1, 10), (2, 20), (3, NULL), (4, 40), (5, 50)",
    )
    partial = {
        "rows": connector_sources.first_row_only,
        "batches": connector_sources.first_batch_only,
    }
    functions = {
        **partial,
        "null_rows": connector_sources.collect,
        "null_batches": connector_sources.collect_batches,
    }
    config = write_config(
        folder,
        *(sql_source(way, database.table, backend) for way in partial),
        *(sql_source(f"null_{way}", nulls.table, backend) for way in partial),
    )

    try:
        results = by_id(run(config, functions=functions))
    finally:
        if database.dialect == "postgresql":  # an SQLite file goes with tmp_path
            nulls.execute(f"DROP TABLE IF EXISTS {nulls.table}")

    for way in partial:
        assert results[way].ok and results[way].cursor is None, results[way]
        assert results[way].warnings[-1].startswith("run() returned before it read every row")
        failed = results[f"null_{way}"]
        assert not failed.ok
        assert str(failed.error).startswith(
            f"sql: the cursor column updated_at of table {nulls.table} has no value (null)"
        ), failed.error
    assert not any(cursors().values())


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            {"table": "t", "backend": "arrow"},
            "sources[0].sql.backend must be 'sqlalchemy', 'pyarrow', 'connectorx' or 'pandas',"
            " got 'arrow'",
        ),
        (
            {"query": "SELECT 1", "backend": "pyarrow"},
            "sources[0].sql.backend pyarrow reads a table (sql.table): a query is read through"
            " SQLAlchemy",
        ),
    ],
)
def test_config_refuses_a_backend_dlt_does_not_have_or_a_query_on_another(
    tmp_path: Path, block: dict[str, Any], message: str
) -> None:
    entry = {"id": "a", "name": "A", "kind": "sql", "sql": {"url_env": "X", **block}}
    with pytest.raises(ConfigError) as refused:
        load_config(write_config(tmp_path, entry))
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_connectorx_missing_is_one_line_that_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database(f"sqlite:///{tmp_path / 'kinds.sqlite'}", "sqlite", "kinds")
    database.execute("CREATE TABLE kinds (id INTEGER PRIMARY KEY, updated_at TIMESTAMP)")
    monkeypatch.setenv("KINDS_URL", database.url)
    monkeypatch.setitem(sys.modules, "connectorx", None)  # `import connectorx` fails

    with pytest.raises(SourceError) as failed:
        read(database, "connectorx", batches=False)

    assert str(failed.value) == (
        "sql: backend connectorx needs the package connectorx: add the connectorx extra to"
        " parallel-workflow-runtime[...] in the project's pyproject.toml (or pip install"
        " connectorx), or set sql.backend to pyarrow"
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_bundled_sqlite_sample_is_read_on_every_backend(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample's URL is SQLite's read-only URI form, which connectorx does not take."""
    folder = tmp_path / "with space"
    folder.mkdir()
    sample = Database(f"sqlite:///{folder / 'demo.sqlite'}", "sqlite", "kinds")
    sample.execute(
        "CREATE TABLE kinds (id INTEGER PRIMARY KEY, big INTEGER, amount REAL,"
        " price NUMERIC(10, 2), at TIMESTAMP, at_tz TEXT, note TEXT, updated_at TIMESTAMP)"
    )
    sample.insert(range(1, 6))
    monkeypatch.delenv("KINDS_URL", raising=False)
    config = write_config(folder, sql_source("demo", "kinds", backend, sqlite_file="demo.sqlite"))

    result = by_id(run(config, functions={"demo": connector_sources.collect_batches}))["demo"]

    assert result.ok, result.error
    assert keys(result) == [1, 2, 3, 4, 5]
    assert result.warnings[0].startswith("read the bundled sample demo.sqlite")


@pytest.mark.skipif("connectorx" not in BACKENDS, reason="connectorx is not installed")
def test_a_connectorx_panic_fails_its_source_alone_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite stores 2.0 in a NUMERIC column as the integer 2, and connectorx, taking the
    column's type from its first value, panics on the 1.5 after it: pyo3's PanicException, a
    BaseException, which must not end the run (or the server) as one would."""
    database = Database(f"sqlite:///{tmp_path / 'kinds.sqlite'}", "sqlite", "kinds")
    database.execute(
        "CREATE TABLE kinds (id INTEGER PRIMARY KEY, price NUMERIC(10, 2))",
        "INSERT INTO kinds VALUES (1, 2.0), (2, 1.5)",
    )
    monkeypatch.setenv("KINDS_URL", database.url)
    config = write_config(
        tmp_path,
        sql_source("panics", "kinds", "connectorx", cursor=None),
        sql_source("reads", "kinds", "pyarrow", cursor=None),
    )

    results = by_id(run(config))

    assert keys(results["reads"]) == [1, 2]
    error = str(results["panics"].error)
    assert error.startswith("sql: PanicException: "), error
    assert "\n" not in error


def test_bench_times_each_backend_against_dlt_alone_and_a_psycopg_cursor(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bench --kind sql --backend ... --url-env NAME`: a table written into that database,
    each backend through the workflow's rendered run() and alone, and on PostgreSQL a
    server-side cursor; wall and CPU. (What it measures is not asserted: the structure.)"""
    from parallel_workflow_runtime._cli.cli import main

    url = os.environ.get("TEST_DATABASE_URL")
    database = ["--url-env", "BENCH_DATABASE_URL"] if url else []
    if url:
        monkeypatch.setenv("BENCH_DATABASE_URL", url)
    arguments = ["--kind=sql", "--rows=500", "--repeat=1", "--backend=pyarrow", *database]

    assert main(["bench", *arguments, "--backend=sqlalchemy", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert main(["bench", *arguments, "--backend=sqlalchemy"]) == 0
    table = capsys.readouterr().out

    assert [timed["backend"] for timed in results["backends"]] == ["sqlalchemy", "pyarrow"]
    for timed in results["backends"]:
        assert timed["per_source"][0]["records"] == 500, timed
        assert timed["workflow_cpu_seconds"] >= 0 and timed["alone_cpu_seconds"] >= 0
    assert "pyarrow" in table and "÷ alone" in table
    if url:
        assert results["database"] == "postgresql"
        assert results["psycopg"]["rows"] == 500
        assert "psycopg cursor" in table
    else:
        assert results["psycopg"] is None


def test_bench_refuses_a_backend_for_another_kind(capsys: pytest.CaptureFixture[str]) -> None:
    from parallel_workflow_runtime._cli.cli import main

    assert main(["bench", "--kind=file", "--backend=pyarrow"]) == 2
    assert capsys.readouterr().err.endswith("error: --backend and --url-env are for --kind sql\n")
