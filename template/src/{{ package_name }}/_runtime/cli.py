"""The command line: `run | list | history | serve | bench`, one small function per command.

Exit codes: 0 when every source succeeded, 1 when a source or the report failed, 2 for bad
usage (unknown workflow id, broken config.yaml or settings.yaml, unusable report model or
history).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from .bench import BenchSettings, print_bench, run_bench
from .config import ConfigError
from .history import (
    HistoryError,
    history_for_run,
    history_location,
    open_history,
    prune,
    recent_runs,
)
from .registry import WorkflowEntry, discover
from .report import ReportModelError
from .running import DEFAULT_REQUEST, RunInterrupted, execute
from .serve import ServeError, port_number, serve
from .settings import PACKAGE
from .steps import effective_report_model
from .views import (
    ProgressTable,
    event_line,
    history_document,
    history_table,
    print_summary,
    workflows_table,
)


class UsageError(Exception):
    """Bad usage: printed as one line, exit code 2."""


USAGE_ERRORS = (UsageError, ConfigError, ReportModelError, HistoryError, ServeError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except USAGE_ERRORS as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except (RunInterrupted, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return 130  # as a shell reports a program stopped by Ctrl-C (SIGINT)


def run_command(args: argparse.Namespace) -> int:
    entry = choose(discover(), args.workflow)
    quiet_agno_logs(args.verbose)
    # Progress goes to stderr when stdout carries the JSON document.
    console = Console(stderr=args.json, highlight=False, soft_wrap=True)
    db = history_for_run()
    if args.stream:
        source_ids = {source.id for source in entry.config.sources}

        def print_line(event: Any) -> None:
            line = event_line(event, source_ids)
            if line is not None:
                console.print(line)

        outcome = execute(entry, args.message, db=db, on_event=print_line)
    elif console.is_terminal and not args.json:
        # A live table of the sources on a terminal; it gives way to the summary at the end.
        table = ProgressTable(entry.config.sources)
        with Live(table, console=console, refresh_per_second=8, transient=True):
            outcome = execute(entry, args.message, db=db, listener=table)
    else:
        outcome = execute(entry, args.message, db=db)
    if args.json:
        print(json.dumps(outcome.to_json_dict(), indent=2, ensure_ascii=False, allow_nan=False))
    elif outcome.aggregation is not None:
        print_summary(console, outcome.aggregation, outcome.report)
    for error in outcome.errors:
        print(f"error: {error}", file=sys.stderr)
    return outcome.exit_code


def list_command(args: argparse.Namespace) -> int:
    entries = discover()
    models = {wid: effective_report_model(entry.config) for wid, entry in entries.items()}
    Console().print(workflows_table(entries, models))
    return 0


def history_command(args: argparse.Namespace) -> int:
    if args.workflow is not None:
        choose(discover(), args.workflow)  # refuses an unknown id
    quiet_agno_logs(verbose=False)
    location = history_location()
    if location.sqlite_file is not None and not location.sqlite_file.exists():
        records = []  # opening it would create it; nothing has run yet
    else:
        records = recent_runs(open_history(location), args.workflow, args.limit)
    if args.json:
        print(json.dumps([history_document(record) for record in records], indent=2))
        return 0
    # Piped output gets a wide page rather than rich's 80 columns: eight columns need it.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    console.print(history_table(records, location) if records else f"No runs yet in {location}.")
    return 0


def prune_command(args: argparse.Namespace) -> int:
    if args.workflow is not None:
        choose(discover(), args.workflow)
    quiet_agno_logs(verbose=False)
    location = history_location()
    older_than = timedelta(days=args.older_than) if args.older_than is not None else None
    deleted = 0
    if location.sqlite_file is None or location.sqlite_file.exists():
        deleted = prune(open_history(location), args.workflow, args.keep, older_than)
    if args.json:
        print(json.dumps({"deleted_runs": deleted}))
    else:
        print(f"Deleted {deleted} runs from {location}.")
    return 0


def serve_command(args: argparse.Namespace) -> int:
    location = history_location()
    serve(args.host, args.port, location, allow_unauthenticated=args.allow_unauthenticated)
    return 0


def bench_command(args: argparse.Namespace) -> int:
    entry = choose(discover(), args.workflow)
    quiet_agno_logs(verbose=False)
    settings = BenchSettings(
        sources=args.sources,
        latencies=args.latency,
        max_concurrency=args.max_concurrency,
        repeat=args.repeat,
        source_kind=args.kind,
        sequential=args.sequential,
    )
    # Progress on stderr, so that `--json` output stays one document.
    results = run_bench(entry, settings, progress=lambda line: print(line, file=sys.stderr))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_bench(Console(highlight=False), results)
    return 0


def choose(entries: dict[str, WorkflowEntry], workflow_id: str | None) -> WorkflowEntry:
    """The workflow `--workflow` names, or the only one there is."""
    if workflow_id is None:
        if len(entries) != 1:
            raise UsageError(f"choose a workflow with --workflow: {', '.join(entries)}")
        return next(iter(entries.values()))
    if workflow_id not in entries:
        raise UsageError(
            f"unknown workflow id {workflow_id!r}; known: {', '.join(entries) or 'none'}"
        )
    return entries[workflow_id]


def quiet_agno_logs(verbose: bool) -> None:
    # Agno logs failures itself, to stdout when it is not a terminal; this CLI reports them
    # (once, on stderr), so Agno's loggers stay off unless --verbose asks for them.
    for name in ("agno", "agno-team", "agno-workflow"):
        logging.getLogger(name).disabled = not verbose


def program_name() -> str:
    """The command as it was typed: the console script's name, or `python -m <package>`."""
    name = Path(sys.argv[0]).name
    return f"python -m {PACKAGE}" if name in ("__main__.py", "") else name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name(),
        description="Run the project's Agno workflows, which process data sources in parallel.",
    )
    # The options that several commands share.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workflow", metavar="ID", help="workflow id (default: the only one)")
    common.add_argument("--json", action="store_true", help="print one JSON document")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", parents=[common], help="run a workflow and print its summary and report"
    )
    run.add_argument(
        "message",
        nargs="?",
        default=DEFAULT_REQUEST,
        help=f"the processing request (default: {DEFAULT_REQUEST!r})",
    )
    run.add_argument(
        "--stream", action="store_true", help="print each step and source as it completes"
    )
    run.add_argument("--verbose", action="store_true", help="show Agno's own log lines")
    run.set_defaults(func=run_command)

    listing = commands.add_parser("list", help="list the workflows the registry discovers")
    listing.set_defaults(func=list_command)

    history = commands.add_parser(
        "history", parents=[common], help="list recent runs, from the command line and over HTTP"
    )
    history.add_argument(
        "--limit", type=positive(int), default=20, help="how many runs (default: 20)"
    )
    history.set_defaults(func=history_command)
    pruning = history.add_subparsers(title="commands", metavar="prune").add_parser(
        "prune",
        parents=[common],
        help="delete old runs: all but the newest --keep N, or those older than --older-than",
    )
    limit = pruning.add_mutually_exclusive_group(required=True)
    limit.add_argument("--keep", type=whole, metavar="N", help="keep the newest N runs")
    limit.add_argument(
        "--older-than", type=positive(float), metavar="DAYS", help="delete runs older than this"
    )
    pruning.set_defaults(func=prune_command)

    serving = commands.add_parser(
        "serve", help="serve every workflow over HTTP (Agno's routers); needs the serve extra"
    )
    serving.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only); any other needs "
        "OS_SECURITY_KEY or --allow-unauthenticated",
    )
    serving.add_argument("--port", type=port_number, default=7777, help="port (default: 7777)")
    serving.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve on a --host other than this machine's without OS_SECURITY_KEY",
    )
    serving.set_defaults(func=serve_command)

    bench = commands.add_parser(
        "bench",
        parents=[common],
        help="time synthetic sources run sequentially, by the workflow and by raw asyncio.gather",
    )
    add_bench_options(bench)
    bench.set_defaults(func=bench_command)
    return parser


