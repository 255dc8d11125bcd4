"""A source's spans in a worker process (`process` or `dask`): its span, under its attempt's
context that came as a W3C `traceparent` (`in_worker`), the spans made there collected by the
worker's processor (Collector) and sent back with its outcome as text (WorkerSpans), and in
the parent ended as if made there (`adopt`), to go where its own spans go.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from parallel_workflow_runtime._core.results import one_line
from parallel_workflow_runtime._observe import tracing as process_tracing
from parallel_workflow_runtime._observe.tracing import ATTRIBUTE_PREFIX, SETUP_LOCK

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span

    from parallel_workflow_runtime._core.config import Source

log = logging.getLogger("parallel_workflow_runtime")

# What one attempt in a worker process sends back with its outcome.
MAX_WORKER_SPANS = 1_000

# In a worker process: the spans of the attempt under way in this context, as they end.
_COLLECTED: contextvars.ContextVar[WorkerSpans | None] = contextvars.ContextVar(
    "collected_spans", default=None
)


@dataclass
class WorkerSpans:
    """The spans one attempt made in a worker process, kept to travel back with its outcome."""

    spans: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0

    def text(self) -> str:
        return json.dumps({"spans": self.spans, "dropped": self.dropped}, default=str)


class Collector:
    """The worker's processor: each span that ends goes to the attempt whose context it was
    started in."""

    def __init__(self) -> None:
        self.owners: dict[int, WorkerSpans] = {}
        self.lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        collected = _COLLECTED.get()
        if collected is not None and span.context is not None:
            with self.lock:
                self.owners[span.context.span_id] = collected

    def _on_ending(self, span: Span) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None:
            return
        with self.lock:
            collected = self.owners.pop(span.context.span_id, None)
        if collected is None:
            return
        if len(collected.spans) >= MAX_WORKER_SPANS:
            collected.dropped += 1
            return
        collected.spans.append(span_dict(span))

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


_WORKER: tuple[Any, Collector] | None = None


def worker_tracer() -> tuple[Any, Collector]:
    """The tracer of this worker process, and its collector: a TracerProvider of its own,
    set as the process's (so that a source's own `trace.get_tracer(...)` spans are
    collected), unless the process has one already, which then gets the collector."""
    global _WORKER
    with SETUP_LOCK:
        if _WORKER is None:
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider

            collector = Collector()
            current = trace.get_tracer_provider()
            if isinstance(current, TracerProvider):
                provider = current
            else:
                provider = TracerProvider(shutdown_on_exit=False)
                trace.set_tracer_provider(provider)
            provider.add_span_processor(cast(Any, collector))  # a processor, duck-typed
            _WORKER = (provider.get_tracer("parallel_workflow_runtime"), collector)
        return _WORKER


@contextlib.contextmanager
def in_worker(traceparent: str, source: Source) -> Iterator[WorkerSpans | None]:
    """In a worker process: the source's span, a child of its attempt's (`traceparent`),
    current while the source runs; the spans it and the source made are collected into what
    this yields. Nothing, and nothing imported, without a traceparent."""
    if not traceparent:
        yield None
        return
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    tracer, _ = worker_tracer()
    collected = WorkerSpans()
    token = _COLLECTED.set(collected)
    try:
        with tracer.start_as_current_span(
            f"{source.id} run in a worker",
            context=TraceContextTextMapPropagator().extract({"traceparent": traceparent}),
            attributes={
                f"{ATTRIBUTE_PREFIX}.source.id": source.id,
                "process.pid": os.getpid(),
            },
        ):
            yield collected
    finally:
        _COLLECTED.reset(token)


def span_dict(span: ReadableSpan) -> dict[str, Any]:
    """A finished span as JSON-ready data, to rebuild it in the parent (`adopted_span`)."""
    context = span.context
    assert context is not None
    return {
        "name": span.name,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
        "kind": span.kind.name,
        "start": span.start_time,
        "end": span.end_time,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "description": span.status.description,
        "events": [
            {
                "name": event.name,
                "time": event.timestamp,
                "attributes": dict(event.attributes or {}),
            }
            for event in span.events
        ],
    }


def adopt(text: str) -> None:
    """The spans a worker sent back (`WorkerSpans.text`), ended here as if made here: they go
    where this process's spans go. Nothing if tracing is off here or the text is empty."""
    tracing = process_tracing.ACTIVE  # set by tracing.enable, read when called
    if not text or tracing is None or tracing.spans is None:
        return
    try:
        sent = json.loads(text)
        spans = [adopted_span(data, tracing.provider) for data in sent["spans"]]
    except (ValueError, KeyError, TypeError) as error:
        log.warning(f"tracing: the spans a worker sent back are unreadable: {one_line(error)}")
        return
    for span in spans:
        tracing.spans.on_end(span)
    if sent.get("dropped") and spans:
        assert spans[0].context is not None
        tracing.spans.note_dropped(spans[0].context.trace_id, int(sent["dropped"]))


def adopted_span(data: Mapping[str, Any], provider: Any) -> ReadableSpan:
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    trace_id = int(data["trace_id"], 16)
    parent = data.get("parent_id")
    return ReadableSpan(
        name=str(data["name"]),
        context=SpanContext(trace_id, int(data["span_id"], 16), False, TraceFlags(1)),
        parent=SpanContext(trace_id, int(parent, 16), False, TraceFlags(1)) if parent else None,
        resource=getattr(provider, "resource", None),
        attributes=data.get("attributes") or {},
        events=[
            Event(event["name"], event.get("attributes") or {}, event.get("time"))
            for event in data.get("events") or []
        ],
        kind=SpanKind[data.get("kind") or "INTERNAL"],
        status=Status(StatusCode[data.get("status") or "UNSET"], data.get("description")),
        start_time=int(data["start"]),
        end_time=int(data["end"]),
    )
