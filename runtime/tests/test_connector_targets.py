"""What a connector source reads, and whose cursor it is: the bundled samples that a fresh
render reads offline (`sql`'s sqlite_file, `http`'s sample_file), and the target kept with each
cursor, so that a cursor reached on one target (the sample) is never applied to another (the
real database or API). Real runs with their history, as in test_connectors."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from parallel_workflow_runtime._store.cursors import CursorStore
from parallel_workflow_runtime._store.history import open_history

from .conftest import RUNTIME
from .test_connectors import (
    TOKEN,
    api_server,
    by_id,
    file_source,
    folder,
    keys,
    postgres_table,
    run,
    sql_source,
    sqlite_table,
    write_config,
)

__all__ = ["api_server", "folder", "postgres_table"]  # fixtures of test_connectors, used here

# The template's sample database: 200 rows, `updated_at` ISO text up to 2026-11-21T08:00:00.
SAMPLE_DATABASE = (
    RUNTIME.parent
    / "template/src/{{ package_name }}/workflows/{{ workflow_module }}/data"
    / "{% yield source from sql_sources %}{{ source.id }}{% endyield %}.sqlite"
)
SAMPLE_CURSOR = "2026-11-21T08:00:00"


def stored_targets() -> dict[str, str | None]:
    return {cursor.source_id: cursor.target for cursor in CursorStore.of(open_history()).all()}


def write_items(path: Path, ids: range, first: datetime.datetime) -> None:
    """JSON Lines items `id`, `updated_at` (an hour apart from `first`), appended."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as items:
        for number in ids:
            updated = first + datetime.timedelta(hours=number)
            items.write(json.dumps({"id": number, "updated_at": updated.isoformat()}) + "\n")


LATE = datetime.datetime(2026, 11, 20)  # the samples' items: after all of the test API's rows


def events_source(
    base_url: str = "https://api.example.invalid/v1/", **block: Any
) -> dict[str, Any]:
    """An `http` source as the template renders one: bearer auth, a sample until configured."""
    return {
        "id": "events",
        "name": "Events",
        "kind": "http",
        "http": {
            "base_url": base_url,
            "path": "events",
            "auth": {"type": "bearer", "token_env": "EVENTS_TOKEN"},
            "sample_file": "data/events.jsonl",
            "paginator": {"type": "page_number", "base_page": 1, "total_path": "total_pages"},
            "data_selector": "data",
            "incremental": {"cursor_path": "updated_at", "start_param": "since"},
            **block,
        },
    }


EVENTS_SAMPLE_NOTE = (
    "read the bundled sample data/events.jsonl: EVENTS_TOKEN is not set (set it and base_url"
    " to read the API, then remove sample_file)"
)


# --- the bundled samples ----------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("executor", ["thread", "process"])
def test_http_reads_its_sample_while_its_token_is_unset_with_the_cursor_of_an_api(
    folder: Path, monkeypatch: pytest.MonkeyPatch, executor: Any
) -> None:
    """The first run of a fresh render, offline: the sample's items, said in one line; the
    next run reads nothing new; items appended to the sample are read once, the one that
    shares the last value too. (api.example.invalid is never asked: the tests are offline.)"""
    monkeypatch.delenv("EVENTS_TOKEN", raising=False)
    sample = folder / "data" / "events.jsonl"
    write_items(sample, range(1, 31), LATE)
    config = write_config(folder, events_source())

    first = by_id(run(config, executor=executor))["events"]
    second = by_id(run(config, executor=executor))["events"]
    with sample.open("a", encoding="utf-8") as items:  # the same time as item 30, then later
        items.write(json.dumps({"id": 31, "updated_at": (LATE + datetime.timedelta(hours=30))
                                .isoformat()}) + "\n\n")  # fmt: skip
    write_items(sample, range(32, 33), LATE)
    third = by_id(run(config, executor=executor))["events"]

    assert first.ok, first.error
    assert keys(first) == list(range(1, 31))
    assert first.warnings == [EVENTS_SAMPLE_NOTE]
    assert (second.ok, second.records, second.warnings) == (True, 0, [EVENTS_SAMPLE_NOTE])
    assert keys(third) == [31, 32]
    assert stored_targets() == {"events": "sample data/events.jsonl, cursor updated_at"}