def add_bench_options(bench: argparse.ArgumentParser) -> None:
    bench.add_argument(
        "--sources", type=positive(int), default=200, help="how many sources (default: 200)"
    )
    bench.add_argument(
        "--latency",
        type=latencies,
        default=(0.2,),
        metavar="SECONDS[,SECONDS...]",
        help="seconds each source takes; a list repeats over the sources, e.g. 0.5,0.8,0.6 "
        "(default: 0.2)",
    )
    bench.add_argument(
        "--max-concurrency",
        type=positive(int),
        metavar="N",
        help="sources at once (default: all of them, i.e. no cap)",
    )
    bench.add_argument(
        "--repeat", type=positive(int), default=5, help="timed runs of each way (default: 5)"
    )
    bench.add_argument(
        "--kind",
        choices=("async", "sync"),
        default="async",
        help="sources as coroutines (asyncio.sleep) or blocking functions (time.sleep in a "
        "thread); the raw baseline runs the same kind (default: async)",
    )
    bench.add_argument(
        "--sequential",
        action="store_true",
        help="also run the sources one after another, which takes the sum of their times "
        "(default: that sum, as measured in the workflow's runs)",
    )


def positive(kind: Callable[[str], float]) -> Callable[[str], Any]:
    """An argparse type: `kind` of the text, refused unless greater than 0."""

    def parse(text: str) -> Any:
        value = kind(text)
        if not value > 0:  # `not >` also refuses NaN
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        if value == math.inf:
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names it in "invalid int value: 'x'"
    return parse


def whole(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def latencies(text: str) -> tuple[float, ...]:
    return tuple(positive(float)(part) for part in text.split(","))
