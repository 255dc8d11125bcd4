"""What the bench found: the medians and ratios of its timed runs, as the JSON-able dict that
`bench --json` prints, and as the table the terminal shows. `workflow.py` times the runs.
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from rich.console import Console
from rich.table import Table

from parallel_workflow_runtime._bench.sql_baseline import print_backends
from parallel_workflow_runtime._core.usage import ExecutorName
from parallel_workflow_runtime._execution.executor_base import POOLED

if TYPE_CHECKING:
    from parallel_workflow_runtime._bench.workflow import BenchSettings, Timed


class ExecutorBench(TypedDict):
    executor: str
    startup_seconds: float  # starting its pool or cluster, before the timed runs
    workflow_seconds: float  # the median of `repeat` runs, Preparation to Report
    workflow_runs: list[float]
    wall_over_ideal: float
    speedup_over_sequential: float  # sequential seconds / this executor's wall
    speedup_over_thread: float  # the thread executor's wall / this executor's wall
    results_per_run: list[int]  # how many sources each run aggregated
    # dask: the same waits as a bare client.map on the same cluster, and the workflow over it.
    bare_map_seconds: NotRequired[float]
    bare_map_runs: NotRequired[list[float]]
    workflow_over_bare_map: NotRequired[float]


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
    executors: list[ExecutorBench]  # the first is the kind's own, as the top-level numbers


def summarise(
    settings: BenchSettings,
    ideal: float,
    sequential: float,
    timed: dict[ExecutorName, Timed],
    raw_runs: list[float],
    measured_sequential: float | None,
) -> BenchResults:
    raw_median = statistics.median(raw_runs)
    thread_median = statistics.median(timed["thread"].runs)
    executors: list[ExecutorBench] = []
    for name, runs in timed.items():
        median = statistics.median(runs.runs)
        bench = ExecutorBench(
            executor=name,
            startup_seconds=round(runs.startup_seconds, 4),
            workflow_seconds=round(median, 4),
            workflow_runs=[round(seconds, 4) for seconds in runs.runs],
            wall_over_ideal=round(median / ideal, 3),
            speedup_over_sequential=round(sequential / median, 3),
            speedup_over_thread=round(thread_median / median, 3),
            results_per_run=[a.total_sources - len(a.failed) for a in runs.aggregations],
        )
        if runs.bare_map_runs:
            bare = statistics.median(runs.bare_map_runs)
            bench["bare_map_seconds"] = round(bare, 4)
            bench["bare_map_runs"] = [round(seconds, 4) for seconds in runs.bare_map_runs]
            bench["workflow_over_bare_map"] = round(median / bare, 3)
        executors.append(bench)
    own = executors[0]
    return BenchResults(
        sources=settings.sources,
        latencies=list(settings.latencies),
        max_concurrency=settings.max_concurrency,
        repeat=settings.repeat,
        source_kind=settings.source_kind,
        ideal_seconds=round(ideal, 4),
        sequential_seconds=round(sequential, 4),
        measured_sequential_seconds=measured_sequential,
        workflow_seconds=own["workflow_seconds"],
        raw_gather_seconds=round(raw_median, 4),
        workflow_runs=own["workflow_runs"],
        raw_gather_runs=[round(seconds, 4) for seconds in raw_runs],
        wall_over_ideal=own["wall_over_ideal"],
        workflow_over_raw=round(own["workflow_seconds"] / raw_median, 3),
        results_per_run=own["results_per_run"],
        executors=executors,
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
    sequential = results["sequential_seconds"]
    table = Table("way", "seconds", "× ideal", "× raw", "speed-up", "vs thread", "start-up")
    table.add_row("ideal", f"{ideal:.3f}", "1.00", "", f"{sequential / ideal:.2f}", "", "")
    kind = "CPU time" if results["source_kind"] == "cpu" else "sum of times"
    ways = [(f"sequential ({kind})", sequential)]
    if results["measured_sequential_seconds"] is not None:
        ways.append(("sequential (measured, 1 run)", results["measured_sequential_seconds"]))
    for way, seconds in ways:
        table.add_row(way, f"{seconds:.3f}", f"{seconds / ideal:.2f}", f"{seconds / raw:.2f}")
    for executor in results["executors"]:
        seconds = executor["workflow_seconds"]
        startup = executor["startup_seconds"]
        table.add_row(
            f"workflow, {executor['executor']}",
            f"{seconds:.3f}",
            f"{seconds / ideal:.2f}",
            f"{seconds / raw:.2f}",
            f"{executor['speedup_over_sequential']:.2f}",
            f"{executor['speedup_over_thread']:.2f}",
            f"{startup:.2f} s" if executor["executor"] in POOLED else "",
        )
        if "bare_map_seconds" in executor:
            bare = executor["bare_map_seconds"]
            table.add_row(
                "bare client.map, same cluster", f"{bare:.3f}", f"{bare / ideal:.2f}",
                f"{bare / raw:.2f}",
            )  # fmt: skip
    table.add_row("raw gather", f"{raw:.3f}", f"{raw / ideal:.2f}", "1.00")
    console.print(table)
    complete = sum(count == results["sources"] for count in results["results_per_run"])
    console.print(
        f"wall/ideal {results['wall_over_ideal']:.3f}, workflow/raw "
        f"{results['workflow_over_raw']:.3f}; every source's result aggregated in "
        f"{complete} of {len(results['results_per_run'])} workflow runs. Workflow: Agno arun; "
        "raw: asyncio.gather; speed-up: sequential / wall; vs thread: thread's wall / wall"
    )
    for executor in results["executors"]:
        if "workflow_over_bare_map" in executor:
            console.print(
                f"dask: the workflow / a bare client.map of the same waits on the same cluster "
                f"{executor['workflow_over_bare_map']:.3f}"
            )


def print_connector_bench(console: Console, results: dict[str, Any]) -> None:
    """`bench --kind sql|http|file`: each source's rows per second, then the ratio."""
    table = Table("source", "rows", "seconds", "rows/s", title="The workflow's last run")
    for source in results["per_source"]:
        table.add_row(
            source["id"],
            f"{source['records']:,}",
            f"{source['seconds']:.2f}",
            f"{source['rows_per_second'] or 0:,}",
        )
    total = sum(source["records"] for source in results["per_source"])
    table.add_row("all", f"{total:,}", f"{results['workflow_seconds']:.2f}",
                  f"{results['rows_per_second'] or 0:,}", style="bold")  # fmt: skip
    console.print(table)
    against = (
        "the slowest source alone"
        if results["kind"] == "http"
        else "dlt iterating the same resource alone"
    )
    verdict = "within" if results["ratio"] <= results["target"] else "OVER"
    console.print(
        f"{results['kind']}: the workflow {results['workflow_seconds']:.2f} s, {against} "
        f"{results['alone_seconds']:.2f} s (medians of {results['repeat']}): ratio "
        f"{results['ratio']:.3f}, {verdict} the target {results['target']}"
    )
    if results.get("cpu_ratio") is not None:
        console.print(
            f"CPU: the workflow {results['workflow_cpu_seconds']:.2f} s, alone "
            f"{results['alone_cpu_seconds']:.2f} s: ratio {results['cpu_ratio']:.3f}"
        )
    print_backends(console, results)


