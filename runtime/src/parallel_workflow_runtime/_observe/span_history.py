"""The history's writer of spans (RunSpans hands it those of runs): a run's spans are kept
in memory while it runs and written, once its root span ends, by a thread of their own, in
one transaction (the trace's row and every span's), so that neither the run nor its end
waits for the history. `flush` (the end of a command) writes what is left, the spans of a
run cut short included, and waits until they are in.

Agno's DatabaseSpanExporter, which this replaces, wrote two transactions a batch, one
statement a span, and swallowed its errors; the rows are the same (its schemas' `Span` and
`Trace`), so Agno's /traces routes and `history show --trace` read them as before.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from parallel_workflow_runtime._core.results import one_line

if TYPE_CHECKING:
    from agno.db.base import BaseDb
    from opentelemetry.sdk.trace import ReadableSpan

    from parallel_workflow_runtime._store.history_opening import HistoryOpening

log = logging.getLogger("parallel_workflow_runtime")

# What the history's spans leave out of each step's input and output: the history holds
# those already, once each (history_db.py); in its spans they would be a copy of every
# step's data. The OTLP endpoint gets them whole: that is where a user looks at them.
PAYLOADS = ("input.value", "input.mime_type", "output.value", "output.mime_type")
# A write that fails (the database busy past its own wait, a connection dropped) is tried
# again after each of these pauses, then given up with one warning line.
RETRY_SECONDS = (0.2, 1.0, 3.0)


class SpanHistory:
    """The spans of the runs under way, each run's written when its root span ends.

    `db` may be a history still opening (history_opening.py, `run`'s): the thread writes into
    it once it is open and has its trace tables, which it does not open or create itself (the
    opening silences the whole process's stderr meanwhile: the thread that runs the command
    does that, as Agno's own writes at the run's end do, or `flush`). Any other database gets
    its trace tables here and now."""

    def __init__(self, db: BaseDb | HistoryOpening) -> None:
        from parallel_workflow_runtime._store.history_opening import HistoryOpening

        self.source = db
        self.database: BaseDb | None = None  # once its trace tables are known to exist
        if not isinstance(db, HistoryOpening):
            create_trace_tables(db)
            self.database = db
        self.lock = threading.Condition()
        self.pending: dict[int, list[ReadableSpan]] = {}  # the runs under way, by trace id
        self.roots: dict[int, ReadableSpan] = {}  # their root spans, still open
        self.ready: list[list[ReadableSpan]] = []  # runs whose spans are to be written
        self.queued = 0  # runs handed to the thread so far
        self.done = 0  # ... of which written (or given up)
        self.interrupted: set[int] = set()  # span ids of root spans written while open
        self.closed = False
        self.unusable = False  # the history could not be opened, or given trace tables
        self.lost = 0
        # Started now: it gets ready to write (imports, the tables) while the run runs.
        self.thread = threading.Thread(target=self._work, name="trace-history", daemon=True)
        self.thread.start()
        atexit.register(self.close)

    def started(self, root: ReadableSpan) -> None:
        """A run's root span started (still open: written as interrupted by `flush`)."""
        if root.context is not None:
            with self.lock:
                self.roots[root.context.trace_id] = root

    def add(self, span: ReadableSpan) -> None:
        """A span of a run ended; its run's root span ending hands the run to the thread."""
        if span.context is None:
            return
        trace_id = span.context.trace_id
        with self.lock:
            self.pending.setdefault(trace_id, []).append(span)
            if span.parent is None:
                self.roots.pop(trace_id, None)
                self._queue(self.pending.pop(trace_id))

    def flush(self, timeout: float) -> bool:
        """Write every span ended so far, those of runs still under way (a Ctrl-C) too, each
        with its open root span as it is now; True once they are in the history. In the
        thread that runs the command: it opens the history and makes its trace tables if
        nobody has yet."""
        with self.lock:
            for trace_id in list(self.pending) + [t for t in self.roots if t not in self.pending]:
                spans = self.pending.pop(trace_id, [])
                root = self.roots.pop(trace_id, None)
                if root is not None:
                    spans.append(interrupted(root))
                    if root.context is not None:
                        self.interrupted.add(root.context.span_id)
                self._queue(spans)
            target = self.queued
            if self.done >= target:
                return True
        if self.database is None:
            try:
                database = opened_history(self.source)
                create_trace_tables(database)
            except Exception as error:  # its runs' spans are dropped, not waited for
                log.warning(f"tracing: no trace can be kept in the history: {one_line(error)}")
                with self.lock:
                    self.unusable = True
                    self.lock.notify_all()
            else:
                with self.lock:
                    self.database = database
                    self.lock.notify_all()
        with self.lock:
            return self.lock.wait_for(lambda: self.done >= target, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """What is left written (at most `timeout` seconds), then the thread ends."""
        if self.closed:
            return
        self.flush(timeout)
        with self.lock:
            self.closed = True
            self.lock.notify_all()
        atexit.unregister(self.close)

    def _queue(self, spans: list[ReadableSpan]) -> None:  # under self.lock
        if not spans:
            return
        self.ready.append(spans)
        self.queued += 1
        self.lock.notify_all()

    def _work(self) -> None:
        # Failing (a history being made, say), a write looks again, or `flush` opens it.
        with contextlib.suppress(Exception):
            self._get_ready()
        while True:
            with self.lock:
                self.lock.wait_for(lambda: self.ready or self.closed)
                if not self.ready:
                    return
            database = self.database or self._open_already()
            with self.lock:
                if database is None:  # for `flush` to open, in the command's thread
                    self.lock.wait_for(
                        lambda: self.database is not None or self.closed or self.unusable
                    )
                    if self.database is None:  # never to be opened: given up
                        self.lost += sum(len(spans) for spans in self.ready)
                        self.done += len(self.ready)
                        self.ready = []
                        self.lock.notify_all()
                        if self.closed:
                            return
                    continue
                runs, self.ready = self.ready, []
            try:
                self._write(database, runs)
            finally:
                with self.lock:
                    self.done += len(runs)
                    self.lock.notify_all()

    def _get_ready(self) -> None:
        """What a write needs, while the run runs: Agno's span schema, and, for a history
        still opening, a connection of this thread's own to its SQLite file with the trace
        tables looked up (Agno looks a table up once per database object: tens of ms). Not
        the opening itself: the run's own writes do that, in their thread."""
        import agno.tracing.schemas  # noqa: F401

        from parallel_workflow_runtime._store.history_opening import HistoryOpening

        opening = self.source
        if not isinstance(opening, HistoryOpening) or opening.location.sqlite_file is None:
            return
        opening.done()  # its thread's imports: SQLAlchemy, Agno's SQLite database
        from parallel_workflow_runtime._store.history_db import SqliteHistory

        database = SqliteHistory(db_file=str(opening.location.sqlite_file), id="history")
        if has_trace_tables(database):
            with self.lock:
                self.database = self.database or database

    def _open_already(self) -> BaseDb | None:
        """The history, if it is open and has its trace tables (the run's own writes at its
        end opened it); None while either is not so."""
        from parallel_workflow_runtime._store.history_opening import HistoryOpening

        opening = self.source
        database = opening.database_if_open() if isinstance(opening, HistoryOpening) else opening
        try:
            if database is None or not has_trace_tables(database):
                return None
        except Exception:
            return None
        with self.lock:
            self.database = database
        return database

    def _write(self, database: BaseDb, runs: list[list[ReadableSpan]]) -> None:
        """The runs' spans and a row for each run's trace, in one transaction."""
        try:
            rows = [span_rows(spans) for spans in runs]
        except Exception as error:  # a span Agno's schema cannot take
            self._lost(runs, error)
            return
        with self.lock:
            rewritten = set(self.interrupted)
        for pause in (*RETRY_SECONDS, None):
            try:
                write_rows(database, rows, rewritten)
                return
            except Exception as error:
                if pause is None:
                    self._lost(runs, error)
                    return
                time.sleep(pause)

    def _lost(self, runs: list[list[ReadableSpan]], error: Exception) -> None:
        count = sum(len(spans) for spans in runs)
        self.lost += count
        log.warning(f"tracing: could not write {count:,} spans to the history: {one_line(error)}")


def opened_history(db: BaseDb | HistoryOpening) -> BaseDb:
    from parallel_workflow_runtime._store.history_opening import opened

    database = opened(db)
    assert database is not None
    return database


def create_trace_tables(db: BaseDb) -> None:
    from parallel_workflow_runtime._store.history import create_trace_tables

    create_trace_tables(db)


def has_trace_tables(db: BaseDb) -> bool:
    from parallel_workflow_runtime._store.agno_adapter import agno_table

    return agno_table(db, "traces") is not None and agno_table(db, "spans") is not None


def interrupted(root: ReadableSpan) -> ReadableSpan:
    """An open root span as it is now, ended here, for a run cut short (a second Ctrl-C):
    its trace is then found by its run id like any other."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Status, StatusCode

    return ReadableSpan(
        name=root.name,
        context=root.context,
        parent=root.parent,
        resource=root.resource,
        attributes=dict(root.attributes or {}),
        kind=root.kind,
        status=Status(StatusCode.ERROR, "interrupted: the run did not end"),
        start_time=root.start_time,
        end_time=time.time_ns(),
        instrumentation_scope=root.instrumentation_scope,
    )


def span_rows(spans: list[ReadableSpan]) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """A run's trace row, its spans' rows (less PAYLOADS), and whether its root is there."""
    from agno.tracing.schemas import Span, create_trace_from_spans

    converted = []
    for span in spans:
        row = Span.from_otel_span(span)
        for key in PAYLOADS:
            row.attributes.pop(key, None)
        converted.append(row)
    trace = create_trace_from_spans(converted)
    assert trace is not None
    trace_row = trace.to_dict()
    trace_row.pop("total_spans", None)  # Agno counts them when read
    trace_row.pop("error_count", None)
    has_root = any(span.parent_span_id is None for span in converted)
    return trace_row, [span.to_dict() for span in converted], has_root


# The trace's context, kept from whichever write had it first (as Agno's upsert does).
CONTEXT = ("run_id", "session_id", "user_id", "agent_id", "team_id", "workflow_id")


def write_rows(
    db: BaseDb, rows: list[tuple[dict[str, Any], list[dict[str, Any]], bool]], rewritten: set[int]
) -> None:
    """One transaction: each trace's row inserted or merged into the one written before
    (a run whose spans came in two writes), and every span's row."""
    from sqlalchemy import select

    from parallel_workflow_runtime._store.agno_adapter import agno_table, engine_of

    traces, spans_table = agno_table(db, "traces"), agno_table(db, "spans")
    if traces is None or spans_table is None:
        raise RuntimeError("the history has no trace tables")
    span_rows = [row for _, rows_of_run, _ in rows for row in rows_of_run]
    again = [row["span_id"] for row in span_rows if int(row["span_id"], 16) in rewritten]
    with engine_of(db).begin() as connection:
        for trace, _, has_root in rows:
            found = (
                connection.execute(select(traces).where(traces.c.trace_id == trace["trace_id"]))
                .mappings()
                .first()
            )
            if found is None:
                connection.execute(traces.insert(), trace)
            else:
                merged = merged_trace(dict(found), trace, has_root)
                connection.execute(
                    traces.update().where(traces.c.trace_id == trace["trace_id"]), merged
                )
        if again:  # a root span written as interrupted, now ended after all
            connection.execute(spans_table.delete().where(spans_table.c.span_id.in_(again)))
        connection.execute(spans_table.insert(), span_rows)


def merged_trace(found: dict[str, Any], new: dict[str, Any], has_root: bool) -> dict[str, Any]:
    from datetime import datetime

    start = min(found["start_time"], new["start_time"])
    end = max(found["end_time"], new["end_time"])
    duration = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    merged = {
        "start_time": start,
        "end_time": end,
        "duration_ms": int(duration.total_seconds() * 1000),
        "status": "ERROR" if "ERROR" in (found["status"], new["status"]) else new["status"],
        "name": new["name"] if has_root else found["name"],
    }
    for key in CONTEXT:
        merged[key] = found.get(key) if found.get(key) is not None else new.get(key)
    return merged
