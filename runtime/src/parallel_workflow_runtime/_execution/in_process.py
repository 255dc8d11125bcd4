"""The executors that need nothing started: `thread` (a thread to itself per attempt, for
blocking code, from threads reused across sources and runs) and `async` (awaited on the
workflow's event loop, each step timed so that a source that blocks the loop is named)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import inspect
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, ClassVar
from weakref import WeakKeyDictionary

from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.results import SourceError, SourceFunction, awaited, one_line
from parallel_workflow_runtime._execution.executor_base import CallLimits, Executor

# An `async def run` that holds the event loop this long in one go (e.g. `time.sleep` in it)
# stops every other source meanwhile: it is named in a warning and in its result.
BLOCKING_SECONDS = 0.25


class ThreadExecutor(Executor):
    async def call(self, function: SourceFunction, source: Source, limits: CallLimits) -> Any:
        if inspect.iscoroutinefunction(function):
            # An async def on `thread`: an event loop of its own in that thread.
            return await in_own_thread(
                lambda source: asyncio.run(awaited(function(source))), source
            )
        return await in_own_thread(function, source)


class AsyncExecutor(Executor):
    runs_on_loop = True

    async def call(self, function: SourceFunction, source: Source, limits: CallLimits) -> Any:
        coroutine = function(source)
        if not inspect.isawaitable(coroutine):
            raise SourceError("executor async needs an async def run; use executor thread")
        return await LoopWatch(coroutine, limits.warn, source.id)


class LoopWatch:
    """Awaits an `async def run` one step at a time, timing each step: a step is the code
    between two awaits, during which no other source on the event loop can run."""

    def __init__(
        self, coroutine: Awaitable[Any], warn: Callable[[str], None], source_id: str
    ) -> None:
        self.coroutine: Coroutine[Any, Any, Any] = awaited(coroutine)
        self.warn = warn
        self.source_id = source_id
        self.longest = 0.0

    def __await__(self) -> Generator[Any, Any, Any]:
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            started = time.perf_counter()
            try:
                if thrown is None:
                    waiting_on = self.coroutine.send(sent)
                else:
                    waiting_on = self.coroutine.throw(thrown)
            except StopIteration as finished:
                self.timed(started)
                return finished.value
            self.timed(started)
            try:
                sent, thrown = (yield waiting_on), None
            except BaseException as error:  # e.g. the timeout's cancellation: pass it on
                sent, thrown = None, error

    def timed(self, started: float) -> None:
        ended = time.perf_counter()
        held = ended - started
        if held >= HOLD_NOTED_SECONDS:
            LoopHolds.of_running_loop().note(self.source_id, started, ended)
        if held >= BLOCKING_SECONDS and held > self.longest:
            self.longest = held
            self.warn(
                f"blocked the event loop for {held:.2f} s in one go, holding up every other "
                "source: blocking code belongs in a plain def run (or executor: thread)"
            )


# A hold of the loop shorter than this is not noted: it delays no timeout that matters.
HOLD_NOTED_SECONDS = 0.01


class LoopHolds:
    """The times an `async def run` held an event loop in one go, by source, for the
    timeouts of the others: while one source holds the loop, no other source's attempt can
    make progress or even notice it is done, so that time is not counted against them."""

    KEPT: ClassVar[int] = 1000  # the most recent holds: an attempt is short next to them
    _of_loop: ClassVar[WeakKeyDictionary[asyncio.AbstractEventLoop, LoopHolds]] = (
        WeakKeyDictionary()
    )

    def __init__(self) -> None:
        self.holds: collections.deque[tuple[str, float, float]] = collections.deque(
            maxlen=self.KEPT
        )

    @classmethod
    def of_running_loop(cls) -> LoopHolds:
        loop = asyncio.get_running_loop()
        if loop not in cls._of_loop:
            cls._of_loop[loop] = cls()
        return cls._of_loop[loop]

    def note(self, source_id: str, started: float, ended: float) -> None:
        self.holds.append((source_id, started, ended))

    def held_by_others(self, source_id: str, since: float) -> float:
        """Seconds since `since` (a `time.perf_counter()`) that sources other than
        `source_id` held the loop."""
        return sum(
            ended - max(started, since)
            for holder, started, ended in self.holds
            if holder != source_id and ended > since
        )


def in_own_thread(function: Callable[[Source], Any], source: Source) -> asyncio.Future[Any]:
    """Call `function(source)` in a thread that runs nothing else meanwhile; the future gets
    its result, or a SourceError whatever it raised (a `SystemExit` or `StopIteration`
    cannot travel to the event loop as itself: the first would end the program, the second
    cannot be set on a future at all).

    Not `asyncio.to_thread`: its pool has a fixed number of threads, which hung sources would
    use up, and the interpreter waits for them at exit. SOURCE_THREADS starts a daemon thread
    whenever none is free. Python cannot stop a thread: one still stuck after its timeout
    runs on until it returns or the program ends (use `process`), and is not reused till then.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    inbox = Inbox.of_running_loop()

    def settle(outcome: Callable[[Any], None], value: Any) -> None:
        def apply() -> None:
            if not future.done():  # a timeout may have cancelled it
                outcome(value)

        inbox.put(apply)

    # The thread runs the source in this task's context, as asyncio.to_thread would: the
    # attempt's span (tracing.py) is the current one there, for the spans the source makes.
    context = contextvars.copy_context()

    def work() -> None:
        try:
            result = context.run(function, source)
        except BaseException as error:
            settle(future.set_exception, SourceError(one_line(error)))
        else:
            settle(future.set_result, result)

    SOURCE_THREADS.submit(work)
    return future


