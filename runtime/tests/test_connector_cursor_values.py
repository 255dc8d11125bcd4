"""What an `sql` source does with cursor values that a cursor cannot follow: NULL, values of
different types, a column whose type changed to `timestamptz`, a column missing, and many rows
sharing one value. Real runs with their history on SQLite files and the test PostgreSQL, as in
test_connectors; each case once with `table:` and once with `query:`, which behave alike."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from parallel_workflow_runtime._connectors.cursor_tracker import MAX_CURSOR_KEYS
from parallel_workflow_runtime._store.cursors import CursorStore
from parallel_workflow_runtime._store.history import open_history

from . import connector_sources
from .test_connectors import (
    PAGED,
    TOKEN,
    api_server,
    by_id,
    folder,
    http_source,
    keys,
    run,
    sql_source,
    stored_cursors,
    write_config,
)

__all__ = ["api_server", "folder"]  # fixtures of test_connectors, used here

QUERY = "SELECT id, updated_at FROM events"


def events(path: Path, rows: Iterable[tuple[int, Any]]) -> None:
    """Rows (id, updated_at) into the table `events` of an SQLite file; updated_at has no type,
    so that it may hold NULL, text and numbers alike."""
    with sqlite3.connect(path) as database:
        database.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, updated_at)")
        database.executemany("INSERT INTO events VALUES (?, ?)", rows)
    database.close()


def both(**block: Any) -> list[dict[str, Any]]:
    """The same table read by a `table:` source and a `query:` source."""
    return [
        sql_source("table", table="events", **block),
        sql_source("query", table=None, query=QUERY, **block),
    ]


def null_line(subject: str) -> str:
    return (
        f"sql: the cursor column updated_at of {subject} has no value (null) in a row: no run"
        " would read it again, as a cursor only moves forward; choose a column without NULLs"
        " (sql.cursor), or give those rows a value or leave them out in sql.query"
        " (COALESCE(updated_at, ...), WHERE updated_at IS NOT NULL)"
    )


def test_a_null_cursor_fails_a_table_and_a_query_alike_in_every_run(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 0.8.0 a query read its NULL rows in its first run (no WHERE yet) and never again
    (`>= :since` leaves NULL out), and a table failed in its first run only: a NULL that
    came after it was skipped in silence by both."""
    database = folder / "events.sqlite"
    events(database, [(n, f"2026-11-{n:02d}") for n in range(1, 6)])
    monkeypatch.setenv("USERS_URL", f"sqlite:///{database}")
    config = write_config(folder, *both())
    first = by_id(run(config))
    events(database, [(6, None), (7, "2026-11-07")])

    second = by_id(run(config))

    assert keys(first["table"]) == keys(first["query"]) == [1, 2, 3, 4, 5]
    assert second["table"].error == null_line("table events")
    assert second["query"].error == null_line("the query")
    assert stored_cursors() == {"table": "2026-11-05", "query": "2026-11-05"}


