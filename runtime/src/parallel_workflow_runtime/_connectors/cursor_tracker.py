"""A source's cursor as a read moves it (`CursorTracker`): the highest value of its cursor
field among the rows read, and the keys of the rows at that value, within MAX_CURSOR_KEYS; the
lines that say what is wrong with its values (`CursorWords`: a row without one, values of
different types, too many rows at one value); and a cursor value as the history keeps it
(`encoded`, `decoded`) and as a table shows it (`shown`).
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from parallel_workflow_runtime._connectors.read_context import Notes, Row
from parallel_workflow_runtime._core.results import SourceError


class FileCursorLike(Protocol):
    """What a row tracker asks of a file source's cursor (files.FileCursor)."""

    def state(self) -> dict[str, Any] | None: ...


NAIVE_AND_AWARE = "datetimes with and without a time zone"

# The most keys a cursor keeps of the items at its last value: about 350 KB of JSON, which
# every run rewrites. More items than that at one value (200,000 rows of one day, say, kept
# 7.2 MB at 0.8.0): the cursor keeps none, and the next read starts after that value
# (CursorTracker.state says so in a warning).
MAX_CURSOR_KEYS = 10_000


@dataclass(frozen=True)
class CursorWords:
    """How the lines about a source's cursor values name it and say what to do."""

    kind: str  # sql, http
    subject: str  # "the cursor column updated_at of table records"
    item: str  # "a row", "an item"
    missing_fix: str
    mixed_fix: str
    crowded_fix: str

    def missing(self) -> str:
        return (
            f"{self.kind}: {self.subject} has no value (null) in {self.item}: no run would read"
            f" it again, as a cursor only moves forward; {self.missing_fix}"
        )

    def mixed(self, which: str) -> str:
        """`which`: the types, "str and float", "datetimes with and without a time zone"."""
        return (
            f"{self.kind}: {self.subject} holds values of different types ({which}), which"
            f" cannot be ordered: {self.mixed_fix}"
        )

    def crowded(self, count: int, value: Any) -> str:
        return (
            f"{self.kind}: {count:,} {'rows' if self.item == 'a row' else 'items'} share the last"
            f" value of {self.subject}, {shown(encoded(value))}: the cursor keeps the keys of"
            f" {MAX_CURSOR_KEYS:,} at most, so the next run starts after that value and does"
            f" not read what comes later with that same value; {self.crowded_fix} avoids it"
        )


