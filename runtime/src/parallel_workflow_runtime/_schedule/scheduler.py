"""Runs started by a clock: each tick of each schedule (schedules.py) decided once, in the run
history's database, whichever `serve` replica gets to it first.

The ticks table (`parallel_workflow_ticks`) has one row per schedule and tick, its primary
key: a replica decides a tick by inserting that row, and a replica that finds it there
already leaves the tick alone. So two replicas on one PostgreSQL never both fire a tick, and
none is lost while one of them runs. What a replica decides for a tick, and why, is in
decisions.py.

The decision for one schedule is taken under a lock of the database (PostgreSQL: an advisory
lock for the transaction; SQLite: `BEGIN IMMEDIATE`), so that what it reads (the last tick,
the run still running) is what the others read too.

It is taken at the database's time, not the replica's: replicas on machines whose clocks
differ still agree on which ticks are due, and on whose heartbeat is stale. A replica whose
own clock is more than a poll off the database's decides nothing (it says so in one line):
its runs would carry its wrong time, and one that decided by it once recorded every tick up
to its "now" as missed, two hours ahead, and so silenced the schedule for the others. On
SQLite the database's time is this machine's, which all its replicas share.

`on_missed: catch_up` queues the ticks it catches up, and they run oldest first, one at a
time, whatever `overlap` says; `overlap` decides the ticks that come meanwhile.

The clocks are parameters (`clock`, `database_clock`), so that the tests move them instead
of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from parallel_workflow_runtime._core.schedules import Schedule
from parallel_workflow_runtime._schedule.decisions import CATCHING_UP, by_overlap, missed_or_run
from parallel_workflow_runtime._store.ticks import (
    LATE_SECONDS,
    POLL_SECONDS,
    QUEUED,
    RUNNING,
    SKIPPED,
    STALE_SECONDS,
    Clock,
    Tick,
    TickStore,
    epoch,
    real_clock,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from parallel_workflow_runtime._store.lease import Lease

log = logging.getLogger("parallel_workflow_runtime")


def replica_name() -> str:
    """This process, as the ticks table names the replica that decided a tick."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# What starts a run for a tick: given the run id to give the run, it returns the run's id and
# whether it succeeded; it is cancelled past the schedule's max_runtime_seconds and when
# `serve` stops.
StartRun = Callable[[Schedule, Tick, str], Awaitable[tuple[str | None, bool]]]


