"""The schedules of a project's workflows at work: checked before `serve` listens, run by
`serve` (a Scheduler on the runs' event loop), listed and triggered from the command line."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from parallel_workflow_runtime._core.schedules import Schedule
from parallel_workflow_runtime._core.usage import UsageError
from parallel_workflow_runtime._execution.running import run_workflow
from parallel_workflow_runtime._schedule.scheduler import Scheduler
from parallel_workflow_runtime._store.interrupted_runs import stand_in
from parallel_workflow_runtime._store.ticks import Tick, TickStore

# How long a scheduled run that `serve` stopped may take to be stored (Agno stores it from a
# task of its own): a write to the history, a second at most but on a server under load.
STORE_WAIT_SECONDS = 10.0

if TYPE_CHECKING:
    from agno.db.base import BaseDb
    from agno.workflow import Workflow

    from parallel_workflow_runtime._core.config import WorkflowConfig
    from parallel_workflow_runtime._core.settings import SchedulerSettings
    from parallel_workflow_runtime._execution.executors import Executors


def all_schedules(configs: Mapping[str, WorkflowConfig]) -> list[Schedule]:
    return [schedule for config in configs.values() for schedule in config.schedules]


def checked_schedules(
    configs: Mapping[str, WorkflowConfig], poll_seconds: float, now: datetime | None = None
) -> list[Schedule]:
    """The workflows' schedules; UsageError naming one that fires more often than the
    scheduler looks for due ticks (settings.yaml's scheduler.poll_seconds)."""
    now = now or datetime.now(UTC)
    schedules = all_schedules(configs)
    for schedule in schedules:
        shortest = schedule.shortest_interval(now)
        if shortest < timedelta(seconds=poll_seconds):
            raise UsageError(
                f"schedule {schedule.key} fires every {shortest.total_seconds():g} s, more often "
                f"than the scheduler looks for due ticks (scheduler.poll_seconds: "
                f"{poll_seconds:g} in settings.yaml)"
            )
    return schedules


def request_of(schedule: Schedule, tick: Tick) -> str:
    """A scheduled run's request, which its record keeps: the schedule and tick that started
    it."""
    how = "triggered" if tick.manual else "tick"
    return f"{schedule.message} (schedule {schedule.key}, {how} {tick.at.isoformat()})"


def serving_scheduler(
    db: BaseDb,
    workflows: Mapping[str, Workflow],
    schedules: Sequence[Schedule],
    executors: Executors,
    timing: SchedulerSettings,
) -> Scheduler:
    """The scheduler of a `serve` replica: each run a copy of its workflow, run as an HTTP run
    is (with a stand-in in the history while it runs)."""

    async def start_run(schedule: Schedule, tick: Tick, run_id: str) -> tuple[str | None, bool]:
        run = workflows[schedule.workflow_id].deep_copy()
        # Agno makes a run's id up as the run starts, and tells it only once the run is over;
        # the scheduler gives it one beforehand, so that a run stopped midway (serve's
        # SIGTERM, max_runtime_seconds), which Agno stores as cancelled, has it in its tick.
        # `run` is this run's own copy: its arun, and no other's, takes the id.
        run.arun = functools.partial(run.arun, run_id=run_id)  # type: ignore[method-assign,assignment]
        try:
            with stand_in(db, schedule.workflow_id, run):
                outcome = await run_workflow(
                    run, request_of(schedule, tick), db=db, executors=executors
                )
        except asyncio.CancelledError:
            # Agno stores a cancelled run from a task of its own, so that the write outlives
            # the cancellation; `serve` stopping would end the loop under that task, and the
            # run would be in the history under no id at all.
            await stored(db, run_id, STORE_WAIT_SECONDS)
            raise
        return outcome.run_id, outcome.exit_code == 0

    return Scheduler(
        store=TickStore.of(db),
        schedules=schedules,
        start_run=start_run,
        poll_seconds=timing.poll_seconds,
        stale_seconds=timing.stale_seconds,
    )


async def stored(db: BaseDb, run_id: str, seconds: float) -> bool:
    """Whether run `run_id` is in the history, waiting up to `seconds` for it."""
    deadline = asyncio.get_running_loop().time() + seconds
    while await asyncio.to_thread(db.get_run, run_id) is None:
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def find_schedule(configs: Mapping[str, WorkflowConfig], key: str) -> Schedule:
    """The schedule named `key` (`<workflow_id>/<name>`, or `<name>` if only one has it)."""
    schedules = all_schedules(configs)
    matching = [s for s in schedules if key in (s.key, s.name)]
    if len(matching) == 1:
        return matching[0]
    known = ", ".join(s.key for s in schedules) or "none (config.yaml's schedules:)"
    if matching:
        raise UsageError(f"schedule {key!r} is ambiguous: give one of {known}")
    raise UsageError(f"no schedule {key!r}; known: {known}")


def next_fires(schedule: Schedule, count: int, now: datetime | None = None) -> list[datetime]:
    times = schedule.ticks(now or datetime.now(UTC))
    return [next(times) for _ in range(count)]
