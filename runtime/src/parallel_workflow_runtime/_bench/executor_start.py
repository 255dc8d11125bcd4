"""`bench --executor-start`: what the process executor costs besides the sources' own work.

Both parts run a project of the bench's own, written to a temporary folder: one workflow of
`CPU_SOURCES` sources, each `CPU_SECONDS` of CPU in a pure-Python loop (the GIL lets one
thread run it at a time), noting when it started.

- Whole runs: `python -m <bench project> run --executor process`, then `--executor thread`,
  `repeat` such pairs (at least 5), each process timed from its start to its exit. The
  median of the pairs' ratios, process over thread, is the figure; target at most
  `RATIO_TARGET`. The workers (one per CPU) come from a fork server that `run` starts early
  (warm_start.py): what is left is the fork server's start, which overlaps the run's own.
- Under `serve --executor process`: a first run starts nothing new (the pool starts with the
  server); each of `repeat` later runs is timed from its parallel block's start (its
  aggregation's `started_at`) to the first of its sources starting in a worker. Target at
  most `SERVE_TARGET_SECONDS`.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

Progress = Callable[[str], None]
PACKAGE = "pwr_bench_cpu"
WORKFLOW = "cpu"
CPU_SOURCES = 8
CPU_SECONDS = 0.25
MIN_PAIRS = 5
RATIO_TARGET = 0.7
SERVE_TARGET_SECONDS = 0.05
SERVER_START_SECONDS = 60

FILES = {
    "__init__.py": "from .registry import project\n",
    "__main__.py": "from .registry import project\n\nraise SystemExit(project.main())\n",
    "registry.py": (
        "from pathlib import Path\n\nfrom parallel_workflow_runtime import Project\n\n"
        f'project = Project.register("{PACKAGE}", Path(__file__).with_name("workflows"))\n'
    ),
    "workflows/__init__.py": "",
    "workflows/settings.yaml": "history:\n  sqlite_file: .data/history.sqlite\n",
    f"workflows/{WORKFLOW}/__init__.py": "",
    f"workflows/{WORKFLOW}/sources/__init__.py": "",
    f"workflows/{WORKFLOW}/workflow.py": f"""
from pathlib import Path

from agno.workflow import Parallel, Workflow

from parallel_workflow_runtime import (
    PARALLEL_STEP, aggregation_step, load_config, preparation_step, report_step, source_steps
)


def get_{WORKFLOW}(db=None, config=None, report_model=None, source_functions=None):
    config = config or load_config(Path(__file__).with_name("config.yaml"))
    return Workflow(
        id=config.workflow_id,
        name=config.name,
        db=db,
        steps=[
            preparation_step(config),
            Parallel(*source_steps(config, source_functions), name=PARALLEL_STEP),
            aggregation_step(config),
            report_step(config, report_model),
        ],
    )
""",
}
SOURCE = f"""
import time


def run(source):
    started = time.time()
    until = time.thread_time() + {CPU_SECONDS}
    while time.thread_time() < until:
        pass
    return {{"records": 1, "details": {{"started": started}}}}
