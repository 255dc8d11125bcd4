"""Kept worker processes run the workflow code that is on disk now, not the code they
imported for an earlier run.

A worker of the process pool lives for many runs under `serve`, and starts from a fork
server that imported the workflows' modules before it (process_pool.py, warm_start.py):
either way, a source module edited since would run its old code. So each attempt sent to a
worker carries its function pickled (by reference: module and name) and the project's
workflows folder, and the worker, before it unpickles the function (which imports or finds
its module), compares the workflows' Python files with what they were when it last looked
(their size, modification time and inode, as `make` would). If any changed, were added or
removed, every module loaded from that folder is dropped from `sys.modules`, and unpickling
the function imports the new code: the workflow's helpers, its workflow.py and its other
sources with it, all of one version.

Why not restart the pool when the code changes: the workers of a pool are shared by the
runs in progress, which would have to finish on the old pool while new ones start on another.
Why not `importlib.reload`: it reloads one module, while a source imports helpers that
changed too. What is dropped is only the workflows' code: the runtime, the project's
package and registry, and the libraries they import stay imported, so that an edit costs
the import of the workflows' own modules, once per worker.

The look is taken before the function is unpickled: a file edited while the worker imports
it is seen changed at the next attempt, never missed. It costs a stat per Python file of
the workflows' packages (folders with an `__init__.py`, so not their data folders): well
under a millisecond for a project of tens of sources.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
from typing import Any

from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.results import one_line
from parallel_workflow_runtime._execution.executor_base import Outcome, run_elsewhere

# The size, modification time and inode of each Python file under a workflows folder.
CodeState = frozenset[tuple[str, int, int, int]]

# In this process: what the code under each workflows folder was when it was last looked at
# (set in a fork server before it imports the workflows' modules, inherited by its workers).
SEEN: dict[str, CodeState] = {}


def code_state(root: str) -> CodeState:
    """The Python files of the packages under `root` (itself a package), as they are now."""
    found: set[tuple[str, int, int, int]] = set()
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:  # removed meanwhile
            continue
        names = {entry.name for entry in entries}
        if folder != root and "__init__.py" not in names:
            continue  # not a package: a data folder, say, whose files no import reads
        for entry in entries:
            if entry.name.endswith(".py") and entry.is_file():
                stat = entry.stat()
                found.add((entry.path, stat.st_size, stat.st_mtime_ns, stat.st_ino))
            elif entry.is_dir() and entry.name != "__pycache__":
                folders.append(entry.path)
    return frozenset(found)


def look(root: str) -> None:
    """Note the code under `root` as it is now; drop the modules loaded from it if it is
    not what it was at the last look."""
    if not root:
        return
    now = code_state(root)
    before = SEEN.get(root)
    SEEN[root] = now
    if before is not None and before != now:
        forget(root)


def forget(root: str) -> None:
    """Drop every module loaded from under `root`: the next import reads it anew."""
    inside = os.path.join(os.path.realpath(root), "")
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and os.path.realpath(path).startswith(inside):
            del sys.modules[name]
    importlib.invalidate_caches()


def run_fresh(
    pickled: bytes, root: str, source: Source, max_details_bytes: int, traceparent: str = ""
) -> Outcome:
    """Runs in a worker process: `run_elsewhere` of the pickled function, as its module is
    on disk now (see above)."""
    look(root)
    try:
        function: Any = pickle.loads(pickled)
    except BaseException as error:  # the module's new code does not import, say
        return False, f"cannot run in a worker process: {one_line(error)}", ""
    return run_elsewhere(function, source, max_details_bytes, traceparent)
