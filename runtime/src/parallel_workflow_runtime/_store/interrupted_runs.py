"""Runs that a killed server left unfinished: recorded as failed when a server starts again.

Agno stores a run only once it is over, so a server killed with runs in flight (SIGKILL, the
machine's power) would lose them without a trace. While `serve` runs a workflow, the history
holds a RUNNING row for it (a stand-in, deleted once Agno has stored the real run) that names
the serving process: its host, its pid and when that process started. A server that starts
marks the stand-ins whose process is gone as failed ("interrupted").

Several replicas may share one PostgreSQL history, so a stand-in is marked only when its
process is surely dead: on this same host, no process has its pid, or the one that has it
started at another time (the pid was reused, as pid 1 is in every container). A stand-in from
another host is left as it is, since no process here can tell whether that server lives: the
next server started on that host marks it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from agno.run.base import RunStatus
from agno.run.workflow import WorkflowRunOutput
from agno.session.workflow import WorkflowSession

if TYPE_CHECKING:
    from agno.db.base import BaseDb
    from agno.workflow import Workflow

PROCESS_KEY = "serving_process"  # in a stand-in's metadata


def process_identity(pid: int | None = None) -> dict[str, Any]:
    """This host, a process's pid and when it started (None where /proc cannot tell)."""
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "pid": pid, "started": process_start(pid)}


def process_start(pid: int) -> str | None:
    """When process `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat,
    counted after the command name, which may hold spaces); None without /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def is_dead(identity: dict[str, Any]) -> bool:
    """Whether the process that `identity` names is surely gone (see the module's doc)."""
    if identity.get("host") != socket.gethostname() or not isinstance(identity.get("pid"), int):
        return False
    pid: int = identity["pid"]
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, owned by another user
    started = process_start(pid)
    return started is not None and started != identity.get("started")


@contextlib.contextmanager
def stand_in(
    db: BaseDb, workflow_id: str, workflow: Workflow, identity: dict[str, Any] | None = None
) -> Iterator[str]:
    """A RUNNING row for the run that `workflow` (a copy for one request) is about to make,
    in the session that run will use, until the run is over; its run id. `identity`: the
    serving process's (process_identity), this one's by default."""
    session_id = str(uuid.uuid4())
    workflow.session_id = session_id  # Agno runs in this session
    row = WorkflowRunOutput(
        run_id=str(uuid.uuid4()),
        session_id=session_id,
        workflow_id=workflow_id,
        workflow_name=workflow.name,
        status=RunStatus.running,
        created_at=int(time.time()),
        metadata={PROCESS_KEY: identity or process_identity()},
    )
    # The session first: a run row refers to its session's row.
    db.upsert_session(
        WorkflowSession(
            session_id=session_id,
            workflow_id=workflow_id,
            workflow_name=workflow.name,
            created_at=row.created_at,
        )
    )
    db.upsert_run(run=row, session_id=session_id)
    try:
        yield str(row.run_id)
    finally:
        db.delete_runs([str(row.run_id)])


def mark_interrupted(db: BaseDb) -> int:
    """Record the stand-ins of dead servers as failed runs; how many there were."""
    marked = 0
    for row in runs(db, status=RunStatus.running):
        run = row.get("run_data") or {}
        identity = (run.get("metadata") or {}).get(PROCESS_KEY)
        if not isinstance(identity, dict) or not is_dead(identity):
            continue  # not a stand-in, or its server may be alive
        if len(runs(db, session_id=row["session_id"])) > 1:
            # Killed after Agno stored the run, before the stand-in was deleted.
            db.delete_runs([row["run_id"]])
            continue
        stored = WorkflowRunOutput.from_dict(run)
        stored.status = RunStatus.error
        stored.content = (
            f"interrupted: the server on {identity['host']} (pid {identity['pid']}) stopped "
            "before the run ended"
        )
        db.upsert_run(run=stored, session_id=row["session_id"])
        marked += 1
    return marked


def runs(db: BaseDb, **where: Any) -> list[dict[str, Any]]:
    """The stored runs that match `where` (an indexed query), as Agno's rows."""
    rows, _ = cast(tuple[list[dict[str, Any]], int], db.get_runs(deserialize=False, **where))
    return rows
