"""The steps every workflow.py is built from: Preparation, one Step per source for the
Parallel block, Aggregation and Report.

Each step's executor is an ordinary Agno executor: it receives the `StepInput` (and, if it
asks for it, the `RunContext`, whose `session_state` is shared by the steps of one run) and
returns a `StepOutput`. A step of your own in workflow.py works the same way; once the
Aggregation step has run, `aggregation_of(step_input)` gives it the aggregation.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from agno.agent import Agent
from agno.models.base import Model
from agno.run.base import RunContext, RunStatus
from agno.workflow import Step
from agno.workflow.types import StepInput, StepOutput

from parallel_workflow_runtime._connectors.connectors import ConnectorRun
from parallel_workflow_runtime._core.config import (
    AGGREGATION_STEP,
    PARALLEL_STEP,
    PREPARATION_STEP,
    REPORT_STEP,
    ConfigError,
    Source,
    WorkflowConfig,
)
from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.results import (
    Aggregation,
    SourceError,
    SourceFunction,
    SourceResult,
    aggregate,
    aggregation_of,
)
from parallel_workflow_runtime._core.settings import load_settings
from parallel_workflow_runtime._execution.execution import SourceRunner
from parallel_workflow_runtime._execution.executor_base import ExecutorSpec
from parallel_workflow_runtime._execution.executors import executor_spec
from parallel_workflow_runtime._observe.report import (
    build_report_agent,
    render_report,
    report_input,
)

# What a source module defines: `run(source)`; modules written before 0.5.0 define
# `process_source(source)`, which still works until 1.0.0.
SOURCE_FUNCTION_NAMES = ("run", "process_source")


def preparation_step(config: WorkflowConfig) -> Step:
    """Records the request and starts the clock of the parallel block."""
    return Step(name=PREPARATION_STEP, executor=partial(prepare, config=config))


def source_steps(
    config: WorkflowConfig, source_functions: Mapping[str, SourceFunction] | None = None
) -> list[Any]:
    """One Step per source in config.yaml, each running its module's `run` (or the function
    `source_functions` gives for its id, as the bench and the tests do), all under the
    workflow's limits.

    A list of Any, not of Step: Agno annotates each argument of `Parallel(*steps)` as a list
    of steps, though it takes a Step, and a precise type here would not type-check there.
    """
    runner = SourceRunner(config.max_concurrency, config.max_details_bytes, config.sources)
    overrides = source_functions or {}
    dask_address = load_settings().dask_address
    steps: list[Any] = []
    for source in config.sources:
        function = overrides.get(source.id) or load_source_function(config, source)
        if source.kind != "python" and not isinstance(function, CannotRun | ConnectorRun):
            # dlt reads the rows and hands them to `run(source, rows)` (connectors.py).
            function = ConnectorRun(function)  # type: ignore[arg-type]
        spec = executor_spec(config, source, inspect.iscoroutinefunction(function), dask_address)
        executor = partial(
            run_source_step, source=source, function=function, spec=spec, runner=runner
        )
        # Agno asks each step's executor whether it takes run_context, with inspect.signature,
        # every time the step runs: of a partial, that cost more than the rest of the step.
        # The answer is the same for every source, so it is worked out once and kept on each.
        executor.__signature__ = source_step_signature()  # type: ignore[attr-defined]
        steps.append(
            Step(
                name=source.id,
                executor=executor,
                # The runner times out, retries and reports failures itself: Agno never retries.
                max_retries=0,
            )
        )
    return steps


@functools.cache
def source_step_signature() -> inspect.Signature:
    """What a source step's executor takes: run_source_step's arguments less those bound."""
    return inspect.signature(run_source_step).replace(
        parameters=[
            parameter
            for name, parameter in inspect.signature(run_source_step).parameters.items()
            if name in ("step_input", "run_context")
        ]
    )


def aggregation_step(config: WorkflowConfig) -> Step:
    """Merges every source's result, stores the aggregation in the session state."""
    return Step(name=AGGREGATION_STEP, executor=partial(aggregate_results, config=config))