class CursorTracker:
    """A source's cursor: the highest value of its cursor field among what was read, and the
    keys of the items at that value.

    Reads start at the last value, included (rows that share it may have come since), and skip
    the items already read at it: nothing is read twice, nothing is skipped. Past
    MAX_CURSOR_KEYS items at one value, the cursor keeps no keys but `after`: the next read
    starts after that value. None as the field: the source keeps no cursor, every run reads
    everything.

    A row without a value (None, NaN) fails the source when `words` are given (sql, http): a
    cursor only moves forward, so no later run would read it. Values that cannot be compared
    (text and numbers) fail it too, except datetimes with and without a time zone against the
    start, which is taken as UTC.
    """

    def __init__(
        self,
        field: str | None,
        start: dict[str, Any] | None,
        initial_value: Any,
        key: Callable[[Any], str] | None = None,
        inner: FileCursorLike | None = None,
        words: CursorWords | None = None,
        notes: Notes | None = None,
    ) -> None:
        self.field = field
        self.plain = field is not None and "." not in field  # a column: no path to follow
        self.start = start
        self.start_value = decoded(start["value"]) if start else initial_value
        self.start_seen = set(start.get("seen", ())) if start else set()
        # Every item at the start value was read (there were too many to keep their keys).
        self.start_after = bool(start.get("after")) if start else False
        self.key = key or row_key
        self.inner = inner  # a file source's (files.FileCursor): over its files
        self.words = words
        self.notes = notes if notes is not None else Notes()
        self.high: Any = None
        # The items at the highest value so far: their keys are only worked out at the end,
        # for those still at the highest (a hash per row read would double a read's cost).
        # Not past MAX_CURSOR_KEYS: then only how many (memory stays flat).
        self.high_items: list[Any] = []
        self.high_count = 0
        # Whether the datetimes of the rows were with a time zone (True) or without (False)
        # when the kept keys were worked out, if the column's type changed since (None: not).
        self.keyed_as_aware: bool | None = None

    def since(self) -> Any:
        return self.start_value

    def align(self, aware: bool | None) -> None:
        """The start value as a datetime with a time zone (UTC) if `aware`, without (in UTC)
        if not aware, as the cursor column's values now are; None: as it is."""
        start = self.start_value
        if aware is not None and isinstance(start, datetime.datetime):
            self.start_value = as_aware(start, aware)
            if (start.tzinfo is None) == aware:
                self.keyed_as_aware = not aware

    def admitted(self, items: list[Any]) -> list[Any]:
        """The new items of a chunk; they move the cursor. The same as `admit` on each item,
        but a chunk of plain values all past the start is looked at whole: a table's million
        rows then cost a lookup each, and not a call."""
        if not self.plain or not items:
            return [item for item in items if self.admit(item)]
        field = self.field
        try:
            values = [item.get(field) for item in items]
            if None in values:
                return [item for item in items if self.admit(item)]
            lowest, highest = min(values), max(values)
            if (
                highest != highest  # NaN: look at each
                or lowest != lowest
                or (self.start_value is not None and not lowest > self.start_value)
            ):
                return [item for item in items if self.admit(item)]
            below = self.high is not None and highest < self.high
            above = self.high is None or highest > self.high
        except (TypeError, AttributeError):  # values of different types, or not a mapping
            return [item for item in items if self.admit(item)]
        if below:
            return items
        if values.count(highest) == 1:  # the usual case, a column that grows: no loop of ours
            at_highest = [items[values.index(highest)]]
        else:
            at_highest = [
                item for item, value in zip(items, values, strict=True) if value == highest
            ]
        if above:
            self.high, self.high_items, self.high_count = highest, [], 0
        self._at_high(at_highest)
        return items

    def reached(self, highest: Any, count: int, items: Callable[[], list[Any]]) -> None:
        """A chunk admitted whole (all past the start, no value missing) whose highest value is
        `highest`, held by `count` of its items, which `items()` gives: the cursor moves as
        `admitted` moves it over the same items (reading.admitted_batch, for Arrow)."""
        if self.high is not None and highest < self.high:
            return
        if self.high is None or highest > self.high:
            self.high, self.high_items, self.high_count = highest, [], 0
        self.high_count += count
        if self.high_count <= MAX_CURSOR_KEYS:
            self.high_items += items()
        elif self.high_items:
            self.high_items = []

    def admit(self, item: Any) -> bool:
        """Whether `item` is new; it moves the cursor."""
        if self.field is None:
            return True
        value = item.get(self.field) if self.plain else cursor_value(item, self.field)
        if value is None or value != value:  # NaN, which is not equal to itself: no value
            if self.words is not None:
                raise SourceError(self.words.missing())
            return True
        try:
            return self._admit(item, value)
        except TypeError:
            if self._aligned_to(value):
                return self._admit(item, value)
            raise SourceError(self._mixed(value)) from None

    def _admit(self, item: Any, value: Any) -> bool:
        start = self.start_value
        if start is not None:
            if value < start:
                return False
            if value == start and (self.start_after or self._seen_at_start(item)):
                return False
        if self.high is None or value > self.high:
            self.high, self.high_items, self.high_count = value, [], 0
        elif value != self.high:
            return True
        self._at_high([item])
        return True

    def _at_high(self, items: list[Any]) -> None:
        self.high_count += len(items)
        if self.high_count <= MAX_CURSOR_KEYS:
            self.high_items += items
        elif self.high_items:
            self.high_items = []  # too many to keep: their count is enough

    def _aligned_to(self, value: Any) -> bool:
        """The start value made comparable with `value` if they are a datetime with a time
        zone and one without (the column's type changed since the cursor was kept)."""
        start = self.start_value
        if (
            isinstance(value, datetime.datetime)
            and isinstance(start, datetime.datetime)
            and (value.tzinfo is None) != (start.tzinfo is None)
        ):
            self.start_value = as_aware(start, value.tzinfo is not None)
            self.keyed_as_aware = start.tzinfo is not None
            return True
        return False

    def _seen_at_start(self, item: Any) -> bool:
        """Whether `item`, at the start value, was read by the run that kept the cursor: its
        key is among those kept, worked out as that run did (if the column's type changed
        since, with its datetimes as they were then)."""
        if self.key(item) in self.start_seen:
            return True
        if self.keyed_as_aware is None or not isinstance(item, dict):
            return False
        then = {
            name: as_aware(value, self.keyed_as_aware)
            if isinstance(value, datetime.datetime)
            else value
            for name, value in item.items()
        }
        return self.key(then) in self.start_seen

    def _mixed(self, value: Any) -> str:
        """The line that says `value` cannot be compared with the start or the highest."""
        other = self.start_value
        try:
            _ = other is None or value < other
        except TypeError:
            pass
        else:
            other = self.high
        if isinstance(value, datetime.datetime) and isinstance(other, datetime.datetime):
            which = NAIVE_AND_AWARE
        else:
            which = f"{type(value).__name__} and {type(other).__name__}"
        if self.words is None:
            return f"the cursor {self.field} holds values of different types ({which})"
        return self.words.mixed(which)

    def state(self) -> dict[str, Any] | None:
        """The cursor after this read, as JSON (None: the source keeps no cursor)."""
        if self.inner is not None:
            return self.inner.state()
        if self.field is None:
            return None
        if self.high is None:
            return self.start
        at_start = self.start_value is not None and self.high == self.start_value
        count = self.high_count + (len(self.start_seen) if at_start else 0)
        if count > MAX_CURSOR_KEYS:
            if self.words is not None:
                self.notes.warn(self.words.crowded(count, self.high))
            return {"field": self.field, "value": encoded(self.high), "seen": [], "after": True}
        seen = [self.key(item) for item in self.high_items]
        if at_start:
            seen = sorted(self.start_seen.union(seen))
        return {"field": self.field, "value": encoded(self.high), "seen": seen}


