"""The parsers of the commands with the most options: `history` and its subcommands (show,
prune, cursors, ticks), `schedule` (list, next, trigger) and `bench`. cli.py's build_parser
adds them; history_commands.py, schedule_commands.py and bench_commands.py hold what they do.
"""

from __future__ import annotations

import argparse

from parallel_workflow_runtime._cli.options import (
    Subcommands,
    add_html_option,
    command,
    days,
    latencies,
    positive,
    whole,
)
from parallel_workflow_runtime._core.usage import EXECUTOR_NAMES

# The most runs or ticks a listing may ask for: SQLite's and PostgreSQL's LIMIT hold 64 bits,
# and a larger number was a traceback (OverflowError, "bigint out of range").
MAX_LISTED = 1_000_000
# The most fire times `schedule next` computes: croniter takes minutes for millions.
MAX_FIRES = 1000


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
    history.set_defaults(func=command("history_commands", "history_command"))
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
    showing.set_defaults(func=command("history_commands", "show_command"))
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
    pruning.set_defaults(func=command("history_commands", "prune_command"))
    cursors = history_commands.add_parser(
        "cursors",
        parents=[common],
        help="how far each connector source has read: its cursor, and the run that moved it",
    )
    cursors.set_defaults(func=command("history_commands", "cursors_command"))
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
    ticks.set_defaults(func=command("history_commands", "ticks_command"))


def add_schedule(subcommands: Subcommands, common: argparse.ArgumentParser) -> None:
    schedule = subcommands.add_parser(
        "schedule", help="the schedules of config.yaml, which `serve` runs: list, next, trigger"
    )
    commands = schedule.add_subparsers(dest="schedule_command", required=True)
    listing = commands.add_parser(
        "list", parents=[common], help="each schedule, its next fire time and its last tick"
    )
    listing.set_defaults(func=command("schedule_commands", "schedule_list_command"))
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
    upcoming.set_defaults(func=command("schedule_commands", "schedule_next_command"))
    trigger = commands.add_parser(
        "trigger",
        parents=[common],
        help="one run of a schedule now, here, under its overlap policy",
    )
    trigger.add_argument("schedule", metavar="ID", help="<workflow_id>/<name>, or the name")
    trigger.set_defaults(func=command("schedule_commands", "schedule_trigger_command"))


def add_bench(subcommands: Subcommands, common: argparse.ArgumentParser) -> None:
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
    bench.set_defaults(func=command("bench_commands", "bench_command"))


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
        "--backend",
        action="append",
        choices=("sqlalchemy", "pyarrow", "connectorx", "pandas", "all"),
        default=[],
        dest="backends",
        help="--kind sql: dlt's backend that reads the table (sql.backend); repeat it to time "
        "several, all: each installed one (default: sqlalchemy)",
    )
    bench.add_argument(
        "--url-env",
        metavar="NAME",
        help="--kind sql: the environment variable holding a PostgreSQL URL to write the table "
        "into (default: an SQLite file); a psycopg server-side cursor is timed there too",
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
        "--executor-start",
        action="store_true",
        help="instead: time `run` of a project of the bench's own, 8 sources of 0.25 s of CPU, "
        "with --executor process against thread (--repeat pairs, at least 5), and under "
        "`serve` the time from a run's start to its process sources starting",
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
