"""Agno workflows that process named data sources in parallel.

Your code lives in `workflows/<workflow>/`: `config.yaml` lists the sources, `workflow.py`
builds the Agno workflow, `sources/<id>.py` holds each source's `run`. The engine is
the package parallel-workflow-runtime; this module re-exports what your code imports from it,
e.g. `from <package> import Source, SourceSummary`.
"""

from parallel_workflow_runtime import (
    Aggregation,
    RowProfile,
    Rows,
    Source,
    SourceLimits,
    SourceResult,
    SourceSummary,
    aggregation_of,
    summarise_sample,
)

from .registry import project

__all__ = [
    "Aggregation",
    "RowProfile",
    "Rows",
    "Source",
    "SourceLimits",
    "SourceResult",
    "SourceSummary",
    "aggregation_of",
    "project",
    "summarise_sample",
]
