"""`bench --serve`: what a user of `serve` waits for when many runs arrive at once.

It starts a real server in a process of its own (server.py: the app and limits of
`serve`, the workflow's sources replaced by synthetic ones that wait `--latency` seconds) on
a free loopback port and a history of its own in a temporary folder, so that it neither adds
to the project's history nor moves its sources' cursors. Then, `repeat` times, it sends
`runs` POSTs of a run at once, over as many connections, and times each from its sending to
its whole answer. A run counts as done when it answered 200 with a COMPLETED run whose id
the history holds; every other is lost (an error status, a failed run, no answer, or an
answer the history does not hold).

The target (README.md, "Limits and speed"): the 95th percentile of the runs' times at most
3 times their median, none lost. A server that runs the runs side by side answers them all
about when their sources are done; one that makes them queue behind something (a lock, one
thread, the history's writes) answers the first soon and the last late.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from parallel_workflow_runtime._bench.workflow import SourceKind
from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.registry import WorkflowEntry
from parallel_workflow_runtime._core.settings import history_db_env
from parallel_workflow_runtime._store.history import HistoryLocation, open_history
from parallel_workflow_runtime._store.interrupted_runs import runs as stored_runs

Progress = Callable[[str], None]
P95_OVER_P50_TARGET = 3.0
SERVE_KINDS: tuple[SourceKind, ...] = ("async", "sync")  # the waits a server runs for a user
DEFAULT_RUNS = 200
DEFAULT_LATENCY_SECONDS = 0.05
STARTUP_TIMEOUT_SECONDS = 60.0  # for the server to answer /health
REQUEST_TIMEOUT_SECONDS = 300.0  # for one run's answer: past it, the run is lost
STOP_TIMEOUT_SECONDS = 15.0  # for the server to stop after SIGINT, before SIGKILL


@dataclass(frozen=True)
class ServeBenchSettings:
    runs: int = DEFAULT_RUNS  # POSTs sent at once, in each burst
    sources: int | None = None  # per run; None: as many as the workflow has
    latencies: Sequence[float] = (DEFAULT_LATENCY_SECONDS,)  # repeated over the sources
    source_kind: SourceKind = "async"
    # Sources at once on the server, all runs together (as `serve` counts config.yaml's
    # max_concurrency); None: as many as all the runs have, a cap never reached.
    max_concurrency: int | None = None
    repeat: int = 5  # bursts


@dataclass(frozen=True)
class Answer:
    """One POST of a run: how long its answer took, and what it was."""

    seconds: float
    status_code: int | None  # None: no answer (the connection failed or timed out)
    run_id: str | None = None  # of a run answered COMPLETED
    block_seconds: float | None = None  # the run's parallel block, as it reported it
    problem: str | None = None  # why it did not complete


def run_serve_bench(
    entry: WorkflowEntry, settings: ServeBenchSettings, progress: Progress | None = None
) -> dict[str, Any]:
    """Time `settings.repeat` bursts of runs on a server of the bench's own."""
    say = progress or (lambda line: None)
    sources = settings.sources or len(entry.config.sources)
    workflow_id = entry.config.workflow_id
    bursts: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as folder:
        history = Path(folder) / "history.sqlite"
        with bench_server(entry, settings, sources, Path(folder)) as base_url:
            for number in range(1, settings.repeat + 1):
                started = time.perf_counter()
                answers = asyncio.run(burst(base_url, workflow_id, settings.runs))
                seconds = time.perf_counter() - started
                bursts.append(burst_summary(answers, seconds, completed_in(history, workflow_id)))
                say(burst_line(number, settings.repeat, bursts[-1]))
    return summarise(entry, settings, sources, bursts)


