"""A workflow's schedules, as config.yaml's `schedules:` declares them, and their fire times.

A schedule is a cron expression (croniter's: five fields, or six with seconds last) read in
its timezone (an IANA name), so that `30 2 * * *` in Europe/Berlin is 02:30 Berlin time all
year. Daylight-saving days follow what a person reading the schedule expects:

- spring forward: a time that does not exist that day (02:30 when clocks go from 02:00 to
  03:00) fires when the clocks move on, at 03:00, once;
- fall back: a time that happens twice (02:30 when clocks go back from 03:00 to 02:00) fires
  once, at the first 02:30.

What a schedule does with the ticks it missed and with a tick that comes while its last run
still runs (`on_missed`, `overlap`) is the scheduler's part (scheduler.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

OnMissed = Literal["skip", "run_once", "catch_up"]
Overlap = Literal["skip", "queue", "allow"]
ON_MISSED: tuple[OnMissed, ...] = ("skip", "run_once", "catch_up")
OVERLAP: tuple[Overlap, ...] = ("skip", "queue", "allow")
DEFAULT_MESSAGE = "Scheduled run"


@dataclass(frozen=True)
class Schedule:
    """One entry of a workflow's `schedules:`, checked."""

    workflow_id: str
    name: str
    cron: str
    timezone: str = "UTC"
    on_missed: OnMissed = "run_once"
    max_catch_up: int = 10
    overlap: Overlap = "skip"
    max_runtime_seconds: float | None = None
    message: str = DEFAULT_MESSAGE

    @property
    def key(self) -> str:
        """Its name in the history: `<workflow_id>/<name>`."""
        return f"{self.workflow_id}/{self.name}"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def ticks(self, after: datetime) -> Iterator[datetime]:
        """Its fire times after `after` (aware), in its timezone, one per wall-clock time."""
        from croniter import croniter

        zone = self.zone
        start = after.astimezone(zone)
        times = croniter(self.cron, start, ret_type=datetime)
        # croniter gives the second 02:30 of a fall-back day too (fold=1): one is enough, also
        # when the first was `after` itself (the last tick that fired).
        previous = start.replace(tzinfo=None)
        while True:
            tick: datetime = times.get_next(datetime)
            if tick.replace(tzinfo=None) == previous:
                continue
            previous = tick.replace(tzinfo=None)
            yield tick

    def ticks_between(self, after: datetime, until: datetime) -> list[datetime]:
        """Its fire times in (after, until]."""
        found: list[datetime] = []
        for tick in self.ticks(after):
            if tick > until:
                return found
            found.append(tick)
        return found  # pragma: no cover (ticks never ends)

    def shortest_interval(self, after: datetime, count: int = 20) -> timedelta:
        """The shortest time between two of its next `count` fire times."""
        times = self.ticks(after)
        previous = next(times)
        shortest = timedelta.max
        for _ in range(count):
            tick = next(times)
            shortest = min(shortest, tick - previous)
            previous = tick
        return shortest


def cron_problem(expression: str) -> str | None:
    """Why `expression` is not a cron expression a schedule can use, or None."""
    from croniter import CroniterError, croniter

    fields = expression.split()
    if len(fields) not in (5, 6):
        return "five fields (minute hour day month weekday), or six with seconds last"
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except (CroniterError, ValueError) as error:
        return str(error).replace(f"[{expression}] ", "") or "not a cron expression"
    return None


def timezone_problem(name: str) -> str | None:
    """Why `name` is not an IANA timezone, or None."""
    try:
        ZoneInfo(name)
    # zoneinfo opens a file of that name (in tzdata or /usr/share/zoneinfo): a name too long
    # for a file, or a folder of zones ("Europe"), is an OSError, not ZoneInfoNotFoundError.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return "an IANA timezone name, e.g. UTC or Europe/Berlin"
    return None