def test_http_with_its_token_set_reads_the_api_from_the_start_then_sample_file_can_go(
    folder: Path, monkeypatch: pytest.MonkeyPatch, api_server: str
) -> None:
    """Configured as the sample's line says: the token and base_url set, the API is read, not
    the sample, and from its start: the sample's cursor (later than every row of the API)
    would have sent ?since= past them all. Removing sample_file then changes nothing."""
    monkeypatch.delenv("EVENTS_TOKEN", raising=False)
    write_items(folder / "data" / "events.jsonl", range(1, 6), LATE)
    dataset = f"configured{os.getpid()}"
    config = write_config(folder, events_source(path=f"{dataset}/pages"))
    sample = by_id(run(config))["events"]

    monkeypatch.setenv("EVENTS_TOKEN", TOKEN)
    config = write_config(folder, events_source(f"{api_server}/", path=f"{dataset}/pages"))
    configured = by_id(run(config))["events"]
    block = events_source(f"{api_server}/", path=f"{dataset}/pages")
    del block["http"]["sample_file"]
    config = write_config(folder, block)
    without_sample = by_id(run(config))["events"]

    assert keys(sample) == [1, 2, 3, 4, 5]
    assert configured.ok, configured.error
    assert keys(configured) == list(range(1, 24))
    assert configured.warnings == [
        "cursor reset: its target changed from sample data/events.jsonl, cursor updated_at to"
        f" {api_server}/{dataset}/pages, cursor updated_at; read from the start"
    ]
    assert (without_sample.records, without_sample.warnings) == (0, [])
    assert stored_targets() == {"events": f"{api_server}/{dataset}/pages, cursor updated_at"}


def test_http_without_auth_reads_its_sample_until_sample_file_is_removed(
    folder: Path, api_server: str
) -> None:
    """An API that needs no auth has no variable to tell the demo from a configured source:
    sample_file does, and its line says to remove it. Then the API is read from its start:
    its rows are all older than the sample's cursor, and none is skipped."""
    write_items(folder / "data" / "feed.jsonl", range(1, 4), LATE)
    dataset = f"open{os.getpid()}"
    block: dict[str, Any] = {
        "base_url": f"{api_server}/",
        "path": f"{dataset}/linked",
        "paginator": {"type": "header_link"},
        "incremental": {"cursor_path": "updated_at"},
    }
    entry = {"id": "feed", "name": "Feed", "kind": "http"}
    config = write_config(folder, {**entry, "http": {**block, "sample_file": "data/feed.jsonl"}})
    sample = by_id(run(config))["feed"]
    api = by_id(run(write_config(folder, {**entry, "http": block})))["feed"]

    assert keys(sample) == [1, 2, 3]
    assert sample.warnings == [
        "read the bundled sample data/feed.jsonl: sample_file is set (remove it to read"
        f" {api_server}/{dataset}/linked)"
    ]
    assert keys(api) == list(range(1, 24))
    assert api.warnings == [
        "cursor reset: its target changed from sample data/feed.jsonl, cursor updated_at to"
        f" {api_server}/{dataset}/linked, cursor updated_at; read from the start"
    ]


