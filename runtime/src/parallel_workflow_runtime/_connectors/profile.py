"""What the rendered `run(source, rows)` of a connector source does until its user writes the
source's processing: a profile of the rows it received."""

from __future__ import annotations

import datetime
import decimal
import math
from typing import Any

from parallel_workflow_runtime._core.results import SourceSummary


class RowProfile:
    """Counts the rows, the columns they have and the nulls in each, and the lowest and the
    highest value of the cursor column: what a first look at a new source asks."""

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
        if value is not None:
            if self.lowest is None or value < self.lowest:
                self.lowest = value
            if self.highest is None or value > self.highest:
                self.highest = value

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
