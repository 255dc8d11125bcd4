"""What running a source on Dask costs besides the source itself (issue 21): a LocalCluster
of the executor's own, its workers without Dask's statistical profiler, and the starts of the
tasks that start together told to the client together."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from parallel_workflow_runtime._bench.workflow import wait_blocking
from parallel_workflow_runtime._core.config import Source, SourceLimits
from parallel_workflow_runtime._core.results import SourceFunction, SourceSummary
from parallel_workflow_runtime._execution.dask_cluster import DaskExecutor
from parallel_workflow_runtime._execution.dask_worker_tasks import STARTED_TOPIC
from parallel_workflow_runtime._execution.executor_base import CallLimits, ExecutorSpec

# Each test here starts processes or servers (conftest.py: the test pyramid).
pytestmark = pytest.mark.integration

SOURCES = 16


def large(source: Source) -> SourceSummary:
    """A summary too large to travel with the events: it is fetched from its worker."""
    return SourceSummary(records=2, details={"text": "x" * 10_000})


def profiling(dask_worker: Any) -> bool:
    """Runs on a worker: whether Dask's statistical profiler samples its tasks."""
    return "profile" in dask_worker.periodic_callbacks


def test_the_executors_own_cluster_runs_the_sources_and_hears_their_starts_together(
    tmp_path: Path,
) -> None:
    sources = [
        Source(
            id=f"waits_{n}",
            name=f"Waits {n}",
            settings={"latency_seconds": 0.5},
            folder=tmp_path,
            limits=SourceLimits(timeout_seconds=30.0),
        )
        for n in range(SOURCES)
    ]
    functions: list[SourceFunction] = [*[wait_blocking] * (SOURCES - 1), large]
    started: list[float] = []

    async def run() -> tuple[list[Any], list[Any], dict[str, bool]]:
        executor = DaskExecutor(ExecutorSpec("dask", max_workers=2, threads_per_worker=SOURCES))
        await executor.start()
        try:
            assert executor.client is not None and executor.unusable is None
            limits = CallLimits(100_000, print, started=lambda: started.append(time.monotonic()))
            summaries = await asyncio.gather(
                *(
                    executor.call(function, source, limits)
                    for function, source in zip(functions, sources, strict=True)
                )
            )
            events = await executor.client.get_events(STARTED_TOPIC)
            profiled = await executor.client.run(profiling)
            return summaries, list(events), profiled
        finally:
            await executor.close()

    summaries, events, profiled = asyncio.run(asyncio.wait_for(run(), 120))

    assert summaries[:-1] == [{"records": 1, "details": {}}] * (SOURCES - 1)
    assert summaries[-1] == {"records": 2, "details": {"text": "x" * 10_000}}
    assert len(started) == SOURCES  # each attempt's timeout counted from its start
    # Every start and every (small) outcome told once, several to an event: an event each
    # cost the scheduler and the client more than a task did, and fetching each outcome from
    # its worker more again.
    noted = [item for _, items in events for item in items]
    starts = [item for item in noted if isinstance(item, str)]
    ends = [name for name, outcome in (item for item in noted if not isinstance(item, str))]
    assert len(set(starts)) == len(starts) == SOURCES
    assert len(set(ends)) == len(ends) == SOURCES - 1  # not the large one's
    assert set(ends) < set(starts)
    assert len(events) < SOURCES
    # Nobody sees the profile of a cluster without a dashboard: its sampling is not paid for.
    assert profiled and not any(profiled.values())
