"""Seeing a run: each source's timing facts, the terminal's timeline column, the Mermaid gantt
of the report, and the HTML page, also in a real headless Chromium."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import io
import itertools
import json
import os
import re
import shutil
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from example_project import Aggregation, Source, SourceLimits, SourceSummary
from fastapi.testclient import TestClient
from rich.console import Console

from parallel_workflow_runtime._cli.cli import main
from parallel_workflow_runtime._cli.views import print_summary
from parallel_workflow_runtime._connectors.connector_imports import imported_once
from parallel_workflow_runtime._core.registry import WorkflowEntry
from parallel_workflow_runtime._core.results import SourceFunction, SourceResult, SourceState
from parallel_workflow_runtime._execution.interruption import INTERRUPTION, Interruption
from parallel_workflow_runtime._observe.page import run_page
from parallel_workflow_runtime._observe.report import render_report
from parallel_workflow_runtime._observe.timeline import (
    MERMAID_TAG_COLOURS,
    MERMAID_TAGS,
    Span,
    axis_seconds,
    mermaid_gantt,
    spans,
    straggler,
)
from parallel_workflow_runtime._serve.http_app import build_app
from parallel_workflow_runtime._store.cursors import CursorStore, Holder
from parallel_workflow_runtime._store.history import open_history

from .conftest import WORKFLOWS, RecordingModel, replace_source
from .test_connectors import file_source, write_config
from .test_connectors import run as run_connectors

HOSTILE_NAMES = [
    "Plain name",
    "colon: and #hash; semi",
    "section Sneaky",
    "title Fake",
    "%% a comment",
    "quote \" and ' and `tick`",
    "<script>alert(1)</script> & more",
    "line\nbreak\tand tab",
    "curly {braces} [brackets]",
    "Ünïcödé ✓ 数据",
]
# The names of tests/test_render_matrix.py's odd-names scenario (`{` `{` and `{` `%` split, as
# this file is a Jinja template), and names that begin with a word Mermaid's gantt reads.
ODD_NAMES = [
    "Customer DB (EU) - v2",
    'The "quoted" feed',
    "O'Reilly's exports",
    "C:\\data\\exports\\new",
    "{" + "{ 7 * 7 }" + "} & {" + "% raw %" + "}",
    "Données clients — Zürich",
    "日本語データ",
    "2024 Sales",
    "class",
    "key: value # not a comment",
    "- [list] *alias* &anchor !tag |pipe|",
    '"""triple""" `code` <b>html</b> \\N{BULLET}',
    "null",
    "  spaced out  ",
    "📊 Metrics",
    "x" * 60,
]
KEYWORD_NAMES = [
    "Clickstream",
    "Click stream",
    "click",
    "Call center",
    "Gantt chart",
    "Ganttastic",
    "2024-01-01 export",
    "Title Fake",
    'href "x"',
    "accDescr {x}",
    "accTitle",
    "weekday monday",
    "Weekend Saturday",
    "Section 9",
    "topAxis",
    "dateFormat YYYY",
    "todayMarker off",
    "5% sample",
    "#hashtag",
    "a;b",
    "#58; not an entity",
    "&#58; nor this",
]


REALISTIC = {
    "clickstream": "Clickstream",
    "billing_events": "Billing Events",
    "user_database": "User Database",
    "analytics_data": "Analytics Data",
}
LONG_ID = "a_source_id_of_forty_characters_exactly_"  # 40 characters, the longest an id gets
LONG_NAME = "A very long source name that is sixty characters long......"


SVG = "{http://www.w3.org/2000/svg}"


def run_with(
    entry: WorkflowEntry,
    functions: dict[str, SourceFunction],
    *,
    names: list[str] | None = None,
    max_concurrency: int = 16,
    retries: int = 0,
    backoff: float = 0.05,
) -> Aggregation:
    return Aggregation.model_validate(
        run_state(entry, functions, names, max_concurrency, retries, backoff)["aggregation"]
    )


def run_state(
    entry: WorkflowEntry,
    functions: dict[str, SourceFunction],
    names: list[str] | None = None,
    max_concurrency: int = 16,
    retries: int = 0,
    backoff: float = 0.05,
) -> dict[str, Any]:
    """Run `functions` as the workflow's sources; the session state the run leaves."""
    sources = tuple(
        Source(
            id=source_id,
            name=(names or [])[index] if names else source_id,
            settings={},
            folder=entry.config.path.parent,
            limits=SourceLimits(timeout_seconds=30, retries=retries, retry_backoff_seconds=backoff),
        )
        for index, source_id in enumerate(functions)
    )
    config = dataclasses.replace(entry.config, sources=sources, max_concurrency=max_concurrency)
    workflow = entry.factory(config=config, report_model="", source_functions=functions)
    state: dict[str, Any] = {}
    asyncio.run(workflow.arun(input="timeline", session_state=state))
    return state


def waits(seconds: float) -> SourceFunction:
    async def wait(source: Source) -> SourceSummary:
        await asyncio.sleep(seconds)
        return SourceSummary(records=1)

    return wait


def test_the_timing_facts_are_consistent(entry: WorkflowEntry) -> None:
    aggregation = run_with(entry, {"a": waits(0.05), "b": waits(0.15), "c": waits(0.1)})
    for result in aggregation.sources:
        timing = result.timing
        assert timing is not None
        assert 0 <= timing.queued <= timing.attempts[0].started
        for attempt in timing.attempts:
            assert attempt.started <= attempt.ended <= timing.finished
        assert timing.waited_seconds >= 0
    last = straggler(aggregation)
    assert last is not None and last.id == "b" and last.timing is not None
    # The straggler set the wall time: the parallel block ended when it did (a few ms here;
    # the margin is for a machine busy with other tests).
    assert last.timing.finished == pytest.approx(aggregation.wall_seconds, abs=0.05)