def as_aware(value: datetime.datetime, aware: bool) -> datetime.datetime:
    """A datetime with a time zone (a naive one taken as UTC), or without (in UTC)."""
    if aware and value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC)
    if not aware and value.tzinfo is not None:
        return value.astimezone(datetime.UTC).replace(tzinfo=None)
    return value


def cursor_value(item: Any, path: str) -> Any:
    """The value at a dotted path of an item (`updated_at`, `meta.updated`)."""
    value = item
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def row_key(row: Row) -> str:
    """A row's identity for the cursor: a hash of its JSON."""
    text = json.dumps(row, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def encoded(value: Any) -> Any:
    """A cursor value as JSON that says its type, so that a timestamp comes back as one."""
    if isinstance(value, datetime.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"date": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    return value


def decoded(value: Any) -> Any:
    if isinstance(value, dict):
        if "datetime" in value:
            return datetime.datetime.fromisoformat(value["datetime"])
        if "date" in value:
            return datetime.date.fromisoformat(value["date"])
        if "decimal" in value:
            return decimal.Decimal(value["decimal"])
    return value


def shown(value: Any) -> Any:
    """A cursor value as a table or `--json` shows it."""
    value = decoded(value)
    if isinstance(value, datetime.date | decimal.Decimal):
        return str(value)
    return value