"""


def write_project(folder: Path) -> Path:
    """The bench's project under `folder`; its package's parent folder (for PYTHONPATH)."""
    package = folder / "src" / PACKAGE
    for name, text in FILES.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text.lstrip("\n"), encoding="utf-8")
    sources = "".join(
        f'  - id: "cpu_{n}"\n    name: "CPU {n}"\n' for n in range(1, CPU_SOURCES + 1)
    )
    (package / f"workflows/{WORKFLOW}/config.yaml").write_text(
        f'workflow:\n  name: "CPU"\n  workflow_id: "{WORKFLOW}"\n  report_model: ""\n'
        f"sources:\n{sources}",
        encoding="utf-8",
    )
    for n in range(1, CPU_SOURCES + 1):
        (package / f"workflows/{WORKFLOW}/sources/cpu_{n}.py").write_text(SOURCE, "utf-8")
    return package.parent


def run_executor_start_bench(repeat: int, progress: Progress | None = None) -> dict[str, Any]:
    say = progress or (lambda line: None)
    pairs = max(repeat, MIN_PAIRS)
    process_runs: list[float] = []
    thread_runs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-executor-start-") as folder:
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(write_project(Path(folder))), os.environ.get("PYTHONPATH", "")]
            ),
            "AGNO_TELEMETRY": "false",
            f"{PACKAGE.upper()}_HISTORY_DB": str(Path(folder) / "history.sqlite"),
        }
        command = [sys.executable, "-m", PACKAGE, "run", "--executor"]
        for number in range(1, pairs + 1):
            process_runs.append(timed([*command, "process"], environment))
            thread_runs.append(timed([*command, "thread"], environment))
            say(
                f"{number}/{pairs}: run --executor process {process_runs[-1]:.2f} s, "
                f"--executor thread {thread_runs[-1]:.2f} s"
            )
        serve_starts = serve_start_seconds(environment, repeat, say)
    ratios = [p / t for p, t in zip(process_runs, thread_runs, strict=True)]
    return {
        "sources": CPU_SOURCES,
        "cpu_seconds_each": CPU_SECONDS,
        "cpus": os.cpu_count(),
        "pairs": pairs,
        "process_run_seconds": round(statistics.median(process_runs), 3),
        "thread_run_seconds": round(statistics.median(thread_runs), 3),
        "process_over_thread": round(statistics.median(ratios), 3),
        "ratio_target": RATIO_TARGET,
        "serve_source_start_seconds": round(statistics.median(serve_starts), 4),
        "serve_target_seconds": SERVE_TARGET_SECONDS,
        "runs": {"process": process_runs, "thread": thread_runs, "serve_start": serve_starts},
    }


def serve_start_seconds(environment: dict[str, str], repeat: int, say: Progress) -> list[float]:
    """From each later run's parallel block start to its first source starting, under a
    `serve --executor process` of the bench's project."""
    with socket.socket() as probe:  # a free port, as the OS gives one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with subprocess.Popen(
        [sys.executable, "-m", PACKAGE, "serve", "--executor", "process", "--port", str(port)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as server:
        try:
            url = served_url(server)
            with httpx.Client(base_url=url, timeout=120) as client:
                starts: list[float] = []
                for number in range(repeat + 1):
                    response = client.post(f"/workflows/{WORKFLOW}/runs", data={"message": "b"})
                    response.raise_for_status()
                    aggregation = response.json()["aggregation"]
                    first = min(s["details"]["started"] for s in aggregation["sources"])
                    if number > 0:  # the first run: the pool was already started with it
                        starts.append(first - aggregation["started_at"])
                        milliseconds = starts[-1] * 1000
                        say(f"serve run {number}/{repeat}: sources start {milliseconds:.1f} ms")
        finally:
            server.terminate()
            server.wait(timeout=30)
    return starts


def served_url(server: subprocess.Popen[str]) -> str:
    """Where the server listens, from its first line ("Serving on http://...")."""
    assert server.stdout is not None
    deadline = time.monotonic() + SERVER_START_SECONDS
    for line in server.stdout:
        if line.startswith("Serving on "):
            return line.split()[2]
        if time.monotonic() > deadline:
            break
    raise RuntimeError(f"the bench's server did not start (exit code {server.poll()})")


def timed(command: list[str], environment: dict[str, str]) -> float:
    """Seconds from starting `command` to its exit; RuntimeError if it failed."""
    started = time.perf_counter()
    finished = subprocess.run(command, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        last = (finished.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{' '.join(command[1:])} exited {finished.returncode}: {last}")
    return seconds


def print_executor_start_bench(console: Console, results: dict[str, Any]) -> None:
    sources = f"{results['sources']} sources of {results['cpu_seconds_each']} s of CPU"
    table = Table("process", "seconds", title=f"Medians of {results['pairs']} pairs, {sources}")
    table.add_row("run --executor process", f"{results['process_run_seconds']:.3f}")
    table.add_row("run --executor thread", f"{results['thread_run_seconds']:.3f}")
    console.print(table)
    ratio, target = results["process_over_thread"], results["ratio_target"]
    start, start_target = results["serve_source_start_seconds"], results["serve_target_seconds"]
    console.print(
        f"process / thread (median of the pairs' ratios, {results['cpus']} CPUs): {ratio:.3f}, "
        f"{'within' if ratio <= target else 'OVER'} the target {target}"
    )
    console.print(
        f"serve --executor process, a later run's block start to its first source's start "
        f"(median): {start * 1000:.1f} ms, {'within' if start <= start_target else 'OVER'} "
        f"the target {start_target * 1000:.0f} ms"
    )