def test_with_a_cap_of_one_the_sources_take_turns(entry: WorkflowEntry) -> None:
    aggregation = run_with(entry, {f"s{n}": waits(0.03) for n in range(4)}, max_concurrency=1)
    attempts = sorted(
        (a.started, a.ended)
        for r in aggregation.sources
        for a in (r.timing.attempts if r.timing else [])
    )
    assert len(attempts) == 4
    for (_, ended), (started, _) in itertools.pairwise(attempts):
        assert started >= ended  # no overlap
    waited = sorted(r.timing.waited_seconds for r in aggregation.sources if r.timing)
    assert waited[0] < 0.05 and waited[-1] >= 0.08  # the last one waited for three turns


def test_a_retry_shows_its_attempts_and_the_pause_between(entry: WorkflowEntry) -> None:
    tries: list[float] = []

    def flaky(source: Source) -> SourceSummary:
        tries.append(time.perf_counter())
        if len(tries) == 1:
            raise RuntimeError("first attempt fails")
        return SourceSummary(records=1)

    (result,) = run_with(entry, {"flaky": flaky}, retries=1).sources
    assert result.timing is not None
    first, second = result.timing.attempts
    assert (first.state, second.state) == (SourceState.FAILED, SourceState.OK)
    assert second.started > first.ended  # the backoff pause


def fails_first(calls: int, seconds: float = 0.0) -> SourceFunction:
    """A source whose first `calls` attempts fail (after `seconds`), and the next succeed."""
    made: list[int] = []

    async def flaky(source: Source) -> SourceSummary:
        made.append(1)
        await asyncio.sleep(seconds)
        if len(made) <= calls:
            raise RuntimeError(f"attempt {len(made)} fails")
        return SourceSummary(records=1)

    return flaky


def svg_rects(page: str, source_id: str) -> list[ElementTree.Element]:
    """The rectangles of one source's row in the page's timeline, in drawing order."""
    tree = page_tree(page)
    (group,) = [g for g in tree.iter(f"{SVG}g") if g.attrib.get("data-source") == source_id]
    return group.findall(f"{SVG}rect")


def long(span: Span) -> bool:
    """Longer than the few milliseconds a step may take to reach its source's first attempt."""
    return span.end - span.start >= 0.005


def gantt_tasks(block: str, name: str) -> list[tuple[str, str, int, int]]:
    """One source's tasks in a Mermaid gantt block: (text, tags, start ms, end ms)."""
    found = []
    for line in block.splitlines():
        match = re.fullmatch(r"    (.+) :(?:([a-z, ]+), )?t\d+, (\d+), (\d+)", line)
        if match and mermaid_entities_decoded(match[1]).startswith(name):
            text, tags, start, end = match.groups()
            found.append((mermaid_entities_decoded(text), tags or "", int(start), int(end)))
    return found


def test_a_retry_draws_its_pause_and_its_wait_for_a_slot_apart(entry: WorkflowEntry) -> None:
    # Two slots: `flaky` and `hog_a` take them; `flaky` fails at once and `hog_b` takes its
    # slot, so that after its pause (0.15 to 0.3 s, jittered) `flaky` waits for a hog to end.
    functions = {"flaky": fails_first(1), "hog_a": waits(0.8), "hog_b": waits(0.8)}
    state = run_state(entry, functions, max_concurrency=2, retries=1, backoff=0.3)
    aggregation = Aggregation.model_validate(state["aggregation"])
    flaky, hog_a, hog_b = aggregation.sources
    assert flaky.timing is not None and hog_a.timing and hog_b.timing
    first, second = flaky.timing.attempts
    assert first.state is SourceState.FAILED and second.queued is not None
    pause, wait = second.queued - first.ended, second.started - second.queued
    # asyncio.sleep never wakes early; late, by up to 0.25 s on a busy machine.
    assert 0.15 - 0.005 <= pause <= 0.3 + 0.25
    hogs_end = min(hog_a.timing.attempts[0].ended, hog_b.timing.attempts[0].ended)
    assert second.started >= hogs_end - 0.005 and wait >= 0.2  # it waited for a hog's slot
    assert flaky.timing.waited_seconds == pytest.approx(
        wait + first.started - flaky.timing.queued, abs=0.01
    )
    # From its first attempt on: on a busy machine it may also have waited for a slot before it.
    after_start = [span for span in spans(flaky) if span.start >= first.started]
    drawn = [span for span in after_start if span.kind in ("run", "failed") or long(span)]
    assert [span.kind for span in drawn] == ["failed", "pause", "wait", "run"]
    assert (drawn[1].start, drawn[1].end) == (first.ended, second.queued)
    assert (drawn[2].start, drawn[2].end) == (second.queued, second.started)
    # The session state (and so `run --json` and the history) keeps the old keys, and the new.
    stored = state["aggregation"]["sources"][0]["timing"]["attempts"][1]
    assert set(stored) == {"queued", "started", "ended", "state"}

    # The page: the pause and the wait as two rectangles, end to end, each as long as it was.
    rects = svg_rects(run_page(aggregation, None), "flaky")
    (paused,) = [rect for rect in rects if rect.attrib["class"] == "pause"]
    waited = [rect for rect in rects if rect.attrib["class"] == "wait"][-1]  # after the pause
    assert float(paused.attrib["x"]) + float(paused.attrib["width"]) == pytest.approx(
        float(waited.attrib["x"]), abs=0.02
    )
    assert float(paused.attrib["width"]) / float(waited.attrib["width"]) == pytest.approx(
        pause / wait, rel=0.05
    )
    assert f"retry pause, {pause:.3f} s" in (paused.findtext(f"{SVG}title") or "")
    assert f"waiting for a slot, {wait:.3f} s" in (waited.findtext(f"{SVG}title") or "")

    # The gantt: the pause and the wait as two tasks, tagged apart.
    tasks = {
        text: (tags, start, end)
        for text, tags, start, end in gantt_tasks(mermaid_gantt(aggregation), "flaky")
    }
    assert tasks["flaky, retry pause"][1:] == (
        round(first.ended * 1000),
        round(second.queued * 1000),
    )
    assert tasks["flaky, waiting for a slot"][1:] == (
        round(second.queued * 1000),
        round(second.started * 1000),
    )
    assert tasks["flaky, retry pause"][0] != tasks["flaky, waiting for a slot"][0]
    # The key under the chart names each kind by the colour its tag gets.
    report = render_report(aggregation)
    for kind in ("retry pause", "waiting for a slot"):
        colour = MERMAID_TAG_COLOURS[tasks[f"flaky, {kind}"][0]]
        assert re.search(f"{kind} in {colour}[,.]", report), colour

    # A run stored before the attempts said when they were queued: the whole gap is a pause.
    old = flaky.model_dump(mode="json")
    for attempt in old["timing"]["attempts"]:
        del attempt["queued"]
    drawn = [s for s in spans(SourceResult.model_validate(old)) if s.kind != "wait" or long(s)]
    assert [span.kind for span in drawn] == ["failed", "pause", "run"]


