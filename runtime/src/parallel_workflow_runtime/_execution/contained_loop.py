"""The event loop that runs a workflow: what a source leaves running on it is contained.

A source's `run` may start tasks and callbacks of its own (`loop.create_task(...)`,
`loop.call_soon(...)`) that outlive the call. On a plain asyncio loop, one of them raising
`SystemExit` or `KeyboardInterrupt` ends `asyncio.run`, so the whole command (or the server)
exits, and one raising anything else prints a traceback when the task is forgotten. Here both
are contained and blamed on the source that started them: during its attempt, the attempt
fails with that error; afterwards, it is one warning line naming the source.

How: the runner marks each attempt with a `SourceScope` in a context variable. Tasks and
callbacks inherit the context they were created in, so the loop can tell a source's own from
the rest when it schedules them (`call_soon`, `call_at`, which tasks use too) and when a task
fails unseen (the exception handler).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from parallel_workflow_runtime._core.results import one_line
from parallel_workflow_runtime._execution.interruption import INTERRUPTION

log = logging.getLogger("parallel_workflow_runtime")
T = TypeVar("T")


@dataclass
class SourceScope:
    """One attempt at a source, for whatever it starts on the loop: `incidents` are the
    errors that escaped its tasks and callbacks, `finished` is set once the attempt is over."""

    source_id: str
    incidents: list[str] = field(default_factory=list)
    finished: bool = False
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)  # those it created

    def blame_failed_tasks(self) -> None:
        """Blame the tasks it created that have failed by now, unseen: asyncio would only say
        so when one is destroyed, whenever the garbage collector gets to it."""
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                error = task.exception()  # which also tells asyncio it was seen
                assert error is not None
                self.blame(f"a task or callback it started raised {one_line(error)}")
        self.tasks = [task for task in self.tasks if not task.done()]

    def blame(self, what: str) -> None:
        if what in self.incidents:  # a task's error: when it escaped, then when forgotten
            return
        self.incidents.append(what)
        if self.finished:
            log.warning("source %s: %s, after its run had returned", self.source_id, what)


# The attempt under way in this context: set by the runner (execution.py) around each attempt.
CURRENT_SOURCE: contextvars.ContextVar[SourceScope | None] = contextvars.ContextVar(
    "current_source", default=None
)


class SourceTask(asyncio.Task[Any]):
    """A task created while a source's attempt was current, with that attempt. (Not a weak
    mapping from tasks: a forgotten task's failure is reported as it is destroyed, when weak
    references to it are already gone.)"""

    source_scope: SourceScope | None = None


class ContainedLoop(asyncio.SelectorEventLoop):
    """asyncio's own loop on POSIX, with a source's tasks and callbacks contained."""

    def __init__(self) -> None:
        super().__init__()
        self.set_task_factory(scoped_task)
        self.set_exception_handler(blame_unseen_failure)

    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        scope = scope_of(context)
        if scope is None:
            return super().call_soon(callback, *args, context=context)
        return super().call_soon(guarded, scope, callback, *args, context=context)

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        scope = scope_of(context)
        if scope is None:
            return super().call_at(when, callback, *args, context=context)
        return super().call_at(when, guarded, scope, callback, *args, context=context)


def scope_of(context: contextvars.Context | None) -> SourceScope | None:
    """The attempt whose code a callback to run in `context` (by default, the current one)
    belongs to."""
    if context is None:
        return CURRENT_SOURCE.get()
    return context.get(CURRENT_SOURCE)


def guarded(scope: SourceScope, callback: Callable[..., object], *args: Any) -> None:
    """Run a source's callback (or a step of one of its tasks); `SystemExit` and
    `KeyboardInterrupt` from it are blamed on the source instead of ending the loop."""
    try:
        callback(*args)
    except (SystemExit, KeyboardInterrupt) as error:
        interruption = INTERRUPTION.get()
        if isinstance(error, KeyboardInterrupt) and interruption and interruption.interrupted:
            # After the first Ctrl-C, SIGINT raises KeyboardInterrupt wherever the program
            # is: the user's second Ctrl-C, which stops everything at once.
            raise
        scope.blame(f"a task or callback it started raised {one_line(error)}")


def scoped_task(
    loop: asyncio.AbstractEventLoop, coroutine: Any, **options: Any
) -> asyncio.Task[Any]:
    """The loop's task factory: a task as asyncio makes it, noted with the source whose
    attempt created it, if any."""
    scope = CURRENT_SOURCE.get()
    if scope is None:
        return asyncio.Task(coroutine, loop=loop, **options)
    task = SourceTask(coroutine, loop=loop, **options)
    task.source_scope = scope
    scope.tasks.append(task)
    return task


def blame_unseen_failure(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's exception handler: a source's forgotten task that failed is one line naming
    the source; anything else goes to asyncio's own handler."""
    scope = getattr(context.get("future") or context.get("task"), "source_scope", None)
    error = context.get("exception")
    if scope is None or error is None:
        loop.default_exception_handler(context)
        return
    scope.blame(f"a task or callback it started raised {one_line(error)}")


def new_loop() -> asyncio.AbstractEventLoop:
    """A loop for `asyncio.Runner(loop_factory=...)`."""
    return ContainedLoop()


class LoopThread:
    """A contained loop in a thread of its own, for the server's runs: an `async def run`
    that blocks its loop holds up the runs, as it would on the command line, but not the
    server, which goes on answering (`/health` among the rest) on its own loop."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def started(self) -> asyncio.AbstractEventLoop:
        with self.lock:
            if self.loop is None:
                self.loop = new_loop()
                self.thread = threading.Thread(
                    target=self.loop.run_forever, name=self.name, daemon=True
                )
                self.thread.start()
            return self.loop

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await `coroutine` on this thread's loop; cancelling this cancels it there."""
        return await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(coroutine, self.started())
        )

    def stop(self) -> None:
        with self.lock:
            loop, thread, self.loop, self.thread = self.loop, self.thread, None, None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()
