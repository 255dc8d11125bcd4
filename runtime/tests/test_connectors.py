"""Connector sources against the real systems they read: SQLite files and PostgreSQL, an HTTP
API served by its own uvicorn process (api_server.py), and CSV, JSONL and Parquet files; on
threads, worker processes and a Dask cluster. Each run is a real workflow run with its history,
so the cursors are those a user's runs keep."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from parallel_workflow_runtime._connectors.connectors import ConnectorRun
from parallel_workflow_runtime._core.config import ConfigError, ExecutorName, load_config
from parallel_workflow_runtime._core.results import (
    Aggregation,
    SourceError,
    SourceFunction,
    SourceResult,
)
from parallel_workflow_runtime._core.settings import DASK_ADDRESS_ENV, load_settings
from parallel_workflow_runtime._execution.executors import Executors, pooled_specs
from parallel_workflow_runtime._execution.running import on_executor, run_workflow
from parallel_workflow_runtime._store.cursors import CursorStore
from parallel_workflow_runtime._store.history import open_history

from . import connector_sources
from .conftest import FIRST_WORKFLOW, RUNTIME, WORKFLOWS, free_port, user_environment
from .connector_project import connector_project, write_connector_workflow
from .test_executors import WORKER_PATH

TOKEN = "s3cr3t-token-for-tests"


# --- the workflow folder and one run of it ----------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The workflow's folder: its config.yaml and the files its sources read."""
    (tmp_path / "workflow").mkdir()
    return tmp_path / "workflow"


def write_config(folder: Path, *sources: dict[str, Any], **workflow: Any) -> Path:
    path = folder / "config.yaml"
    document = {
        "workflow": {"name": "Connectors", "workflow_id": "connectors", **workflow},
        "sources": list(sources),
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def run(
    config_path: Path,
    *,
    executor: ExecutorName | None = None,
    full_refresh: frozenset[str] | None = None,
    functions: dict[str, Any] | None = None,
    history: bool = True,
) -> Aggregation:
    """One run of the workflow in config_path, recorded in the test's history."""
    config = on_executor(load_config(config_path), executor)
    chosen: dict[str, SourceFunction] = {
        source.id: (functions or {}).get(source.id, connector_sources.collect)
        for source in config.sources
    }
    db = open_history() if history else None
    workflow = WORKFLOWS[FIRST_WORKFLOW].factory(
        db=db, config=config, report_model="", source_functions=chosen
    )

    async def go() -> Any:
        async with Executors() as executors:
            await executors.start(pooled_specs(config, load_settings().dask_address))
            return await run_workflow(
                workflow, "test", db=db, executors=executors, full_refresh=full_refresh
            )

    outcome = asyncio.run(go())
    assert outcome.aggregation is not None, outcome.errors
    return outcome.aggregation


def by_id(aggregation: Aggregation) -> dict[str, SourceResult]:
    return {result.id: result for result in aggregation.sources}


def keys(result: SourceResult) -> list[Any]:
    return list(result.details.get("keys", []))


def stored_cursors() -> dict[str, Any]:
    return {
        cursor.source_id: (cursor.state or {}).get("value")
        for cursor in CursorStore.of(open_history()).all("connectors")
    }


# --- config.yaml ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "sql"}, "sources[0].sql is missing: kind sql reads what it says"),
        (
            {"sql": {"url_env": "X", "table": "t"}},
            "sources[0].sql is read only by kind sql, and this source's kind is python",
        ),
        (
            {"kind": "sql", "sql": {"url_env": "X"}},
            "sources[0].sql needs exactly one of table and query",
        ),
        (
            {"kind": "sql", "sql": {"url_env": "X", "table": "t", "colour": "red"}},
            "sources[0].sql.colour is not a known setting",
        ),
        (
            {"kind": "sql", "sql": {"url_env": "postgresql://u:p@h/db", "table": "t"}},
            "sources[0].sql.url_env must be the name of an environment variable",
        ),
        (
            {"kind": "sql", "sql": {"url": "postgresql://u:p@h/db", "table": "t"}},
            "sources[0].sql.url is not a known setting: a secret is never written in config.yaml",
        ),
        (
            {"kind": "http", "http": {"base_url": "http://x/", "paginator": {"type": "pages"}}},
            "sources[0].http.paginator.type must be one of 'page_number', 'offset', 'cursor',"
            " 'json_link', 'header_link', 'header_cursor', 'single_page', 'auto', got 'pages'",
        ),
        (
            {
                "kind": "http",
                "http": {"base_url": "http://x/", "auth": {"type": "bearer", "token": "abc"}},
            },
            "sources[0].http.auth.token is not a known setting: a secret is never written",
        ),
        (
            {"kind": "http", "http": {"base_url": "http://x/", "headers": {"X-API-Key": "k"}}},
            "sources[0].http.headers must not hold 'X-API-Key'",
        ),
        (
            {"kind": "http", "http": {"base_url": "ftp://x/"}},
            "sources[0].http.base_url must be an http:// or https:// URL, got 'ftp://x/'",
        ),
        (
            {"kind": "file", "file": {"path": "data", "format": "xml"}},
            "sources[0].file.format must be 'csv', 'jsonl' or 'parquet', got 'xml'",
        ),
        ({"kind": "ftp"}, "sources[0].kind must be one of python, sql, http, file, got 'ftp'"),
    ],
)
def test_config_refuses_a_bad_block_in_one_line_that_says_where(
    folder: Path, entry: dict[str, Any], message: str
) -> None:
    path = write_config(folder, {"id": "a", "name": "A", **entry})
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)
    assert "abc" not in str(refused.value) and "u:p@" not in str(refused.value)


