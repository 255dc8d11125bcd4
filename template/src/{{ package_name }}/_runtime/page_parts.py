"""The pieces of a run's page: the facts table, the legend, the timeline as inline SVG and
the per-source table. `page.py` puts them together into whole pages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from .results import Aggregation, SourceResult
from .timeline import SPAN_NAMES, SpanKind, axis_seconds, spans, straggler, ticks

ROW = 18  # pixels per source in the SVG
LABEL = 220  # pixels for the names on the left
PLOT = 640  # pixels of time axis
COLOURS: dict[SpanKind, str] = {
    "wait": "#cbd5e1",
    "run": "#16a34a",
    "failed": "#dc2626",
    "pause": "#f59e0b",
}


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
    """A row per source: its bar from its first attempt to its end (rect.bar), over which the
    waits, failed attempts and retry pauses are drawn; the straggler's name in bold."""
    axis = axis_seconds(aggregation)
    last = straggler(aggregation)
    height = ROW * len(aggregation.sources) + 30
    width = LABEL + PLOT + 20

    def x(seconds: float) -> float:
        return LABEL + PLOT * seconds / axis

    label = f"{aggregation.workflow_name}: the sources over time"
    elements = [svg_element("timeline", width, height, label)]
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
    """One source's row of the timeline, `top` pixels down (`x`: seconds to pixels): its name,
    its bar, and over the bar its waits, failed attempts and retry pauses."""
    name = escape(" ".join(result.name.split()))  # SVG would collapse it anyway
    weight = ' font-weight="bold"' if bold else ""
    elements = [f'<g class="source" data-source="{escape(result.id)}">']
    elements.append(f'<text x="{LABEL - 8}" y="{top + 12}" text-anchor="end"{weight}>{name}</text>')
    pieces = spans(result)
    running = [span for span in pieces if span.kind in ("run", "failed")]
    if running:
        start, end = running[0].start, pieces[-1].end
    else:
        start, end = 0.0, 0.0
    # At least one pixel wide: a source that failed at once still shows where it did.
    elements.append(
        f'<rect class="bar" x="{x(start):.2f}" y="{top}" '
        f'width="{max(x(end) - x(start), 1):.2f}" height="{ROW - 4}" '
        f'fill="{COLOURS["run"]}"><title>{name}: {escape(result.status.label)}, '
        f"{result.seconds:.3f} s</title></rect>"
    )
    for span in pieces:
        if span.kind != "run":
            elements.append(
                f'<rect class="{span.kind}" x="{x(span.start):.2f}" y="{top}" '
                f'width="{max(x(span.end) - x(span.start), 1):.2f}" height="{ROW - 4}" '
                f'fill="{COLOURS[span.kind]}"/>'
            )
    elements.append("</g>")
    return elements


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
        waited = f"{result.timing.waited_seconds:.3f}" if result.timing is not None else ""
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
