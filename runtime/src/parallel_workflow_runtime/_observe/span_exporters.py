"""The exporter behind RunSpans' OTLP endpoint (run_spans.py), which says in one line when
spans could not be sent (ReportingExporter). The history's spans are written by
span_history.py.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
