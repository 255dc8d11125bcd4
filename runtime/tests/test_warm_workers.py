"""The process executor's workers under a real `serve` and `run`: forked by a fork server that
imported the workflows' code (warm_start.py), kept by `serve` across its runs, replaced when a
timed-out source's worker is stopped, gone when the server stops, shared by concurrent runs,
and running a source's code as it is on disk now (fresh_code.py).

The project here is one of the tests' own, in a temporary folder, so that a test can edit a
source between two runs: the bench's CPU project (bench --executor-start) with a workflow
`versions` whose sources say which version of their code ran, and where, and a workflow
`stuck` whose source hangs past its timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from parallel_workflow_runtime._bench.executor_start import PACKAGE, write_project
from parallel_workflow_runtime._core.settings import DATABASE_URL_ENV

from .conftest import free_port, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="reads the processes' tree in /proc"
    ),
]

WORKERS = 2
SOURCE = """
import os, sys, time
from pathlib import Path

IMPORTED_IN = os.getpid()  # the fork server's, when it imported this module first
VERSION = {version}


def run(source):
    folder = Path(os.environ["WARM_TEST_FOLDER"])
    (folder / f"running-{{os.getpid()}}").write_text(source.id)
    try:
        time.sleep(0.2)
        running = len(list(folder.glob("running-*")))
    finally:
        (folder / f"running-{{os.getpid()}}").unlink()
    return {{"records": 1, "details": {{
        "version": VERSION, "pid": os.getpid(), "running": running,
        "preloaded": IMPORTED_IN != os.getpid(),
    }}}}
"""
STUCK = """
import os, time
from pathlib import Path


def run(source):
    Path(os.environ["WARM_TEST_FOLDER"], "stuck").write_text(str(os.getpid()))
    time.sleep(600)
"""


def project_environment(src: Path, folder: Path) -> dict[str, str]:
    """The test project's commands' environment: its history in the test's folder."""
    return {
        **{name: value for name, value in os.environ.items() if name != DATABASE_URL_ENV},
        "PYTHONPATH": str(src),
        "WARM_TEST_FOLDER": str(folder),
        "AGNO_TELEMETRY": "false",
        f"{PACKAGE.upper()}_HISTORY_DB": str(folder.parent / "history.sqlite"),
    }


def write_test_project(folder: Path) -> Path:
    """The bench's project with the workflows `versions` and `stuck`; its src folder."""
    src = write_project(folder)
    workflows = src / PACKAGE / "workflows"
    for name, sources, code in (("versions", 4, SOURCE), ("stuck", 1, STUCK)):
        (workflows / name / "sources").mkdir(parents=True)
        (workflows / name / "__init__.py").write_text("")
        (workflows / name / "sources" / "__init__.py").write_text("")
        workflow = (workflows / "cpu" / "workflow.py").read_text().replace("get_cpu", f"get_{name}")
        (workflows / name / "workflow.py").write_text(workflow)
        entries = "".join(f'  - id: "s{n}"\n    name: "S{n}"\n' for n in range(1, sources + 1))
        (workflows / name / "config.yaml").write_text(
            f'workflow:\n  name: "{name}"\n  workflow_id: "{name}"\n  report_model: ""\n'
            f"  max_workers: {WORKERS}\n  timeout_seconds: 3\n  executor: process\n"
            f"sources:\n{entries}"
        )
        for n in range(1, sources + 1):
            (workflows / name / "sources" / f"s{n}.py").write_text(code.format(version=1))
    return src


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    client: httpx.Client
    folder: Path  # where the sources note what they do
    src: Path

    def run(self, workflow: str) -> dict[str, Any]:
        response = self.client.post(f"/workflows/{workflow}/runs", data={"message": "warm"})
        assert response.status_code == 200, response.text
        aggregation: dict[str, Any] = response.json()["aggregation"]
        return aggregation

    def fork_server(self) -> int:
        (pid,) = [pid for pid in children(self.process.pid) if "forkserver" in cmdline(pid)]
        return pid

    def workers(self) -> set[int]:
        """The pool's workers: what the fork server forked and still runs."""
        return {pid for pid in children(self.fork_server()) if running(pid)}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    src = write_test_project(tmp_path / "project")
    folder = tmp_path / "notes"
    folder.mkdir()
    port = free_port()
    environment = project_environment(src, folder)
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", PACKAGE, "serve", "--port", str(port)],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
    try:
        wait_until(lambda: process.poll() is not None or healthy(client), 60, "the server")
        assert process.poll() is None, (tmp_path / "server.log").read_text()
        yield Server(process, client, folder, src)
    finally:
        client.close()
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        process.kill()
        process.wait()
        log.close()


def healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/health").status_code == 200
    except httpx.TransportError:
        return False


