"""Progress of a run's sources as it happens: events from execution.py, and a live table of them.

Whoever watches a run (the CLI) sets `LISTENER` before starting it. The sources run as
asyncio tasks, which inherit that setting, so each run reports to its own watcher and a run
nobody watches costs nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from rich.console import Group
from rich.table import Table
from rich.text import Text

from .config import Source

Stage = Literal["waiting", "running", "retrying", "ok", "failed", "timed_out"]

STYLES: dict[Stage, str] = {
    "waiting": "dim",
    "running": "cyan",
    "retrying": "yellow",
    "ok": "green",
    "failed": "red",
    "timed_out": "red",
}


@dataclass(frozen=True)
class SourceEvent:
    """A source started an attempt, is about to retry, or finished."""

    source: Source
    stage: Stage
    attempt: int
    seconds: float = 0.0  # time spent running it so far
    error: str | None = None


LISTENER: ContextVar[Callable[[SourceEvent], None] | None] = ContextVar(
    "source_progress_listener", default=None
)


def emit(event: SourceEvent) -> None:
    listener = LISTENER.get()
    if listener is not None:
        listener(event)


class ProgressTable:
    """The latest event of every source, rendered by rich (e.g. inside `rich.live.Live`)."""

    def __init__(self, sources: Iterable[Source]) -> None:
        self.latest = {source.id: SourceEvent(source, "waiting", 0) for source in sources}

    def __call__(self, event: SourceEvent) -> None:
        self.latest[event.source.id] = event

    def __rich__(self) -> Group:
        counts = Counter(event.stage for event in self.latest.values())
        summary = Text(" · ").join(
            Text(f"{counts[stage]} {stage.replace('_', ' ')}", style=style)
            for stage, style in STYLES.items()
            if counts[stage]
        )
        table = Table("source", "name", "status", "attempt", "seconds", "error")
        for event in self.latest.values():
            table.add_row(
                event.source.id,
                Text(event.source.name),
                Text(event.stage.replace("_", " "), style=STYLES[event.stage]),
                str(event.attempt or ""),
                f"{event.seconds:.2f}" if event.stage != "waiting" else "",
                Text(event.error or "", style="red"),
            )
        return Group(summary, table)
