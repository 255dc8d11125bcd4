"""What `bench` does, in each of its variants: the workflow against a raw asyncio.gather
(bench_command), `--startup`, `--trace`, `--serve` and the connector kinds (`--kind sql`, `http`,
`file`). The bench (_bench) is imported only inside these functions, never at the top of this
module: `run`, `history` and `check` never load it (tests/test_bench_imports.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from rich.console import Console

from parallel_workflow_runtime._cli.commands import choose, quiet_agno_logs, writable_page
from parallel_workflow_runtime._core.connector_config import CONNECTOR_KINDS, SQL_BACKENDS
from parallel_workflow_runtime._core.registry import WorkflowEntry, discover
from parallel_workflow_runtime._core.usage import UsageError

if TYPE_CHECKING:
    from parallel_workflow_runtime._bench.workflow import BenchSettings
    from parallel_workflow_runtime._core.connector_config import SqlBackend


Results = TypeVar("Results")  # what a bench returns, as its table printer takes it


def bench_command(args: argparse.Namespace) -> int:
    from parallel_workflow_runtime._bench.page import bench_page
    from parallel_workflow_runtime._bench.results import print_bench
    from parallel_workflow_runtime._bench.workflow import run_bench
    from parallel_workflow_runtime._observe.page import write_page

    entry = choose(discover(), args.workflow)
    writable_page(args.html)
    quiet_agno_logs(verbose=False)
    if args.serve:
        return serve_bench_command(args, entry)
    if args.runs is not None:
        raise UsageError("--runs is for --serve")
    if args.startup:
        return startup_bench_command(args, entry)
    if args.executor_start:
        return executor_start_bench_command(args)
    if args.trace:
        return trace_bench_command(args, entry)
    if args.kind in CONNECTOR_KINDS:
        return connector_bench_command(args, entry)
    results = run_bench(entry, bench_settings(args), progress=to_stderr)
    if args.html is not None:
        write_page(args.html, bench_page(results))
        print(f"The bench's page: {args.html}", file=sys.stderr)
    # Piped output gets a wide page, as for history: seven columns need it.
    wide = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    return print_results(args, results, print_bench, wide)


def bench_settings(args: argparse.Namespace) -> BenchSettings:
    """The synthetic sources and runs that `bench` (and `bench --trace`) time."""
    from parallel_workflow_runtime._bench.workflow import BenchSettings

    return BenchSettings(
        sources=args.sources or 200,
        latencies=args.latency or (0.2,),
        max_concurrency=args.max_concurrency,
        repeat=args.repeat,
        source_kind=args.kind,
        sequential=args.sequential,
        executors=args.executors,
        max_workers=args.max_workers,
    )


def to_stderr(line: str) -> None:
    """A bench's progress: on stderr, so that `--json` output stays one document."""
    print(line, file=sys.stderr)


def print_results(
    args: argparse.Namespace,
    results: Results,
    print_table: Callable[[Console, Results], None],
    console: Console | None = None,
) -> int:
    """A bench's results: one JSON document with --json, else its table."""
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(console or Console(highlight=False), results)
    return 0


def refuse_workflow_bench_options(args: argparse.Namespace, what: str) -> None:
    """The bench's options that only its timing of the workflow's executors reads."""
    if args.html is not None or args.executors or args.sequential:
        raise UsageError(f"{what} takes no --html, --executor or --sequential")


def startup_bench_command(args: argparse.Namespace, entry: WorkflowEntry) -> int:
    from parallel_workflow_runtime._bench.results import print_startup_bench
    from parallel_workflow_runtime._bench.startup import run_startup_bench

    refuse_workflow_bench_options(args, "--startup")
    results = run_startup_bench(entry, args.repeat, to_stderr)
    return print_results(args, results, print_startup_bench)


def executor_start_bench_command(args: argparse.Namespace) -> int:
    from parallel_workflow_runtime._bench.executor_start import (
        print_executor_start_bench,
        run_executor_start_bench,
    )

    refuse_workflow_bench_options(args, "--executor-start")
    results = run_executor_start_bench(args.repeat, to_stderr)
    return print_results(args, results, print_executor_start_bench)


def trace_bench_command(args: argparse.Namespace, entry: WorkflowEntry) -> int:
    from parallel_workflow_runtime._bench.results import print_trace_bench
    from parallel_workflow_runtime._bench.tracing_cost import run_trace_bench

    refuse_workflow_bench_options(args, "--trace")
    if args.kind not in ("async", "sync"):
        raise UsageError("--trace times --kind async or sync sources")
    results = run_trace_bench(entry, bench_settings(args), to_stderr)
    return print_results(args, results, print_trace_bench)


def serve_bench_command(args: argparse.Namespace, entry: WorkflowEntry) -> int:
    from parallel_workflow_runtime._bench.serve import (
        DEFAULT_LATENCY_SECONDS,
        DEFAULT_RUNS,
        SERVE_KINDS,
        ServeBenchSettings,
        print_serve_bench,
        run_serve_bench,
    )

    refuse_workflow_bench_options(args, "--serve")
    if args.startup or args.kind not in SERVE_KINDS or args.rows is not None:
        raise UsageError("--serve takes no --startup or --rows, and --kind async or sync only")
    settings = ServeBenchSettings(
        runs=args.runs or DEFAULT_RUNS,
        sources=args.sources,
        latencies=args.latency or (DEFAULT_LATENCY_SECONDS,),
        source_kind=args.kind,
        max_concurrency=args.max_concurrency,
        repeat=args.repeat,
    )
    results = run_serve_bench(entry, settings, to_stderr)
    return print_results(args, results, print_serve_bench, Console(highlight=False, soft_wrap=True))


def installed(backends: tuple[SqlBackend, ...]) -> list[SqlBackend]:
    """The backends whose package is installed (`--backend all`)."""
    import importlib.util

    return [name for name in backends if importlib.util.find_spec(name) is not None]


def connector_bench_command(args: argparse.Namespace, entry: WorkflowEntry) -> int:
    from parallel_workflow_runtime._bench.connector_cost import (
        ConnectorBenchSettings,
        run_connector_bench,
    )
    from parallel_workflow_runtime._bench.results import print_connector_bench

    refuse_workflow_bench_options(args, f"--kind {args.kind}")
    http = args.kind == "http"
    if (args.backends or args.url_env) and args.kind != "sql":
        raise UsageError("--backend and --url-env are for --kind sql")
    if args.url_env and not os.environ.get(args.url_env):
        raise UsageError(f"--url-env: the environment variable {args.url_env} is not set")
    backends = args.backends or ["sqlalchemy"]
    settings = ConnectorBenchSettings(
        kind=args.kind,
        sources=args.sources or (8 if http else 1),
        rows=args.rows or (2_000 if http else 1_000_000),
        repeat=args.repeat,
        page_delay=args.page_delay,
        backends=tuple(
            installed(SQL_BACKENDS)
            if "all" in backends
            else [name for name in SQL_BACKENDS if name in backends]
        ),
        url_env=args.url_env,
    )
    results = run_connector_bench(entry, settings, progress=to_stderr)
    return print_results(args, results, print_connector_bench)
