"""What the command line shows: the live table of a run's sources, the summary after it, the
lines of a streamed run, the workflows and the history. Everything here only prints."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from .config import Source
from .history import HistoryLocation, RunRecord
from .progress import SourceEvent
from .registry import WorkflowEntry
from .results import Aggregation, SourceResult, SourceState
from .timeline import (
    BAR_CHARACTERS,
    BAR_STYLES,
    SPAN_NAMES,
    axis_seconds,
    bar_cells,
    describe_straggler,
)

STYLES: dict[SourceState, str] = {
    SourceState.WAITING: "dim",
    SourceState.RUNNING: "cyan",
    SourceState.RETRYING: "yellow",
    SourceState.OK: "green",
    SourceState.FAILED: "red",
    SourceState.TIMED_OUT: "red",
    SourceState.CANCELLED: "yellow",
}


class ProgressTable:
    """The latest event of every source, rendered by rich (inside `rich.live.Live`)."""

    def __init__(self, sources: Iterable[Source]) -> None:
        self.latest = {source.id: SourceEvent(source, SourceState.WAITING, 0) for source in sources}

    def __call__(self, event: SourceEvent) -> None:
        self.latest[event.source.id] = event

    def __rich__(self) -> Group:
        counts = Counter(event.state for event in self.latest.values())
        summary = Text(" · ").join(
            Text(f"{counts[state]} {state.label}", style=style)
            for state, style in STYLES.items()
            if counts[state]
        )
        table = Table("source", "name", "status", "attempt", "seconds", "error")
        for event in self.latest.values():
            table.add_row(
                event.source.id,
                Text(event.source.name),
                Text(event.state.label, style=STYLES[event.state]),
                str(event.attempt or ""),
                f"{event.seconds:.2f}" if event.state is not SourceState.WAITING else "",
                Text(event.error or "", style="red"),
            )
        return Group(summary, table)


def print_summary(console: Console, aggregation: Aggregation, report: str | None) -> None:
    """The table of sources with their timeline, the totals and time saved, the straggler,
    the failures and warnings, then the report."""
    plain = not console.is_terminal
    axis = axis_seconds(aggregation)
    # The bars take what the other columns need not, 10 to 40 characters: 12 in 80 columns.
    width = max(10, min(40, console.width - 68))
    table = Table(
        "source", "name", "status", "attempts", "records", "seconds",
        title=Text(aggregation.workflow_name), box=box.SIMPLE_HEAD,
    )  # fmt: skip
    table.add_column(axis_label(axis, width), no_wrap=True, min_width=width)
    for source in aggregation.sources:
        table.add_row(
            source.id,
            Text(source.name),
            Text(source.status.label, style=STYLES[source.status]),
            str(source.attempts),
            f"{source.records:,}",
            f"{source.seconds:.2f}",
            timeline_bar(source, axis, width, plain),
        )
    console.print(table)
    console.print(legend(plain))
    console.print(
        f"{aggregation.total_sources} sources, {aggregation.total_records:,} records; "
        f"wall {aggregation.wall_seconds:.2f} s vs {aggregation.sequential_seconds:.2f} s "
        f"sequential: {aggregation.time_saved_seconds:.2f} s saved "
        f"({aggregation.efficiency_percent:.0f}% faster)"
    )
    last = describe_straggler(aggregation)
    if last:
        console.print(Text(f"straggler: {last}"))
    for source in aggregation.sources:
        if not source.ok:
            console.print(
                Text(f"{source.status.label}: {source.name}: {source.error}", style="red")
            )
        for warning in source.warnings:
            console.print(Text(f"warning: {source.name}: {warning}", style="yellow"))
    if report:
        console.print()
        console.print(Markdown(report) if console.is_terminal else Text(report))


def timeline_bar(source: SourceResult, axis: float, width: int, plain: bool) -> Text:
    """The source's time on the shared axis, a character per `axis / width` seconds."""
    characters = BAR_CHARACTERS[plain]
    bar = Text()
    for cell in bar_cells(source, axis, width):
        if cell is None:
            bar.append(" ")
        else:
            bar.append(characters[cell], style=BAR_STYLES[cell])
    return bar


