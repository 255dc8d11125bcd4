"""Imported by the fork server only, the one module it is told to preload (warm_start.py).

multiprocessing's fork server imports each module named to it, and stops for good if one
raises anything but ImportError: the project's modules, which may raise anything, are not
named to it. This module imports them instead, as the environment variable that
warm_start.py sets while it starts the fork server says (the workflows folder, the modules,
the workflow whose sources to import): it notes the code under that folder (fresh_code.py),
then imports each module, whatever any of them raises. The worker that runs a source whose
module failed here imports it again, and says what fails.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from collections.abc import Sequence

from parallel_workflow_runtime._execution import fresh_code
from parallel_workflow_runtime._execution.warm_start import ORDER_ENV


def warm_up(order: dict[str, object]) -> None:
    if order.get("stdout_to_stderr"):  # `run --json`: stdout carries the document alone
        os.dup2(2, 1)
    root = order.get("root")
    if isinstance(root, str) and root:  # before any module of it is imported: edits are seen
        fresh_code.SEEN[root] = fresh_code.code_state(root)
    modules = order.get("modules")
    import_each([str(name) for name in modules] if isinstance(modules, list) else [])
    workflow = order.get("workflow")
    if isinstance(workflow, str):  # once the project's package is imported
        with contextlib.suppress(BaseException):
            import_each(sources_of(workflow))


def import_each(modules: Sequence[str]) -> None:
    for name in modules:
        with contextlib.suppress(BaseException):
            importlib.import_module(name)


def sources_of(workflow: str) -> list[str]:
    """The modules of the sources of `workflow` (its id; "": the default workflow)."""
    from parallel_workflow_runtime._core.registry import default_entry, discover

    entries = discover()
    entry = entries[workflow] if workflow else default_entry(entries)
    return [f"{entry.package}.sources.{source.id}" for source in entry.config.sources]


# Taken out of the environment: the workers the fork server forks do not need it.
_order = os.environ.pop(ORDER_ENV, None)
if _order is not None:
    with contextlib.suppress(BaseException):
        warm_up(json.loads(_order))