def test_a_null_cursor_in_the_first_run_fails_a_query_as_it_does_a_table(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = folder / "events.sqlite"
    events(database, [(1, "2026-11-01"), (2, None)])
    monkeypatch.setenv("USERS_URL", f"sqlite:///{database}")

    results = by_id(run(write_config(folder, *both())))

    assert results["table"].error == null_line("table events")
    assert results["query"].error == null_line("the query")
    assert stored_cursors() == {}


def test_a_missing_cursor_column_is_one_line_naming_it_the_table_and_its_columns(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0.8.0 said `sql: KeyError: 'nope'` for a table."""
    database = folder / "events.sqlite"
    events(database, [(1, "2026-11-01")])
    monkeypatch.setenv("USERS_URL", f"sqlite:///{database}")

    results = by_id(run(write_config(folder, *both(cursor="nope"))))

    assert results["table"].error == (
        "sql: table events has no column nope (sql.cursor); its columns: id, updated_at"
    )
    assert results["query"].error == (
        "sql: the query has no column nope (sql.cursor); its columns: id, updated_at"
    )


def test_values_of_different_types_are_one_line_that_says_what_to_do(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0.8.0 said `sql: TypeError: '<' not supported between instances of 'str' and
    'float'`."""
    database = folder / "events.sqlite"
    events(database, [(1, "2026-11-01"), (2, 20261102.5), (3, "2026-11-03")])
    monkeypatch.setenv("USERS_URL", f"sqlite:///{database}")

    results = by_id(run(write_config(folder, *both())))

    for source_id, subject in (("table", "table events"), ("query", "the query")):
        error = str(results[source_id].error)
        assert error.startswith(
            f"sql: the cursor column updated_at of {subject} holds values of different types ("
        ), error
        assert "str" in error and "float" in error, error
        assert error.endswith(
            "which cannot be ordered: cast it to one type in sql.query (CAST(updated_at AS ...))"
            " or choose another column (sql.cursor)"
        ), error
    assert stored_cursors() == {}


def test_an_http_cursor_path_that_items_lack_is_said_as_an_sql_column_is(
    folder: Path, monkeypatch: pytest.MonkeyPatch, api_server: str
) -> None:
    """0.8.0 passed on dlt's paragraph (IncrementalCursorPathMissing: In processing pipe ...
    Use the same names of fields as in your JSON document ...)."""
    monkeypatch.setenv("API_TOKEN", TOKEN)
    paged = {**PAGED, "incremental": {"cursor_path": "changed_at"}}
    dataset = f"p{os.getpid()}{time.monotonic_ns()}"
    config = write_config(folder, http_source("events", api_server, f"{dataset}/pages", **paged))

    result = by_id(run(config))["events"]

    assert result.error == (
        f"http: the cursor path changed_at of {api_server}/{dataset}/pages has no value (null)"
        " in an item: no run would read it again, as a cursor only moves forward; choose a"
        " field that every item has (http.incremental.cursor_path)"
    )


@pytest.fixture
def postgres_events() -> Iterator[tuple[str, str]]:
    """A table (id, updated_at timestamp) of three rows in the test PostgreSQL: URL, name."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set (scripts/postgres start)")
    from sqlalchemy import create_engine, text

    table = f"events_{os.getpid()}_{time.monotonic_ns()}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY, updated_at timestamp)"))
        connection.execute(
            text(
                f"INSERT INTO {table} SELECT n, timestamp '2026-11-01' + n * interval '1 hour'"
                " FROM generate_series(1, 3) AS n"
            )
        )
    yield url, table
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


def postgres(url: str, *statements: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    engine.dispose()


def test_a_cursor_kept_as_timestamp_reads_on_after_the_column_becomes_timestamptz(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    postgres_events: tuple[str, str],
) -> None:
    """0.8.0 failed every run after `ALTER COLUMN ... TYPE timestamptz` with "can't compare
    offset-naive and offset-aware datetimes", after a paragraph of dlt's on stderr. The kept
    cursor is read as UTC; the rows read at its value are not read again; and back."""
    url, table = postgres_events
    monkeypatch.setenv("USERS_URL", url)
    postgres(url, "SET TIME ZONE 'UTC'")
    sources = [
        sql_source("table", table=table),
        sql_source("query", table=None, query=f"SELECT id, updated_at FROM {table}"),
    ]
    config = write_config(folder, *sources)
    first = by_id(run(config))
    postgres(
        url,
        f"ALTER TABLE {table} ALTER COLUMN updated_at TYPE timestamptz USING updated_at AT TIME"
        " ZONE 'UTC'",
        f"INSERT INTO {table} VALUES (4, timestamptz '2026-11-01 04:00:00+00')",
    )
    capfd.readouterr()

    aware = by_id(run(config))
    stderr = capfd.readouterr().err
    postgres(
        url,
        f"ALTER TABLE {table} ALTER COLUMN updated_at TYPE timestamp USING updated_at AT TIME"
        " ZONE 'UTC'",
        f"INSERT INTO {table} VALUES (5, timestamp '2026-11-01 05:00:00')",
    )
    naive = by_id(run(config))

    for source_id in ("table", "query"):
        assert keys(first[source_id]) == [1, 2, 3]
        assert (aware[source_id].ok, aware[source_id].error) == (True, None)
        assert (keys(aware[source_id]), aware[source_id].warnings) == ([4], [])
        assert (keys(naive[source_id]), naive[source_id].ok) == ([5], True)
    assert "dlt" not in stderr and "timezone" not in stderr, stderr


def test_a_read_that_fails_half_way_lets_go_of_its_connection_at_once(
    folder: Path, monkeypatch: pytest.MonkeyPatch, postgres_events: tuple[str, str]
) -> None:
    """At 0.8.0 a read that failed half-way (run() raised, or a row broke the cursor) left
    its PostgreSQL connection idle in a transaction, a server-side cursor open, until the
    process ended: its lock blocked an ALTER TABLE (a `serve` process holds it for days)."""
    url, table = postgres_events
    postgres(
        url, f"INSERT INTO {table} SELECT n, timestamp '2026-11-02' FROM generate_series(4, 60) n"
    )
    monkeypatch.setenv("USERS_URL", url)
    sources = [
        sql_source("table", table=table, chunk_size=5),
        sql_source("query", table=None, query=f"SELECT * FROM {table}", chunk_size=5),
    ]
    failing = dict.fromkeys(("table", "query"), connector_sources.fail_after_first_row)

    results = by_id(run(write_config(folder, *sources), functions=failing))

    assert {result.error for result in results.values()} == {
        "RuntimeError: processing failed at the first row"
    }
    # With a lock held, this waits: it fails after lock_timeout.
    postgres(url, "SET lock_timeout = '3s'", f"ALTER TABLE {table} ADD COLUMN note text")


def crowd(path: Path, first_id: int, count: int, value: str) -> None:
    events(path, ((n, value) for n in range(first_id, first_id + count)))


def stored_states() -> dict[str, dict[str, Any]]:
    return {
        cursor.source_id: cursor.state or {}
        for cursor in CursorStore.of(open_history()).all("connectors")
    }


def test_200000_rows_sharing_one_value_keep_a_small_cursor_and_say_what_that_costs(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 0.8.0 their 200,000 keys made a cursor of 7.2 MB, rewritten by every run. Past
    MAX_CURSOR_KEYS rows at its last value the cursor keeps none: the next run starts after
    that value, which a warning says, with what it costs (a row that comes later with that
    same value is not read)."""
    database = folder / "events.sqlite"
    crowd(database, 1, 200_000, "2026-11-01")
    monkeypatch.setenv("USERS_URL", f"sqlite:///{database}")
    config = write_config(folder, *both())

    first = by_id(run(config))
    sizes = {key: len(json.dumps(state)) for key, state in stored_states().items()}
    second = by_id(run(config))
    crowd(database, 200_001, 3, "2026-11-01")  # not read: the documented cost
    crowd(database, 200_004, 2, "2026-11-02")
    third = by_id(run(config))

    for source_id, subject in (("table", "table events"), ("query", "the query")):
        assert first[source_id].records == 200_000
        assert first[source_id].warnings == [
            f"sql: 200,000 rows share the last value of the cursor column updated_at of"
            f" {subject}, 2026-11-01: the cursor keeps the keys of {MAX_CURSOR_KEYS:,} at most,"
            " so the next run starts after that value and does not read what comes later with"
            " that same value; a cursor column whose values rarely repeat (a time to the"
            " second, an id) avoids it"
        ]
        assert sizes[source_id] < 1_000, sizes
        assert (second[source_id].records, second[source_id].warnings) == (0, [])
        assert keys(third[source_id]) == [200_004, 200_005]
    print(f"cursor state after 200,000 rows at one value: {sizes} bytes")


def test_up_to_the_limit_the_rows_at_the_last_value_are_kept_and_later_ones_read(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = folder / "events.sqlite"
    crowd(database, 1, MAX_CURSOR_KEYS, "2026-11-01")
    monkeypatch.setenv("USERS_URL", f"sqlite:///{database}")
    config = write_config(folder, *both())

    first = by_id(run(config))
    crowd(database, MAX_CURSOR_KEYS + 1, 1, "2026-11-01")
    second = by_id(run(config))

    for source_id in ("table", "query"):
        assert (first[source_id].records, first[source_id].warnings) == (MAX_CURSOR_KEYS, [])
        assert keys(second[source_id]) == [MAX_CURSOR_KEYS + 1]
        # Now one more than the limit at that value: no keys, and the next run starts after.
        assert second[source_id].warnings[0].startswith(f"sql: {MAX_CURSOR_KEYS + 1:,} rows")
    assert {state.get("after") for state in stored_states().values()} == {True}
