"""`probe` (probe.py) and `environment_variables` (connectors.py), which the `check` command
calls: each kind's target reached without reading its rows, against the real systems (SQLite
files, the test PostgreSQL, the test API's uvicorn process, a folder), and a peer that accepts
a connection and never answers, a real listening socket."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from parallel_workflow_runtime._connectors.connectors import environment_variables
from parallel_workflow_runtime._connectors.probe import probe
from parallel_workflow_runtime._core.config import Source, load_config
from parallel_workflow_runtime._core.results import SourceError

from .conftest import free_port
from .test_connector_targets import LATE, events_source, shown_database, write_items
from .test_connectors import (
    TOKEN,
    api_server,
    file_source,
    folder,
    http_source,
    postgres_table,
    sql_source,
    sqlite_table,
    stored_cursors,
    write_config,
)

__all__ = ["api_server", "folder", "postgres_table"]  # fixtures of test_connectors, used here


def sources_of(folder: Path, *entries: dict[str, Any]) -> dict[str, Source]:
    config = load_config(write_config(folder, *entries))
    return {source.id: source for source in config.sources}


def refused(source: Source, timeout: float = 10.0) -> str:
    """The one line `probe` raises."""
    with pytest.raises(SourceError) as raised:
        probe(source, timeout)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_probe_reaches_each_kinds_target_and_says_what_in_one_line(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    api_server: str,
    postgres_table: tuple[str, str],
) -> None:
    url, table = postgres_table
    sqlite_table(folder / "demo.sqlite", 12)
    write_items(folder / "data" / "events.jsonl", range(1, 31), LATE)
    (folder / "logs").mkdir()
    for name in ("a.jsonl", "b.jsonl", "c.jsonl", "notes.txt"):
        (folder / "logs" / name).write_text('{"id": 1}\n', encoding="utf-8")
    monkeypatch.delenv("DEMO_URL", raising=False)
    monkeypatch.delenv("EVENTS_TOKEN", raising=False)
    monkeypatch.setenv("PG_URL", url)
    monkeypatch.setenv("FILE_URL", f"sqlite:///{folder / 'demo.sqlite'}")
    monkeypatch.setenv("API_TOKEN", TOKEN)
    sources = sources_of(
        folder,
        sql_source("sample", url_env="DEMO_URL", sqlite_file="demo.sqlite"),
        sql_source("postgres", url_env="PG_URL", table=table),
        sql_source(
            "query", url_env="FILE_URL", table=None, query="SELECT id, updated_at FROM records"
        ),
        events_source(),
        http_source(
            "api",
            api_server,
            "probe/pages",
            auth={"type": "bearer", "token_env": "API_TOKEN"},
            paginator={"type": "page_number", "base_page": 1, "total_path": "total_pages"},
            data_selector="data",
        ),
        file_source("logs", "logs", "*.jsonl", "jsonl"),
        file_source("one", "logs", "*.txt", "csv"),
    )

    reached = {source_id: probe(source, 10) for source_id, source in sources.items()}

    assert reached == {
        "sample": "sample demo.sqlite: table records",
        "postgres": f"{shown_database(url)}: table {table}",
        "query": f"sqlite:///{folder / 'demo.sqlite'}: query of 2 columns",
        "events": "sample data/events.jsonl: 30 items",
        "api": f"{api_server}/probe/pages: first page, 10 items",  # of 23, ten a page
        "logs": "logs: 3 files match *.jsonl",
        "one": "logs: 1 file matches *.txt",
    }
    assert stored_cursors() == {}  # no cursor moved, none made


def test_probe_failures_are_one_line_that_names_the_problem_without_a_secret(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    api_server: str,
    postgres_table: tuple[str, str],
) -> None:
    url, table = postgres_table
    from sqlalchemy.engine import make_url

    wrong_password = (
        make_url(url).set(password="not-the-password-4711").render_as_string(hide_password=False)
    )
    (folder / "empty").mkdir()
    monkeypatch.setenv("PG_URL", url)
    monkeypatch.setenv("WRONG_URL", wrong_password)
    monkeypatch.setenv("MISSING_FILE_URL", f"sqlite:///{folder / 'nothing.sqlite'}")
    monkeypatch.setenv("API_TOKEN", "wrong-token-do-not-show")
    monkeypatch.delenv("UNSET_URL", raising=False)
    monkeypatch.delenv("UNSET_TOKEN", raising=False)
    paged = {
        "paginator": {"type": "page_number", "base_page": 1, "total_path": "total_pages"},
        "data_selector": "data",
    }
    sources = sources_of(
        folder,
        sql_source("no_table", url_env="PG_URL", table="no_such_table"),
        sql_source("no_column", url_env="PG_URL", table=table, cursor="no_such_column"),
        sql_source(
            "bad_query", url_env="PG_URL", table=None, query=f"SELECT id FROM {table}"
        ),  # no updated_at, its cursor
        sql_source("wrong_password", url_env="WRONG_URL", table=table),
        sql_source("unset", url_env="UNSET_URL"),
        sql_source("missing_file", url_env="MISSING_FILE_URL"),
        http_source(
            "unauthorized",
            api_server,
            "probe/pages",
            auth={"type": "bearer", "token_env": "API_TOKEN"},
            **paged,
        ),
        http_source(
            "no_token", api_server, "x", auth={"type": "bearer", "token_env": "UNSET_TOKEN"}
        ),
        file_source("no_folder", "nowhere", "*.csv", "csv"),
        file_source("no_match", "empty", "*.csv", "csv"),
        {"id": "plain", "name": "Plain"},
    )

    errors = {source_id: refused(source) for source_id, source in sources.items()}

    shown = shown_database(url)
    assert errors["no_table"] == f"sql: {shown} has no table no_such_table"
    assert errors["no_column"] == (
        f"sql: the table {table} of {shown} has no column no_such_column (sql.cursor)"
    )
    assert errors["bad_query"] == (
        f"sql: the query of 1 column of {shown} has no column updated_at (sql.cursor)"
    )
    assert "password authentication failed" in errors["wrong_password"]
    assert errors["unset"] == (
        "sql.url_env of source 'unset': the environment variable UNSET_URL is not set"
    )
    assert errors["missing_file"] == (
        f"sql: the SQLite file {folder / 'nothing.sqlite'} does not exist"
    )
    assert not (folder / "nothing.sqlite").exists()  # a probe makes no database
    assert "401" in errors["unauthorized"]
    assert errors["no_token"] == (
        "http.auth of source 'no_token': the environment variable UNSET_TOKEN is not set"
    )
    assert errors["no_folder"] == "file: the folder nowhere does not exist"
    assert errors["no_match"] == "file: no file in empty matches '*.csv'"
    assert errors["plain"] == "source 'plain' is of kind python: it has no target"
    for error in errors.values():
        assert "not-the-password-4711" not in error and "wrong-token-do-not-show" not in error


@pytest.fixture
def silent_peer() -> Iterator[int]:
    """A TCP server on a loopback port that accepts every connection and never answers."""
    server = socket.create_server(("127.0.0.1", free_port()))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            held.append(connection)  # open, never read, never written

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    yield server.getsockname()[1]
    stop.set()
    acceptor.join()
    for connection in held:
        connection.close()
    server.close()


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["sql", "http"])
def test_probe_gives_up_in_time_on_a_peer_that_accepts_and_never_answers(
    folder: Path, monkeypatch: pytest.MonkeyPatch, silent_peer: int, kind: str
) -> None:
    monkeypatch.setenv("SILENT_URL", f"postgresql+psycopg://app:hunter2@127.0.0.1:{silent_peer}/db")
    monkeypatch.setenv("SILENT_TOKEN", "a-token-for-nobody")
    entry = (
        sql_source("silent", url_env="SILENT_URL")
        if kind == "sql"
        else http_source(
            "silent",
            f"http://127.0.0.1:{silent_peer}",
            "events",
            auth={"type": "bearer", "token_env": "SILENT_TOKEN"},
        )
    )
    (source,) = sources_of(folder, entry).values()

    started = time.monotonic()
    message = refused(source, timeout=1.5)
    took = time.monotonic() - started

    where = (
        f"postgresql://app@127.0.0.1:{silent_peer}/db"
        if kind == "sql"
        else f"http://127.0.0.1:{silent_peer}/events"
    )
    assert message == f"{kind}: {where}: no answer within 1.5 s"
    # It gives up, and only after its timeout; the margin is for a loaded machine.
    assert 1.4 < took < 10, took


def test_environment_variables_names_each_variable_a_block_reads_and_what_for(
    folder: Path,
) -> None:
    sources = sources_of(
        folder,
        sql_source("orders_db", url_env="ORDERS_DB_URL", sqlite_file="data/orders_db.sqlite"),
        sql_source("warehouse", url_env="WAREHOUSE_URL"),
        events_source(),
        http_source(
            "keyed",
            "https://api.example.invalid",
            "x",
            auth={"type": "api_key", "api_key_env": "KEYED_KEY", "name": "X-Api-Key"},
        ),
        http_source(
            "basic",
            "https://api.example.invalid",
            "x",
            auth={"type": "http_basic", "username": "reader", "password_env": "BASIC_PASSWORD"},
        ),
        http_source("open", "https://api.example.invalid", "x"),
        file_source("logs", "logs", "*.csv", "csv"),
        {"id": "plain", "name": "Plain"},
    )

    variables = {key: environment_variables(source) for key, source in sources.items()}

    assert variables == {
        "orders_db": [
            (
                "ORDERS_DB_URL",
                "the SQLAlchemy URL of Orders_Db; unset: reads the sample data/orders_db.sqlite",
            )
        ],
        "warehouse": [
            ("WAREHOUSE_URL", "the SQLAlchemy URL of Warehouse; unset: the source fails")
        ],
        "events": [
            (
                "EVENTS_TOKEN",
                "the bearer token for the API of Events; unset: reads the sample data/events.jsonl",
            )
        ],
        "keyed": [
            (
                "KEYED_KEY",
                "the API key (X-Api-Key in the header) for the API of Keyed; unset: the source"
                " fails",
            )
        ],
        "basic": [
            (
                "BASIC_PASSWORD",
                "the password of reader for the API of Basic; unset: the source fails",
            )
        ],
        "open": [],
        "logs": [],
        "plain": [],
    }