def children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def by_source(aggregation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {source["id"]: source for source in aggregation["sources"]}


def test_serve_keeps_its_workers_and_an_edited_source_runs_its_new_code(server: Server) -> None:
    workers = server.workers()
    first = server.run("versions")
    source_file = server.src / PACKAGE / "workflows" / "versions" / "sources" / "s1.py"
    source_file.write_text(SOURCE.format(version=2))
    second = server.run("versions")

    assert first["failed"] == second["failed"] == []
    assert len(workers) == WORKERS
    # Each source ran in one of the pool's workers, kept from the server's start on.
    for aggregation in (first, second):
        assert {s["details"]["pid"] for s in aggregation["sources"]} <= workers
    assert server.workers() == workers
    # The workers' fork server had imported the sources: no worker imported them itself.
    assert all(source["details"]["preloaded"] for source in first["sources"])
    assert {s["id"]: s["details"]["version"] for s in first["sources"]} == {
        "s1": 1,
        "s2": 1,
        "s3": 1,
        "s4": 1,
    }
    assert {s["id"]: s["details"]["version"] for s in second["sources"]} == {
        "s1": 2,
        "s2": 1,
        "s3": 1,
        "s4": 1,
    }


def test_the_fork_server_runs_no_thread(server: Server) -> None:
    server.run("versions")
    assert len(list(Path(f"/proc/{server.fork_server()}/task").iterdir())) == 1


def test_a_timed_out_source_is_stopped_and_its_worker_replaced(server: Server) -> None:
    workers = server.workers()
    (stuck,) = server.run("stuck")["sources"]
    worker = int((server.folder / "stuck").read_text())

    assert (stuck["status"], stuck["error"]) == ("timed_out", "timed out after 3 s")
    assert worker in workers
    wait_until(lambda: not running(worker), 30, "the stuck source's worker to stop")

    def all_there() -> set[int] | None:
        found = server.workers()
        return found if len(found) == WORKERS else None

    replaced = wait_until(all_there, 30, "a new worker in its place")
    assert worker not in replaced
    assert len(replaced & workers) == WORKERS - 1
    after = server.run("versions")
    assert after["failed"] == []
    assert {source["details"]["pid"] for source in after["sources"]} <= replaced


def test_concurrent_runs_share_the_pool_within_its_workers(server: Server) -> None:
    workers = server.workers()
    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=lambda: results.append(server.run("versions"))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert len(results) == 3 and all(result["failed"] == [] for result in results)
    sources = [source for result in results for source in result["sources"]]
    assert {source["details"]["pid"] for source in sources} <= workers
    # Never more sources running at once than the pool has workers, whatever the runs.
    assert max(source["details"]["running"] for source in sources) <= WORKERS
    assert server.workers() == workers


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_no_worker_outlives_the_server(server: Server, signum: int) -> None:
    server.run("versions")
    fork_server = server.fork_server()
    processes = {fork_server, *server.workers()}
    assert len(processes) == WORKERS + 1

    server.process.send_signal(signum)  # a service manager's stop, Ctrl-C
    server.process.wait(timeout=60)

    wait_until(
        lambda: not any(running(pid) for pid in processes), 10, "the server's processes to end"
    )


# config.yaml's executor (the fork server started once the run has read it), and --executor
# (started first thing, reading config.yaml itself).
@pytest.mark.parametrize("options", [[], ["--executor", "process"]])
def test_run_forks_its_workers_from_a_fork_server_that_imported_the_sources(
    tmp_path: Path, options: list[str]
) -> None:
    src = write_test_project(tmp_path / "project")
    folder = tmp_path / "notes"
    folder.mkdir()
    environment = project_environment(src, folder)
    command = [sys.executable, "-m", PACKAGE, "run", "--workflow", "versions", "--json", *options]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)

    assert finished.returncode == 0, finished.stderr
    sources = json.loads(finished.stdout)["sources"]
    assert [source["status"] for source in sources] == ["ok"] * 4
    assert all(source["details"]["preloaded"] for source in sources)


def test_ctrl_c_on_run_leaves_no_worker_nor_fork_server(tmp_path: Path) -> None:
    src = write_test_project(tmp_path / "project")
    config = src / PACKAGE / "workflows" / "stuck" / "config.yaml"
    config.write_text(config.read_text().replace("timeout_seconds: 3", "timeout_seconds: 600"))
    folder = tmp_path / "notes"
    folder.mkdir()
    environment = project_environment(src, folder)
    run = subprocess.Popen(
        [sys.executable, "-m", PACKAGE, "run", "--workflow", "stuck", "--executor", "process"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a terminal's foreground group, which Ctrl-C signals
    )
    try:
        wait_until(lambda: (folder / "stuck").exists() or run.poll() is not None, 120, "start")
        worker = int((folder / "stuck").read_text())
        (fork_server,) = [pid for pid in children(run.pid) if "forkserver" in cmdline(pid)]
        os.killpg(run.pid, signal.SIGINT)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()

    assert (run.returncode, stderr) == (130, "interrupted\n")
    wait_until(lambda: not running(worker) and not running(fork_server), 10, "the workers to end")
