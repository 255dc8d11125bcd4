"""Traces: each source attempt an OpenTelemetry span, under the span of its Agno step.

Off unless asked for (settings.yaml's `tracing: true`, <PREFIX>TRACING, `run --trace`,
`serve --trace`): then `enable(db)` sets up, once per process,

- a TracerProvider, and Agno's own instrumentation (OpenInference's AgnoInstrumentor, what
  `AgentOS(tracing=True)` uses), which gives the workflow, the Parallel block and each step
  a span;
- `RunSpans` (run_spans.py), the processor that every span ends in: it keeps at most
  MAX_SPANS_PER_RUN of a run (a source that makes 100,000 spans costs the run nothing more,
  and the run's last span says in one warning line how many were dropped) and hands them to
  the history, a run's all at once when it ends, written by a thread of their own in one
  transaction (span_history.py: Agno's tables agno_traces and agno_spans, SQLite or
  PostgreSQL) and, when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set, in
  batches to that OTLP endpoint over HTTP, with the standard OTEL_* variables honoured
  (span_exporters.py).

A tracer provider that the user's code set already is kept: the spans go to it, and the
history gets them too if it is the SDK's (which takes another processor); a warning says so.

A source on `process` or `dask` runs in another process: its attempt's context travels with
it as a W3C `traceparent`, the worker starts the source's span under it, and the spans made
there (the user's own among them) come back with the source's outcome, to go where the
parent's spans go (`in_worker`, `adopt`: worker_spans.py). So a worker needs no exporter, no
database and no route to the OTLP endpoint: a Dask worker on another machine included.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from parallel_workflow_runtime._core.results import one_line
from parallel_workflow_runtime._observe.run_spans import RunSpans
from parallel_workflow_runtime._observe.span_exporters import ReportingExporter

if TYPE_CHECKING:
    from agno.db.base import BaseDb
    from opentelemetry.trace import Tracer

    from parallel_workflow_runtime._core.config import Source
    from parallel_workflow_runtime._store.history_opening import HistoryOpening

log = logging.getLogger("parallel_workflow_runtime")

# How long the end of a command waits for its spans to reach the endpoint, and the history
# (which may wait for the database: SQLite's lock, a PostgreSQL server).
FLUSH_SECONDS = 5.0
HISTORY_FLUSH_SECONDS = 60.0
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
# Setting up the process's tracing, or a worker's (worker_spans.worker_tracer): one at a time.
SETUP_LOCK = threading.Lock()


def wanted(flag: bool, setting: bool) -> bool:
    """Whether a command traces: its `--trace`, else the setting (settings.yaml or
    <PREFIX>TRACING)."""
    return flag or setting


def enable(db: BaseDb | HistoryOpening | None, service: str) -> Tracing:
    """Trace from now on in this process, into `db` (the history, or `run`'s history still
    opening) and the OTLP endpoint if one is set; once set up, a later call only moves the
    history to `db`. ConfigError if OpenTelemetry is not installed."""
    global ACTIVE
    with SETUP_LOCK:
        if ACTIVE is None:
            ACTIVE = _set_up(service)
        if ACTIVE.spans is not None:
            ACTIVE.spans.keep_in(db)
        return ACTIVE


def import_modules() -> None:
    """What `enable` imports, imported now: `run --trace` does it before the history's thread
    starts importing (history_opening.py), which would take turns with it for the GIL while
    the run waits, and then does its own while the sources run. Nothing if OpenTelemetry is
    not installed: `enable` says so."""
    with contextlib.suppress(ImportError):
        import_sdk_without_psutil()
        import openinference.instrumentation.agno  # noqa: F401
        import opentelemetry.sdk.trace  # noqa: F401


def _set_up(service: str) -> Tracing:
    try:
        import_sdk_without_psutil()
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


def import_sdk_without_psutil() -> None:
    """OpenTelemetry's SDK imports psutil (a fifth of what tracing imports) for one resource
    detector, `process`, which is not among the default ones: psutil is imported when that
    detector first asks for it instead."""
    if "opentelemetry.sdk.resources" in sys.modules or "psutil" in sys.modules:
        return
    installed = importlib.util.find_spec("psutil") is not None
    sys.modules["psutil"] = None  # type: ignore[assignment]  # `import psutil` fails
    try:
        import opentelemetry.sdk.resources as resources
    finally:
        if "psutil" in sys.modules and sys.modules["psutil"] is None:
            del sys.modules["psutil"]
    if installed:
        resources.psutil = LazyModule("psutil")


class LazyModule(types.ModuleType):
    """A module imported when one of its attributes is first read."""

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(self.__name__), name)


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


def flush() -> None:
    """The process's spans into the history (most are there already: a run's are written as
    it ends), waiting HISTORY_FLUSH_SECONDS at most, and sent to the endpoint, waiting
    FLUSH_SECONDS at most: the end of a command, whose process ends next."""
    tracing = ACTIVE
    if tracing is None or tracing.spans is None:
        return
    spans = tracing.spans
    if spans.history is not None and not spans.history.flush(HISTORY_FLUSH_SECONDS):
        log.warning(
            f"tracing: the run's spans were not written to the history within "
            f"{HISTORY_FLUSH_SECONDS:g} s: the history's database is not answering"
        )
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
        attributes: dict[str, str | int] = {f"{ATTRIBUTE_PREFIX}.outcome": state}
        if records is not None:
            attributes[f"{ATTRIBUTE_PREFIX}.records"] = records
        if error is not None:
            # OpenTelemetry's error.type: the class of the error, or what went wrong.
            attributes["error.type"] = error_type(state, error)
        span.set_attributes(attributes)  # at once: one turn of the span's lock
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, error))

    def traceparent(self) -> str:
        """This attempt's context as a W3C traceparent, for a worker process ("": none)."""
        if self.span is None:
            return ""
        # As W3C's propagator writes it (in_worker reads it with that one), without the
        # process's propagators and a carrier for each attempt.
        context = self.span.get_span_context()
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


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
