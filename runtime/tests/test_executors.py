"""The executors: sources in worker processes and on a real Dask cluster (a scheduler and two
workers started here as separate processes), every limit and failure kept to its source, and
an async def that blocks the event loop named."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import example_project.workflows
import pytest
import yaml
from agno.workflow import Workflow
from example_project import Aggregation, Source, SourceLimits, SourceSummary
from fastapi.testclient import TestClient

from parallel_workflow_runtime._cli.cli import main
from parallel_workflow_runtime._core.config import ConfigError, ExecutorName, load_config
from parallel_workflow_runtime._core.registry import WorkflowEntry, discover
from parallel_workflow_runtime._core.results import SourceFunction, SourceState
from parallel_workflow_runtime._core.settings import DASK_ADDRESS_ENV
from parallel_workflow_runtime._execution.steps import load_source_function
from parallel_workflow_runtime._observe.report import render_report
from parallel_workflow_runtime._serve.http_app import build_app
from parallel_workflow_runtime._store.history import open_history

from .conftest import (
    FIRST_WORKFLOW,
    PACKAGE,
    PROJECT,
    RUNTIME,
    SRC,
    cli,
    free_port,
    replace_source,
    user_environment,
)

# Dask workers started here find the project, and these tests' own sources, by name.
WORKER_PATH = os.pathsep.join([str(SRC), str(RUNTIME)])


def run_on(
    entry: WorkflowEntry,
    executor: ExecutorName,
    functions: dict[str, SourceFunction],
    *,
    timeout_seconds: float | None = 30.0,
    retries: int = 0,
    settings: dict[str, Any] | None = None,
) -> Aggregation:
    """One run of the workflow with a source per function, all on `executor`."""
    workflow = workflow_on(entry, executor, functions, timeout_seconds, retries, settings)
    state: dict[str, Any] = {}
    asyncio.run(asyncio.wait_for(workflow.arun(input="test", session_state=state), 120))
    return Aggregation.model_validate(state["aggregation"])


def workflow_on(
    entry: WorkflowEntry,
    executor: ExecutorName,
    functions: dict[str, SourceFunction],
    timeout_seconds: float | None = 30.0,
    retries: int = 0,
    settings: dict[str, Any] | None = None,
) -> Workflow:
    """The workflow with a source per function, all on `executor`."""
    sources = tuple(
        Source(
            id=source_id,
            name=source_id.replace("_", " ").title(),
            settings=settings or {},
            folder=entry.config.path.parent,
            limits=SourceLimits(
                timeout_seconds=timeout_seconds, retries=retries, retry_backoff_seconds=0.01
            ),
            executor=executor,
        )
        for source_id in functions
    )
    config = dataclasses.replace(entry.config, sources=sources, max_workers=2)
    return entry.factory(config=config, report_model="", source_functions=functions)


# The sources of these tests: module-level functions, which a worker process imports by name.
def compute(source: Source) -> SourceSummary:
    """0.2 s of CPU in a pure-Python loop, and where it ran."""
    until = time.thread_time() + 0.2
    while time.thread_time() < until:
        pass
    return SourceSummary(records=1, details={"pid": os.getpid()})


def exits(source: Source) -> SourceSummary:
    sys.exit(3)


def dies(source: Source) -> SourceSummary:
    os._exit(5)


class Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("cannot travel")
        self.handle = lambda: None  # a lambda does not pickle


def raises_unpicklable(source: Source) -> SourceSummary:
    raise Unpicklable()


def returns_nan(source: Source) -> SourceSummary:
    return SourceSummary(records=1, details={"mean": math.nan})


def fails_once(source: Source) -> SourceSummary:
    marker = Path(source.settings["folder"]) / f"{source.id}.tried"
    if not marker.exists():
        marker.touch()
        raise RuntimeError("first attempt fails")
    return SourceSummary(records=2)


def hangs_with_a_child(source: Source) -> SourceSummary:
    """Starts a program that would run for 10 minutes, then waits for it."""
    folder = Path(source.settings["folder"])
    child = subprocess.Popen(["sleep", "600"])
    (folder / "pids.json").write_text(json.dumps([os.getpid(), child.pid]))
    child.wait()
    return SourceSummary(records=1)


def sleeps(source: Source) -> SourceSummary:
    time.sleep(60)
    return SourceSummary(records=1)


def counts(source: Source) -> SourceSummary:
    return SourceSummary(records=7, details={"pid": os.getpid()})


def counts_slowly(source: Source) -> SourceSummary:
    """`counts`, but long enough that a worker running it cannot take another source."""
    time.sleep(0.3)
    return counts(source)


async def blocks_the_loop(source: Source) -> SourceSummary:
    time.sleep(0.6)  # blocking code in an async def: the mistake being detected
    return SourceSummary(records=1)


async def awaits(source: Source) -> SourceSummary:
    await asyncio.sleep(0.05)
    return SourceSummary(records=1)


def says_started_then_sleeps(folder: str, source: Source) -> SourceSummary:
    """Leaves a file named after the source in `folder` as it starts, then takes 3 s."""
    (Path(folder) / source.id).touch()
    time.sleep(3)
    return SourceSummary(records=1)


def takes_a_second(source: Source) -> SourceSummary:
    time.sleep(1.0)
    return SourceSummary(records=1)


def dies_the_first_time(source: Source) -> SourceSummary:
    """Ends its worker's process half a second into its first run; returns the next."""
    marker = Path(source.settings["folder"]) / f"{source.id}.ran"
    if not marker.exists():
        marker.touch()
        time.sleep(0.5)
        os._exit(1)
    return SourceSummary(records=1)


