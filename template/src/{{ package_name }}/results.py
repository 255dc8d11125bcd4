"""What one source returns, how its run is timed and how the results add up."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NotRequired, TypedDict

from .config import Source


class SourceSummary(TypedDict):
    """What a source's `process_source` returns."""

    records: int  # how many records the source processed
    details: NotRequired[dict[str, Any]]  # anything else worth reporting; must be JSON-ready


ProcessSource = Callable[[Source], SourceSummary]


@dataclass(frozen=True)
class SourceResult:
    """The outcome of one source in one run."""

    id: str
    name: str
    ok: bool
    records: int
    seconds: float
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


def run_source(source: Source, process_source: ProcessSource) -> SourceResult:
    """Run one source's code, timing it; an exception becomes a failed result, never a crash."""
    started = time.perf_counter()
    try:
        summary = process_source(source)
        records = int(summary["records"])
        details = dict(summary.get("details", {}))
        json.dumps(details)  # details travel as JSON: refuse what cannot, as this source's error
    except Exception as error:  # one failing source must not take the others down
        return SourceResult(
            id=source.id,
            name=source.name,
            ok=False,
            records=0,
            seconds=round(time.perf_counter() - started, 3),
            # One line, whatever the exception said: it goes into tables, reports and logs.
            error=" ".join(f"{type(error).__name__}: {error}".split()),
        )
    return SourceResult(
        id=source.id,
        name=source.name,
        ok=True,
        records=records,
        seconds=round(time.perf_counter() - started, 3),
        details=details,
    )


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