class Inbox:
    """What the source threads hand to one event loop: the outcomes that arrive while the
    loop has not yet taken the earlier ones go with them, on one wake-up of the loop, instead
    of one wake-up (a write to its pipe, a turn of the loop) each: 200 sources that end
    together wake it a few times, not 200."""

    _of_loop: ClassVar[WeakKeyDictionary[asyncio.AbstractEventLoop, Inbox]] = WeakKeyDictionary()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.calls: list[Callable[[], None]] = []

    @classmethod
    def of_running_loop(cls) -> Inbox:
        """The running loop's (made on the loop's own thread, as LoopHolds' are)."""
        loop = asyncio.get_running_loop()
        if loop not in cls._of_loop:
            cls._of_loop[loop] = cls(loop)
        return cls._of_loop[loop]

    def put(self, call: Callable[[], None]) -> None:
        """From any thread: `call` runs on the loop, soon."""
        with self.lock:
            self.calls.append(call)
            if len(self.calls) > 1:
                return  # the loop is already called to take them all
        # RuntimeError: the run is over and its event loop closed; nobody waits for this now.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.take)

    def take(self) -> None:
        with self.lock:
            calls, self.calls = self.calls, []
        for call in calls:
            call()


class SourceThreads:
    """Daemon threads for the sources on `thread`, reused from one source and one run to the
    next: starting a thread per source cost more than the rest of the engine's work for it.

    A call goes to a free thread, or to a new one when every thread is busy (a stuck source's
    thread stays busy until it returns), so there are as many threads as sources running at
    once at most. A thread left with nothing to do for IDLE_SECONDS ends.
    """

    IDLE_SECONDS = 30.0

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        # Threads waiting for a call that no call has claimed yet. A call claims one before
        # it is queued, so a thread that stops waiting with none unclaimed must take a call.
        self._free = 0

    @property
    def free(self) -> int:
        """How many threads wait for a call now."""
        return self._free

    def submit(self, call: Callable[[], None]) -> None:
        with self._lock:
            if self._free:
                self._free -= 1
                self._calls.put(call)
                return
        threading.Thread(target=self._serve, args=(call,), name="source", daemon=True).start()

    def _serve(self, call: Callable[[], None]) -> None:
        while True:
            call()
            del call  # its source's data goes now, not when the next call comes
            with self._lock:
                self._free += 1
            try:
                call = self._calls.get(timeout=self.IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._free:
                        self._free -= 1
                        return
                call = self._calls.get()  # claimed as this thread gave up: it is on its way


SOURCE_THREADS = SourceThreads()
