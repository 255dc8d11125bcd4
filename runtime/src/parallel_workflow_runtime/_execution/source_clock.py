"""One source's timing as it runs, for the run's timeline: when it was queued, waited for its
cursor and for a slot, and started and ended each attempt."""

from __future__ import annotations

import time

from parallel_workflow_runtime._core.results import AttemptTiming, SourceState, SourceTiming


class Clock:
    """One source's timing as it runs: offsets in seconds after `origin`, the start of the
    parallel block, so that the sources of a run share one time axis."""

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.queued = self.now()
        self.attempts: list[AttemptTiming] = []
        self.waited = 0.0
        self.waiting_since: float | None = None
        self.attempt_queued: float | None = None  # when the attempt under way began waiting
        self.attempt_started: float | None = None

    def now(self) -> float:
        return time.perf_counter() - self.origin

    def begin_waiting(self) -> None:
        self.waiting_since = self.now()

    def end_waiting(self, counted: bool = True) -> None:
        """A wait that no attempt follows at once: a connector source's for its cursor, which
        another run held (`counted`; taking a free one is no wait). It is in `waited_seconds`,
        but not in the attempt's `queued`, which says when it began waiting for a slot: the
        timeline draws that wait alone."""
        if self.waiting_since is not None and counted:
            self.waited += self.now() - self.waiting_since
        self.waiting_since = None

    def begin_attempt(self) -> None:
        self.attempt_queued = self.waiting_since
        if self.waiting_since is not None:
            self.waited += self.now() - self.waiting_since
            self.waiting_since = None
        self.attempt_started = self.now()

    def attempt_wait(self) -> float:
        """Seconds the attempt under way waited for a slot before it started."""
        if self.attempt_queued is None or self.attempt_started is None:
            return 0.0
        return self.attempt_started - self.attempt_queued

    def end_attempt(self, state: SourceState) -> None:
        if self.attempt_started is not None:
            self.attempts.append(
                AttemptTiming(
                    started=round(self.attempt_started, 4),
                    ended=round(self.now(), 4),
                    state=state,
                    queued=None if self.attempt_queued is None else round(self.attempt_queued, 4),
                )
            )
            self.attempt_started = None

    def timing(self) -> SourceTiming:
        return SourceTiming(
            queued=round(self.queued, 4),
            attempts=list(self.attempts),
            finished=round(self.now(), 4),
            waited_seconds=round(self.waited, 4),
        )