def runs_for_three_seconds(source: Source) -> SourceSummary:
    """Takes 3 s, each run noted in a file of its own in the folder of its settings."""
    with (Path(source.settings["folder"]) / source.id).open("a") as runs:
        runs.write("ran\n")
    time.sleep(3.0)
    return SourceSummary(records=1)


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is not running either.
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(") ")[-1].startswith("Z"))


@pytest.mark.integration
def test_process_executor_runs_cpu_bound_sources_in_worker_processes(
    entry: WorkflowEntry,
) -> None:
    aggregation = run_on(entry, "process", {f"cpu_{n}": compute for n in range(4)})

    assert aggregation.failed == []
    pids = {result.details["pid"] for result in aggregation.sources}
    assert os.getpid() not in pids
    assert len(pids) == 2  # max_workers: two at once, each in a process of its own


@pytest.mark.integration
def test_process_executor_keeps_each_failure_to_its_source(
    entry: WorkflowEntry, tmp_path: Path
) -> None:
    def closure(source: Source) -> SourceSummary:  # a local function cannot be pickled
        return SourceSummary(records=1)

    functions: dict[str, SourceFunction] = {
        "exits": exits,
        "dies": dies,
        "unpicklable": raises_unpicklable,
        "nan": returns_nan,
        "closure": closure,
        "flaky": fails_once,
        "fine": counts,
    }
    aggregation = run_on(entry, "process", functions, retries=1, settings={"folder": str(tmp_path)})

    results = {result.id: result for result in aggregation.sources}
    assert results["exits"].error == "SystemExit: 3"
    assert results["dies"].error == "its worker process died (exit code 5)"
    assert results["unpicklable"].error == "Unpicklable: cannot travel"
    assert results["nan"].error == "details must be JSON: NaN and Infinity are not"
    assert (results["closure"].error or "").startswith("cannot run in a worker process:")
    assert (results["flaky"].status, results["flaky"].attempts) == (SourceState.OK, 2)
    assert (results["fine"].status, results["fine"].records) == (SourceState.OK, 7)
    assert sorted(aggregation.failed) == ["closure", "dies", "exits", "nan", "unpicklable"]


