"""The ticks of schedules, as the run history's table `parallel_workflow_ticks` keeps them: one
row per schedule and tick (its primary key), inserted by the replica that decides the tick and
updated as its run goes. The scheduler (_schedule/scheduler.py) decides what they hold; this
module reads and writes them, at the database's time and under its lock.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agno.db.base import BaseDb
    from sqlalchemy import Connection, Engine, Table

    from parallel_workflow_runtime._store.lease import Lease

log = logging.getLogger("parallel_workflow_runtime")

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
    """The ticks table of one history database (store/tables.py; open_history migrates it)."""

    def __init__(self, engine: Engine) -> None:
        from parallel_workflow_runtime._store.tables import ticks

        self.engine = engine
        self.table: Table = ticks

    @classmethod
    def of(cls, db: BaseDb) -> TickStore:
        from parallel_workflow_runtime._store.agno_adapter import engine_of

        return cls(engine_of(db))

    @contextlib.contextmanager
    def deciding(self, schedule: str) -> Iterator[Connection]:
        """A transaction in which one replica at a time decides `schedule`'s ticks."""
        from sqlalchemy import text

        with self.engine.connect() as connection:
            if self.engine.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": zlib.crc32(f"{self.table.name}:{schedule}".encode())},
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
        lapsed: tuple[Lease, datetime] | None = None,
    ) -> list[Tick]:
        """Ticks, newest first; with `lapsed` (a lease, and the database's time), only those
        whose lease ran out by then."""
        from sqlalchemy import select

        table = self.table
        query = select(table).order_by(table.c.at.desc())
        if schedule is not None:
            query = query.where(table.c.schedule == schedule)
        if lapsed is not None:
            lease, now = lapsed
            query = query.where(lease.lapsed(epoch(now)))
        if states:
            query = query.where(table.c.state.in_(list(states)))
        if limit is not None:
            query = query.limit(limit)
        with contextlib.ExitStack() as stack:
            if connection is None:
                connection = stack.enter_context(self.engine.connect())
            return [as_tick(row) for row in connection.execute(query).mappings()]

    def now(self, connection: Connection) -> datetime:
        """The database's clock (store/lease.py: on SQLite, this machine's, which every replica
        of an SQLite history shares, one file on one machine)."""
        from parallel_workflow_runtime._store.lease import database_time

        return datetime.fromtimestamp(database_time(connection), UTC)

    def last(self, connection: Connection, schedule: str, until: datetime) -> Tick | None:
        """The schedule's newest tick that the clock made (not `schedule trigger`'s), due by
        `until`."""
        from sqlalchemy import select

        table = self.table
        query = (
            select(table)
            .where(
                table.c.schedule == schedule,
                table.c.manual.is_(False),
                table.c.at <= epoch(until),
            )
            .order_by(table.c.at.desc())
            .limit(1)
        )
        row = connection.execute(query).mappings().first()
        return None if row is None else as_tick(row)

    def forget_undecided_after(
        self, connection: Connection, schedule: str, after: datetime
    ) -> None:
        """Delete the schedule's skipped and queued ticks due after `after`: decided early
        (see Scheduler.decide), they are decided again when due."""
        table = self.table
        connection.execute(
            table.delete().where(
                table.c.schedule == schedule,
                table.c.manual.is_(False),
                table.c.state.in_([SKIPPED, QUEUED]),
                table.c.at > epoch(after),
            )
        )

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
