"""Source `analytics_data`.

Its processing and nothing else; sources/__init__.py says what `run` receives and returns.
"""

from __future__ import annotations

from example_project import Source, SourceSummary, summarise_sample


def run(source: Source) -> SourceSummary:
    """Summarise this source's sample records; replace with the source's real processing."""
    # For example:
    #     rows = warehouse.query(source.settings["table"])
    #     return SourceSummary(records=len(rows), details={"table": source.settings["table"]})
    return summarise_sample(source)