@pytest.mark.integration
def test_a_timed_out_process_source_leaves_nothing_running(
    entry: WorkflowEntry, tmp_path: Path
) -> None:
    started = time.perf_counter()
    aggregation = run_on(
        entry,
        "process",
        {"hangs": hangs_with_a_child},
        # Time for a fresh worker to import this module (and the package) under load: 5 s
        # was too short for the floors' install while the whole suite ran.
        timeout_seconds=10.0,
        settings={"folder": str(tmp_path)},
    )

    assert time.perf_counter() - started < 45  # the source would wait 600 s
    (result,) = aggregation.sources
    assert (result.status, result.error) == (SourceState.TIMED_OUT, "timed out after 10 s")
    worker, child = json.loads((tmp_path / "pids.json").read_text())
    deadline = time.monotonic() + 10
    while (running(worker) or running(child)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(worker), "the worker process still runs"
    assert not running(child), "the program the source started still runs"


@pytest.mark.integration
def test_a_source_module_that_does_not_import_fails_with_its_own_error_on_process(
    entry: WorkflowEntry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What stands in for a module that does not import travels to a worker process, and
    `raise BaseException` at import fails only its source, as any other exception does."""
    folder = tmp_path / "workflows" / "broken_imports"
    (folder / "sources").mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "sources" / "__init__.py").write_text("")
    package = example_project.workflows
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path / "workflows")])
    modules = {
        "raises": "raise RuntimeError('no credentials')\n",
        "base": "x = 1\nraise BaseException('at import')\n",
    }
    for source_id, code in modules.items():
        (folder / "sources" / f"{source_id}.py").write_text(code, encoding="utf-8")
    config = dataclasses.replace(entry.config, path=folder / "config.yaml")
    source = entry.config.sources[0]
    functions = {
        source_id: load_source_function(config, dataclasses.replace(source, id=source_id))
        for source_id in modules
    }

    aggregation = run_on(entry, "process", functions)

    assert {result.id: result.error for result in aggregation.sources} == {
        "raises": "sources/raises.py line 1: RuntimeError: no credentials",
        "base": "sources/base.py line 2: BaseException: at import",
    }


@pytest.mark.integration
def test_serve_keeps_one_process_pool_for_its_lifetime(monkeypatch: pytest.MonkeyPatch) -> None:
    workflow_id, entry = next(iter(discover().items()))
    for source in entry.config.sources:
        replace_source(monkeypatch, entry, source.id, counts_slowly)

    app = build_app(open_history(), executor="process")
    with TestClient(app, base_url="http://127.0.0.1:7777") as client:
        runs = [
            client.post(f"/workflows/{workflow_id}/runs", data={"message": f"run {n}"})
            for n in range(2)
        ]
    pids: list[set[int]] = []
    for run in runs:
        assert run.status_code == 200 and run.json()["status"] == "COMPLETED", run.text
        pids.append({source["details"]["pid"] for source in run.json()["aggregation"]["sources"]})
    assert os.getpid() not in pids[0]
    # The pool started with the server: both runs used the same worker processes.
    assert pids[1] == pids[0]


def test_an_async_source_that_blocks_the_event_loop_is_named(entry: WorkflowEntry) -> None:
    aggregation = run_on(entry, "async", {"blocker": blocks_the_loop, "polite": awaits})
    results = {result.id: result for result in aggregation.sources}
    assert results["blocker"].status == SourceState.OK
    (warning,) = results["blocker"].warnings
    assert warning.startswith("blocked the event loop for 0.")
    assert "belongs in a plain def run" in warning
    assert results["polite"].warnings == []
    report = render_report(aggregation)
    assert "## Warnings" in report and "Blocker (`blocker`): blocked the event loop" in report

    # Past its timeout, which could not stop it while it held the loop: timed out.
    aggregation = run_on(entry, "async", {"blocker": blocks_the_loop}, timeout_seconds=0.3)
    assert aggregation.sources[0].status == SourceState.TIMED_OUT


def test_executor_mistakes_are_one_line_errors(
    entry: WorkflowEntry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    workflow = ["--workflow", entry.config.workflow_id]
    # The project's own sources are plain def: they cannot be awaited on the event loop.
    assert main(["run", *workflow, "--executor", "async"]) == 2
    assert "executor async needs an async def run" in capsys.readouterr().err
    # No distributed extra installed: what to install.
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now fails
    assert main(["run", *workflow, "--executor", "dask"]) == 2
    assert "executor: dask needs the runtime's distributed extra" in capsys.readouterr().err
    # A misspelt executor in config.yaml.
    document = yaml.safe_load(entry.config.path.read_text())
    document["sources"][0]["executor"] = "processes"
    broken = tmp_path / "config.yaml"
    broken.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError) as refused:
        load_config(broken)
    assert "sources[0].executor must be one of thread, async, process, dask, or null" in str(
        refused.value
    )


@pytest.fixture(scope="module")
def dask_cluster(cluster_processes: Any) -> tuple[str, set[int]]:
    """A scheduler and two workers with this project importable: the address, the workers' pids."""
    from distributed import Client

    address: str = cluster_processes(2, WORKER_PATH)
    with Client(address, timeout=30) as client:
        pids = set(client.run(os.getpid).values())
    return address, pids


@pytest.fixture
def on_dask_cluster(
    dask_cluster: tuple[str, set[int]], monkeypatch: pytest.MonkeyPatch
) -> tuple[str, set[int]]:
    """dask_cluster, as the scheduler that `executor: dask` reaches (DASK_ADDRESS_ENV)."""
    monkeypatch.setenv(DASK_ADDRESS_ENV, dask_cluster[0])
    return dask_cluster


def test_dask_runs_the_sources_on_the_cluster_workers(
    entry: WorkflowEntry, on_dask_cluster: tuple[str, set[int]]
) -> None:
    _, worker_pids = on_dask_cluster

    aggregation = run_on(entry, "dask", {f"count_{n}": counts for n in range(6)})

    assert aggregation.failed == []
    pids = {result.details["pid"] for result in aggregation.sources}
    assert pids <= worker_pids and os.getpid() not in pids
    assert aggregation.total_records == 6 * 7


def test_the_outcomes_stay_out_of_the_event_log_of_anothers_dask_scheduler(
    entry: WorkflowEntry, on_dask_cluster: tuple[str, set[int]]
) -> None:
    """Only the tasks' starts go through the events of a scheduler that others may share: its
    last events stay readable there. On a LocalCluster of the run's own, the outcomes go that
    way too (test_dask_overhead.py)."""
    from distributed import Client

    from parallel_workflow_runtime._execution.dask_worker_tasks import STARTED_TOPIC

    address, _ = on_dask_cluster

    aggregation = run_on(entry, "dask", {f"count_{n}": counts for n in range(4)})

    assert aggregation.failed == []
    with Client(address, timeout=30) as client:
        events = client.get_events(STARTED_TOPIC)
    noted = [item for _, items in events for item in items]
    assert len(noted) >= 4 and all(isinstance(item, str) for item in noted)


def test_dask_submits_the_sources_together_and_one_that_does_not_travel_fails_alone(
    entry: WorkflowEntry, on_dask_cluster: tuple[str, set[int]]
) -> None:
    _, worker_pids = on_dask_cluster
    held = threading.Lock()

    def holds_a_lock(source: Source) -> SourceSummary:  # cloudpickle cannot take the lock
        with held:
            return SourceSummary(records=1)

    functions: dict[str, SourceFunction] = {f"count_{n}": counts for n in range(5)}
    aggregation = run_on(entry, "dask", {**functions, "lock": holds_a_lock})

    results = {result.id: result for result in aggregation.sources}
    assert aggregation.failed == ["lock"]
    assert results["lock"].error == (
        "cannot be sent to the Dask cluster: TypeError: cannot pickle '_thread.lock' object"
    )
    assert {results[f"count_{n}"].details["pid"] for n in range(5)} <= worker_pids


def test_dask_gives_the_results_that_threads_give(
    entry: WorkflowEntry, dask_cluster: tuple[str, set[int]]
) -> None:
    address, _ = dask_cluster
    on_threads = cli("run", "--workflow", entry.config.workflow_id, "--json")
    on_dask = cli(
        "run",
        "--workflow",
        entry.config.workflow_id,
        "--json",
        "--executor",
        "dask",
        **{DASK_ADDRESS_ENV: address},
    )
    assert (on_threads.returncode, on_dask.returncode) == (0, 0), on_dask.stderr

    def outcome(document: dict[str, Any]) -> list[tuple[str, str, int, dict[str, Any]]]:
        return [(s["id"], s["status"], s["records"], s["details"]) for s in document["sources"]]

    assert outcome(json.loads(on_dask.stdout)) == outcome(json.loads(on_threads.stdout))


def test_a_timed_out_dask_source_does_not_keep_its_worker_busy(
    entry: WorkflowEntry, on_dask_cluster: tuple[str, set[int]]
) -> None:
    from distributed import Client

    address, _ = on_dask_cluster
    started = time.perf_counter()
    aggregation = run_on(entry, "dask", {"sleeps": sleeps}, timeout_seconds=1.0)

    assert time.perf_counter() - started < 40  # the source would sleep 60 s
    assert aggregation.sources[0].status == SourceState.TIMED_OUT
    with Client(address, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)  # the stuck worker's nanny restarted it
        assert not any(client.call_stack().values()), "a worker still runs the source"


# A cluster's processes where the project is not installed, whatever this machine has: an
# empty PYTHONPATH is not enough, as an installed project (`pip install -e .` writes a .pth
# file into site-packages) is importable from any process. Python runs a sitecustomize module
# found on PYTHONPATH at the start of every process, a Dask nanny's worker processes included:
# this one makes importing the project fail as it does where it is not installed.
WITHOUT_THE_PROJECT = """
import sys


class WithoutTheProject:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] == {package!r}:
            raise ModuleNotFoundError("No module named " + repr(name), name=name)
        return None


sys.meta_path.insert(0, WithoutTheProject)
"""


def test_dask_without_the_project_installed_fails_the_sources_in_one_line(
    entry: WorkflowEntry, cluster_processes: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "sitecustomize.py").write_text(WITHOUT_THE_PROJECT.format(package=PACKAGE))
    address = cluster_processes(1, str(tmp_path))
    monkeypatch.setenv(DASK_ADDRESS_ENV, address)

    aggregation = run_on(entry, "dask", {"counts": counts}, timeout_seconds=None)

    (result,) = aggregation.sources
    assert result.status == SourceState.FAILED
    assert f"cannot import {PACKAGE}" in (result.error or "")
    assert "install this project where the scheduler and every worker run" in (result.error or "")


@pytest.mark.integration
def test_an_unreachable_scheduler_stops_the_run_before_any_source(entry: WorkflowEntry) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    refused = cli(
        "run",
        "--workflow",
        entry.config.workflow_id,
        "--executor",
        "dask",
        **{DASK_ADDRESS_ENV: address, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"},
    )
    assert refused.returncode == 2
    assert refused.stdout == ""  # no summary: no source ran
    (line,) = refused.stderr.strip().splitlines()
    assert f"cannot reach the Dask scheduler at {address}" in line

    # `serve` finds it out before it listens.
    refused = cli(
        "serve",
        "--port",
        str(free_port()),
        "--executor",
        "dask",
        **{DASK_ADDRESS_ENV: address, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"},
    )
    assert refused.returncode == 2 and "Serving on" not in refused.stdout
    (line,) = refused.stderr.strip().splitlines()
    assert f"cannot reach the Dask scheduler at {address}" in line


# The command line with every source of every workflow `says_started_then_sleeps`.
SLEEPING_PROGRAM = """
import functools, importlib, sys
from example_project import project
main = project.main
from parallel_workflow_runtime._core.registry import discover
from parallel_workflow_runtime._execution.steps import SOURCE_FUNCTION_NAMES
from tests.test_executors import says_started_then_sleeps
for entry in discover().values():
    for source in entry.config.sources:
        module = importlib.import_module(f"{entry.package}.sources.{source.id}")
        name = next(name for name in SOURCE_FUNCTION_NAMES if hasattr(module, name))
        setattr(module, name, functools.partial(says_started_then_sleeps, sys.argv[1]))
raise SystemExit(main(sys.argv[2:]))
"""


def test_a_scheduler_killed_mid_run_is_one_line_naming_the_failed_sources(
    entry: WorkflowEntry, cluster_processes: Any, tmp_path: Path
) -> None:
    from distributed import Client

    address = cluster_processes(1, WORKER_PATH)  # a cluster of its own: this test kills it
    with Client(address, timeout=30) as client:
        scheduler_pid = client.run_on_scheduler(os.getpid)
    source_ids = [source.id for source in entry.config.sources]
    command = [
        sys.executable,
        "-c",
        SLEEPING_PROGRAM,
        str(tmp_path),
        "run",
        "--workflow",
        FIRST_WORKFLOW,
        "--json",
    ]
    environment = user_environment(**{DASK_ADDRESS_ENV: address})
    with subprocess.Popen(
        [*command, "--workflow", entry.config.workflow_id, "--executor", "dask"],
        cwd=PROJECT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as run:
        # Those that max_concurrency lets start at once: the others are queued behind them,
        # and start (and fail at once) when the scheduler is gone.
        first_wave = source_ids[: entry.config.max_concurrency]
        deadline = time.monotonic() + 60
        while not all((tmp_path / source_id).exists() for source_id in first_wave):
            assert time.monotonic() < deadline and run.poll() is None, "the sources never started"
            time.sleep(0.05)
        os.kill(scheduler_pid, signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=60)

    assert run.returncode == 1
    (line,) = stderr.strip().splitlines()
    assert f"lost the Dask scheduler at {address}" in line
    assert all(source_id in line for source_id in source_ids), line
    errors = {source["id"]: source["error"] for source in json.loads(stdout)["sources"]}
    assert errors == dict.fromkeys(source_ids, f"lost the Dask scheduler at {address}")


def test_time_queued_in_the_cluster_does_not_count_against_the_timeout(
    entry: WorkflowEntry, cluster_processes: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One worker thread: the three sources of 1 s each run one after another, the last one
    # queued for 2 s, longer than its timeout of 1.8 s.
    monkeypatch.setenv(DASK_ADDRESS_ENV, cluster_processes(1, WORKER_PATH, threads=1))
    functions: dict[str, SourceFunction] = {f"second_{n}": takes_a_second for n in range(3)}

    aggregation = run_on(entry, "dask", functions, timeout_seconds=1.8)

    assert {result.id: result.error for result in aggregation.sources} == dict.fromkeys(functions)


def test_a_task_that_dask_runs_again_is_counted_as_an_attempt(
    entry: WorkflowEntry, cluster_processes: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A worker that dies while running a task (here the task ends it) makes Dask run the task
    again elsewhere: that second run is not hidden inside one attempt."""
    monkeypatch.setenv(DASK_ADDRESS_ENV, cluster_processes(2, WORKER_PATH))
    settings = {"folder": str(tmp_path)}

    aggregation = run_on(entry, "dask", {"dies": dies_the_first_time}, retries=1, settings=settings)

    (result,) = aggregation.sources
    assert (result.status, result.attempts) == (SourceState.OK, 2)
    assert result.timing is not None
    assert [attempt.state for attempt in result.timing.attempts] == [
        SourceState.FAILED,  # its worker stopped: Dask's re-run of it was refused
        SourceState.OK,
    ]


def test_a_stuck_source_of_one_run_does_not_make_dask_rerun_another_runs_sources(
    entry: WorkflowEntry, cluster_processes: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Run A's stuck source and run B's healthy ones share a worker: the worker is restarted
    to stop A's source only once B's have finished, so that Dask does not run them again
    (which took them 10 s instead of 3 s)."""
    from distributed import Client

    address = cluster_processes(1, WORKER_PATH)
    monkeypatch.setenv(DASK_ADDRESS_ENV, address)
    with Client(address, timeout=30) as client:
        # This module imported on the worker beforehand, so that A's source starts at once.
        client.run(importlib.import_module, sleeps.__module__)
    run_a = workflow_on(entry, "dask", {"stuck": sleeps}, timeout_seconds=1.0)
    healthy: dict[str, SourceFunction] = {f"healthy_{n}": runs_for_three_seconds for n in range(2)}
    run_b = workflow_on(entry, "dask", healthy, settings={"folder": str(tmp_path)})
    states: tuple[dict[str, Any], dict[str, Any]] = ({}, {})

    async def both() -> None:
        await asyncio.gather(
            run_a.arun(input="A", session_state=states[0]),
            run_b.arun(input="B", session_state=states[1]),
        )

    asyncio.run(asyncio.wait_for(both(), 120))

    a, b = (Aggregation.model_validate(state["aggregation"]) for state in states)
    assert [result.status for result in a.sources] == [SourceState.TIMED_OUT]
    assert [(result.status, result.attempts) for result in b.sources] == [(SourceState.OK, 1)] * 2
    runs = {source_id: (tmp_path / source_id).read_text().count("ran") for source_id in healthy}
    assert runs == dict.fromkeys(healthy, 1)


def test_bench_on_dask_times_a_bare_client_map_on_the_same_cluster(
    entry: WorkflowEntry,
    on_dask_cluster: tuple[str, set[int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    workflow = ["--workflow", entry.config.workflow_id]
    arguments = ["--sources=8", "--latency=0.05", "--repeat=2", "--kind=sync", "--executor=dask"]

    assert main(["bench", *workflow, *arguments, "--json"]) == 0
    printed = capsys.readouterr()
    dask = {executor["executor"]: executor for executor in json.loads(printed.out)["executors"]}
    assert main(["bench", *workflow, *arguments]) == 0
    table = capsys.readouterr().out

    assert "bare_map_seconds" not in dask["thread"]
    assert len(dask["dask"]["bare_map_runs"]) == 2
    assert dask["dask"]["bare_map_seconds"] >= 0.05  # 8 waits of 0.05 s on 2 workers × 4 threads
    assert dask["dask"]["workflow_over_bare_map"] == pytest.approx(
        dask["dask"]["workflow_seconds"] / dask["dask"]["bare_map_seconds"], rel=0.01
    )
    assert printed.err.count("bare client.map ") == 2
    assert "bare client.map, same cluster" in table
    assert "dask: the workflow / a bare client.map of the same waits on the same cluster" in table
