"""Traces: each source attempt an OpenTelemetry span, under the span of its Agno step.

Off unless asked for (settings.yaml's `tracing: true`, <PREFIX>TRACING, `run --trace`,
`serve --trace`): then `enable(db)` sets up, once per process,

- a TracerProvider, and Agno's own instrumentation (OpenInference's AgnoInstrumentor, what
  `AgentOS(tracing=True)` uses), which gives the workflow, the Parallel block and each step
  a span;
- `RunSpans`, the processor that every span ends in: it keeps at most MAX_SPANS_PER_RUN of
  a run (a source that makes 100,000 spans costs the run nothing more, and the run's last span
  says in one warning line how many were dropped) and hands them, in batches, to the history
  (Agno's DatabaseSpanExporter: its tables agno_traces and agno_spans, SQLite or PostgreSQL)
  and, when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set, to that OTLP
  endpoint over HTTP, with the standard OTEL_* variables honoured.

A tracer provider that the user's code set already is kept: the spans go to it, and the
history gets them too if it is the SDK's (which takes another processor); a warning says so.

A source on `process` or `dask` runs in another process: its attempt's context travels with
it as a W3C `traceparent`, the worker starts the source's span under it, and the spans made
there (the user's own among them) come back with the source's outcome, to go where the
parent's spans go (`in_worker`, `adopt`). So a worker needs no exporter, no database and no
route to the OTLP endpoint: a Dask worker on another machine included.
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

if TYPE_CHECKING:
    from agno.db.base import BaseDb
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
    from opentelemetry.trace import Tracer

    from parallel_workflow_runtime._core.config import Source

log = logging.getLogger("parallel_workflow_runtime")

# What a run keeps: past it, spans are counted and dropped (one warning line per run).
MAX_SPANS_PER_RUN = 10_000
# What one attempt in a worker process sends back with its outcome.
MAX_WORKER_SPANS = 1_000
# How often spans are written to the history and sent; how many go in one OTLP request
# (the SDK's default: a request stays well under an OTLP receiver's size limits).
EXPORT_SECONDS = 5
OTLP_BATCH = 512
HISTORY_BATCH = 512
# How long the end of a command waits for its spans to reach the history and the endpoint.
FLUSH_SECONDS = 5.0
# The spans' own attributes, after the project: parallel_workflow.source.id, ...
ATTRIBUTE_PREFIX = "parallel_workflow"
OTLP_PROTOCOLS = ("http/protobuf",)  # what the exporter installed with the runtime speaks


@dataclass
class Tracing:
    """The process's tracing, once `enable` has set it up."""

    provider: Any  # an SDK TracerProvider, or the user's provider of another kind
    tracer: Tracer
    spans: RunSpans | None  # None: the user's provider takes no processor of ours
    endpoint: str | None  # where OTLP spans go, if anywhere


ACTIVE: Tracing | None = None
_SETUP = threading.Lock()


def wanted(flag: bool, setting: bool) -> bool:
    """Whether a command traces: its `--trace`, else the setting (settings.yaml or
    <PREFIX>TRACING)."""
    return flag or setting


def enable(db: BaseDb | None, service: str) -> Tracing:
    """Trace from now on in this process, into `db` (the history) and the OTLP endpoint if
    one is set; once set up, a later call only moves the history to `db`. ConfigError if
    OpenTelemetry is not installed."""
    global ACTIVE
    with _SETUP:
        if ACTIVE is None:
            ACTIVE = _set_up(service)
        if ACTIVE.spans is not None:
            ACTIVE.spans.keep_in(db)
        return ACTIVE


