"""What a source does to the event loop stays its own: a task or callback it leaves running
cannot end the run (or the server), and a source that blocks the loop is the only one timed
out for it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from example_project import Source, SourceSummary

from parallel_workflow_runtime._core.config import SourceLimits
from parallel_workflow_runtime._core.registry import WorkflowEntry
from parallel_workflow_runtime._core.results import SourceFunction, SourceState
from parallel_workflow_runtime._execution.running import execute

from .conftest import (
    FIRST_WORKFLOW,
    PROJECT,
    WORKFLOWS,
    free_port,
    replace_source,
    synthetic_source,
    user_environment,
)

FIRST_ENTRY = next(iter(WORKFLOWS.values()))
RUNS = f"/workflows/{FIRST_ENTRY.config.workflow_id}/runs"


async def leaves_a_task_that_exits(source: Source) -> SourceSummary:
    async def boom() -> None:
        raise SystemExit(5)

    asyncio.get_running_loop().create_task(boom())
    await asyncio.sleep(0.05)
    return SourceSummary(records=1)


async def leaves_a_task_that_interrupts(source: Source) -> SourceSummary:
    async def boom() -> None:
        raise KeyboardInterrupt

    asyncio.get_running_loop().create_task(boom())
    await asyncio.sleep(0.05)
    return SourceSummary(records=1)


async def schedules_an_exit(source: Source) -> SourceSummary:
    asyncio.get_running_loop().call_soon(sys.exit, 6)
    return SourceSummary(records=1)


async def leaves_a_failing_task(source: Source) -> SourceSummary:
    async def boom() -> None:
        raise ValueError("left behind")

    asyncio.get_running_loop().create_task(boom())
    await asyncio.sleep(0.05)
    return SourceSummary(records=1)


def with_sources(
    monkeypatch: pytest.MonkeyPatch,
    functions: dict[int, SourceFunction],
    timeout_seconds: float | None = 60.0,
) -> WorkflowEntry:
    """The first workflow with its first three sources: source i runs `functions[i]` if
    given, else a synthetic one; all under `timeout_seconds`."""
    limits = SourceLimits(timeout_seconds=timeout_seconds)
    sources = tuple(
        dataclasses.replace(source, limits=limits, executor="async")
        for source in FIRST_ENTRY.config.sources[:3]
    )
    for index, source in enumerate(sources):
        replace_source(
            monkeypatch, FIRST_ENTRY, source.id, functions.get(index) or synthetic_source(index + 1)
        )
    config = dataclasses.replace(FIRST_ENTRY.config, sources=sources, report_model="")
    return dataclasses.replace(FIRST_ENTRY, config=config)


@pytest.mark.parametrize(
    ("function", "error"),
    [
        (leaves_a_task_that_exits, "raised SystemExit: 5"),
        (leaves_a_task_that_interrupts, "raised KeyboardInterrupt"),
        (schedules_an_exit, "raised SystemExit: 6"),
        (leaves_a_failing_task, "raised ValueError: left behind"),
    ],
    ids=["task SystemExit", "task KeyboardInterrupt", "call_soon(sys.exit)", "task ValueError"],
)
def test_what_a_source_leaves_on_the_loop_fails_only_that_source(
    monkeypatch: pytest.MonkeyPatch, function: SourceFunction, error: str
) -> None:
    entry = with_sources(monkeypatch, {0: function})

    outcome = execute(entry, "contained")

    assert outcome.aggregation is not None and outcome.exit_code == 1
    first, *others = outcome.aggregation.sources
    assert first.status is SourceState.FAILED
    assert first.error is not None and error in first.error
    assert first.error.startswith("a task or callback it started")
    assert all(other.ok for other in others)


# A fresh process whose first source is hostile (HOSTILE: "exit", a task that raises
# SystemExit; "block", 3 s of blocking code in an async def), the others synthetic.
HOSTILE_PROGRAM = """
import asyncio, importlib, os, sys, time
from example_project import project
main = project.main
from parallel_workflow_runtime._core.registry import discover
from parallel_workflow_runtime._execution.steps import SOURCE_FUNCTION_NAMES
from tests.conftest import synthetic_source

