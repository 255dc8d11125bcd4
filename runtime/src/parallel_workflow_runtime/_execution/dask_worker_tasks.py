"""What the `dask` executor (dask_cluster.py) runs on a Dask worker: a source's attempt
(`run_once`), which tells the executor's client when it started and, when small, how it
ended (`note`), its outcome packed into one string; and what the executor asks a worker
whose task it stops (`pause_worker`, `tasks_still_wanted`).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.results import SourceFunction
from parallel_workflow_runtime._execution.executor_base import (
    Outcome,
    run_elsewhere,
    run_elsewhere_async,
)

if TYPE_CHECKING:
    from distributed import Worker


# What runs on a Dask worker. Each task first logs its start to the scheduler, which passes it
# on to the executor's client (and, when it is small, its outcome once it has ended): the
# attempt's timeout counts from its start, and a second start shows that Dask ran the task
# again after its worker stopped (a source that ended its process, a worker restarted to stop
# a timed-out source), unseen by the run, which reported one attempt for two runs. Such an
# attempt now fails, and the source's `retries` decide whether it is tried again, each try
# counted as an attempt.
STARTED_TOPIC = "parallel-workflow-runtime-task-started"
RERUN_ERROR = "its Dask worker stopped while running it (Dask would have run it again)"


def run_once(
    started_name: str,
    function: SourceFunction,
    source: Source,
    max_details_bytes: int,
    told: bool = False,
    traceparent: str = "",
) -> str:
    note(started_name)
    text = packed(run_elsewhere(function, source, max_details_bytes, traceparent))
    return ended(started_name, text, told)


async def run_once_async(
    started_name: str,
    function: SourceFunction,
    source: Source,
    max_details_bytes: int,
    told: bool = False,
    traceparent: str = "",
) -> str:
    note(started_name)
    text = packed(await run_elsewhere_async(function, source, max_details_bytes, traceparent))
    return ended(started_name, text, told)


def ended(started_name: str, text: str, told: bool) -> str:
    """The task's outcome, also noted for the client if `told` and it is small: the
    scheduler keeps the last events of a topic (`distributed.admin.low-level-log-length`,
    1000), so what they hold is bounded (see `send_noted`). Otherwise the client fetches it
    from the worker, as Dask's result of the task."""
    if told and len(text) <= OUTCOME_ON_EVENT_CHARS:
        note([started_name, text])
    return text


# A task's outcome travels back as one string, its first character saying whether the source
# succeeded: Dask sends a tuple item by item, each with headers of its own, which cost the
# worker and the scheduler more per task than the rest of its result did.
# The spans of a traced attempt follow after a newline, which neither the summary's compact
# JSON nor the one-line error holds.
SUCCEEDED, FAILED = "+", "-"
SPANS_AFTER = "\n"


def packed(outcome: Outcome) -> str:
    succeeded, text, spans = outcome
    return (SUCCEEDED if succeeded else FAILED) + text + (SPANS_AFTER + spans if spans else "")


def unpacked(text: str) -> Outcome:
    result, _, spans = text[1:].partition(SPANS_AFTER)
    return text[:1] == SUCCEEDED, result, spans


def note(item: str | list[str]) -> None:
    """Tells the scheduler, which tells the executor's client, that this task has started
    (its name) or ended ([its name, its outcome]). What a worker notes in one moment travels
    together, as one event: its event loop sends what it finds noted when it gets to it. An
    event each cost the scheduler (which may share the client's event loop) and the client
    more than the task itself."""
    from distributed import get_worker

    worker = get_worker()
    with NOTED_LOCK:
        noted = NOTED.setdefault(id(worker), [])
        noted.append(item)
        first = len(noted) == 1
    if first:
        worker.loop.add_callback(send_noted, worker)


def send_noted(worker: Worker) -> None:
    """Runs on the worker's event loop: what was noted since it was asked to, over the
    worker's own connection to the scheduler (no client, no waiting), in events of at most
    about EVENT_CHARS of outcomes each."""
    with NOTED_LOCK:
        noted = NOTED.pop(id(worker), [])
    event: list[str | list[str]] = []
    size = 0
    for item in noted:
        if isinstance(item, list) and event and size + len(item[1]) > EVENT_CHARS:
            worker.log_event(STARTED_TOPIC, event)
            event, size = [], 0
        event.append(item)
        size += len(item[1]) if isinstance(item, list) else 0
    if event:
        worker.log_event(STARTED_TOPIC, event)


# What each worker of this process (by id) is yet to send (see `note`).
NOTED: dict[int, list[str | list[str]]] = {}
NOTED_LOCK = threading.Lock()
# The largest outcome that travels with the events, and about the most outcome text that one
# event holds: the scheduler's last 1000 events of the topic then hold at most ~16 MB.
OUTCOME_ON_EVENT_CHARS = 4096
EVENT_CHARS = 16384


def pause_worker(dask_worker: Worker) -> None:
    """Runs on a worker (`Client.run`): the scheduler gives it no new task."""
    from distributed.core import Status

    dask_worker.status = Status.paused


def tasks_still_wanted(dask_worker: Worker) -> int:
    """Runs on a worker: how many of the tasks it runs are still wanted (not cancelled)."""
    return sum(1 for task in dask_worker.state.executing if task.state != "cancelled")
