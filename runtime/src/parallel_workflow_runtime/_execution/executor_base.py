"""What every executor is and shares: the `Executor` interface that executors.py chooses
from, the spec that says which one a source runs on, and the way a source's result comes
back as text from a worker process or a Dask worker (see process_pool.py, dask_cluster.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.results import (
    SourceError,
    SourceFunction,
    awaited,
    checked_summary,
    one_line,
)
from parallel_workflow_runtime._core.usage import ExecutorName
from parallel_workflow_runtime._observe.worker_spans import adopt, in_worker

POOLED = ("process", "dask")  # the executors with a pool or cluster to start and close


@dataclass(frozen=True)
class CallLimits:
    """What an executor needs to know besides the source: the checks on its summary, and
    where to send a warning about it."""

    max_details_bytes: int
    warn: Callable[[str], None]
    # Called by an executor that queues an attempt (a Dask cluster) when the attempt starts
    # to run: its timeout counts from then, not from when it was queued.
    started: Callable[[], None] = lambda: None
    # The attempt's span as a W3C traceparent (tracing.py), for an executor that runs the
    # source in another process: its spans there are children of it. "": not traced.
    traceparent: str = ""


class Executor:
    """Runs one attempt at a source somewhere and returns what its `run` returned."""

    # Whether `call` calls `limits.started()` when the attempt starts to run after waiting in
    # a queue of the executor's own: its timeout then counts from there.
    reports_start = False
    # Whether the source's code runs on the workflow's event loop (`async`), where it may
    # leave tasks and callbacks of its own behind; elsewhere (a thread, a process, a Dask
    # worker) it cannot schedule anything on that loop.
    runs_on_loop = False

    async def start(self) -> None:
        """Get ready (start a pool, reach a cluster); ExecutorError if it cannot."""

    def slot(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held while an attempt runs: a pool's free worker, so that the time an attempt is
        measured to take does not include its wait for one."""
        return contextlib.nullcontext()

    async def call(self, function: SourceFunction, source: Source, limits: CallLimits) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        """Stop whatever this executor started; nothing it ran keeps running."""


@dataclass(frozen=True)
class ExecutorSpec:
    """Which executor a source runs on, with the sizes a pool or cluster needs."""

    name: ExecutorName
    max_workers: int | None = None  # None: one per CPU
    threads_per_worker: int = 1  # a Dask LocalCluster's; enough for max_concurrency at once
    dask_address: str = ""

    @property
    def workers(self) -> int:
        return self.max_workers or os.cpu_count() or 1


# What a worker sends back: whether the source succeeded, its checked summary as JSON or its
# error, and the spans it made when traced (worker_spans.WorkerSpans' text, else "").
Outcome = tuple[bool, str, str]


def run_elsewhere(
    function: SourceFunction, source: Source, max_details_bytes: int, traceparent: str = ""
) -> Outcome:
    """Runs in a worker process: (True, the checked summary as JSON, spans) or (False, the
    error, spans).

    Only text travels back, so a summary or an exception that does not pickle fails only
    this source, and SystemExit stays in the worker.
    """
    with in_worker(traceparent, source) as spans:
        try:
            summary = function(source)
            if inspect.isawaitable(summary):
                summary = asyncio.run(awaited(summary))
            outcome = True, json.dumps(checked_summary(summary, max_details_bytes))
        except BaseException as error:
            outcome = False, one_line(error)
    return (*outcome, spans.text() if spans is not None else "")


async def run_elsewhere_async(
    function: SourceFunction, source: Source, max_details_bytes: int, traceparent: str = ""
) -> Outcome:
    """`run_elsewhere` for an `async def run` on Dask, which awaits it on the worker's own
    event loop rather than starting one per task."""
    with in_worker(traceparent, source) as spans:
        try:
            summary = function(source)
            if inspect.isawaitable(summary):
                summary = await summary
            outcome = True, json.dumps(checked_summary(summary, max_details_bytes))
        except BaseException as error:
            outcome = False, one_line(error)
    return (*outcome, spans.text() if spans is not None else "")


def settled(outcome: Outcome) -> Any:
    """What the source returned, or its SourceError; the spans it made go where this
    process's go."""
    succeeded, text, spans = outcome
    adopt(spans)
    if not succeeded:
        raise SourceError(text)
    return json.loads(text)
