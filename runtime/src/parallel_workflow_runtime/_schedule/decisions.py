"""What becomes of a schedule's due ticks: pure decisions, which the scheduler (scheduler.py)
takes under the schedule's lock and records in the ticks table. A tick is

- `running`: it starts the run (the same run as `run` or an HTTP run: limits, history,
  timeline, traces), renews `heartbeat_at` at each of its polls while it runs, and ends the
  row `ok`, `failed` or `cancelled` with the run's id (the scheduler gives the run its id
  before it starts: a run that `serve` stopped is cancelled under it). A row whose heartbeat
  stopped for STALE_SECONDS (its replica was killed) ends `failed`, and no longer counts as
  running; until then, under overlap: skip, the ticks that come are skipped.
- `queued` (overlap: queue, or on_missed: catch_up): started, oldest first, once the
  schedule's last run has ended (as soon as it ends, on the replica that ran it; otherwise
  at the next poll of any replica).
- `skipped`, with its reason: missed while no replica ran (on_missed), or its last run still
  running (overlap: skip). `history ticks` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from parallel_workflow_runtime._core.schedules import Overlap, Schedule
from parallel_workflow_runtime._store.ticks import QUEUED, RUNNING, SKIPPED, Tick

CATCHING_UP = "catch_up: missed while no replica was serving; run in order, one at a time"


@dataclass(frozen=True)
class SortedOut:
    """A schedule's due ticks, by its on_missed: those skipped (with why), those to run."""

    skipped: list[tuple[datetime, str]]
    runs: list[datetime]
    catching_up: bool  # on_missed catch_up found missed ticks: `runs` run one after another


def missed_or_run(
    schedule: Schedule, due: list[datetime], now: datetime, late: timedelta
) -> SortedOut:
    """Which due ticks are skipped as missed (due more than `late` before `now`: no replica
    was serving then) and which run, by the schedule's on_missed."""
    on_time = [at for at in due if now - at <= late]
    missed = [at for at in due if now - at > late]
    if schedule.on_missed == "skip":
        skipped, runs = missed, on_time
    elif schedule.on_missed == "run_once":
        # One run for all of them: at the newest tick (an on-time one if there is one).
        newest = (on_time or missed)[-1:]
        skipped, runs = [at for at in due if at not in newest], newest
    else:  # catch_up: each missed tick, the newest max_catch_up of them
        kept = missed[-schedule.max_catch_up :]
        skipped, runs = [at for at in missed if at not in kept], kept + on_time
    reasons = []
    for at in skipped:
        why = "missed: no replica was serving when it was due"
        if schedule.on_missed == "run_once" and at in missed:
            why += f" (on_missed run_once: one run, at the tick of {runs[-1].isoformat()})"
        elif schedule.on_missed == "catch_up":
            why += f" (beyond max_catch_up {schedule.max_catch_up})"
        reasons.append((at, why))
    return SortedOut(reasons, runs, schedule.on_missed == "catch_up" and bool(missed))


def by_overlap(overlap: Overlap, busy: Tick | None) -> tuple[str, str | None]:
    """The state (and the reason, for a skipped one) of a tick to run while `busy` (the run
    under way or the tick still to run, None if none) by the schedule's overlap."""
    if busy is None or overlap == "allow":
        return RUNNING, None
    if overlap == "skip":
        return SKIPPED, overlapped(busy)
    return QUEUED, None


def overlapped(busy: Tick) -> str:
    """Why a tick is skipped under overlap: skip, `busy` the oldest tick it would overlap."""
    if busy.reason == CATCHING_UP:
        return (
            "overlap: the schedule was catching up on missed ticks (from the tick of "
            f"{busy.at.isoformat()})"
        )
    return f"overlap: the run of the tick of {busy.at.isoformat()} was still running"