def test_every_attempt_is_drawn_visibly_with_its_true_duration(entry: WorkflowEntry) -> None:
    # `quick` fails in well under a millisecond, then succeeds as fast, beside a 0.6 s source.
    functions = {"quick": fails_first(1), "slow": waits(0.6)}
    aggregation = run_with(entry, functions, retries=1, backoff=0.01)
    quick = aggregation.sources[0]
    assert quick.timing is not None
    attempts = quick.timing.attempts

    rects = svg_rects(run_page(aggregation, None), "quick")
    drawn = [r for r in rects if r.attrib["class"] in ("run", "failed")]
    assert [r.attrib["class"] for r in drawn] == ["failed", "run"]
    for rect, attempt in zip(drawn, attempts, strict=True):
        assert float(rect.attrib["width"]) >= 3
        # Its tooltip tells the real duration, not the drawn one.
        assert f"{attempt.ended - attempt.started:.3f} s" in (rect.findtext(f"{SVG}title") or "")

    block = mermaid_gantt(aggregation)
    axis_ms = round(axis_seconds(aggregation) * 1000)
    attempt_tags = (MERMAID_TAGS["failed"], MERMAID_TAGS["run"])
    tasks = [task for task in gantt_tasks(block, "quick") if task[1] in attempt_tags]
    assert [tags for _, tags, _, _ in tasks] == list(attempt_tags)
    widened = 0
    for (text, _, start, end), attempt in zip(tasks, attempts, strict=True):
        assert end - start >= axis_ms / 100  # a hundredth of the chart: a bar, not a hairline
        assert start == round(attempt.started * 1000)
        if (attempt.ended - attempt.started) * 1000 < axis_ms / 100:
            widened += 1
            assert f"{attempt.ended - attempt.started:.3f} s" in text  # what it really took
    assert widened  # an attempt was shorter than a hundredth of the chart: drawn wider


def mermaid_lexer_rules(version: int) -> list[tuple[str | None, re.Pattern[str]]]:
    """Mermaid's gantt lexer (packages/mermaid/src/diagrams/gantt/parser/gantt.jison in
    Mermaid 11, and 10 where that differs), in the order it tries them: at each position the
    first rule that matches wins. None: whitespace, skipped."""
    text = r"[^:\n]+" if version >= 11 else r"[^#:\n;]+"
    boundary = r"\b" if version >= 11 else ""
    rules: list[tuple[str | None, str]] = [
        ("directive", r"%%\{"),
        ("accTitle", r"accTitle\s*:\s*"),
        ("accDescr", r"accDescr\s*:\s*"),
        ("accDescr", r"accDescr\s*\{\s*"),
        ("comment", r"%%(?!\{)*[^\n]*"),
        ("comment", r"[^\}]%%*[^\n]*"),
        ("comment", r"%%*[^\n]*[\n]*"),
        ("NL", r"[\n]+"),
        (None, r"\s+"),
        ("comment", r"%[^\n]*" if version >= 11 else r"\#[^\n]*"),
        ("href", r'href[\s]+["]'),
        ("call", r"call[\s]+"),
        ("click", r"click[\s]+"),
        ("gantt", rf"gantt{boundary}"),
        ("dateFormat", r"dateFormat\s[^#\n;]+"),
        ("inclusiveEndDates", rf"inclusiveEndDates{boundary}"),
        ("topAxis", rf"topAxis{boundary}"),
        ("axisFormat", r"axisFormat\s[^#\n;]+"),
        ("tickInterval", r"tickInterval\s[^#\n;]+"),
        ("includes", r"includes\s[^#\n;]+"),
        ("excludes", r"excludes\s[^#\n;]+"),
        ("todayMarker", r"todayMarker\s[^\n;]+"),
        ("weekday", r"weekday\s+(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b"),
        ("weekend", r"weekend\s+(?:friday|saturday)\b"),
        ("date", r"\d\d\d\d-\d\d-\d\d\b"),
        ("title", r"title\s[^\n]+" if version >= 11 else r"title\s[^#\n;]+"),
        ("accDescription", r"accDescription\s[^#\n;]+"),
        ("section", r"section\s[^\n]+" if version >= 11 else r"section\s[^#:\n;]+"),
        ("taskTxt", text),
        ("taskData", r":[^#\n;]+"),
        (":", r":"),
    ]
    return [(name, re.compile(rule, re.IGNORECASE | re.ASCII)) for name, rule in rules]


