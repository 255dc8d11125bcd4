"""The rows of a connector source as its `run(source, rows)` reads them (`Reading`, the `Rows`
it gets): one by one, or in Arrow batches (`rows.batches()`), the cursor moving the same way.

dlt yields a read's rows in chunks of three shapes: rows one at a time (a table on the
`sqlalchemy` backend), lists of rows (a query, an API's pages, CSV and JSON Lines files), or
whole tables (Arrow from the `pyarrow` and `connectorx` backends and Parquet files, pandas
DataFrames from `pandas`). Read one by one, a table's rows become dicts; read in batches,
rows become batches (`RecordBatch.from_pylist`) and Arrow stays as it is. Either way each
chunk is admitted past the cursor first: lists and rows by the tracker (cursor_tracker.py),
Arrow by `admitted_batch`, which looks at a batch whole (its lowest and highest cursor
value) and at its rows one by one only where the tracker must (rows at the start value, a
missing value, values that do not compare).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator
from typing import Any

from parallel_workflow_runtime._connectors.connector_imports import arrow_module
from parallel_workflow_runtime._connectors.cursor_tracker import CursorTracker
from parallel_workflow_runtime._connectors.read_context import (
    BATCH_ROWS,
    Chunks,
    Deadline,
    Row,
    Rows,
    frame_arrow,
    frame_rows,
    is_frame,
)
from parallel_workflow_runtime._core.results import SourceError

__all__ = ["Reading", "admitted_batch"]


class Reading(Rows):
    """The rows as `run(source, rows)` reads them: it notes whether they were all read
    (`exhausted`: only then does the cursor move), and stops a read that outlives the
    source's timeout, checked at each chunk (a thread cannot be stopped otherwise).

    A generator underneath, not a `__next__` per row: a million rows cost a million calls.
    `failed` says a read's error in one line (connectors.connector_error)."""

    def __init__(
        self,
        chunks: Chunks,
        tracker: CursorTracker,
        deadline: Deadline,
        failed: Callable[[Exception], str],
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        super().__init__((), batch_rows)
        self.exhausted = False
        self._chunks = chunks
        self._tracker = tracker
        self._deadline = deadline
        self._failed = failed

    def close(self) -> None:
        """Ends the read now, whether run() read every row or not: the generators underneath
        close their cursor, connection or file. Left to the garbage collector, a read that
        failed half-way (its frames held by the exception) kept its PostgreSQL connection
        idle in a transaction, whose lock blocked an ALTER TABLE until the process ended."""
        # Quietly: a failure to close must not take the place of the read's own error.
        for reader in (self._iterator, self._chunks):
            close = getattr(reader, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    def _read_rows(self) -> Generator[Row, None, None]:
        """Each new row. Per row, only what must be: the clock when there is a deadline, the
        cursor when there is one (a list's or a table's at once), and the `yield`."""
        tracker, deadline = self._tracker, self._deadline
        admit, admitted = tracker.admit, tracker.admitted
        keeps_cursor = tracker.field is not None
        at, clock = deadline.at, time.monotonic
        try:
            for item in self._chunks:
                if at is not None and clock() > at:
                    deadline.check()  # raises
                kind = item.__class__
                if kind is list:
                    yield from admitted(item) if keeps_cursor else item
                elif kind is dict or not is_frame(item):
                    if not keeps_cursor or admit(item):
                        yield item
                else:
                    rows = frame_rows(item)
                    yield from admitted(rows) if keeps_cursor else rows
        except (SourceError, GeneratorExit, KeyboardInterrupt, SystemExit):
            raise  # ours, run() closing the read early, Ctrl-C: not the read's failure
        except BaseException as error:  # the read failed (a Rust panic in ConnectorX too)
            raise SourceError(self._failed(failure(error))) from None
        self.exhausted = True

    def _read_batches(self) -> Generator[Any, None, None]:
        """The new rows in Arrow record batches: a table's as dlt's backend made them, rows
        gathered into batches of about `batch_rows`."""
        arrow = arrow_module()
        from_pylist = arrow.RecordBatch.from_pylist
        tracker, deadline = self._tracker, self._deadline
        admit, admitted = tracker.admit, tracker.admitted
        keeps_cursor = tracker.field is not None
        at, clock = deadline.at, time.monotonic
        size = self._batch_rows
        pending: list[Row] = []
        try:
            for item in self._chunks:
                if at is not None and clock() > at:
                    deadline.check()  # raises
                kind = item.__class__
                if kind is list:
                    pending += admitted(item) if keeps_cursor else item
                elif kind is dict or not is_frame(item):
                    if not keeps_cursor or admit(item):
                        pending.append(item)
                else:
                    if pending:  # the rows before this table, in their order
                        yield from_pylist(pending)
                        pending = []
                    for batch in batches_of(frame_arrow(item)):
                        admitted_rows = admitted_batch(tracker, batch) if keeps_cursor else batch
                        if admitted_rows.num_rows:
                            yield admitted_rows
                    continue
                if len(pending) >= size:
                    yield from_pylist(pending)
                    pending = []
            if pending:
                yield from_pylist(pending)
        except (SourceError, GeneratorExit, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as error:
            raise SourceError(self._failed(failure(error))) from None
        self.exhausted = True


def failure(error: BaseException) -> Exception:
    """A read's error, to be said in one line: any Exception, and the PanicException of a
    Rust library (connectorx's, on a value of another type than its column's first), which
    Python takes for a BaseException and would end the thread, the process or the server
    with; anything else that is not an Exception (GeneratorExit when run() stops reading,
    KeyboardInterrupt) goes on as it is."""
    if isinstance(error, Exception):
        return error
    if type(error).__name__ == "PanicException":
        return PanicException(str(error))
    raise error


class PanicException(Exception):
    """A Rust library's panic (pyo3's PanicException), as an Exception."""


def batches_of(table: Any) -> list[Any]:
    """An Arrow table's record batches (a record batch: itself)."""
    if hasattr(table, "to_batches"):
        return table.to_batches()
    return [table]


def admitted_batch(tracker: CursorTracker, batch: Any) -> Any:
    """The new rows of an Arrow record batch, the cursor moved as `tracker.admitted` moves it
    over the same rows as dicts. A batch whose cursor values are all present and past the
    start is looked at whole: its lowest and highest value, and its rows at the highest (the
    cursor keeps their keys). Any other, row by row, as the tracker does."""
    field = tracker.field
    assert field is not None
    if not tracker.plain or field not in batch.schema.names or not batch.num_rows:
        return admitted_by_rows(tracker, batch)
    arrow = arrow_module()
    compute = arrow.compute
    column = batch.column(field)
    try:
        if column.null_count or (
            arrow.types.is_floating(column.type) and compute.any(compute.is_nan(column)).as_py()
        ):
            return admitted_by_rows(tracker, batch)  # which fails on the missing value
        bounds = compute.min_max(column)
        lowest, highest = bounds["min"].as_py(), bounds["max"].as_py()
        start = tracker.start_value
        if start is not None and not lowest > start:
            return admitted_by_rows(tracker, batch)  # rows at the start: some read already
        if tracker.high is not None and highest < tracker.high:
            return batch
        at_highest = compute.equal(column, bounds["max"])
        count = compute.sum(at_highest).as_py()
    except Exception:  # values that do not compare, a type compute cannot order
        return admitted_by_rows(tracker, batch)
    tracker.reached(highest, count, lambda: batch.filter(at_highest).to_pylist())
    return batch


def admitted_by_rows(tracker: CursorTracker, batch: Any) -> Any:
    rows = tracker.admitted(batch.to_pylist())
    if len(rows) == batch.num_rows:
        return batch
    return arrow_module().RecordBatch.from_pylist(rows, schema=batch.schema)