def _set_up(service: str) -> Tracing:
    try:
        from openinference.instrumentation.agno import AgnoInstrumentor
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError as error:
        from parallel_workflow_runtime._core.usage import ConfigError

        raise ConfigError(
            f"tracing needs OpenTelemetry ({one_line(error)}): install the project with its "
            "tracing extra, e.g. pip install -e '.[tracing]'"
        ) from None
    endpoint, exporter = otlp_exporter()
    spans = RunSpans(exporter)
    current = trace.get_tracer_provider()
    provider: Any
    if isinstance(current, TracerProvider):
        provider = current
        provider.add_span_processor(cast(Any, spans))
        log.warning(
            "tracing: your code set a tracer provider already: the spans go to it, and to the "
            "history; OTEL_EXPORTER_OTLP_* are for the provider your code set up"
        )
        spans.exporter = None
        endpoint = None
    elif type(current).__name__ not in ("ProxyTracerProvider", "NoOpTracerProvider"):
        provider = current
        log.warning(
            "tracing: your code set a tracer provider that takes no processor of ours "
            f"({type(current).__name__}): the spans go to it only, none to the history"
        )
        spans = None  # type: ignore[assignment]
        endpoint = None
    else:
        # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, say what the spans are of.
        named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
            "OTEL_RESOURCE_ATTRIBUTES", ""
        )
        resource = Resource.create({} if named else {"service.name": service})
        # Not at exit by itself: an unreachable endpoint would hold the program for as long
        # as the exporter retries; `flush` bounds it.
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        provider.add_span_processor(cast(Any, spans))
        trace.set_tracer_provider(provider)
    instrument_agno(AgnoInstrumentor(), provider)
    tracer = provider.get_tracer("parallel_workflow_runtime")
    return Tracing(provider=provider, tracer=tracer, spans=spans, endpoint=endpoint)


def instrument_agno(instrumentor: Any, provider: Any) -> None:
    """Agno's spans (OpenInference's instrumentation), for the model classes imported so far:
    its own search for them imports every module of agno.models, and with them every model
    provider's SDK that is installed (OpenAI's alone took half a second). So tracing is
    enabled once the workflows are built, their report models imported."""
    import openinference.instrumentation.agno as instrumentation

    if instrumentor.is_instrumented_by_opentelemetry:
        return
    search = instrumentation.find_model_subclasses
    instrumentation.find_model_subclasses = imported_model_classes
    try:
        # skip_dep_check: the runtime's own pins already hold Agno to what it instruments.
        instrumentor.instrument(tracer_provider=provider, skip_dep_check=True)
    finally:
        instrumentation.find_model_subclasses = search


def imported_model_classes() -> list[type]:
    """Every subclass of Agno's Model imported so far, the most derived first (as
    OpenInference orders them, so that no method is wrapped twice)."""
    from agno.models.base import Model

    found: set[type] = set()
    pending: list[type] = [Model]
    while pending:
        subclasses: list[type] = pending.pop().__subclasses__()
        for subclass in subclasses:
            if subclass not in found:
                found.add(subclass)
                pending.append(subclass)
    return sorted(found, key=lambda cls: len(cls.__mro__), reverse=True)


def otlp_exporter() -> tuple[str | None, Any]:
    """The OTLP endpoint's exporter, if OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set and its
    protocol is one the runtime speaks; else none, with one warning line saying why."""
    traces_endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    endpoint = traces_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not endpoint:
        return None, None
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or OTLP_PROTOCOLS[0]
    ).strip()
    if protocol not in OTLP_PROTOCOLS:
        log.warning(
            f"tracing: OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not one this project sends "
            f"({', '.join(OTLP_PROTOCOLS)}): no span goes to {endpoint}, they are kept in the "
            "history only"
        )
        return None, None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as error:
        log.warning(
            f"tracing: no OTLP exporter ({one_line(error)}): no span goes to {endpoint}; "
            "install the project's tracing extra"
        )
        return None, None
    # Its retries would print a line each; ReportingExporter says it once.
    logging.getLogger("opentelemetry.exporter.otlp.proto.http").setLevel(logging.CRITICAL)
    if not traces_endpoint:
        endpoint = endpoint.rstrip("/") + "/v1/traces"  # as the exporter itself completes it
    try:
        return endpoint, ReportingExporter(OTLPSpanExporter(), endpoint)
    except Exception as error:  # e.g. OTEL_EXPORTER_OTLP_TIMEOUT=abc
        log.warning(f"tracing: cannot send spans to {endpoint}: {one_line(error)}")
        return None, None


