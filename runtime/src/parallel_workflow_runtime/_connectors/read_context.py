"""What every read of a connector source carries, whatever its kind: the `Target` it reads
(the database, API or folder its block names, or its bundled sample), the `Deadline` it must
end by, the `Notes` it makes besides its rows, and the `Secrets` no line of it may repeat; and
the shapes of the rows it hands on (`Row`, `Rows`, `Chunks`): `Rows` is what the user's
`run(source, rows)` gets, rows one by one or in Arrow batches (reading.py reads them).
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, quote_plus, urlsplit

from parallel_workflow_runtime._connectors.connector_imports import arrow_module
from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.masking import masked_text
from parallel_workflow_runtime._core.results import SourceError, SourceSummary

if TYPE_CHECKING:
    import pyarrow  # type: ignore[import-untyped]

Row = dict[str, Any]
# What dlt yields: lists of rows (a page, a batch of a table), rows, or whole chunks as Arrow
# tables or pandas DataFrames (sql.backend pyarrow, connectorx, pandas; Parquet files).
Chunks = Iterator[Any]
Way = Literal["rows", "batches"]
BATCH_ROWS = 10_000  # rows per batch when they come one by one (a test's, an API's items)


class Rows:
    """What `run(source, rows)` of a connector source receives: the rows read since the last
    run, to be read one of two ways, and read to the end (the cursor moves past them only
    then):

    - `for row in rows:` each row once, as a dict of plain Python values (int, float,
      Decimal, str, datetime, None), whatever the source's kind and sql.backend;
    - `for batch in rows.batches():` the same rows as `pyarrow.RecordBatch`es, a chunk of
      rows at a time, for vectorised work (pyarrow.compute, pandas, polars, DuckDB) without
      a Python object per value. Native Arrow where the source reads Arrow (Parquet files,
      sql.backend pyarrow or connectorx), else built from the rows' dicts.

    One way per run: after rows one by one, `batches()` raises, and the other way round.
    A test can make one from a list of dicts: `run(source, Rows([{"id": 1}]))`.
    """

    def __init__(self, rows: Iterable[Row] = (), batch_rows: int = BATCH_ROWS) -> None:
        self._given = rows
        self._batch_rows = batch_rows
        self._way: Way | None = None
        self._iterator: Iterator[Any] = iter(())

    def __iter__(self) -> Iterator[Row]:
        return self._opened("rows")

    def __next__(self) -> Row:
        return next(self._opened("rows"))

    def batches(self) -> Iterator[pyarrow.RecordBatch]:
        """The rows as Arrow record batches of about a chunk of rows each (sql.chunk_size,
        file.chunk_size; 10,000 for rows that come one by one), none empty."""
        return self._opened("batches")

    def _opened(self, way: Way) -> Iterator[Any]:
        if self._way is None:
            self._way = way
            self._iterator = self._read_rows() if way == "rows" else self._read_batches()
        elif self._way != way:
            first = "one by one" if self._way == "rows" else "as batches (rows.batches())"
            raise TypeError(f"these rows are read {first} already: read them one way only")
        return self._iterator

    def _read_rows(self) -> Iterator[Row]:
        return iter(self._given)

    def _read_batches(self) -> Iterator[pyarrow.RecordBatch]:
        arrow = arrow_module()
        chunk: list[Row] = []
        for row in self._given:
            chunk.append(row)
            if len(chunk) >= self._batch_rows:
                yield arrow.RecordBatch.from_pylist(chunk)
                chunk = []
        if chunk:
            yield arrow.RecordBatch.from_pylist(chunk)


@dataclass(frozen=True)
class Deadline:
    """When the current attempt must have finished (None: no limit), in this process's clock."""

    at: float | None
    timeout: float | None

    @classmethod
    def of(cls, source: Source) -> Deadline:
        timeout = source.limits.timeout_seconds
        return cls(None if timeout is None else time.monotonic() + timeout, timeout)

    def remaining(self, default: float) -> float:
        if self.at is None:
            return default
        return max(min(self.at - time.monotonic(), default), 0.1)

    def check(self) -> None:
        if self.at is not None and time.monotonic() > self.at:
            raise SourceError(f"timed out after {self.timeout:g} s")


@dataclass
class Notes:
    """What a read has to say besides its rows: `warnings`, lines for the source's result (the
    cursor kept fewer keys, credentials were withheld from a host), and `hints`, what a
    failure's line should add (why a host may have refused the request)."""

    warnings: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    def warn(self, line: str) -> None:
        if line not in self.warnings:
            self.warnings.append(line)

    def hint(self, line: str) -> None:
        if line not in self.hints:
            self.hints.append(line)

    def failed(self, message: str) -> str:
        """A failure's line, with the hints that explain it."""
        return "".join([message, *(f" ({hint})" for hint in self.hints)])


