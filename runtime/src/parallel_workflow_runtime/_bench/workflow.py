"""`python -m <package> bench`: what running the sources through the workflow costs.

Synthetic sources that wait (`asyncio.sleep`; `time.sleep` for blocking ones) or compute
(`--kind cpu`: a pure-Python loop for that much CPU time) run through this project's Agno
workflow, with its concurrency cap, timeouts and aggregation, on each executor asked for
(and on `thread`, which every speed-up is compared with), and through a bare
`asyncio.gather` of the same sources under the same cap, the least any runner needs. The
ideal is the time they take when nothing else costs anything (CPU work: spread over the
CPUs). "Sequential" is the sum of the sources' own times, as measured in the workflow's runs;
with `sequential=True` the sources are also run one after another, which takes that long. A
pool's or cluster's start-up is timed apart from the runs, as a server pays it only once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import statistics
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from parallel_workflow_runtime._bench.results import BenchResults, ideal_seconds, summarise
from parallel_workflow_runtime._core.config import Source, SourceLimits, WorkflowConfig
from parallel_workflow_runtime._core.registry import WorkflowEntry
from parallel_workflow_runtime._core.results import Aggregation, SourceFunction, SourceSummary
from parallel_workflow_runtime._core.settings import load_settings
from parallel_workflow_runtime._core.usage import ExecutorName
from parallel_workflow_runtime._execution.contained_loop import new_loop
from parallel_workflow_runtime._execution.dask_cluster import DaskExecutor
from parallel_workflow_runtime._execution.executors import EXECUTORS, Executors, pooled_specs
from parallel_workflow_runtime._execution.in_process import in_own_thread
from parallel_workflow_runtime._execution.running import on_executor

T = TypeVar("T")

Progress = Callable[[str], None]
SourceKind = Literal["async", "sync", "cpu"]


@dataclass(frozen=True)
class BenchSettings:
    sources: int = 200
    latencies: Sequence[float] = (0.2,)  # seconds per source, repeated over the sources
    max_concurrency: int | None = None  # None: all sources at once
    repeat: int = 5
    source_kind: SourceKind = "async"
    sequential: bool = False  # also run the sources one after another (slow: their sum)
    executors: Sequence[ExecutorName] = ()  # besides `thread`; () : the kind's own only
    max_workers: int | None = None  # the process pool's and LocalCluster's; None: config's


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
    function = bench_source(settings.source_kind)
    config = dataclasses.replace(
        entry.config,
        sources=sources,
        max_concurrency=cap,
        max_workers=settings.max_workers or entry.config.max_workers,
    )
    own: ExecutorName = "async" if settings.source_kind == "async" else "thread"
    ways = list(dict.fromkeys([own, "thread", *settings.executors]))  # in order, once each
    timed = {
        name: on_loop_of_run(on_executor_runs(entry, config, function, name, settings.repeat, say))
        for name in ways
    }
    raw_runs: list[float] = []
    for run in range(1, settings.repeat + 1):
        raw_runs.append(asyncio.run(through_raw_gather(function, sources, cap)))
        say(f"raw asyncio.gather {run}/{settings.repeat}: {raw_runs[-1]:.3f} s")
    latencies = latencies_of(sources)
    measured = None
    if settings.sequential:
        say(f"one source after another, about {sum(latencies):.0f} s ...")
        measured = round(asyncio.run(sequentially(function, sources)), 4)
    if settings.source_kind == "cpu":
        # CPU work spreads over the CPUs at best; one after another it takes the CPU time.
        ideal = ideal_seconds(latencies, min(cap, os.cpu_count() or 1))
        sequential = sum(latencies)
    else:
        ideal = ideal_seconds(latencies, cap)
        sequential = statistics.median(a.sequential_seconds for a in timed[own].aggregations)
    return summarise(settings, ideal, sequential, timed, raw_runs, measured)


def on_loop_of_run(coroutine: Coroutine[Any, Any, T]) -> T:
    """`coroutine` run on the event loop that `run` and `serve` run workflows on (the one
    that contains what a source leaves on it), so that the bench times what users get."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(coroutine)


@dataclass
class Timed:
    """The runs of the workflow on one executor."""

    startup_seconds: float
    runs: list[float]
    aggregations: list[Aggregation]
    # dask: the same waits as a bare `client.map(time.sleep, ...)` on the same cluster, the
    # least any runner of Dask tasks needs.
    bare_map_runs: list[float] = dataclasses.field(default_factory=list)


