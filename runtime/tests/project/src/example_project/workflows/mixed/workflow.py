"""The mixed workflow: one Agno Step per source of config.yaml, all in one Parallel.

    Preparation ──► ParallelProcessing ──► Aggregation ──► Report
                    ├─ one Step per source in config.yaml,
                    ├─ each running sources/<source id>.py,
                    └─ at most max_concurrency at a time

Add a step of your own to `steps=[...]` where it belongs (README.md, "Add a step"). Run it with
`asyncio.run(workflow.arun(input=...))`: the sources are asyncio tasks, which Agno's
synchronous `run` cannot drive.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from agno.db.base import BaseDb
from agno.models.base import Model
from agno.workflow import Parallel, Workflow

from parallel_workflow_runtime import (
    PARALLEL_STEP,
    SourceFunction,
    WorkflowConfig,
    aggregation_step,
    load_config,
    preparation_step,
    report_step,
    source_steps,
)

CONFIG_PATH = Path(__file__).with_name("config.yaml")


def get_mixed(
    db: BaseDb | None = None,
    config: WorkflowConfig | None = None,
    report_model: Model | str | None = None,
    source_functions: Mapping[str, SourceFunction] | None = None,
) -> Workflow:
    """Build the workflow from config.yaml.

    `db` records every run and its session state (the run history); None keeps nothing.
    The others are for tests and the bench: `config` instead of config.yaml's, `report_model`
    instead of the configured one ("" for the offline report), and `source_functions` to run
    instead of some sources' own `run`, by source id.
    """
    config = config or load_config(CONFIG_PATH)
    return Workflow(
        id=config.workflow_id,
        name=config.name,
        steps=[
            preparation_step(config),
            Parallel(*source_steps(config, source_functions), name=PARALLEL_STEP),
            aggregation_step(config),
            report_step(config, report_model),
        ],
        db=db,
        telemetry=False,  # Agno reports usage by default; this project stays offline
    )
