"""Runs started by a clock: each tick of each schedule (schedules.py) decided once, in the run
history's database, whichever `serve` replica gets to it first.

The ticks table (`parallel_workflow_ticks`) has one row per schedule and tick, its primary
key: a replica decides a tick by inserting that row, and a replica that finds it there
already leaves the tick alone. So two replicas on one PostgreSQL never both fire a tick, and
none is lost while one of them runs. What a replica decides for a tick:

- `running`: it starts the run (the same run as `run` or an HTTP run: limits, history,
  timeline, traces), renews `heartbeat_at` at each of its polls while it runs, and ends the
  row `ok`, `failed` or `cancelled` with the run's id. A row whose heartbeat stopped for
  STALE_SECONDS (its replica was killed) ends `failed`, and no longer counts as running.
- `queued` (overlap: queue): started, oldest first, once the schedule's last run has ended.
- `skipped`, with its reason: missed while no replica ran (on_missed), or its last run still
  running (overlap: skip). `history ticks` lists them.

The decision for one schedule is taken under a lock of the database (PostgreSQL: an advisory
lock for the transaction; SQLite: `BEGIN IMMEDIATE`), so that what it reads (the last tick,
the run still running) is what the others read too.

Time comes from `clock`, so that the tests move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .schedules import Schedule

if TYPE_CHECKING:
    from agno.db.base import BaseDb
    from sqlalchemy import Connection, Engine, Table

log = logging.getLogger("parallel_workflow_runtime")

TABLE = "parallel_workflow_ticks"
POLL_SECONDS = 5.0  # how often a replica looks for due ticks (settings.yaml: scheduler)
# A running tick whose replica has not polled for this long: that replica is gone. Each poll
# renews the heartbeat of the ticks that run there.
STALE_SECONDS = 30.0
# How late a tick may be decided and still count as on time, over the poll period: later,
# no replica was running when it was due (a missed tick, under on_missed).
LATE_SECONDS = 30.0

RUNNING, QUEUED, SKIPPED = "running", "queued", "skipped"
ENDED = ("ok", "failed", "cancelled")

Clock = Callable[[], datetime]


def real_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Tick:
    """One row of the ticks table."""

    schedule: str  # Schedule.key
    at: datetime  # when it was due (UTC)
    state: str
    reason: str | None = None
    run_id: str | None = None
    replica: str | None = None
    decided_at: datetime | None = None
    heartbeat_at: datetime | None = None
    ended_at: datetime | None = None
    manual: bool = False  # `schedule trigger`, not the clock


def epoch(moment: datetime) -> float:
    return moment.timestamp()


def moment(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


class TickStore:
    """The ticks table of one history database."""

    def __init__(self, engine: Engine) -> None:
        from sqlalchemy import Boolean, Column, Float, MetaData, String, Table, Text

        self.engine = engine
        self.table: Table = Table(
            TABLE,
            MetaData(),
            Column("schedule", String(300), primary_key=True),
            Column("at", Float, primary_key=True),  # epoch seconds of the tick
            Column("state", String(20), nullable=False),
            Column("reason", Text, nullable=True),
            Column("run_id", String(100), nullable=True),
            Column("replica", String(200), nullable=True),
            Column("decided_at", Float, nullable=True),
            Column("heartbeat_at", Float, nullable=True),
            Column("ended_at", Float, nullable=True),
            Column("manual", Boolean, nullable=False, default=False),
        )

    @classmethod
    def of(cls, db: BaseDb) -> TickStore:
        return cls(db.db_engine)  # type: ignore[attr-defined]

    def create_table(self) -> None:
        self.table.create(self.engine, checkfirst=True)

    @contextlib.contextmanager
    def deciding(self, schedule: str) -> Iterator[Connection]:
        """A transaction in which one replica at a time decides `schedule`'s ticks."""
        from sqlalchemy import text

        with self.engine.connect() as connection:
            if self.engine.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": zlib.crc32(f"{TABLE}:{schedule}".encode())},
                )
            else:  # SQLite: the database's write lock, from the first read on
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.rollback()
                raise
            connection.commit()

    def rows(
        self,
        connection: Connection | None = None,
        schedule: str | None = None,
        states: Sequence[str] = (),
        limit: int | None = None,
    ) -> list[Tick]:
        """Ticks, newest first."""
        from sqlalchemy import select

        table = self.table
        query = select(table).order_by(table.c.at.desc())
        if schedule is not None:
            query = query.where(table.c.schedule == schedule)
        if states:
            query = query.where(table.c.state.in_(list(states)))
        if limit is not None:
            query = query.limit(limit)
        with contextlib.ExitStack() as stack:
            if connection is None:
                connection = stack.enter_context(self.engine.connect())
            return [as_tick(row) for row in connection.execute(query).mappings()]

    def last(self, connection: Connection, schedule: str) -> Tick | None:
        """The schedule's newest tick that the clock made (not `schedule trigger`'s)."""
        from sqlalchemy import select

        table = self.table
        query = (
            select(table)
            .where(table.c.schedule == schedule, table.c.manual.is_(False))
            .order_by(table.c.at.desc())
            .limit(1)
        )
        row = connection.execute(query).mappings().first()
        return None if row is None else as_tick(row)

    def add(self, connection: Connection, tick: Tick) -> bool:
        """Record `tick`; False if a row for it exists (another replica decided it)."""
        from sqlalchemy import select

        table = self.table
        exists = connection.execute(
            select(table.c.state).where(
                table.c.schedule == tick.schedule, table.c.at == epoch(tick.at)
            )
        ).first()
        if exists is not None:
            return False
        connection.execute(
            table.insert().values(
                schedule=tick.schedule,
                at=epoch(tick.at),
                state=tick.state,
                reason=tick.reason,
                run_id=tick.run_id,
                replica=tick.replica,
                decided_at=None if tick.decided_at is None else epoch(tick.decided_at),
                heartbeat_at=None if tick.heartbeat_at is None else epoch(tick.heartbeat_at),
                manual=tick.manual,
            )
        )
        return True

    def update(self, tick: Tick, connection: Connection | None = None, **values: Any) -> None:
        """Change a tick's row: epoch seconds for the times given as datetimes."""
        table = self.table
        converted = {
            key: epoch(value) if isinstance(value, datetime) else value
            for key, value in values.items()
        }
        statement = (
            table.update()
            .where(table.c.schedule == tick.schedule, table.c.at == epoch(tick.at))
            .values(**converted)
        )
        if connection is not None:
            connection.execute(statement)
            return
        with self.engine.begin() as own:
            own.execute(statement)

    def remove_schedules_but(self, keys: Sequence[str]) -> list[str]:
        """Delete the ticks still to run (queued) of schedules no longer declared; the names
        of those schedules. Ticks that ran stay: they are history."""
        from sqlalchemy import select

        table = self.table
        with self.engine.begin() as connection:
            known = [row[0] for row in connection.execute(select(table.c.schedule).distinct())]
            gone = [key for key in known if key not in keys]
            if gone:
                connection.execute(
                    table.delete().where(table.c.schedule.in_(gone), table.c.state == QUEUED)
                )
        return gone


