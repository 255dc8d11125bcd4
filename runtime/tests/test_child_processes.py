"""No process that a source starts outlives `run` or `serve`: a forked child, a program it
started and left running, a program in a session of its own (see _runtime/children.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from example_project import Source, SourceSummary

from parallel_workflow_runtime._core.registry import WorkflowEntry

from .conftest import PROJECT, free_port, user_environment

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="only Linux has a subreaper (see children.py)"
    ),
]


# The sources of these tests, each leaving a process that would run for 70 minutes, its pid
# in a file of `folder` named after the source. Module-level: worker processes import them.
# One source starts its process at a time. A fork made in one thread while another thread's
# subprocess.Popen waits for its program to start inherits the pipe that Popen waits on, and
# that Popen then waits until the forked copy exits: a hazard of forking a program that runs
# threads (Python 3.12 warns of it), not what these tests are about.
STARTING = threading.Lock()


def forks(folder: str, source: Source) -> SourceSummary:
    with STARTING:
        child = os.fork()
    if child == 0:  # the copy of this process: it sleeps, then leaves without cleaning up
        try:
            time.sleep(4243)
        finally:  # the copy ran on: not ended by a signal, something raised in it
            ran_on(folder, source).write_text("the forked copy ran on", encoding="utf-8")
        os._exit(0)
    note_process(folder, source, child)
    return SourceSummary(records=1)


def ran_on(folder: str, source: Source) -> Path:
    """Where the forked copy of a source says that it ran on instead of ending."""
    return Path(folder).with_name(f"ran-on-{source.id}")


def starts_a_program(folder: str, source: Source) -> SourceSummary:
    with STARTING:
        child = subprocess.Popen(["sleep", "4243"])
    note_process(folder, source, child.pid)
    return SourceSummary(records=1)


def starts_a_session(folder: str, source: Source) -> SourceSummary:
    """What `setsid sleep 4243` does: out of its parent's process group and session."""
    with STARTING:
        child = subprocess.Popen(["sleep", "4243"], start_new_session=True)
    note_process(folder, source, child.pid)
    return SourceSummary(records=1)


# The command line with the i-th source of every workflow running the i-th of these (in turn).
LEAVING_PROGRAM = """
import functools, importlib, sys
from example_project import project
main = project.main
from parallel_workflow_runtime._core.registry import discover
from parallel_workflow_runtime._execution.steps import SOURCE_FUNCTION_NAMES
from tests.test_child_processes import forks, starts_a_program, starts_a_session
if __name__ == "__main__":
    leaving = [forks, starts_a_program, starts_a_session]
    for entry in discover().values():
        for index, source in enumerate(entry.config.sources):
            module = importlib.import_module(f"{entry.package}.sources.{source.id}")
            name = next(name for name in SOURCE_FUNCTION_NAMES if hasattr(module, name))
            function = leaving[index % len(leaving)]
            setattr(module, name, functools.partial(function, sys.argv[1]))
    raise SystemExit(main(sys.argv[2:]))
"""


def leaving_command(folder: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", LEAVING_PROGRAM, str(folder), *args]


def note_process(folder: str, source: Source, pid: int) -> None:
    """The process a source started, as its pid and when it started: a pid that the system
    gives to another process once this one is gone is not taken for it."""
    (Path(folder) / source.id).write_text(f"{pid} {started_at(pid)}")


def started_at(pid: int) -> str:
    """When `pid` started (field 22 of /proc/<pid>/stat, in clock ticks since boot)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "gone"


def noted_process(path: Path) -> tuple[int, str]:
    pid, started = path.read_text().split()
    return int(pid), started


def running(process: tuple[int, str]) -> bool:
    """Whether the noted process runs; a zombie (exited, not yet reaped) does not, nor a
    process that got its pid after it was gone."""
    pid, started = process
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z" and fields[19] == started


@contextlib.contextmanager
def left_processes(folder: Path) -> Iterator[dict[str, int]]:
    """The pids the sources wrote to `folder`, by source id, read on the way out; any of
    them still running after the test is killed, so that a failing test leaves none."""
    pids: dict[str, int] = {}
    try:
        yield pids
    finally:
        for path in folder.iterdir():
            process = noted_process(path)
            pids[path.name] = process[0]
            if running(process):
                os.kill(process[0], signal.SIGKILL)


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_run_leaves_no_process_that_a_source_started(
    entry: WorkflowEntry, executor: str, tmp_path: Path
) -> None:
    folder = tmp_path / "pids"
    folder.mkdir()
    with left_processes(folder) as pids:
        command = leaving_command(folder, "run", "--workflow", entry.config.workflow_id)
        # To a file, not a pipe: a process left behind holds the pipe open, and reading it to
        # its end would wait for that process too.
        with (tmp_path / "output").open("w") as output:
            finished = subprocess.run(
                [*command, "--executor", executor],
                cwd=PROJECT,
                env=user_environment(),
                stdout=output,
                stderr=output,
                timeout=60,
            )
        assert finished.returncode == 0, (tmp_path / "output").read_text()
        still_running = {
            path.name: noted_process(path)[0]
            for path in folder.iterdir()
            if running(noted_process(path))
        }
    assert len(pids) == len(entry.config.sources)
    assert still_running == {}
    # The copies that sources forked were ended by the SIGTERM the run sent them: none ran on
    # as a copy of the runtime (which ran the next queued source in it, whose program then
    # outlived the run).
    assert sorted(path.name for path in tmp_path.glob("ran-on-*")) == []


def test_serve_leaves_no_process_behind_and_its_port_free(
    entry: WorkflowEntry, tmp_path: Path
) -> None:
    folder = tmp_path / "pids"
    folder.mkdir()
    port = free_port()
    with left_processes(folder) as pids:
        server = subprocess.Popen(
            leaving_command(folder, "serve", "--port", str(port)),
            cwd=PROJECT,
            env=user_environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                deadline = time.monotonic() + 60
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if client.get("/health").status_code == 200:
                            break
                    assert server.poll() is None and time.monotonic() < deadline
                    time.sleep(0.2)
                runs = f"/workflows/{entry.config.workflow_id}/runs"
                response = client.post(runs, data={"message": "leave", "stream": "false"})
                assert response.status_code == 200, response.text
        finally:
            server.terminate()  # as Ctrl-C or a service manager stops it
            server.wait(timeout=30)
        started = [noted_process(path) for path in folder.iterdir()]
        still_running = [pid for pid, since in started if running((pid, since))]
        with socket.socket() as again:  # a new server can listen there, as `serve` does
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", port))
            again.listen()
    assert len(pids) == len(entry.config.sources)
    assert still_running == []