def test_string_params_and_a_quoted_initial_value_are_read_by_every_command(
    tmp_path: Path, api_server: str
) -> None:
    """Any string in http.params or a quoted initial_value crashed every command of every
    workflow at 0.8.0 ("TypeError: must be real number, not str"): pydantic applied the
    NaN check of the union's float to its strings too."""
    database = tmp_path / "users.sqlite"
    sqlite_table(database, 15)
    dataset = f"s{os.getpid()}{time.monotonic_ns()}"
    sources = [
        sql_source(initial_value="2026-11-02"),
        http_source("events", api_server, f"{dataset}/pages", params={"sort": "asc"}, **PAGED),
    ]
    _, cli = connector_project(
        tmp_path / "workflows", sources, USERS_URL=f"sqlite:///{database}", API_TOKEN=TOKEN
    )

    listed = cli("list")
    ran = cli("run", "--json")

    assert listed.returncode == 0 and "connectors" in listed.stdout, listed.stderr
    assert ran.returncode == 0, ran.stderr
    records = {s["id"]: s["records"] for s in json.loads(ran.stdout)["sources"]}
    assert records == {"users": 6, "events": 23}  # users from 2026-11-02 on: ids 10 to 15


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_still_refused_in_params_and_initial_value(
    folder: Path, value: float
) -> None:
    for entry, where in [
        (sql_source(initial_value=value), "sources[0].sql.initial_value must be a string,"),
        (
            http_source("events", "http://x", "e", params={"sort": "asc", "n": value}),
            "sources[0].http.params.n must be a string, a number (not NaN or infinite) or"
            " true/false, got",
        ),
    ]:
        with pytest.raises(ConfigError) as refused:
            load_config(write_config(folder, entry))
        assert where in str(refused.value) and "\n" not in str(refused.value)


# --- sql --------------------------------------------------------------------------------------


def sqlite_table(path: Path, rows: int, start: int = 1) -> None:
    """A table `records` of `rows` rows: ids from `start`, ten rows per updated_at day."""
    with sqlite3.connect(path) as database:
        database.execute(
            "CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY, name TEXT,"
            " updated_at TEXT NOT NULL)"
        )
        database.executemany(
            "INSERT INTO records VALUES (?, ?, ?)",
            [(n, f"name {n}", f"2026-11-{1 + n // 10:02d}") for n in range(start, start + rows)],
        )
    # sqlite3's context manager commits but does not close: closed when collected


def sql_source(source_id: str = "users", **block: Any) -> dict[str, Any]:
    return {
        "id": source_id,
        "name": source_id.title(),
        "kind": "sql",
        "sql": {"url_env": "USERS_URL", "table": "records", "cursor": "updated_at", **block},
    }


@pytest.mark.integration
@pytest.mark.parametrize("executor", ["thread", "process"])
def test_sql_reads_every_row_once_over_two_runs_on_a_sqlite_file(
    folder: Path, monkeypatch: pytest.MonkeyPatch, executor: ExecutorName
) -> None:
    database = folder / "users.sqlite"
    sqlite_table(database, 95)
    monkeypatch.setenv("USERS_URL", f"sqlite:///{database}")
    config = write_config(folder, sql_source())

    first = by_id(run(config, executor=executor))["users"]
    # New rows, two of them on the day the first run ended at (rows that share the cursor's
    # last value may still come in, and are read): none of the old ones again.
    sqlite_table(database, 12, start=96)
    second = by_id(run(config, executor=executor))["users"]

    assert (first.ok, second.ok) == (True, True), (first.error, second.error)
    assert keys(first) == list(range(1, 96))
    assert keys(second) == list(range(96, 108))
    assert second.cursor == "2026-11-11"
    assert stored_cursors() == {"users": "2026-11-11"}
    third = by_id(run(config, executor=executor))["users"]
    assert (third.ok, third.records) == (True, 0)