def print_startup_bench(console: Console, results: dict[str, Any]) -> None:
    """`bench --startup`: the run besides its parallel block against the import floor."""
    table = Table("process", "seconds", title=f"Medians of {results['repeat']} runs of each")
    table.add_row('python -c "import agno.workflow" (the floor)',
                  f"{results['import_floor_seconds']:.3f}")  # fmt: skip
    table.add_row(f"run --workflow {results['workflow_id']}", f"{results['run_seconds']:.3f}")
    table.add_row("  its parallel block", f"{results['block_seconds']:.3f}")
    table.add_row("  the rest", f"{results['outside_block_seconds']:.3f}", style="bold")
    table.add_row("--help", f"{results['help_seconds']:.3f}", style="bold")
    table.add_row("the same steps as a plain Agno script", f"{results['plain_seconds']:.3f}")
    console.print(table)
    for what, ratio, target in (
        ("wall", results["run_over_plain"], results["plain_wall_target"]),
        ("CPU", results["run_cpu_over_plain"], results["plain_cpu_target"]),
    ):
        console.print(
            f"run / plain Agno script, {what} (median of the pairs' ratios): {ratio:.3f}, "
            f"{'within' if ratio <= target else 'OVER'} the target {target}"
        )
    ratio, target = results["outside_over_floor"], results["outside_target"]
    help_seconds, help_target = results["help_seconds"], results["help_target_seconds"]
    console.print(
        f"run besides its parallel block / import floor: {ratio:.3f}, "
        f"{'within' if ratio <= target else 'OVER'} the target {target}; --help "
        f"{help_seconds:.3f} s, {'within' if help_seconds <= help_target else 'OVER'} the "
        f"target {help_target} s"
    )


def print_trace_bench(console: Console, results: dict[str, Any]) -> None:
    """`bench --trace`: its two targets, each against its baseline: `run --trace` against
    `run` as processes, and the traced workflow against a bare Agno workflow traced alike."""
    table = Table("way", "untraced", "traced", title="Medians, in seconds (CPU: the process's)")
    sources = f"{results['sources']} sources on {results['executor']}"
    table.add_row(
        f"workflow, {sources} ({results['repeat']} runs)",
        f"{results['untraced_seconds']:.3f}",
        f"{results['traced_seconds']:.3f}",
    )
    table.add_row(
        f"bare Agno workflow, the same waits ({results['repeat']} runs)",
        f"{results['bare_untraced_seconds']:.3f}",
        f"{results['bare_traced_seconds']:.3f}",
    )
    run = f"run --workflow {results['workflow_id']} ({results['run_pairs']} pairs)"
    table.add_row(
        run, f"{results['run_untraced_seconds']:.3f}", f"{results['run_traced_seconds']:.3f}"
    )
    table.add_row(
        f"{run}, CPU",
        f"{results['run_untraced_cpu_seconds']:.3f}",
        f"{results['run_traced_cpu_seconds']:.3f}",
    )
    console.print(table)
    extra, extra_target = results["run_traced_extra_seconds"], results["run_target_seconds"]
    console.print(
        f"run --trace - run, median of {results['run_pairs']} alternating pairs: "
        f"{extra * 1000:+.0f} ms (CPU {results['run_traced_extra_cpu_seconds'] * 1000:+.0f} ms), "
        f"{'within' if extra <= extra_target else 'OVER'} the target "
        f"{extra_target * 1000:+.0f} ms"
    )
    ratio, target = results["traced_over_bare"], results["bare_target"]
    console.print(
        f"traced workflow / bare Agno workflow traced the same way, {results['sources']} "
        f"sources: {ratio:.3f}, {'within' if ratio <= target else 'OVER'} the target {target} "
        f"(untraced {results['untraced_over_bare']:.3f}; tracing costs the workflow "
        f"{results['traced_over_untraced']:.3f}x)"
    )
    before, after = results["load_average"]
    console.print(f"load average {before:.1f} before, {after:.1f} after, on {results['cpus']} CPUs")
