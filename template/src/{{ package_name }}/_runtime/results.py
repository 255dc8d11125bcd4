"""What one source returns, what its run came to, and how the results add up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

from .config import Source


class SourceSummary(TypedDict):
    """What a source's `process_source` returns."""

    records: int  # how many records the source processed
    details: NotRequired[dict[str, Any]]  # anything else worth reporting; must be JSON-ready


# A source's `process_source`: a plain function (run in a thread of its own) or a coroutine.
ProcessSource = Callable[[Source], SourceSummary] | Callable[[Source], Awaitable[SourceSummary]]

Status = Literal["ok", "failed", "timed_out"]


@dataclass(frozen=True)
class SourceResult:
    """The outcome of one source in one run."""

    id: str
    name: str
    ok: bool
    records: int
    seconds: float  # time spent running it, over all attempts (not waiting for a slot)
    status: Status = "ok"
    attempts: int = 1
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Aggregation(TypedDict):
    """The merged results of a run: the CLI's `--json` output is built from this."""

    workflow_id: str
    workflow_name: str
    request: str
    sources: list[dict[str, Any]]
    total_sources: int
    total_records: int
    failed: list[str]
    wall_seconds: float
    sequential_seconds: float
    time_saved_seconds: float
    efficiency_percent: float


def aggregate(
    workflow_id: str,
    workflow_name: str,
    request: str,
    results: Sequence[SourceResult],
    wall_seconds: float,
) -> Aggregation:
    """Merge the per-source results; `time_saved_seconds` compares with running them one by one."""
    sequential_seconds = sum(result.seconds for result in results)
    time_saved = max(sequential_seconds - wall_seconds, 0.0)
    return Aggregation(
        workflow_id=workflow_id,
        workflow_name=workflow_name,
        request=request,
        sources=[asdict(result) for result in results],
        total_sources=len(results),
        total_records=sum(result.records for result in results),
        failed=[result.id for result in results if not result.ok],
        wall_seconds=round(wall_seconds, 3),
        sequential_seconds=round(sequential_seconds, 3),
        time_saved_seconds=round(time_saved, 3),
        efficiency_percent=round(100 * time_saved / sequential_seconds, 1)
        if sequential_seconds
        else 0.0,
    )