def test_a_missing_or_broken_sample_fails_its_source_alone_in_one_line(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVENTS_TOKEN", raising=False)
    monkeypatch.delenv("NOT_SET_ANYWHERE_URL", raising=False)
    broken = folder / "data" / "broken.jsonl"
    write_items(broken, range(1, 3), LATE)
    with broken.open("a", encoding="utf-8") as items:
        items.write("{'id': 3}\n")
    (folder / "data" / "list.jsonl").write_text('{"id": 1}\n\n[1, 2]\n', encoding="utf-8")
    sqlite_table(folder / "fine.sqlite", 4)

    def http(source_id: str, sample_file: str, **block: Any) -> dict[str, Any]:
        entry = events_source(sample_file=sample_file, **block)
        return {**entry, "id": source_id, "name": source_id}

    no_auth = http("no_auth", "data/nothing.jsonl")
    del no_auth["http"]["auth"]
    config = write_config(
        folder,
        http("missing", "data/nothing.jsonl"),
        http("broken", "data/broken.jsonl"),
        http("not_an_object", "data/list.jsonl"),
        no_auth,
        sql_source("sql_missing", url_env="NOT_SET_ANYWHERE_URL", sqlite_file="nothing.sqlite"),
        sql_source("fine", url_env="NOT_SET_ANYWHERE_URL", sqlite_file="fine.sqlite"),
    )

    results = by_id(run(config))

    assert results["fine"].ok and results["fine"].records == 4
    errors = {key: result.error for key, result in results.items() if not result.ok}
    assert errors == {
        "missing": "http: EVENTS_TOKEN is not set and data/nothing.jsonl does not exist",
        "broken": "http: sample data/broken.jsonl line 3: Expecting property name enclosed in"
        " double quotes: line 1 column 2 (char 1)",
        "not_an_object": "http: sample data/list.jsonl line 3: a list, not a JSON object",
        "no_auth": "http: the sample_file data/nothing.jsonl does not exist (remove it to read"
        " https://api.example.invalid/v1/events)",
        "sql_missing": "sql: NOT_SET_ANYWHERE_URL is not set and nothing.sqlite does not exist",
    }
    assert set(stored_targets()) == {"fine"}  # the failed ones moved nothing


def test_sql_says_in_one_line_that_it_reads_its_sample_and_not_once_configured(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_table(folder / "demo.sqlite", 10)
    monkeypatch.delenv("USERS_URL", raising=False)
    config = write_config(folder, sql_source(sqlite_file="demo.sqlite"))
    sample = by_id(run(config))["users"]
    again = by_id(run(config))["users"]
    # The same file through a URL is another target, named by its URL: read again, said so.
    monkeypatch.setenv("USERS_URL", f"sqlite:///{folder / 'demo.sqlite'}")
    configured = by_id(run(config))["users"]

    assert sample.warnings == [
        "read the bundled sample demo.sqlite: USERS_URL is not set (set it to read the"
        " database, then remove sqlite_file)"
    ]
    assert (again.records, again.warnings) == (0, sample.warnings)
    assert (configured.records, configured.warnings) == (
        10,
        [
            "cursor reset: its target changed from sample demo.sqlite, table records, cursor"
            f" updated_at to sqlite:///{folder / 'demo.sqlite'}, table records, cursor"
            " updated_at; read from the start"
        ],
    )


# --- a cursor belongs to its target -------------------------------------------------------------


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set (scripts/postgres start)")
    return url


def shown_database(url: str) -> str:
    """How a target names the test PostgreSQL: no driver, no password."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return f"postgresql://{parsed.username}@{parsed.host}:{parsed.port}/{parsed.database}"


def test_the_sample_databases_cursor_is_not_applied_to_the_postgresql_table_that_replaces_it(
    folder: Path, monkeypatch: pytest.MonkeyPatch, postgres_table: tuple[str, str]
) -> None:
    """The README's path: run on the sample, then set url_env and remove sqlite_file. The
    sample's cursor is ISO text; the real column is timestamptz. At 0.7.0 every run then
    failed: "operator does not exist: timestamp with time zone >= character varying"."""
    url, table = postgres_table
    shutil.copyfile(SAMPLE_DATABASE, folder / "orders.sqlite")
    monkeypatch.delenv("USERS_URL", raising=False)
    config = write_config(folder, sql_source(sqlite_file="orders.sqlite"))
    sample = by_id(run(config))["users"]
    monkeypatch.setenv("USERS_URL", url)
    config = write_config(folder, sql_source(table=table))

    real = by_id(run(config))["users"]
    again = by_id(run(config))["users"]

    assert (sample.ok, sample.records, sample.cursor) == (True, 200, SAMPLE_CURSOR)
    assert real.ok, real.error
    assert keys(real) == list(range(1, 41))
    target = f"{shown_database(url)}, table {table}, cursor updated_at"
    assert real.warnings == [
        "cursor reset: its target changed from sample orders.sqlite, table records, cursor"
        f" updated_at to {target}; read from the start"
    ]
    from sqlalchemy.engine import make_url

    assert f":{make_url(url).password}@" not in real.warnings[0]  # never the password
    assert (again.records, again.warnings) == (0, [])
    assert stored_targets() == {"users": target}


@pytest.fixture
def postgres_text_table(postgres_url: str) -> Iterator[str]:
    """A table whose cursor column is text, all its values before the sample's last."""
    from sqlalchemy import create_engine, text

    table = f"text_records_{os.getpid()}_{time.monotonic_ns()}"
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY, updated_at text)"))
        connection.execute(
            text(
                f"INSERT INTO {table} SELECT n, to_char(timestamp '2026-11-01' + n * interval"
                " '1 hour', 'YYYY-MM-DD\"T\"HH24:MI:SS') FROM generate_series(1, 30) AS n"
            )
        )
    yield table
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


def test_a_text_cursor_column_is_read_from_the_start_on_its_new_database_not_skipped(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_url: str,
    postgres_text_table: str,
) -> None:
    """The same path with a text column: at 0.7.0 nothing failed, and the 30 rows before the
    sample's '2026-11-21T08:00:00' were skipped in silence, for good."""
    shutil.copyfile(SAMPLE_DATABASE, folder / "orders.sqlite")
    monkeypatch.delenv("USERS_URL", raising=False)
    run(write_config(folder, sql_source(sqlite_file="orders.sqlite")))
    monkeypatch.setenv("USERS_URL", postgres_url)

    real = by_id(run(write_config(folder, sql_source(table=postgres_text_table))))["users"]

    assert real.ok, real.error
    assert keys(real) == list(range(1, 31))
    assert real.warnings[0].startswith("cursor reset: its target changed from sample")
    assert real.cursor == "2026-11-02T06:00:00"


def settle_as_070(workflow_id: str, source_id: str, state: dict[str, Any]) -> None:
    """A cursor as runtime 0.7.0 kept it: no target."""
    store = CursorStore.of(open_history())
    assert store.claim(workflow_id, source_id, "a-run-of-0.7.0") is None
    store.settle(workflow_id, "a-run-of-0.7.0", {source_id: state})


def test_a_cursor_kept_by_070_is_taken_as_its_targets_and_gets_the_target_stored(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upgrading does not read anything again: a cursor without a target is this target's."""
    database = folder / "users.sqlite"
    sqlite_table(database, 40)  # ten rows a day from 2026-11-01
    monkeypatch.setenv("USERS_URL", f"sqlite:///{database}")
    config = write_config(folder, sql_source())
    settle_as_070("connectors", "users", {"field": "updated_at", "value": "2026-11-04"})

    upgraded = by_id(run(config))["users"]

    assert upgraded.ok, upgraded.error
    assert keys(upgraded) == list(range(30, 41))  # from 2026-11-04 on, as 0.7.0 would have
    assert upgraded.warnings == []
    assert stored_targets() == {"users": f"sqlite:///{database}, table records, cursor updated_at"}


def test_a_cursor_over_another_column_restarts_and_says_so(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0.7.0 restarted a cursor whose column changed without a word: now it says why."""
    database = folder / "users.sqlite"
    sqlite_table(database, 12)
    monkeypatch.setenv("USERS_URL", f"sqlite:///{database}")
    settle_as_070("connectors", "users", {"field": "id", "value": 9})

    result = by_id(run(write_config(folder, sql_source())))["users"]

    assert keys(result) == list(range(1, 13))
    assert result.warnings == [
        "cursor reset: its column changed from id to updated_at; read from the start"
    ]


def test_a_file_source_pointed_at_another_folder_reads_it_whole_whatever_its_files_dates(
    folder: Path,
) -> None:
    """The cursor of a file source is the files' modification time: the files of another
    folder, older than the cursor, were skipped in silence at 0.7.0."""
    (folder / "before").mkdir()
    (folder / "after").mkdir()
    (folder / "after" / "a.jsonl").write_text('{"id": 1}\n{"id": 2}\n', encoding="utf-8")
    os.utime(folder / "after" / "a.jsonl", (1_600_000_000, 1_600_000_000))  # in 2020
    (folder / "before" / "b.jsonl").write_text('{"id": 9}\n', encoding="utf-8")
    run(write_config(folder, file_source("logs", "before", "*.jsonl", "jsonl")))

    moved = by_id(run(write_config(folder, file_source("logs", "after", "*.jsonl", "jsonl"))))

    assert keys(moved["logs"]) == [1, 2]
    assert moved["logs"].warnings == [
        f"cursor reset: its target changed from {(folder / 'before').resolve()}, glob *.jsonl,"
        f" format jsonl to {(folder / 'after').resolve()}, glob *.jsonl, format jsonl; read"
        " from the start"
    ]
