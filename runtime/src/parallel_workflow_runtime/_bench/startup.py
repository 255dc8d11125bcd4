"""`bench --startup`: what the user waits for besides the work. It times, side by side and
`repeat` times each, four processes: `python -c "import agno.workflow"` (the floor: no
workflow runs without it), `python -m <package> run` of the workflow as a user types it (minus
its parallel block: the rest is start-up, the other steps, the history, the summary and the
report), the same workflow as a plain Agno script (plain_agno.py: what a user would write
instead, its sources waiting as long as they took in that run), and `python -m <package>
--help`. The run uses a history of its own in a temporary folder, so that it neither adds to
the project's history nor moves its sources' cursors; its parallel block's and its sources'
times are read from there afterwards, by a process that is not timed. Each process's CPU time
is its own and its children's (getrusage).

The targets (README.md, "Limits and speed"): the run's time besides its parallel block at
most 1.3 times the floor; the run at most 1.05 times the plain script's wall time and 1.2
times its CPU time (the medians of the pairs' ratios); `--help` within 0.3 s.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.registry import WorkflowEntry
from parallel_workflow_runtime._core.settings import history_db_env

Progress = Callable[[str], None]
OUTSIDE_TARGET = 1.3  # the run's time besides its parallel block, over the floor
PLAIN_WALL_TARGET = 1.05  # the run's wall time over the plain Agno script's
PLAIN_CPU_TARGET = 1.2  # and its CPU time
PLAIN_SCRIPT = Path(__file__).with_name("plain_agno.py")
HELP_TARGET_SECONDS = 0.3


def run_startup_bench(
    entry: WorkflowEntry, repeat: int, progress: Progress | None = None
) -> dict[str, Any]:
    say = progress or (lambda line: None)
    package = current().package
    floor_runs: list[float] = []
    run_runs: list[float] = []
    block_runs: list[float] = []
    help_runs: list[float] = []
    run_cpu: list[float] = []
    plain_runs: list[float] = []
    plain_cpu: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as folder:
        environment = {
            **os.environ,
            history_db_env(): str(Path(folder) / "history.sqlite"),
            "AGNO_TELEMETRY": "false",
        }
        command = [sys.executable, "-m", package]
        workflow = ["--workflow", entry.config.workflow_id]
        for number in range(1, repeat + 1):
            floor_runs.append(timed([sys.executable, "-c", "import agno.workflow"], environment))
            seconds, cpu, _ = timed_output([*command, "run", *workflow], environment)
            run_runs.append(seconds)
            run_cpu.append(cpu)
            _, _, output = timed_output([*command, "history", *workflow, "--json"], environment)
            newest = json.loads(output)[0]
            block_runs.append(float(newest["wall_seconds"]))
            plain = {
                "name": entry.config.name,
                "sources": [[source["name"], source["seconds"]] for source in newest["sources"]],
            }
            seconds, cpu, _ = timed_output(
                [sys.executable, str(PLAIN_SCRIPT), json.dumps(plain)], environment
            )
            plain_runs.append(seconds)
            plain_cpu.append(cpu)
            help_runs.append(timed([sys.executable, "-m", package, "--help"], environment))
            say(
                f"{number}/{repeat}: import agno.workflow {floor_runs[-1]:.2f} s, run "
                f"{run_runs[-1]:.2f} s (block {block_runs[-1]:.2f} s, CPU {run_cpu[-1]:.2f} s),"
                f" plain Agno {plain_runs[-1]:.2f} s (CPU {plain_cpu[-1]:.2f} s), --help "
                f"{help_runs[-1]:.2f} s"
            )
    outside = [total - block for total, block in zip(run_runs, block_runs, strict=True)]
    floor = statistics.median(floor_runs)
    return {
        "workflow_id": entry.config.workflow_id,
        "repeat": repeat,
        "import_floor_seconds": round(floor, 3),
        "run_seconds": round(statistics.median(run_runs), 3),
        "block_seconds": round(statistics.median(block_runs), 3),
        "outside_block_seconds": round(statistics.median(outside), 3),
        "outside_over_floor": round(statistics.median(outside) / floor, 3),
        "outside_target": OUTSIDE_TARGET,
        "help_seconds": round(statistics.median(help_runs), 3),
        "help_target_seconds": HELP_TARGET_SECONDS,
        "run_cpu_seconds": round(statistics.median(run_cpu), 3),
        "plain_seconds": round(statistics.median(plain_runs), 3),
        "plain_cpu_seconds": round(statistics.median(plain_cpu), 3),
        "run_over_plain": median_ratio(run_runs, plain_runs),
        "run_cpu_over_plain": median_ratio(run_cpu, plain_cpu),
        "plain_wall_target": PLAIN_WALL_TARGET,
        "plain_cpu_target": PLAIN_CPU_TARGET,
        "runs": {
            "import_floor": floor_runs,
            "run": run_runs,
            "block": block_runs,
            "help": help_runs,
            "run_cpu": run_cpu,
            "plain": plain_runs,
            "plain_cpu": plain_cpu,
        },
    }


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median of the pairs' ratios: each pair ran back to back, under the same load."""
    ratios = [a / b for a, b in zip(numerators, denominators, strict=True)]
    return round(statistics.median(ratios), 3)


def timed(command: Sequence[str], environment: dict[str, str]) -> float:
    return timed_output(command, environment)[0]


def timed_output(command: Sequence[str], environment: dict[str, str]) -> tuple[float, float, str]:
    """Seconds from starting `command` to its exit, the CPU seconds it (and its children)
    spent, and what it printed. Exit code 1 (a source failed) still times a whole run; any
    other is the bench's failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    finished = subprocess.run(command, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if finished.returncode not in (0, 1):
        last = (finished.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{' '.join(command[1:])} exited {finished.returncode}: {last}")
    return seconds, cpu, finished.stdout
