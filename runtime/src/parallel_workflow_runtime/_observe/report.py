"""The Report step: a deterministic Markdown report offline, or an Agno Agent with a model."""

from __future__ import annotations

import re

from agno.agent import Agent
from agno.models.base import Model
from agno.models.utils import get_model

from parallel_workflow_runtime._core.results import Aggregation, valid_text
from parallel_workflow_runtime._core.usage import ReportModelError
from parallel_workflow_runtime._observe.timeline import mermaid_gantt, mermaid_key, straggler

REPORT_INSTRUCTIONS = [
    "You write the final report of a data-processing workflow run.",
    "You receive the run's aggregation as JSON: per-source results, totals and timings.",
    "Write a short Markdown report: what was processed, records per source, any failed source "
    "with its error, and the time saved by running the sources in parallel.",
    "Use only the numbers in the JSON; do not invent data.",
    "After the JSON comes a Mermaid gantt block of the sources over time: end the report with "
    "that block exactly as given, under a heading 'Timeline', and name the source that ended "
    "last.",
]


def build_report_agent(model: Model | str) -> Agent:
    """An Agent that turns the aggregation into a report, with a one-line error if unusable."""
    try:
        resolved = get_model(model)
    except ImportError as error:
        raise ReportModelError(
            f"report model {model!r} needs its provider's SDK: {error}"
        ) from None
    except ValueError as error:
        raise ReportModelError(f"report model {model!r} is not usable: {error}") from None
    return Agent(
        name="Report writer",
        model=resolved,
        instructions=REPORT_INSTRUCTIONS,
        markdown=True,
        telemetry=False,  # this project stays offline unless you opt in
    )


# How much of each error the report shows, cut as results.valid_text cuts every message:
# the whole message is in the run's aggregation (`run --json`, `history show`), and the report
# does not repeat a long one.
REPORT_ERROR_CHARS = 300


def render_report(aggregation: Aggregation) -> str:
    """The offline report: the same facts an Agent would get, as Markdown."""
    lines = [
        f"# {escape(aggregation.workflow_name)}: report",
        "",
        f"Request: {escape(aggregation.request)}",
        "",
        "| Source | Status | Records | Seconds |",
        "| --- | --- | ---: | ---: |",
    ]
    for source in aggregation.sources:
        status = source.status.label
        if source.attempts > 1:
            status += f" after {source.attempts} attempts"
        lines.append(
            f"| {escape(source.name)} | {status} | {source.records:,} | {source.seconds:.2f} |"
        )
    succeeded = aggregation.total_sources - len(aggregation.failed)
    lines += [
        "",
        f"{succeeded} of {aggregation.total_sources} sources processed, "
        f"{aggregation.total_records:,} records in total.",
        "",
        f"The parallel block took {aggregation.wall_seconds:.2f} s against "
        f"{aggregation.sequential_seconds:.2f} s one after another: "
        f"{aggregation.time_saved_seconds:.2f} s saved "
        f"({aggregation.efficiency_percent:.0f}% faster).",
    ]
    failures = [source for source in aggregation.sources if not source.ok]
    if failures:
        lines += ["", "## Failed sources", ""]
        for source in failures:
            error = valid_text(source.error or "", REPORT_ERROR_CHARS)
            lines.append(f"- {escape(source.name)} (`{source.id}`): {escape(error)}")
    lines += timeline_section(aggregation)
    warned = [source for source in aggregation.sources if source.warnings]
    if warned:
        lines += ["", "## Warnings", ""]
        lines += [
            f"- {escape(source.name)} (`{source.id}`): {escape(warning)}"
            for source in warned
            for warning in source.warnings
        ]
    return "\n".join(lines) + "\n"


def timeline_section(aggregation: Aggregation) -> list[str]:
    """The report's Timeline: the gantt chart and the source that ended last, or no lines
    when no source has a timing."""
    if not any(source.timing is not None for source in aggregation.sources):
        return []
    lines = ["", "## Timeline", "", mermaid_gantt(aggregation), "", mermaid_key()]
    last = straggler(aggregation)
    if last is not None and last.timing is not None:
        lines += [
            "",
            f"{escape(last.name)} (`{last.id}`) ended last, at {last.timing.finished:.2f} s.",
        ]
    return lines


def escape(text: str) -> str:
    """Names, errors and the request as inline Markdown: on one line, so that they cannot
    start a heading or a list, with the characters Markdown would interpret backslash-escaped."""
    return re.sub(r"([\\`*_\[\]<>|])", r"\\\1", " ".join(text.split()))


def report_input(aggregation: Aggregation) -> str:
    """What the Report Agent reads: the aggregation as JSON, then the timeline to include."""
    return f"{aggregation.model_dump_json(indent=2)}\n\n{mermaid_gantt(aggregation)}\n"
