"""Running the sources under load and faults: the concurrency cap, timeouts (also of blocking
code), retries with backoff, and no lost result over many runs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from example_project import Aggregation, Source, SourceLimits, SourceSummary

from parallel_workflow_runtime._core.registry import WorkflowEntry
from parallel_workflow_runtime._core.results import SourceFunction, SourceState
from parallel_workflow_runtime._execution.in_process import SOURCE_THREADS, SourceThreads
from parallel_workflow_runtime._execution.progress import LISTENER, SourceEvent
from parallel_workflow_runtime._execution.source_limits import backoff_seconds

from .conftest import user_environment


def synthetic(entry: WorkflowEntry, count: int, **limits: Any) -> tuple[Source, ...]:
    return tuple(
        Source(
            id=f"synthetic_{index}",
            name=f"Synthetic {index}",
            settings={},
            folder=entry.config.path.parent,
            limits=SourceLimits(**limits),
        )
        for index in range(count)
    )


def run_with(
    entry: WorkflowEntry,
    sources: tuple[Source, ...],
    function: SourceFunction | dict[str, SourceFunction],
    max_concurrency: int | None = None,
    listener: Callable[[SourceEvent], None] | None = None,
) -> Aggregation:
    """Run the workflow over `sources`, each running `function` (or its own from a mapping)."""
    config = dataclasses.replace(
        entry.config,
        sources=sources,
        max_concurrency=max_concurrency or entry.config.max_concurrency,
    )
    functions = function if isinstance(function, dict) else {s.id: function for s in sources}
    workflow = entry.factory(config=config, report_model="", source_functions=functions)

    async def run() -> Aggregation:
        LISTENER.set(listener)
        state: dict[str, Any] = {}
        await workflow.arun(input="test", session_state=state)
        return Aggregation.model_validate(state["aggregation"])

    return asyncio.run(run())


class Gauge:
    """Counts how many sources run at the same moment, and the most there ever were."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


def test_max_concurrency_bounds_the_sources_running_at_once(entry: WorkflowEntry) -> None:
    gauge = Gauge()

    async def busy(source: Source) -> SourceSummary:
        with gauge:
            await asyncio.sleep(0.02)
        return SourceSummary(records=1)

    aggregation = run_with(entry, synthetic(entry, 40), busy, max_concurrency=4)

    assert gauge.peak == 4
    assert aggregation.total_sources == 40 and aggregation.failed == []


def test_blocking_sources_run_side_by_side_in_their_own_threads(entry: WorkflowEntry) -> None:
    gauge = Gauge()
    everyone_started = threading.Barrier(12, timeout=10)

    def blocking(source: Source) -> SourceSummary:
        with gauge:
            everyone_started.wait()  # only passes if all 12 block at the same time
            time.sleep(0.05)
        return SourceSummary(records=2)

    aggregation = run_with(entry, synthetic(entry, 12), blocking, max_concurrency=12)

    assert gauge.peak == 12
    assert aggregation.failed == [] and aggregation.total_records == 24


def test_threads_are_reused_across_runs_and_a_stuck_one_is_not_handed_work(
    entry: WorkflowEntry,
) -> None:
    release = threading.Event()
    # The other 11 sources of a run end together, once all of them have started: none frees
    # its thread for another before each has one (on a busy machine, one that ended at once
    # did, and the run used fewer threads than sources).
    all_started = threading.Barrier(11)
    # Thread objects, not idents: the system reuses an ended thread's ident.
    threads_of: dict[str, list[threading.Thread]] = {}

    def blocking(source: Source) -> SourceSummary:
        threads_of.setdefault(source.id, []).append(threading.current_thread())
        if source.id == "synthetic_0" and not release.is_set():
            release.wait(10)  # stuck past its timeout (2 s), in its thread
        else:
            all_started.wait(10)
        return SourceSummary(records=1)

    sources = synthetic(entry, 12, timeout_seconds=2)
    first = run_with(entry, sources, blocking, max_concurrency=12)
    stuck_thread = threads_of["synthetic_0"][0]
    # The first run's threads free again (on a busy machine a thread that has just settled its
    # source takes a moment to be): all but the stuck one, plus any earlier test left idle.
    deadline = time.monotonic() + 10
    while SOURCE_THREADS.free < 11 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert SOURCE_THREADS.free >= 11
    before = set(threading.enumerate())
    second = run_with(entry, sources, blocking, max_concurrency=12)
    release.set()

    assert first.failed == ["synthetic_0"] and second.failed == ["synthetic_0"]
    second_threads = {threads[1] for threads in threads_of.values()}
    # The second run ran on threads that were there already, never on the stuck one; it
    # started one at most, for the stuck one's place.
    assert stuck_thread not in second_threads
    assert len(second_threads - before) <= 1
    assert len(second_threads) == 12  # still one thread per source running at once


def test_a_source_thread_left_idle_ends() -> None:
    threads = SourceThreads()
    threads.IDLE_SECONDS = 0.2
    ran_in: list[threading.Thread] = []
    ran = threading.Event()

    def call() -> None:
        ran_in.append(threading.current_thread())
        ran.set()

    threads.submit(call)
    assert ran.wait(5)
    ran_in[0].join(5)

    assert not ran_in[0].is_alive()
    ran.clear()
    threads.submit(call)  # a call after that starts a thread again
    assert ran.wait(5) and ran_in[1] is not ran_in[0]


