"""The processes that sources start do not outlive the command that ran them.

A source may start programs (`subprocess.Popen`), fork (`os.fork()`), or start a program in a
session of its own (`setsid`), and then return, fail or time out without stopping them. Left
alone, such a process runs on after `run` has exited, holding the history file open, and
after `serve` has stopped, holding its port, so that a new server cannot listen there.

On Linux this process first becomes a "child subreaper" (`prctl(PR_SET_CHILD_SUBREAPER)`):
a process whose parent exits (a program started by a worker process that was stopped, a
daemon that forked twice) is then re-parented to us instead of to init, so it stays one of
our descendants. When the run (or the server) is over, every descendant that it started is
found through /proc, asked to stop (SIGTERM), and killed (SIGKILL) if still there after
`STOP_GRACE_SECONDS`.

What this cannot cover (docs/decisions/0008-no-process-outlives-the-command.md): macOS and
other systems without /proc or a subreaper; a program killed by SIGKILL, which runs no code
at all; and, under `serve`, which runs several runs at once and cannot tell whose a process
is, the leftovers of one run live until the server stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>
STOP_GRACE_SECONDS = 2.0  # how long a leftover process has to exit after SIGTERM
PROC = Path("/proc")


def adopt_orphans() -> bool:
    """Make this process the subreaper of its descendants, on Linux; whether it is."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):  # no libc that ctypes can find, or no prctl in it
        return False


def descendants(root: int | None = None) -> set[int]:
    """The processes below `root` (this process by default), found through /proc; empty
    where there is no /proc."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    for pid, parent in parents():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    below = [root]
    while below:
        for child in children.get(below.pop(), []):
            if child not in found:
                found.add(child)
                below.append(child)
    return found


def parents() -> Iterator[tuple[int, int]]:
    """(pid, parent pid) of every process that /proc lists."""
    if not PROC.is_dir():
        return
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        # "pid (command) state ppid ...": the command may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[1].split()
        yield int(entry.name), int(fields[1])


@contextlib.contextmanager
def no_process_left_behind() -> Iterator[None]:
    """Around one run in a command that runs nothing else meanwhile: the processes that are
    descendants of this one at the end, and were not at the start (with theirs), are stopped.
    Those there before are spared, as are their own descendants (a cluster a test started).

    SIGTERM, which by default ends a process without running any of its code (and which
    uvicorn raises again once it has shut down), stops them first too; the process then ends
    as SIGTERM would have ended it, so that its parent sees the same exit status."""
    adopt_orphans()
    # Not the process pools' fork server (warm_start.py), which `run` starts before this:
    # the workers it forks, and what their sources start, are this command's.
    spared = descendants() - {fork_server_pid()}
    handling_sigterm = threading.current_thread() is threading.main_thread()
    if handling_sigterm:  # only the main thread may set a signal handler
        previous = signal.signal(signal.SIGTERM, functools.partial(raise_terminated, os.getpid()))
    terminated = False
    try:
        yield
    except Terminated:
        terminated = True
    finally:
        if handling_sigterm:
            signal.signal(signal.SIGTERM, previous)
        kept = spared | {pid for parent in spared for pid in descendants(parent)}
        stop(descendants() - kept)
    if terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


class Terminated(BaseException):
    """SIGTERM arrived: raised so that the way out stops the leftovers first."""


def raise_terminated(owner: int, signum: int, frame: object) -> None:
    """In the process that set this handler (`owner`), SIGTERM becomes Terminated. A copy of
    it that a source forked inherits the handler, and is one of the leftovers that get
    SIGTERM: there it ends the copy, as SIGTERM does by default. (Raised there, Terminated
    unwound the copy's thread into the runtime's code, which ran the next queued source in
    the copy, after the run had stopped its leftovers: that source's program outlived it.)"""
    if os.getpid() != owner:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise Terminated()


def fork_server_pid() -> int | None:
    """The process pools' fork server, if it runs (without importing it if not)."""
    warm_start = sys.modules.get("parallel_workflow_runtime._execution.warm_start")
    return None if warm_start is None else warm_start.fork_server_pid()


def stop(pids: set[int]) -> None:
    """SIGTERM to each of `pids`, SIGKILL to those still there after STOP_GRACE_SECONDS;
    each that is our child is then reaped, so that no zombie is left either."""
    for pid in pids:
        signalled(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    remaining = set(pids)
    while remaining and time.monotonic() < deadline:
        remaining = {pid for pid in remaining if alive(pid)}
        time.sleep(0.05)
    for pid in remaining:
        signalled(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ChildProcessError):  # not our child: its parent reaps it
            os.waitpid(pid, 0 if pid in remaining else os.WNOHANG)


def signalled(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def alive(pid: int) -> bool:
    """Whether `pid` runs: exited but not yet reaped (a zombie) is not running."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False  # our child, and it has just been reaped
    try:
        state = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
