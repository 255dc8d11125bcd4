"""What a real `serve` process withstands: clients that never finish their requests, and a
server killed with runs in flight."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from agno.run.base import RunStatus

from parallel_workflow_runtime._core.registry import discover
from parallel_workflow_runtime._store.history import open_history, recent_runs
from parallel_workflow_runtime._store.interrupted_runs import (
    mark_interrupted,
    process_identity,
    runs,
    stand_in,
)

from .conftest import ENV_PREFIX, PROJECT, SYNTHETIC_PROGRAM, free_port, user_environment

# Each test here starts processes or servers (conftest.py: the test pyramid).
pytestmark = pytest.mark.integration

STARTUP_SECONDS = 60
FILE_LIMIT = 256  # the server's open-file limit, soft and hard: it cannot raise it
HALF_SENT = 300  # more connections than that limit allows
RUNS = "/workflows/{}/runs"
# Like SYNTHETIC_PROGRAM, with every source taking ten minutes.
SLOW_PROGRAM = """
import asyncio, importlib, sys
from example_project import project
main = project.main
from parallel_workflow_runtime._core.registry import discover
from parallel_workflow_runtime._execution.steps import SOURCE_FUNCTION_NAMES
async def slow(source):
    await asyncio.sleep(600)
for entry in discover().values():
    for source in entry.config.sources:
        module = importlib.import_module(f"{entry.package}.sources.{source.id}")
        name = next(name for name in SOURCE_FUNCTION_NAMES if hasattr(module, name))
        setattr(module, name, slow)
raise SystemExit(main(sys.argv[1:]))
"""


@contextlib.contextmanager
def serving(
    log: Path, program: str = SYNTHETIC_PROGRAM, file_limit: int | None = None, **environment: str
) -> Iterator[tuple[httpx.Client, int, subprocess.Popen[bytes]]]:
    """`serve` run by `program`, with an open-file limit of `file_limit` if given; killed on
    the way out."""
    port = free_port()

    def limited() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (file_limit, file_limit))

    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", program, "serve", "--port", str(port)],
            cwd=PROJECT,
            env=user_environment(**environment),
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=limited,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not healthy(client):
            assert process.poll() is None, f"the server exited: {log.read_text('utf-8')}"
            assert time.monotonic() < deadline, f"no answer in {STARTUP_SECONDS} s: {log}"
            time.sleep(0.2)
        yield client, port, process
    finally:
        client.close()
        process.kill()
        process.wait()


def healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/health").status_code == 200
    except httpx.TransportError:
        return False


def closed_by_the_server(connection: socket.socket) -> bool:
    connection.setblocking(False)
    try:
        return connection.recv(1024) == b""
    except BlockingIOError:
        return False  # still open, nothing to read
    except ConnectionResetError:
        return True


def test_half_sent_requests_are_closed_in_time_and_health_still_answers(tmp_path: Path) -> None:
    # This test holds HALF_SENT sockets itself.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * HALF_SENT:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4 * HALF_SENT, hard), hard))
    log = tmp_path / "server.log"
    timeouts = json.dumps({"header_timeout_seconds": 1, "body_timeout_seconds": 1})
    settings = {f"{ENV_PREFIX}SERVE": timeouts}
    with serving(log, file_limit=FILE_LIMIT, **settings) as (client, port, _):
        base = f"http://127.0.0.1:{port}"
        workflow_id = client.get("/workflows").json()[0]["id"]
        lines_before = log.read_bytes().count(b"\n")
        half_sent = []
        for _ in range(HALF_SENT):
            connection = socket.create_connection(("127.0.0.1", port))
            connection.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
            half_sent.append(connection)
        # Headers complete, then a body that never ends.
        slow_body = socket.create_connection(("127.0.0.1", port))
        slow_body.sendall(
            f"POST {RUNS.format(workflow_id)} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
            + b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
            + b"message="
        )
        half_sent.append(slow_body)
        try:
            # New connections, as the client's own one is older than the half-sent ones.
            started = time.monotonic()
            assert httpx.get(f"{base}/health", timeout=5).status_code == 200
            assert time.monotonic() - started < 2
            run = httpx.post(
                base + RUNS.format(workflow_id),
                data={"message": "Still served"},
                timeout=30,
            )
            assert run.status_code == 200 and run.json()["status"] == "COMPLETED"

            deadline = time.monotonic() + 10
            still_open = half_sent
            while still_open and time.monotonic() < deadline:
                time.sleep(0.2)
                still_open = [c for c in still_open if not closed_by_the_server(c)]
            assert still_open == [], f"{len(still_open)} of {len(half_sent)} are still open"
        finally:
            for connection in half_sent:
                connection.close()
        assert healthy(client)
    after = log.read_bytes()
    assert b"Too many open files" not in after
    assert after.count(b"\n") - lines_before < 10, after[-3000:].decode("utf-8", "replace")


def test_runs_in_flight_when_the_server_is_killed_are_failed_at_its_restart(
    tmp_path: Path,
) -> None:
    log = tmp_path / "server.log"
    workflow_id = next(iter(discover()))
    body = b"message=Cut+short"
    request = (
        f"POST {RUNS.format(workflow_id)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with serving(log, SLOW_PROGRAM) as (_, port, process):
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        for client in clients:
            client.sendall(request)  # no answer awaited: the sources take ten minutes
        deadline = time.monotonic() + 10
        while len(runs(open_history(), status=RunStatus.running)) < 20:
            assert time.monotonic() < deadline, "the runs did not start"
            time.sleep(0.1)
        process.kill()  # SIGKILL: nothing of the server runs after it
        process.wait()
        for client in clients:
            client.close()

    with serving(log):
        pass
    records = recent_runs(open_history(), None, None)
    assert [record.status for record in records] == ["ERROR"] * 20
    stored = runs(open_history(), status=RunStatus.error)
    assert all("interrupted" in row["run_data"]["content"] for row in stored)
    assert "20 run(s) left running by a server that stopped" in log.read_text("utf-8")


def test_only_the_runs_of_a_dead_server_on_this_host_are_marked() -> None:
    db = open_history()
    entry = next(iter(discover().values()))
    workflow = entry.factory(db=db, config=entry.config)
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(ended.stdout)
    identities = {
        "this process": process_identity(),
        "its pid, another start": {**process_identity(), "started": "1"},
        "a process that ended": process_identity(dead_pid),
        "another host's": {**process_identity(dead_pid), "host": "another-host"},
    }
    with contextlib.ExitStack() as stack:
        run_ids = {
            name: stack.enter_context(stand_in(db, "w", workflow.deep_copy(), identity))
            for name, identity in identities.items()
        }
        assert mark_interrupted(db) == 2
        statuses = {row["run_id"]: row["status"] for row in runs(db)}
        assert {name: statuses[run_id] for name, run_id in run_ids.items()} == {
            "this process": "RUNNING",
            "its pid, another start": "ERROR",
            "a process that ended": "ERROR",
            "another host's": "RUNNING",
        }
    assert runs(db) == []  # each stand-in goes once its run is over