def test_sql_query_and_the_sqlite_file_of_the_offline_demo(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqlite_table(folder / "demo.sqlite", 30)
    monkeypatch.delenv("USERS_URL", raising=False)
    query = "SELECT id, updated_at FROM records WHERE id % 2 = 0"
    config = write_config(folder, sql_source(query=query, table=None, sqlite_file="demo.sqlite"))

    result = by_id(run(config))["users"]

    assert result.ok, result.error
    assert keys(result) == list(range(2, 31, 2))
    assert (folder / "demo.sqlite").stat().st_size > 0
    assert by_id(run(config))["users"].records == 0


@pytest.fixture
def postgres_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """A table of 40 rows in the test PostgreSQL (TEST_DATABASE_URL): its URL and name."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set (scripts/postgres start)")
    from sqlalchemy import create_engine, text

    table = f"records_{os.getpid()}_{time.monotonic_ns()}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(f"CREATE TABLE {table} (id int PRIMARY KEY, updated_at timestamptz NOT NULL)")
        )
        connection.execute(
            text(
                f"INSERT INTO {table} SELECT n, timestamptz '2026-11-01' + n * interval '1 hour'"
                " FROM generate_series(1, 40) AS n"
            )
        )
    yield url, table
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


def test_sql_reads_postgresql_incrementally_with_a_timestamp_cursor(
    folder: Path, monkeypatch: pytest.MonkeyPatch, postgres_table: tuple[str, str]
) -> None:
    url, table = postgres_table
    monkeypatch.setenv("USERS_URL", url)
    config = write_config(folder, sql_source(table=table))
    first = by_id(run(config, executor="process"))["users"]
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(f"INSERT INTO {table} VALUES (41, timestamptz '2026-11-01' + interval '40 hours')")
        )
    engine.dispose()
    second = by_id(run(config))["users"]

    assert first.ok, first.error
    assert keys(first) == list(range(1, 41))
    assert keys(second) == [41]
    assert str(second.cursor).startswith("2026-11-02 16:00:00")


def test_sql_failures_are_one_line_without_the_password_and_fail_only_their_source(
    folder: Path, monkeypatch: pytest.MonkeyPatch, postgres_table: tuple[str, str]
) -> None:
    url, table = postgres_table
    from sqlalchemy.engine import make_url

    good = make_url(url)
    wrong_password = good.set(password="not-the-password-4711").render_as_string(
        hide_password=False
    )
    closed_port = good.set(port=free_port(), password="hunter2-secret").render_as_string(
        hide_password=False
    )
    sqlite_table(folder / "ok.sqlite", 5)
    monkeypatch.setenv("GOOD_URL", url)
    monkeypatch.setenv("WRONG_PASSWORD_URL", wrong_password)
    monkeypatch.setenv("CLOSED_URL", closed_port)
    monkeypatch.setenv("OK_URL", f"sqlite:///{folder / 'ok.sqlite'}")
    config = write_config(
        folder,
        sql_source("wrong_password", url_env="WRONG_PASSWORD_URL", table=table),
        sql_source("unreachable", url_env="CLOSED_URL", table=table),
        sql_source("no_table", url_env="GOOD_URL", table="no_such_table"),
        sql_source("no_column", url_env="GOOD_URL", table=table, cursor="no_such_column"),
        sql_source("unset", url_env="NOT_SET_ANYWHERE_URL"),
        sql_source("fine", url_env="OK_URL"),
        timeout_seconds=30,
    )

    results = by_id(run(config))

    assert results["fine"].ok and results["fine"].records == 5
    errors = {source_id: result.error for source_id, result in results.items() if not result.ok}
    assert set(errors) == {"wrong_password", "unreachable", "no_table", "no_column", "unset"}
    assert "password authentication failed" in str(errors["wrong_password"])
    assert "Connection refused" in str(errors["unreachable"]) or "connect" in str(
        errors["unreachable"]
    )
    assert "no_such_table" in str(errors["no_table"])
    assert "no_such_column" in str(errors["no_column"])
    assert errors["unset"] == (
        "sql.url_env of source 'unset': the environment variable NOT_SET_ANYWHERE_URL is not set"
    )
    for error in errors.values():
        assert error is not None and "\n" not in error
        assert "not-the-password-4711" not in error and "hunter2-secret" not in error
    assert stored_cursors() == {"fine": "2026-11-01"}


def test_schema_drift_fails_the_source_and_keeps_its_cursor(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = folder / "users.sqlite"
    sqlite_table(database, 20)
    monkeypatch.setenv("USERS_URL", f"sqlite:///{database}")
    config = write_config(folder, sql_source())
    assert by_id(run(config))["users"].ok
    before = stored_cursors()
    with sqlite3.connect(database) as connection:
        connection.execute("ALTER TABLE records RENAME COLUMN updated_at TO changed_at")
    connection.close()

    drifted = by_id(run(config))["users"]

    assert not drifted.ok and "updated_at" in str(drifted.error)
    assert stored_cursors() == before


# --- cursors: what moves them, and what does not ------------------------------------------------


def test_a_failed_source_keeps_its_cursor_and_the_next_run_reads_its_rows_again(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = folder / "users.sqlite"
    sqlite_table(database, 30)
    monkeypatch.setenv("USERS_URL", f"sqlite:///{database}")
    config = write_config(folder, sql_source())

    failed = by_id(run(config, functions={"users": connector_sources.fail_after_reading}))
    stopped = by_id(run(config, functions={"users": connector_sources.first_row_only}))
    assert stored_cursors() == {}  # it never got one: no run succeeded
    read = by_id(run(config))["users"]

    assert failed["users"].error == "RuntimeError: processing failed after 30 rows"
    assert stopped["users"].ok and "the cursor stays where it was" in stopped["users"].warnings[0]
    assert keys(read) == list(range(1, 31))


def test_full_refresh_reads_everything_again_and_moves_the_cursor_to_where_it_got(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = folder / "users.sqlite"
    sqlite_table(database, 25)
    monkeypatch.setenv("USERS_URL", f"sqlite:///{database}")
    config = write_config(folder, sql_source())
    run(config)

    refreshed = by_id(run(config, full_refresh=frozenset()))["users"]
    again = by_id(run(config, full_refresh=frozenset({"users"})))["users"]

    assert refreshed.records == again.records == 25
    assert stored_cursors() == {"users": "2026-11-03"}


CONCURRENT_RUN = """
import asyncio, json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.test_connectors import run, keys, by_id
print(json.dumps(keys(by_id(run(Path(sys.argv[1])))["users"])))
"""


@pytest.mark.integration
def test_sixteen_concurrent_runs_on_a_fresh_history_read_each_row_exactly_once(
    folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    database = folder / "users.sqlite"
    sqlite_table(database, 200)
    config = write_config(folder, sql_source())
    environment = user_environment(USERS_URL=f"sqlite:///{database}")
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_RUN, str(config), str(RUNTIME)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for _ in range(16)
    ]
    # Rows come in while the runs run: each must be read by exactly one of them.
    for batch in range(5):
        time.sleep(0.3)
        sqlite_table(database, 10, start=201 + 10 * batch)
    read: list[int] = []
    for process in runs:
        stdout, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, stderr[-2000:]
        read += json.loads(stdout.strip().splitlines()[-1])
    last = by_id(run(config))["users"]  # whatever came in after the last of the 16
    read += keys(last)

    assert sorted(read) == list(range(1, 251))


# --- http: a real API server process ------------------------------------------------------------


@pytest.fixture(scope="module")
def api_server() -> Iterator[str]:
    """api_server.py in a uvicorn process of its own: its base URL."""
    with api_process("127.0.0.1") as base_url:
        yield base_url


@contextlib.contextmanager
def api_process(host: str) -> Iterator[str]:
    """api_server.py in a uvicorn process of its own on `host` (a loopback address): its base
    URL, while it runs."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.api_server:app",
            "--host",
            host,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--timeout-graceful-shutdown",
            "1",
        ],
        cwd=RUNTIME,
        env={**os.environ, "API_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://{host}:{port}"
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=1):
                break
        except OSError:
            time.sleep(0.05)
    else:
        server.kill()
        pytest.fail(f"the test API did not start on {host}")
    try:
        yield base_url
    finally:
        server.terminate()
        server.wait(timeout=15)


