"""The command line: `run | list | check | history [show | prune | cursors | ticks] | serve |
schedule [list | next | trigger] | engine-edits | bench`, and `--version`:
the parser, and the dispatch to commands.py, where each command has one small function (and
to history_commands.py, schedule_commands.py, bench_commands.py for those families). The
parsers of history, schedule and bench are command_parsers.py's; what the parsers share (the
options several commands take, the argparse types) is options.py's.

Exit codes: 0 when every source succeeded, 1 when a source or the report failed (`check`:
when it found a problem), 2 for bad usage (unknown workflow id, broken config.yaml,
settings.yaml or .env, unusable report model, history or executor), 130 when Ctrl-C stopped
the run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from parallel_workflow_runtime._cli.command_parsers import add_bench, add_history, add_schedule
from parallel_workflow_runtime._cli.entry import program_name
from parallel_workflow_runtime._cli.options import (
    Subcommands,
    add_executor_option,
    add_html_option,
    add_trace_option,
    command,
    port_number,
    positive,
)
from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.usage import (
    CHECK_TIMEOUT_SECONDS,
    DEFAULT_REQUEST,
    USAGE_ERRORS,
    RunInterrupted,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # The project's .env, for the variables the environment does not set (project.py).
        current().load_env_file()
        if args.command == "run" and args.executor == "process":
            from parallel_workflow_runtime._execution.warm_start import start_for_run

            # Its workers' imports overlap this process's.
            start_for_run(args.workflow, stdout_to_stderr=args.json)
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
    listing.set_defaults(func=command("commands", "list_command"))
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
    edits.set_defaults(func=command("commands", "engine_edits_command"))
    add_bench(subcommands, common)
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
    run.set_defaults(func=command("commands", "run_command"))


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
    checking.set_defaults(func=command("commands", "check_command"))


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
    serving.set_defaults(func=command("commands", "serve_command"))
