"""parallel-workflow-runtime: the engine behind projects rendered from the parallel-workflow
Copier template.

A rendered project holds what its user owns (each workflow's config.yaml, workflow.py and
sources) and depends on this package for the rest. What a project's code may import is here,
at the package's top, and nowhere else: `from parallel_workflow_runtime import Source`. The
sub-packages (`_cli`, `_serve`, `_execution`, ...) are private: they change without notice
(decision 0018 draws them). The modules that projects imported before runtime 0.11.0
(`parallel_workflow_runtime.config`, `.results`, `.steps`, ...) answered with a
DeprecationWarning in 0.11 and are gone since 0.12.0.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from parallel_workflow_runtime._cli.entry import Project

if TYPE_CHECKING:
    from parallel_workflow_runtime._cli.check_sources import sample_of
    from parallel_workflow_runtime._connectors.connectors import environment_variables
    from parallel_workflow_runtime._connectors.profile import RowProfile
    from parallel_workflow_runtime._connectors.read_context import Rows
    from parallel_workflow_runtime._connectors.sample_data import summarise_sample
    from parallel_workflow_runtime._core.config import (
        PARALLEL_STEP,
        ConfigError,
        Source,
        SourceLimits,
        WorkflowConfig,
        load_config,
    )
    from parallel_workflow_runtime._core.registry import WorkflowEntry, discover
    from parallel_workflow_runtime._core.results import (
        Aggregation,
        SourceFunction,
        SourceResult,
        SourceSummary,
        aggregation_of,
    )
    from parallel_workflow_runtime._execution.steps import (
        SOURCE_FUNCTION_NAMES,
        aggregation_step,
        preparation_step,
        report_step,
        source_steps,
    )
    from parallel_workflow_runtime._serve.http_app import build_app
    from parallel_workflow_runtime._store.history import open_history

# The module of each name below: imported when the name is first read, not with the package,
# so that the command line's `--help` (which imports the project's package, and so this one)
# does not wait for pydantic, Agno and dlt (PEP 562's module __getattr__).
MODULE_OF = {
    # A workflow.py: its config and its steps.
    "PARALLEL_STEP": "_core.config",
    "WorkflowConfig": "_core.config",
    "load_config": "_core.config",
    "preparation_step": "_execution.steps",
    "source_steps": "_execution.steps",
    "aggregation_step": "_execution.steps",
    "report_step": "_execution.steps",
    # A source: what it is given and what it returns.
    "ConfigError": "_core.config",
    "Source": "_core.config",
    "SourceLimits": "_core.config",
    "SourceFunction": "_core.results",
    "SourceSummary": "_core.results",
    "SourceResult": "_core.results",
    "Aggregation": "_core.results",
    "aggregation_of": "_core.results",
    "Rows": "_connectors.read_context",
    "RowProfile": "_connectors.profile",
    "summarise_sample": "_connectors.sample_data",
    # A project's tests: its workflows, their sources' modules, samples and variables, the
    # history and the served app.
    "WorkflowEntry": "_core.registry",
    "discover": "_core.registry",
    "SOURCE_FUNCTION_NAMES": "_execution.steps",
    "sample_of": "_cli.check_sources",
    "environment_variables": "_connectors.connectors",
    "open_history": "_store.history",
    "build_app": "_serve.http_app",
}

__all__ = [
    "PARALLEL_STEP",
    "SOURCE_FUNCTION_NAMES",
    "Aggregation",
    "ConfigError",
    "Project",
    "RowProfile",
    "Rows",
    "Source",
    "SourceFunction",
    "SourceLimits",
    "SourceResult",
    "SourceSummary",
    "WorkflowConfig",
    "WorkflowEntry",
    "__version__",
    "aggregation_of",
    "aggregation_step",
    "build_app",
    "discover",
    "environment_variables",
    "load_config",
    "open_history",
    "preparation_step",
    "report_step",
    "sample_of",
    "source_steps",
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


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