def http_source(source_id: str, base_url: str, path: str, **block: Any) -> dict[str, Any]:
    return {
        "id": source_id,
        "name": source_id.title(),
        "kind": "http",
        "http": {"base_url": f"{base_url}/", "path": path, **block},
    }


def add_rows(base_url: str, dataset: str, count: int) -> None:
    request = urllib.request.Request(f"{base_url}/{dataset}/rows?count={count}", method="POST")
    with urllib.request.urlopen(request, timeout=5):
        pass


PAGED = {
    "auth": {"type": "bearer", "token_env": "API_TOKEN"},
    "paginator": {"type": "page_number", "base_page": 1, "total_path": "total_pages"},
    "data_selector": "data",
    "incremental": {"cursor_path": "updated_at", "start_param": "since"},
}


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_http_pages_with_auth_and_reads_only_new_items_the_next_time(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    api_server: str,
    executor: ExecutorName,
) -> None:
    monkeypatch.setenv("API_TOKEN", TOKEN)
    monkeypatch.setenv("API_KEY", TOKEN)
    dataset = f"d{executor}{os.getpid()}"
    config = write_config(
        folder,
        http_source("pages", api_server, f"{dataset}/pages", **PAGED),
        http_source(
            "cursor",
            api_server,
            f"{dataset}c/cursor",
            auth={"type": "api_key", "api_key_env": "API_KEY", "name": "X-API-Key"},
            paginator={"type": "cursor", "cursor_path": "next", "cursor_param": "after"},
            data_selector="items",
        ),
        http_source("linked", api_server, f"{dataset}l/linked", paginator={"type": "header_link"}),
    )

    first = by_id(run(config, executor=executor))
    add_rows(api_server, dataset, 4)
    second = by_id(run(config, executor=executor))

    for source_id in ("pages", "cursor", "linked"):
        assert first[source_id].ok, first[source_id].error
        assert keys(first[source_id]) == list(range(1, 24))
    assert keys(second["pages"]) == [24, 25, 26, 27]
    assert stored_cursors()["pages"] == "2026-11-02T03:00:00"


