"""The view models of the pages' pieces: the facts table, the legend, the timeline's geometry,
the per-source table and the bench's bars. Each is plain data, every number already computed
and formatted as the page prints it; the templates (templates/, page_templates.py) only lay
them out, and escape every string. `page.py` puts them together into whole pages.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from parallel_workflow_runtime._core.results import Aggregation, SourceResult
from parallel_workflow_runtime._observe.timeline import (
    SPAN_NAMES,
    Span,
    SpanKind,
    axis_seconds,
    slot_wait_seconds,
    spans,
    straggler,
    ticks,
)

ROW = 18  # pixels per source in the SVG
LABEL = 220  # pixels for the names on the left of the bench's bars
PLOT = 640  # pixels of time axis
SHORTEST_ATTEMPT = 4  # pixels: the narrowest an attempt is drawn
COLOURS: dict[SpanKind, str] = {
    "wait": "#cbd5e1",
    "run": "#16a34a",
    "failed": "#dc2626",
    "pause": "#f59e0b",
}


@dataclass(frozen=True)
class Drawing:
    """An inline SVG drawing of `width` by `height` pixels; `label` is what it shows, for
    screen readers."""

    css_class: str
    width: int
    height: int
    label: str


@dataclass(frozen=True)
class Box:
    """A rectangle of a drawing, its numbers as the SVG prints them; `title`, its tooltip
    (None: it has none)."""

    css_class: str
    x: str
    y: int
    width: str
    height: int
    fill: str
    title: str | None = None


@dataclass(frozen=True)
class Tick:
    """A line across the timeline at a round number of seconds, `x` pixels from the left."""

    x: str
    label: str


@dataclass(frozen=True)
class TimelineRow:
    """One source's row: its name (ending at `name_x`), its bar from its first attempt to its
    end, and over the bar its waits, retry pauses and, last (on top), its attempts."""

    source_id: str
    name: str
    name_x: str
    name_y: int
    bold: bool
    bar: Box
    spans: list[Box]


@dataclass(frozen=True)
class Timeline:
    """The timeline as drawn: its ticks (lines down to `axis_bottom`, labels at `tick_y`)
    and a row per source."""

    drawing: Drawing
    axis_bottom: int
    tick_y: int
    ticks: list[Tick]
    rows: list[TimelineRow]


@dataclass(frozen=True)
class LegendItem:
    colour: str
    name: str


@dataclass(frozen=True)
class SourceRow:
    """A line of the per-source table, each cell as printed."""

    id: str
    name: str
    status: str
    attempts: str
    records: str
    seconds: str
    waited: str  # empty for a run stored before sources had timings
    error: str


@dataclass(frozen=True)
class BenchWay:
    """One way of running the bench's sources: its name, its bar and its wall time."""

    name: str
    name_x: int
    text_y: int
    bar: Box
    seconds_x: str
    seconds: str


@dataclass(frozen=True)
class BenchBars:
    drawing: Drawing
    ways: list[BenchWay]


# SVG cannot size a column to its text, so the names' column is as wide as text_width says
# the widest name is. Its widths, in ems, are those of DejaVu Sans Bold rounded up: the widest
# sans-serif font that system-ui is likely to be (on Linux); other fonts leave some room.
THIN = set(" !'(),./:;I[]`fijlrt|")
WIDE = set("#%&*+<=>@MW^m~w—…ÆŒæœ")


def label_column(aggregation: Aggregation) -> int:
    """Pixels for the names on the left of the timeline: the widest name, and a margin."""
    names = [shown_name(result) for result in aggregation.sources]
    return math.ceil(max([40.0, *map(text_width, names)])) + 16


def shown_name(result: SourceResult) -> str:
    """The source's name as SVG shows it: its runs of spaces, tabs and line breaks as one."""
    return " ".join(result.name.split())


def text_width(text: str) -> float:
    """About how many pixels `text` takes at 12 px, in bold; never much less."""
    ems = 0.0
    for char in text:
        base = unicodedata.normalize("NFD", char)[0]  # É is as wide as E
        if unicodedata.combining(char):
            continue
        if unicodedata.east_asian_width(char) in "WF":
            ems += 1.3  # CJK takes one em; an emoji a little more
        elif base in THIN:
            ems += 0.5
        elif base in WIDE:
            ems += 1.1
        else:
            ems += 0.85 if base.isupper() else 0.75
    return ems * 12


def legend() -> list[LegendItem]:
    return [LegendItem(COLOURS[kind], name) for kind, name in SPAN_NAMES.items()]


