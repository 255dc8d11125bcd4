"""One run as a self-contained HTML page: the timeline as inline SVG, the per-source table,
the report and the run's facts. No script, no stylesheet or font from elsewhere: the file
opens offline, and the same page is what `serve` answers for a stored run.

The page is well-formed XML as well as HTML, so that a strict parser can check it. Its
templates (templates/*.jinja, page_templates.py) lay out what page_parts.py and trace_view.py
compute, and escape every string in it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

from parallel_workflow_runtime._core.results import Aggregation
from parallel_workflow_runtime._core.usage import HistoryError, PageError
from parallel_workflow_runtime._observe.page_parts import legend, source_rows, timeline
from parallel_workflow_runtime._observe.page_templates import render
from parallel_workflow_runtime._observe.timeline import describe_straggler, mermaid_key
from parallel_workflow_runtime._observe.trace_view import TraceSpan, run_spans, trace_nodes
from parallel_workflow_runtime._store.history import RunRecord, stored_run

if TYPE_CHECKING:
    from agno.db.base import BaseDb

    from parallel_workflow_runtime._core.results import RunOutcome


def run_page(
    aggregation: Aggregation,
    report: str | None,
    facts: Sequence[tuple[str, str]] = (),
    spans: Sequence[TraceSpan] | None = None,
) -> str:
    """The page of one run; `facts` are extra lines of the facts table (run id, status);
    `spans`, its trace's, as a tree after the report."""
    started = datetime.fromtimestamp(aggregation.started_at, UTC).isoformat(timespec="seconds")
    all_facts = [
        ("workflow", f"{aggregation.workflow_name} ({aggregation.workflow_id})"),
        *facts,
        ("request", aggregation.request),
        ("started", started),
        ("sources", f"{aggregation.total_sources} ({len(aggregation.failed)} failed)"),
        ("records", f"{aggregation.total_records:,}"),
        ("wall", f"{aggregation.wall_seconds:.3f} s"),
        ("one after another", f"{aggregation.sequential_seconds:.3f} s"),
        (
            "saved",
            f"{aggregation.time_saved_seconds:.3f} s ({aggregation.efficiency_percent:.0f}%)",
        ),
    ]
    return render(
        "run.html.jinja",
        title=f"{aggregation.workflow_name}: run",
        facts=all_facts,
        legend=legend(),
        timeline=timeline(aggregation),
        straggler=describe_straggler(aggregation),
        sources=source_rows(aggregation),
        report=report_html(report) if report else None,
        trace=trace_nodes(spans or []),
    )


# The line that starts a Mermaid gantt chart (after any front matter, directive or comment).
GANTT_LINE = re.compile(r"^\s*gantt\s*$", re.MULTILINE)


def report_html(report: str) -> Markup:
    """The Markdown report as HTML (XHTML-style tags, raw HTML in it escaped), as it reads
    under the page's own Report heading: without its title and its Mermaid timeline, which
    the page already shows (page_report_blocks), its other headings under the page's.

    Markup, which the page's template prints as it is: HTML that markdown-it-py wrote, which
    escapes the report's text and, with `html` off, any raw HTML in it too."""
    markdown = MarkdownIt("commonmark", {"xhtmlOut": True, "html": False}).enable("table")
    env: dict[str, Any] = {}  # the report's link references, from parsing to rendering
    blocks = page_report_blocks(markdown.parse(report, env))
    return Markup(markdown.renderer.render(blocks, markdown.options, env))


