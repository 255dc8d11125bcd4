"""`bench --trace`: what tracing costs, in one bench.

- The workflow's runs of synthetic sources (200 waits of 0.2 s by default), `repeat` times
  untraced, then `repeat` times traced into a history of its own (tracing, once on, stays on
  in a process): the medians' ratio, against the target of 1.05.
- `run` of the workflow as a process of its own, untraced and with `--trace` by turns, on a
  history of its own: the medians' difference, against the target of 50 ms.

No OTLP endpoint is set for either: spans go to the history, as by default.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parallel_workflow_runtime._bench.startup import timed
from parallel_workflow_runtime._bench.workflow import (
    BenchSettings,
    bench_source,
    bench_sources,
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
WALL_TARGET = 1.05  # traced wall over untraced
RUN_TARGET_SECONDS = 0.05  # a traced `run` process over an untraced one


def run_trace_bench(
    entry: WorkflowEntry, settings: BenchSettings, progress: Progress | None = None
) -> dict[str, Any]:
    say = progress or (lambda line: None)
    sources = bench_sources(entry, settings)
    config = dataclasses.replace(
        entry.config, sources=sources, max_concurrency=settings.max_concurrency or len(sources)
    )
    executor: ExecutorName = "async" if settings.source_kind == "async" else "thread"
    config = on_executor(config, executor)
    with tempfile.TemporaryDirectory(prefix="bench-trace-") as folder:
        history = Path(folder) / "history.sqlite"
        untraced = on_loop_of_run(timed_runs(entry, config, settings, "untraced", say, None))
        traced = on_loop_of_run(timed_runs(entry, config, settings, "traced", say, history))
        tracing.flush()
        run_untraced, run_traced = run_processes(entry, settings.repeat, folder, say)
    wall_ratio = statistics.median(traced) / statistics.median(untraced)
    run_difference = statistics.median(run_traced) - statistics.median(run_untraced)
    return {
        "workflow_id": entry.config.workflow_id,
        "sources": len(sources),
        "latencies": list(settings.latencies),
        "executor": executor,
        "repeat": settings.repeat,
        "untraced_seconds": round(statistics.median(untraced), 4),
        "traced_seconds": round(statistics.median(traced), 4),
        "traced_over_untraced": round(wall_ratio, 3),
        "wall_target": WALL_TARGET,
        "run_untraced_seconds": round(statistics.median(run_untraced), 3),
        "run_traced_seconds": round(statistics.median(run_traced), 3),
        "run_traced_extra_seconds": round(run_difference, 3),
        "run_target_seconds": RUN_TARGET_SECONDS,
        "runs": {
            "untraced": untraced,
            "traced": traced,
            "run_untraced": run_untraced,
            "run_traced": run_traced,
        },
    }


async def timed_runs(
    entry: WorkflowEntry,
    config: WorkflowConfig,
    settings: BenchSettings,
    label: str,
    say: Progress,
    history: Path | None,
) -> list[float]:
    """`settings.repeat` runs of the workflow (after one not timed), traced into `history`'s
    Agno tables if given."""
    db = None
    if history is not None:
        from agno.db.sqlite import SqliteDb

        db = SqliteDb(db_file=str(history))
        tracing.enable(db, current().distribution)
    function = bench_source(settings.source_kind)
    workflow = entry.factory(
        config=config,
        report_model="",
        source_functions={source.id: function for source in config.sources},
    )
    seconds: list[float] = []
    async with Executors() as executors:
        EXECUTORS.set(executors)
        await through_workflow(workflow)  # the first run warms what the others reuse
        for run in range(1, settings.repeat + 1):
            with tracing.run_root():  # a trace of its own, as `run` and `serve` make it
                elapsed, _ = await through_workflow(workflow)
            seconds.append(elapsed)
            say(f"{label} run {run}/{settings.repeat}: {elapsed:.3f} s")
            await asyncio.sleep(0)
    return seconds


def run_processes(
    entry: WorkflowEntry, repeat: int, folder: str, say: Progress
) -> tuple[list[float], list[float]]:
    """`run` of the workflow as a process, untraced and with --trace by turns."""
    environment = {
        **os.environ,
        history_db_env(): str(Path(folder) / "runs.sqlite"),
        "AGNO_TELEMETRY": "false",
    }
    for variable in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        environment.pop(variable, None)
    command = [sys.executable, "-m", current().package, "run"]
    command += ["--workflow", entry.config.workflow_id]
    untraced: list[float] = []
    traced: list[float] = []
    timed(command, environment)  # the history's tables are made here, not in a timed run
    for number in range(1, repeat + 1):
        untraced.append(timed(command, environment))
        traced.append(timed([*command, "--trace"], environment))
        say(f"run {number}/{repeat}: {untraced[-1]:.2f} s, with --trace {traced[-1]:.2f} s")
    return untraced, traced
