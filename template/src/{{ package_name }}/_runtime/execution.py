"""How each source runs: at most `max_concurrency` at once, every attempt bounded by its
`timeout_seconds`, and a failure retried `retries` times after an exponential, jittered pause.

The workflow runs with Agno's `arun`, every source as an asyncio task. An `async def run` is
awaited in that task. A plain `def run` runs in a thread of its own, so that its blocking calls
never hold up the other sources, and a daemon thread, so that one still stuck after its
timeout cannot keep the process from exiting.

Whatever a source does, only that source fails: an exception of any kind (`SystemExit` and
`KeyboardInterrupt` raised by its code included), a summary that is not one, details that are
not strict JSON or larger than `max_details_bytes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from .config import Source
from .progress import SourceEvent, emit
from .results import SourceFunction, SourceResult, SourceState, SourceSummary


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


class Interruption:
    """A run's Ctrl-C: `interrupt()` stops the sources still running, which then report
    themselves CANCELLED, so that the run ends with the results it has and is recorded."""

    def __init__(self) -> None:
        self.interrupted = False
        self._running: set[asyncio.Task[Any]] = set()

    def interrupt(self) -> None:
        self.interrupted = True
        for task in self._running:
            task.cancel()

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """While inside, the current task is stopped by `interrupt()`."""
        task = asyncio.current_task()
        assert task is not None
        if self.interrupted:
            task.cancel()
        self._running.add(task)
        try:
            yield
        finally:
            self._running.discard(task)


# The run's Interruption, set by whoever runs the workflow; the sources' tasks inherit it.
INTERRUPTION: ContextVar[Interruption | None] = ContextVar("run_interruption", default=None)


class SourceError(Exception):
    """A source failed; the message is already the one line to report."""


@dataclass(frozen=True)
class Attempt:
    """How one attempt at a source ended."""

    state: SourceState
    summary: SourceSummary | None = None
    error: str | None = None


class SourceRunner:
    """Runs the sources of one workflow under its limits; shared by all its parallel branches."""

    def __init__(self, max_concurrency: int, max_details_bytes: int) -> None:
        self.limit = ConcurrencyLimit(max_concurrency)
        self.max_details_bytes = max_details_bytes

    async def run(self, source: Source, function: SourceFunction) -> SourceResult:
        """Run one source under its limits and return how it went; it never raises, not
        even when the run is interrupted: the source is then CANCELLED."""
        interruption = INTERRUPTION.get() or Interruption()
        started = time.perf_counter()
        try:
            with interruption.watching():
                return await self._run(source, function)
        except asyncio.CancelledError:
            if not interruption.interrupted:
                raise  # cancelled by someone else (Agno, a closing server): not ours to keep
            seconds = time.perf_counter() - started
            emit(SourceEvent(source, SourceState.CANCELLED, 0, seconds, "interrupted"))
            return SourceResult.failure(
                source, "interrupted", status=SourceState.CANCELLED, attempts=0, seconds=seconds
            )

    async def _run(self, source: Source, function: SourceFunction) -> SourceResult:
        seconds = 0.0
        attempt = 0
        while True:
            attempt += 1
            async with self.limit.slot():
                emit(SourceEvent(source, SourceState.RUNNING, attempt, seconds))
                started = time.perf_counter()
                outcome = await self._attempt(source, function)
                seconds += time.perf_counter() - started
            if outcome.summary is not None:
                emit(SourceEvent(source, SourceState.OK, attempt, seconds))
                return SourceResult(
                    id=source.id,
                    name=source.name,
                    records=outcome.summary["records"],
                    seconds=round(seconds, 3),
                    attempts=attempt,
                    details=outcome.summary.get("details", {}),
                )
            error = outcome.error or "failed"
            if attempt > source.limits.retries:
                emit(SourceEvent(source, outcome.state, attempt, seconds, error))
                return SourceResult.failure(
                    source, error, status=outcome.state, attempts=attempt, seconds=seconds
                )
            emit(SourceEvent(source, SourceState.RETRYING, attempt, seconds, error))
            # The slot is free while we wait, so that other sources can use it.
            limits = source.limits
            await asyncio.sleep(
                backoff_seconds(limits.retry_backoff_seconds, attempt, limits.max_backoff_seconds)
            )

    async def _attempt(self, source: Source, function: SourceFunction) -> Attempt:
        deadline = asyncio.timeout(source.limits.timeout_seconds)
        try:
            async with deadline:
                summary = await call_source(function, source)
            return Attempt(SourceState.OK, summary=self.checked(summary))
        except TimeoutError as error:
            if deadline.expired():
                timeout = f"timed out after {source.limits.timeout_seconds:g} s"
                return Attempt(SourceState.TIMED_OUT, error=timeout)
            return Attempt(SourceState.FAILED, error=one_line(error))  # its own TimeoutError
        except asyncio.CancelledError:
            raise  # the run itself is being cancelled (Ctrl-C): not this source's failure
        except BaseException as error:
            return Attempt(SourceState.FAILED, error=one_line(error))

    def checked(self, summary: Any) -> SourceSummary:
        """What a source returned, checked: a record count and strict-JSON details."""
        if not isinstance(summary, dict):
            raise SourceError(f"run() must return a SourceSummary, got {type(summary).__name__}")
        records = summary.get("records")
        if isinstance(records, bool) or not isinstance(records, int) or records < 0:
            raise SourceError(f"records must be a whole number >= 0, got {records!r}")
        details = summary.get("details", {})
        if not isinstance(details, dict):
            raise SourceError(f"details must be a mapping, got {type(details).__name__}")
        try:
            text = json.dumps(details, allow_nan=False)
        except ValueError:
            raise SourceError("details must be JSON: NaN and Infinity are not") from None
        except TypeError as error:
            raise SourceError(f"details must be JSON: {error}") from None
        size = len(text.encode())
        if size > self.max_details_bytes:
            raise SourceError(
                f"details are {size:,} bytes as JSON, more than max_details_bytes "
                f"({self.max_details_bytes:,})"
            )
        return SourceSummary(records=records, details=details)


def backoff_seconds(first: float, attempt: int, ceiling: float = math.inf) -> float:
    """The pause after failed attempt number `attempt`: `first`, doubled for each retry so far
    but never above `ceiling`, less a random part of up to half, so that sources failing
    together do not retry together."""
    longest = min(first * 2.0 ** min(attempt - 1, 64), ceiling)
    return random.uniform(longest / 2, longest)


async def call_source(function: SourceFunction, source: Source) -> Any:
    """Await an `async def run`, or run a plain one in a thread of its own."""
    if inspect.iscoroutinefunction(function):
        return await function(source)
    return await in_own_thread(function, source)


def in_own_thread(function: Callable[[Source], Any], source: Source) -> asyncio.Future[Any]:
    """Call `function(source)` in a new daemon thread; the future gets its result, or a
    SourceError whatever it raised (a `SystemExit` or `StopIteration` cannot travel to the
    event loop as itself: the first would end the program, the second cannot be set on a
    future at all).

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
            settle(future.set_exception, SourceError(one_line(error)))
        else:
            settle(future.set_result, result)

    threading.Thread(target=work, name=f"source-{source.id}", daemon=True).start()
    return future


def one_line(error: BaseException) -> str:
    """`Type: message` on one line, whatever the exception said: it goes into tables,
    reports and logs. A SourceError's message is already that line."""
    if isinstance(error, SourceError):
        return " ".join(str(error).split())
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return " ".join(text.split())
