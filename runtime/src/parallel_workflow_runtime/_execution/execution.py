"""How each source runs: at most `max_concurrency` at once, every attempt bounded by its
`timeout_seconds`, and a failure retried `retries` times after an exponential, jittered pause.

The workflow runs with Agno's `arun`, every source as an asyncio task, which hands each
attempt to the source's executor (executors.py): a thread of its own, the event loop, a
worker process or a Dask cluster. The limits (source_limits.py) are applied here, the same on
every executor.

Whatever a source does, only that source fails: an exception of any kind (`SystemExit` and
`KeyboardInterrupt` raised by its code included), a summary that is not one, details that are
not strict JSON or larger than `max_details_bytes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from parallel_workflow_runtime._connectors.connector_imports import imported_once
from parallel_workflow_runtime._connectors.connectors import ConnectorRun
from parallel_workflow_runtime._connectors.cursor_tracker import shown
from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.connector_config import cursor_of
from parallel_workflow_runtime._core.results import (
    SourceError,
    SourceFunction,
    SourceResult,
    SourceState,
    SourceSummary,
    checked_summary,
    one_line,
)
from parallel_workflow_runtime._core.usage import ExecutorError
from parallel_workflow_runtime._execution.contained_loop import CURRENT_SOURCE, SourceScope
from parallel_workflow_runtime._execution.executor_base import CallLimits, Executor, ExecutorSpec
from parallel_workflow_runtime._execution.executors import EXECUTORS, Executors
from parallel_workflow_runtime._execution.interruption import INTERRUPTION, Interruption
from parallel_workflow_runtime._execution.progress import SourceEvent, emit
from parallel_workflow_runtime._execution.source_clock import Clock
from parallel_workflow_runtime._execution.source_limits import (
    ConcurrencyLimit,
    SourceDeadline,
    backoff_seconds,
)
from parallel_workflow_runtime._observe.tracing import attempt_span
from parallel_workflow_runtime._store.cursor_session import CURSORS, CursorWaitTimedOut, wait_limit

log = logging.getLogger("parallel_workflow_runtime")

# The executors that run a source in this process, where its connector's imports can be done
# before its attempt starts; a worker process or a Dask worker imports them in its attempt.
IN_PROCESS = ("thread", "async")


@dataclass(frozen=True)
class Attempt:
    """How one attempt at a source ended."""

    state: SourceState
    summary: SourceSummary | None = None
    error: str | None = None


class SourceRunner:
    """Runs the sources of one workflow under its limits; shared by all its parallel branches.

    `sources`: all the workflow's sources, of which a run claims the cursors together
    (cursors.py: one by one, two runs could each hold one and wait for the other for ever)."""

    def __init__(
        self, max_concurrency: int, max_details_bytes: int, sources: Sequence[Source]
    ) -> None:
        self.limit = ConcurrencyLimit(max_concurrency)
        self.max_details_bytes = max_details_bytes
        self.cursor_group = frozenset(
            source.id for source in sources if cursor_of(source.connector) is not None
        )
        # Executors of the runs nobody opened a scope for, by run id, with their users.
        self.own_scopes: dict[str, tuple[Executors, int]] = {}

    async def run(
        self,
        source: Source,
        function: SourceFunction,
        spec: ExecutorSpec,
        run_id: str = "",
        origin: float | None = None,
    ) -> SourceResult:
        """Run one source under its limits and return how it went; it never raises, not
        even when the run is interrupted: the source is then CANCELLED. Its timing is in
        seconds after `origin`, the parallel block's start (by default, now)."""
        interruption = INTERRUPTION.get() or Interruption()
        clock = Clock(time.perf_counter() if origin is None else origin)
        warnings: list[str] = []
        started = time.perf_counter()
        try:
            with interruption.watching():
                if isinstance(function, ConnectorRun):
                    function = await self.ready_to_read(source, function, spec, run_id, clock)
                scope = EXECUTORS.get()  # the one that whoever runs the workflow opened
                if scope is not None:
                    return await self._run(source, function, spec, scope, warnings, clock)
                async with self.own_executors(run_id) as executors:
                    return await self._run(source, function, spec, executors, warnings, clock)
        except asyncio.CancelledError:
            if not interruption.interrupted:
                raise  # cancelled by someone else (Agno, a closing server): not ours to keep
            seconds = time.perf_counter() - started
            clock.end_attempt(SourceState.CANCELLED)
            emit(SourceEvent(source, SourceState.CANCELLED, 0, seconds, "interrupted"))
            return SourceResult.failure(
                source,
                "interrupted",
                status=SourceState.CANCELLED,
                attempts=0,
                seconds=seconds,
                warnings=warnings,
                timing=clock.timing(),
            )
        except CursorWaitTimedOut as error:  # another run held its cursor all that time
            clock.end_waiting()
            emit(SourceEvent(source, SourceState.TIMED_OUT, 0, 0.0, str(error)))
            return SourceResult.failure(
                source,
                str(error),
                status=SourceState.TIMED_OUT,
                attempts=0,
                warnings=warnings,
                timing=clock.timing(),
            )
        except ExecutorError as error:  # e.g. the cluster went away between two runs
            return SourceResult.failure(
                source, one_line(error), attempts=0, warnings=warnings, timing=clock.timing()
            )

    async def ready_to_read(
        self, source: Source, function: ConnectorRun, spec: ExecutorSpec, run_id: str, clock: Clock
    ) -> ConnectorRun:
        """The connector, from its cursor (from_cursor); on `thread` and `async`, with dlt,
        pandas and pyarrow imported meanwhile (once per process, connector_imports.py),
        before its first attempt and outside its timeout: seconds of a first import on a busy
        machine (7 s seen) are not its read's. A missing package is said by the attempt."""
        if spec.name not in IN_PROCESS:
            return await self.from_cursor(source, function, run_id, clock)
        importing = asyncio.ensure_future(asyncio.to_thread(imported_once, source.kind))
        # Its SourceError, when the wait ended first, is not "never retrieved" on stderr.
        importing.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            function = await self.from_cursor(source, function, run_id, clock)
            with contextlib.suppress(SourceError):
                await asyncio.shield(importing)
        finally:
            if not importing.done():
                importing.cancel()  # the import goes on in its thread; the wait does not
        return function

    async def from_cursor(
        self, source: Source, function: ConnectorRun, run_id: str, clock: Clock
    ) -> ConnectorRun:
        """The connector, reading from the source's cursor, which this run now holds: without
        a history, from its initial value. While another run holds it (or another of this
        run's cursors, which are claimed together), it waits: for any one run at most its
        timeout_seconds but never less than a claim lasts (cursor_session.wait_limit), then
        CursorWaitTimedOut. That wait is counted in its `waited_seconds`.

        Whether that cursor is still this source's (the same target, the same column) is the
        connector's to say, where it reads (connectors.resumed)."""
        cursors = CURSORS.get()
        if cursors is None or cursor_of(source.connector) is None:
            return function
        clock.begin_waiting()
        state = await cursors.claim(
            source.id, run_id, self.cursor_group, wait_limit(source.limits.timeout_seconds)
        )
        # Only a wait for another run counts: taking a free claim is no wait.
        clock.end_waiting(counted=cursors.contended)
        return function.starting_at(state)

    async def cursor_taken(self, source: Source, function: SourceFunction) -> str | None:
        """Why this run no longer holds the connector source's cursor: another run took it
        (this run's claim was not renewed for as long as a claim lasts). None while it does."""
        cursors = CURSORS.get()
        if cursors is None or not isinstance(function, ConnectorRun):
            return None
        return await cursors.taken_from_it(source.id)

    @contextlib.asynccontextmanager
    async def own_executors(self, run_id: str) -> AsyncIterator[Executors]:
        """The Executors of a run that nobody opened a scope for: its own, shared by its
        sources, closed when the last of them is done."""
        scope, users = self.own_scopes.get(run_id, (Executors(), 0))
        self.own_scopes[run_id] = (scope, users + 1)
        try:
            yield scope
        finally:
            scope, users = self.own_scopes.pop(run_id)
            if users > 1:
                self.own_scopes[run_id] = (scope, users - 1)
            else:
                await scope.close()

    async def _run(
        self,
        source: Source,
        function: SourceFunction,
        spec: ExecutorSpec,
        executors: Executors,
        warnings: list[str],
        clock: Clock,
    ) -> SourceResult:
        def warn(warning: str) -> None:
            log.warning("source %s %s", source.id, warning)
            warnings.append(warning)

        call_limits = CallLimits(self.max_details_bytes, warn)
        seconds = 0.0
        attempt = 0
        while True:
            attempt += 1
            # No retry reads rows that another run, which took the cursor meanwhile, reads.
            taken = await self.cursor_taken(source, function) if attempt > 1 else None
            if taken is not None:
                emit(SourceEvent(source, SourceState.FAILED, attempt - 1, seconds, taken))
                return SourceResult.failure(
                    source,
                    taken,
                    attempts=attempt - 1,
                    seconds=seconds,
                    warnings=warnings,
                    timing=clock.timing(),
                )
            clock.begin_waiting()
            async with self.limit.slot():
                executor = await executors.get(spec)
                async with executor.slot():
                    clock.begin_attempt()
                    emit(SourceEvent(source, SourceState.RUNNING, attempt, seconds))
                    started = time.perf_counter()
                    # Its span, when tracing is on (tracing.py): current while it runs.
                    with attempt_span(source, attempt, spec.name, clock.attempt_wait()) as trace:
                        outcome = await self._attempt(
                            source, function, executor, call_limits, trace.traceparent()
                        )
                        records = outcome.summary["records"] if outcome.summary else None
                        trace.ended(outcome.state, records, outcome.error)
                    seconds += time.perf_counter() - started
                    clock.end_attempt(outcome.state)
            if outcome.summary is not None:
                # Its claim was taken while it read: what it read is not kept, nor its cursor.
                taken = await self.cursor_taken(source, function)
                if taken is not None:
                    emit(SourceEvent(source, SourceState.FAILED, attempt, seconds, taken))
                    return SourceResult.failure(
                        source,
                        taken,
                        attempts=attempt,
                        seconds=seconds,
                        warnings=warnings,
                        timing=clock.timing(),
                    )
                emit(SourceEvent(source, SourceState.OK, attempt, seconds))
                cursor = self.reached(source, function, outcome.summary)
                return SourceResult.success(
                    source, outcome.summary, attempt, seconds, warnings, clock.timing(), cursor
                )
            error = outcome.error or "failed"
            if attempt > source.limits.retries:
                emit(SourceEvent(source, outcome.state, attempt, seconds, error))
                return SourceResult.failure(
                    source,
                    error,
                    status=outcome.state,
                    attempts=attempt,
                    seconds=seconds,
                    warnings=warnings,
                    timing=clock.timing(),
                )
            emit(SourceEvent(source, SourceState.RETRYING, attempt, seconds, error))
            # The slot is free while we wait, so that other sources can use it.
            limits = source.limits
            await asyncio.sleep(
                backoff_seconds(limits.retry_backoff_seconds, attempt, limits.max_backoff_seconds)
            )

    def reached(self, source: Source, function: SourceFunction, summary: SourceSummary) -> Any:
        """A connector's cursor after its successful read: noted for the run to keep once it
        is recorded; its value, as the result shows it."""
        if not isinstance(function, ConnectorRun):
            return None
        state = summary.pop("cursor", None)
        cursors = CURSORS.get()
        if cursors is not None and source.id in cursors.held:
            cursors.reach(source.id, state)
        return None if state is None else shown(state["value"])

    async def _attempt(
        self,
        source: Source,
        function: SourceFunction,
        executor: Executor,
        limits: CallLimits,
        traceparent: str = "",
    ) -> Attempt:
        timeout = source.limits.timeout_seconds
        # On an executor that queues the attempt (Dask), its clock starts when it starts.
        deadline = SourceDeadline(source.id, timeout, started=not executor.reports_start)
        # What the source starts on the event loop is blamed on it (contained_loop.py).
        scope = SourceScope(source.id)
        token = CURRENT_SOURCE.set(scope)
        try:
            async with deadline.timeout:
                summary = await executor.call(
                    function,
                    source,
                    dataclasses.replace(limits, started=deadline.start, traceparent=traceparent),
                )
                if executor.runs_on_loop:
                    # A turn of the loop, for the callbacks it scheduled before it returned.
                    await asyncio.sleep(0)
                    scope.blame_failed_tasks()
            checked = checked_summary(summary, self.max_details_bytes)
        except TimeoutError as error:
            if deadline.timeout.expired():
                return Attempt(SourceState.TIMED_OUT, error=f"timed out after {timeout:g} s")
            return Attempt(SourceState.FAILED, error=one_line(error))  # its own TimeoutError
        except asyncio.CancelledError:
            raise  # the run itself is being cancelled (Ctrl-C): not this source's failure
        except BaseException as error:
            return Attempt(SourceState.FAILED, error=one_line(error))
        finally:
            deadline.close()
            CURRENT_SOURCE.reset(token)
            scope.finished = True
        if scope.incidents:
            return Attempt(SourceState.FAILED, error=scope.incidents[0])
        # An async def that blocked the event loop past its deadline finished before the
        # timeout could stop it: it still took too long.
        if deadline.overrun():
            return Attempt(SourceState.TIMED_OUT, error=f"timed out after {timeout:g} s")
        return Attempt(SourceState.OK, summary=checked)