def report_step(config: WorkflowConfig, report_model: Model | str | None = None) -> Step:
    """An Agno Agent writes the report when a model is set; otherwise a Markdown template.

    `report_model` overrides the configured model (an Agno `Model`, a `provider:model_id`
    string, or "" for the offline report); by default `<PACKAGE>_REPORT_MODEL` or else
    config.yaml's `report_model` decides.
    """
    model = effective_report_model(config) if report_model is None else report_model
    if model:
        agent = build_report_agent(model)
        return Step(
            name=REPORT_STEP, executor=partial(write_report_with_agent, agent=agent), max_retries=0
        )
    return Step(name=REPORT_STEP, executor=write_report, max_retries=0)


def effective_report_model(config: WorkflowConfig) -> str:
    """The report model after the environment override; empty means the offline report."""
    override = load_settings().report_model
    return (config.report_model if override is None else override).strip()


def session_state(run_context: RunContext) -> dict[str, Any]:
    """The run's session state, which Agno always passes to a workflow's steps."""
    if run_context.session_state is None:
        raise RuntimeError("Agno passed no session state to the step")
    return run_context.session_state


def prepare(step_input: StepInput, run_context: RunContext, config: WorkflowConfig) -> StepOutput:
    state = session_state(run_context)
    # Written before the parallel block starts, so no source ever races on these keys.
    state["request"] = str(step_input.input or "")
    state["parallel_started_at"] = time.perf_counter()
    state["parallel_started_epoch"] = time.time()
    names = ", ".join(source.name for source in config.sources)
    return StepOutput(content=f"Processing {len(config.sources)} sources: {names}")


async def run_source_step(
    step_input: StepInput,
    run_context: RunContext,
    source: Source,
    function: SourceFunction,
    spec: ExecutorSpec,
    runner: SourceRunner,
) -> StepOutput:
    # The result travels as this step's own output; sources never touch the session state.
    # The timing's origin: when Preparation started the parallel block's clock.
    origin = session_state(run_context).get("parallel_started_at")
    result = await runner.run(source, function, spec, run_context.run_id, origin)
    return StepOutput(content=SourceContent.of(result))


class SourceContent(dict[str, Any]):
    """A source step's content: its SourceResult as JSON, which Agno stores and serves as it
    is. As text it is one line: Agno joins each branch's text into the Parallel block's
    content, where a line per source reads better than a dict, and costs far less to make
    for hundreds of sources than the dict's repr, twice each.

    It keeps the SourceResult it was made from (frozen), for the Aggregation step of the same
    run, which then does not validate the JSON back into it. Made as a dict is (Agno's
    `dataclasses.asdict` of its events makes copies so), it has none."""

    result: SourceResult | None = None

    @classmethod
    def of(cls, result: SourceResult) -> SourceContent:
        content = cls(result.model_dump(mode="json"))
        content.result = result
        return content

    def __str__(self) -> str:
        tries = f" in {self['attempts']} attempts" if self.get("attempts", 1) > 1 else ""
        if self.get("status") == "ok":
            return f"{self.get('records', 0):,} records in {self.get('seconds', 0):.2f} s{tries}"
        return f"{self.get('status')}{tries}: {self.get('error')}"


def aggregate_results(
    step_input: StepInput, run_context: RunContext, config: WorkflowConfig
) -> StepOutput:
    """Every branch's result, found by its step name (the source's id) in the Parallel block."""
    state = session_state(run_context)
    wall_seconds = time.perf_counter() - state["parallel_started_at"]
    # The Parallel block's branches by name, looked up once: get_step_output searches every
    # step's output, which for each of 200 sources is 40,000 comparisons.
    parallel = step_input.get_step_output(PARALLEL_STEP)
    branches = {branch.step_name: branch for branch in (parallel.steps or [])} if parallel else {}
    results = [
        _branch_result(source, branches.get(source.id) or step_input.get_step_output(source.id))
        for source in config.sources
    ]
    aggregation = aggregate(
        workflow_id=config.workflow_id,
        workflow_name=config.name,
        request=state["request"],
        results=results,
        wall_seconds=wall_seconds,
        started_at=state["parallel_started_epoch"],
    )
    # Text, as an Agent reads it; the history reads the aggregation back from it.
    # Compact: with `indent`, the json module encodes in Python, 10 ms per 200 sources here.
    text = AggregationText.of(aggregation)
    # A single assignment after the parallel block: nothing else writes this key concurrently.
    # The same JSON, parsed (in C): faster than pydantic's model_dump(mode="json") of it.
    state["aggregation"] = json.loads(text)
    return StepOutput(content=text)


