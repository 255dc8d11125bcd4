"""The `run(source, rows)` functions of the connector tests: at module level, so that a worker
process or a Dask worker imports them by name."""

from __future__ import annotations

import os
from typing import Any

from parallel_workflow_runtime import Rows, Source, SourceSummary

MAX_KEYS = 5_000


def collect(source: Source, rows: Rows) -> SourceSummary:
    """Every row's key (`id`, else `event_id`, else the whole row) and where it ran."""
    keys: list[Any] = []
    for row in rows:
        keys.append(row.get("id", row.get("event_id", str(sorted(row.items())))))
    return SourceSummary(records=len(keys), details={"keys": keys[:MAX_KEYS], "pid": os.getpid()})


def collect_batches(source: Source, rows: Rows) -> SourceSummary:
    """`collect` reading `rows.batches()`: every row's `id`, from each Arrow batch's column."""
    keys: list[Any] = []
    for batch in rows.batches():
        keys += batch.column("id").to_pylist()
    return SourceSummary(records=len(keys), details={"keys": keys[:MAX_KEYS], "pid": os.getpid()})


def first_batch_only(source: Source, rows: Rows) -> SourceSummary:
    """Stops after one batch: its cursor must not move past rows it never read."""
    first = next(rows.batches(), None)
    return SourceSummary(records=0 if first is None else first.num_rows)


def fail_after_reading(source: Source, rows: Rows) -> SourceSummary:
    """Reads every row, then fails: its cursor must not move."""
    count = sum(1 for _ in rows)
    raise RuntimeError(f"processing failed after {count} rows")


def fail_after_first_row(source: Source, rows: Rows) -> SourceSummary:
    """Reads one row and fails: the read must end there, its connection closed."""
    next(iter(rows), None)
    raise RuntimeError("processing failed at the first row")


def first_row_only(source: Source, rows: Rows) -> SourceSummary:
    """Stops after one row: its cursor must not move past rows it never read."""
    first = next(iter(rows), None)
    return SourceSummary(records=0 if first is None else 1)


def count(source: Source, rows: Rows) -> SourceSummary:
    """Counts the rows and nothing else: the bench's consumer, the least work per row."""
    return SourceSummary(records=sum(1 for _ in rows))