def test_http_retries_of_dlt_429_with_retry_after_and_a_500_once(
    folder: Path, api_server: str
) -> None:
    dataset = f"r{os.getpid()}{time.monotonic_ns()}"
    config = write_config(
        folder,
        http_source(
            "limited",
            api_server,
            f"{dataset}/limited",
            paginator={"type": "page_number", "base_page": 1, "total_path": "total_pages"},
            data_selector="data",
        ),
        http_source("flaky", api_server, f"{dataset}/flaky", data_selector="data"),
    )

    started = time.monotonic()
    results = by_id(run(config))

    assert results["limited"].ok and results["flaky"].ok, (
        results["limited"].error,
        results["flaky"].error,
    )
    assert keys(results["limited"]) == list(range(1, 24))
    # dlt retried within the one attempt: the engine never had to.
    assert results["limited"].attempts == results["flaky"].attempts == 1
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_http_failures_fail_only_their_source_in_one_line(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    api_server: str,
    executor: ExecutorName,
) -> None:
    monkeypatch.setenv("API_TOKEN", "wrong-token-do-not-show")
    dataset = f"f{executor}{os.getpid()}"
    config = write_config(
        folder,
        http_source("html", api_server, f"{dataset}/html", request_max_attempts=1),
        http_source("malformed", api_server, f"{dataset}/malformed", request_max_attempts=1),
        {**http_source("slow", api_server, f"{dataset}/slow"), "timeout_seconds": 2},
        http_source("unauthorized", api_server, f"{dataset}/pages", **PAGED),
        http_source("unreachable", f"http://127.0.0.1:{free_port()}", "x", request_max_attempts=1),
        http_source("fine", api_server, f"{dataset}/flaky", data_selector="data"),
        timeout_seconds=30,
    )

    started = time.monotonic()
    results = by_id(run(config, executor=executor))
    took = time.monotonic() - started

    assert results["fine"].ok, results["fine"].error
    assert results["slow"].status == "timed_out" and results["slow"].error == "timed out after 2 s"
    errors = {key: str(value.error) for key, value in results.items() if key != "fine"}
    assert "JSON" in errors["html"] or "json" in errors["html"].lower(), errors["html"]
    assert "JSON" in errors["malformed"] or "Expecting" in errors["malformed"]
    assert "401" in errors["unauthorized"]
    assert "refused" in errors["unreachable"].lower() or "connect" in errors["unreachable"]
    for error in errors.values():
        assert "\n" not in error and "wrong-token-do-not-show" not in error
    # The slow page answers after 60 s: the run did not wait for it (25 s seen on `process`
    # under load, where each worker process imports dlt first).
    assert took < 50


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_http_honours_the_proxies_no_proxy_and_netrc_of_the_environment(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    api_server: str,
    executor: ExecutorName,
) -> None:
    """requests' environment is read once per read (http.read_environment_once), not
    on every page: what it reads must still be what requests would have read."""
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login reader password {TOKEN}\n", encoding="utf-8")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("API_PASSWORD", TOKEN)
    dataset = f"e{executor}{os.getpid()}"
    once = {"data_selector": "data", "request_max_attempts": 1}  # a dead proxy: no retries
    config = write_config(
        folder,
        # No auth block: the user and password come from the netrc file, as with requests.
        http_source("netrc", api_server, f"{dataset}/basic", **once),
        http_source(
            "basic",
            api_server,
            f"{dataset}/basic",
            auth={"type": "http_basic", "username": "reader", "password_env": "API_PASSWORD"},
            **once,
        ),
        http_source(
            "plain",
            api_server,
            f"{dataset}/linked",
            paginator={"type": "header_link"},
            request_max_attempts=1,
        ),
    )
    closed_proxy = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HTTP_PROXY", closed_proxy)
    monkeypatch.setenv("http_proxy", closed_proxy)

    through_proxy = by_id(run(config, executor=executor))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    bypassed = by_id(run(config, executor=executor))

    for result in through_proxy.values():
        assert result.status == "failed" and "proxy" in str(result.error).lower(), result.error
    for source_id in ("netrc", "basic", "plain"):
        assert bypassed[source_id].ok, bypassed[source_id].error
    assert keys(bypassed["netrc"]) == keys(bypassed["basic"]) == list(range(1, 24))
    assert keys(bypassed["plain"]) == list(range(1, 24))


