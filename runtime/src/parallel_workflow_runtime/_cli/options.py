"""What the command line's parser modules (cli.py, command_parsers.py) share: `command`,
which links a parser to its command's function without importing it, the options that several
commands take (--html, --trace, --executor), and the argparse types that check the options'
values (positive, days, whole, latencies, port_number). Nothing heavy is imported here:
`--help` does not wait for the commands' imports.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import math
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from parallel_workflow_runtime._core.usage import EXECUTOR_NAMES

# The waits the bench can time: its results are rounded to 0.1 ms, so a shorter wait would
# divide by zero; a longer one would look like a hang.
MIN_LATENCY_SECONDS = 0.001
MAX_LATENCY_SECONDS = 3600.0


Subcommands = argparse._SubParsersAction  # what add_subparsers() returns
Command = Callable[[argparse.Namespace], int]


def command(module: str, name: str) -> Command:
    """The function `name` of the module `module` of _cli (commands, history_commands,
    schedule_commands, bench_commands), imported when its command runs: those modules import
    what the commands use (Agno, the history, rich), which `--help` does not need."""

    def run(args: argparse.Namespace) -> int:
        commands = importlib.import_module(f"parallel_workflow_runtime._cli.{module}")
        collect_garbage_from_now_on()
        function: Command = getattr(commands, name)
        return function(args)

    return run


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