def as_tick(row: Any) -> Tick:
    return Tick(
        schedule=row["schedule"],
        at=datetime.fromtimestamp(row["at"], UTC),
        state=row["state"],
        reason=row["reason"],
        run_id=row["run_id"],
        replica=row["replica"],
        decided_at=moment(row["decided_at"]),
        heartbeat_at=moment(row["heartbeat_at"]),
        ended_at=moment(row["ended_at"]),
        manual=bool(row["manual"]),
    )


def replica_name() -> str:
    """This process, as the ticks table names the replica that decided a tick."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# What starts a run for a tick: it returns the run's id and whether it succeeded; it is
# cancelled past the schedule's max_runtime_seconds.
StartRun = Callable[[Schedule, Tick], Awaitable[tuple[str | None, bool]]]


@dataclass
class Scheduler:
    """One replica's scheduler: `poll` decides the due ticks of every schedule and starts the
    runs this replica won; `serve_forever` polls every `poll_seconds`."""

    store: TickStore
    schedules: Sequence[Schedule]
    start_run: StartRun
    clock: Clock = real_clock
    poll_seconds: float = POLL_SECONDS
    stale_seconds: float = STALE_SECONDS
    replica: str = field(default_factory=replica_name)
    started: datetime | None = None  # the first poll: a new schedule's ticks count from there
    runs: dict[tuple[str, datetime], asyncio.Task[None]] = field(default_factory=dict)
    polling: asyncio.Task[Any] | None = None  # serve_forever's task

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
        this replica decided to run."""
        now = self.clock()
        if self.started is None:
            self.started = now
        started: list[Tick] = []
        for schedule in self.schedules:
            for tick in await asyncio.to_thread(self.decide, schedule, now):
                self.launch(schedule, tick)
                started.append(tick)
        return started

    def decide(self, schedule: Schedule, now: datetime) -> list[Tick]:
        """Under the schedule's lock: record each tick due by `now` as running, queued or
        skipped, end the running ticks whose replica is gone, and start a queued tick if the
        schedule has nothing running. The ticks to run here."""
        assert self.started is not None
        with self.store.deciding(schedule.key) as connection:
            self.beat(connection, schedule, now)
            self.end_stale(connection, schedule, now)
            last = self.store.last(connection, schedule.key)
            since = last.at if last is not None else self.started - timedelta(seconds=1)
            due = schedule.ticks_between(since, now)
            # A queued tick goes first: the new ones queue behind it.
            to_run = self.dequeued(connection, schedule, now)
            to_run += [
                tick
                for tick in self.decisions(connection, schedule, due, now)
                if self.store.add(connection, tick) and tick.state == RUNNING
            ]
        return to_run

    def decisions(
        self, connection: Connection, schedule: Schedule, due: list[datetime], now: datetime
    ) -> list[Tick]:
        """What becomes of each due tick, by on_missed and overlap."""
        late = timedelta(seconds=self.poll_seconds + LATE_SECONDS)
        on_time = [at for at in due if now - at <= late]
        missed = [at for at in due if now - at > late]
        runs: list[datetime] = []
        decided: list[Tick] = []
        if schedule.on_missed == "skip":
            skipped, runs = missed, on_time
        elif schedule.on_missed == "run_once":
            # One run for all of them: at the newest tick (an on-time one if there is one).
            newest = (on_time or missed)[-1:]
            skipped, runs = [at for at in due if at not in newest], newest
        else:  # catch_up: each missed tick, the newest max_catch_up of them
            kept = missed[-schedule.max_catch_up :]
            skipped, runs = [at for at in missed if at not in kept], kept + on_time
        for at in skipped:
            why = "missed: no replica was serving when it was due"
            if schedule.on_missed == "run_once" and at in missed:
                why += f" (on_missed run_once: one run, at the tick of {runs[-1].isoformat()})"
            elif schedule.on_missed == "catch_up":
                why += f" (beyond max_catch_up {schedule.max_catch_up})"
            decided.append(self.tick(schedule, at, SKIPPED, now, reason=why))
        # What a new tick waits behind: the run under way, or (queue) the oldest queued tick.
        waiting = (RUNNING, QUEUED) if schedule.overlap == "queue" else (RUNNING,)
        running = self.store.rows(connection, schedule.key, waiting)
        busy = running[-1] if running else None
        for at in runs:
            if busy is None or schedule.overlap == "allow":
                tick = self.tick(schedule, at, RUNNING, now)
                busy = tick
            elif schedule.overlap == "skip":
                why = f"overlap: the run of the tick of {busy.at.isoformat()} was still running"
                tick = self.tick(schedule, at, SKIPPED, now, reason=why)
            else:
                tick = self.tick(schedule, at, QUEUED, now)
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
        self.store.update(
            oldest, connection, state=RUNNING, replica=self.replica, decided_at=now,
            heartbeat_at=now,
        )  # fmt: skip
        return [dataclasses.replace(oldest, state=RUNNING, replica=self.replica)]

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
                .values(heartbeat_at=epoch(now))
            )

    def end_stale(self, connection: Connection, schedule: Schedule, now: datetime) -> None:
        """Running ticks whose replica stopped renewing them: failed."""
        for tick in self.store.rows(connection, schedule.key, (RUNNING,)):
            alive = tick.heartbeat_at or tick.decided_at or tick.at
            if (now - alive).total_seconds() > self.stale_seconds and not self.runs_here(tick):
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
        state, reason, run_id = "failed", None, None
        try:
            async with asyncio.timeout(schedule.max_runtime_seconds):
                run_id, succeeded = await self.start_run(schedule, tick)
            state = "ok" if succeeded else "failed"
        except TimeoutError:
            state = "cancelled"
            reason = f"ran longer than max_runtime_seconds ({schedule.max_runtime_seconds:g} s)"
        except asyncio.CancelledError:
            state, reason = "cancelled", "the server stopped while it ran"
            raise
        except Exception as error:
            reason = " ".join(str(error).split())[:300]
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    self.store.update,
                    tick,
                    state=state,
                    reason=reason,
                    run_id=run_id,
                    ended_at=self.clock(),
                )

    async def trigger(self, schedule: Schedule) -> Tick:
        """One run now, under the schedule's overlap policy: the tick it got (running, queued
        or skipped). Its run, on this event loop, is awaited."""
        tick = self.claim_trigger(schedule)
        if tick.state == RUNNING:
            self.launch(schedule, tick)
            await self.runs[(tick.schedule, tick.at)]
        return tick

    def claim_trigger(self, schedule: Schedule) -> Tick:
        """The tick of a run now (`schedule trigger`), decided under the schedule's overlap
        policy: running (the caller runs it, then calls `finish`), queued or skipped."""
        now = self.clock()
        with self.store.deciding(schedule.key) as connection:
            self.end_stale(connection, schedule, now)
            running = self.store.rows(connection, schedule.key, (RUNNING,), limit=1)
            state = RUNNING
            reason = None
            if running and schedule.overlap == "skip":
                state = SKIPPED
                reason = (
                    f"overlap: the run of the tick of {running[0].at.isoformat()} was still running"
                )
            elif running and schedule.overlap == "queue":
                state = QUEUED
            tick = dataclasses.replace(self.tick(schedule, now, state, now, reason), manual=True)
            self.store.add(connection, tick)
        return tick

    def finish(self, tick: Tick, state: str, run_id: str | None, reason: str | None = None) -> None:
        """Record how the run of a tick that the caller ran ended."""
        self.store.update(tick, state=state, reason=reason, run_id=run_id, ended_at=self.clock())

    async def wait(self) -> None:
        """Until the runs this replica started have ended (tests, shutdown)."""
        while self.runs:
            await asyncio.gather(*self.runs.values(), return_exceptions=True)
