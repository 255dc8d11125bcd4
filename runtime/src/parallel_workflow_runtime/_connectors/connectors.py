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

This module is what the kinds share: the run (its rows: reading.py's `Reading`), the target
and the rows of each kind (`target_of`, `open_rows`: sql.py, http.py, files.py), the cursor a
read starts from (`resumed`; cursor_tracker.py tracks where it gets to) and a failure's line
(`connector_error`).

dlt is imported when a connector first reads, not before (connector_imports.py): it takes
two seconds to import, and a project of `python` sources never needs it.

`environment_variables` is for the `check` command, as `probe` is (probe.py): it lists the
environment variables a source's block names.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parallel_workflow_runtime._connectors.connector_imports import imported_once
from parallel_workflow_runtime._connectors.cursor_tracker import NAIVE_AND_AWARE, CursorTracker
from parallel_workflow_runtime._connectors.files import FileCursor, file_chunks
from parallel_workflow_runtime._connectors.http import (
    endpoint_url,
    http_cursor_words,
    http_rows,
    http_target,
    sample_items,
)
from parallel_workflow_runtime._connectors.read_context import (
    BATCH_ROWS,
    Chunks,
    Deadline,
    Notes,
    Rows,
    Secrets,
    Target,
    without_user_info,
)
from parallel_workflow_runtime._connectors.reading import Reading
from parallel_workflow_runtime._connectors.sql import sql_cursor_words, sql_rows, sql_target
from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.connector_config import (
    ConnectorBlock,
    FileBlock,
    HttpBlock,
    SqlBlock,
    cursor_of,
    secret_variable,
)
from parallel_workflow_runtime._core.results import SourceError, SourceSummary, awaited

ConnectorFunction = Callable[[Source, Rows], SourceSummary]

__all__ = ["ConnectorRun", "environment_variables"]


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
            reading = Reading(
                rows,
                tracker,
                deadline,
                failed=lambda error: connector_error(source, error, secrets),
                batch_rows=getattr(source.connector, "chunk_size", BATCH_ROWS),
            )
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
        # The cursor is over the files (their names and times): it filters files, not rows.
        files = FileCursor(start, block, notes) if block.incremental else None
        return file_chunks(source, block, files, notes), CursorTracker(
            None, None, None, inner=files
        )
    raise SourceError(f"source {source.id!r} of kind {source.kind} has no connector block")


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
