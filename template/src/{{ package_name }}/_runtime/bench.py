"""`python -m <package> bench`: what running the sources through the workflow costs.

Synthetic sources that only wait (`asyncio.sleep`, or `time.sleep` in a thread for blocking
ones) run through this project's Agno workflow, with its concurrency cap, timeouts and
aggregation, and through a bare `asyncio.gather` of the same waits under the same cap, the
least any runner needs. The ideal is the time the waits take when nothing else costs anything.
"Sequential" is the sum of the sources' own times, as measured in the workflow's runs; with
`sequential=True` the sources are also run one after another, which takes that long.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from rich.console import Console
from rich.table import Table

from .config import Source, SourceLimits
from .execution import call_source
from .registry import WorkflowEntry
from .results import Aggregation, SourceFunction, SourceSummary

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchSettings:
    sources: int = 200
    latencies: Sequence[float] = (0.2,)  # seconds per source, repeated over the sources
    max_concurrency: int | None = None  # None: all sources at once
    repeat: int = 5
    source_kind: Literal["async", "sync"] = "async"
    sequential: bool = False  # also run the sources one after another (slow: their sum)


class BenchResults(TypedDict):
    sources: int
    latencies: list[float]
    max_concurrency: int | None
    repeat: int
    source_kind: str
    ideal_seconds: float
    sequential_seconds: float  # the median of the runs' sums of the sources' own times
    measured_sequential_seconds: float | None  # one run one after another, when asked for
    workflow_seconds: float  # the median of `repeat` runs, Preparation to Report
    raw_gather_seconds: float  # the median of `repeat` runs
    workflow_runs: list[float]
    raw_gather_runs: list[float]
    wall_over_ideal: float
    workflow_over_raw: float
    results_per_run: list[int]  # how many sources each workflow run aggregated


def bench_sources(entry: WorkflowEntry, settings: BenchSettings) -> tuple[Source, ...]:
    latencies = [settings.latencies[i % len(settings.latencies)] for i in range(settings.sources)]
    return tuple(
        Source(
            id=f"bench_{index:04d}",
            name=f"Bench source {index}",
            settings={"latency_seconds": latency},
            folder=entry.config.path.parent,
            limits=SourceLimits(timeout_seconds=None),
        )
        for index, latency in enumerate(latencies, start=1)
    )


def run_bench(
    entry: WorkflowEntry, settings: BenchSettings, progress: Progress | None = None
) -> BenchResults:
    """Time each way `settings.repeat` times; `progress` hears a line after each run."""
    say = progress or (lambda line: None)
    sources = bench_sources(entry, settings)
    cap = settings.max_concurrency or len(sources)
    wait = waiting_source(settings.source_kind)
    config = dataclasses.replace(entry.config, sources=sources, max_concurrency=cap)
    # "": the offline report, whatever model is configured: the bench times orchestration.
    workflow = entry.factory(
        config=config, report_model="", source_functions={source.id: wait for source in sources}
    )
    workflow_runs: list[float] = []
    raw_runs: list[float] = []
    aggregations: list[Aggregation] = []
    for run in range(1, settings.repeat + 1):
        elapsed, aggregation = asyncio.run(through_workflow(workflow))
        workflow_runs.append(elapsed)
        aggregations.append(aggregation)
        raw_runs.append(asyncio.run(through_raw_gather(wait, sources, cap)))
        say(f"run {run}/{settings.repeat}: workflow {elapsed:.3f} s, raw {raw_runs[-1]:.3f} s")
    latencies = [float(source.settings["latency_seconds"]) for source in sources]
    measured = None
    if settings.sequential:
        say(f"one source after another, about {sum(latencies):.0f} s ...")
        measured = round(asyncio.run(sequentially(wait, sources)), 4)
    ideal = ideal_seconds(latencies, cap)
    return summarise(settings, ideal, workflow_runs, raw_runs, aggregations, measured)


async def through_workflow(workflow: Any) -> tuple[float, Aggregation]:
    state: dict[str, Any] = {}
    started = time.perf_counter()
    await workflow.arun(input="bench", session_state=state)
    return time.perf_counter() - started, Aggregation.model_validate(state["aggregation"])


async def through_raw_gather(wait: SourceFunction, sources: Sequence[Source], cap: int) -> float:
    slots = asyncio.Semaphore(cap)

    async def limited(source: Source) -> SourceSummary:
        async with slots:
            result: SourceSummary = await call_source(wait, source)
            return result

    started = time.perf_counter()
    await asyncio.gather(*(limited(source) for source in sources))
    return time.perf_counter() - started


async def sequentially(wait: SourceFunction, sources: Sequence[Source]) -> float:
    started = time.perf_counter()
    for source in sources:
        await call_source(wait, source)
    return time.perf_counter() - started


def summarise(
    settings: BenchSettings,
    ideal: float,
    workflow_runs: list[float],
    raw_runs: list[float],
    aggregations: list[Aggregation],
    measured_sequential: float | None,
) -> BenchResults:
    workflow_median = statistics.median(workflow_runs)
    raw_median = statistics.median(raw_runs)
    return BenchResults(
        sources=settings.sources,
        latencies=list(settings.latencies),
        max_concurrency=settings.max_concurrency,
        repeat=settings.repeat,
        source_kind=settings.source_kind,
        ideal_seconds=round(ideal, 4),
        sequential_seconds=round(statistics.median(a.sequential_seconds for a in aggregations), 4),
        measured_sequential_seconds=measured_sequential,
        workflow_seconds=round(workflow_median, 4),
        raw_gather_seconds=round(raw_median, 4),
        workflow_runs=[round(seconds, 4) for seconds in workflow_runs],
        raw_gather_runs=[round(seconds, 4) for seconds in raw_runs],
        wall_over_ideal=round(workflow_median / ideal, 3),
        workflow_over_raw=round(workflow_median / raw_median, 3),
        results_per_run=[a.total_sources - len(a.failed) for a in aggregations],
    )


def ideal_seconds(latencies: Sequence[float], cap: int) -> float:
    """How long the waits take on `cap` slots, each source starting as soon as one is free."""
    slots = [0.0] * min(cap, len(latencies))
    for latency in latencies:
        heapq.heapreplace(slots, slots[0] + latency)
    return max(slots)


def print_bench(console: Console, results: BenchResults) -> None:
    cap = results["max_concurrency"] or "none"
    latencies = "/".join(f"{latency:g}" for latency in results["latencies"])
    console.print(
        f"{results['sources']} {results['source_kind']} sources of {latencies} s, cap {cap}, "
        f"medians of {results['repeat']} runs"
    )
    ideal, raw = results["ideal_seconds"], results["raw_gather_seconds"]
    ways = [("sequential (sum of the sources' times)", results["sequential_seconds"])]
    if results["measured_sequential_seconds"] is not None:
        ways.append(("sequential (measured, 1 run)", results["measured_sequential_seconds"]))
    ways += [("workflow (Agno arun)", results["workflow_seconds"]), ("raw asyncio.gather", raw)]
    table = Table("way", "seconds", "× ideal", "× raw gather")
    table.add_row("ideal", f"{ideal:.3f}", "1.00", "")
    for way, seconds in ways:
        table.add_row(way, f"{seconds:.3f}", f"{seconds / ideal:.2f}", f"{seconds / raw:.2f}")
    console.print(table)
    complete = sum(count == results["sources"] for count in results["results_per_run"])
    console.print(
        f"wall/ideal {results['wall_over_ideal']:.3f}, workflow/raw "
        f"{results['workflow_over_raw']:.3f}; every source's result aggregated in "
        f"{complete} of {len(results['results_per_run'])} workflow runs"
    )


def waiting_source(kind: Literal["async", "sync"]) -> SourceFunction:
    """A source that only waits its `latency_seconds`: as a coroutine, or blocking."""
    if kind == "async":

        async def wait_async(source: Source) -> SourceSummary:
            await asyncio.sleep(source.settings["latency_seconds"])
            return SourceSummary(records=1)

        return wait_async

    def wait_blocking(source: Source) -> SourceSummary:
        time.sleep(source.settings["latency_seconds"])
        return SourceSummary(records=1)

    return wait_blocking
