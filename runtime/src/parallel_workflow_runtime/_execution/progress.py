"""Progress of a run's sources as it happens: execution.py emits events, a watcher receives them.

Whoever watches a run (the CLI's live table) sets `LISTENER` before starting it. The sources
run as asyncio tasks, which inherit that setting, so each run reports to its own watcher and
a run nobody watches costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.results import SourceState


@dataclass(frozen=True)
class SourceEvent:
    """A source started an attempt, is about to retry, or finished."""

    source: Source
    state: SourceState
    attempt: int
    seconds: float = 0.0  # time spent running it so far
    error: str | None = None


Listener = Callable[[SourceEvent], None]

LISTENER: ContextVar[Listener | None] = ContextVar("source_progress_listener", default=None)


def emit(event: SourceEvent) -> None:
    listener = LISTENER.get()
    if listener is not None:
        listener(event)
