"""A run drawn on a time axis: what ran at the same time, what waited, what held it up.

Every source's result carries its `timing` (execution.py records it): when it began waiting
for a slot, when each attempt started and ended, when it finished, in seconds after the
parallel block started. From it come the same pictures everywhere: a bar per source for the
terminal's summary table, a Mermaid `gantt` block for the Markdown report, and an SVG for the
HTML page (page.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from rich.text import Text

from parallel_workflow_runtime._core.results import Aggregation, SourceResult, SourceState

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
        waiting = cursor
        if number:
            # A retry pauses, then waits for a slot from `queued`. Runs stored before the
            # attempts recorded `queued` draw the whole gap as the pause, as they always did.
            queued = attempt.started if attempt.queued is None else attempt.queued
            waiting = min(max(queued, cursor), attempt.started)
            if waiting > cursor:
                found.append(Span("pause", cursor, waiting))
        elif attempt.queued is not None:
            # The first attempt waits for a slot from `queued` too. Before it, from when its
            # step began, a connector source claims its cursor (which waits while another run
            # holds it): not a wait for a slot, and so not drawn as one. Runs stored before
            # the attempts recorded `queued` draw the whole gap as the wait, as they did.
            waiting = min(max(attempt.queued, cursor), attempt.started)
        if attempt.started > waiting:
            found.append(Span("wait", waiting, attempt.started))
        kind: SpanKind = "run" if attempt.state == SourceState.OK else "failed"
        found.append(Span(kind, attempt.started, attempt.ended))
        cursor = attempt.ended
    if timing.finished > cursor and not timing.attempts:
        found.append(Span("wait", cursor, timing.finished))  # cancelled before it started
    return found


def slot_wait_seconds(result: SourceResult) -> float:
    """How long the source waited for a slot: its waits as the timeline draws them, added
    up, so that the figure and the bars never disagree (the timing's own `waited_seconds`
    leaves out a wait that Ctrl-C cut short, which the bars draw)."""
    return sum(span.end - span.start for span in spans(result) if span.kind == "wait")


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
    """The key under the summary table: what each character of a bar means."""
    characters = BAR_CHARACTERS[plain]
    legend = Text("timeline: ")
    for kind, name in SPAN_NAMES.items():
        legend.append(characters[kind], style=BAR_STYLES[kind])
        legend.append(f" {name}  ")
    return legend


# Mermaid's gantt lexer reads `:` as the end of a task's text, `#` and `;` as entities and
# statements, `%` as a comment; these are written as numeric entities (`#58;` for `:`).
MERMAID_SPECIAL = re.compile(r"[:#;%]")
# What it reads at the start of a task's text instead of text (its gantt.jison): a keyword
# before a space, and the ` :` after the text is one (`Click stream` and `click` are its click
# statement, `Clickstream` is text), a date, or a word that Mermaid 10 read even at the start
# of a longer one (`Ganttastic`). The first character of those is written as an entity.
MERMAID_KEYWORD = re.compile(
    r"(?:click|call|dateformat|axisformat|tickinterval|includes|excludes|todaymarker|title"
    r"|accdescription|section)(?:\s|$)|href\s+\"|acctitle\s*$|accdescr\s*(?:\{|$)"
    r"|weekday\s+(?:mon|tues|wednes|thurs|fri|satur|sun)day\b|weekend\s+(?:fri|satur)day\b"
    r"|gantt|topaxis|inclusiveenddates|\d{4}-\d\d-\d\d",
    re.IGNORECASE | re.ASCII,
)
# Each kind of span gets its own tag, and so its own colour; a retry pause none.
MERMAID_TAGS: dict[SpanKind, str] = {"run": "done", "failed": "crit", "wait": "active", "pause": ""}
# The colour of each tag in Mermaid's default theme, for the key under the chart.
MERMAID_TAG_COLOURS = {"done": "grey", "crit": "red", "active": "pale blue", "": "blue"}


def mermaid_text(text: str) -> str:
    """`text` as Mermaid draws it and cannot misread: what it would read as syntax written as
    numeric entities (`#58;` for `:`), line breaks as spaces, and nothing else changed."""
    flat = " ".join(text.split()) or "-"
    escaped = MERMAID_SPECIAL.sub(lambda match: f"#{ord(match.group())};", flat)
    if MERMAID_KEYWORD.match(escaped):
        escaped = f"#{ord(escaped[0])};{escaped[1:]}"
    return escaped


def mermaid_gantt(aggregation: Aggregation) -> str:
    """A Mermaid `gantt` of the sources: one task per attempt, per wait for a slot and per
    retry pause, on an axis in milliseconds after the parallel block started."""
    axis = axis_seconds(aggregation)
    lines = [
        "```mermaid",
        "gantt",
        f"    title {mermaid_text(aggregation.workflow_name)}: the sources over time",
        "    dateFormat x",
        f"    axisFormat {'%M:%S' if axis >= 60 else '%S.%L s'}",
        "    section Sources",
    ]
    # An attempt is drawn at least a hundredth of the chart long, and then says how long it
    # really took: a failure in a millisecond is otherwise no bar at all.
    shortest = max(math.ceil(axis * 10), 1)
    task = 0
    for result in aggregation.sources:
        attempts = 0
        for span in spans(result):
            start, end = round(span.start * 1000), round(span.end * 1000)
            if span.kind in ("wait", "pause"):
                if end <= start:
                    continue  # no wait worth a line
                label = f"{result.name}, {SPAN_NAMES[span.kind]}"
            else:
                attempts += 1
                label = result.name if attempts == 1 else f"{result.name}, attempt {attempts}"
                if end - start < shortest:
                    label, end = f"{label} ({span.end - span.start:.3f} s)", start + shortest
            task += 1
            tags = f"{MERMAID_TAGS[span.kind]}, " if MERMAID_TAGS[span.kind] else ""
            lines.append(f"    {mermaid_text(label)} :{tags}t{task}, {start}, {end}")
    lines.append("```")
    return "\n".join(lines)


def mermaid_key() -> str:
    """What the colours of the gantt mean, for the line under it."""
    kinds = ", ".join(
        f"{name} in {MERMAID_TAG_COLOURS[MERMAID_TAGS[kind]]}" for kind, name in SPAN_NAMES.items()
    )
    return f"In the chart (Mermaid's default colours): {kinds}."


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
