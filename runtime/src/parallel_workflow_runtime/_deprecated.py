"""The import paths of runtime 0.10.0 and before, which projects' code used
(`from parallel_workflow_runtime.config import WorkflowConfig`): each still answers with the
same objects, and a DeprecationWarning that names the import to use instead, until 0.12.0.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

# The release that removes the old paths: the one after the release that made them private.
REMOVED_IN = "0.12.0"


def moved(old: str, new: str) -> Callable[[str], Any]:
    """The module `__getattr__` of the old module `old`, whose names are now `new`'s."""

    def __getattr__(name: str) -> Any:
        try:
            value = getattr(importlib.import_module(new), name)
        except AttributeError:
            raise AttributeError(f"module {old!r} has no attribute {name!r}") from None
        warnings.warn(
            f"{old} is private since parallel-workflow-runtime 0.11.0 and goes in {REMOVED_IN}:"
            f" {instead(name)}",
            DeprecationWarning,
            stacklevel=2,
        )
        return value

    return __getattr__


def instead(name: str) -> str:
    """What to import instead: the public name, or that there is none."""
    import parallel_workflow_runtime

    if name in parallel_workflow_runtime.__all__:
        return f"use `from parallel_workflow_runtime import {name}`"
    return (
        f"{name} is not part of its public API (parallel_workflow_runtime.__all__);"
        " copy what you need into your project"
    )