# --- file ---------------------------------------------------------------------------------------


def file_source(source_id: str, path: str, glob: str, file_format: str) -> dict[str, Any]:
    return {
        "id": source_id,
        "name": source_id.title(),
        "kind": "file",
        "file": {"path": path, "glob": glob, "format": file_format},
    }


def write_parquet(path: Path, ids: range) -> None:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    pq.write_table(pa.table({"id": list(ids), "value": [n * 1.5 for n in ids]}), path)


@pytest.mark.integration
@pytest.mark.parametrize("executor", ["thread", "process"])
def test_files_of_each_format_and_only_changed_files_the_next_time(
    folder: Path, executor: ExecutorName
) -> None:
    for name in ("csv", "jsonl", "parquet"):
        (folder / name).mkdir()
    (folder / "csv" / "a.csv").write_text("id,value\n1,a\n2,b\n", encoding="utf-8")
    (folder / "jsonl" / "a.jsonl").write_text('{"id": 1}\n{"id": 2}\n{"id": 3}\n')
    write_parquet(folder / "parquet" / "a.parquet", range(1, 5))
    config = write_config(
        folder,
        file_source("csv", "csv", "*.csv", "csv"),
        file_source("jsonl", "jsonl", "*.jsonl", "jsonl"),
        file_source("parquet", "parquet", "*.parquet", "parquet"),
    )

    first = by_id(run(config, executor=executor))
    time.sleep(0.01)  # a modification time after the first files'
    (folder / "csv" / "b.csv").write_text("id,value\n3,c\n", encoding="utf-8")
    (folder / "jsonl" / "b.jsonl").write_text('{"id": 4}\n')
    write_parquet(folder / "parquet" / "b.parquet", range(5, 7))
    second = by_id(run(config, executor=executor))
    third = by_id(run(config, executor=executor))

    assert {key: keys(result) for key, result in first.items()} == {
        "csv": [1, 2], "jsonl": [1, 2, 3], "parquet": [1, 2, 3, 4],
    }  # fmt: skip
    assert {key: keys(result) for key, result in second.items()} == {
        "csv": [3], "jsonl": [4], "parquet": [5, 6],
    }  # fmt: skip
    assert all(result.ok and result.records == 0 for result in third.values())


