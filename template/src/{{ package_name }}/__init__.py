"""Agno workflows that process named data sources in parallel.

Your code lives in `workflows/<workflow>/`: `config.yaml` lists the sources, `workflow.py`
builds the Agno workflow, `sources/<id>.py` holds each source's `run`. The engine is
the package parallel-workflow-runtime; this module re-exports what your code imports from it,
e.g. `from <package> import Source, SourceSummary`.
"""

from typing import TYPE_CHECKING, Any

from .registry import project

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    # The runtime's names are imported when your code first reads them, not when the package
    # is imported: the command line's `--help` and `list` then answer without waiting for
    # pydantic and Agno. (Python calls this for a name the module does not define.)
    if name in __all__:
        import parallel_workflow_runtime

        return getattr(parallel_workflow_runtime, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
