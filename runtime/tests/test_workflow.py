"""The workflow end to end: every source aggregated, in parallel, failures isolated."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from typing import Any

from agno.workflow import Parallel, Step, Workflow
from agno.workflow.types import StepInput, StepOutput
from example_project import Source, SourceSummary, aggregation_of

from parallel_workflow_runtime._core.config import PARALLEL_STEP
from parallel_workflow_runtime._core.registry import WorkflowEntry
from parallel_workflow_runtime._core.results import SourceFunction
from parallel_workflow_runtime._execution.steps import (
    aggregation_step,
    preparation_step,
    report_step,
    source_steps,
)
from parallel_workflow_runtime._observe.report import escape


def run(
    entry: WorkflowEntry,
    request: str = "Process all data sources",
    source_functions: dict[str, SourceFunction] | None = None,
) -> tuple[Any, dict]:
    session_state: dict[str, Any] = {}
    workflow = entry.factory(source_functions=source_functions)
    output = asyncio.run(workflow.arun(input=request, session_state=session_state))
    return output, session_state


def synthetic_sources(entry: WorkflowEntry, latency: float = 0.0) -> dict[str, SourceFunction]:
    """A stand-in for every source: the i-th returns i + 1 records after `latency` seconds.
    The engine is tested with these, never with what your sources return (their own tests,
    tests/<workflow>/test_<id>.py, are yours)."""

    def returning(records: int) -> SourceFunction:
        async def synthetic(source: Source) -> SourceSummary:
            await asyncio.sleep(latency)
            return SourceSummary(records=records, details={"synthetic": True})

        return synthetic

    return {s.id: returning(index + 1) for index, s in enumerate(entry.config.sources)}


def test_the_workflow_runs_and_reports_every_configured_source(entry: WorkflowEntry) -> None:
    """Your sources, whatever they return: each one is reported under its id and name."""
    output, state = run(entry, "Monthly report")
    aggregation = state["aggregation"]
    sources = entry.config.sources

    assert [result["id"] for result in aggregation["sources"]] == [s.id for s in sources]
    assert [result["name"] for result in aggregation["sources"]] == [s.name for s in sources]
    assert aggregation["total_sources"] == len(sources)
    assert aggregation["request"] == "Monthly report"
    assert aggregation["total_records"] == sum(r["records"] for r in aggregation["sources"])
    assert output.content == output.step_results[-1].content
    for source in sources:
        assert escape(source.name) in output.content


def test_every_source_is_aggregated_and_reported(entry: WorkflowEntry) -> None:
    output, state = run(entry, "Monthly report", synthetic_sources(entry))
    aggregation = state["aggregation"]
    count = len(entry.config.sources)

    assert all(result["ok"] for result in aggregation["sources"]), aggregation["sources"]
    assert [result["records"] for result in aggregation["sources"]] == list(range(1, count + 1))
    assert all(result["details"] == {"synthetic": True} for result in aggregation["sources"])
    assert aggregation["failed"] == []
    assert aggregation["total_records"] == count * (count + 1) // 2
    # The offline report names every source and the totals.
    for source in entry.config.sources:
        assert escape(source.name) in output.content
    assert f"{aggregation['total_records']:,} records" in output.content


def test_parallel_wall_time_is_well_below_the_sequential_sum(entry: WorkflowEntry) -> None:
    latency = 0.4
    _, state = run(entry, source_functions=synthetic_sources(entry, latency))
    aggregation = state["aggregation"]
    count = len(entry.config.sources)
    # At most max_concurrency at a time: the ideal is that many rounds of `latency`.
    rounds = -(-count // entry.config.max_concurrency)

    ideal, sequential = rounds * latency, count * latency
    assert aggregation["sequential_seconds"] >= sequential * 0.99
    # Well below one after another: a busy machine gets half of the difference.
    assert aggregation["wall_seconds"] < ideal + 0.5 * max(sequential - ideal, latency)
    if count > 1:
        assert aggregation["time_saved_seconds"] > 0


def test_a_failing_source_is_isolated_and_reported(entry: WorkflowEntry) -> None:
    broken = entry.config.sources[0]

    def unreachable(source: Any) -> Any:
        raise ConnectionError("database unreachable:\n  connection refused")

    output, state = run(entry, source_functions=synthetic_sources(entry) | {broken.id: unreachable})
    aggregation = state["aggregation"]

    assert output.status == "COMPLETED"
    assert aggregation["failed"] == [broken.id]
    failed = aggregation["sources"][0]
    assert failed["ok"] is False
    assert failed["error"] == "ConnectionError: database unreachable: connection refused"
    assert all(result["ok"] for result in aggregation["sources"][1:])
    assert len(aggregation["sources"]) == len(entry.config.sources)
    assert "## Failed sources" in output.content
    assert "database unreachable" in output.content


def test_streaming_reports_every_source_as_it_completes(entry: WorkflowEntry) -> None:
    async def collect() -> list[Any]:
        workflow = entry.factory(source_functions=synthetic_sources(entry))
        return [e async for e in workflow.arun(input="stream", stream=True, stream_events=True)]

    events = asyncio.run(collect())
    completed = [getattr(e, "step_name", None) for e in events if e.event == "StepCompleted"]

    assert sorted(s.id for s in entry.config.sources) == sorted(
        name for name in completed if name in {s.id for s in entry.config.sources}
    )
    assert events[-1].event == "WorkflowCompleted"


# The step of README.md's "Add a step", as a user adds it to workflow.py.
def validate(step_input: StepInput) -> StepOutput:
    """Stop before the report when no source returned a single record."""
    aggregation = aggregation_of(step_input)
    if aggregation.total_records == 0:
        return StepOutput(content="No records at all: no report today.", stop=True)
    return StepOutput(content=f"{aggregation.total_records:,} records checked")


def with_validation(
    entry: WorkflowEntry, source_functions: dict[str, SourceFunction] | None = None
) -> Workflow:
    """The workflow as README.md shows it with that step, built from the same helpers as
    workflow.py (which may hold steps of your own already)."""
    config = entry.config
    return Workflow(
        name=config.name,
        steps=[
            preparation_step(config),
            Parallel(*source_steps(config, source_functions), name=PARALLEL_STEP),
            aggregation_step(config),
            Step(name="Validation", executor=validate),
            report_step(config, ""),
        ],
        telemetry=False,
    )


def test_a_step_of_your_own_runs_between_aggregation_and_report(entry: WorkflowEntry) -> None:
    workflow = with_validation(entry)
    state: dict[str, Any] = {}
    output = asyncio.run(workflow.arun(input="Checked run", session_state=state))

    steps = [step for step in output.step_results if isinstance(step, StepOutput)]
    names = [step.step_name for step in steps]
    assert names == ["Preparation", "ParallelProcessing", "Aggregation", "Validation", "Report"]
    assert steps[3].content == f"{state['aggregation']['total_records']:,} records checked"
    # The report still comes from the aggregation, not from the step just before it.
    assert "Request: Checked run" in str(output.content)


def test_a_step_of_your_own_can_stop_the_run_before_the_report(entry: WorkflowEntry) -> None:
    async def nothing(source: Source) -> SourceSummary:
        return SourceSummary(records=0)

    empty: dict[str, SourceFunction] = {source.id: nothing for source in entry.config.sources}
    workflow = with_validation(entry, source_functions=empty)
    output = asyncio.run(workflow.arun(input="Empty run", session_state={}))

    names = [step.step_name for step in output.step_results if isinstance(step, StepOutput)]
    assert names[-1] == "Validation" and "Report" not in names
    assert output.content == "No records at all: no report today."


def test_copies_of_the_steps_contents_read_as_their_values(entry: WorkflowEntry) -> None:
    """A source step's content and the Aggregation step's text keep the objects they were
    made from, for the later steps of the run; a copy (Agno's `asdict` of its events, a
    deepcopy) is the same JSON without them, and still reads as the same aggregation."""
    output, state = run(entry, source_functions=synthetic_sources(entry))
    parallel = next(step for step in output.step_results if step.step_name == PARALLEL_STEP)
    branch = parallel.steps[0].content
    aggregation_text = next(
        step.content for step in output.step_results if step.step_name == "Aggregation"
    )

    assert branch.result is not None and aggregation_text.aggregation is not None
    copied = dataclasses.asdict(parallel.steps[0])["content"]  # made as a dict is
    assert copied == branch and copied.result is None
    assert copy.deepcopy(branch) == branch
    copied_text = type(aggregation_text)(aggregation_text)  # made as a str is
    assert copied_text == aggregation_text and copied_text.aggregation is None
    copied_output = StepOutput(step_name="Aggregation", content=copied_text)
    copied_input = StepInput(previous_step_outputs={"Aggregation": copied_output})
    assert aggregation_of(copied_input).model_dump(mode="json") == state["aggregation"]
