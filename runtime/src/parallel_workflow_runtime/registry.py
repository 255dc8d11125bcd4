"""The workflow registry: every workflow of the project, by workflow id.

Every folder under `workflows/` that holds a `config.yaml` is a workflow, and its `workflow.py`
defines `get_<folder name>()`, e.g. `workflows/parallel_workflow/workflow.py` defines
`get_parallel_workflow()`. Adding such a folder registers it: nothing here needs editing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import WorkflowConfig, load_config
from .project import current
from .usage import ConfigError

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
