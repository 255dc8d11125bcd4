"""The fork server that the process pool's workers start from (process_pool.py).

A worker started with `spawn` is a new interpreter that imports Python, this package and
the project's modules before its first task: about a second per worker, paid again by
every worker that replaces one stopped for a timeout. Instead the workers come from
multiprocessing's fork server, a process started once (per `run`, per `serve`) that imports
all that a single time, and then forks a worker on demand in milliseconds, with everything
imported.

fork's danger is copying a process that runs threads (a lock that another thread held stays
locked in the copy for ever). The fork server is a fresh interpreter of its own, started
with fork+exec, that runs no thread: it imports and forks, nothing else. The command's own
process, which runs threads (the event loop's, Pebble's, uvicorn's), is never forked.

`start_fork_server` starts it, without waiting for its imports: `run --executor process`
first thing (cli.py, `start_for_run`: the fork server reads config.yaml itself), any other
`run` as soon as it has read that some source runs on `process` (running.py), so that the
fork server imports while the run itself starts (Agno, the history: a second); `serve`
before its pools start. What it imports first
(forkserver_preload.py) notes the workflows' code as it is on disk before importing any of
it, so that a worker sees a later edit and imports the new code (fresh_code.py).

It lives as long as a pool uses it: the last pool to close stops it (a worker whose fork
server is gone looks dead to multiprocessing, so it never stops before). Whatever is left
(a run stopped before its pool started) ends with the command: children.py does not spare
it, and its workers are its descendants.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

PRELOAD_MODULE = "parallel_workflow_runtime._execution.forkserver_preload"
# What a worker runs before its first task: imported by the fork server before the project.
WORKER_MODULES = (
    "parallel_workflow_runtime._execution.process_pool",
    "parallel_workflow_runtime._execution.fresh_code",
)
# The environment variable that carries what to import to forkserver_preload.py: the fork
# server is started with this process's environment, and is the only process started then.
ORDER_ENV = "PARALLEL_WORKFLOW_RUNTIME_WARM_IMPORTS"

_lock = threading.Lock()
_pools = 0  # the pools that use the fork server now


def available() -> bool:
    """Whether this system has a fork server (not Windows)."""
    return "forkserver" in multiprocessing.get_all_start_methods()


def start_fork_server(
    root: str = "",
    modules: Sequence[str] = (),
    workflow: str | None = None,
    stdout_to_stderr: bool = False,
) -> None:
    """Start the fork server unless it runs, importing the runtime's worker modules, then
    `modules`, the code under the workflows folder `root` noted first; with `workflow` (a
    workflow id, "" for the default one) also the modules of all that workflow's sources,
    which the fork server finds itself; with `stdout_to_stderr`, its file descriptor 1 (and
    so its workers') is its stderr, as `run --json` has its own while the sources run
    (commands.printed_to_stderr), which it starts before. Returns at once."""
    if not available():
        return
    with _lock:
        if fork_server_pid() is not None:
            return  # a module it lacks is imported by the worker that needs it
        order = json.dumps(
            {
                "root": root,
                "modules": [*WORKER_MODULES, *modules],
                "workflow": workflow,
                "stdout_to_stderr": stdout_to_stderr,
            }
        )
        # The modules are imported by forkserver_preload.py, which survives any of them
        # failing: the fork server's own loop does not (only ImportError is caught there).
        multiprocessing.forkserver.set_forkserver_preload([PRELOAD_MODULE])
        os.environ[ORDER_ENV] = order
        try:
            multiprocessing.forkserver.ensure_running()
        finally:
            del os.environ[ORDER_ENV]


def start_for_run(workflow: str | None, stdout_to_stderr: bool = False) -> None:
    """`run --executor process`, first thing (cli.py): the fork server reads the workflow's
    config.yaml and imports its sources while this process imports Agno and the rest."""
    from parallel_workflow_runtime._core.project import current

    project = current()
    root = str(project.workflows_dir.resolve())
    start_fork_server(
        root, [project.package], workflow=workflow or "", stdout_to_stderr=stdout_to_stderr
    )


def fork_server_pid() -> int | None:
    """The fork server's process id while it runs; its state is forgotten once it is gone
    (another's cleanup reaped it: multiprocessing would then fail to start another)."""
    server = _server()
    pid: int | None = server._forkserver_pid
    if pid is None:
        return None
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == 0:
            return pid
    except ChildProcessError:  # reaped elsewhere (children.py's stop)
        pass
    _forget(server)
    return None


def pool_started() -> None:
    global _pools
    with _lock:
        _pools += 1


def pool_closed() -> None:
    """A pool that used the fork server is closed, its workers gone: the last one stops it."""
    global _pools
    with _lock:
        _pools -= 1
        if _pools > 0:
            return
        server = _server()
        pid = server._forkserver_pid
        if pid is None:
            return
        # Not only the "alive" pipe closed, as multiprocessing's own stop does: a process a
        # source forked holds it too, and the fork server would wait for that one.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        _forget(server)


def _server() -> Any:
    return multiprocessing.forkserver._forkserver


def _forget(server: Any) -> None:
    """multiprocessing's ForkServer._stop, for a fork server that is gone already."""
    if server._forkserver_alive_fd is not None:
        with contextlib.suppress(OSError):
            os.close(server._forkserver_alive_fd)
    address = server._forkserver_address
    if address is not None and not multiprocessing.util.is_abstract_socket_namespace(address):
        with contextlib.suppress(OSError):
            os.unlink(address)
    server._forkserver_alive_fd = None
    server._forkserver_address = None
    server._forkserver_pid = None