@contextlib.contextmanager
def bench_server(
    entry: WorkflowEntry, settings: ServeBenchSettings, sources: int, folder: Path
) -> Iterator[str]:
    """server.py in a process of its own, answering /health; its base URL. SIGINT
    stops it on the way out, as Ctrl-C stops `serve`; SIGKILL if it does not stop."""
    port_file = folder / "port"
    log = folder / "server.log"
    command = [
        sys.executable, "-m", f"{__package__}.server", current().package,
        entry.config.workflow_id, "--port-file", str(port_file), "--sources", str(sources),
        "--latency", *map(str, settings.latencies), "--kind", settings.source_kind,
        "--runs", str(settings.runs),
    ]  # fmt: skip
    if settings.max_concurrency is not None:
        command += ["--max-concurrency", str(settings.max_concurrency)]
    environment = {
        **os.environ,
        history_db_env(): str(folder / "history.sqlite"),
        "AGNO_TELEMETRY": "false",
    }
    with log.open("w", encoding="utf-8") as output:
        server = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT)
    try:
        base_url = f"http://127.0.0.1:{wait_for_port(server, port_file, log)}"
        wait_for_health(server, base_url, log)
        yield base_url
    finally:
        stop(server)


def wait_for_port(server: subprocess.Popen[bytes], port_file: Path, log: Path) -> int:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not port_file.exists():
        check_running(server, log, deadline)
        time.sleep(0.05)
    return int(port_file.read_text(encoding="utf-8"))


