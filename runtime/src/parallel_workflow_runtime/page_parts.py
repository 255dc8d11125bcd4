"""The pieces of a run's page: the facts table, the legend, the timeline as inline SVG and
the per-source table. `page.py` puts them together into whole pages.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Sequence
from html import escape

from .results import Aggregation, SourceResult
from .timeline import (
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


# SVG cannot size a column to its text, so the names' column is as wide as text_width says
# the widest name is. Its widths, in ems, are those of DejaVu Sans Bold rounded up: the widest
# sans-serif font that system-ui is likely to be (on Linux); other fonts leave some room.
THIN = set(" !'(),./:;I[]`fijlrt|")
WIDE = set("#%&*+<=>@MW^m~w—…ÆŒæœ")


def label_column(aggregation: Aggregation) -> int:
    """Pixels for the names on the left of the timeline: the widest name, and a margin."""
    names = [" ".join(result.name.split()) for result in aggregation.sources]
    return math.ceil(max([40.0, *map(text_width, names)])) + 16


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


def svg_element(css_class: str, width: int, height: int, label: str) -> str:
    """The opening tag of an inline SVG drawing of `width` by `height` pixels."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}">'
    )


def facts_table(facts: Sequence[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    return f'<table class="facts">{rows}</table>'


def legend() -> str:
    items = "".join(
        f'<span style="background:{COLOURS[kind]}"></span>{escape(name)}'
        for kind, name in SPAN_NAMES.items()
    )
    return f'<p class="legend">{items}</p>'


def timeline_svg(aggregation: Aggregation) -> str:
    """A row per source: its name in a column as wide as the longest, its bar from its first
    attempt to its end (rect.bar), and over the bar its waits, retry pauses and attempts; the
    straggler's name in bold."""
    axis = axis_seconds(aggregation)
    last = straggler(aggregation)
    label = label_column(aggregation)
    height = ROW * len(aggregation.sources) + 30
    width = label + PLOT + 20

    def x(seconds: float) -> float:
        return label + PLOT * seconds / axis

    title = f"{aggregation.workflow_name}: the sources over time"
    elements = [svg_element("timeline", width, height, title)]
    for tick in ticks(axis):
        at = f"{x(tick):.1f}"
        elements.append(
            f'<line x1="{at}" y1="0" x2="{at}" y2="{height - 20}" stroke="#e2e8f0"/>'
            f'<text x="{at}" y="{height - 6}" text-anchor="middle">{tick:g} s</text>'
        )
    for row, result in enumerate(aggregation.sources):
        elements += timeline_row(result, row * ROW + 2, x, bold=result is last)
    elements.append("</svg>")
    return "\n".join(elements)


def timeline_row(
    result: SourceResult, top: int, x: Callable[[float], float], bold: bool
) -> list[str]:
    """One source's row of the timeline, `top` pixels down (`x`: seconds to pixels): its name
    (ending where the plot begins), its bar, and over the bar its waits, retry pauses and, on
    top, its attempts."""
    name = escape(" ".join(result.name.split()))  # SVG would collapse it anyway
    weight = ' font-weight="bold"' if bold else ""
    elements = [f'<g class="source" data-source="{escape(result.id)}">']
    elements.append(
        f'<text x="{x(0) - 8:.2f}" y="{top + 12}" text-anchor="end"{weight}>{name}</text>'
    )
    pieces = spans(result)
    attempts = [span for span in pieces if span.kind in ("run", "failed")]
    start, end = (attempts[0].start, pieces[-1].end) if attempts else (0.0, 0.0)
    elements.append(
        f'<rect class="bar" x="{x(start):.2f}" y="{top}" '
        f'width="{max(x(end) - x(start), 1):.2f}" height="{ROW - 4}" '
        f'fill="{COLOURS["run"]}"><title>{name}: {escape(result.status.label)}, '
        f"{result.seconds:.3f} s</title></rect>"
    )
    for span in [span for span in pieces if span not in attempts] + attempts:
        elements.append(span_rect(span, top, x, f"{name}: {span_name(span, attempts)}"))
    elements.append("</g>")
    return elements


def span_name(span: Span, attempts: list[Span]) -> str:
    """What a span is, for its tooltip: `attempt 2, failed`, `retry pause`."""
    if span not in attempts:
        return SPAN_NAMES[span.kind]
    return f"attempt {attempts.index(span) + 1}, {'ok' if span.kind == 'run' else 'failed'}"


def span_rect(span: Span, top: int, x: Callable[[float], float], title: str) -> str:
    """A span as a rectangle whose tooltip tells its real start and length. An attempt is at
    least SHORTEST_ATTEMPT pixels wide: one that failed in a millisecond is still seen."""
    left, width = x(span.start), max(x(span.end) - x(span.start), 1)
    if span.kind in ("run", "failed") and width < SHORTEST_ATTEMPT:
        left, width = min(left, x(0) + PLOT - SHORTEST_ATTEMPT), SHORTEST_ATTEMPT
    return (
        f'<rect class="{span.kind}" x="{left:.2f}" y="{top}" width="{width:.2f}" '
        f'height="{ROW - 4}" fill="{COLOURS[span.kind]}"><title>{title}, '
        f"{span.end - span.start:.3f} s, from {span.start:.3f} s</title></rect>"
    )


def sources_table(aggregation: Aggregation) -> str:
    header = "".join(
        f"<th>{name}</th>"
        for name in (
            "source",
            "name",
            "status",
            "attempts",
            "records",
            "seconds",
            "waited",
            "error",
        )
    )
    rows = []
    for result in aggregation.sources:
        # Added up from the waits the timeline draws in the source's row, as they are drawn.
        waited = f"{slot_wait_seconds(result):.3f}" if result.timing is not None else ""
        cells = [
            escape(result.id),
            escape(result.name),
            escape(result.status.label),
            str(result.attempts),
            f"{result.records:,}",
            f"{result.seconds:.3f}",
            waited,
            escape(result.error or ""),
        ]
        numbers = {3, 4, 5, 6}
        rows.append(
            "<tr>"
            + "".join(
                f'<td class="number">{cell}</td>' if index in numbers else f"<td>{cell}</td>"
                for index, cell in enumerate(cells)
            )
            + "</tr>"
        )
    return f'<table class="sources"><tr>{header}</tr>{"".join(rows)}</table>'
