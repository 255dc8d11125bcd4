"""RunSpans, the span processor that every span of a traced process ends in (tracing.py sets
it up): it keeps at most MAX_SPANS_PER_RUN of a run and hands them to the history's trace
tables, a run's at once when it ends (span_history.py), and, in batches, to the OTLP endpoint
(span_exporters.py's exporter).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from parallel_workflow_runtime._observe.span_history import SpanHistory

if TYPE_CHECKING:
    from agno.db.base import BaseDb
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from parallel_workflow_runtime._store.history_opening import HistoryOpening

log = logging.getLogger("parallel_workflow_runtime")

# What a run keeps: past it, spans are counted and dropped (one warning line per run).
MAX_SPANS_PER_RUN = 10_000
# How often spans are sent; how many go in one OTLP request (the SDK's default: a request
# stays well under an OTLP receiver's size limits).
EXPORT_SECONDS = 5
OTLP_BATCH = 512


class RunSpans:
    """The processor every span ends in: it counts a run's spans (a trace's), drops those past
    MAX_SPANS_PER_RUN, and passes the rest to the history (SpanHistory) and to a batch
    processor for the OTLP endpoint. A run's root span ending says how many of its spans were
    dropped."""

    def __init__(self, exporter: Any) -> None:
        self.exporter = exporter
        self.history: SpanHistory | None = None
        self.db: Any = None
        self.endpoint: BatchSpanProcessor | None = None
        self.runs: set[int] = set()  # the traces of the runs under way
        self.kept: dict[int, int] = {}
        self.dropped: dict[int, int] = {}
        self.lock = threading.Lock()

    def keep_in(self, db: BaseDb | HistoryOpening | None) -> None:
        """Send the spans that end from now on to `db`'s tables (None: to no history)."""
        if db is self.db and self.history is not None:
            return
        old, self.history = self.history, None
        if old is not None:
            old.close()
        self.db = db
        if db is not None:
            self.history = SpanHistory(db)
        if self.endpoint is None and self.exporter is not None:
            self.endpoint = batched(self.exporter, OTLP_BATCH)

    # A span processor as the SDK calls one (not its subclass, which would import the SDK
    # with this module, for every command, traced or not).
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """A workflow run's span, the root of its trace (`run_root`), makes the trace one the
        history keeps: not that of an HTTP request (FastAPI's own spans) or anything else."""
        if span.parent is None and span.context is not None and essential(span):
            with self.lock:
                self.runs.add(span.context.trace_id)
            history = self.history
            if history is not None:
                history.started(span)

    def _on_ending(self, span: Span) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:
            return
        trace_id = context.trace_id
        with self.lock:
            of_a_run = trace_id in self.runs
            kept = self.kept.get(trace_id, 0)
        if not of_a_run:  # e.g. an HTTP request's: for the endpoint, not for the history
            if self.endpoint is not None:
                self.endpoint.on_end(span)
            return
        with self.lock:
            # Past the limit, the spans a source's own code made go; the run's, its steps'
            # and its attempts' (Agno's and ours: a few per source) are always kept.
            if kept >= MAX_SPANS_PER_RUN and not essential(span):
                self.dropped[trace_id] = self.dropped.get(trace_id, 0) + 1
                return
            self.kept[trace_id] = kept + 1
            if span.parent is None:  # the run's root span: the trace is complete
                self.runs.discard(trace_id)
                self.kept.pop(trace_id, None)
                dropped = self.dropped.pop(trace_id, 0)
            else:
                dropped = 0
        if dropped:
            run_id = (span.attributes or {}).get("agno.run.id", format(trace_id, "032x"))
            log.warning(
                f"tracing: run {run_id} made more than {MAX_SPANS_PER_RUN:,} spans: "
                f"{dropped:,} were dropped, the first {MAX_SPANS_PER_RUN:,} kept"
            )
        if self.history is not None:
            self.history.add(span)
        if self.endpoint is not None:
            self.endpoint.on_end(span)

    def note_dropped(self, trace_id: int, count: int) -> None:
        with self.lock:
            self.dropped[trace_id] = self.dropped.get(trace_id, 0) + count

    def shutdown(self) -> None:
        if self.history is not None:
            self.history.close()
        if self.endpoint is not None:
            self.endpoint.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        done = True
        if self.history is not None:
            done = self.history.flush(timeout_millis / 1000)
        if self.endpoint is not None:
            done = self.endpoint.force_flush(timeout_millis) and done
        return done


# The instrumentations whose spans say what the run did: Agno's (OpenInference's) and ours.
ESSENTIAL_SCOPES = frozenset({"openinference.instrumentation.agno", "parallel_workflow_runtime"})


def essential(span: ReadableSpan) -> bool:
    scope = span.instrumentation_scope
    return span.parent is None or (scope is not None and scope.name in ESSENTIAL_SCOPES)


def batched(exporter: Any, batch: int) -> BatchSpanProcessor:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The queue holds two runs' spans: none is dropped before RunSpans' own limit. Exported
    # every few seconds, or at the command's end (flush).
    return BatchSpanProcessor(
        exporter,
        max_queue_size=MAX_SPANS_PER_RUN * 2,
        max_export_batch_size=batch,
        schedule_delay_millis=EXPORT_SECONDS * 1000,
    )
