"""Command line: `python -m <package> run | list | bench`.

Exit codes: 0 when every source succeeded, 1 when a source or the report failed, 2 for bad
usage (unknown workflow id, broken config.yaml, unusable report model).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agno.run.workflow import WorkflowCompletedEvent
from agno.workflow.types import StepOutput
from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from .bench import BenchSettings, print_bench, run_bench
from .config import ConfigError
from .progress import LISTENER, ProgressTable, SourceEvent
from .registry import WorkflowEntry, discover
from .report import ReportModelError
from .results import Aggregation

DEFAULT_REQUEST = "Process all data sources"


class UsageError(Exception):
    """Bad usage: printed as one line, exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            return list_workflows()
        if args.command == "bench":
            return bench(args)
        return run(
            args.workflow, args.message, stream=args.stream, as_json=args.json, verbose=args.verbose
        )
    except (UsageError, ConfigError, ReportModelError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2


def list_workflows() -> int:
    table = Table("id", "name", "sources", "report")
    for workflow_id, entry in discover().items():
        config = entry.config
        table.add_row(
            Text(workflow_id),
            Text(config.name),
            str(len(config.sources)),
            Text(config.effective_report_model or "offline"),
        )
    Console().print(table)
    return 0


@dataclass
class RunOutcome:
    """What one run produced: the aggregation, the report and any step that failed."""

    aggregation: Aggregation | None
    report: str | None
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.errors or self.aggregation is None or self.aggregation["failed"]:
            return 1
        return 0


def run(
    workflow_id: str | None, request: str, *, stream: bool, as_json: bool, verbose: bool
) -> int:
    entry = _choose(discover(), workflow_id)
    _quiet_agno_logs(verbose)
    # Progress goes to stderr when stdout carries the JSON document.
    console = Console(stderr=as_json, highlight=False, soft_wrap=True)
    if stream:
        outcome = execute(entry, request, progress=console.print)
    elif console.is_terminal and not as_json:
        # A live table of the sources on a terminal; it gives way to the summary at the end.
        table = ProgressTable(entry.config.sources)
        with Live(table, console=console, refresh_per_second=8, transient=True):
            outcome = execute(entry, request, listener=table)
    else:
        outcome = execute(entry, request)
    if as_json:
        document = dict(outcome.aggregation or {})
        document.update(report=outcome.report, errors=outcome.errors)
        print(json.dumps(document, indent=2, ensure_ascii=False))
    elif outcome.aggregation is not None:
        _print_summary(console, outcome.aggregation, outcome.report)
    for error in outcome.errors:
        print(f"error: {error}", file=sys.stderr)
    return outcome.exit_code


def execute(
    entry: WorkflowEntry,
    request: str,
    progress: Callable[[Text], None] | None = None,
    listener: Callable[[SourceEvent], None] | None = None,
) -> RunOutcome:
    """Build and run the workflow once. With `progress`, Agno's events stream to it as lines;
    with `listener`, every source's progress (start, retry, finish) is reported to it."""
    return asyncio.run(_execute(entry, request, progress, listener))


async def _execute(
    entry: WorkflowEntry,
    request: str,
    progress: Callable[[Text], None] | None,
    listener: Callable[[SourceEvent], None] | None,
) -> RunOutcome:
    LISTENER.set(listener)  # this run's tasks, and so its sources, inherit it
    workflow = entry.factory()
    session_state: dict[str, Any] = {}
    step_results: Sequence[StepOutput | list[StepOutput]] = []
    if progress is None:
        output = await workflow.arun(input=request, session_state=session_state)
        step_results = output.step_results
    else:
        source_ids = {source.id for source in entry.config.sources}
        async for event in workflow.arun(
            input=request, session_state=session_state, stream=True, stream_events=True
        ):
            line = _progress_line(event, source_ids)
            if line is not None:
                progress(line)
            if isinstance(event, WorkflowCompletedEvent):
                step_results = event.step_results
    # Agno marks a failed top-level step (e.g. the Report Agent's model) but does not raise.
    steps = [step for step in step_results if isinstance(step, StepOutput)]
    errors = [f"{step.step_name} failed: {step.error}" for step in steps if not step.success]
    aggregation: Aggregation | None = session_state.get("aggregation")
    if aggregation is None:
        errors.append("the run produced no aggregation")
    report = steps[-1] if steps else None
    return RunOutcome(
        aggregation=aggregation,
        report=str(report.content) if report is not None and report.success else None,
        errors=errors,
    )


def bench(args: argparse.Namespace) -> int:
    entry = _choose(discover(), args.workflow)
    _quiet_agno_logs(verbose=False)
    settings = BenchSettings(
        sources=args.sources,
        latencies=args.latency,
        max_concurrency=args.max_concurrency,
        repeat=args.repeat,
        source_kind=args.kind,
    )
    results = run_bench(entry, settings)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_bench(Console(highlight=False), results)
    return 0


def _choose(entries: dict[str, WorkflowEntry], workflow_id: str | None) -> WorkflowEntry:
    if workflow_id is None:
        if len(entries) != 1:
            raise UsageError(f"choose a workflow with --workflow: {', '.join(entries)}")
        return next(iter(entries.values()))
    if workflow_id not in entries:
        raise UsageError(
            f"unknown workflow id {workflow_id!r}; known: {', '.join(entries) or 'none'}"
        )
    return entries[workflow_id]


def _quiet_agno_logs(verbose: bool) -> None:
    # Agno logs failures itself, to stdout when it is not a terminal; this CLI reports them
    # (once, on stderr), so Agno's loggers stay off unless --verbose asks for them.
    for name in ("agno", "agno-team", "agno-workflow"):
        logging.getLogger(name).disabled = not verbose


def _progress_line(event: Any, source_ids: set[str]) -> Text | None:
    """A line per step start and completion, and one per source as it finishes."""
    name = getattr(event, "step_name", None)
    if event.event == "ParallelExecutionStarted":
        return Text(f"▶ {name}: {len(source_ids)} sources in parallel")
    if event.event == "StepStarted" and name not in source_ids:
        return Text(f"▶ {name}")
    if event.event == "StepCompleted" and name in source_ids:
        return _source_line(event.content)
    if event.event in ("StepCompleted", "ParallelExecutionCompleted"):
        return Text(f"✓ {name}")
    return None


def _source_line(result: dict[str, Any]) -> Text:
    tries = f" ({result['attempts']} attempts)" if result["attempts"] > 1 else ""
    if result["ok"]:
        return Text(
            f"  ✓ {result['name']}: {result['records']:,} records in "
            f"{result['seconds']:.2f} s{tries}"
        )
    return Text(f"  ✗ {result['name']}{tries}: {result['error']}", style="red")


def _print_summary(console: Console, aggregation: Aggregation, report: str | None) -> None:
    table = Table(
        "source",
        "name",
        "status",
        "attempts",
        "records",
        "seconds",
        title=Text(aggregation["workflow_name"]),
    )
    for source in aggregation["sources"]:
        table.add_row(
            source["id"],
            Text(source["name"]),
            Text(source["status"].replace("_", " "), style="green" if source["ok"] else "red"),
            str(source["attempts"]),
            f"{source['records']:,}",
            f"{source['seconds']:.2f}",
        )
    console.print(table)
    console.print(
        f"{aggregation['total_sources']} sources, {aggregation['total_records']:,} records; "
        f"wall {aggregation['wall_seconds']:.2f} s vs {aggregation['sequential_seconds']:.2f} s "
        f"sequential: {aggregation['time_saved_seconds']:.2f} s saved "
        f"({aggregation['efficiency_percent']:.0f}% faster)"
    )
    for source in aggregation["sources"]:
        if not source["ok"]:
            console.print(
                Text(f"{source['status']}: {source['name']}: {source['error']}", style="red")
            )
    if report:
        console.print()
        console.print(Markdown(report) if console.is_terminal else Text(report))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {__package__}",
        description="Run the project's Agno workflows, which process data sources in parallel.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run a workflow and print its summary and report")
    run_parser.add_argument(
        "message",
        nargs="?",
        default=DEFAULT_REQUEST,
        help=f"the processing request (default: {DEFAULT_REQUEST!r})",
    )
    run_parser.add_argument(
        "--workflow", metavar="ID", help="workflow id (default: the only workflow)"
    )
    run_parser.add_argument(
        "--stream", action="store_true", help="print each step and source as it completes"
    )
    run_parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of the summary"
    )
    run_parser.add_argument("--verbose", action="store_true", help="show Agno's own log lines")
    commands.add_parser("list", help="list the workflows the registry discovers")
    bench_parser = commands.add_parser(
        "bench",
        help="time synthetic sources run sequentially, by the workflow and by raw asyncio.gather",
    )
    bench_parser.add_argument(
        "--workflow", metavar="ID", help="workflow id (default: the only workflow)"
    )
    bench_parser.add_argument(
        "--sources", type=_positive(int), default=200, help="how many sources (default: 200)"
    )
    bench_parser.add_argument(
        "--latency",
        type=_latencies,
        default=(0.2,),
        metavar="SECONDS[,SECONDS...]",
        help="seconds each source takes; a list repeats over the sources, e.g. 0.5,0.8,0.6 "
        "for the seed's profile (default: 0.2)",
    )
    bench_parser.add_argument(
        "--max-concurrency",
        type=_positive(int),
        metavar="N",
        help="sources at once (default: all of them, i.e. no cap)",
    )
    bench_parser.add_argument(
        "--repeat", type=_positive(int), default=5, help="timed runs of each way (default: 5)"
    )
    bench_parser.add_argument(
        "--kind",
        choices=("async", "sync"),
        default="async",
        help="sources as coroutines (asyncio.sleep) or blocking functions (time.sleep in a "
        "thread); the raw baseline runs the same kind (default: async)",
    )
    bench_parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def _positive(kind: Callable[[str], float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names it in "invalid int value: 'x'"
    return parse


def _latencies(text: str) -> tuple[float, ...]:
    return tuple(_positive(float)(part) for part in text.split(","))
