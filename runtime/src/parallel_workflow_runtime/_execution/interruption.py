"""A run's Ctrl-C, as the sources see it: whoever runs the workflow (running.py) sets the
run's Interruption, and each source's task watches it while it runs (execution.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any


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
