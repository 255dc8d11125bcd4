"""`bench --trace`: what tracing costs, against its two targets, each with its baseline.

- `run` of the workflow as a process of its own, untraced and with `--trace` by turns
  (RUN_PAIRS pairs), on a history of its own: the median of the pairs' differences, against
  the target of +50 ms. Each process's CPU seconds too: on a loaded machine they say more.
- The workflow's runs of synthetic sources (200 waits of 0.2 s by default) against a bare
  Agno workflow of the same waits (a Parallel of one async step each, no runtime), by turns,
  `repeat` times each: untraced, then both traced the same way (tracing, once on, stays on in
  a process: the same provider, processor and Agno instrumentation), into a history of their
  own. The traced medians' ratio, against the target of 1.1; the untraced ones say what the
  runtime costs without tracing, and what Agno's own spans cost.

No OTLP endpoint is set: spans go to the history, as by default. Each run's spans are written
(tracing.flush) before the next run starts, outside its time: a `run` process has one run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from parallel_workflow_runtime._bench.startup import timed_output
from parallel_workflow_runtime._bench.workflow import (
    BenchSettings,
    bench_source,
    bench_sources,
    latencies_of,
    on_loop_of_run,
    through_workflow,
)
from parallel_workflow_runtime._core.config import WorkflowConfig
from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.registry import WorkflowEntry
from parallel_workflow_runtime._core.settings import history_db_env
from parallel_workflow_runtime._core.usage import ExecutorName
from parallel_workflow_runtime._execution.executors import EXECUTORS, Executors
from parallel_workflow_runtime._execution.running import on_executor
from parallel_workflow_runtime._observe import tracing

Progress = Callable[[str], None]
BARE_TARGET = 1.1  # traced workflow over the bare Agno workflow traced the same way
RUN_TARGET_SECONDS = 0.05  # a traced `run` process over an untraced one
RUN_PAIRS = 7  # `run` and `run --trace`, by turns


def run_trace_bench(
    entry: WorkflowEntry, settings: BenchSettings, progress: Progress | None = None
) -> dict[str, Any]:
    say = progress or (lambda line: None)
    load_before = os.getloadavg()
    sources = bench_sources(entry, settings)
    config = dataclasses.replace(
        entry.config, sources=sources, max_concurrency=settings.max_concurrency or len(sources)
    )
    executor: ExecutorName = "async" if settings.source_kind == "async" else "thread"
    config = on_executor(config, executor)
    latencies = latencies_of(sources)
    with tempfile.TemporaryDirectory(prefix="bench-trace-") as folder:
        history = Path(folder) / "history.sqlite"
        untraced = on_loop_of_run(timed_runs(entry, config, latencies, settings, say, None))
        traced = on_loop_of_run(timed_runs(entry, config, latencies, settings, say, history))
        tracing.flush()
        processes = run_processes(entry, RUN_PAIRS, folder, say)
    median = statistics.median
    run_untraced, run_traced = processes["run_untraced"], processes["run_traced"]
    return {
        "workflow_id": entry.config.workflow_id,
        "sources": len(sources),
        "latencies": list(settings.latencies),
        "executor": executor,
        "repeat": settings.repeat,
        "untraced_seconds": round(median(untraced["workflow"]), 4),
        "traced_seconds": round(median(traced["workflow"]), 4),
        "traced_over_untraced": round(median(traced["workflow"]) / median(untraced["workflow"]), 3),
        "bare_untraced_seconds": round(median(untraced["bare"]), 4),
        "bare_traced_seconds": round(median(traced["bare"]), 4),
        "untraced_over_bare": round(median(untraced["workflow"]) / median(untraced["bare"]), 3),
        "traced_over_bare": round(median(traced["workflow"]) / median(traced["bare"]), 3),
        "bare_target": BARE_TARGET,
        "run_pairs": RUN_PAIRS,
        "run_untraced_seconds": round(median(run_untraced), 3),
        "run_traced_seconds": round(median(run_traced), 3),
        "run_traced_extra_seconds": round(median_difference(run_untraced, run_traced), 3),
        "run_untraced_cpu_seconds": round(median(processes["cpu_untraced"]), 3),
        "run_traced_cpu_seconds": round(median(processes["cpu_traced"]), 3),
        "run_traced_extra_cpu_seconds": round(
            median_difference(processes["cpu_untraced"], processes["cpu_traced"]), 3
        ),
        "run_target_seconds": RUN_TARGET_SECONDS,
        "cpus": os.cpu_count(),
        "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "runs": {
            "untraced": untraced["workflow"],
            "traced": traced["workflow"],
            "bare_untraced": untraced["bare"],
            "bare_traced": traced["bare"],
            **processes,
        },
    }


def median_difference(first: Sequence[float], then: Sequence[float]) -> float:
    """The median of the pairs' differences (`then` - `first`, pair by pair)."""
    return statistics.median(b - a for a, b in zip(first, then, strict=True))


