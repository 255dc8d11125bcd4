"""The workflow registry: every workflow of the project, by workflow id.

Every folder under `workflows/` that holds a `config.yaml` is a workflow, and its `workflow.py`
defines `get_<folder name>()`, e.g. `workflows/parallel_workflow/workflow.py` defines
`get_parallel_workflow()`. Adding such a folder registers it: nothing here needs editing.

The commands that run one workflow (`run`, `bench`) take the only one there is, else
settings.yaml's `default_workflow`, which the template sets to the first workflow rendered:
adding a second workflow leaves every `run` without --workflow running the first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from parallel_workflow_runtime._core.config import WorkflowConfig, load_config
from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.settings import load_settings
from parallel_workflow_runtime._core.usage import ConfigError, UsageError

if TYPE_CHECKING:
    from agno.workflow import Workflow


@dataclass(frozen=True)
class WorkflowEntry:
    """A discovered workflow; its config is read, its code (and Agno) imported only on use."""

    folder: str
    config: WorkflowConfig

    @property
    def package(self) -> str:
        """The workflow's Python package, e.g. `<package>.workflows.<folder>`."""
        return f"{current().package}.workflows.{self.folder}"

    @property
    def factory(self) -> Callable[..., Workflow]:
        """`get_<folder>` from the workflow's workflow.py."""
        if not (self.config.path.parent / "workflow.py").is_file():
            raise ConfigError(f"workflows/{self.folder} has no workflow.py")
        module = importlib.import_module(f"{self.package}.workflow")
        factory: Callable[..., Workflow] | None = getattr(module, f"get_{self.folder}", None)
        if factory is None:
            raise ConfigError(f"workflows/{self.folder}/workflow.py defines no get_{self.folder}()")
        return factory


def discover() -> dict[str, WorkflowEntry]:
    """All workflows under `workflows/`, by workflow id, in folder order."""
    entries: dict[str, WorkflowEntry] = {}
    for config_path in sorted(current().workflows_dir.glob("*/config.yaml")):
        entry = WorkflowEntry(folder=config_path.parent.name, config=load_config(config_path))
        other = entries.get(entry.config.workflow_id)
        if other is not None:
            raise ConfigError(
                f"workflow id {entry.config.workflow_id!r} is used by both "
                f"workflows/{other.folder} and workflows/{entry.folder}"
            )
        entries[entry.config.workflow_id] = entry
    return entries


def default_entry(entries: dict[str, WorkflowEntry]) -> WorkflowEntry:
    """The workflow a command runs without --workflow: settings.yaml's `default_workflow`, or
    the only one there is. UsageError when there are several and no default; ConfigError
    when the default is not one of them (a renamed workflow_id, say), even if there is only
    one: settings.yaml says something wrong, and running another workflow would hide it."""
    default = load_settings().default_workflow
    known = ", ".join(entries) or "none"
    if default is not None:
        if default not in entries:
            raise ConfigError(
                f"{current().settings_path}: default_workflow {default!r} is not a workflow"
                f" of this project; known: {known}"
            )
        return entries[default]
    if len(entries) == 1:
        return next(iter(entries.values()))
    if not entries:
        raise ConfigError(
            f"no workflows: no folder of {current().workflows_dir} holds a config.yaml"
        )
    raise UsageError(
        f"choose a workflow with --workflow, or set default_workflow in settings.yaml: {known}"
    )
