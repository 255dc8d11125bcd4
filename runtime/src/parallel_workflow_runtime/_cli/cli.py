"""The command line: `run | list | check | history [show | prune | cursors | ticks] | serve |
schedule [list | next | trigger] | engine-edits | bench`, and `--version`:
the parser, and the dispatch to commands.py, where each command has one small function.

Exit codes: 0 when every source succeeded, 1 when a source or the report failed (`check`:
when it found a problem), 2 for bad usage (unknown workflow id, broken config.yaml,
settings.yaml or .env, unusable report model, history or executor), 130 when Ctrl-C stopped
the run.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from parallel_workflow_runtime._cli.entry import program_name
from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.usage import (
    CHECK_TIMEOUT_SECONDS,
    DEFAULT_REQUEST,
    EXECUTOR_NAMES,
    USAGE_ERRORS,
    RunInterrupted,
)

# The waits the bench can time: its results are rounded to 0.1 ms, so a shorter wait would
# divide by zero; a longer one would look like a hang.
MIN_LATENCY_SECONDS = 0.001
MAX_LATENCY_SECONDS = 3600.0
# The most runs or ticks a listing may ask for: SQLite's and PostgreSQL's LIMIT hold 64 bits,
# and a larger number was a traceback (OverflowError, "bigint out of range").
MAX_LISTED = 1_000_000
# The most fire times `schedule next` computes: croniter takes minutes for millions.
MAX_FIRES = 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # The project's .env, for the variables the environment does not set (project.py).
        current().load_env_file()
        result: int = args.func(args)
        return result
    except USAGE_ERRORS as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except (RunInterrupted, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return 130  # as a shell reports a program stopped by Ctrl-C (SIGINT)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name(),
        description="Run the project's Agno workflows, which process data sources in parallel.",
    )
    parser.add_argument(
        "--version",
        action=PrintVersions,
        help="print the project's version, the runtime's and Agno's, and exit",
    )
    # The options that several commands share.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workflow",
        metavar="ID",
        help="workflow id; run and bench default to settings.yaml's default_workflow (or the"
        " only one), the others to every workflow",
    )
    common.add_argument("--json", action="store_true", help="print one JSON document")
    subcommands = parser.add_subparsers(dest="command", required=True)
    add_run(subcommands, common)
    listing = subcommands.add_parser("list", help="list the workflows the registry discovers")
    listing.set_defaults(func=command("list_command"))
    add_check(subcommands, common)
    add_history(subcommands, common)
    add_serve(subcommands)
    add_schedule(subcommands, common)
    edits = subcommands.add_parser(
        "engine-edits",
        help="after a template update: the old engine's files it removed that you had edited",
        description="List, one line each, the files of the engine a template before 0.6.0"
        " rendered into the project that `copier update` removed while they held your edits"
        " (git HEAD still has them). Exit 1 if there are any.",
    )
    edits.set_defaults(func=command("engine_edits_command"))
    bench = subcommands.add_parser(
        "bench",
        parents=[common],
        help="time synthetic sources in the workflow and in a raw asyncio.gather",
        description="Time synthetic sources run by the workflow and by a raw asyncio.gather "
        "under the same cap, --repeat times each, and print the medians and ratios. The "
        "sequential time is the sum of the sources' own times as measured in the workflow's "
        "runs: the sources run one after another only with --sequential.",
    )
    add_bench_options(bench)
    bench.set_defaults(func=command("bench_command"))
    return parser


class PrintVersions(argparse.Action):
    """`--version`: argparse's own action would work the line out whenever the parser is
    built; this one reads the versions only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None):
        super().__init__(
            option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(current().versions())
        parser.exit()


Subcommands = argparse._SubParsersAction  # what add_subparsers() returns
Command = Callable[[argparse.Namespace], int]


def command(name: str) -> Command:
    """The function `name` of commands.py, imported when its command runs: commands.py
    imports what the commands use (Agno, the history, rich), which `--help` does not need."""

    def run(args: argparse.Namespace) -> int:
        from parallel_workflow_runtime._cli import commands

        collect_garbage_from_now_on()
        function: Command = getattr(commands, name)
        return function(args)

    return run


def add_run(subcommands: Subcommands, common: argparse.ArgumentParser) -> None:
    run = subcommands.add_parser(
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
    add_executor_option(run, "every source on this executor instead of config.yaml's")
    add_html_option(run, "also write the run as an HTML page: its timeline, sources and report")
    add_trace_option(run, "trace the run: a span for each source attempt, kept in the history")
    run.add_argument(
        "--full-refresh",
        nargs="*",
        metavar="SOURCE",
        help="these connector sources (all, without a name) read everything again, from their"
        " initial value; their cursor then moves to where this read gets",
    )
    run.set_defaults(func=command("run_command"))


def add_check(subcommands: Subcommands, common: argparse.ArgumentParser) -> None:
    checking = subcommands.add_parser(
        "check",
        parents=[common],
        help="is the project ready to run: its settings, workflows, variables and sources",
        description="Load settings.yaml and every workflow, list each environment variable the"
        " configuration names (set or unset, never its value), and try what each connector"
        " source reads (connect, read a first page, list the files). Exit 1 on any problem.",
    )
    checking.add_argument(
        "--timeout",
        type=positive(float),
        default=CHECK_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"how long each source may take to answer (default: {CHECK_TIMEOUT_SECONDS:g})",
    )
    checking.set_defaults(func=command("check_command"))


def add_history(subcommands: Subcommands, common: argparse.ArgumentParser) -> None:
    history = subcommands.add_parser(
        "history", parents=[common], help="list recent runs, from the command line and over HTTP"
    )
    history.add_argument(
        "--limit",
        type=positive(int, MAX_LISTED),
        default=20,
        help=f"how many runs (default: 20, at most {MAX_LISTED})",
    )
    history.set_defaults(func=command("history_command"))
    history_commands = history.add_subparsers(
        title="commands", metavar="show | prune | cursors | ticks"
    )
    showing = history_commands.add_parser(
        "show", parents=[common], help="one stored run: its sources, timeline and report"
    )
    showing.add_argument("run_id", metavar="RUN_ID", help="the run's id, or its first characters")
    add_html_option(showing, "write the run as an HTML page instead of printing it")
    showing.add_argument(
        "--trace", action="store_true", help="print the run's trace: its spans as a tree"
    )
    showing.set_defaults(func=command("show_command"))
    pruning = history_commands.add_parser(
        "prune",
        parents=[common],
        help="delete old runs: all but the newest --keep N, or those older than --older-than",
    )
    limit = pruning.add_mutually_exclusive_group(required=True)
    limit.add_argument("--keep", type=whole, metavar="N", help="keep the newest N runs")
    limit.add_argument(
        "--older-than", type=days, metavar="DAYS", help="delete runs older than this"
    )
    pruning.set_defaults(func=command("prune_command"))
    cursors = history_commands.add_parser(
        "cursors",
        parents=[common],
        help="how far each connector source has read: its cursor, and the run that moved it",
    )
    cursors.set_defaults(func=command("cursors_command"))
    ticks = history_commands.add_parser(
        "ticks",
        parents=[common],
        help="the schedules' ticks: each one's run, or why it was skipped",
    )
    ticks.add_argument(
        "--limit",
        type=positive(int, MAX_LISTED),
        default=50,
        help=f"how many (default: 50, at most {MAX_LISTED})",
    )
    ticks.set_defaults(func=command("ticks_command"))


def add_schedule(subcommands: Subcommands, common: argparse.ArgumentParser) -> None:
    schedule = subcommands.add_parser(
        "schedule", help="the schedules of config.yaml, which `serve` runs: list, next, trigger"
    )
    commands = schedule.add_subparsers(dest="schedule_command", required=True)
    listing = commands.add_parser(
        "list", parents=[common], help="each schedule, its next fire time and its last tick"
    )
    listing.set_defaults(func=command("schedule_list_command"))
    upcoming = commands.add_parser(
        "next", parents=[common], help="a schedule's next fire times, in its timezone and UTC"
    )
    upcoming.add_argument("schedule", metavar="ID", help="<workflow_id>/<name>, or the name")
    upcoming.add_argument(
        "--count",
        type=positive(int, MAX_FIRES),
        default=5,
        help=f"how many (default: 5, at most {MAX_FIRES})",
    )
    upcoming.set_defaults(func=command("schedule_next_command"))
    trigger = commands.add_parser(
        "trigger",
        parents=[common],
        help="one run of a schedule now, here, under its overlap policy",
    )
    trigger.add_argument("schedule", metavar="ID", help="<workflow_id>/<name>, or the name")
    trigger.set_defaults(func=command("schedule_trigger_command"))


def add_serve(subcommands: Subcommands) -> None:
    serving = subcommands.add_parser(
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
    add_executor_option(serving, "every source of every workflow on this executor")
    add_trace_option(serving, "trace every run, and serve the traces (Agno's /traces routes)")
    serving.set_defaults(func=command("serve_command"))


def add_bench_options(bench: argparse.ArgumentParser) -> None:
    bench.add_argument(
        "--sources",
        type=positive(int),
        help="how many sources (default: 200; --kind sql or file: 1; --kind http: 8; --serve: "
        "as many as the workflow has, in each run)",
    )
    bench.add_argument(
        "--latency",
        type=latencies,
        metavar="SECONDS[,SECONDS...]",
        help="seconds each source takes, from 0.001 to 3600; a list repeats over the sources, "
        "e.g. 0.5,0.8,0.6 (default: 0.2; --serve: 0.05)",
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
        choices=("async", "sync", "cpu", "sql", "http", "file"),
        default="async",
        help="sources as coroutines (asyncio.sleep), blocking functions (time.sleep) or "
        "CPU-bound ones (a pure-Python loop for --latency seconds of CPU); the raw baseline "
        "runs the same kind. sql, http, file: connector sources reading a table (SQLite), an "
        "API (a local one, --page-delay per page) or a Parquet file, against dlt reading the "
        "same alone (default: async)",
    )
    bench.add_argument(
        "--rows",
        type=positive(int),
        help="--kind sql, http, file: rows each source reads (default: 1,000,000; http: 2,000)",
    )
    bench.add_argument(
        "--page-delay",
        type=positive(float),
        default=0.05,
        metavar="SECONDS",
        help="--kind http: how long the local API takes for each page of 100 (default: 0.05)",
    )
    bench.add_argument(
        "--startup",
        action="store_true",
        help="instead: time `run` of the workflow as a process of its own, besides its "
        'parallel block, against `python -c "import agno.workflow"`, and `--help`',
    )
    bench.add_argument(
        "--serve",
        action="store_true",
        help="instead: start a server as `serve` does, send it --runs runs at once over HTTP "
        "(--repeat times) and time each one's answer: p50, p95, max, and runs lost",
    )
    bench.add_argument(
        "--runs",
        type=positive(int),
        help="--serve: runs sent at once (default: 200)",
    )
    bench.add_argument(
        "--trace",
        action="store_true",
        help="instead: time the workflow's runs untraced, then traced into a history of its "
        "own, and `run` as a process with and without --trace (needs the tracing extra)",
    )
    add_bench_executor_options(bench)
    add_html_option(bench, "also write the wall time of each way as bars in an HTML page")
    bench.add_argument(
        "--sequential",
        action="store_true",
        help="also run the sources one after another, which takes the sum of their times "
        "(default: that sum, as measured in the workflow's runs)",
    )


def add_bench_executor_options(bench: argparse.ArgumentParser) -> None:
    """--executor and --max-workers: the executors bench also times, and how many workers."""
    bench.add_argument(
        "--executor",
        action="append",
        choices=EXECUTOR_NAMES,
        default=[],
        dest="executors",
        help="also time the workflow with every source on this executor; repeat it for "
        "several (thread, which the speed-ups compare with, always runs)",
    )
    bench.add_argument(
        "--max-workers",
        type=positive(int),
        metavar="N",
        help="processes of the process pool and of a Dask LocalCluster (default: config.yaml's "
        "max_workers, else one per CPU)",
    )


def add_html_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--html", type=Path, metavar="FILE", help=help_text)


def add_trace_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--trace",
        action="store_true",
        help=f"{help_text}, and sent to OTEL_EXPORTER_OTLP_ENDPOINT if set (default: "
        "settings.yaml's `tracing`); needs the tracing extra",
    )


def add_executor_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--executor", choices=EXECUTOR_NAMES, help=help_text)


def positive(kind: Callable[[str], float], maximum: float = math.inf) -> Callable[[str], Any]:
    """An argparse type: `kind` of the text, refused unless greater than 0 (and at most
    `maximum`)."""

    def parse(text: str) -> Any:
        value = kind(text)
        if not value > 0:  # `not >` also refuses NaN
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        if value == math.inf:
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names it in "invalid int value: 'x'"
    return parse


def days(text: str) -> float:
    """An argparse type: a number of days > 0, at most what Python's timedelta holds."""
    value: float = positive(float)(text)
    if value > timedelta.max.days:
        raise argparse.ArgumentTypeError(f"must be at most {timedelta.max.days} days, got {text}")
    return value


def whole(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def latencies(text: str) -> tuple[float, ...]:
    """An argparse type: seconds separated by commas, each from MIN_LATENCY_SECONDS to
    MAX_LATENCY_SECONDS: a shorter wait rounds to no time at all in the results, a longer one
    looks like a hang."""
    seconds: list[float] = []
    for part in text.split(","):
        value = float(part)
        if not MIN_LATENCY_SECONDS <= value <= MAX_LATENCY_SECONDS:  # `not` also refuses NaN
            raise argparse.ArgumentTypeError(
                f"must be from {MIN_LATENCY_SECONDS:g} to {MAX_LATENCY_SECONDS:g} seconds, "
                f"got {part}"
            )
        seconds.append(value)
    return tuple(seconds)


def collect_garbage_from_now_on() -> None:
    """The collector back on (entry.py turned it off for the imports), no longer walking
    what exists so far, which lives until the process ends (gc.freeze)."""
    gc.freeze()
    gc.enable()


def port_number(text: str) -> int:
    """An argparse type: a TCP port, from 1 to 65535."""
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 1 to 65535, got {text}")
    return port


port_number.__name__ = "port"  # argparse names it in "invalid port value: 'x'"