@dataclass
class Scheduler:
    """One replica's scheduler: `poll` decides the due ticks of every schedule and starts the
    runs this replica won; `serve_forever` polls every `poll_seconds`."""

    store: TickStore
    schedules: Sequence[Schedule]
    start_run: StartRun
    # This replica's own clock: only compared with the database's, which decides (module doc).
    clock: Clock = real_clock
    # The history's clock, which every decision reads; None: the database's own
    # (TickStore.now). The tests give one they move.
    database_clock: Clock | None = None
    poll_seconds: float = POLL_SECONDS
    stale_seconds: float = STALE_SECONDS
    replica: str = field(default_factory=replica_name)
    started: datetime | None = None  # the first decision: a new schedule's ticks count from there
    runs: dict[tuple[str, datetime], asyncio.Task[None]] = field(default_factory=dict)
    polling: asyncio.Task[Any] | None = None  # serve_forever's task
    # Seconds this replica's clock is off the database's when the last poll found them apart
    # by more than a poll (it then decides nothing); None while they agree.
    off_by: float | None = None

    async def serve_forever(self) -> None:
        """Poll every poll_seconds until cancelled; then the runs it started are cancelled
        too, and recorded so (`serve` stopping: `stop`)."""
        self.polling = asyncio.current_task()
        try:
            while True:
                try:
                    await self.poll()
                except Exception as error:  # a database that went away: try again next time
                    log.warning("scheduler: %s", " ".join(str(error).split())[:300])
                await asyncio.sleep(self.poll_seconds)
        finally:
            for task in list(self.runs.values()):
                task.cancel()
            await asyncio.gather(*self.runs.values(), return_exceptions=True)

    async def stop(self) -> None:
        """End serve_forever, on its own loop, once its runs are recorded as cancelled."""
        if self.polling is not None:
            self.polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.polling

    async def poll(self) -> list[Tick]:
        """Decide every schedule's due ticks now; start the runs this replica won. The ticks
        this replica decided to run. A replica whose clock is off the database's decides
        nothing (it only keeps its runs alive)."""
        agrees = await asyncio.to_thread(self.clock_agrees)
        started: list[Tick] = []
        for schedule in self.schedules:
            if not agrees:
                await asyncio.to_thread(self.keep_alive, schedule)
                continue
            for tick in await asyncio.to_thread(self.decide, schedule):
                self.launch(schedule, tick)
                started.append(tick)
        return started

    def now(self, connection: Connection) -> datetime:
        """The database's time: the one clock that every replica decides by."""
        if self.database_clock is not None:
            return self.database_clock()
        return self.store.now(connection)

    def clock_agrees(self) -> bool:
        """Whether this replica's clock is within a poll of the database's. One that is not
        would still run its runs by its own time (their records, their timestamps), and
        whoever reads its machine's clock would read it wrong: it decides no ticks, and says
        so in one line when it starts to disagree, and again when it agrees again."""
        with self.store.engine.connect() as connection:
            before = self.clock()
            database = self.now(connection)
            after = self.clock()
        # The database read its clock somewhere between `before` and `after`.
        off = (before + (after - before) / 2 - database).total_seconds()
        if abs(off) <= self.poll_seconds + (after - before).total_seconds() / 2:
            if self.off_by is not None:
                log.warning(
                    "scheduler: this replica's clock agrees with the history database's "
                    "again: it decides ticks again"
                )
            self.off_by = None
            return True
        if self.off_by is None:
            side = "ahead of" if off > 0 else "behind"
            log.warning(
                "scheduler: this replica's clock is %.0f s %s the history database's: it "
                "decides no ticks until they agree within scheduler.poll_seconds (%g s); "
                "set this machine's clock right (NTP)",
                abs(off),
                side,
                self.poll_seconds,
            )
        self.off_by = off
        return False

    def keep_alive(self, schedule: Schedule) -> None:
        """The heartbeat of the schedule's ticks that run here, and nothing else."""
        if any(key == schedule.key for key, _ in self.runs):
            with self.store.deciding(schedule.key) as connection:
                self.beat(connection, schedule, self.now(connection))

    def decide(self, schedule: Schedule) -> list[Tick]:
        """Under the schedule's lock, at the database's time: record each tick due by then
        as running, queued or skipped, end the running ticks whose replica is gone, and start
        a queued tick if the schedule has nothing running. The ticks to run here."""
        with self.store.deciding(schedule.key) as connection:
            now = self.now(connection)
            if self.started is None:
                self.started = now
            self.beat(connection, schedule, now)
            self.end_stale(connection, schedule, now)
            # Ticks recorded ahead of the database's clock, by a replica whose own clock ran
            # ahead (before this replica's version, none checked): skipped or queued there,
            # they would never run; the newest of them would hold back every tick until then.
            self.store.forget_undecided_after(connection, schedule.key, now)
            last = self.store.last(connection, schedule.key, until=now)
            since = last.at if last is not None else self.started - timedelta(seconds=1)
            due = schedule.ticks_between(since, now)
            # A queued tick goes first: the new ones queue behind it.
            to_run = self.dequeued(connection, schedule, now)
            to_run += [
                tick
                for tick in self.decisions(connection, schedule, due, now)
                if self.store.add(connection, tick) and tick.state == RUNNING
            ]
            # A catch-up just queued, with nothing running: its oldest tick starts now.
            to_run += self.dequeued(connection, schedule, now)
        return to_run

    def decisions(
        self, connection: Connection, schedule: Schedule, due: list[datetime], now: datetime
    ) -> list[Tick]:
        """What becomes of each due tick, by on_missed and overlap."""
        late = timedelta(seconds=self.poll_seconds + LATE_SECONDS)
        sorted_out = missed_or_run(schedule, due, now, late)
        decided = [
            self.tick(schedule, at, SKIPPED, now, reason=why) for at, why in sorted_out.skipped
        ]
        if sorted_out.catching_up:
            # The catch-up runs every tick it keeps, and those on time with them, oldest first
            # and one after another, whatever `overlap` says (under `skip`, all but the first
            # would be skipped, under `allow` all would run at once): queued, started by
            # `dequeued`. `overlap` decides only the ticks that come while it runs.
            return decided + [
                self.tick(schedule, at, QUEUED, now, reason=CATCHING_UP) for at in sorted_out.runs
            ]
        # What a new tick waits behind: the run under way or a tick still to run (a catch-up,
        # or under queue, a queued tick), the oldest first.
        waiting = (RUNNING,) if schedule.overlap == "allow" else (RUNNING, QUEUED)
        running = self.store.rows(connection, schedule.key, waiting)
        busy = running[-1] if running else None
        for at in sorted_out.runs:
            state, reason = by_overlap(schedule.overlap, busy)
            tick = self.tick(schedule, at, state, now, reason=reason)
            if state == RUNNING:
                busy = tick
            decided.append(tick)
        return decided

    def dequeued(self, connection: Connection, schedule: Schedule, now: datetime) -> list[Tick]:
        """The oldest queued tick, now running, if nothing of the schedule runs."""
        if self.store.rows(connection, schedule.key, (RUNNING,), limit=1):
            return []
        queued = self.store.rows(connection, schedule.key, (QUEUED,))
        if not queued:
            return []
        oldest = queued[-1]
        started = dict(state=RUNNING, replica=self.replica, decided_at=now, heartbeat_at=now)
        self.store.update(oldest, connection, **started)
        return [dataclasses.replace(oldest, **started)]  # type: ignore[arg-type]

    def beat(self, connection: Connection, schedule: Schedule, now: datetime) -> None:
        """The heartbeat of the schedule's ticks that run here: each poll says they are alive
        (a poll comes every poll_seconds, well within stale_seconds)."""
        table = self.store.table
        mine = [epoch(at) for key, at in self.runs if key == schedule.key]
        if mine:
            connection.execute(
                table.update()
                .where(
                    table.c.schedule == schedule.key,
                    table.c.at.in_(mine),
                    table.c.state == RUNNING,
                )
                .values(self.lease.renewed(epoch(now)))
            )

    @property
    def lease(self) -> Lease:
        """A running tick's lease: its replica's, while its heartbeat is within stale_seconds."""
        from parallel_workflow_runtime._store.lease import tick_lease

        return tick_lease(self.stale_seconds)

    def end_stale(self, connection: Connection, schedule: Schedule, now: datetime) -> None:
        """Running ticks whose replica stopped renewing them (their lease lapsed): failed."""
        lapsed = self.store.rows(connection, schedule.key, (RUNNING,), lapsed=(self.lease, now))
        for tick in lapsed:
            if not self.runs_here(tick):
                self.store.update(
                    tick,
                    connection,
                    state="failed",
                    reason=f"its replica ({tick.replica}) stopped while it ran",
                    ended_at=now,
                )

    def runs_here(self, tick: Tick) -> bool:
        return (tick.schedule, tick.at) in self.runs

    def tick(
        self, schedule: Schedule, at: datetime, state: str, now: datetime, reason: str | None = None
    ) -> Tick:
        return Tick(
            schedule=schedule.key,
            at=at.astimezone(UTC),
            state=state,
            reason=reason,
            replica=self.replica,
            decided_at=now,
            heartbeat_at=now if state == RUNNING else None,
        )

    def launch(self, schedule: Schedule, tick: Tick) -> None:
        """Run `tick` as a task of this replica: its heartbeat, its run, its end."""
        task = asyncio.get_running_loop().create_task(self.running(schedule, tick))
        self.runs[(tick.schedule, tick.at)] = task
        task.add_done_callback(lambda _: self.runs.pop((tick.schedule, tick.at), None))

    async def running(self, schedule: Schedule, tick: Tick) -> None:
        # The run's id, given before it starts: a run stopped midway (serve's SIGTERM,
        # max_runtime_seconds) is in the history under it, and its tick says so.
        given = str(uuid.uuid4())
        state, reason, run_id = "failed", None, None
        try:
            async with asyncio.timeout(schedule.max_runtime_seconds):
                run_id, succeeded = await self.start_run(schedule, tick, given)
            state = "ok" if succeeded else "failed"
        except TimeoutError:
            state, run_id = "cancelled", given
            reason = f"ran longer than max_runtime_seconds ({schedule.max_runtime_seconds:g} s)"
        except asyncio.CancelledError:
            state, run_id = "cancelled", given
            reason = "the server stopped while it ran"
            raise
        except Exception as error:
            reason = " ".join(str(error).split())[:300]
        finally:
            try:
                await asyncio.to_thread(
                    # A catch-up's tick keeps saying so once it ran.
                    self.end,
                    tick,
                    state,
                    run_id,
                    reason or (tick.reason if state == "ok" else None),
                )
            except Exception as error:  # the database went away: its heartbeat stops
                log.warning(
                    "scheduler: the end of the tick %s of %s is not recorded: %s",
                    tick.at.isoformat(), tick.schedule, " ".join(str(error).split())[:300],
                )  # fmt: skip
        # Not stopped: the next queued tick starts now rather than at the next poll (a
        # catch-up of ten ticks would otherwise take ten polls at least).
        await self.start_queued(schedule)

    async def start_queued(self, schedule: Schedule) -> None:
        """Start the schedule's oldest queued tick here, if nothing of it runs."""
        if self.off_by is not None:
            return  # this replica decides nothing while its clock is off
        try:
            for queued in await asyncio.to_thread(self.dequeue, schedule):
                self.launch(schedule, queued)
        except Exception as error:  # the database went away: the next poll starts it
            log.warning("scheduler: %s", " ".join(str(error).split())[:300])

    def dequeue(self, schedule: Schedule) -> list[Tick]:
        with self.store.deciding(schedule.key) as connection:
            return self.dequeued(connection, schedule, self.now(connection))

    def end(self, tick: Tick, state: str, run_id: str | None, reason: str | None) -> None:
        """Record how the run of `tick` ended, at the database's time."""
        # Under the schedule's lock, as a decision: on SQLite, a transaction that reads (the
        # time) before it writes could not get the write lock while another decides.
        with self.store.deciding(tick.schedule) as connection:
            self.store.update(
                tick, connection, state=state, reason=reason, run_id=run_id,
                ended_at=self.now(connection),
            )  # fmt: skip

    async def trigger(self, schedule: Schedule) -> Tick:
        """One run now, under the schedule's overlap policy: the tick it got (running, queued
        or skipped). Its run, on this event loop, is awaited."""
        tick = self.claim_trigger(schedule)
        if tick.state == RUNNING:
            self.launch(schedule, tick)
            await self.runs[(tick.schedule, tick.at)]
        return tick

    def claim_trigger(self, schedule: Schedule) -> Tick:
        """The tick of a run now (`schedule trigger`), at the database's time, decided under
        the schedule's overlap policy: running (the caller runs it, then calls `finish`),
        queued or skipped."""
        with self.store.deciding(schedule.key) as connection:
            now = self.now(connection)
            self.end_stale(connection, schedule, now)
            running = self.store.rows(connection, schedule.key, (RUNNING,), limit=1)
            state, reason = by_overlap(schedule.overlap, running[0] if running else None)
            tick = dataclasses.replace(self.tick(schedule, now, state, now, reason), manual=True)
            self.store.add(connection, tick)
        return tick

    def finish(self, tick: Tick, state: str, run_id: str | None, reason: str | None = None) -> None:
        """Record how the run of a tick that the caller ran ended."""
        self.end(tick, state, run_id, reason)

    async def wait(self) -> None:
        """Until the runs this replica started have ended (tests, shutdown)."""
        while self.runs:
            await asyncio.gather(*self.runs.values(), return_exceptions=True)
