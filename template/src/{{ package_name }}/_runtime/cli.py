"""Command line: `python -m <package> run | list | history | serve | bench`.

Exit codes: 0 when every source succeeded, 1 when a source or the report failed, 2 for bad
usage (unknown workflow id, broken config.yaml, unusable report model or history).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agno.run.workflow import WorkflowCompletedEvent
from agno.workflow.types import StepOutput
from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from .bench import BenchSettings, print_bench, run_bench
from .config import ConfigError
from .history import (
    HistoryError,
    RunRecord,
    history_for_run,
    history_location,
    open_history,
    recent_runs,
)
from .progress import LISTENER, ProgressTable, SourceEvent
from .registry import WorkflowEntry, discover
from .report import ReportModelError
from .results import Aggregation
from .serve import ServeError, serve

if TYPE_CHECKING:
    from agno.db.base import BaseDb

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
        if args.command == "history":
            return history(args.workflow, args.limit, as_json=args.json)
        if args.command == "serve":
            serve(args.host, args.port, history_location())
            return 0
        return run(
            args.workflow, args.message, stream=args.stream, as_json=args.json, verbose=args.verbose
        )
    except (UsageError, ConfigError, ReportModelError, HistoryError, ServeError) as error:
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
    run_id: str | None = None  # Agno's id of the run, as the history records it

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
    db = history_for_run()
    if stream:
        outcome = execute(entry, request, progress=console.print, db=db)
    elif console.is_terminal and not as_json:
        # A live table of the sources on a terminal; it gives way to the summary at the end.
        table = ProgressTable(entry.config.sources)
        with Live(table, console=console, refresh_per_second=8, transient=True):
            outcome = execute(entry, request, listener=table, db=db)
    else:
        outcome = execute(entry, request, db=db)
    if as_json:
        document = dict(outcome.aggregation or {})
        document.update(run_id=outcome.run_id, report=outcome.report, errors=outcome.errors)
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
    db: BaseDb | None = None,
) -> RunOutcome:
    """Build and run the workflow once. With `progress`, Agno's events stream to it as lines;
    with `listener`, every source's progress (start, retry, finish) is reported to it; with
    `db`, the run is recorded in that history."""
    return asyncio.run(_execute(entry, request, progress, listener, db))


async def _execute(
    entry: WorkflowEntry,
    request: str,
    progress: Callable[[Text], None] | None,
    listener: Callable[[SourceEvent], None] | None,
    db: BaseDb | None,
) -> RunOutcome:
    LISTENER.set(listener)  # this run's tasks, and so its sources, inherit it
    workflow = entry.factory(db=db)
    session_state: dict[str, Any] = {}
    step_results: Sequence[StepOutput | list[StepOutput]] = []
    run_id: str | None = None
    if progress is None:
        output = await workflow.arun(input=request, session_state=session_state)
        step_results, run_id = output.step_results, output.run_id
    else:
        source_ids = {source.id for source in entry.config.sources}
        async for event in workflow.arun(
            input=request, session_state=session_state, stream=True, stream_events=True
        ):
            line = _progress_line(event, source_ids)
            if line is not None:
                progress(line)
            if isinstance(event, WorkflowCompletedEvent):
                step_results, run_id = event.step_results, event.run_id
    # Agno marks a failed top-level step (e.g. the Report Agent's model) but does not raise.
    steps = [step for step in step_results if isinstance(step, StepOutput)]
    errors = [f"{step.step_name} failed: {step.error}" for step in steps if not step.success]
    aggregation: Aggregation | None = session_state.get("aggregation")
    if aggregation is None:
        errors.append("the run produced no aggregation")
    # Agno logs a failed save (e.g. no rights to create its tables) and carries on.
    if db is not None and (run_id is None or db.get_run(run_id) is None):
        errors.append(f"the run was not saved in the history ({history_location()})")
    report = steps[-1] if steps else None
    return RunOutcome(
        aggregation=aggregation,
        report=str(report.content) if report is not None and report.success else None,
        errors=errors,
        run_id=run_id,
    )


def history(workflow_id: str | None, limit: int, *, as_json: bool) -> int:
    entries = discover()
    if workflow_id is not None:
        _choose(entries, workflow_id)  # refuses an unknown id
    location = history_location()
    if location.sqlite_file is not None and not location.sqlite_file.exists():
        records = []  # opening it would create it; nothing has run yet
    else:
        steps = {wid: entry.config.steps.aggregation for wid, entry in entries.items()}
        records = recent_runs(open_history(location), steps, workflow_id, limit)
    if as_json:
        print(json.dumps([_record_document(record) for record in records], indent=2))
        return 0
    table = Table(
        "run",
        "workflow",
        "started (UTC)",
        "status",
        "sources",
        "failed",
        "wall s",
        "run s",
        title=Text(f"Recent runs in {location}"),
    )
    for record in records:
        aggregation = record.aggregation or {}
        failed = [s for s in aggregation.get("sources", []) if not s["ok"]]
        table.add_row(
            record.run_id[:8],
            record.workflow_id,
            record.started.strftime("%Y-%m-%d %H:%M:%S"),
            Text(record.status, style="green" if record.status == "COMPLETED" else "red"),
            f"{aggregation.get('total_sources', 0) - len(failed)}/"
            f"{aggregation.get('total_sources', '?')} ok",
            Text(", ".join(f"{s['id']} ({s['status']})" for s in failed), style="red"),
            f"{aggregation['wall_seconds']:.2f}" if aggregation else "",
            f"{record.duration_seconds:.2f}" if record.duration_seconds is not None else "",
        )
    # Piped output gets a wide page rather than rich's 80 columns: eight columns need it.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    console.print(table if records else f"No runs yet in {location}.")
    return 0


def _record_document(record: RunRecord) -> dict[str, Any]:
    aggregation = record.aggregation or {}
    return {
        "run_id": record.run_id,
        "session_id": record.session_id,
        "workflow_id": record.workflow_id,
        "started": record.started.isoformat(),
        "status": record.status,
        "duration_seconds": record.duration_seconds,
        "wall_seconds": aggregation.get("wall_seconds"),
        "sources": [
            {key: source[key] for key in ("id", "name", "status", "attempts", "seconds", "error")}
            for source in aggregation.get("sources", [])
        ],
    }


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
    history_parser = commands.add_parser(
        "history", help="list recent runs, from the command line and over HTTP"
    )
    history_parser.add_argument("--workflow", metavar="ID", help="only this workflow's runs")
    history_parser.add_argument(
        "--limit", type=_positive(int), default=20, help="how many runs (default: 20)"
    )
    history_parser.add_argument("--json", action="store_true", help="print one JSON document")
    serve_parser = commands.add_parser(
        "serve", help="serve every workflow over HTTP (AgentOS); needs the serve extra"
    )
    serve_parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only)",
    )
    serve_parser.add_argument(
        "--port", type=_positive(int), default=7777, help="port (default: 7777)"
    )
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