def test_a_hanging_source_times_out_and_the_others_complete(entry: WorkflowEntry) -> None:
    sources = synthetic(entry, 3, timeout_seconds=0.3)
    never = threading.Event()

    def hangs(source: Source) -> SourceSummary:
        never.wait()  # a blocking call that does not return, e.g. a socket without a timeout
        return SourceSummary(records=0)

    async def hangs_politely(source: Source) -> SourceSummary:
        await asyncio.Event().wait()
        return SourceSummary(records=0)

    async def quick(source: Source) -> SourceSummary:
        return SourceSummary(records=5)

    aggregation = run_with(
        entry, sources, {"synthetic_0": hangs, "synthetic_1": hangs_politely, "synthetic_2": quick}
    )
    never.set()

    blocked, awaited, fine = aggregation.sources
    for timed_out in (blocked, awaited):
        assert timed_out.status is SourceState.TIMED_OUT and timed_out.ok is False
        assert timed_out.error == "timed out after 0.3 s"
        assert timed_out.seconds >= 0.3
    assert fine.status is SourceState.OK and fine.records == 5
    assert aggregation.failed == ["synthetic_0", "synthetic_1"]


@pytest.mark.integration
def test_the_process_exits_promptly_although_a_blocking_source_still_hangs(
    entry: WorkflowEntry,
) -> None:
    # In a process of its own: a source thread that never returns must not keep it alive.
    script = textwrap.dedent(
        f"""
        import asyncio, dataclasses, json, threading
        from example_project import SourceLimits
        from parallel_workflow_runtime._core.registry import discover

        entry = discover()[{entry.config.workflow_id!r}]
        sources = tuple(
            dataclasses.replace(s, limits=SourceLimits(timeout_seconds=0.5))
            for s in entry.config.sources
        )
        config = dataclasses.replace(entry.config, sources=sources)

        def hangs(source):
            threading.Event().wait()

        functions = dict.fromkeys([s.id for s in sources], hangs)
        workflow = entry.factory(config=config, report_model="", source_functions=functions)
        state = dict()
        asyncio.run(workflow.arun(input="hang", session_state=state))
        print(json.dumps([s["status"] for s in state["aggregation"]["sources"]]))
        """
    )
    # A hang would run into this timeout; the timed-out sources take 0.5 s.
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=user_environment(),  # this project's src/, not whichever copy is installed
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == ["timed_out"] * len(entry.config.sources)


def test_a_flaky_source_is_retried_with_backoff_and_its_attempts_reported(
    entry: WorkflowEntry,
) -> None:
    calls: dict[str, int] = {}

    def fails_twice(source: Source) -> SourceSummary:
        calls[source.id] = calls.get(source.id, 0) + 1
        if calls[source.id] <= 2:
            raise ConnectionResetError("connection reset by peer")
        return SourceSummary(records=7)

    recovers, gives_up = (
        dataclasses.replace(
            source, limits=SourceLimits(retries=retries, retry_backoff_seconds=0.01)
        )
        for source, retries in zip(synthetic(entry, 2), (2, 1), strict=True)
    )
    events: list[SourceEvent] = []

    aggregation = run_with(entry, (recovers, gives_up), fails_twice, listener=events.append)

    first, second = aggregation.sources
    assert (first.status, first.attempts, first.records) == ("ok", 3, 7)
    assert (second.status, second.attempts) == ("failed", 2)
    assert second.error == "ConnectionResetError: connection reset by peer"
    states = [(e.source.id, e.state, e.attempt) for e in events if e.source.id == recovers.id]
    assert states == [
        (recovers.id, "running", 1),
        (recovers.id, "retrying", 1),
        (recovers.id, "running", 2),
        (recovers.id, "retrying", 2),
        (recovers.id, "running", 3),
        (recovers.id, "ok", 3),
    ]


@pytest.mark.parametrize("attempt", [1, 2, 3, 6])
def test_backoff_doubles_with_each_retry_and_is_jittered(attempt: int) -> None:
    ceiling = 0.5 * 2 ** (attempt - 1)
    pauses = [backoff_seconds(0.5, attempt) for _ in range(200)]

    assert all(ceiling / 2 <= pause <= ceiling for pause in pauses)
    assert len(set(pauses)) > 150  # jittered: sources failing together retry apart


def test_no_result_is_lost_over_many_runs_of_many_sources(entry: WorkflowEntry) -> None:
    async def quick(source: Source) -> SourceSummary:
        await asyncio.sleep(0)
        return SourceSummary(records=1)

    def blocking(source: Source) -> SourceSummary:
        return SourceSummary(records=1)

    sources = synthetic(entry, 200)
    functions: dict[str, SourceFunction] = {
        source.id: quick if index % 2 else blocking for index, source in enumerate(sources)
    }
    for _ in range(20):
        aggregation = run_with(entry, sources, functions, max_concurrency=200)
        assert [s.id for s in aggregation.sources] == [s.id for s in sources]
        assert aggregation.total_records == 200 and aggregation.failed == []
