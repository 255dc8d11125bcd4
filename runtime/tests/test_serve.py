"""Serving over HTTP, and one run history for the server and the CLI: in SQLite, and in
PostgreSQL when TEST_DATABASE_URL points at a server. One test starts the real server; the
others ask the same app in this process, which costs a fraction of a second each."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from parallel_workflow_runtime._cli.cli import main
from parallel_workflow_runtime._core.registry import discover
from parallel_workflow_runtime._core.settings import DATABASE_URL_ENV, ServeSettings, load_settings
from parallel_workflow_runtime._serve.http_app import build_app
from parallel_workflow_runtime._store.history import open_history, recent_runs

from .conftest import (
    ENV_PREFIX,
    HISTORY_DB_ENV,
    PROJECT,
    SYNTHETIC_PROGRAM,
    free_port,
    replace_source,
    user_environment,
)

# The runs here check serving and the history, with synthetic sources (conftest.py): never
# what your sources return.
pytestmark = pytest.mark.usefixtures("all_sources_synthetic")

STARTUP_SECONDS = 60
BASE_URL = "http://127.0.0.1:7777"  # as if `serve` listened there: the Host it accepts
WORKFLOW_ID = next(iter(discover()))
RUNS = f"/workflows/{WORKFLOW_ID}/runs"
ROUTES = {
    ("GET", "/health"),
    ("GET", "/workflows"),
    ("GET", "/workflows/{workflow_id}"),
    ("POST", "/workflows/{workflow_id}/runs"),
    ("GET", "/workflows/{workflow_id}/runs/{run_id}"),
    ("GET", "/sessions/{session_id}"),
    ("GET", "/runs/{run_id}/page"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
}


@contextlib.contextmanager
def server(environment: dict[str, str], log: Path) -> Iterator[httpx.Client]:
    """`serve` on a free loopback port, every source synthetic, stopped on the way out;
    `environment` holds the variables to set on top of a user's (see conftest)."""
    port = free_port()
    with log.open("a", encoding="utf-8") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", SYNTHETIC_PROGRAM, "serve", "--port", str(port)],
            cwd=PROJECT,
            env=user_environment(**environment),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _healthy(client):
            assert process.poll() is None, f"the server exited: {log.read_text('utf-8')}"
            assert time.monotonic() < deadline, f"no answer in {STARTUP_SECONDS} s: {log}"
            time.sleep(0.2)
        yield client
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/health").status_code == 200
    except httpx.TransportError:
        return False


def local_client(options: ServeSettings | None = None) -> TestClient:
    """The app `serve` runs, in this process, over this test's history, on 127.0.0.1:7777."""
    return TestClient(build_app(open_history(), options=options), base_url=BASE_URL)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[FastAPI, Any]]:
    """uvicorn's server replaced: each app `serve` hands it, and the address it listens on."""
    apps: list[tuple[FastAPI, Any]] = []

    def run(self: uvicorn.Server, sockets: list[socket.socket]) -> None:
        assert isinstance(self.config.app, FastAPI)
        apps.append((self.config.app, sockets[0].getsockname()))

    monkeypatch.setattr(uvicorn.Server, "run", run)
    return apps