def page_report_blocks(tokens: list[Token]) -> list[Token]:
    """The report's blocks (markdown-it's tokens) that the page does not show already.

    - Its leading `#` title goes: the page's h1 and its Report heading say what it is.
    - A ```mermaid gantt block goes, as the SVG timeline above draws the same chart. When it is
      the first thing under a heading (the offline report's "Timeline", and where the Agent
      is told to put it), that whole section goes: its line on the source that ended last
      is under the SVG too.
    - The key to the chart's colours goes with it (the SVG has its own legend, in others).
    - The other headings move one level down (at least to h3), under the page's h2s, so that
      the page keeps one h1 and an outline that reads.
    """
    kept = list(tokens)
    if kept and kept[0].type == "heading_open" and kept[0].tag == "h1":
        del kept[:3]  # heading_open, its inline text, heading_close
    index = 0
    while index < len(kept):
        token = kept[index]
        if is_mermaid_gantt(token):
            heading = index - 3  # heading_open, inline, heading_close, then the fence
            if token.level == 0 and heading >= 0 and kept[heading].type == "heading_open":
                del kept[heading : section_end(kept, heading)]
                index = heading
            else:
                del kept[index]  # inside a list item, or after some text of its own
        elif token.type == "paragraph_open" and kept[index + 1].content == mermaid_key():
            del kept[index : index + 3]  # paragraph_open, its inline text, paragraph_close
        else:
            index += 1
    for token in kept:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(6, max(3, heading_level(token) + 1))}"
    return kept


def is_mermaid_gantt(token: Token) -> bool:
    """A fenced block of a Mermaid gantt chart: the timeline, which the SVG draws. Another
    Mermaid chart stays (as its source: the page runs no script that could draw it)."""
    return (
        token.type == "fence"
        and token.info.strip().lower().split()[:1] == ["mermaid"]
        and GANTT_LINE.search(token.content) is not None
    )


def heading_level(token: Token) -> int:
    return int(token.tag.removeprefix("h"))


def section_end(tokens: list[Token], heading: int) -> int:
    """Where the section of the heading at `heading` ends: at the next heading of its level
    or higher outside any list or quote, or at the end."""
    level = heading_level(tokens[heading])
    return next(
        (
            index
            for index in range(heading + 1, len(tokens))
            if tokens[index].type == "heading_open"
            and tokens[index].level == 0
            and heading_level(tokens[index]) <= level
        ),
        len(tokens),
    )


def record_page(record: RunRecord, spans: Sequence[TraceSpan] | None = None) -> str:
    """The page of a stored run, as `history show --html` writes it and `serve` answers it;
    with its trace's spans, if it has one."""
    if record.aggregation is None:
        raise HistoryError(f"run {record.run_id} stopped before its Aggregation step")
    return run_page(
        record.aggregation,
        record.report,
        [("run", record.run_id), ("status", record.status)],
        spans,
    )


def outcome_page(outcome: RunOutcome, db: BaseDb | None) -> str:
    """The page `run --html` writes of the run it has just run. Once the run is in the
    history, the page of the run as stored: the same as `history show RUN_ID --html` writes
    and `serve` answers, with the status `history` lists (COMPLETED also when a source failed:
    `run`'s exit code says that, and the page's sources line). Otherwise (no history, or its
    save failed) the page of the outcome, with no status: nothing recorded one."""
    if outcome.aggregation is None:
        raise PageError("the run stopped before its Aggregation step: no page to write")
    if db is not None and outcome.run_id is not None:
        try:
            record = stored_run(db, outcome.run_id)
            return record_page(record, run_spans(db, record.run_id))
        except HistoryError:
            pass  # not saved: `run` has said so in an error line
    facts = [("run", outcome.run_id or ""), ("status", "not in the history")]
    return run_page(outcome.aggregation, outcome.report, facts)


def write_page(path: Path, page: str) -> None:
    """Write the page whole or not at all: into a file beside it, then renamed over it."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.unlink(missing_ok=True)  # one left by a run that was killed
        # Readable by its owner alone, as the history it shows.
        descriptor = os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(page)
        partial.replace(path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise PageError(f"cannot write {path}: {error.strerror}") from None


def writable(path: Path) -> Path:
    """`path` if a page can be written there (checked before a run, not after it)."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise PageError(f"cannot write {path}: it is a directory")
    if not folder.is_dir():
        raise PageError(f"cannot write {path}: no directory {folder}")
    if not os.access(folder, os.W_OK):
        raise PageError(f"cannot write {path}: {folder} is not writable")
    return path
