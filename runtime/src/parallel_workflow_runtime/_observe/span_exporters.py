"""The exporters behind RunSpans (run_spans.py): the OTLP endpoint's, which says in one line
when spans could not be sent (ReportingExporter), and the history's, which leaves out the
steps' inputs and outputs that the history holds already (WithoutPayloads).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("parallel_workflow_runtime")


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
