"""Run a workflow once and say how it went: used by `run`, `bench` and the HTTP server alike,
so that every run gets the same checks (each source reported, the report written, the run
stored in the history)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from agno.run.base import RunStatus
from agno.run.workflow import WorkflowCompletedEvent, WorkflowRunOutput
from agno.workflow.types import StepOutput

from parallel_workflow_runtime._core.config import REPORT_STEP, WorkflowConfig
from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.registry import WorkflowEntry
from parallel_workflow_runtime._core.results import (
    MAX_REQUEST_CHARS,
    Aggregation,
    RunOutcome,
    valid_text,
)
from parallel_workflow_runtime._core.settings import load_settings
from parallel_workflow_runtime._core.usage import DEFAULT_REQUEST, ExecutorName, RunInterrupted
from parallel_workflow_runtime._execution.children import no_process_left_behind
from parallel_workflow_runtime._execution.contained_loop import new_loop
from parallel_workflow_runtime._execution.executors import (
    EXECUTORS,
    Executors,
    pooled_specs,
    start_process_workers_early,
)
from parallel_workflow_runtime._execution.interruption import INTERRUPTION, Interruption
from parallel_workflow_runtime._execution.progress import LISTENER, Listener
from parallel_workflow_runtime._observe import tracing
from parallel_workflow_runtime._observe.tracing import run_root
from parallel_workflow_runtime._store.cursor_session import CURSORS, CursorSession
from parallel_workflow_runtime._store.cursors import CursorStore
from parallel_workflow_runtime._store.history_opening import HistoryOpening, opened

if TYPE_CHECKING:
    from agno.db.base import BaseDb
    from agno.workflow import Workflow

NOT_SAVED = "the run was not saved in the history"


def execute(
    entry: WorkflowEntry,
    request: str = DEFAULT_REQUEST,
    *,
    db: BaseDb | HistoryOpening | None = None,
    listener: Listener | None = None,
    on_event: Callable[[Any], None] | None = None,
    executor: ExecutorName | None = None,
    full_refresh: frozenset[str] | None = None,
    trace: bool = False,
) -> RunOutcome:
    """Build the workflow and run it once, in an event loop of its own, every source on
    `executor` if given (`run --executor`), else on its own; traced into `db` (and the OTLP
    endpoint if set) with `trace`.

    The process pools and Dask clusters that the sources need are started first (an
    unreachable scheduler raises ExecutorError before any source runs) and closed after.
    A first Ctrl-C stops the sources still running: the run then ends as usual with those
    reported as cancelled, is recorded as cancelled, and RunInterrupted is raised. A second
    Ctrl-C stops at once (KeyboardInterrupt).

    A history still opening (history_opening.py) is waited for here when the run needs it
    from the start: to claim its connector sources' cursors.
    """
    config = on_executor(entry.config, executor)
    # Its process workers' fork server imports meanwhile (warm_start.py).
    start_process_workers_early([config])
    if any(source.connector is not None for source in config.sources):
        db = opened(db)
    # Agno takes a HistoryOpening for the database it stands for: it calls the same methods.
    workflow = entry.factory(db=cast("BaseDb | None", db), config=config)
    if trace:  # now that the report's model class is imported (tracing.instrument_agno)
        # A history still opening is written to once open (span_history.py): no wait here.
        tracing.enable(db, current().distribution)
    interruption = Interruption()

    async def watched() -> RunOutcome:
        INTERRUPTION.set(interruption)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(signal.SIGINT, first_interrupt, loop)
        async with Executors() as executors:
            await executors.start(pooled_specs(config, load_settings().dask_address))
            return await run_workflow(
                workflow,
                request,
                db=db,
                listener=listener,
                on_event=on_event,
                executors=executors,
                full_refresh=full_refresh,
            )

    def first_interrupt(loop: asyncio.AbstractEventLoop) -> None:
        interruption.interrupt()
        loop.remove_signal_handler(signal.SIGINT)  # the next Ctrl-C: KeyboardInterrupt

    # A loop that contains what a source leaves running on it (contained_loop.py); what
    # the sources started ends with the run (children.py).
    with no_process_left_behind(), asyncio.Runner(loop_factory=new_loop) as runner:
        outcome = runner.run(watched())
    if interruption.interrupted:
        if db is not None and outcome.run_id is not None:
            mark_cancelled(db, outcome.run_id, outcome.session_id)
        raise RunInterrupted(outcome)
    return outcome


def on_executor(config: WorkflowConfig, executor: ExecutorName | None) -> WorkflowConfig:
    """`config` with every source on `executor`; unchanged for None."""
    if executor is None:
        return config
    sources = tuple(dataclasses.replace(source, executor=executor) for source in config.sources)
    return dataclasses.replace(config, sources=sources)


def mark_cancelled(db: BaseDb | HistoryOpening, run_id: str, session_id: str | None) -> None:
    """Record a run that Ctrl-C cut short as cancelled, as Agno records a cancelled run."""
    run = db.get_run(run_id)
    if isinstance(run, WorkflowRunOutput) and session_id is not None:
        run.status = RunStatus.cancelled
        db.upsert_run(run=run, session_id=session_id)


async def run_workflow(
    workflow: Workflow,
    request: str,
    *,
    db: BaseDb | HistoryOpening | None = None,
    listener: Listener | None = None,
    on_event: Callable[[Any], None] | None = None,
    executors: Executors | None = None,
    full_refresh: frozenset[str] | None = None,
) -> RunOutcome:
    """Run a built workflow once. `listener` hears each source start, retry and finish;
    `on_event` receives each of Agno's events (the run then streams); with `db` the run must
    end up in that history, which keeps the connector sources' cursors (cursors.py);
    `executors` holds the pools and clusters to run the sources on (by default the run starts
    its own and closes them after). `full_refresh`: the ids of the sources that read from
    their initial value this time (empty: all of them)."""
    if db is None:
        CURSORS.set(None)
        return await _run_workflow(workflow, request, db, listener, on_event, executors)
    # The cursors' table, when a source first claims its cursor: a run of python sources never
    # does, and does not wait for a history that is still opening.
    history = db
    cursors = CursorSession(
        lambda: CursorStore.of(cast("BaseDb", opened(history))), str(workflow.id), full_refresh
    )
    CURSORS.set(cursors)
    async with cursors.kept():
        outcome = await _run_workflow(workflow, request, db, listener, on_event, executors)
        # _outcome checked that the run is in the history: only then do cursors advance.
        recorded = not any(error.startswith(NOT_SAVED) for error in outcome.errors)
        # A cursor another run took after its source succeeded (this run's process stopped
        # for longer than a claim lasts) stays that run's: this run says so, and fails.
        outcome.errors += await cursors.finish(recorded and outcome.run_id is not None)
    return outcome


async def _run_workflow(
    workflow: Workflow,
    request: str,
    db: BaseDb | HistoryOpening | None,
    listener: Listener | None,
    on_event: Callable[[Any], None] | None,
    executors: Executors | None,
) -> RunOutcome:
    # The request from the command line or HTTP: valid text, capped, before Agno stores it.
    request = valid_text(request, MAX_REQUEST_CHARS)
    LISTENER.set(listener)  # this run's tasks, and so its sources, inherit it
    EXECUTORS.set(executors)
    session_state: dict[str, Any] = {}
    step_results: Sequence[StepOutput | list[StepOutput]] = []
    run_id: str | None = None
    # A session id of our own while the history opens: Agno looks it up as the run starts,
    # and the HistoryOpening answers that no such session is stored without waiting.
    session_id = db.new_session_id() if isinstance(db, HistoryOpening) else None
    with run_root():  # its own trace, when tracing is on (tracing.py)
        if on_event is None:
            output = await workflow.arun(
                input=request, session_state=session_state, session_id=session_id
            )
            step_results, run_id, session_id = (
                output.step_results,
                output.run_id,
                output.session_id,
            )
        else:
            async for event in workflow.arun(
                input=request,
                session_state=session_state,
                session_id=session_id,
                stream=True,
                stream_events=True,
            ):
                on_event(event)
                if isinstance(event, WorkflowCompletedEvent):
                    step_results, run_id, session_id = (
                        event.step_results,
                        event.run_id,
                        event.session_id,
                    )
    return _outcome(step_results, session_state, run_id, session_id, db)


def _outcome(
    step_results: Sequence[StepOutput | list[StepOutput]],
    session_state: dict[str, Any],
    run_id: str | None,
    session_id: str | None,
    db: BaseDb | HistoryOpening | None,
) -> RunOutcome:
    # Agno marks a failed top-level step (e.g. the Report Agent's model) but does not raise.
    steps = [step for step in step_results if isinstance(step, StepOutput)]
    errors = [f"{step.step_name} failed: {step.error}" for step in steps if not step.success]
    stored = session_state.get("aggregation")
    aggregation = Aggregation.model_validate(stored) if stored is not None else None
    if aggregation is None:
        errors.append("the run produced no aggregation")
    # Agno logs a failed save (e.g. no rights to create its tables) and carries on.
    unopened = db.failure() if isinstance(db, HistoryOpening) else None
    if unopened is not None:  # HistoryError: one line that says why
        errors.append(f"{NOT_SAVED}: {unopened}")
    elif db is not None and (run_id is None or db.get_run(run_id) is None):
        from parallel_workflow_runtime._store.history_db import StoresEachFactOnce

        failed = None
        history = opened(db)
        if isinstance(history, StoresEachFactOnce):  # the history's own adapters say why
            failed = history.failed_writes().pop(str(session_id), None)
        errors.append(NOT_SAVED if failed is None else f"{NOT_SAVED}: {failed}")
    report = next((step for step in steps if step.step_name == REPORT_STEP), None)
    return RunOutcome(
        aggregation=aggregation,
        report=str(report.content) if report is not None and report.success else None,
        errors=errors,
        run_id=run_id,
        session_id=session_id,
    )
