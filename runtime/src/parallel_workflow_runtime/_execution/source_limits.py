"""The limits that SourceRunner (execution.py) applies to each source, the same on every
executor: how many sources run at once (ConcurrencyLimit, `max_concurrency`), how long an
attempt may take (SourceDeadline, `timeout_seconds`), and the pause before a retry
(backoff_seconds, `retry_backoff_seconds` up to `max_backoff_seconds`).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from weakref import WeakKeyDictionary

from parallel_workflow_runtime._execution.in_process import LoopHolds


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


class SourceDeadline:
    """A source's `timeout_seconds`, as `asyncio.timeout` applies it, except for the time
    another source held the event loop meanwhile (an `async def` that blocks it: see
    in_process.LoopHolds): then nothing on the loop moved, this source included, and only the
    source that held it may be timed out for it."""

    def __init__(self, source_id: str, seconds: float | None, started: bool = True) -> None:
        self.source_id = source_id
        self.seconds = seconds
        self.started = time.perf_counter()
        self.timeout = asyncio.timeout(None)
        self.check: asyncio.TimerHandle | None = None
        if started:
            self.start()

    def start(self) -> None:
        """Start the clock now (again, for an attempt that waited in a cluster's queue)."""
        self.close()
        self.started = time.perf_counter()
        if self.seconds is not None:
            self.check = asyncio.get_running_loop().call_later(self.seconds, self.expire_if_due)

    def remaining(self) -> float:
        assert self.seconds is not None
        excused = LoopHolds.of_running_loop().held_by_others(self.source_id, self.started)
        return self.seconds - (time.perf_counter() - self.started - excused)

    def expire_if_due(self) -> None:
        remaining = self.remaining()
        loop = asyncio.get_running_loop()
        if remaining <= 0:
            self.timeout.reschedule(loop.time())  # expire now: the attempt is cancelled
        else:
            self.check = loop.call_later(remaining, self.expire_if_due)

    def overrun(self) -> bool:
        """Whether the attempt, which has ended, took longer than its timeout."""
        return self.seconds is not None and self.remaining() < 0

    def close(self) -> None:
        if self.check is not None:
            self.check.cancel()


def backoff_seconds(first: float, attempt: int, ceiling: float = math.inf) -> float:
    """The pause after failed attempt number `attempt`: `first`, doubled for each retry so far
    but never above `ceiling`, less a random part of up to half, so that sources failing
    together do not retry together."""
    longest = min(first * 2.0 ** min(attempt - 1, 64), ceiling)
    return random.uniform(longest / 2, longest)
