"""parallel-workflow-runtime: the engine behind projects rendered from the parallel-workflow
Copier template.

A rendered project holds what its user owns (each workflow's config.yaml, workflow.py and
sources) and depends on this package for the rest: the command line, config loading,
execution limits and executors, results, the report, timelines and pages, the run history,
serving and the bench. What a project's code imports from here, its package re-exports:
`from <package> import Source, SourceSummary`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .project import Project

if TYPE_CHECKING:
    from .config import ConfigError, Source, SourceLimits
    from .connectors import Rows
    from .profile import RowProfile
    from .results import Aggregation, SourceResult, SourceSummary, aggregation_of
    from .sample_data import summarise_sample

# The module of each name below: imported when the name is first read, not with the package,
# so that the command line's `--help` (which imports the project's package, and so this one)
# does not wait for pydantic, Agno and dlt (PEP 562's module __getattr__).
MODULE_OF = {
    "Aggregation": "results",
    "ConfigError": "config",
    "RowProfile": "profile",
    "Rows": "connectors",
    "Source": "config",
    "SourceLimits": "config",
    "SourceResult": "results",
    "SourceSummary": "results",
    "aggregation_of": "results",
    "summarise_sample": "sample_data",
}

__all__ = [
    "Aggregation",
    "ConfigError",
    "Project",
    "RowProfile",
    "Rows",
    "Source",
    "SourceLimits",
    "SourceResult",
    "SourceSummary",
    "__version__",
    "aggregation_of",
    "summarise_sample",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("parallel-workflow-runtime")  # runtime/VERSION, when it was built
    if name not in MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{MODULE_OF[name]}", __name__), name)
    globals()[name] = value  # read once: the next read finds it without this function
    return value
