"""A run drawn on a time axis: what ran at the same time, what waited, what held it up.

Every source's result carries its `timing` (execution.py records it): when it began waiting
for a slot, when each attempt started and ended, when it finished, in seconds after the
parallel block started. From it come the same pictures everywhere: a bar per source for the
terminal's summary table, a Mermaid `gantt` block for the Markdown report, and an SVG for the
HTML page (page.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .results import Aggregation, SourceResult, SourceState

SpanKind = Literal["wait", "run", "failed", "pause"]


@dataclass(frozen=True)
class Span:
    """A stretch of one source's time: waiting for a slot, an attempt (that ran, or failed),
    or the pause before a retry."""

    kind: SpanKind
    start: float
    end: float


def spans(result: SourceResult) -> list[Span]:
    """The source's time, from when it began waiting to when it finished, in order."""
    timing = result.timing
    if timing is None:
        return []
    found: list[Span] = []
    cursor = timing.queued
    for number, attempt in enumerate(timing.attempts):
        if attempt.started > cursor:
            found.append(Span("wait" if number == 0 else "pause", cursor, attempt.started))
        kind: SpanKind = "run" if attempt.state == SourceState.OK else "failed"
        found.append(Span(kind, attempt.started, attempt.ended))
        cursor = attempt.ended
    if timing.finished > cursor and not timing.attempts:
        found.append(Span("wait", cursor, timing.finished))  # cancelled before it started
    return found


def axis_seconds(aggregation: Aggregation) -> float:
    """The length of the shared time axis: the wall time, or the last finish if later."""
    ends = [r.timing.finished for r in aggregation.sources if r.timing is not None]
    return max([aggregation.wall_seconds, *ends, 0.001])


def straggler(aggregation: Aggregation) -> SourceResult | None:
    """The source that finished last: the one that set the wall time."""
    timed = [result for result in aggregation.sources if result.timing is not None]
    return (
        max(timed, key=lambda result: result.timing.finished if result.timing else 0.0)
        if timed
        else None
    )


# What each kind of span is called in legends.
SPAN_NAMES: dict[SpanKind, str] = {
    "run": "running",
    "failed": "failed attempt",
    "wait": "waiting for a slot",
    "pause": "retry pause",
}

# The characters of a terminal bar; the plain set is for output that is not a terminal.
BAR_CHARACTERS: dict[bool, dict[SpanKind, str]] = {
    False: {"wait": "·", "run": "█", "failed": "▓", "pause": "░"},
    True: {"wait": ".", "run": "#", "failed": "x", "pause": "~"},
}
BAR_STYLES: dict[SpanKind, str] = {
    "wait": "dim",
    "run": "green",
    "failed": "red",
    "pause": "yellow",
}


def bar_cells(result: SourceResult, axis: float, width: int) -> list[SpanKind | None]:
    """The source's bar as `width` cells over `axis` seconds: each cell is the kind of span
    that covers most of it, and every attempt gets at least the cell it started in."""
    cells: list[SpanKind | None] = [None] * width
    cover = [0.0] * width
    step = axis / width
    for span in spans(result):
        first = min(int(span.start / step), width - 1)
        last = min(int(max(span.end - 1e-9, span.start) / step), width - 1)
        for cell in range(first, last + 1):
            overlap = min(span.end, (cell + 1) * step) - max(span.start, cell * step)
            # An attempt outranks a wait of the same length: it is what the bar is about.
            weight = overlap + (step if span.kind in ("run", "failed") else 0.0)
            if weight > cover[cell]:
                cells[cell], cover[cell] = span.kind, weight
    return cells


# Mermaid: a task's text may not hold `:` (it ends the text), `#` or `;` (entities and
# statements) or `%` (comments), and a line may not begin with a keyword.
MERMAID_KEYWORDS = (
    "title",
    "section",
    "dateformat",
    "axisformat",
    "tickinterval",
    "excludes",
    "includes",
    "todaymarker",
    "weekday",
    "weekend",
    "click",
    "acctitle",
    "accdescr",
    "inclusiveenddates",
    "topaxis",
    "displaymode",
)
MERMAID_TAGS: dict[SpanKind, str] = {
    "wait": "active",
    "run": "done",
    "failed": "crit",
    "pause": "active",
}


def mermaid_text(text: str) -> str:
    """`text` as Mermaid draws it and cannot misread: the characters that mean something
    there as numeric entities (`#58;` for `:`), line breaks as spaces."""
    flat = " ".join(text.split()) or "-"
    escaped = re.sub(r"[:#;%{}<>\"'`\\]", lambda match: f"#{ord(match.group())};", flat)
    if escaped.lower().startswith(MERMAID_KEYWORDS):
        escaped = f"#{ord(escaped[0])};{escaped[1:]}"
    return escaped


def mermaid_gantt(aggregation: Aggregation) -> str:
    """A Mermaid `gantt` of the sources: one task per attempt (and per wait for a slot), on an
    axis in milliseconds after the parallel block started."""
    long_run = axis_seconds(aggregation) >= 60
    lines = [
        "```mermaid",
        "gantt",
        f"    title {mermaid_text(aggregation.workflow_name)}: the sources over time",
        "    dateFormat x",
        f"    axisFormat {'%M:%S' if long_run else '%S.%L s'}",
        "    section Sources",
    ]
    task = 0
    for result in aggregation.sources:
        name = mermaid_text(result.name)
        attempts = 0
        for span in spans(result):
            if span.kind in ("wait", "pause") and span.end - span.start < 0.001:
                continue  # no wait worth a line
            task += 1
            if span.kind in ("run", "failed"):
                attempts += 1
                label = name if attempts == 1 else f"{name}, attempt {attempts}"
            else:
                label = f"{name}, {'waiting' if span.kind == 'wait' else 'retry pause'}"
            start, end = (
                round(span.start * 1000),
                max(round(span.end * 1000), round(span.start * 1000) + 1),
            )
            lines.append(f"    {label} :{MERMAID_TAGS[span.kind]}, t{task}, {start}, {end}")
    lines.append("```")
    return "\n".join(lines)


def describe_straggler(aggregation: Aggregation) -> str | None:
    last = straggler(aggregation)
    if last is None or last.timing is None:
        return None
    return f"{last.name} ({last.id}) ended last, at {last.timing.finished:.2f} s"


# Tick spacings a reader takes in at a glance, in seconds.
TICK_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


def ticks(axis: float) -> list[float]:
    """Tick positions along an axis of `axis` seconds: at most about six, at round values."""
    step = next((step for step in TICK_STEPS if axis / step <= 6), TICK_STEPS[-1])
    return [step * n for n in range(int(axis / step) + 1)]