def mermaid_lex(line: str, version: int) -> list[tuple[str, str]]:
    """The tokens Mermaid reads in one line of a gantt, once it has hidden the entities
    (`#58;`) behind characters of its own, as its encodeEntities does."""

    def hide(match: re.Match[str]) -> str:
        number = "\u00b0" if match[1].isdigit() else ""
        return f"\ufb02\u00b0{number}{match[1]}\u00b6\u00df"

    line = re.sub(r"#(\w+);", hide, line, flags=re.ASCII)
    tokens, position = [], 0
    while position < len(line):
        for kind, rule in mermaid_lexer_rules(version):  # noqa: B007 (the rule that matched)
            match = rule.match(line, position)
            if match:
                break
        else:
            raise AssertionError(f"INVALID at {position} in {line!r}")
        if kind is not None:
            tokens.append((kind, match.group()))
        position = match.end()
    return tokens


def mermaid_shown(text: str) -> str:
    """What Mermaid draws for a task's text: the SVG's text (escaped), its entities restored
    as decodeEntities does, as a browser reads them."""
    svg = html.escape(text.strip(), quote=False)
    for hidden, entity in (
        ("\ufb02\u00b0\u00b0", "&#"),
        ("\ufb02\u00b0", "&"),
        ("\u00b6\u00df", ";"),
    ):
        svg = svg.replace(hidden, entity)
    return html.unescape(svg)


def test_the_mermaid_gantt_reads_every_name_as_written(entry: WorkflowEntry) -> None:
    names = HOSTILE_NAMES + ODD_NAMES + KEYWORD_NAMES
    functions = {f"s{n}": waits(0.05) for n in range(len(names))}
    aggregation = run_with(entry, functions, names=names)
    block = mermaid_gantt(aggregation)
    assert block in render_report(aggregation)
    lines = block.splitlines()
    assert lines[:2] == ["```mermaid", "gantt"] and lines[-1] == "```"
    assert lines[3:6] == ["    dateFormat x", "    axisFormat %S.%L s", "    section Sources"]

    for version in (10, 11):
        (title,) = mermaid_lex(lines[2], version)
        assert title[0] == "title"
        shown_title = mermaid_shown(title[1])
        assert shown_title == f"title {aggregation.workflow_name}: the sources over time"
        shown = []
        for number, line in enumerate(lines[6:-1], start=1):
            # Each task line is a task to Mermaid: its text, then its tags, id, start and end.
            tokens = mermaid_lex(line, version)
            assert [kind for kind, _ in tokens] == ["taskTxt", "taskData"], (version, line)
            (_, text), (_, data) = tokens
            assert re.fullmatch(rf":(?:[a-z, ]+, )?t{number}, (\d+), (\d+)", data), line
            shown.append(mermaid_shown(text))
        for name in names:
            assert " ".join(name.split()) in shown

    # A name is written as it is unless Mermaid would read something in it: then only what it
    # would read is escaped (`Clickstream` is not the `click` keyword, `Click stream` is).
    for name in names:
        flat = " ".join(name.split())
        plain = not re.search(r"[:#;%]", flat) and all(
            mermaid_lex(f"    {flat} :done, t1, 0, 1", version)[0] == ("taskTxt", f"{flat} ")
            for version in (10, 11)
        )
        assert (f"    {flat} :" in block) is plain, name
    assert "    Clickstream :" in block and "#67;lickstream" not in block

    # The summary the terminal prints holds the same block: `Clickstream` reads as it is.
    output = io.StringIO()
    print_summary(Console(file=output, width=100), aggregation, render_report(aggregation))
    assert "    Clickstream :done, " in output.getvalue()


def summary_cells(text: str) -> list[tuple[list[str], list[str]]]:
    """The summary table's source and name cells, each as its lines: a row begins on the line
    that has its attempts."""
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("source "))
    head = lines[header]
    name, status, attempts = head.index("name"), head.index("status"), head.index("attempts")
    rows: list[tuple[list[str], list[str]]] = []
    for line in lines[header + 2 :]:
        if not line.strip() or line.startswith("timeline:"):  # the legend under the table
            break
        if line[attempts : attempts + 8].strip():
            rows.append(([], []))
        for cells, part in zip(rows[-1], (line[:name], line[name:status]), strict=True):
            if part.strip():
                cells.append(part.strip())
    return rows


@pytest.mark.parametrize("width", [80, 100])
@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
def test_the_summary_shows_every_id_and_name_whole(
    entry: WorkflowEntry, width: int, terminal: bool
) -> None:
    realistic = {source_id: waits(0.01) for source_id in REALISTIC}
    for functions in (realistic, {**realistic, LONG_ID: fails_first(1)}):
        names = [*REALISTIC.values(), LONG_NAME][: len(functions)]
        aggregation = run_with(entry, functions, names=names)
        output = io.StringIO()
        console = Console(file=output, width=width, force_terminal=terminal, color_system=None)
        print_summary(console, aggregation, None)
        text = output.getvalue()

        assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
        rows = summary_cells(text)
        assert [("".join(ids), " ".join(names)) for ids, names in rows] == list(
            zip(functions, names, strict=True)
        )
        if len(functions) == len(REALISTIC):  # realistic ids and names: one line each
            assert all(len(ids) == len(names) == 1 for ids, names in rows)


def label_boxes(driver: Any, page: Path) -> tuple[float, list[tuple[str, float, float, str]]]:
    """Where a real browser draws the timeline's names: the plot's left edge (its 0 s line),
    and each name's text, left and right edges (in the SVG's pixels) and font weight."""
    driver.get(page.as_uri())
    plot, boxes = driver.execute_script(
        "const svg = document.querySelector('svg.timeline');"
        "const labels = [...svg.querySelectorAll('g.source > text')].map(t => {"
        "  const box = t.getBBox();"
        "  return [t.textContent, box.x, box.x + box.width, getComputedStyle(t).fontWeight]; });"
        "return [svg.querySelector('line').x1.baseVal.value, labels];"
    )
    return plot, [tuple(box) for box in boxes]


