"""The registry finds every workflow folder and builds each workflow from its config.yaml."""

from __future__ import annotations

import dataclasses

import pytest
from agno.workflow import Parallel, Step
from example_project import Source

from parallel_workflow_runtime.config import ConfigError
from parallel_workflow_runtime.registry import WorkflowEntry, discover


def test_the_registry_maps_each_workflow_id_to_its_factory(entry: WorkflowEntry) -> None:
    assert entry.folder == entry.config.workflow_id.replace("-", "_")
    assert entry.factory.__name__ == f"get_{entry.folder}"
    assert discover()[entry.config.workflow_id] == entry


def test_each_workflow_has_one_parallel_step_per_configured_source(entry: WorkflowEntry) -> None:
    workflow = entry.factory()
    config = entry.config

    assert workflow.id == config.workflow_id
    assert isinstance(workflow.steps, list)
    names = [step.name for step in workflow.steps if isinstance(step, Step | Parallel)]
    # The template's four steps in this order; steps of your own may stand between them.
    template_steps = ["Preparation", "ParallelProcessing", "Aggregation", "Report"]
    assert [name for name in names if name in template_steps] == template_steps
    (parallel,) = [step for step in workflow.steps if isinstance(step, Parallel)]
    branches = [step.name for step in parallel.steps if isinstance(step, Step)]
    assert branches == [source.id for source in config.sources]


def test_a_source_without_a_module_is_a_config_error(entry: WorkflowEntry) -> None:
    folder = entry.config.path.parent
    missing = Source(id="not_written_yet", name="Not written yet", settings={}, folder=folder)
    config = dataclasses.replace(entry.config, sources=(*entry.config.sources, missing))

    with pytest.raises(ConfigError, match=r"has no module sources/not_written_yet\.py"):
        entry.factory(config=config)