@dataclass
class Secrets:
    """The secrets a connector read from the environment: no line that leaves the source (an
    error, a warning, run()'s details) repeats them, in any encoding a request gives them:
    percent-encoded in a URL (quote and quote_plus, either case of hex), and HTTP Basic
    credentials as base64."""

    values: list[str] = field(default_factory=list)
    _forms: list[str] | None = field(default=None, repr=False)

    def read(self, name: str, what: str) -> str:
        value = os.environ.get(name, "")
        if not value:
            raise SourceError(f"{what}: the environment variable {name} is not set")
        self.add(value)
        return value

    def add(self, value: str) -> None:
        if value and value not in self.values:
            self.values.append(value)
            self._forms = None

    def add_basic(self, username: str, password: str) -> None:
        """HTTP Basic credentials: the password, and the base64 of `username:password` that
        the Authorization header carries (an API that echoes headers shows it)."""
        self.add(password)
        self.add(basic_credentials(username, password).removeprefix("Basic "))

    def forms(self) -> list[str]:
        """Every form of every secret to scrub, the longest first (a secret may hold
        another)."""
        if self._forms is None:
            forms: set[str] = set()
            for value in self.values:
                encoded = {quote(value, safe=""), quote(value), quote_plus(value)}
                # Hex digits in lower case too: an API may re-encode what it was sent.
                encoded |= {PERCENT.sub(lambda m: m[0].lower(), form) for form in encoded}
                forms |= {value, *encoded}
            self._forms = sorted(forms, key=len, reverse=True)
        return self._forms

    def scrubbed(self, text: str) -> str:
        text = masked_text(text)
        for form in self.forms():
            text = text.replace(form, "***")
        return text

    def scrubbed_summary(self, summary: SourceSummary) -> SourceSummary:
        """run()'s summary with every string of its details scrubbed (run() may put an
        error's text there)."""
        if not self.values or not isinstance(summary.get("details"), dict):
            return summary
        return {**summary, "details": self._scrubbed_value(summary["details"])}

    def _scrubbed_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrubbed(value)
        if isinstance(value, dict):
            return {key: self._scrubbed_value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrubbed_value(item) for item in value]
        return value


PERCENT = re.compile(r"%[0-9A-F]{2}")


def basic_credentials(username: str, password: str) -> str:
    """The Authorization header of HTTP Basic auth, as dlt's HttpBasicAuth makes it (UTF-8)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@dataclass(frozen=True)
class Target:
    """What a connector source reads this time, worked out from the environment where it
    reads: the database, API or folder its block names, or its bundled sample.

    `identity` is kept with the cursor the read reaches, and names the target in messages;
    `note` is the line that says a sample is read; `location` is what the connector opens
    (sql: the SQLAlchemy URL, a secret; file: the folder or URL; http: None)."""

    identity: str
    where: str  # the identity's first part: the URL, the sample, the endpoint, the folder
    note: str | None = None
    sample: Path | None = None
    location: str | None = field(default=None, repr=False)

    def kept(self, state: dict[str, Any] | None) -> dict[str, Any] | None:
        """A cursor state as the history keeps it: with this target's identity."""
        return None if state is None else {**state, "target": self.identity}


def without_user_info(url: str) -> str:
    """A URL without the user name and password it may carry (https://user:secret@host/)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def flattened(chunks: Iterable[Any]) -> Iterator[Row]:
    """Rows one by one from what a dlt resource yields: pages and batches as lists, Arrow
    tables and DataFrames, or rows."""
    for chunk in chunks:
        if isinstance(chunk, list):
            yield from chunk
        elif is_frame(chunk):
            yield from frame_rows(chunk)
        else:
            yield chunk


def is_frame(item: Any) -> bool:
    """Whether dlt yielded `item` as a whole chunk of rows: an Arrow table or record batch, or
    a pandas DataFrame (by its class's module: neither library is imported to tell)."""
    return type(item).__module__.startswith(("pyarrow", "pandas"))


def frame_rows(frame: Any) -> list[Row]:
    """The rows of an Arrow table or batch, or of a DataFrame, as dicts of Python values: the
    same values as the `sqlalchemy` backend gives (datetime, not pandas' Timestamp; None for
    a missing value)."""
    return frame_arrow(frame).to_pylist()


def frame_arrow(frame: Any) -> Any:
    """An Arrow table or batch as it is; a DataFrame as an Arrow table (without its index)."""
    if type(frame).__module__.startswith("pandas"):
        return arrow_module().Table.from_pandas(frame, preserve_index=False)
    return frame
