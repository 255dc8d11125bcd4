"""`bench --startup`: what the user waits for besides the work. It times, side by side and
`repeat` times each, three processes: `python -c "import agno.workflow"` (the floor: no
workflow runs without it), `python -m <package> run` of the workflow as a user types it (minus
its parallel block: the rest is start-up, the other steps, the history, the summary and the
report), and `python -m <package> --help`. The run uses a history of its own in a temporary
folder, so that it neither adds to the project's history nor moves its sources' cursors; its
parallel block's time is read from there afterwards, by a process that is not timed.

The targets (README.md, "Limits and speed"): the run's time besides its parallel block at
most 1.3 times the floor, and `--help` within 0.3 s.
"""

from __future__ import annotations

import json
import os
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
            run_runs.append(timed([*command, "run", *workflow], environment))
            _, output = timed_output([*command, "history", *workflow, "--json"], environment)
            block_runs.append(float(json.loads(output)[0]["wall_seconds"]))  # the newest run
            help_runs.append(timed([sys.executable, "-m", package, "--help"], environment))
            say(
                f"{number}/{repeat}: import agno.workflow {floor_runs[-1]:.2f} s, run "
                f"{run_runs[-1]:.2f} s (block {block_runs[-1]:.2f} s), --help "
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
        "runs": {
            "import_floor": floor_runs,
            "run": run_runs,
            "block": block_runs,
            "help": help_runs,
        },
    }


def timed(command: Sequence[str], environment: dict[str, str]) -> float:
    return timed_output(command, environment)[0]


def timed_output(command: Sequence[str], environment: dict[str, str]) -> tuple[float, str]:
    """Seconds from starting `command` to its exit, and what it printed. Exit code 1 (a
    source failed) still times a whole run; any other is the bench's failure."""
    started = time.perf_counter()
    finished = subprocess.run(command, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if finished.returncode not in (0, 1):
        last = (finished.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{' '.join(command[1:])} exited {finished.returncode}: {last}")
    return seconds, finished.stdout