class AggregationText(str):
    """The Aggregation step's content: the aggregation as JSON text, keeping the (frozen)
    Aggregation it was made from, which `aggregation_of` then gives the later steps of the
    same run without parsing the text back. Made as a str is (a copy), it has none."""

    aggregation: Aggregation | None = None

    @classmethod
    def of(cls, aggregation: Aggregation) -> AggregationText:
        text = cls(aggregation.model_dump_json())
        text.aggregation = aggregation
        return text


def write_report(step_input: StepInput) -> StepOutput:
    """The offline Report step: a deterministic Markdown report of the aggregation."""
    return StepOutput(content=render_report(aggregation_of(step_input)))


async def write_report_with_agent(step_input: StepInput, agent: Agent) -> StepOutput:
    """The Agent's Report step: it reads the aggregation, whatever steps ran since."""
    response = await agent.arun(input=report_input(aggregation_of(step_input)))
    if response.status == RunStatus.error:
        raise RuntimeError(str(response.content))  # e.g. no API key: the step fails
    return StepOutput(content=str(response.content))


def load_source_function(config: WorkflowConfig, source: Source) -> SourceFunction:
    """`run` from the source's own module, sources/<id>.py.

    A module that does not import (a syntax error, an exception at import time, a missing
    dependency) fails only its own source, with one line naming the file and line.
    """
    module_name = f"{current().package}.workflows.{config.path.parent.name}.sources.{source.id}"
    relative = f"sources/{source.id}.py"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            return _failing(f"{relative}{_line_in(error, relative)}: {error}")
        raise ConfigError(f"source {source.id!r} has no module {relative}") from None
    except SyntaxError as error:
        return _failing(f"{relative} line {error.lineno}: SyntaxError: {error.msg}")
    except KeyboardInterrupt:
        raise  # Ctrl-C while the modules import: the user stops the program
    except BaseException as error:  # anything else its code raises, `raise BaseException` too
        return _failing(f"{relative}{_line_in(error, relative)}: {type(error).__name__}: {error}")
    expected = "run(source)" if source.kind == "python" else "run(source, rows)"
    for name in SOURCE_FUNCTION_NAMES:
        function = getattr(module, name, None)
        if callable(function):
            if not takes_arguments(function, 1 if source.kind == "python" else 2):
                return _failing(
                    f"{relative}: {name} does not take the arguments of {expected}, which a "
                    f"source of kind {source.kind} defines"
                )
            return function
    raise ConfigError(f"{relative} defines no {expected} function")


def takes_arguments(function: Any, count: int) -> bool:
    """Whether `function` can be called with `count` positional arguments."""
    try:
        inspect.signature(function).bind(*range(count))
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): let the call say
        return True
    return True


def _failing(message: str) -> SourceFunction:
    return CannotRun(" ".join(message.split()))


@dataclass(frozen=True)
class CannotRun:
    """The `run` of a source whose module does not import: it fails with the module's error.

    A class at module level, not a closure, so that it pickles by reference to a worker
    process or a Dask worker, and the source fails there with its own error.
    """

    message: str

    def __call__(self, source: Source) -> Any:
        raise SourceError(self.message)


def _line_in(error: BaseException, relative: str) -> str:
    """` line N`: where in the source's module the error was raised, if it was there."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.endswith(relative)]
    return f" line {frames[-1].lineno}" if frames else ""


def _branch_result(source: Source, branch: StepOutput | None) -> SourceResult:
    content = branch.content if branch is not None else None
    if isinstance(content, SourceContent) and content.result is not None:
        return content.result
    if branch is not None and isinstance(branch.content, dict):
        return SourceResult.model_validate(branch.content)
    # Only reached when Agno itself failed the branch (the runner catches the source's errors).
    error = (branch.error if branch is not None else None) or "the source's step did not run"
    return SourceResult.failure(source, error, attempts=0)