def wait_for_health(server: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    with httpx.Client(base_url=base_url, timeout=5) as client:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if client.get("/health").status_code == 200:
                    return
            check_running(server, log, deadline)
            time.sleep(0.05)


def check_running(server: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    """RuntimeError, with the server's last line, if it exited or took too long to start."""
    if server.poll() is None and time.monotonic() < deadline:
        return
    lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    last = lines[-1] if lines else "no output"
    if server.returncode is None:
        raise RuntimeError(f"the bench's server did not answer in {STARTUP_TIMEOUT_SECONDS:g} s")
    raise RuntimeError(f"the bench's server exited {server.returncode}: {last}")


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            server.kill()
    server.wait()  # reaped: no zombie either


async def burst(base_url: str, workflow_id: str, runs: int) -> list[Answer]:
    """`runs` POSTs of a run at once, each on a connection of its own."""
    limits = httpx.Limits(max_connections=runs, max_keepalive_connections=runs)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT_SECONDS
    ) as client:
        path = f"/workflows/{workflow_id}/runs"
        return await asyncio.gather(*(one_run(client, path, n) for n in range(1, runs + 1)))


async def one_run(client: httpx.AsyncClient, path: str, number: int) -> Answer:
    started = time.perf_counter()
    try:
        response = await client.post(path, data={"message": f"bench run {number}"})
    except httpx.HTTPError as error:
        seconds = time.perf_counter() - started
        return Answer(seconds, None, problem=f"no answer: {type(error).__name__} {error}")
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        return Answer(seconds, response.status_code, problem=response.text[:200])
    document = response.json()
    if document.get("status") != "COMPLETED":
        return Answer(seconds, 200, problem="; ".join(document.get("errors") or ["not COMPLETED"]))
    block = (document.get("aggregation") or {}).get("wall_seconds")
    return Answer(seconds, 200, run_id=document.get("run_id"), block_seconds=block)


def completed_in(history: Path, workflow_id: str) -> set[str]:
    """The ids of the runs of `workflow_id` that the history holds as COMPLETED."""
    db = open_history(HistoryLocation(sqlite_file=history))
    return {
        str(row["run_id"])
        for row in stored_runs(db, workflow_id=workflow_id)
        if str(row.get("status")).upper() == "COMPLETED"
    }


def burst_summary(answers: list[Answer], seconds: float, in_history: set[str]) -> dict[str, Any]:
    times = [answer.seconds for answer in answers]
    p50, p95 = median_and_95th_percentile(times)
    answered = [answer.run_id for answer in answers if answer.run_id is not None]
    blocks = [answer.block_seconds for answer in answers if answer.block_seconds is not None]
    problems = [answer.problem for answer in answers if answer.problem is not None]
    kept = sum(run_id in in_history for run_id in answered)
    unanswered = sum(answer.status_code is None for answer in answers)
    return {
        "seconds": round(seconds, 3),
        "runs_per_second": round(len(answers) / seconds, 2),
        "p50_seconds": round(p50, 4),
        "p95_seconds": round(p95, 4),
        "max_seconds": round(max(times), 4),
        "p95_over_p50": round(p95 / p50, 3),
        "answered_completed": len(answered),
        "in_history": kept,
        "lost": len(answers) - kept,
        "errors": len(problems) - unanswered,  # answered, but not a completed run
        "unanswered": unanswered,
        "block_seconds_median": round(statistics.median(blocks), 4) if blocks else None,
        "first_problem": problems[0] if problems else None,
    }


def median_and_95th_percentile(times: Sequence[float]) -> tuple[float, float]:
    """The 50th and 95th percentiles of `times`, each interpolated between the two nearest
    times, the shortest being the 0th percentile and the longest the 100th (the "inclusive"
    method of statistics.quantiles). One time is every percentile: Python 3.11's quantiles
    refuses fewer than two."""
    if len(times) == 1:
        return times[0], times[0]
    cut_points = statistics.quantiles(times, n=100, method="inclusive")  # [k - 1]: the kth
    return cut_points[49], cut_points[94]


def burst_line(number: int, repeat: int, burst: dict[str, Any]) -> str:
    return (
        f"{number}/{repeat}: {burst['seconds']:.2f} s, p50 {burst['p50_seconds']:.3f} s, p95 "
        f"{burst['p95_seconds']:.3f} s, max {burst['max_seconds']:.3f} s, lost {burst['lost']}"
    )


def summarise(
    entry: WorkflowEntry,
    settings: ServeBenchSettings,
    sources: int,
    bursts: list[dict[str, Any]],
) -> dict[str, Any]:
    """The medians of the bursts (the worst for max and the sums for the counts)."""
    blocks = [b["block_seconds_median"] for b in bursts if b["block_seconds_median"] is not None]
    return {
        "workflow_id": entry.config.workflow_id,
        "runs": settings.runs,
        "repeat": settings.repeat,
        "sources": sources,
        "latencies": list(settings.latencies),
        "source_kind": settings.source_kind,
        "max_concurrency": settings.max_concurrency,
        "runs_per_second": statistics.median(b["runs_per_second"] for b in bursts),
        "p50_seconds": statistics.median(b["p50_seconds"] for b in bursts),
        "p95_seconds": statistics.median(b["p95_seconds"] for b in bursts),
        "max_seconds": max(b["max_seconds"] for b in bursts),
        "p95_over_p50": statistics.median(b["p95_over_p50"] for b in bursts),
        "p95_over_p50_target": P95_OVER_P50_TARGET,
        "sent": settings.runs * settings.repeat,
        "answered_completed": sum(b["answered_completed"] for b in bursts),
        "in_history": sum(b["in_history"] for b in bursts),
        "lost": sum(b["lost"] for b in bursts),
        "errors": sum(b["errors"] for b in bursts),
        "unanswered": sum(b["unanswered"] for b in bursts),
        "block_seconds_median": statistics.median(blocks) if blocks else None,
        "bursts": bursts,
    }


def print_serve_bench(console: Console, results: dict[str, Any]) -> None:
    """`bench --serve`: a few lines, the ratio against its target last."""
    latencies = "/".join(f"{seconds:g}" for seconds in results["latencies"])
    console.print(
        f"{results['runs']} runs at once over HTTP, {results['repeat']} times: "
        f"{results['workflow_id']} with {results['sources']} {results['source_kind']} sources "
        f"of {latencies} s"
    )
    console.print(
        f"run's answer: p50 {results['p50_seconds']:.3f} s, p95 {results['p95_seconds']:.3f} s,"
        f" max {results['max_seconds']:.3f} s (medians of the bursts; max: the worst)"
    )
    block = results["block_seconds_median"]
    blocks = f"median {block:.3f} s" if block is not None else "none completed"
    console.print(
        f"the runs' parallel blocks: {blocks}; {results['runs_per_second']:.1f} runs answered"
        " a second"
    )
    console.print(
        f"runs: {results['sent']} sent, {results['answered_completed']} answered COMPLETED, "
        f"{results['in_history']} of them in the history; lost {results['lost']} "
        f"({results['errors']} errors, {results['unanswered']} unanswered)"
    )
    ratio, target = results["p95_over_p50"], results["p95_over_p50_target"]
    met = ratio <= target and results["lost"] == 0
    console.print(
        f"p95 / p50: {ratio:.3f}, lost {results['lost']}: "
        f"{'within' if met else 'OVER'} the target {target} with none lost"
    )
    first = next((b["first_problem"] for b in results["bursts"] if b["first_problem"]), None)
    if first is not None:
        console.print(f"first problem: {first}", markup=False)