@pytest.mark.integration
def test_a_real_browser_shows_every_name_whole_beside_the_plot(
    entry: WorkflowEntry, tmp_path: Path
) -> None:
    # The widest names there can be: 60 characters of W, and of CJK (two columns each); the
    # W's end last, so that their name is in bold.
    names = [*ODD_NAMES, "日本語データ" * 10, "W" * 60]
    functions = {f"s{n}": waits(0.3 if n == len(names) - 1 else 0.01) for n in range(len(names))}
    long_page = tmp_path / "long.html"
    long_page.write_text(run_page(run_with(entry, functions, names=names), None))
    short = ["API Logs", "Users"]
    short_page = tmp_path / "short.html"
    short_run = run_with(entry, {"a": waits(0.01), "b": waits(0.01)}, names=short)
    short_page.write_text(run_page(short_run, None))
    driver = chromium()
    try:
        plot, boxes = label_boxes(driver, long_page)
        assert [text for text, *_ in boxes] == [" ".join(name.split()) for name in names]
        for text, left, right, _ in boxes:
            assert left >= 0 and right <= plot, text  # whole, left of the plot
        # The straggler's name is in bold (the page's style used to override it), the others not.
        assert [weight for *_, weight in boxes] == ["400"] * (len(names) - 1) + ["700"]
        # A column sized to short names, not to the longest there could be.
        plot, boxes = label_boxes(driver, short_page)
        assert min(left for _, left, _, _ in boxes) < 40
        assert all(right <= plot for _, _, right, _ in boxes)
    finally:
        driver.quit()


def test_the_terminal_timeline_fits_80_columns_for_256_sources(entry: WorkflowEntry) -> None:
    functions = {f"source_{n:03d}": waits(0.001 * (n % 7)) for n in range(256)}
    aggregation = run_with(entry, functions, max_concurrency=32)
    output = io.StringIO()
    print_summary(Console(file=output, width=80), aggregation, None)  # not a terminal: plain
    text = output.getvalue()

    assert max(len(line) for line in text.splitlines()) <= 80
    assert "\x1b[" not in text  # no colour codes when piped
    rows = [line for line in text.splitlines() if line.strip().startswith("source_")]
    assert len(rows) == 256 and all("#" in row for row in rows)
    last = straggler(aggregation)
    assert last is not None and f"straggler: {last.name} ({last.id}) ended last" in text


def mermaid_entities_decoded(text: str) -> str:
    return re.sub(r"#(\d+);", lambda match: chr(int(match.group(1))), text)


def page_tree(page: str) -> ElementTree.Element:
    """The page parsed strictly: it must be well-formed (as XML, too)."""
    assert page.startswith("<!DOCTYPE html>\n")
    return ElementTree.fromstring(page.removeprefix("<!DOCTYPE html>\n"))


def assert_one_bar_per_source(page: str, names: list[str]) -> None:
    tree = page_tree(page)
    groups = tree.findall(f".//{SVG}g[@class='source']")
    assert len(groups) == len(names)
    for group, name in zip(groups, names, strict=True):
        (bar,) = group.findall(f"{SVG}rect[@class='bar']")
        assert float(bar.attrib["width"]) > 0
        # Escaped in the file, intact once parsed (its spaces collapsed, as SVG shows them).
        assert group.findtext(f"{SVG}text") == " ".join(name.split())
    assert "<script" not in page  # the hostile name is text, not markup


