"""A lease: a row that one holder at a time (a run, a `serve` replica) holds until its claim
runs out, unless the holder renews it, timed by the database's clock. The runs and replicas
that share a history may be on machines whose clocks disagree; the database's is the one they
all read.

Two tables hold leases, each in columns of its own (as runtime 0.9.0 created them):

- a cursor (cursors.py): held by `claimed_by` until `claimed_until`; a renewal moves
  `claimed_until` on, a release empties both;
- a running tick (scheduler.py): held by its `replica` while its `heartbeat_at` (else
  `decided_at`, else its time `at`) is fresher than the scheduler's stale seconds; a renewal
  is a new heartbeat, and a tick whose heartbeat stopped is ended, not handed on.

`Lease` says, for either, in SQL: who holds a row now, whether a holder may take it, when it
runs out, and the values that claim, renew or release it. `now` is the database's clock as SQL
(`database_clock`), or a time it read (`database_time`), in seconds since 1970.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Column, ColumnElement, Connection

    # The database's time: its clock as SQL, or a time read from it.
    Now = float | ColumnElement[Any]


def database_clock(dialect: str) -> ColumnElement[Any]:
    """The database's clock, in seconds since 1970, as SQL. PostgreSQL's clock_timestamp(): the
    server's time as the statement runs (now() would be its transaction's start, before it
    waited for a lock). SQLite has no server: its 'now' is this machine's clock, which every
    process that shares its file shares."""
    from sqlalchemy import Double, cast, func, literal, literal_column

    if dialect == "sqlite":  # julianday: days since noon in Greenwich on 24 November 4714 BC
        return literal_column("((julianday('now') - 2440587.5) * 86400.0)")
    if dialect == "postgresql":
        return cast(func.extract("epoch", func.clock_timestamp()), Double)
    return literal(time.time())


def database_time(connection: Connection) -> float:
    """The database's clock, read now."""
    from sqlalchemy import select

    return float(connection.execute(select(database_clock(connection.dialect.name))).scalar_one())


@dataclass(frozen=True)
class Lease:
    """The lease of the rows of one table (see the module)."""

    holder: Column[Any]  # who holds a row (NULL: nobody)
    expires: ColumnElement[Any]  # when its holder's claim runs out, in the database's seconds
    renewed: Callable[[Now], dict[str, Any]]  # the values that make it last from `now`
    released: dict[str, Any]  # the values that let it go (empty: it stays, as a record)

    def live(self, now: Now) -> ColumnElement[bool]:
        """Held, and not run out."""
        return self.holder.is_not(None) & (self.expires >= now)

    def lapsed(self, now: Now) -> ColumnElement[bool]:
        """Run out (whoever held it is presumed gone: killed, or cut off from the database)."""
        return self.expires < now

    def held_by_another(self, holder: str, now: Now) -> ColumnElement[bool]:
        return self.live(now) & (self.holder != holder)

    def free_for(self, holder: str, now: Now) -> ColumnElement[bool]:
        """Whether `holder` may take it: nobody holds it, its claim ran out, or it is its own."""
        return self.holder.is_(None) | self.lapsed(now) | (self.holder == holder)

    def held_by(self, holder: str) -> ColumnElement[bool]:
        """`holder`'s, whether or not its claim ran out (nobody took it meanwhile)."""
        return self.holder == holder

    def holder_now(self, now: Now) -> ColumnElement[Any]:
        """Who holds it now, as SQL: NULL when nobody does, or the claim ran out."""
        from sqlalchemy import case

        return case((self.live(now), self.holder), else_=None)

    def seconds_left(self, now: Now) -> ColumnElement[Any]:
        return self.expires - now

    def claimed(self, holder: str, now: Now) -> dict[str, Any]:
        """The values that give it to `holder` from `now`."""
        return {self.holder.name: holder, **self.renewed(now)}


def cursor_lease(seconds: float) -> Lease:
    """A cursor's: `claimed_by` holds it until `claimed_until`, `seconds` after a renewal."""
    from parallel_workflow_runtime._store.tables import cursors

    return Lease(
        holder=cursors.c.claimed_by,
        expires=cursors.c.claimed_until,
        renewed=lambda now: {"claimed_until": now + seconds},
        released={"claimed_by": None, "claimed_until": None},
    )


def tick_lease(stale_seconds: float) -> Lease:
    """A running tick's: its `replica` holds it while it beats (`heartbeat_at`, else since it
    was decided, else since it was due) within `stale_seconds`. It is never released: its
    replica stays on it, as the record of who ran it."""
    from sqlalchemy import func

    from parallel_workflow_runtime._store.tables import ticks

    alive = func.coalesce(ticks.c.heartbeat_at, ticks.c.decided_at, ticks.c.at)
    return Lease(
        holder=ticks.c.replica,
        expires=alive + stale_seconds,
        renewed=lambda now: {"heartbeat_at": now},
        released={},
    )