class ReportingExporter:
    """An exporter that says, in one warning line, when spans could not be sent, and again
    only once they could be sent again."""

    def __init__(self, inner: SpanExporter, endpoint: str) -> None:
        self.inner = inner
        self.endpoint = endpoint
        self.failing = False
        self.lost = 0

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self.inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.failing = False
        else:
            self.lost += len(spans)
            if not self.failing:
                self.failing = True
                log.warning(
                    f"tracing: could not send {len(spans):,} spans to {self.endpoint} (not "
                    "reachable, or not an OTLP endpoint): they are kept in the history only"
                )
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class RunSpans:
    """The processor every span ends in: it counts a run's spans (a trace's), drops those past
    MAX_SPANS_PER_RUN, and passes the rest to batch processors for the history and the OTLP
    endpoint. A run's root span ending says how many of its spans were dropped."""

    def __init__(self, exporter: Any) -> None:
        self.exporter = exporter
        self.history: BatchSpanProcessor | None = None
        self.db: Any = None
        self.endpoint: BatchSpanProcessor | None = None
        self.runs: set[int] = set()  # the traces of the runs under way
        self.kept: dict[int, int] = {}
        self.dropped: dict[int, int] = {}
        self.lock = threading.Lock()

    def keep_in(self, db: BaseDb | None) -> None:
        """Send the spans that end from now on to `db`'s tables (None: to no history)."""
        from agno.tracing.exporter import DatabaseSpanExporter

        if db is self.db and self.history is not None:
            return
        old, self.history = self.history, None
        if old is not None:
            old.shutdown()
        self.db = db
        if db is not None:
            from parallel_workflow_runtime._store.history import create_trace_tables

            create_trace_tables(db)
            # Short write transactions: the run's own writes to the same SQLite file wait for
            # each (10,000 spans in one took longer than SQLite's 5 s wait, and a run was lost).
            self.history = batched(WithoutPayloads(DatabaseSpanExporter(db=db)), HISTORY_BATCH)
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
        for processor in (self.history, self.endpoint):
            if processor is not None:
                processor.on_end(span)

    def note_dropped(self, trace_id: int, count: int) -> None:
        with self.lock:
            self.dropped[trace_id] = self.dropped.get(trace_id, 0) + count

    def shutdown(self) -> None:
        for processor in (self.history, self.endpoint):
            if processor is not None:
                processor.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        done = True
        for processor in (self.history, self.endpoint):
            if processor is not None:
                done = processor.force_flush(timeout_millis) and done
        return done


# What Agno's spans carry of each step's input and output: the history holds those already,
# once each (history_db.py); in its spans they would be a copy of every step's data.
PAYLOADS = ("input.value", "input.mime_type", "output.value", "output.mime_type")


