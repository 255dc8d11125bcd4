"""Sources for the tracing and schedule tests (test_tracing.py, test_schedule_serve.py),
importable by name from a worker process or a Dask worker (`tests.traced_sources`), each
making a span of its own as a user's code would, with OpenTelemetry's API alone."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from opentelemetry import trace

from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.results import SourceSummary

tracer = trace.get_tracer("tests.traced_sources")


def flaky(source: Source) -> SourceSummary:
    """Fails its first attempt of a run, succeeds at its second."""
    marker = Path(source.settings["marker"])
    if not marker.exists():
        marker.touch()
        raise ConnectionError("the database went away")
    with tracer.start_as_current_span("flaky query"):
        return SourceSummary(records=3)


def hangs(source: Source) -> SourceSummary:
    time.sleep(30)
    return SourceSummary(records=0)


def crunches(source: Source) -> SourceSummary:
    """CPU work in a span of its own, wherever it runs: a worker process or a Dask worker."""
    with tracer.start_as_current_span("crunching", attributes={"worker.pid": os.getpid()}):
        total = sum(number * number for number in range(20_000))
    return SourceSummary(records=total % 7 + 1)


async def awaits(source: Source) -> SourceSummary:
    with tracer.start_as_current_span("awaiting the API"):
        await asyncio.sleep(0.01)
    return SourceSummary(records=5)


def many_spans(source: Source) -> SourceSummary:
    """A source that makes far more spans than a run keeps."""
    for number in range(int(source.settings["spans"])):
        with tracer.start_as_current_span("tiny", attributes={"number": number}):
            pass
    return SourceSummary(records=1)


def naps(source: Source) -> SourceSummary:
    """A run of a known length, for the schedule tests."""
    time.sleep(float(source.settings["seconds"]))
    return SourceSummary(records=1)


def holds(source: Source) -> SourceSummary:
    """Says it started (its marker), then holds on until the run is stopped (Ctrl-C)."""
    Path(source.settings["marker"]).touch()
    with tracer.start_as_current_span("holding on"):
        time.sleep(60)
    return SourceSummary(records=1)
