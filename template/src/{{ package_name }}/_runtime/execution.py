"""How each source runs: at most `max_concurrency` at once, every attempt bounded by its
`timeout_seconds`, and a failure retried `retries` times after an exponential, jittered pause.

The workflow runs with Agno's `arun`, every source as an asyncio task. An `async def
process_source` is awaited in that task. A plain `def process_source` runs in a thread of its
own, so that its blocking calls never hold up the other sources, and a daemon thread, so that
one still stuck after its timeout cannot keep the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import random
import threading
import time
from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from .config import Source
from .progress import SourceEvent, emit
from .results import ProcessSource, SourceResult, SourceSummary, Status


class ConcurrencyLimit:
    """At most `limit` sources at once, counted per event loop (each `asyncio.run` has its own)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            WeakKeyDictionary()
        )

    def slot(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop not in self._slots:
            self._slots[loop] = asyncio.Semaphore(self.limit)
        return self._slots[loop]


async def run_source(
    source: Source, process_source: ProcessSource, limit: ConcurrencyLimit
) -> SourceResult:
    """Run one source under its limits and return how it went; it never raises."""
    seconds = 0.0
    attempt = 0
    while True:
        attempt += 1
        async with limit.slot():
            emit(SourceEvent(source, "running", attempt, seconds))
            started = time.perf_counter()
            status, summary, error = await _attempt(source, process_source)
            seconds += time.perf_counter() - started
        if summary is not None:
            emit(SourceEvent(source, "ok", attempt, seconds))
            return SourceResult(
                id=source.id,
                name=source.name,
                ok=True,
                records=summary["records"],
                seconds=round(seconds, 3),
                attempts=attempt,
                details=summary.get("details", {}),
            )
        if attempt > source.limits.retries:
            emit(SourceEvent(source, status, attempt, seconds, error))
            return SourceResult(
                id=source.id,
                name=source.name,
                ok=False,
                records=0,
                seconds=round(seconds, 3),
                status=status,
                attempts=attempt,
                error=error,
            )
        emit(SourceEvent(source, "retrying", attempt, seconds, error))
        # The slot is free while we wait, so that other sources can use it.
        await asyncio.sleep(backoff_seconds(source.limits.retry_backoff_seconds, attempt))


def backoff_seconds(first: float, attempt: int) -> float:
    """The pause after failed attempt number `attempt`: `first`, doubled for each retry so far,
    less a random part of up to half, so that sources failing together do not retry together."""
    ceiling = first * 2 ** (attempt - 1)
    return random.uniform(ceiling / 2, ceiling)


async def _attempt(
    source: Source, process_source: ProcessSource
) -> tuple[Status, SourceSummary | None, str | None]:
    deadline = asyncio.timeout(source.limits.timeout_seconds)
    try:
        async with deadline:
            summary = await call_source(process_source, source)
        return "ok", _checked(summary), None
    except TimeoutError as error:
        if deadline.expired():
            return "timed_out", None, f"timed out after {source.limits.timeout_seconds:g} s"
        return "failed", None, _one_line(error)  # the source's own TimeoutError
    except Exception as error:  # one failing source must not take the others down
        return "failed", None, _one_line(error)


async def call_source(process_source: ProcessSource, source: Source) -> Any:
    """Await an `async def process_source`, or run a plain one in a thread of its own."""
    if inspect.iscoroutinefunction(process_source):
        summary: SourceSummary = await process_source(source)
        return summary
    return await in_own_thread(process_source, source)


def in_own_thread(function: Callable[[Source], Any], source: Source) -> asyncio.Future[Any]:
    """Call `function(source)` in a new daemon thread; the future gets its result or error.

    Not `asyncio.to_thread`: its pool has a fixed number of threads, which hung sources would
    use up, and the interpreter waits for them at exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Callable[[Any], None], value: Any) -> None:
        def apply() -> None:
            if not future.done():  # a timeout may have cancelled it
                outcome(value)

        # RuntimeError: the run is over and its event loop closed; nobody waits for this now.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(apply)

    def work() -> None:
        try:
            result = function(source)
        except BaseException as error:
            settle(future.set_exception, error)
        else:
            settle(future.set_result, result)

    threading.Thread(target=work, name=f"source-{source.id}", daemon=True).start()
    return future


def _checked(summary: Any) -> SourceSummary:
    """What `process_source` returned, checked: a record count and JSON-ready details."""
    details = dict(summary.get("details", {}))
    json.dumps(details)  # details travel as JSON: refuse what cannot, as this source's error
    return SourceSummary(records=int(summary["records"]), details=details)


def _one_line(error: BaseException) -> str:
    # One line, whatever the exception said: it goes into tables, reports and logs.
    return " ".join(f"{type(error).__name__}: {error}".split())