def test_run_html_writes_one_self_contained_page(
    entry: WorkflowEntry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page_file = tmp_path / "run.html"
    assert (
        main(["run", "--workflow", entry.config.workflow_id, "--json", "--html", str(page_file)])
        == 0
    )
    document = json.loads(capsys.readouterr().out)
    page = page_file.read_text()

    assert_one_bar_per_source(page, [source.name for source in entry.config.sources])
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # offline
    assert all(source["timing"]["attempts"] for source in document["sources"])
    assert html.escape(document["run_id"]) in page
    assert "<h2>Report</h2>" in page and "<table" in page

    # A page that cannot be written: refused before the run, nothing left behind.
    missing = tmp_path / "no-such-folder" / "run.html"
    assert main(["run", "--workflow", entry.config.workflow_id, "--html", str(missing)]) == 2
    assert f"cannot write {missing}: no directory" in capsys.readouterr().err
    assert not missing.parent.exists() and not list(tmp_path.glob(".*.partial"))


def stored_page(entry: WorkflowEntry, tmp_path: Path, names: list[str]) -> tuple[str, str]:
    """A run of hostile names stored in the history: its id and `history show --html` page."""
    functions = {f"s{n}": waits(0.01) for n in range(len(names))}
    sources = tuple(
        Source(id=source_id, name=name, settings={}, folder=entry.config.path.parent)
        for source_id, name in zip(functions, names, strict=True)
    )
    config = dataclasses.replace(entry.config, sources=sources)
    workflow = entry.factory(
        db=open_history(), config=config, report_model="", source_functions=functions
    )
    output = asyncio.run(workflow.arun(input="stored", session_state={}))
    assert output.run_id is not None
    page_file = tmp_path / "stored.html"
    assert main(["history", "show", output.run_id[:8], "--html", str(page_file)]) == 0
    return output.run_id, page_file.read_text()


def test_history_show_and_serve_give_the_same_page(entry: WorkflowEntry, tmp_path: Path) -> None:
    run_id, page = stored_page(entry, tmp_path, HOSTILE_NAMES)
    assert_one_bar_per_source(page, HOSTILE_NAMES)

    with TestClient(build_app(open_history()), base_url="http://127.0.0.1:7777") as client:
        served = client.get(f"/runs/{run_id}/page")
        assert served.status_code == 200
        assert served.headers["content-type"].startswith("text/html")
        assert served.text == page
        assert client.get("/runs/unknown/page").status_code == 404
        # An HTTP run keeps the timing facts in its session state too.
        run = client.post(f"/workflows/{entry.config.workflow_id}/runs", data={"message": "m"})
        session = client.get(f"/sessions/{run.json()['session_id']}", params={"type": "workflow"})
        stored = session.json()["session_state"]["aggregation"]["sources"]
        assert all(source["timing"]["attempts"] for source in stored)


def test_history_show_prints_a_stored_run_and_refuses_an_unknown_one(
    entry: WorkflowEntry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, _ = stored_page(entry, tmp_path, ["Only one"])
    capsys.readouterr()
    assert main(["history", "show", run_id, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["run_id"] == run_id
    assert document["aggregation"]["sources"][0]["timing"]["attempts"]
    assert main(["history", "show", "nonexistent"]) == 2
    assert "no run 'nonexistent' in the history" in capsys.readouterr().err


def test_bench_html_draws_a_bar_per_way(
    entry: WorkflowEntry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page_file = tmp_path / "bench.html"
    arguments = ["--sources=5", "--latency=0.02", "--repeat=1", "--json", "--html", str(page_file)]
    assert main(["bench", "--workflow", entry.config.workflow_id, *arguments]) == 0
    bench = json.loads(capsys.readouterr().out)
    tree = page_tree(page_file.read_text())
    ways = tree.findall(f".//{SVG}g[@class='way']")
    # ideal, sequential, each executor's workflow, raw gather
    assert len(ways) == 3 + len(bench["executors"])
    assert all(float(way.find(f"{SVG}rect").attrib["width"]) > 0 for way in ways)  # type: ignore[union-attr]


def chromium() -> Any:
    """A headless Chromium driven by Selenium, or a skip where none is installed (never in
    CI: its Test step sets REQUIRE_BROWSER=1, which turns the skip into a failure)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )
    driver_binary = shutil.which("chromedriver")
    if binary is None or driver_binary is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("REQUIRE_BROWSER=1 but no chromium and chromedriver are installed")
        pytest.skip("no chromium and chromedriver: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # needed as root, e.g. in a container
        "--disable-gpu",
        "--disable-background-networking",  # offline: no update checks, no metrics
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver_binary))


@pytest.mark.integration
def test_a_real_browser_draws_a_bar_per_source(entry: WorkflowEntry, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    stored_page(entry, tmp_path, HOSTILE_NAMES)
    driver = chromium()
    try:
        driver.get((tmp_path / "stored.html").as_uri())
        bars = driver.find_elements(By.CSS_SELECTOR, "svg.timeline rect.bar")
        assert len(bars) == len(HOSTILE_NAMES)
        assert all(bar.rect["width"] > 0 for bar in bars)
        labels = [label.text for label in driver.find_elements(By.CSS_SELECTOR, "g.source > text")]
        assert labels == [" ".join(name.split()) for name in HOSTILE_NAMES]
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
        assert driver.execute_script("return document.scripts.length") == 0
    finally:
        driver.quit()


# --- the page's waited column, against the waits its timeline draws -----------------------


def waited_cells(page: str) -> dict[str, float]:
    """The sources table's `waited` column, by source id."""
    (table,) = [t for t in page_tree(page).iter("table") if t.attrib.get("class") == "sources"]
    header, *rows = table.iter("tr")
    column = [cell.text for cell in header].index("waited")
    return {row[0].text or "": float(row[column].text or "nan") for row in rows}


def drawn_waits(page: str, source_id: str) -> list[float]:
    """The seconds of each wait for a slot drawn in the source's row, as its tooltip says."""
    found = []
    for rect in svg_rects(page, source_id):
        if rect.attrib["class"] == "wait":
            seconds = re.search(
                r"waiting for a slot, ([\d.]+) s,", rect.findtext(f"{SVG}title") or ""
            )
            assert seconds is not None
            found.append(float(seconds[1]))
    return found


def assert_waited_as_drawn(page: str, source_ids: list[str]) -> dict[str, float]:
    """Each source's `waited` figure is its row's waits for a slot added up (each tooltip is
    rounded to the millisecond: so much apart, each); the figures, by source id."""
    cells = waited_cells(page)
    assert set(cells) == set(source_ids)
    for source_id in source_ids:
        waits_drawn = drawn_waits(page, source_id)
        assert cells[source_id] == pytest.approx(
            sum(waits_drawn), abs=0.0006 * (len(waits_drawn) + 1)
        ), source_id
    return cells


def test_the_waited_column_adds_up_the_waits_the_timeline_draws(
    entry: WorkflowEntry,
) -> None:
    # Sources that take turns, one slot between four: the later ones wait, and say so.
    functions = {f"turn{n}": waits(0.05) for n in range(4)}
    taking_turns = run_with(entry, functions, max_concurrency=1)
    page = run_page(taking_turns, None)
    cells = assert_waited_as_drawn(page, list(functions))
    assert max(cells.values()) >= 0.1  # the last waited for three turns
    for result in taking_turns.sources:
        # The timing's own figure: what `run --json`, `history show --json` and the trace's
        # attempts (`history show --trace`) say.
        assert result.timing is not None
        assert cells[result.id] == pytest.approx(result.timing.waited_seconds, abs=0.0011)


def test_a_wait_for_the_cursor_is_not_drawn_as_a_wait_for_a_slot(
    folder_with_logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another run holds the source's cursor, and lets go of it 0.3 s after this run first
    # finds it held: the source waits for its cursor, then gets a slot at once (16 slots).
    # The connectors are imported first, as an earlier run would have: a first import goes on
    # after the claim (1-2 s, in no wait), which would widen the gap measured below.
    imported_once("file")
    store = CursorStore.of(open_history())
    assert store.claim("connectors", "logs", "another-run") is None
    claim_all = CursorStore.claim_all
    releases: list[threading.Timer] = []

    def claim_then_release(
        self: CursorStore, workflow_id: str, source_ids: Iterable[str], run_id: str
    ) -> dict[str, Any] | Holder:
        states = claim_all(self, workflow_id, source_ids, run_id)
        if isinstance(states, Holder) and not releases:
            releases.append(threading.Timer(0.3, store.settle, (workflow_id, "another-run", {})))
            releases[0].start()
        return states

    monkeypatch.setattr(CursorStore, "claim_all", claim_then_release)
    try:
        aggregation = run_connectors(folder_with_logs / "config.yaml")
    finally:
        for release in releases:
            release.join()
    (logs,) = aggregation.sources
    assert releases and logs.ok and logs.timing is not None, logs.error
    first = logs.timing.attempts[0]
    assert first.queued is not None and first.queued - logs.timing.queued >= 0.3
    page = run_page(aggregation, None)
    cells = assert_waited_as_drawn(page, ["logs"])
    # Its waited_seconds counts both: the wait for its cursor, and the one for a slot drawn.
    cursor_wait = first.queued - logs.timing.queued
    assert cells["logs"] + cursor_wait == pytest.approx(logs.timing.waited_seconds, abs=0.002)
    # The wait for the cursor is no wait for a slot, in the page, the terminal and the report.
    assert not [span for span in spans(logs) if span.kind == "wait" and long(span)]
    assert "logs, waiting for a slot" not in mermaid_gantt(aggregation)


@pytest.fixture
def folder_with_logs(tmp_path: Path) -> Path:
    """A workflow of one `file` source, `logs`: JSONL files read incrementally (a cursor)."""
    folder = tmp_path / "workflow"
    (folder / "logs").mkdir(parents=True)
    (folder / "logs" / "day.jsonl").write_text('{"id": 1}\n{"id": 2}\n', encoding="utf-8")
    write_config(folder, file_source("logs", "logs", "*.jsonl", "jsonl"))
    return folder


def test_a_source_cancelled_while_it_waited_shows_that_wait_as_its_waited(
    entry: WorkflowEntry,
) -> None:
    # One slot: `first` takes it and Ctrl-C comes (its Interruption) while `second` waits.
    interruption = Interruption()

    async def first(source: Source) -> SourceSummary:
        await asyncio.sleep(0.2)
        interruption.interrupt()
        await asyncio.sleep(30)
        return SourceSummary(records=1)

    # The run's Interruption, as `run` sets it (running.execute); this test's alone.
    token = INTERRUPTION.set(interruption)
    try:
        state = run_state(entry, {"first": first, "second": waits(0.01)}, max_concurrency=1)
    finally:
        INTERRUPTION.reset(token)
    aggregation = Aggregation.model_validate(state["aggregation"])
    cancelled = {result.id: result for result in aggregation.sources}["second"]
    assert cancelled.status is SourceState.CANCELLED and cancelled.timing is not None
    assert not cancelled.timing.attempts  # it never started
    cells = assert_waited_as_drawn(run_page(aggregation, None), ["first", "second"])
    assert cells["second"] >= 0.15  # it waited for the slot until Ctrl-C


# --- the report on the page, under the page's own headings and SVG timeline ---------------


class TimelineCopyingModel(RecordingModel):
    """A report model that does as the Report Agent is told: a title, the Mermaid gantt it was
    sent under a heading Timeline with the straggler named, and sections of its own around
    (one with a Mermaid chart of its own)."""

    def invoke(self, messages: list[Any], **kwargs: Any) -> Any:
        sent = "\n".join(str(message.content) for message in messages)
        block = sent[sent.index("```mermaid") :]
        block = block[: block.index("```", len("```mermaid")) + 3]
        self.reply = (
            "# Weekly data report\n\nEvery source was read.\n\n"
            f"## Timeline\n\n{block}\n\nThe slowest source ended last.\n\n"
            "## Next steps\n\n- Nothing to do.\n\n"
            "```mermaid\nflowchart LR\n  read --> report\n```\n"
        )
        return super().invoke(messages, **kwargs)


def test_the_page_shows_the_report_once_and_its_timeline_as_svg_only(
    entry: WorkflowEntry,
) -> None:
    # The offline report of a run with a failure: its Failed sources section stays.
    aggregation = run_with(entry, {"ok": waits(0.05), "broken": fails_first(5)})
    report = render_report(aggregation)
    assert report.startswith(f"# {entry.config.name}: report\n") and "```mermaid" in report
    page = run_page(aggregation, report)
    tree = page_tree(page)
    (title,) = tree.iter("h1")  # the page's, not the report's too
    assert title.text == f"{entry.config.name}: run"
    assert f"{entry.config.name}: report" not in page
    # The timeline as SVG, not as the Mermaid source of it again, nor its colour key.
    assert "mermaid" not in page.lower() and "gantt" not in page and "dateFormat" not in page
    assert "In the chart" not in page
    (report_div,) = [d for d in tree.iter("div") if d.attrib.get("class") == "report"]
    text = "".join(report_div.itertext())
    assert "ended last" not in text  # said once, under the SVG
    assert page.count("ended last") == 1
    # The rest of the report is there, its sections under the page's Report heading.
    assert "1 of 2 sources processed" in text and "RuntimeError: attempt 1 fails" in text
    assert [h.text for h in report_div.iter("h3")] == ["Failed sources"]
    assert not [h for level in ("h1", "h2") for h in report_div.iter(level)]

    # A report an Agent wrote as told: its own sections stay, the copied chart goes.
    model = TimelineCopyingModel()
    workflow = entry.factory(report_model=model)
    state: dict[str, Any] = {}
    output = asyncio.run(workflow.arun(input="weekly", session_state=state))
    written = str(output.content)
    assert written == model.reply and "```mermaid\ngantt" in written
    agent_page = run_page(Aggregation.model_validate(state["aggregation"]), written)
    (report_div,) = [
        d for d in page_tree(agent_page).iter("div") if d.attrib.get("class") == "report"
    ]
    assert [h.text for h in report_div.iter("h3")] == ["Next steps"]
    text = "".join(report_div.itertext())
    assert "Every source was read." in text and "Nothing to do." in text
    assert "gantt" not in text and "ended last" not in text
    assert "flowchart LR" in text  # another chart than the timeline stays: nothing else draws it
    assert "Weekly data report" not in agent_page  # the page's headings say what it is


# --- the page's status, against the one `history` lists -----------------------------------


def page_facts(page: str) -> dict[str, str]:
    """The facts table at the top of a run's page, as {fact: value}."""
    table = next(page_tree(page).iter("table"))  # the first table is the facts'
    return {row.findtext("th") or "": row.findtext("td") or "" for row in table.iter("tr")}


def test_run_html_says_the_status_that_history_lists(
    entry: WorkflowEntry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A source that fails: `run` exits 1, yet the run completed, and `history` says so.
    first = entry.config.sources[0]

    def fails(source: Source) -> SourceSummary:
        raise RuntimeError("this source fails")

    replace_source(monkeypatch, entry, first.id, fails)
    page_file = tmp_path / "run.html"
    workflow = ["--workflow", entry.config.workflow_id]
    assert main(["run", *workflow, "--json", "--html", str(page_file)]) == 1
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["history", "--json", *workflow]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["run_id"] == run_id and listed["status"] == "COMPLETED"

    page = page_file.read_text()
    facts = page_facts(page)
    assert (facts["run"], facts["status"]) == (run_id, listed["status"])
    assert facts["sources"] == f"{len(entry.config.sources)} (1 failed)"
    # The very page `history show --html` writes (and `serve` answers) of the stored run.
    shown = tmp_path / "shown.html"
    assert main(["history", "show", run_id, "--html", str(shown)]) == 0
    assert shown.read_text() == page


def test_run_html_without_a_history_says_the_run_is_not_in_it(
    entry: WorkflowEntry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the library-only install runs: no SQLite support, so no history to read a status from.
    import parallel_workflow_runtime._cli.commands as commands

    monkeypatch.setattr(commands, "history_while_running", lambda: None)
    replace_source(monkeypatch, entry, entry.config.sources[0].id, waits(0.01))
    page_file = tmp_path / "run.html"
    assert main(["run", "--workflow", entry.config.workflow_id, "--html", str(page_file)]) in (0, 1)
    assert page_facts(page_file.read_text())["status"] == "not in the history"


@pytest.mark.integration
def test_a_real_browser_shows_the_run_page_as_history_lists_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --html` of a run with a failed source and sources that wait for a slot, as
    Chromium shows it: the status `history` lists, the report once with no Mermaid source,
    and each source's waited figure as its row's waits for a slot add up."""
    from selenium.webdriver.common.by import By

    # The example project's workflow with fewer slots than sources (mixed: 2 for 5).
    entry = next(e for e in WORKFLOWS.values() if e.config.max_concurrency < len(e.config.sources))
    first, *others = entry.config.sources

    def fails(source: Source) -> SourceSummary:
        raise RuntimeError("this source fails")

    replace_source(monkeypatch, entry, first.id, fails)
    for source in others:
        replace_source(monkeypatch, entry, source.id, waits(0.05))
    page_file = tmp_path / "run.html"
    workflow = ["--workflow", entry.config.workflow_id]
    assert main(["run", *workflow, "--html", str(page_file)]) == 1
    capsys.readouterr()
    assert main(["history", "--json", *workflow]) == 0
    (listed,) = json.loads(capsys.readouterr().out)

    driver = chromium()
    try:
        driver.get(page_file.as_uri())
        facts = {
            row.find_element(By.TAG_NAME, "th").text: row.find_element(By.TAG_NAME, "td").text
            for row in driver.find_elements(By.CSS_SELECTOR, "table.facts tr")
        }
        assert facts["status"] == listed["status"] == "COMPLETED"
        assert [h.text for h in driver.find_elements(By.TAG_NAME, "h1")] == [
            f"{entry.config.name}: run"
        ]
        shown = driver.find_element(By.TAG_NAME, "body").text
        assert "gantt" not in shown and "mermaid" not in shown.lower()
        assert shown.count("ended last") == 1
        report = driver.find_element(By.CSS_SELECTOR, "div.report")
        assert [h.text for h in report.find_elements(By.TAG_NAME, "h3")] == ["Failed sources"]
        header = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "table.sources th")]
        column = header.index("waited")
        rows = driver.find_elements(By.CSS_SELECTOR, "table.sources tr")[1:]
        waited = {
            cells[0].text: float(cells[column].text)
            for cells in (row.find_elements(By.TAG_NAME, "td") for row in rows)
        }
        drawn: dict[str, list[float]] = driver.execute_script(
            "const drawn = {};"
            "for (const row of document.querySelectorAll('svg.timeline g.source')) {"
            "  drawn[row.dataset.source] = [...row.querySelectorAll('rect.wait > title')]"
            "    .map(t => parseFloat(t.textContent.split('waiting for a slot, ')[1])); }"
            "return drawn;"
        )
        assert set(waited) == set(drawn) == {source.id for source in entry.config.sources}
        for source_id, seconds in drawn.items():
            assert waited[source_id] == pytest.approx(sum(seconds), abs=0.0006 * len(seconds))
        assert max(waited.values()) >= 0.05  # they took turns at the one slot
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()
