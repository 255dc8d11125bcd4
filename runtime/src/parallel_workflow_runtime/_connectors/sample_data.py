"""The demo's stand-in for real data: each source's sample CSV and a simulated I/O delay.

Every module in a workflow's sources/ calls `summarise_sample` until you replace it with the
source's real processing; once none does, the workflow's data/ folder can go.
"""

from __future__ import annotations

import csv
import time
from collections import Counter

from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.results import SourceSummary


def summarise_sample(source: Source) -> SourceSummary:
    """Count and summarise the records in the source's `data_file` (record_id, region, amount)."""
    with source.path("data_file").open(encoding="utf-8", newline="") as data:
        rows = list(csv.DictReader(data))
    # Stands in for the network or database time of a real source (`latency_seconds`), so
    # that the speed-up of running the sources in parallel is visible in the demo.
    time.sleep(float(source.settings.get("latency_seconds", 0)))
    regions = Counter(row["region"] for row in rows)
    return SourceSummary(
        records=len(rows),
        details={
            "amount_total": round(sum(float(row["amount"]) for row in rows), 2),
            "records_by_region": dict(regions.most_common()),
        },
    )