class WithoutPayloads:
    """The history's exporter: each span as it is, less PAYLOADS (in the batch's thread, not
    the run's). The OTLP endpoint gets them whole: that is where a user looks at them."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def export(self, spans: Any) -> Any:
        return self.inner.export([without_payloads(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def without_payloads(span: ReadableSpan) -> ReadableSpan:
    attributes = span.attributes or {}
    if not any(key in attributes for key in PAYLOADS):
        return span
    from opentelemetry.sdk.trace import ReadableSpan

    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes={k: v for k, v in attributes.items() if k not in PAYLOADS},
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


# The instrumentations whose spans say what the run did: Agno's (OpenInference's) and ours.
ESSENTIAL_SCOPES = frozenset({"openinference.instrumentation.agno", "parallel_workflow_runtime"})


def essential(span: ReadableSpan) -> bool:
    scope = span.instrumentation_scope
    return span.parent is None or (scope is not None and scope.name in ESSENTIAL_SCOPES)


def batched(exporter: Any, batch: int) -> BatchSpanProcessor:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The queue holds two runs' spans: none is dropped before RunSpans' own limit. Exported
    # every few seconds, or at the command's end (flush), rather than while a run's sources
    # start: the export's thread would take turns with them.
    return BatchSpanProcessor(
        exporter,
        max_queue_size=MAX_SPANS_PER_RUN * 2,
        max_export_batch_size=batch,
        schedule_delay_millis=EXPORT_SECONDS * 1000,
    )


def flush() -> None:
    """Write the process's last spans to the history, and send them to the endpoint waiting
    FLUSH_SECONDS at most: the end of a command, whose process ends next."""
    tracing = ACTIVE
    if tracing is None or tracing.spans is None:
        return
    spans = tracing.spans
    if spans.history is not None:
        spans.history.force_flush(int(FLUSH_SECONDS * 1000))
    if spans.endpoint is None:
        return
    endpoint = spans.endpoint
    done = threading.Event()

    def sending() -> None:
        endpoint.force_flush(int(FLUSH_SECONDS * 1000))
        done.set()

    # In a thread of its own: the exporter retries an endpoint that does not answer for
    # longer than its timeout, which its force_flush does not bound.
    threading.Thread(target=sending, name="tracing-flush", daemon=True).start()
    reporter = spans.exporter
    if not done.wait(FLUSH_SECONDS) and not getattr(reporter, "failing", False):
        where = getattr(reporter, "endpoint", "the OTLP endpoint")
        log.warning(
            f"tracing: could not send the spans to {where} within {FLUSH_SECONDS:g} s (not "
            "reachable, or not answering): they are kept in the history only"
        )


@contextlib.contextmanager
def run_root() -> Iterator[None]:
    """A workflow run, when traced, as a trace of its own: not a part of the HTTP request's
    that started it (FastAPI makes spans of its own), so that the trace is the run's, found
    by its run id in the history (`history show --trace`, /traces?run_id=...)."""
    if ACTIVE is None:
        yield
        return
    from opentelemetry import context

    token = context.attach(context.Context())
    try:
        yield
    finally:
        context.detach(token)


class AttemptTrace:
    """The span of one attempt at a source, or nothing when tracing is off."""

    def __init__(self, span: Any = None) -> None:
        self.span = span
        self.outcome = ""

    def ended(self, state: str, records: int | None, error: str | None) -> None:
        span = self.span
        if span is None:
            return
        self.outcome = state
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute(f"{ATTRIBUTE_PREFIX}.outcome", state)
        if records is not None:
            span.set_attribute(f"{ATTRIBUTE_PREFIX}.records", records)
        if error is not None:
            # OpenTelemetry's error.type: the class of the error, or what went wrong.
            span.set_attribute("error.type", error_type(state, error))
            span.set_status(Status(StatusCode.ERROR, error))

    def traceparent(self) -> str:
        """This attempt's context as a W3C traceparent, for a worker process ("": none)."""
        if self.span is None:
            return ""
        from opentelemetry.propagate import inject

        carrier: dict[str, str] = {}
        inject(carrier)
        return carrier.get("traceparent", "")


NO_TRACE = AttemptTrace()


def error_type(state: str, error: str) -> str:
    """error.type of a failed attempt: `timeout`, `cancelled`, or the exception's class as
    one_line wrote it ("... RuntimeError: no credentials" -> RuntimeError)."""
    if state in ("timed_out", "cancelled"):
        return "timeout" if state == "timed_out" else "cancelled"
    head = error.split(":", 1)[0].rsplit(" ", 1)[-1]
    return head if head.isidentifier() else "_OTHER"


@contextlib.contextmanager
def attempt_span(
    source: Source, attempt: int, executor: str, waited: float
) -> Iterator[AttemptTrace]:
    """The span of attempt number `attempt` at `source`, current while it runs (so that the
    source's own spans nest under it), or NO_TRACE when tracing is off."""
    tracing = ACTIVE
    if tracing is None:
        yield NO_TRACE
        return
    attributes: dict[str, str | int | float] = {
        f"{ATTRIBUTE_PREFIX}.source.id": source.id,
        f"{ATTRIBUTE_PREFIX}.source.name": source.name,
        f"{ATTRIBUTE_PREFIX}.source.kind": source.kind,
        f"{ATTRIBUTE_PREFIX}.executor": executor,
        f"{ATTRIBUTE_PREFIX}.attempt": attempt,
        f"{ATTRIBUTE_PREFIX}.wait_seconds": round(waited, 6),
    }
    with tracing.tracer.start_as_current_span(
        f"{source.id} attempt {attempt}",
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        trace = AttemptTrace(span)
        try:
            yield trace
        except BaseException:
            # Ctrl-C, or the run cancelled: the attempt did not end by itself.
            if not trace.outcome:
                trace.ended("cancelled", None, "interrupted")
            raise


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
    with _SETUP:
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
    from opentelemetry.propagate import extract

    tracer, _ = worker_tracer()
    collected = WorkerSpans()
    token = _COLLECTED.set(collected)
    try:
        with tracer.start_as_current_span(
            f"{source.id} run in a worker",
            context=extract({"traceparent": traceparent}),
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
    tracing = ACTIVE
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
