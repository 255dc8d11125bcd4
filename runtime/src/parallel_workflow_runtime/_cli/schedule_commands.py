"""What the `schedule` commands do, one function each: `schedule list` lists the
schedules of the workflows' config.yaml, `schedule next` prints a schedule's next fire times,
`schedule trigger` runs one now, here. The scheduler (_schedule) is imported in the functions:
only these commands use it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console

from parallel_workflow_runtime._cli.commands import choose, quiet_agno_logs
from parallel_workflow_runtime._cli.views import (
    print_summary,
    schedule_document,
    schedules_table,
    utc_text,
)
from parallel_workflow_runtime._core.registry import discover
from parallel_workflow_runtime._core.usage import RunInterrupted, UsageError
from parallel_workflow_runtime._execution.running import execute
from parallel_workflow_runtime._store.history import (
    existing_history,
    history_for_run,
    history_location,
)

if TYPE_CHECKING:
    from parallel_workflow_runtime._core.config import WorkflowConfig


def configs_of(args: argparse.Namespace) -> dict[str, WorkflowConfig]:
    """The configs of --workflow's workflow, or of all of them."""
    entries = discover()
    if args.workflow is not None:
        entry = choose(entries, args.workflow)
        return {entry.config.workflow_id: entry.config}
    return {workflow_id: entry.config for workflow_id, entry in entries.items()}


def schedule_list_command(args: argparse.Namespace) -> int:
    from parallel_workflow_runtime._schedule.scheduled import all_schedules, next_fires
    from parallel_workflow_runtime._store.ticks import TickStore

    schedules = all_schedules(configs_of(args))
    quiet_agno_logs(verbose=False)
    db = existing_history(history_location())
    store = TickStore.of(db) if db is not None else None
    rows = []
    for schedule in schedules:
        [fire] = next_fires(schedule, 1)
        last = store.rows(schedule=schedule.key, limit=1) if store is not None else []
        rows.append((schedule, fire, last[0] if last else None))
    if args.json:
        print(json.dumps([schedule_document(*row) for row in rows], indent=2))
        return 0
    if not rows:
        print("No schedules: add them under `schedules:` in a workflow's config.yaml.")
        return 0
    Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(
        schedules_table(rows)
    )
    return 0


def schedule_next_command(args: argparse.Namespace) -> int:
    from parallel_workflow_runtime._schedule.scheduled import find_schedule, next_fires

    schedule = find_schedule(configs_of(args), args.schedule)
    fires = next_fires(schedule, args.count)
    if args.json:
        print(json.dumps([{"local": f.isoformat(), "utc": utc_text(f)} for f in fires]))
        return 0
    print(f"{schedule.key}: {schedule.cron} in {schedule.timezone}")
    for fire in fires:
        print(f"  {fire.strftime('%Y-%m-%d %H:%M:%S %Z')}   {utc_text(fire)}")
    return 0


def schedule_trigger_command(args: argparse.Namespace) -> int:
    from parallel_workflow_runtime._schedule.scheduled import find_schedule, request_of
    from parallel_workflow_runtime._schedule.scheduler import Scheduler
    from parallel_workflow_runtime._store.ticks import RUNNING, TickStore

    schedule = find_schedule(configs_of(args), args.schedule)
    entry = discover()[schedule.workflow_id]
    quiet_agno_logs(verbose=False)
    db = history_for_run()
    if db is None:
        raise UsageError("schedule trigger needs the run history (the serve extra)")

    async def not_here(*_: Any) -> tuple[str | None, bool]:  # the run is `execute`, below
        raise NotImplementedError

    scheduler = Scheduler(store=TickStore.of(db), schedules=[schedule], start_run=not_here)
    tick = scheduler.claim_trigger(schedule)
    if tick.state != RUNNING:
        print(f"{schedule.key}: {tick.state}: {tick.reason or 'behind the run under way'}")
        return 1 if tick.state == "skipped" else 0
    # The run as `run` makes it, here: Ctrl-C stops it as it stops `run`.
    try:
        outcome = execute(entry, request_of(schedule, tick), db=db)
    except RunInterrupted as interrupted:
        scheduler.finish(tick, "cancelled", interrupted.outcome.run_id, "interrupted (Ctrl-C)")
        raise
    except BaseException as problem:  # a usage error (a broken executor), Ctrl-C twice
        scheduler.finish(tick, "failed", None, " ".join(str(problem).split())[:300])
        raise
    scheduler.finish(tick, "ok" if outcome.exit_code == 0 else "failed", outcome.run_id)
    if args.json:
        print(json.dumps(outcome.to_json_dict(), indent=2, ensure_ascii=False, allow_nan=False))
    elif outcome.aggregation is not None:
        print_summary(Console(highlight=False), outcome.aggregation, outcome.report)
    for error in outcome.errors:
        print(f"error: {error}", file=sys.stderr)
    return outcome.exit_code