async def on_executor_runs(
    entry: WorkflowEntry,
    config: WorkflowConfig,
    function: SourceFunction,
    executor: ExecutorName,
    repeat: int,
    say: Progress,
) -> Timed:
    """`repeat` runs with every source on `executor`, its pool or cluster started first."""
    config = on_executor(config, executor)
    # "": the offline report, whatever model is configured: the bench times orchestration.
    workflow = entry.factory(
        config=config,
        report_model="",
        source_functions={source.id: function for source in config.sources},
    )
    async with Executors() as executors:
        EXECUTORS.set(executors)
        started = time.perf_counter()
        specs = pooled_specs(config, load_settings().dask_address)
        await executors.start(specs)
        timed = Timed(startup_seconds=time.perf_counter() - started, runs=[], aggregations=[])
        for run in range(1, repeat + 1):
            elapsed, aggregation = await through_workflow(workflow)
            timed.runs.append(elapsed)
            timed.aggregations.append(aggregation)
            say(f"run {run}/{repeat} on {executor}: {elapsed:.3f} s")
        if executor == "dask":
            (spec,) = specs
            cluster = await executors.get(spec)
            assert isinstance(cluster, DaskExecutor)
            for run in range(1, repeat + 1):
                timed.bare_map_runs.append(await through_bare_map(cluster, config.sources))
                say(f"bare client.map {run}/{repeat}: {timed.bare_map_runs[-1]:.3f} s")
    return timed


def latencies_of(sources: Sequence[Source]) -> list[float]:
    """The seconds each of the bench's sources waits or computes (bench_sources sets them)."""
    return [float(source.settings["latency_seconds"]) for source in sources]


async def through_bare_map(cluster: DaskExecutor, sources: Sequence[Source]) -> float:
    """The sources' waits as Dask tasks and nothing else: `client.map(time.sleep, ...)`."""
    assert cluster.client is not None, "started by Executors.get"
    started = time.perf_counter()
    await cluster.client.gather(cluster.client.map(time.sleep, latencies_of(sources), pure=False))
    return time.perf_counter() - started


async def through_workflow(workflow: Any) -> tuple[float, Aggregation]:
    state: dict[str, Any] = {}
    started = time.perf_counter()
    await workflow.arun(input="bench", session_state=state)
    return time.perf_counter() - started, Aggregation.model_validate(state["aggregation"])


async def through_raw_gather(wait: SourceFunction, sources: Sequence[Source], cap: int) -> float:
    slots = asyncio.Semaphore(cap)

    async def limited(source: Source) -> SourceSummary:
        async with slots:
            result: SourceSummary = await call_directly(wait, source)
            return result

    started = time.perf_counter()
    await asyncio.gather(*(limited(source) for source in sources))
    return time.perf_counter() - started


async def sequentially(wait: SourceFunction, sources: Sequence[Source]) -> float:
    started = time.perf_counter()
    for source in sources:
        await call_directly(wait, source)
    return time.perf_counter() - started


def bench_source(kind: SourceKind) -> SourceFunction:
    """A source that waits or computes its `latency_seconds`: module-level functions, so
    that a worker process or a Dask worker finds them by name."""
    functions: dict[SourceKind, SourceFunction] = {
        "async": wait_async,
        "sync": wait_blocking,
        "cpu": compute,
    }
    return functions[kind]


async def wait_async(source: Source) -> SourceSummary:
    await asyncio.sleep(source.settings["latency_seconds"])
    return SourceSummary(records=1)


def wait_blocking(source: Source) -> SourceSummary:
    time.sleep(source.settings["latency_seconds"])
    return SourceSummary(records=1)


def compute(source: Source) -> SourceSummary:
    """A pure-Python loop until this thread has used `latency_seconds` of CPU."""
    until = time.thread_time() + source.settings["latency_seconds"]
    loops = 0
    while time.thread_time() < until:
        loops += 1
    return SourceSummary(records=1, details={"loops": loops})


async def call_directly(function: SourceFunction, source: Source) -> Any:
    """The least a runner does: await a coroutine, or run a blocking function in a thread."""
    if inspect.iscoroutinefunction(function):
        return await function(source)
    return await in_own_thread(function, source)
