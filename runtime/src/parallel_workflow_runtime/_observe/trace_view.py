"""A run's trace as the history keeps it (Agno's agno_traces and agno_spans tables, which
tracing.py fills): read back, printed as a tree (`history show RUN --trace`), and drawn in
the run's HTML page (as TraceNodes, which templates/trace.html.jinja lays out)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.text import Text
from rich.tree import Tree

from parallel_workflow_runtime._observe.run_spans import MAX_SPANS_PER_RUN
from parallel_workflow_runtime._observe.tracing import ATTRIBUTE_PREFIX

if TYPE_CHECKING:
    from agno.db.base import BaseDb

# The attributes a line of the tree shows, besides the span's name and time.
SHOWN = {
    f"{ATTRIBUTE_PREFIX}.executor": "on",
    f"{ATTRIBUTE_PREFIX}.outcome": "",
    f"{ATTRIBUTE_PREFIX}.records": "records",
    f"{ATTRIBUTE_PREFIX}.wait_seconds": "waited",
    "error.type": "error",
    "process.pid": "in process",
}


@dataclass(frozen=True)
class TraceSpan:
    """One span of a stored trace."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start: datetime
    end: datetime
    status: str  # OK, ERROR or UNSET
    message: str | None
    attributes: dict[str, Any]

    @property
    def milliseconds(self) -> float:
        return (self.end - self.start).total_seconds() * 1000

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_id": self.parent_id,
            "name": self.name,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "status": self.status,
            "message": self.message,
            "attributes": self.attributes,
        }

    def details(self) -> str:
        """What the tree says of it besides its name: its time and outcome."""
        parts = [f"{self.milliseconds:,.1f} ms"]
        for key, label in SHOWN.items():
            value = self.attributes.get(key)
            if value is None or (key.endswith("wait_seconds") and float(value) < 0.0005):
                continue
            if key.endswith("wait_seconds"):
                value = f"{float(value):.3f} s"
            parts.append(f"{label} {value}".strip())
        if self.status == "ERROR" and self.message:
            parts.append(self.message)
        return ", ".join(parts)


def run_spans(db: BaseDb, run_id: str) -> list[TraceSpan]:
    """The spans of the run's trace, in the order they started; none if it was not traced."""
    trace = db.get_trace(run_id=run_id)
    if trace is None:
        return []
    # PostgresDb's returns 1,000 unless told otherwise; SqliteDb's takes no limit.
    options: dict[str, Any] = {}
    if "limit" in inspect.signature(db.get_spans).parameters:
        options["limit"] = MAX_SPANS_PER_RUN
    rows = db.get_spans(trace_id=trace.trace_id, **options)
    spans = [
        TraceSpan(
            trace_id=row.trace_id,
            span_id=row.span_id,
            parent_id=row.parent_span_id,
            name=row.name,
            start=row.start_time,
            end=row.end_time,
            status=row.status_code,
            message=row.status_message,
            attributes=dict(row.attributes or {}),
        )
        for row in rows
    ]
    return sorted(spans, key=lambda span: span.start)


def children_of(spans: Sequence[TraceSpan]) -> dict[str | None, list[TraceSpan]]:
    """Each span's children by its id; the roots under None (and under an id not stored,
    e.g. a span whose parent was dropped)."""
    ids = {span.span_id for span in spans}
    children: dict[str | None, list[TraceSpan]] = {}
    for span in spans:
        parent = span.parent_id if span.parent_id in ids else None
        children.setdefault(parent, []).append(span)
    return children


def trace_tree(spans: Sequence[TraceSpan]) -> Tree:
    """The spans as a tree, each line its name, time and outcome: failed ones in red."""
    children = children_of(spans)
    tree = Tree(Text(f"trace of {len(spans):,} spans"), guide_style="dim")

    def grow(branch: Tree, parent: str | None) -> None:
        for span in children.get(parent, []):
            label = Text(span.name, style="bold red" if span.status == "ERROR" else "bold")
            label.append(f"  {span.details()}", style="red" if span.status == "ERROR" else "")
            grow(branch.add(label), span.span_id)

    grow(tree, None)
    return tree


@dataclass(frozen=True)
class TraceNode:
    """A span as the run's page shows it (templates/trace.html.jinja): its name, what the
    tree says of it besides, whether it failed, and the spans under it."""

    name: str
    details: str
    failed: bool
    children: list[TraceNode]


def trace_nodes(spans: Sequence[TraceSpan]) -> list[TraceNode]:
    """The spans as a tree of TraceNodes, for the run's page: its roots."""
    children = children_of(spans)

    def nodes(parent: str | None) -> list[TraceNode]:
        return [
            TraceNode(span.name, span.details(), span.status == "ERROR", nodes(span.span_id))
            for span in children.get(parent, [])
        ]

    return nodes(None)