def test_bad_files_fail_only_their_source_in_one_line(folder: Path) -> None:
    (folder / "bad_csv").mkdir()
    (folder / "bad_csv" / "a.csv").write_text('id,value\n1,"unclosed\n2,b\n', encoding="utf-8")
    (folder / "fake_parquet").mkdir()
    (folder / "fake_parquet" / "a.parquet").write_text("this is not parquet")
    (folder / "empty").mkdir()
    (folder / "good").mkdir()
    (folder / "good" / "a.jsonl").write_text('{"id": 1}\n')
    config = write_config(
        folder,
        file_source("bad_csv", "bad_csv", "*.csv", "csv"),
        file_source("fake_parquet", "fake_parquet", "*.parquet", "parquet"),
        file_source("missing", "no_such_folder", "*.csv", "csv"),
        file_source("empty_glob", "empty", "*.csv", "csv"),
        file_source("good", "good", "*.jsonl", "jsonl"),
    )

    results = by_id(run(config))

    assert results["good"].ok and keys(results["good"]) == [1]
    errors = {key: str(value.error) for key, value in results.items() if key != "good"}
    assert "EOF" in errors["bad_csv"] or "ParserError" in errors["bad_csv"], errors["bad_csv"]
    assert "Parquet" in errors["fake_parquet"] or "parquet" in errors["fake_parquet"]
    assert errors["missing"] == "file: the folder no_such_folder does not exist"
    assert errors["empty_glob"] == "file: no file in empty matches '*.csv'"
    assert all("\n" not in error for error in errors.values())
    assert set(stored_cursors()) == {"good"}


# --- secrets, and Dask ---------------------------------------------------------------------------


def test_secrets_stay_out_of_the_task_the_history_and_the_output(
    folder: Path, monkeypatch: pytest.MonkeyPatch, api_server: str, tmp_path: Path
) -> None:
    monkeypatch.setenv("API_TOKEN", TOKEN)
    config_path = write_config(folder, http_source("pages", api_server, "secret/pages", **PAGED))
    config = load_config(config_path)
    task = ConnectorRun(connector_sources.collect)

    aggregation = run(config_path)

    assert aggregation.sources[0].ok, aggregation.sources[0].error
    assert TOKEN.encode() not in pickle.dumps((task, config.sources[0]))
    assert TOKEN not in aggregation.model_dump_json()
    history_files = b"".join(path.read_bytes() for path in tmp_path.glob("history.sqlite*"))
    assert history_files and TOKEN.encode() not in history_files


@pytest.fixture(scope="module")
def secret_dask_cluster(cluster_processes: Callable[..., str]) -> str:
    """A scheduler and two workers whose environment holds the API token: the only way the
    secret reaches the sources that run there."""
    os.environ["API_TOKEN"] = TOKEN
    try:
        return cluster_processes(2, WORKER_PATH)
    finally:
        del os.environ["API_TOKEN"]


def test_http_sources_on_a_dask_cluster_read_their_secret_from_the_workers(
    folder: Path, monkeypatch: pytest.MonkeyPatch, api_server: str, secret_dask_cluster: str
) -> None:
    monkeypatch.setenv(DASK_ADDRESS_ENV, secret_dask_cluster)
    monkeypatch.delenv("API_TOKEN", raising=False)  # not here: only on the workers
    config = write_config(
        folder,
        http_source("one", api_server, f"k1{os.getpid()}/pages", **PAGED),
        http_source("two", api_server, f"k2{os.getpid()}/pages", **PAGED),
    )

    results = by_id(run(config, executor="dask"))

    assert all(result.ok for result in results.values()), [r.error for r in results.values()]
    assert keys(results["one"]) == keys(results["two"]) == list(range(1, 24))
    assert results["one"].details["pid"] != os.getpid()


def test_where_the_token_is_set_on_the_workers_only_they_read_the_api_not_the_sample(
    folder: Path, monkeypatch: pytest.MonkeyPatch, api_server: str, secret_dask_cluster: str
) -> None:
    """Whether an `http` source reads its sample is decided where it reads: here the token is
    set on the Dask workers, not in the process that runs the workflow and claims the cursor,
    so the workers read the API, and the cursor is kept with the API as its target."""
    monkeypatch.setenv(DASK_ADDRESS_ENV, secret_dask_cluster)
    monkeypatch.delenv("API_TOKEN", raising=False)
    (folder / "data").mkdir()
    (folder / "data" / "events.jsonl").write_text('{"id": 999, "updated_at": "2027-01-01"}\n')
    dataset = f"ks{os.getpid()}"
    config = write_config(
        folder,
        http_source(
            "one", api_server, f"{dataset}/pages", sample_file="data/events.jsonl", **PAGED
        ),
    )

    result = by_id(run(config, executor="dask"))["one"]

    assert result.ok, result.error
    assert (keys(result), result.warnings) == (list(range(1, 24)), [])
    [cursor] = CursorStore.of(open_history()).all("connectors")
    assert (cursor.state or {})["target"] == f"{api_server}/{dataset}/pages, cursor updated_at"


