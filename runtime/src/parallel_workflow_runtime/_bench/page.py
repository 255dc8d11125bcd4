"""`bench --html`: the bench's ways as one HTML page, bars of their wall time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from parallel_workflow_runtime._observe.page_parts import bench_bars
from parallel_workflow_runtime._observe.page_templates import render

if TYPE_CHECKING:
    from parallel_workflow_runtime._bench.results import BenchResults


def bench_page(results: BenchResults) -> str:
    """The bench's ways as bars of their wall time, with the ideal and sequential marked."""
    ways = [("ideal", results["ideal_seconds"]), ("sequential", results["sequential_seconds"])]
    ways += [(f"workflow, {e['executor']}", e["workflow_seconds"]) for e in results["executors"]]
    ways += [("raw asyncio.gather", results["raw_gather_seconds"])]
    latencies = "/".join(f"{latency:g}" for latency in results["latencies"])
    title = (
        f"bench: {results['sources']} {results['source_kind']} sources of {latencies} s, "
        f"medians of {results['repeat']} runs"
    )
    return render("bench.html.jinja", title=title, bars=bench_bars(ways))