def test_the_server_and_the_cli_share_one_history(
    storage: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = tmp_path / "server.log"
    for name, value in storage.items():
        monkeypatch.setenv(name, value)
    # The real `serve` process over SQLite; over PostgreSQL the same app in this process
    # (a server process costs seconds of CPU, and the database is what differs here).
    real_server = DATABASE_URL_ENV not in storage
    with server(storage, log) if real_server else local_client() as client:
        listed = client.get("/workflows")
        assert sorted(workflow["id"] for workflow in listed.json()) == sorted(discover())
        response = client.post(RUNS, data={"message": "Over HTTP", "stream": "false"})
        assert response.status_code == 200, response.text
        run = response.json()
        assert (run["status"], run["errors"]) == ("COMPLETED", [])
        assert "Request: Over HTTP" in run["content"]
        assert run["aggregation"]["request"] == "Over HTTP"
    if real_server:
        assert "Serving on http://127.0.0.1:" in log.read_text("utf-8")  # loopback by default

    assert main(["run", "From the CLI", "--json", "--workflow", WORKFLOW_ID]) == 0
    cli_run = json.loads(capsys.readouterr().out)

    with local_client() as again:  # a new app: the runs come from the database
        for earlier, request in ((run, "Over HTTP"), (cli_run, "From the CLI")):
            session_id = run_session(earlier)
            read = again.get(f"{RUNS}/{earlier['run_id']}", params={"session_id": session_id})
            assert read.status_code == 200, read.text
            assert read.json()["status"] == "COMPLETED"
            assert f"Request: {request}" in read.json()["content"]
            session = again.get(f"/sessions/{session_id}", params={"type": "workflow"})
            assert session.json()["session_state"]["aggregation"]["request"] == request

    assert main(["history", "--json", "--workflow", WORKFLOW_ID, "--limit", "500"]) == 0
    records = {record["run_id"]: record for record in json.loads(capsys.readouterr().out)}
    assert records[run["run_id"]]["status"] == records[cli_run["run_id"]]["status"] == "COMPLETED"


def run_session(run: dict[str, Any]) -> str:
    """A run's session id: the server answers it, `run --json` leaves it to the history."""
    if "session_id" in run:
        return str(run["session_id"])
    records = recent_runs(open_history(), WORKFLOW_ID, 500)
    return next(record.session_id for record in records if record.run_id == run["run_id"])


def test_only_the_projects_routes_are_mounted() -> None:
    with local_client() as client:
        app = client.app
        assert isinstance(app, FastAPI)
        served = set()
        for route in app.routes:
            assert isinstance(route, APIRoute), route
            served |= {(method, route.path) for method in route.methods or ()}
        assert served == ROUTES
        documented = client.get("/openapi.json").json()["paths"]
        assert {(m.upper(), p) for p, ops in documented.items() for m in ops} == ROUTES - {
            ("GET", "/docs"),
            ("GET", "/openapi.json"),
        }

        run = client.post(RUNS, data={"message": "Keep me"}).json()
        for method, path in [
            ("DELETE", f"/sessions/{run['session_id']}"),
            ("DELETE", "/sessions"),
            ("GET", "/sessions"),
            ("GET", "/memories"),
            ("POST", "/databases/x/migrate"),
            ("POST", f"{RUNS}/{run['run_id']}/cancel"),
        ]:
            assert client.request(method, path).status_code in (404, 405), (method, path)
        assert client.get(f"/sessions/{run['session_id']}").status_code == 200  # still there


def test_a_security_key_guards_every_route_but_health_and_is_never_shown(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    started: list[tuple[FastAPI, Any]],
) -> None:
    key = "test-key-that-must-not-be-shown"
    monkeypatch.setenv("OS_SECURITY_KEY", key)
    assert main(["serve", "--port", str(free_port())]) == 0
    [(app, _)] = started

    with TestClient(app, base_url=BASE_URL) as client:
        for path in ("/workflows", "/docs", "/openapi.json"):
            assert client.get(path).status_code == 401, path
            wrong = client.get(path, headers={"Authorization": "Bearer wrong"})
            right = client.get(path, headers={"Authorization": f"Bearer {key}"})
            assert (wrong.status_code, right.status_code) == (401, 200), path
        assert client.post(RUNS, data={"message": "No key"}).status_code == 401
        assert client.get("/health").status_code == 200
    output = capsys.readouterr()
    assert "Serving on http://127.0.0.1:" in output.out
    assert key not in output.out + output.err


def test_only_the_hosts_this_server_is_reached_by_are_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with local_client() as client:
        for host in ("127.0.0.1:7777", "localhost", "localhost:7777", "[::1]:7777"):
            assert client.get("/workflows", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:7777", "workflows.example.com"):
            assert client.get("/workflows", headers={"Host": host}).status_code == 400, host

    # As settings.yaml's `serve:` section would configure it.
    monkeypatch.setenv(f"{ENV_PREFIX}SERVE", '{"allowed_hosts": ["workflows.example.com"]}')
    with local_client(load_settings().serve) as configured:
        named = {"Host": "workflows.example.com:7777"}
        assert configured.get("/workflows", headers=named).status_code == 200
        assert configured.get("/workflows", headers={"Host": "evil.example"}).status_code == 400


def test_a_post_from_another_site_is_refused_and_runs_nothing() -> None:
    with local_client() as client:
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            refused = client.post(RUNS, data={"message": "Forged"}, headers=headers)
            assert refused.status_code == 403, headers
            assert refused.text.count("\n") == 0 and "refused" in refused.json()["detail"]
        assert recent_runs(open_history(), None, None) == []

        own = client.post(RUNS, data={"message": "Mine"}, headers={"Origin": BASE_URL})
        assert own.status_code == 200 and own.json()["status"] == "COMPLETED"
        assert [record.run_id for record in recent_runs(open_history(), None, None)] == [
            own.json()["run_id"]
        ]


def test_cors_is_off_unless_origins_are_configured() -> None:
    dashboard = {"Origin": "https://dashboard.example.com"}
    with local_client() as client:
        assert "access-control-allow-origin" not in client.get("/health", headers=dashboard).headers
        assert client.post(RUNS, data={"message": "x"}, headers=dashboard).status_code == 403

    options = ServeSettings(cors_origins=["https://dashboard.example.com"])
    with local_client(options) as client:
        answer = client.get("/health", headers=dashboard)
        assert answer.headers["access-control-allow-origin"] == "https://dashboard.example.com"
        evil = client.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in evil.headers
        # Let through to the route, which knows no such workflow.
        unknown = client.post("/workflows/none/runs", data={"message": "x"}, headers=dashboard)
        assert unknown.status_code == 404


def test_stream_true_sends_agnos_events_then_the_run() -> None:
    with local_client() as client:
        response = client.post(RUNS, data={"message": "Streamed", "stream": "true"})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in response.text.strip().split("\n\n"):
        name, data = block.split("\n")
        events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    names = [name for name, _ in events]
    assert names[0] == "WorkflowStarted" and "WorkflowCompleted" in names
    assert names[-1] == "RunOutcome" and names.count("RunOutcome") == 1
    run = events[-1][1]
    assert (run["status"], run["aggregation"]["request"]) == ("COMPLETED", "Streamed")
    assert "Request: Streamed" in run["content"]
    assert run["run_id"] in [record.run_id for record in recent_runs(open_history(), None, None)]


def test_serving_beyond_this_machine_needs_a_key(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    started: list[tuple[FastAPI, Any]],
) -> None:
    monkeypatch.delenv("OS_SECURITY_KEY", raising=False)
    port = str(free_port())
    with monkeypatch.context() as refused:
        refused.setattr(socket.socket, "bind", lambda *args: pytest.fail("it bound a socket"))
        assert main(["serve", "--host", "0.0.0.0", "--port", port]) == 2
    output = capsys.readouterr()
    assert output.err.count("\n") == 1 and "Serving on" not in output.out
    assert "OS_SECURITY_KEY=<a long random secret> or pass --allow-unauthenticated" in output.err

    assert main(["serve", "--host", "0.0.0.0", "--port", port, "--allow-unauthenticated"]) == 0
    assert [address for _, address in started] == [("0.0.0.0", int(port))]
    output = capsys.readouterr()
    assert f"Serving on http://0.0.0.0:{port}" in output.out
    assert "warning: no OS_SECURITY_KEY: anyone who can reach 0.0.0.0" in output.out


@pytest.mark.parametrize("port", ["70000", "0"])
def test_a_port_out_of_range_is_a_usage_error(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--port", port])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert error.splitlines()[-1].endswith(f"argument --port: must be from 1 to 65535, got {port}")
    assert "Traceback" not in error


def test_a_busy_port_is_one_line_and_nothing_claims_to_serve(
    capsys: pytest.CaptureFixture[str], started: list[tuple[FastAPI, Any]]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    output = capsys.readouterr()
    assert output.err.count("\n") == 1 and started == []
    assert f"error: cannot listen on 127.0.0.1:{port}: address already in use" in output.err
    assert "Serving on" not in output.out


def test_history_is_empty_before_the_first_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history"]) == 0
    assert "No runs yet in " in capsys.readouterr().out
    assert not Path(os.environ[HISTORY_DB_ENV]).exists()  # looking did not create it


def test_a_database_url_that_is_not_postgresql_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, "mysql://reports:s3cret@db.internal/reports")

    assert main(["history"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "DATABASE_URL must be a PostgreSQL URL" in error
    assert "s3cret" not in error and "reports:***@db.internal" in error


def test_serving_without_the_serve_extra_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Make `import agno.os` fail as it does where the serve extra is not installed, and
    # forget the app module that this process imported with it.
    monkeypatch.setitem(sys.modules, "agno.os", None)
    monkeypatch.delitem(sys.modules, "parallel_workflow_runtime._serve.http_app", raising=False)

    assert main(["serve", "--port", str(free_port())]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "serving needs the runtime's serve extra: keep serve in the extras of" in error


def test_a_source_that_exits_fails_its_run_and_the_server_keeps_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = discover()[WORKFLOW_ID]

    def exits(source: Any) -> Any:
        sys.exit(3)

    replace_source(monkeypatch, entry, entry.config.sources[0].id, exits)

    with local_client() as client:
        run = client.post(RUNS, data={"message": "Hostile"})
        assert run.status_code == 200
        assert run.json()["status"] == "ERROR"
        failed = run.json()["aggregation"]["sources"][0]
        assert (failed["status"], failed["error"]) == ("failed", "SystemExit: 3")
        assert client.get("/health").status_code == 200  # still serving
        assert client.post(RUNS, data={"message": "Next"}).status_code == 200


def test_reading_a_run_without_its_session_is_a_client_error() -> None:
    with local_client() as client:
        run = client.post(RUNS, data={"message": "Read me"}).json()
        empty = client.get(f"{RUNS}/{run['run_id']}", params={"session_id": ""})
        assert empty.status_code == 422, empty.text
        other = client.get(f"{RUNS}/{run['run_id']}", params={"session_id": "another"})
        assert other.status_code == 404
        assert client.get("/workflows/none/runs/x", params={"session_id": "x"}).status_code == 404
