"""The connector kinds: dlt reads a source's rows (`sql`, `http`, `file`) and hands them to the
`run(source, rows)` of its module, which does the processing.

A connector source's step calls a `ConnectorRun` where a `python` source's calls its `run`:
a plain object (it pickles by reference to a worker process or a Dask worker), carrying the
cursor the run starts from. It reads where the source runs, with the secrets of that place's
environment, and returns the summary with the cursor it reached, which the runner keeps in the
history once the run is recorded (cursors.py).

What it reads is its `Target`, worked out where it reads: a bundled sample until the block is
configured (`sql`'s sqlite_file while url_env is unset, `http`'s sample_file while the auth's
variable is unset), else the database, API or folder the block names. The cursor is kept with
the target's identity: a cursor of another target is not applied to this one (the read starts
again, and says why).

dlt is imported when a connector first reads, not before (connector_imports.py): it takes
two seconds to import, and a project of `python` sources never needs it.

`probe` and `environment_variables` are for the `check` command: they reach a source's target
without reading its rows, and list the environment variables its block names.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import decimal
import functools
import hashlib
import inspect
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, quote_plus, urlsplit

from parallel_workflow_runtime._connectors.connector_imports import (
    EXTRAS,
    dlt_module,
    imported_once,
)
from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.connector_config import (
    ConnectorBlock,
    FileBlock,
    HttpBlock,
    SqlBlock,
    cursor_of,
    secret_variable,
)
from parallel_workflow_runtime._core.masking import masked_text
from parallel_workflow_runtime._core.results import SourceError, SourceSummary, awaited

Row = dict[str, Any]
# What `run(source, rows)` of a connector source receives: each row once, as a dict.
Rows = Iterator[Row]
# What dlt yields: lists of rows (a page, a batch of a table), or rows.
Chunks = Iterator[Any]
ConnectorFunction = Callable[[Source, Rows], SourceSummary]

__all__ = ["EXTRAS", "ConnectorRun", "dlt_module", "environment_variables", "probe"]


@dataclass(frozen=True)
class ConnectorRun:
    """Reads a connector source's rows and calls its module's `run(source, rows)` with them.

    `start` is the cursor state this run starts from (None: the block's initial value), as
    the history keeps it: with the identity of the target it was reached on, which this read
    compares with its own before it starts from it.
    """

    function: ConnectorFunction
    start: dict[str, Any] | None = None

    def __call__(self, source: Source) -> SourceSummary:
        secrets = Secrets()
        notes = Notes()
        deadline = Deadline.of(source)
        failure: str | None = None
        try:
            # Before anything is read, in every thread and process: see connector_imports.py.
            imported_once(source.kind)
            # The target is worked out here, where the source reads, and not where the runner
            # claimed the cursor: only here is the environment the read's own (on a Dask
            # worker, the URL and the token may be set on the workers alone).
            target = target_of(source, secrets)
            start, reset = resumed(self.start, target, source)
            rows, tracker = open_rows(source, start, secrets, deadline, target, notes)
            reading = Reading(source, rows, tracker, deadline, secrets)
            try:
                summary = self.function(source, reading)
                if inspect.isawaitable(summary):  # an async def run: on a loop of its own
                    summary = asyncio.run(awaited(summary))
            finally:
                reading.close()
        except SourceError as error:  # the connector's, already one line
            failure = str(error)
        except Exception as error:  # the processing's: its own words, without a secret
            failure = uncut_line(error)
        if failure is not None:
            # Raised here, out of the `except`: an exception raised there holds the one it
            # replaces (__context__, even `from None`), and with it every frame of the read,
            # its generators and their database connection, for as long as anyone keeps the
            # error (a future does). Scrubbed whole, before anything cuts the line: a secret
            # cut in two would not be found, and its first half would stay.
            raise SourceError(secrets.scrubbed(notes.failed(failure)))
        if not isinstance(summary, dict):
            return summary  # the runner says what is wrong with it
        if reading.exhausted or tracker.state() is None:
            cursor, unread = tracker.state(), None
        else:
            cursor, unread = start, UNREAD
        # What it read (a sample) and from where (a cursor reset) first, then what the read
        # itself has to say, then run()'s own: each without a secret.
        # (Ours name a target by its identity, which holds no secret; run()'s may hold any.)
        warnings = [line for line in (target.note, reset) if line] + notes.warnings
        warnings += [secrets.scrubbed(line) for line in summary.get("warnings", [])]
        warnings += [unread] if unread else []
        summary = secrets.scrubbed_summary(summary)
        if not warnings:
            return {**summary, "cursor": target.kept(cursor)}
        return {**summary, "cursor": target.kept(cursor), "warnings": warnings}

    def starting_at(self, start: dict[str, Any] | None) -> ConnectorRun:
        return ConnectorRun(self.function, start)


UNREAD = (
    "run() returned before it read every row: the cursor stays where it was, and the next run "
    "reads these rows again"
)


class Reading:
    """The rows as `run(source, rows)` iterates them: it notes whether they were all read, and
    stops a read that outlives the source's timeout (a thread cannot be stopped otherwise).

    A generator underneath, not a `__next__` per row: a million rows cost a million calls."""

    def __init__(
        self,
        source: Source,
        rows: Chunks,
        tracker: CursorTracker,
        deadline: Deadline,
        secrets: Secrets,
    ) -> None:
        self._source = source
        self._secrets = secrets
        self.exhausted = False
        self._chunks = rows
        self._rows = self._admitted(rows, tracker, deadline)

    def __iter__(self) -> Iterator[Row]:
        return self._rows

    def __next__(self) -> Row:
        return next(self._rows)

    def close(self) -> None:
        """Ends the read now, whether run() read every row or not: the generators underneath
        close their cursor, connection or file. Left to the garbage collector, a read that
        failed half-way (its frames held by the exception) kept its PostgreSQL connection
        idle in a transaction, whose lock blocked an ALTER TABLE until the process ended."""
        # Quietly: a failure to close must not take the place of the read's own error.
        with contextlib.suppress(Exception):
            self._rows.close()
        close = getattr(self._chunks, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()

    def _admitted(
        self, chunks: Iterator[Any], tracker: CursorTracker, deadline: Deadline
    ) -> Generator[Row, None, None]:
        """The rows of what dlt yields: rows one by one (as a resource does when iterated), or
        lists of them. Per row, only what must be: the clock when there is a deadline, the
        cursor when there is one (a list's at once), and the `yield`."""
        admit, admitted = tracker.admit, tracker.admitted
        keeps_cursor = tracker.field is not None
        at, clock = deadline.at, time.monotonic
        try:
            for item in chunks:
                if at is not None and clock() > at:
                    deadline.check()  # raises
                if item.__class__ is list:
                    yield from admitted(item) if keeps_cursor else item
                elif not keeps_cursor or admit(item):
                    yield item
        except SourceError:
            raise
        except Exception as error:  # the read failed: say so in dlt's or the driver's words
            raise SourceError(connector_error(self._source, error, self._secrets)) from None
        self.exhausted = True


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


def uncut_line(error: BaseException) -> str:
    """`Type: message` of an exception, not yet cut to a line's length (results.one_line
    cuts it)."""
    message = str(error)
    if isinstance(error, SourceError):
        return message
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def connector_error(source: Source, error: BaseException, secrets: Secrets) -> str:
    """What went wrong, in one line: the innermost cause's own words (dlt wraps a database's
    or a server's error in two or three of its own), without any secret."""
    cause = error
    while cause.__cause__ is not None:  # an exception raised `from` another: the other
        cause = cause.__cause__
    if isinstance(cause, SourceError):  # ours, raised inside dlt (which wrapped it)
        return secrets.scrubbed(str(cause))
    about_cursor = cursor_problem(source, cause)
    if about_cursor is not None:
        return about_cursor
    original = getattr(cause, "orig", None) or cause
    # Scrubbed before its spaces are joined: a secret may hold a line break or two spaces.
    message = " ".join(secrets.scrubbed(str(original)).split()) or type(original).__name__
    # SQLAlchemy appends a link to its documentation and the statement: noise on one line.
    message = message.split(" (Background on this error at:")[0].split(" [SQL: ")[0]
    return f"{source.kind}: {type(original).__name__}: {message}"


def cursor_problem(source: Source, cause: BaseException) -> str | None:
    """The line for what dlt found wrong with the cursor values, said as the tracker says it:
    a row without one (dlt's IncrementalCursorPath... errors), values that cannot be compared
    (a TypeError of `<` in its incremental). None: not that."""
    block = source.connector
    if isinstance(block, SqlBlock) and block.cursor:
        words = sql_cursor_words(block)
    elif isinstance(block, HttpBlock) and block.incremental is not None:
        words = http_cursor_words(block.incremental.cursor_path, endpoint_url(block))
    else:
        return None
    if type(cause).__name__ in (
        "IncrementalCursorPathMissing",
        "IncrementalCursorPathHasValueNone",
    ):
        return words.missing()
    text = str(cause)
    if isinstance(cause, TypeError) and (
        "not supported between instances of" in text or "can't compare" in text
    ):
        # Which types: the error's own words ("'<' not supported between instances of 'str'
        # and 'float'"), or, for datetimes, with and without a time zone.
        named = re.findall(r"'(\w+)'", text.partition("instances of")[2])
        if "offset-naive" in text or len(named) != 2:
            return words.mixed(NAIVE_AND_AWARE)
        return words.mixed(f"{named[0]} and {named[1]}")
    return None


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


def target_of(source: Source, secrets: Secrets) -> Target:
    """The target of a connector source, from this process's environment; a SourceError when
    it has none (a variable unset and no sample, a sample that is not there)."""
    block = source.connector
    if isinstance(block, SqlBlock):
        return sql_target(source, block, secrets)
    if isinstance(block, HttpBlock):
        return http_target(source, block)
    if isinstance(block, FileBlock):
        location = (
            block.path if "://" in block.path else str((source.folder / block.path).resolve())
        )
        where = without_user_info(location)
        identity = f"{where}, glob {block.glob}, format {block.format}"
        return Target(identity, where, location=location)
    raise SourceError(f"source {source.id!r} of kind {source.kind} has no connector block")


def sql_target(source: Source, block: SqlBlock, secrets: Secrets) -> Target:
    if block.table is not None:
        table = f"{block.table_schema}.{block.table}" if block.table_schema else block.table
        what = f"table {table}"
    else:
        what = f"query {' '.join(str(block.query).split())}"
    cursor = f", cursor {block.cursor}" if block.cursor else ""
    if os.environ.get(block.url_env) or block.sqlite_file is None:
        url = secrets.read(block.url_env, f"sql.url_env of source {source.id!r}")
        where = database_shown(url)
        return Target(f"{where}, {what}{cursor}", where, location=url)
    sample = source.folder / block.sqlite_file
    if not sample.is_file():
        raise SourceError(f"sql: {block.url_env} is not set and {block.sqlite_file} does not exist")
    where = f"sample {block.sqlite_file}"
    note = (
        f"read the bundled sample {block.sqlite_file}: {block.url_env} is not set (set it to read"
        " the database, then remove sqlite_file)"
    )
    # Read-only: the offline demo's file is never written by a read.
    url = f"sqlite:///file:{sample.resolve()}?mode=ro&uri=true"
    return Target(f"{where}, {what}{cursor}", where, note, sample, url)


def database_shown(url: str) -> str:
    """A database URL as a target's identity: the database (backend, user, host, port,
    name), not how it is reached: no password, driver or query options, which may change
    (or hold a secret) while the database stays the same."""
    from sqlalchemy.engine import URL, make_url

    parsed = make_url(url)
    # A URL made anew from the parts that say which database: URL.set(password=None) would
    # keep the password (None there means "unchanged").
    shown: str = URL.create(
        parsed.get_backend_name(),
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
    ).render_as_string(hide_password=False)
    return shown


def http_target(source: Source, block: HttpBlock) -> Target:
    endpoint = without_user_info(endpoint_url(block))
    cursor = cursor_of(block)
    cursor_part = f", cursor {cursor}" if cursor else ""
    if block.sample_file is None:
        return Target(endpoint + cursor_part, endpoint)
    variable = secret_variable(block.auth)
    if variable is not None and os.environ.get(variable):
        return Target(endpoint + cursor_part, endpoint)  # configured: the API, sample or not
    sample = source.folder / block.sample_file
    if variable is None:  # nothing tells a configured API from the demo's: sample_file does
        reason = f"sample_file is set (remove it to read {endpoint})"
        missing = f"http: the sample_file {block.sample_file} does not exist (remove it to read"
        missing += f" {endpoint})"
    else:
        reason = f"{variable} is not set (set it and base_url to read the API, then remove"
        reason += " sample_file)"
        missing = f"http: {variable} is not set and {block.sample_file} does not exist"
    if not sample.is_file():
        raise SourceError(missing)
    where = f"sample {block.sample_file}"
    note = f"read the bundled sample {block.sample_file}: {reason}"
    return Target(where + cursor_part, where, note, sample)


def endpoint_url(block: HttpBlock) -> str:
    """The URL of the endpoint's first page, as dlt joins base_url and path."""
    if not block.path:
        return block.base_url
    return block.base_url.rstrip("/") + "/" + block.path.lstrip("/")


def without_user_info(url: str) -> str:
    """A URL without the user name and password it may carry (https://user:secret@host/)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def resumed(
    start: dict[str, Any] | None, target: Target, source: Source
) -> tuple[dict[str, Any] | None, str | None]:
    """The cursor this read starts from: `start`, unless it was reached on another target or
    over another column; then none (the block's initial value), with the line that says why.

    A cursor kept by 0.7.0 carries no target: it is taken as this target's."""
    if start is None:
        return None, None
    initial = initial_value_of(source.connector)
    restart = "read from the start" if initial is None else f"read from {initial}"
    kept_target = start.get("target")
    if kept_target is not None and kept_target != target.identity:
        return None, (
            f"cursor reset: its target changed from {shortened(kept_target)} to"
            f" {shortened(target.identity)}; {restart}"
        )
    if start.get("field") != source.cursor:
        return None, (
            f"cursor reset: its column changed from {start.get('field')} to {source.cursor};"
            f" {restart}"
        )
    return start, None


def initial_value_of(block: ConnectorBlock | None) -> Any:
    if isinstance(block, SqlBlock):
        return block.initial_value
    if isinstance(block, HttpBlock) and block.incremental is not None:
        return block.incremental.initial_value
    return None


def shortened(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def open_rows(
    source: Source,
    start: dict[str, Any] | None,
    secrets: Secrets,
    deadline: Deadline,
    target: Target | None = None,
    notes: Notes | None = None,
) -> tuple[Chunks, CursorTracker]:
    """The rows of a connector source's target (by default, the one this process's
    environment gives), newer than `start`, as dlt yields them (in chunks), and what tracks
    its cursor. What the read has to say besides goes to `notes`."""
    block = source.connector
    if target is None:
        target = target_of(source, secrets)
    if notes is None:
        notes = Notes()
    if isinstance(block, SqlBlock):
        words = sql_cursor_words(block) if block.cursor else None
        tracker = CursorTracker(block.cursor, start, block.initial_value, words=words, notes=notes)
        assert target.location is not None
        return sql_rows(target, block, tracker, deadline), tracker
    if isinstance(block, HttpBlock):
        initial = block.incremental.initial_value if block.incremental else None
        field = cursor_of(block)
        words = http_cursor_words(field, target.where) if field else None
        tracker = CursorTracker(field, start, initial, words=words, notes=notes)
        if target.sample is not None:
            # The items the API would answer, filtered by the cursor as the API's are.
            return sample_items(target.sample, target.where), tracker
        return http_rows(source, block, tracker.since(), secrets, deadline, notes), tracker
    if isinstance(block, FileBlock):
        from parallel_workflow_runtime._connectors.connector_files import FileCursor, file_chunks

        # The cursor is over the files (their names and times): it filters files, not rows.
        files = FileCursor(start, block, notes) if block.incremental else None
        return file_chunks(source, block, files, notes), CursorTracker(
            None, None, None, inner=files
        )
    raise SourceError(f"source {source.id!r} of kind {source.kind} has no connector block")


SAMPLE_CHUNK = 1_000  # items of a sample handed on at once, as an API's page would be


def sample_items(path: Path, shown_as: str) -> Chunks:
    """The items of an `http` source's sample, a JSON Lines file: a JSON object a line (blank
    lines skipped)."""
    chunk: list[Any] = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as error:  # not JSON, or not UTF-8
                raise SourceError(f"http: {shown_as} line {number}: {error}") from None
            if not isinstance(item, dict):  # run(source, rows) is promised dicts
                kind = type(item).__name__
                raise SourceError(f"http: {shown_as} line {number}: a {kind}, not a JSON object")
            chunk.append(item)
            if len(chunk) == SAMPLE_CHUNK:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def sql_rows(target: Target, block: SqlBlock, tracker: CursorTracker, deadline: Deadline) -> Chunks:
    dlt = dlt_module("sql")
    import sqlalchemy

    url = str(target.location)
    engine = sqlalchemy.create_engine(url, connect_args=connect_args(url, deadline))
    lent = lent_connections(engine)
    try:
        if block.cursor:
            with engine.connect() as connection:
                aware = cursor_column(connection, block, target.where)
            # A cursor kept while the column was `timestamp` read against it as `timestamptz`
            # (or the other way round): the same instant, taken as UTC.
            tracker.align(aware)
        since = tracker.since()
        if block.table is not None:
            from dlt.sources.sql_database import sql_table

            incremental = (
                dlt.sources.incremental(
                    block.cursor,
                    initial_value=since,
                    row_order="asc",
                    # "include": the rows whose cursor is NULL come too (WHERE ... OR IS NULL),
                    # and the tracker fails the source on the first, in every run: dlt's
                    # "raise" sees them in the first run alone, the WHERE hides them after.
                    on_cursor_value_missing="include",
                    range_start="open" if tracker.start_after else "closed",
                    # No deduplication of dlt's: the tracker keeps the keys of the rows at the
                    # last value, within MAX_CURSOR_KEYS. dlt's hashed each of them again
                    # (9 of the 10 s of 200,000 rows at one value) and warned on stderr.
                    primary_key=(),
                )
                if block.cursor
                else None
            )
            resource = sql_table(
                credentials=engine,
                table=block.table,
                schema=block.table_schema,
                incremental=incremental,
                chunk_size=block.chunk_size,
                reflection_level="minimal",
            )
            yield from resource
        else:
            yield from query_rows(engine, block, since, tracker.start_after)
    finally:
        # A read that ends early (run() failed or returned, a row broke the cursor) leaves
        # dlt's generator, and its connection, to the garbage collector (its iterator is in
        # a reference cycle): idle in a transaction, a server-side cursor open, its lock
        # blocking an ALTER TABLE until then. Closed here, at once.
        for connection in list(lent.values()):
            connection.invalidate()
        engine.dispose()


def lent_connections(engine: Any) -> dict[Any, Any]:
    """The connections of `engine`'s pool that are out (checked out) now, by their pool
    record: each as the pool lent it, which `invalidate()` closes (the Connection of whoever
    holds it then knows, and does not roll back on a closed one)."""
    import sqlalchemy

    lent: dict[Any, Any] = {}

    def checkout(_: Any, record: Any, connection: Any) -> None:
        lent[record] = connection

    sqlalchemy.event.listen(engine, "checkout", checkout)
    sqlalchemy.event.listen(engine, "checkin", lambda _, record: lent.pop(record, None))
    return lent


def cursor_column(connection: Any, block: SqlBlock, where: str) -> bool | None:
    """Whether the table or query has the cursor column (one line naming its columns if not),
    and whether that column holds datetimes with a time zone (True), without (False), or
    something else or unknown (None)."""
    import sqlalchemy

    assert block.cursor is not None
    if block.table is not None:
        name = f"{block.table_schema}.{block.table}" if block.table_schema else block.table
        inspector = sqlalchemy.inspect(connection)
        if not inspector.has_table(block.table, schema=block.table_schema):
            raise SourceError(f"sql: {where} has no table {name} (sql.table)")
        types = {
            column["name"]: column["type"]
            for column in inspector.get_columns(block.table, schema=block.table_schema)
        }
        if block.cursor not in types:
            raise SourceError(
                f"sql: table {name} has no column {block.cursor} (sql.cursor); its columns:"
                f" {', '.join(types)}"
            )
        kind = types[block.cursor]
        return bool(kind.timezone) if isinstance(kind, sqlalchemy.DateTime) else None
    result = connection.execute(
        sqlalchemy.text(f"SELECT * FROM ({block.query}) AS source_query WHERE 1 = 0")
    )
    columns = list(result.keys())
    description = result.cursor.description if result.cursor is not None else None
    result.close()
    if block.cursor not in columns:
        raise SourceError(
            f"sql: the query has no column {block.cursor} (sql.cursor); its columns:"
            f" {', '.join(columns)}"
        )
    if connection.dialect.name == "postgresql" and description:
        # The driver's type of the column, PostgreSQL's OID: timestamptz, timestamp.
        return POSTGRESQL_DATETIMES.get(description[columns.index(block.cursor)][1])
    return None


POSTGRESQL_DATETIMES = {1184: True, 1114: False}


def sql_cursor_words(block: SqlBlock) -> CursorWords:
    column = block.cursor
    if block.table is not None:
        table = f"{block.table_schema}.{block.table}" if block.table_schema else block.table
        subject = f"the cursor column {column} of table {table}"
    else:
        subject = f"the cursor column {column} of the query"
    return CursorWords(
        kind="sql",
        subject=subject,
        item="a row",
        missing_fix=(
            "choose a column without NULLs (sql.cursor), or give those rows a value or leave"
            f" them out in sql.query (COALESCE({column}, ...), WHERE {column} IS NOT NULL)"
        ),
        mixed_fix=(
            f"cast it to one type in sql.query (CAST({column} AS ...)) or choose another"
            " column (sql.cursor)"
        ),
        crowded_fix="a cursor column whose values rarely repeat (a time to the second, an id)",
    )


def http_cursor_words(path: str, where: str) -> CursorWords:
    return CursorWords(
        kind="http",
        subject=f"the cursor path {path} of {where}",
        item="an item",
        missing_fix="choose a field that every item has (http.incremental.cursor_path)",
        mixed_fix="choose a field of one type (http.incremental.cursor_path)",
        crowded_fix="a cursor field whose values rarely repeat (a time to the second, an id)",
    )


def connect_args(url: str, deadline: Deadline) -> dict[str, Any]:
    """A connection and a statement that cannot outlast the source's timeout (PostgreSQL)."""
    if not url.startswith(("postgresql", "postgres")):
        return {}
    seconds = deadline.remaining(86_400)
    return {
        "connect_timeout": max(int(seconds), 1),
        "options": f"-c statement_timeout={int(seconds * 1000)}",
    }


def query_rows(engine: Any, block: SqlBlock, since: Any, after: bool) -> Chunks:
    """A query's rows, as it is written; with a cursor, those from `since` on (after it, if
    `after`), in its order, and those whose cursor is NULL, which fail the source (as a
    table's do): a WHERE alone would leave them out of every run but the first, silently."""
    import sqlalchemy

    assert block.query is not None
    statement = f"SELECT * FROM ({block.query}) AS source_query"
    parameters: dict[str, Any] = {}
    if block.cursor:
        column = f"source_query.{engine.dialect.identifier_preparer.quote(block.cursor)}"
        if since is not None:
            statement += f" WHERE ({column} {'>' if after else '>='} :since OR {column} IS NULL)"
            parameters["since"] = since
        statement += f" ORDER BY {column}"
    with engine.connect() as connection:
        result = connection.execution_options(yield_per=block.chunk_size).execute(
            sqlalchemy.text(statement), parameters
        )
        for rows in result.mappings().partitions():
            yield [dict(row) for row in rows]


def http_rows(
    source: Source,
    block: HttpBlock,
    since: Any,
    secrets: Secrets,
    deadline: Deadline,
    notes: Notes,
) -> Chunks:
    dlt_module("http")
    from dlt.sources.rest_api import rest_api_resources

    credentials = http_credentials(source, block, secrets, notes)
    session = http_session(block, deadline, block.request_max_attempts, credentials)
    # No `auth` for dlt: it would put the credentials on every request, to whatever host a
    # next-page link names. The session's adapter adds them, to base_url's origin alone.
    client: dict[str, Any] = {"base_url": block.base_url, "session": session}
    if block.headers:
        client["headers"] = dict(block.headers)
    if block.paginator is not None:
        client["paginator"] = paginator_config(block)
    endpoint: dict[str, Any] = {"path": block.path, "method": block.method}
    if block.params:
        endpoint["params"] = dict(block.params)
    if block.json_body is not None:
        endpoint["json"] = block.json_body
    if block.data_selector is not None:
        # Compiled once: dlt parses a string selector again on every page.
        endpoint["data_selector"] = compiled_json_path(block.data_selector)
    if block.incremental is not None:
        incremental: dict[str, Any] = {"cursor_path": block.incremental.cursor_path}
        if block.incremental.start_param is not None:
            incremental["start_param"] = block.incremental.start_param
        if since is not None:
            incremental["initial_value"] = since
        endpoint["incremental"] = incremental
    config: Any = {"client": client, "resources": [{"name": source.id, "endpoint": endpoint}]}
    # The resource alone: a dlt source around it would build a schema no one reads, per run.
    (resource,) = rest_api_resources(config)
    yield from resource


def http_session(
    block: HttpBlock, deadline: Deadline, max_attempts: int, credentials: Credentials
) -> Any:
    """dlt's requests session for a read of `block`: dlt's retries (at most `max_attempts`
    tries of a request), each request ending by the deadline, the credentials on those to
    base_url's origin alone."""
    from dlt.sources.helpers.requests import Client

    timeout = deadline.remaining(block.request_timeout_seconds or 60.0)
    if block.request_timeout_seconds is not None:
        timeout = min(timeout, block.request_timeout_seconds)
    session = Client(
        request_timeout=timeout,
        request_max_attempts=max_attempts,
        raise_for_status=False,  # dlt checks each answer itself (its response_actions)
    ).session
    # Each request (dlt's retries and redirects too) passes this adapter: it ends by the
    # source's deadline, or does not start, and gets the credentials if it goes to base_url's
    # origin.
    adapter = http_adapter(deadline, credentials)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    read_environment_once(session, block.base_url)
    return session


def paginator_config(block: HttpBlock) -> dict[str, Any]:
    """The block's paginator as dlt's configuration: only what config.yaml sets, and its type."""
    assert block.paginator is not None
    return block.paginator.model_dump(exclude_unset=True) | {"type": block.paginator.type}


@functools.cache
def compiled_json_path(path: str) -> Any:
    from dlt.common.jsonpath import compile_path

    return compile_path(path)


def read_environment_once(session: Any, base_url: str) -> None:
    """What requests reads from the environment on every request (proxies, no_proxy, CA
    bundle), read once for the whole read: that lookup cost a third of the CPU of each page,
    which the sources on `thread` share. A next-page link to another host gets the proxies of
    `base_url`'s. (~/.netrc is read by http_credentials: its password is a credential.)"""
    import requests.utils

    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
    session.trust_env = False


Origin = tuple[str, str, int]
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> Origin:
    """A URL's origin: its scheme, host and port (the scheme's default port if it has none)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(scheme, 0)


def origin_shown(origin: Origin) -> str:
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    return (
        f"{scheme}://{host}" if port == DEFAULT_PORTS.get(scheme) else f"{scheme}://{host}:{port}"
    )


@dataclass
class Credentials:
    """What an `http` source authenticates with, for base_url's origin (scheme, host, port)
    alone: a request to another origin, where a next-page link or a redirect leads, goes
    without them, and the source's warnings say so.

    Why dropped and not refused: it is what browsers, curl and requests do with a redirect
    (an API may answer a download or a next page from a CDN or a storage bucket, which needs
    no credentials); a host that wanted them answers 401 or 403, and that failure's line says
    the credentials were not sent there."""

    origin: Origin
    headers: dict[str, str] = field(default_factory=dict)  # Authorization, an API key header
    query: dict[str, str] = field(default_factory=dict)  # an API key in the query
    cookies: dict[str, str] = field(default_factory=dict)  # an API key as a cookie
    notes: Notes = field(default_factory=Notes)

    def __bool__(self) -> bool:
        return bool(self.headers or self.query or self.cookies)

    def applied(self, request: Any) -> Any:
        """The request as it goes out: a copy with the credentials if it goes to base_url's
        origin, else as it is, which is without them.

        A copy, so that the request requests keeps (it copies it to follow a redirect) and
        the ones dlt makes for the next pages never hold them: a request to another origin has
        no way to carry them (requests strips only Authorization from a redirect, and only
        when the host changes; dlt put its auth on every request)."""
        if not self:
            return request
        origin = origin_of(request.url)
        if origin != self.origin:
            self.withheld(origin)
            return request
        request = request.copy()
        request.headers.update(self.headers)
        if self.query:
            request.prepare_url(request.url, self.query)
        if self.cookies:
            ours = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
            theirs = request.headers.get("Cookie")
            request.headers["Cookie"] = f"{theirs}; {ours}" if theirs else ours
        return request

    def withheld(self, origin: Origin) -> None:
        there, ours = origin_shown(origin), origin_shown(self.origin)
        self.notes.warn(
            f"http: sent the requests to {there} (a next page or a redirect) without"
            f" credentials: they go only to base_url's origin {ours}"
        )
        self.notes.hint(
            f"credentials were not sent to {there}: they go only to base_url's origin {ours}"
        )


# What a cookie value may hold (RFC 6265's cookie-octet): no space, quote, comma, semicolon or
# backslash, nor a control character.
COOKIE_VALUE = re.compile(r"[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*")


def http_credentials(
    source: Source, block: HttpBlock, secrets: Secrets, notes: Notes
) -> Credentials:
    """The credentials of an `http` block's auth, read from the environment (with no auth
    block, those ~/.netrc has for base_url's host, as requests would send)."""
    import requests.utils

    credentials = Credentials(origin_of(block.base_url), notes=notes)
    auth = block.auth
    what = f"http.auth of source {source.id!r}"
    if auth is None:
        netrc = requests.utils.get_netrc_auth(block.base_url)
        if netrc is not None:
            username, password = netrc
            secrets.add_basic(username, password)
            credentials.headers["Authorization"] = basic_credentials(username, password)
    elif auth.type == "bearer":
        credentials.headers["Authorization"] = f"Bearer {secrets.read(auth.token_env, what)}"
    elif auth.type == "http_basic":
        password = secrets.read(auth.password_env, what)
        secrets.add_basic(auth.username, password)
        credentials.headers["Authorization"] = basic_credentials(auth.username, password)
    elif auth.location == "header":
        credentials.headers[auth.name] = secrets.read(auth.api_key_env, what)
    elif auth.location == "query":
        credentials.query[auth.name] = secrets.read(auth.api_key_env, what)
    else:  # a cookie, which dlt's APIKeyAuth does not do (NotImplementedError)
        key = secrets.read(auth.api_key_env, what)
        if not COOKIE_VALUE.fullmatch(key):
            raise SourceError(
                f"{what}: the API key in {auth.api_key_env} holds a character a cookie cannot"
                " carry (a space, a quote, a comma, a semicolon or a backslash): send it in a"
                " header or the query (http.auth.location)"
            )
        credentials.cookies[auth.name] = key
    return credentials


def basic_credentials(username: str, password: str) -> str:
    """The Authorization header of HTTP Basic auth, as dlt's HttpBasicAuth makes it (UTF-8)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def http_adapter(deadline: Deadline, credentials: Credentials) -> Any:
    """A requests adapter whose requests never outlast `deadline` (a thread cannot be stopped,
    so a source's read on `thread` ends by its timeout only if each request does), and carry
    the credentials only to base_url's origin: every request of the session passes here, the
    first, each next page and each redirect, as it goes on the wire."""
    from requests.adapters import HTTPAdapter

    class SourceAdapter(HTTPAdapter):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            deadline.check()  # not retried by dlt: a SourceError is none of its errors
            timeout = kwargs.get("timeout")
            if isinstance(timeout, int | float) or timeout is None:
                kwargs["timeout"] = deadline.remaining(timeout or 60.0)
            return super().send(credentials.applied(request), *args, **kwargs)

    return SourceAdapter()


def file_bucket_url(source: Source, block: FileBlock) -> str:
    """Where a file source's files are, as dlt's filesystem takes it: a URL as written, or a
    folder (relative to the workflow's folder) that must exist."""
    if "://" in block.path:
        return block.path
    folder = source.folder / block.path
    if not folder.is_dir():
        raise SourceError(f"file: the folder {block.path} does not exist")
    return str(folder.resolve())


# --- for `check`: a source's target reached, and the variables its block names ----------------


def probe(source: Source, timeout: float) -> str:
    """Reach a connector source's target without reading its rows or moving its cursor: `sql`
    connects and finds its table (or runs its query for no rows) with the cursor column,
    `http` asks for the first page (with its auth) and counts its items, `file` lists the
    files that match; a source that reads its bundled sample probes the sample.

    One line of what it reached, e.g. "sample data/orders.sqlite: table records"; else a
    SourceError of one line, without a secret. Within `timeout` seconds in any case, even
    against a peer that accepts and never answers: the probe runs in a thread of its own,
    left behind if it has not finished by then (its connection's own timeouts, a second
    longer, end it soon after). dlt's first import is not timed: it is not the target's time.
    """
    if source.connector is None:
        raise SourceError(f"source {source.id!r} is of kind {source.kind}: it has no target")
    imported_once(source.kind)
    secrets = Secrets()
    outcome: list[tuple[bool, Any]] = []
    try:
        target = target_of(source, secrets)
        # The connection's own timeouts a second later than the wait below: what happens at
        # `timeout` is always that wait giving up (one message), never a race of the two.
        deadline = Deadline(time.monotonic() + timeout + 1.0, timeout + 1.0)

        def reach() -> None:
            try:
                outcome.append((True, reached(source, target, secrets, deadline)))
            except BaseException as error:  # handed over to the caller's thread
                outcome.append((False, error))

        worker = threading.Thread(target=reach, name=f"probe {source.id}", daemon=True)
        worker.start()
        worker.join(timeout)
        if not outcome:
            raise SourceError(f"{source.kind}: {target.where}: no answer within {timeout:g} s")
        succeeded, value = outcome[0]
        if not succeeded:
            raise value
    except SourceError as error:
        raise SourceError(secrets.scrubbed(str(error))) from None
    except Exception as error:
        raise SourceError(connector_error(source, error, secrets)) from None
    return str(value)


def reached(source: Source, target: Target, secrets: Secrets, deadline: Deadline) -> str:
    """What `probe` reached of the target, in its own thread."""
    block = source.connector
    if isinstance(block, SqlBlock):
        return sql_reached(block, target, deadline)
    if isinstance(block, HttpBlock):
        if target.sample is not None:
            items = sum(len(chunk) for chunk in sample_items(target.sample, target.where))
            return f"{target.where}: {items} items"
        return http_reached(source, block, target, secrets, deadline)
    assert isinstance(block, FileBlock)
    return files_reached(source, block)


def sql_reached(block: SqlBlock, target: Target, deadline: Deadline) -> str:
    import sqlalchemy
    from sqlalchemy.engine import make_url

    url = str(target.location)
    database = make_url(url).database or ""
    if (
        make_url(url).get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and not database.startswith("file:")
        and not Path(database).is_file()
    ):  # SQLite would make an empty database there: a probe writes nothing
        raise SourceError(f"sql: the SQLite file {database} does not exist")
    engine = sqlalchemy.create_engine(url, connect_args=connect_args(url, deadline))
    try:
        with engine.connect() as connection:
            if block.table is not None:
                inspector = sqlalchemy.inspect(connection)
                name = f"{block.table_schema}.{block.table}" if block.table_schema else block.table
                if not inspector.has_table(block.table, schema=block.table_schema):
                    raise SourceError(f"sql: {target.where} has no table {name}")
                columns = [
                    column["name"]
                    for column in inspector.get_columns(block.table, schema=block.table_schema)
                ]
                found = f"table {name}"
            else:
                result = connection.execute(
                    sqlalchemy.text(f"SELECT * FROM ({block.query}) AS source_query WHERE 1 = 0")
                )
                columns = list(result.keys())
                result.close()
                found = f"query of {len(columns)} column{'' if len(columns) == 1 else 's'}"
    finally:
        engine.dispose()
    if block.cursor and block.cursor not in columns:
        raise SourceError(
            f"sql: the {found} of {target.where} has no column {block.cursor} (sql.cursor)"
        )
    return f"{target.where}: {found}"


def http_reached(
    source: Source, block: HttpBlock, target: Target, secrets: Secrets, deadline: Deadline
) -> str:
    from dlt.sources.helpers.rest_client import RESTClient
    from dlt.sources.rest_api.config_setup import create_paginator

    credentials = http_credentials(source, block, secrets, Notes())
    client = RESTClient(
        base_url=block.base_url,
        headers=dict(block.headers) or None,
        # dlt's own conversion of the dict its rest_api config takes (a TypedDict there).
        paginator=create_paginator(paginator_config(block)) if block.paginator else None,  # type: ignore[arg-type]
        data_selector=compiled_json_path(block.data_selector) if block.data_selector else None,
        # One try: `check` says what the first answer was, dlt's retries would hide it. The
        # credentials go with the session, to base_url's origin alone, as in a read.
        session=http_session(block, deadline, 1, credentials),
    )
    pages: Generator[list[Any], None, None] = client.paginate(  # type: ignore[assignment]
        path=block.path,
        method=block.method,
        params=dict(block.params) or None,
        json=block.json_body,
    )
    try:
        first: list[Any] = next(pages, [])
    finally:
        pages.close()
    return f"{target.where}: first page, {len(first)} items"


def files_reached(source: Source, block: FileBlock) -> str:
    from dlt.sources.filesystem import filesystem

    bucket_url = file_bucket_url(source, block)
    # The listing only: dlt's filesystem resource yields the files' names, dates and sizes.
    count = sum(
        len(chunk) if isinstance(chunk, list) else 1
        for chunk in filesystem(bucket_url=bucket_url, file_glob=block.glob)
    )
    if not count:
        raise SourceError(f"file: no file in {block.path} matches {block.glob!r}")
    return f"{block.path}: {count} {'file matches' if count == 1 else 'files match'} {block.glob}"


def environment_variables(source: Source) -> list[tuple[str, str]]:
    """The environment variables a source's block names, each with what it is for, e.g.
    ("ORDERS_DB_URL", "the SQLAlchemy URL of Orders DB; unset: reads the sample
    data/orders_db.sqlite"). Never their values."""
    block = source.connector
    if isinstance(block, SqlBlock):
        unset = f"reads the sample {block.sqlite_file}" if block.sqlite_file else "the source fails"
        return [(block.url_env, f"the SQLAlchemy URL of {source.name}; unset: {unset}")]
    if isinstance(block, HttpBlock) and block.auth is not None:
        auth = block.auth
        if auth.type == "bearer":
            what = "the bearer token"
        elif auth.type == "api_key":
            what = f"the API key ({auth.name} in the {auth.location})"
        else:
            what = f"the password of {auth.username}"
        unset = f"reads the sample {block.sample_file}" if block.sample_file else "the source fails"
        variable = secret_variable(auth)
        assert variable is not None
        return [(variable, f"{what} for the API of {source.name}; unset: {unset}")]
    return []


def flattened(chunks: Iterable[Any]) -> Iterator[Row]:
    """Rows one by one from what a dlt resource yields: pages and batches as lists, or rows."""
    for chunk in chunks:
        if isinstance(chunk, list):
            yield from chunk
        else:
            yield chunk


class FileCursorLike(Protocol):
    """What a row tracker asks of a file source's cursor (connector_files.FileCursor)."""

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
        self.inner = inner  # a file source's (connector_files.FileCursor): over its files
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