def axis_label(axis: float, width: int) -> str:
    """`0` at the left and the axis's end at the right, `width` characters in all."""
    end = f"{axis:.2f} s"
    return "0" + end.rjust(width - 1)


def legend(plain: bool) -> Text:
    characters = BAR_CHARACTERS[plain]
    legend = Text("timeline: ")
    for kind, name in SPAN_NAMES.items():
        legend.append(characters[kind], style=BAR_STYLES[kind])
        legend.append(f" {name}  ")
    return legend


def event_line(event: Any, source_ids: set[str]) -> Text | None:
    """For `run --stream`: a line per step start and completion, one per source as it ends."""
    name = getattr(event, "step_name", None)
    if event.event == "ParallelExecutionStarted":
        return Text(f"▶ {name}: {len(source_ids)} sources in parallel")
    if event.event == "StepStarted" and name not in source_ids:
        return Text(f"▶ {name}")
    if event.event == "StepCompleted" and name in source_ids:
        return source_line(SourceResult.model_validate(event.content))
    if event.event in ("StepCompleted", "ParallelExecutionCompleted"):
        return Text(f"✓ {name}")
    return None


def source_line(result: SourceResult) -> Text:
    tries = f" ({result.attempts} attempts)" if result.attempts > 1 else ""
    if result.ok:
        return Text(
            f"  ✓ {result.name}: {result.records:,} records in {result.seconds:.2f} s{tries}"
        )
    return Text(f"  ✗ {result.name}{tries}: {result.error}", style="red")


def workflows_table(entries: dict[str, WorkflowEntry], report_models: dict[str, str]) -> Table:
    table = Table("id", "name", "sources", "report")
    for workflow_id, entry in entries.items():
        table.add_row(
            Text(workflow_id),
            Text(entry.config.name),
            str(len(entry.config.sources)),
            Text(report_models[workflow_id] or "offline"),
        )
    return table


def history_table(records: list[RunRecord], location: HistoryLocation) -> Table:
    table = Table(
        "run", "workflow", "started (UTC)", "status", "sources", "failed", "wall s", "run s",
        title=Text(f"Recent runs in {location}"),
    )  # fmt: skip
    for record in records:
        aggregation = record.aggregation
        failed = [s for s in aggregation.sources if not s.ok] if aggregation else []
        table.add_row(
            record.run_id[:8],
            record.workflow_id,
            record.started.strftime("%Y-%m-%d %H:%M:%S"),
            Text(record.status, style="green" if record.status == "COMPLETED" else "red"),
            f"{aggregation.total_sources - len(failed)}/{aggregation.total_sources} ok"
            if aggregation
            else "",
            Text(", ".join(f"{s.id} ({s.status.label})" for s in failed), style="red"),
            f"{aggregation.wall_seconds:.2f}" if aggregation else "",
            f"{record.duration_seconds:.2f}" if record.duration_seconds is not None else "",
        )
    return table


def run_identity(record: RunRecord) -> dict[str, Any]:
    """The keys that say which run a JSON document is about, and how it ended."""
    return {
        "run_id": record.run_id,
        "session_id": record.session_id,
        "workflow_id": record.workflow_id,
        "started": record.started.isoformat(),
        "status": record.status,
    }


def history_document(record: RunRecord) -> dict[str, Any]:
    """One run of `history --json`."""
    aggregation = record.aggregation
    return {
        **run_identity(record),
        "duration_seconds": record.duration_seconds,
        "wall_seconds": aggregation.wall_seconds if aggregation else None,
        "sources": [
            source.model_dump(
                mode="json", include={"id", "name", "status", "attempts", "seconds", "error"}
            )
            for source in (aggregation.sources if aggregation else [])
        ],
    }


def stored_document(record: RunRecord) -> dict[str, Any]:
    """`history show RUN_ID --json`: the run's ids and status, its aggregation (every source
    with its timing) and its report."""
    return {
        **run_identity(record),
        "aggregation": record.aggregation.to_json_dict() if record.aggregation else None,
        "report": record.report,
    }
