"""The HTML pages' Jinja2 templates: every string they print is escaped, whatever the
template and whatever the field of its view model, and the one piece of markup they are
handed (the report that markdown-it-py wrote) is printed as it is."""

from __future__ import annotations

import dataclasses
import itertools
import types
import typing
import xml.etree.ElementTree as ElementTree
from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

from parallel_workflow_runtime._core.results import aggregate
from parallel_workflow_runtime._observe import page_parts, trace_view
from parallel_workflow_runtime._observe.page import run_page
from parallel_workflow_runtime._observe.page_parts import BenchBars, LegendItem, SourceRow, Timeline
from parallel_workflow_runtime._observe.page_templates import ENVIRONMENT, render
from parallel_workflow_runtime._observe.trace_view import TraceNode, TraceSpan
from parallel_workflow_runtime._serve.http_docs import Route


class HostileText:
    """Strings of script, each one different, so that each can be looked for in the page."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self.counter = itertools.count()

    def __call__(self) -> str:
        text = f"<script>alert({next(self.counter)})</script> & \"quoted\" 'too'"
        self.made.append(text)
        return text


def hostile(cls: type, text: HostileText, depth: int = 0) -> Any:
    """An instance of the view model's dataclass `cls` with hostile text in every string
    field (numbers 1, flags true, lists of one, a tree two levels deep)."""
    module = page_parts if cls.__module__ == page_parts.__name__ else trace_view
    hints = typing.get_type_hints(cls, vars(module))
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        values[field.name] = hostile_value(hints[field.name], text, depth)
    return cls(**values)


def hostile_value(hint: Any, text: HostileText, depth: int) -> Any:
    if isinstance(hint, types.UnionType):  # `str | None`: the string
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if hint is str:
        return text()
    if hint is int:
        return 1
    if hint is bool:
        return True
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return [] if depth >= 2 else [hostile_value(item, text, depth + 1)]
    assert dataclasses.is_dataclass(hint), hint
    return hostile(typing.cast(type, hint), text, depth)


def hostile_views() -> dict[str, tuple[dict[str, Any], HostileText]]:
    """For each template, a view model with hostile text in every text field, and that text."""
    views: dict[str, tuple[dict[str, Any], HostileText]] = {}
    for template in ("page.html.jinja", "run.html.jinja", "bench.html.jinja"):
        text = HostileText()
        view: dict[str, Any] = {"title": text()}
        if template == "run.html.jinja":
            view |= {
                "facts": [(text(), text())],
                "legend": [hostile(LegendItem, text)],
                "timeline": hostile(Timeline, text),
                "straggler": text(),
                "sources": [hostile(SourceRow, text)],
                "report": Markup("<p>written by markdown-it-py</p>"),
                "trace": [hostile(TraceNode, text)],
            }
        if template == "bench.html.jinja":
            view["bars"] = hostile(BenchBars, text)
        views[template] = (view, text)
    text = HostileText()
    views["timeline.svg.jinja"] = ({"timeline": hostile(Timeline, text)}, text)
    text = HostileText()
    views["trace.html.jinja"] = ({"trace": [hostile(TraceNode, text)]}, text)
    text = HostileText()
    route = Route(text(), text(), text(), [text(), text()])
    views["api_docs.html.jinja"] = (
        {"title": text(), "description": text(), "routes": [route]},
        text,
    )
    return views


def test_every_template_escapes_every_text_field_of_its_view_model() -> None:
    views = hostile_views()
    # svg.jinja holds the macros the drawings share; the drawings render them above.
    assert set(ENVIRONMENT.list_templates()) == {*views, "svg.jinja"}
    for template, (view, text) in views.items():
        page = render(template, **view)

        assert "<script" not in page, template
        for made in text.made:  # every field is on the page, as text
            assert str(escape(made)) in page, (template, made)
        if template.endswith(".html.jinja") and template != "trace.html.jinja":
            ElementTree.fromstring(page.removeprefix("<!DOCTYPE html>\n"))  # well-formed
    (run, _) = views["run.html.jinja"]
    assert "<p>written by markdown-it-py</p>" in render("run.html.jinja", **run)


def test_a_report_s_raw_html_is_text_on_the_page() -> None:
    report = "# Title\n\nHello <script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n"
    page = run_page(aggregate("w", "W", "r", [], 0.0), report)

    assert "<script" not in page and "<img" not in page
    assert "Hello &lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_trace_is_a_tree_of_lists_with_failed_spans_marked() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def span(span_id: str, parent: str | None, status: str = "OK") -> TraceSpan:
        end = start + timedelta(milliseconds=2)
        return TraceSpan("t", span_id, parent, f"<b>{span_id}</b>", start, end, status, None, {})

    spans = [span("root", None), span("child", "root", "ERROR"), span("leaf", "child")]
    spans.append(span("orphan", "not-stored"))
    page = run_page(aggregate("w", "W", "r", [], 0.0), None, spans=spans)

    tree = ElementTree.fromstring(page.removeprefix("<!DOCTYPE html>\n"))
    (trace,) = [div for div in tree.iter("div") if div.attrib.get("class") == "trace"]

    def outline(items: ElementTree.Element) -> list[Any]:
        return [
            (item.findtext("strong"), item.attrib.get("class"), *map(outline, item.findall("ul")))
            for item in items.findall("li")
        ]

    (roots,) = trace.findall("ul")
    assert outline(roots) == [
        ("<b>root</b>", None, [("<b>child</b>", "failed", [("<b>leaf</b>", None)])]),
        ("<b>orphan</b>", None),
    ]
