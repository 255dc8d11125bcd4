"""What the rendered `run(source, rows)` of a connector source does until its user writes the
source's processing: a profile of the rows it received, row by row or a batch at a time."""

from __future__ import annotations

import datetime
import decimal
import math
from typing import TYPE_CHECKING, Any

from parallel_workflow_runtime._connectors.connector_imports import arrow_module
from parallel_workflow_runtime._core.results import SourceSummary

if TYPE_CHECKING:
    import pyarrow  # type: ignore[import-untyped]


class RowProfile:
    """Counts the rows, the columns they have and the nulls in each (None, and NaN), and the
    lowest and the highest value of the cursor column: what a first look at a new source asks.

    Give it rows one by one (`add`) or Arrow record batches (`add_batch`, from
    `rows.batches()`): the summary is the same. (A batch has every column in every row: a row
    that lacks a key another row has counts as a null there in a batch, not in `add`.)"""

    def __init__(self, cursor: str | None = None) -> None:
        self.cursor = cursor
        self.records = 0
        self.nulls: dict[str, int] = {}  # by column, in the order the columns came
        self.lowest: Any = None
        self.highest: Any = None

    def add(self, row: dict[str, Any]) -> None:
        self.records += 1
        nulls = self.nulls
        for column, value in row.items():
            missing = value is None or (isinstance(value, float) and math.isnan(value))
            nulls[column] = nulls.get(column, 0) + missing
        value = row.get(self.cursor) if self.cursor is not None else None
        if value is not None and value == value:  # NaN is not equal to itself: no value
            self._reached(value, value)

    def add_batch(self, batch: pyarrow.RecordBatch) -> None:
        """A record batch's rows at once, with pyarrow.compute: no Python object per value."""
        arrow = arrow_module()
        compute = arrow.compute
        self.records += batch.num_rows
        nulls = self.nulls
        for column, values in zip(batch.schema.names, batch.columns, strict=True):
            missing = values.null_count
            if arrow.types.is_floating(values.type):
                missing += compute.is_nan(values).true_count
            nulls[column] = nulls.get(column, 0) + missing
        if self.cursor is None or self.cursor not in batch.schema.names:
            return
        values = batch.column(self.cursor)
        if arrow.types.is_floating(values.type):
            values = values.filter(compute.invert(compute.is_nan(values)))
        try:
            bounds = compute.min_max(values)
        except arrow.ArrowNotImplementedError:  # a type compute does not order: as rows do
            for value in values.to_pylist():
                if value is not None:
                    self._reached(value, value)
            return
        lowest, highest = bounds["min"].as_py(), bounds["max"].as_py()
        if lowest is not None:
            self._reached(lowest, highest)

    def _reached(self, lowest: Any, highest: Any) -> None:
        if self.lowest is None or lowest < self.lowest:
            self.lowest = lowest
        if self.highest is None or highest > self.highest:
            self.highest = highest

    def summary(self) -> SourceSummary:
        details: dict[str, Any] = {
            "columns": list(self.nulls),
            "nulls": {column: count for column, count in self.nulls.items() if count},
        }
        if self.cursor is not None and self.highest is not None:
            details["cursor"] = {
                "column": self.cursor,
                "lowest": as_json(self.lowest),
                "highest": as_json(self.highest),
            }
        return SourceSummary(records=self.records, details=details)


def as_json(value: Any) -> Any:
    """A cursor value as a JSON value: a timestamp as ISO 8601 text."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)