async def leaves_a_task_that_exits(source):
    async def boom():
        raise SystemExit(5)
    asyncio.get_running_loop().create_task(boom())
    await asyncio.sleep(0.05)
    return {"records": 1}

async def blocks_the_loop(source):
    time.sleep(3)
    return {"records": 1}

hostile = {"exit": leaves_a_task_that_exits, "block": blocks_the_loop}[os.environ["HOSTILE"]]
for entry in discover().values():
    for index, source in enumerate(entry.config.sources):
        module = importlib.import_module(f"{entry.package}.sources.{source.id}")
        name = next(name for name in SOURCE_FUNCTION_NAMES if hasattr(module, name))
        setattr(module, name, hostile if index == 0 else synthetic_source(index + 1))
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.integration
def test_the_cli_reports_the_run_when_a_sources_task_exits() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            HOSTILE_PROGRAM,
            "run",
            "--workflow",
            FIRST_WORKFLOW,
            "--json",
            "--executor",
            "async",
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env=user_environment(HOSTILE="exit"),
        timeout=120,
    )

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)
    statuses = [source["status"] for source in document["sources"]]
    assert statuses[0] == "failed" and set(statuses[1:]) == {"ok"}
    assert "SystemExit: 5" in document["sources"][0]["error"]


@contextlib.contextmanager
def hostile_server(
    hostile: str, log: Path
) -> Iterator[tuple[httpx.Client, subprocess.Popen[bytes]]]:
    """`serve` in a fresh process, its first source hostile; stopped on the way out."""
    port = free_port()
    with log.open("a", encoding="utf-8") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", HOSTILE_PROGRAM, "serve", "--port", str(port)],
            cwd=PROJECT,
            env=user_environment(HOSTILE=hostile),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text("utf-8")
            assert time.monotonic() < deadline, log.read_text("utf-8")
            with contextlib.suppress(httpx.TransportError):
                if client.get("/health").status_code == 200:
                    break
            time.sleep(0.2)
        yield client, process
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.integration
def test_the_server_survives_a_sources_task_that_exits(tmp_path: Path) -> None:
    with hostile_server("exit", tmp_path / "serve.log") as (client, process):
        run = client.post(RUNS, data={"message": "Hostile"})
        assert run.status_code == 200, run.text
        failed = run.json()["aggregation"]["sources"][0]
        assert failed["status"] == "failed" and "SystemExit: 5" in failed["error"]
        assert client.get("/health").status_code == 200
        assert process.poll() is None


@pytest.mark.integration
def test_the_server_stays_healthy_while_a_source_blocks_its_loop(tmp_path: Path) -> None:
    with (
        hostile_server("block", tmp_path / "serve.log") as (client, _),
        concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool,
    ):
        run = pool.submit(client.post, RUNS, data={"message": "Blocked"})
        time.sleep(1.0)  # the first source is now holding the runs' loop
        started = time.perf_counter()
        health = client.get("/health")
        answered_in = time.perf_counter() - started
        assert not run.done()
        assert run.result(timeout=60).status_code == 200

    assert health.status_code == 200
    assert answered_in < 1.0, f"/health took {answered_in:.1f} s"


async def blocks_the_loop(source: Source) -> SourceSummary:
    time.sleep(2.0)  # blocking code in an async def: the mistake this test is about
    return SourceSummary(records=1)


async def healthy(source: Source) -> SourceSummary:
    await asyncio.sleep(0.3)
    return SourceSummary(records=2)


def test_only_the_source_that_blocks_the_loop_is_timed_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The healthy source starts first: it is waiting on its sleep when the other blocks.
    entry = with_sources(monkeypatch, {0: healthy, 1: blocks_the_loop}, timeout_seconds=1.0)

    outcome = execute(entry, "blocked")

    assert outcome.aggregation is not None
    waiting, blocker, quick = outcome.aggregation.sources
    assert blocker.status is SourceState.TIMED_OUT, blocker
    assert (waiting.status, waiting.records) == (SourceState.OK, 2), waiting
    assert quick.ok, quick