async def timed_runs(
    entry: WorkflowEntry,
    config: WorkflowConfig,
    latencies: Sequence[float],
    settings: BenchSettings,
    say: Progress,
    history: Path | None,
) -> dict[str, list[float]]:
    """`settings.repeat` runs of the workflow and of the bare Agno workflow by turns (after
    one of each not timed), traced into `history`'s tables if given."""
    label = "untraced" if history is None else "traced"
    if history is not None:
        from agno.db.sqlite import SqliteDb

        tracing.enable(SqliteDb(db_file=str(history)), current().distribution)
    function = bench_source(settings.source_kind)
    workflow = entry.factory(
        config=config,
        report_model="",
        source_functions={source.id: function for source in config.sources},
    )
    bare = bare_workflow(latencies, blocking=settings.source_kind != "async")
    seconds: dict[str, list[float]] = {"workflow": [], "bare": []}
    async with Executors() as executors:
        EXECUTORS.set(executors)
        for run in range(settings.repeat + 1):  # the first run warms what the others reuse
            for way, timing in (("workflow", through_workflow), ("bare", through_bare)):
                with tracing.run_root():  # a trace of its own, as `run` and `serve` make it
                    elapsed, _ = await timing(workflow if way == "workflow" else bare)
                if history is not None:
                    await asyncio.to_thread(tracing.flush)  # its spans in, before the next
                if run:
                    seconds[way].append(elapsed)
            if run:
                say(
                    f"{label} run {run}/{settings.repeat}: workflow "
                    f"{seconds['workflow'][-1]:.3f} s, bare Agno {seconds['bare'][-1]:.3f} s"
                )
    return seconds


def bare_workflow(latencies: Sequence[float], blocking: bool) -> Any:
    """The same waits as a bare Agno workflow: a Parallel of one async step each (a blocking
    wait in a thread of its own, for --kind sync), and nothing of the runtime."""
    from agno.workflow import Parallel, Step, Workflow

    threads = ThreadPoolExecutor(max_workers=len(latencies)) if blocking else None
    steps: list[Any] = [
        Step(name=f"bare_{index:04d}", executor=bare_wait(latency, threads))
        for index, latency in enumerate(latencies, start=1)
    ]
    return Workflow(name="Bare Agno workflow", steps=[Parallel(*steps, name="Sources")])


def bare_wait(latency: float, threads: ThreadPoolExecutor | None) -> Callable[[Any], Any]:
    from agno.workflow.types import StepInput, StepOutput

    async def wait(step_input: StepInput) -> StepOutput:
        if threads is not None:
            await asyncio.get_running_loop().run_in_executor(threads, time.sleep, latency)
        else:
            await asyncio.sleep(latency)
        return StepOutput(content="1")

    return wait


async def through_bare(workflow: Any) -> tuple[float, None]:
    started = time.perf_counter()
    await workflow.arun(input="bench")
    return time.perf_counter() - started, None


def run_processes(
    entry: WorkflowEntry, pairs: int, folder: str, say: Progress
) -> dict[str, list[float]]:
    """`run` of the workflow as a process, untraced and with --trace by turns: the seconds
    and CPU seconds of each."""
    environment = {
        **os.environ,
        history_db_env(): str(Path(folder) / "runs.sqlite"),
        "AGNO_TELEMETRY": "false",
    }
    for variable in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        environment.pop(variable, None)
    command = [sys.executable, "-m", current().package, "run"]
    command += ["--workflow", entry.config.workflow_id]
    timed: dict[str, list[float]] = {
        "run_untraced": [],
        "run_traced": [],
        "cpu_untraced": [],
        "cpu_traced": [],
    }
    # The history's tables (its trace tables too) are made here, not in a timed run.
    timed_output([*command, "--trace"], environment)
    for number in range(1, pairs + 1):
        for way, arguments in (("untraced", command), ("traced", [*command, "--trace"])):
            seconds, cpu, _ = timed_output(arguments, environment)
            timed[f"run_{way}"].append(seconds)
            timed[f"cpu_{way}"].append(cpu)
        say(
            f"run {number}/{pairs}: {timed['run_untraced'][-1]:.2f} s, with --trace "
            f"{timed['run_traced'][-1]:.2f} s"
        )
    return timed