@pytest.mark.integration
def test_history_cursors_and_run_full_refresh_on_the_command_line(
    folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    database = folder / "users.sqlite"
    sqlite_table(database, 15)
    config = write_config(folder, sql_source())
    program = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        import example_project.workflows as workflows
        from parallel_workflow_runtime import Project
        workflows.__path__.append({str(tmp_path / "workflows")!r})
        sys.exit(Project.register("example_project", {str(tmp_path / "workflows")!r}).main())
        """
    )
    target = write_connector_workflow(tmp_path / "workflows", [{"id": "users"}])
    (target / "config.yaml").write_text(config.read_text())
    (target / "users.sqlite").write_bytes(database.read_bytes())
    environment = user_environment(USERS_URL=f"sqlite:///{target / 'users.sqlite'}")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", program, *args],
            capture_output=True, text=True, env=environment, cwd=RUNTIME, timeout=120,
        )  # fmt: skip

    first = cli("run", "--json")
    second = cli("run", "--json")
    refreshed = cli("run", "--json", "--full-refresh", "users")
    unknown = cli("run", "--full-refresh", "nobody")
    cursors = cli("history", "cursors", "--json")
    table = cli("history", "cursors")

    assert first.returncode == 0, first.stderr
    assert [json.loads(r.stdout)["sources"][0]["records"] for r in (first, second, refreshed)] == [
        15, 0, 15,
    ]  # fmt: skip
    assert unknown.returncode == 2
    assert unknown.stderr.strip().endswith(
        "--full-refresh: 'nobody' is not a source of connectors that keeps a cursor;"
        " those that do: users"
    )
    [cursor] = json.loads(cursors.stdout)
    assert (cursor["source_id"], cursor["field"], cursor["value"]) == (
        "users", "updated_at", "2026-11-02",
    )  # fmt: skip
    assert cursor["run_id"] == json.loads(refreshed.stdout)["run_id"]
    assert "users" in table.stdout and "2026-11-02" in table.stdout


def test_a_chunk_moves_the_cursor_exactly_as_its_rows_one_by_one() -> None:
    """CursorTracker.admitted looks at a chunk whole when it can: it must admit the same rows
    and end at the same cursor as admit() row by row, on ascending, shuffled, repeated, None,
    NaN and mixed values, from no start and from a start with rows already seen there."""
    import random

    from parallel_workflow_runtime._connectors.cursor_tracker import encoded, row_key

    generator = random.Random(20)
    pools: list[list[Any]] = [
        list(range(40)),
        [5, 5, 5, 6, 6],
        [None, 3, float("nan"), 4, 4],
        [float("nan"), 1, 2],
        [1, "a"],
        ["2026-11-01", "2026-11-02", "2026-11-02"],
    ]
    for case in range(300):
        pool = pools[case % len(pools)]
        values = [generator.choice(pool) for _ in range(generator.randint(0, 12))]
        if case % 2:
            values.sort(key=lambda value: (str(type(value)), value == value, str(value)))
        rows = [{"id": index, "updated_at": value} for index, value in enumerate(values)]
        chunks: list[list[dict[str, Any]]] = []
        while rows:
            size = generator.randint(0, 5)
            chunks.append(rows[:size])
            rows = rows[size:]
        start = None
        plain_values = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
        if case % 3 == 0 and plain_values and all(isinstance(v, int) for v in pool):
            boundary = generator.choice(plain_values)
            seen = [
                row_key({"id": i, "updated_at": v}) for i, v in enumerate(values) if v == boundary
            ][:1]
            start = {"field": "updated_at", "value": encoded(boundary), "seen": seen}

        assert admitted(chunks, start, whole=True) == admitted(chunks, start, whole=False), (
            values,
            start,
        )


def admitted(
    chunks: list[list[dict[str, Any]]], start: dict[str, Any] | None, whole: bool
) -> tuple[list[Any], Any] | str:
    """The ids a fresh tracker admits from `chunks` and the cursor it ends at, chunk by chunk
    (`whole`) or row by row; the error when values cannot be compared."""
    from parallel_workflow_runtime._connectors.cursor_tracker import CursorTracker

    tracker = CursorTracker("updated_at", start, None)
    kept: list[Any] = []
    try:
        for chunk in chunks:
            kept += tracker.admitted(chunk) if whole else [r for r in chunk if tracker.admit(r)]
    except SourceError as error:
        return str(error)
    return [row["id"] for row in kept], tracker.state()