def timeline(aggregation: Aggregation) -> Timeline:
    """A row per source: its name in a column as wide as the longest, its bar from its first
    attempt to its end, and over the bar its waits, retry pauses and attempts; the
    straggler's name in bold."""
    axis = axis_seconds(aggregation)
    last = straggler(aggregation)
    label = label_column(aggregation)
    height = ROW * len(aggregation.sources) + 30
    width = label + PLOT + 20

    def x(seconds: float) -> float:
        return label + PLOT * seconds / axis

    return Timeline(
        drawing=Drawing(
            "timeline", width, height, f"{aggregation.workflow_name}: the sources over time"
        ),
        axis_bottom=height - 20,
        tick_y=height - 6,
        ticks=[Tick(f"{x(tick):.1f}", f"{tick:g} s") for tick in ticks(axis)],
        rows=[
            timeline_row(result, row * ROW + 2, x, bold=result is last)
            for row, result in enumerate(aggregation.sources)
        ],
    )


def timeline_row(
    result: SourceResult, top: int, x: Callable[[float], float], bold: bool
) -> TimelineRow:
    """One source's row of the timeline, `top` pixels down (`x`: seconds to pixels)."""
    name = shown_name(result)
    pieces = spans(result)
    attempts = [span for span in pieces if span.kind in ("run", "failed")]
    start, end = (attempts[0].start, pieces[-1].end) if attempts else (0.0, 0.0)
    bar = Box(
        css_class="bar",
        x=f"{x(start):.2f}",
        y=top,
        width=f"{max(x(end) - x(start), 1):.2f}",
        height=ROW - 4,
        fill=COLOURS["run"],
        title=f"{name}: {result.status.label}, {result.seconds:.3f} s",
    )
    return TimelineRow(
        source_id=result.id,
        name=name,
        name_x=f"{x(0) - 8:.2f}",
        name_y=top + 12,
        bold=bold,
        bar=bar,
        spans=[
            span_box(span, top, x, f"{name}: {span_name(span, attempts)}")
            for span in [span for span in pieces if span not in attempts] + attempts
        ],
    )


def span_name(span: Span, attempts: list[Span]) -> str:
    """What a span is, for its tooltip: `attempt 2, failed`, `retry pause`."""
    if span not in attempts:
        return SPAN_NAMES[span.kind]
    return f"attempt {attempts.index(span) + 1}, {'ok' if span.kind == 'run' else 'failed'}"


def span_box(span: Span, top: int, x: Callable[[float], float], title: str) -> Box:
    """A span as a rectangle whose tooltip tells its real start and length. An attempt is at
    least SHORTEST_ATTEMPT pixels wide: one that failed in a millisecond is still seen."""
    left, width = x(span.start), max(x(span.end) - x(span.start), 1)
    if span.kind in ("run", "failed") and width < SHORTEST_ATTEMPT:
        left, width = min(left, x(0) + PLOT - SHORTEST_ATTEMPT), SHORTEST_ATTEMPT
    return Box(
        css_class=span.kind,
        x=f"{left:.2f}",
        y=top,
        width=f"{width:.2f}",
        height=ROW - 4,
        fill=COLOURS[span.kind],
        title=f"{title}, {span.end - span.start:.3f} s, from {span.start:.3f} s",
    )


def source_rows(aggregation: Aggregation) -> list[SourceRow]:
    return [
        SourceRow(
            id=result.id,
            name=result.name,
            status=result.status.label,
            attempts=str(result.attempts),
            records=f"{result.records:,}",
            seconds=f"{result.seconds:.3f}",
            # Added up from the waits the timeline draws in the source's row, as they are drawn.
            waited=f"{slot_wait_seconds(result):.3f}" if result.timing is not None else "",
            error=result.error or "",
        )
        for result in aggregation.sources
    ]


def bench_bars(ways: list[tuple[str, float]]) -> BenchBars:
    """The bench's ways as bars of their wall time, the longest PLOT pixels long."""
    longest = max(seconds for _, seconds in ways) or 1.0
    drawn = []
    for row, (way, seconds) in enumerate(ways):
        top = row * ROW + 2
        length = max(PLOT * seconds / longest, 1)
        bar = Box("bar", str(LABEL), top, f"{length:.2f}", ROW - 4, COLOURS["run"])
        drawn.append(
            BenchWay(way, LABEL - 8, top + 12, bar, f"{LABEL + length + 6:.2f}", f"{seconds:.3f}")
        )
    return BenchBars(Drawing("bench", LABEL + PLOT + 90, ROW * len(ways) + 10, "bench"), drawn)
