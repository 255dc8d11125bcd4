"""What the command line shows: the live table of a run's sources, the summary after it, the
lines of a streamed run, the workflows and the history. Everything here only prints."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, Group
from rich.table import Column, Table
from rich.text import Text

from parallel_workflow_runtime._connectors.cursor_tracker import shown
from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.registry import WorkflowEntry
from parallel_workflow_runtime._core.results import Aggregation, SourceResult, SourceState
from parallel_workflow_runtime._core.schedules import Schedule
from parallel_workflow_runtime._execution.progress import SourceEvent
from parallel_workflow_runtime._observe.timeline import (
    axis_label,
    axis_seconds,
    describe_straggler,
    legend,
    timeline_bar,
)
from parallel_workflow_runtime._store.cursors import StoredCursor
from parallel_workflow_runtime._store.history import HistoryLocation, RunRecord
from parallel_workflow_runtime._store.ticks import Tick

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
        # Ids and names wrap rather than lose their ends, as in the summary.
        ids, names = Column("source", overflow="fold"), Column("name", overflow="fold")
        table = Table(ids, names, "status", "attempt", "seconds", "error")
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
    console.print(summary_table(aggregation, console.width, plain))
    console.print()
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
        if console.is_terminal:
            # Imported here: a run whose output is piped does not load markdown-it.
            from rich.markdown import Markdown

            console.print(Markdown(report))
        else:
            console.print(Text(report))


HEADERS = ("source", "name", "status", "attempts", "records", "seconds")
GAP = 2  # characters between two columns of the summary


def summary_table(aggregation: Aggregation, width: int, plain: bool) -> Table:
    """The sources in `width` columns, one row each: every id and name in full (wrapped if
    need be, never clipped), and a timeline bar in what is left."""
    rows = [
        [s.id, s.name, s.status.label, str(s.attempts), f"{s.records:,}", f"{s.seconds:.2f}"]
        for s in aggregation.sources
    ]
    *widths, bar = column_widths([list(HEADERS), *rows], width)
    axis = axis_seconds(aggregation)
    table = Table(
        title=Text(aggregation.workflow_name),
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, GAP - 1, 0, 0),
    )
    for header, column_width in zip(HEADERS, widths, strict=True):
        table.add_column(header, width=column_width, overflow="fold")
    table.add_column(axis_label(axis, bar), width=bar, no_wrap=True)
    for source, row in zip(aggregation.sources, rows, strict=True):
        status = Text(row[2], style=STYLES[source.status])
        table.add_row(
            row[0], Text(row[1]), status, *row[3:], timeline_bar(source, axis, bar, plain)
        )
    return table


def column_widths(rows: list[list[str]], width: int) -> list[int]:
    """The widths of the summary's columns, then of its bar (10 to 40 characters), to fit
    `rows` (the headers first) in `width`: each column as wide as its widest cell if they all
    fit, else the name wraps between its words and the id folds."""
    ids, names, *others = (max(cell_len(row[column]) for row in rows) for column in range(6))
    room = width - GAP * 6 - sum(others)  # for the id, the name and the bar
    bar = max(10, min(40, room - ids - names))
    room -= bar
    if ids + names > room:
        # The name gets what the id leaves, but at least its longest word (up to 14) or 10
        # characters; an id has no spaces to wrap at, and one longer than the rest folds.
        words = max(cell_len(word) for row in rows for word in row[1].split())
        names = max(min(names, max(10, min(words, 14))), room - ids)
        ids = max(room - names, 6)
    return [ids, names, *others, bar]


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


def cursors_table(cursors: list[StoredCursor]) -> Table:
    table = Table("workflow", "source", "cursor", "value", "moved by run", "moved (UTC)", "held by")
    for cursor in cursors:
        document = cursor_document(cursor)
        table.add_row(
            cursor.workflow_id,
            cursor.source_id,
            document["field"] or "",
            "" if document["value"] is None else str(document["value"]),
            (cursor.run_id or "")[:8],
            document["updated"] or "",
            (cursor.claimed_by or "")[:8],
        )
    return table


def cursor_document(cursor: StoredCursor) -> dict[str, Any]:
    """One cursor of `history cursors --json` (the keys of the items at its value left out:
    they are hashes, for the next read alone)."""
    state = cursor.state or {}
    updated = (
        datetime.fromtimestamp(cursor.updated_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        if cursor.updated_at is not None
        else None
    )
    return {
        "workflow_id": cursor.workflow_id,
        "source_id": cursor.source_id,
        "field": state.get("field"),
        "value": shown(state["value"]) if "value" in state else None,
        "run_id": cursor.run_id,
        "updated": updated,
        "held_by": cursor.claimed_by,
    }


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


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def schedule_document(schedule: Schedule, fire: datetime, last: Tick | None) -> dict[str, Any]:
    return {
        "schedule": schedule.key,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "next": fire.isoformat(),
        "next_utc": fire.astimezone(UTC).isoformat(),
        "on_missed": schedule.on_missed,
        "overlap": schedule.overlap,
        "last_tick": tick_document(last) if last is not None else None,
    }


def schedules_table(rows: Sequence[tuple[Schedule, datetime, Tick | None]]) -> Table:
    table = Table("schedule", "cron", "timezone", "next (local)", "next (UTC)", "on_missed",
                  "overlap", "last tick")  # fmt: skip
    for schedule, fire, last in rows:
        table.add_row(
            schedule.key,
            schedule.cron,
            schedule.timezone,
            fire.strftime("%Y-%m-%d %H:%M:%S %Z"),
            utc_text(fire),
            schedule.on_missed,
            schedule.overlap,
            f"{last.state} ({utc_text(last.at)})" if last is not None else "",
        )
    return table


def tick_document(tick: Tick) -> dict[str, Any]:
    return {
        "schedule": tick.schedule,
        "at": tick.at.isoformat(),
        "state": tick.state,
        "reason": tick.reason,
        "run_id": tick.run_id,
        "replica": tick.replica,
        "manual": tick.manual,
    }


def ticks_table(ticks: Sequence[Tick]) -> Table:
    table = Table("schedule", "tick (UTC)", "state", "run", "why", "replica")
    for tick in ticks:
        table.add_row(
            tick.schedule,
            utc_text(tick.at) + (" (triggered)" if tick.manual else ""),
            tick.state,
            (tick.run_id or "")[:8],
            tick.reason or "",
            tick.replica or "",
        )
    return table
