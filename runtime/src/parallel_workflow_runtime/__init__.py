"""parallel-workflow-runtime: the engine behind projects rendered from the parallel-workflow
Copier template.

A rendered project holds what its user owns (each workflow's config.yaml, workflow.py and
sources) and depends on this package for the rest: the command line, config loading,
execution limits and executors, results, the report, timelines and pages, the run history,
serving and the bench. What a project's code imports from here, its package re-exports:
`from <package> import Source, SourceSummary`.
"""

from importlib.metadata import version

from .config import ConfigError, Source, SourceLimits
from .connectors import Rows
from .profile import RowProfile
from .project import Project
from .results import Aggregation, SourceResult, SourceSummary, aggregation_of
from .sample_data import summarise_sample

__version__ = version("parallel-workflow-runtime")  # runtime/VERSION, when it was built

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
