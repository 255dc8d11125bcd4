"""Agno workflows that process named data sources in parallel.

Your code lives in `workflows/<workflow>/`: `config.yaml` lists the sources, `workflow.py`
builds the Agno workflow, `sources/<id>.py` holds each source's `run(source)`. This module is
what that code imports, e.g. `from <package> import Source, SourceSummary`; `_runtime/` is
the template's engine behind it.
"""

from ._runtime.config import Source, SourceLimits
from ._runtime.results import Aggregation, SourceResult, SourceSummary, aggregation_of
from ._runtime.sample_data import summarise_sample

__all__ = [
    "Aggregation",
    "Source",
    "SourceLimits",
    "SourceResult",
    "SourceSummary",
    "aggregation_of",
    "summarise_sample",
]
