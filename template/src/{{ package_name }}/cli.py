"""Command line: `python -m <package> run | list`.

Exit codes: 0 when every source succeeded, 1 when a source or the report failed, 2 for bad
usage (unknown workflow id, broken config.yaml, unusable report model).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agno.run.workflow import WorkflowCompletedEvent
from agno.workflow.types import StepOutput
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from .config import ConfigError
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
    outcome = execute(entry, request, console.print if stream else None)
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
    entry: WorkflowEntry, request: str, progress: Callable[[Text], None] | None = None
) -> RunOutcome:
    """Build and run the workflow once; with `progress`, stream Agno's events to it as lines."""
    workflow = entry.factory()
    session_state: dict[str, Any] = {}
    step_results: Sequence[StepOutput | list[StepOutput]] = []
    if progress is None:
        step_results = workflow.run(input=request, session_state=session_state).step_results
    else:
        source_ids = {source.id for source in entry.config.sources}
        for event in workflow.run(
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
    if result["ok"]:
        return Text(
            f"  ✓ {result['name']}: {result['records']:,} records in {result['seconds']:.2f} s"
        )
    return Text(
        f"  ✗ {result['name']} failed after {result['seconds']:.2f} s: {result['error']}",
        style="red",
    )


def _print_summary(console: Console, aggregation: Aggregation, report: str | None) -> None:
    table = Table(
        "source", "name", "status", "records", "seconds", title=Text(aggregation["workflow_name"])
    )
    for source in aggregation["sources"]:
        table.add_row(
            source["id"],
            Text(source["name"]),
            Text("ok", style="green") if source["ok"] else Text("failed", style="red"),
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
            console.print(Text(f"failed: {source['name']}: {source['error']}", style="red"))
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
    return parser
