"""The cursors of connector sources, kept in the run history's database beside Agno's tables.

A source's cursor says how far it has read (connectors.CursorTracker). A run that reads it:

1. claims it, before the source's first attempt: one run at a time holds a source's cursor,
   so two runs never both read the same new rows as new (the second waits for the first);
2. reads from it, wherever the source runs;
3. advances it when the source succeeded and the run is recorded in the history, and
   releases it. A failed, timed-out or cancelled source, or a run that was not recorded,
   releases it unchanged: the next run reads those rows again, nothing is skipped.

A run claims the cursors of all its connector sources at once, when the first of them starts:
one transaction that takes them all or none (CursorStore.claim_all), so that two runs never
each hold one cursor while waiting for the other's (they did, and waited for ever). A run
that finds one held waits until it can take them all, and says so (one line naming the
source, the run that holds it and how long that claim lasts). Each source waits for any one
run's claim at most its own `timeout_seconds` (null: no limit), but never less than a claim
lasts (wait_limit), then times out without an attempt: runs that finish in turn are waited
through (16 started at once all complete), a run that holds a cursor that long is not. The
wait is counted in the source's `waited_seconds`.

A claim is a lease (store/lease.py): it lasts CLAIM_SECONDS, timed by the database's clock
(the runs sharing a history may run on machines whose clocks disagree), and a thread of the
run renews it every RENEW_SECONDS, whatever the run's event loop is doing (a source that blocks
it holds up no renewal): a run that was killed holds its cursors no longer than that. A run
whose claim was taken all the same (its process was stopped, or could not reach the database,
for longer than a claim lasts) fails that source instead of keeping what it read, and never
advances that cursor.

A cursor's state is JSON: its column (`field`), its `value`, the keys of the rows `seen` at
that value, and the `target` it was reached on (connectors.Target: the database and table,
the endpoint, the folder, or a bundled sample). A read whose target is another starts again
from the initial value (connectors.resumed); a cursor kept by 0.7.0 has no target, and is
taken as the current target's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Collection, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agno.db.base import BaseDb
    from sqlalchemy import ColumnElement, Connection, Engine, Table

    from parallel_workflow_runtime._store.lease import Lease

log = logging.getLogger("parallel_workflow_runtime")

CLAIM_SECONDS = 60.0
RENEW_SECONDS = 15.0
WAIT_SECONDS = 0.2  # between two looks at cursors another run holds (on average)
SHOWN_EVERY_SECONDS = 10.0  # the wait's line again, at most this often, when the holder changes

State = dict[str, Any] | None


@dataclass(frozen=True)
class StoredCursor:
    workflow_id: str
    source_id: str
    state: dict[str, Any] | None
    run_id: str | None  # the run that last advanced it
    updated_at: float | None
    claimed_by: str | None  # the run reading it now

    @property
    def target(self) -> str | None:
        """What the cursor was reached on (None: kept by 0.7.0, which kept none)."""
        target = (self.state or {}).get("target")
        return target if isinstance(target, str) else None


@dataclass(frozen=True)
class Holder:
    """Another run's live claim on one of the cursors a run asked for."""

    source_id: str
    run_id: str | None  # None: it changed hands while we looked (look again)
    seconds_left: float  # how long the claim lasts unless its run renews it


class _Taken(Exception):
    """One of the cursors asked for is held by another run: the claim is rolled back."""


class CursorStore:
    """The cursors table of one history database (store/tables.py; open_history migrates it)."""

    def __init__(self, engine: Engine) -> None:
        from parallel_workflow_runtime._store.lease import cursor_lease
        from parallel_workflow_runtime._store.tables import cursors

        self.engine = engine
        self.table: Table = cursors
        self.lease: Lease = cursor_lease(CLAIM_SECONDS)

    @classmethod
    def of(cls, db: BaseDb) -> CursorStore:
        from parallel_workflow_runtime._store.agno_adapter import engine_of

        return cls(engine_of(db))

    def now(self) -> ColumnElement[Any]:
        """The database's clock, as SQL: claims are timed by it (store/lease.py)."""
        from parallel_workflow_runtime._store.lease import database_clock

        return database_clock(self.engine.dialect.name)

    def claim(self, workflow_id: str, source_id: str, run_id: str) -> dict[str, Any] | bool | None:
        """One cursor, as claim_all takes them: its state if `run_id` now holds it, False if
        another live run does."""
        claimed = self.claim_all(workflow_id, [source_id], run_id)
        return False if isinstance(claimed, Holder) else claimed[source_id]

    def claim_all(
        self, workflow_id: str, source_ids: Iterable[str], run_id: str
    ) -> dict[str, State] | Holder:
        """Every one of these cursors for `run_id`, or none of them: their states (by source
        id) if it now holds them all, else a claim of another live run that is in the way.

        In one transaction, one cursor after another in the order of their ids, which is the
        same for every run: on PostgreSQL a run waits for the row another's transaction is
        claiming, and the same order means that two never wait for each other."""
        from sqlalchemy import select

        table = self.table
        ids = sorted(set(source_ids))
        self._create(workflow_id, ids)
        # A look first, which writes nothing: runs that wait look often, and a write would
        # take the SQLite file's one write lock each time.
        holder = self.holder(workflow_id, ids, run_id)
        if holder is not None:
            return holder
        now = self.now()
        try:
            with self.engine.begin() as connection:
                for source_id in ids:
                    claimed = connection.execute(
                        table.update()
                        .where(
                            table.c.workflow_id == workflow_id,
                            table.c.source_id == source_id,
                            self.lease.free_for(run_id, now),
                        )
                        .values(self.lease.claimed(run_id, now))
                    ).rowcount
                    if not claimed:
                        raise _Taken(source_id)  # rolls back what it took so far
                rows = connection.execute(
                    select(table.c.source_id, table.c.state).where(
                        table.c.workflow_id == workflow_id, table.c.source_id.in_(ids)
                    )
                ).all()
        except _Taken as taken:
            return self.holder(workflow_id, ids, run_id) or Holder(str(taken), None, 0.0)
        return {row.source_id: None if row.state is None else json.loads(row.state) for row in rows}

    def _create(self, workflow_id: str, source_ids: list[str]) -> None:
        """The rows of these cursors, unclaimed and without a state where there were none:
        claim_all then only updates rows. (`all` shows no such row: nothing has read it.)"""
        from sqlalchemy import select
        from sqlalchemy.exc import IntegrityError

        table = self.table
        with self.engine.connect() as connection:
            existing = set(
                connection.execute(
                    select(table.c.source_id).where(
                        table.c.workflow_id == workflow_id, table.c.source_id.in_(source_ids)
                    )
                ).scalars()
            )
        for source_id in source_ids:
            if source_id in existing:
                continue
            # Each in a transaction of its own: another run may create it at the same moment.
            with contextlib.suppress(IntegrityError), self.engine.begin() as connection:
                connection.execute(
                    table.insert().values(workflow_id=workflow_id, source_id=source_id)
                )

    def holder(self, workflow_id: str, source_ids: Iterable[str], run_id: str) -> Holder | None:
        """The first of these cursors (by id) that a run other than `run_id` holds now."""
        from sqlalchemy import select

        table = self.table
        now = self.now()
        with self.engine.connect() as connection:
            row = connection.execute(
                select(
                    table.c.source_id,
                    table.c.claimed_by,
                    self.lease.seconds_left(now).label("seconds_left"),
                )
                .where(
                    table.c.workflow_id == workflow_id,
                    table.c.source_id.in_(sorted(set(source_ids))),
                    self.lease.held_by_another(run_id, now),
                )
                .order_by(table.c.source_id)
                .limit(1)
            ).first()
        if row is None:
            return None
        return Holder(row.source_id, row.claimed_by, float(row.seconds_left))

    def renew(self, workflow_id: str, run_id: str, source_ids: Iterable[str]) -> set[str]:
        """Make `run_id`'s claims on these cursors last CLAIM_SECONDS from now; the ids of those
        it still held. (A claim that ran out and nobody took is still its own, and is renewed:
        nobody read those rows meanwhile.)"""
        now = self.now()
        held: set[str] = set()
        with self.engine.begin() as connection:
            for source_id in sorted(set(source_ids)):  # the order claim_all takes them in
                renewed = self.lease.renewed(now)
                if self._update_held(connection, workflow_id, source_id, run_id, renewed):
                    held.add(source_id)
        return held

    def _update_held(
        self,
        connection: Connection,
        workflow_id: str,
        source_id: str,
        run_id: str,
        values: dict[str, Any],
    ) -> int:
        """Update one cursor's row with `values` if `run_id` holds it (whether or not its
        claim ran out); how many rows that was, 0 or 1."""
        table = self.table
        return connection.execute(
            table.update()
            .where(
                table.c.workflow_id == workflow_id,
                table.c.source_id == source_id,
                self.lease.held_by(run_id),
            )
            .values(**values)
        ).rowcount

    def settle(
        self,
        workflow_id: str,
        run_id: str,
        reached: dict[str, State],
        source_ids: Iterable[str] | None = None,
    ) -> set[str]:
        """Advance the cursors `run_id` reached (by source id) and release all it holds (of
        `source_ids`; None: of the workflow), in one transaction. The ids of the cursors it
        reached but no longer held, taken by another run meanwhile: those did not move."""
        from sqlalchemy import select

        table = self.table
        now = time.time()
        not_kept: set[str] = set()
        with self.engine.begin() as connection:
            if source_ids is None:
                source_ids = connection.execute(
                    select(table.c.source_id).where(
                        table.c.workflow_id == workflow_id, self.lease.held_by(run_id)
                    )
                ).scalars()
            for source_id in sorted(set(source_ids) | set(reached)):
                values: dict[str, Any] = dict(self.lease.released)
                if source_id in reached:
                    state = reached[source_id]
                    values.update(
                        state=None if state is None else json.dumps(state),
                        run_id=run_id,
                        updated_at=now,
                    )
                updated = self._update_held(connection, workflow_id, source_id, run_id, values)
                if not updated and source_id in reached:
                    not_kept.add(source_id)
        return not_kept

    def all(self, workflow_id: str | None = None) -> list[StoredCursor]:
        from sqlalchemy import or_, select

        from parallel_workflow_runtime._store.lease import database_time

        table = self.table
        with self.engine.connect() as connection:
            now = database_time(connection)
            # Not a source that never got a cursor (it has not succeeded yet) and that nobody
            # reads.
            query = (
                select(table, self.lease.holder_now(now).label("held_by"))
                .where(or_(table.c.state.is_not(None), self.lease.live(now)))
                .order_by(table.c.workflow_id, table.c.source_id)
            )
            if workflow_id is not None:
                query = query.where(table.c.workflow_id == workflow_id)
            rows = connection.execute(query).mappings().all()
        return [
            StoredCursor(
                workflow_id=row["workflow_id"],
                source_id=row["source_id"],
                state=json.loads(row["state"]) if row["state"] is not None else None,
                run_id=row["run_id"],
                updated_at=row["updated_at"],
                claimed_by=row["held_by"],
            )
            for row in rows
        ]


class CursorWaitTimedOut(Exception):
    """A source waited its whole timeout for its cursor: the message says who held it."""


@dataclass
class CursorSession:
    """The cursors of one run: claimed together as its first connector source starts,
    renewed by a thread while it runs, settled when it has ended.

    `full_refresh`: the ids of the sources that read from their initial value this time
    (their cursor is replaced by where this read gets to); None for none, empty for all.
    """

    store: CursorStore
    workflow_id: str
    full_refresh: frozenset[str] | None = None
    run_id: str | None = None
    held: set[str] = field(default_factory=set)
    reached: dict[str, State] = field(default_factory=dict)
    states: dict[str, State] = field(default_factory=dict)  # as they were claimed
    asked: set[str] = field(default_factory=set)  # every cursor a claim of this run asked for
    # Whether a look found a cursor held by another run: the sources then waited for it.
    contended: bool = False
    holder: Holder | None = None  # the claim in the way at the last look
    _holder_run: str | None = None  # the last run found holding what this one needs
    _holder_since: float = 0.0  # since when (the loop's time)
    error: str | None = None  # the database's error at the last look, if it failed
    taken: dict[str, str] = field(default_factory=dict)  # lost claims the renewals found
    finished: bool = False
    _claiming: asyncio.Task[None] | None = None
    _waiters: int = 0
    _give_up: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _renewer: threading.Thread | None = None
    _owner: asyncio.Task[Any] | None = None  # the run's task, which `kept` runs in

    async def claim(
        self, source_id: str, run_id: str, group: Collection[str], timeout: float | None
    ) -> State:
        """This source's cursor, once this run holds it. The first source to ask claims the
        cursors of `group` (all the run's connector sources) with its own, all at once.

        Each source waits for that claim at most `timeout` seconds (None: no limit) for any
        one run that holds what it needs, then CursorWaitTimedOut says whose claim was in the
        way. For any one run: runs that each finish in turn (16 started at once) are waited
        through, however long the queue; a run that holds the cursor that long is not."""
        self.run_id = run_id
        self._waiters += 1
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            while source_id not in self.held:
                if self._claiming is None or self._claiming.done():
                    # A source that was not in the group claims after it: this happens only
                    # to a runner that was not told its workflow's sources.
                    ids = (set(group) | {source_id}) - self.held
                    self.asked |= ids
                    self._give_up = False
                    self._claiming = asyncio.create_task(self._claim_all(sorted(ids), run_id))
                if timeout is None:
                    await asyncio.shield(self._claiming)  # a source that stops stops no claim
                    continue
                left = max(began, self._holder_since) + timeout - loop.time()
                if left <= 0:
                    raise CursorWaitTimedOut(
                        f"timed out after {timeout:g} s waiting for its cursor: "
                        + self.in_the_way()
                    )
                # Not cancelled when the wait ends: the claim is the other sources' too.
                await asyncio.wait({self._claiming}, timeout=min(left, 1.0))
        finally:
            self._waiters -= 1
            if not self._waiters and self._claiming is not None and not self._claiming.done():
                self._give_up = True  # nobody waits for it any more: it stops looking
        if self.full_refresh is not None and (
            not self.full_refresh or source_id in self.full_refresh
        ):
            return None
        return self.states.get(source_id)

    def in_the_way(self) -> str:
        """What kept the claim from being taken, at the last look, in words."""
        holder = self.holder
        if holder is not None and holder.run_id is not None:
            return (
                f"run {holder.run_id} holds the cursor of {holder.source_id}, for"
                f" {max(holder.seconds_left, 0):.0f} s more unless it renews its claim (a live"
                " run does): try again when it has ended, or raise timeout_seconds"
            )
        if self.error is not None:
            return f"the history's database failed: {self.error}"
        return "other runs took it first, one after another"

    async def _claim_all(self, ids: list[str], run_id: str) -> None:
        """Look until this run holds all of `ids`, or nobody waits for them any more."""
        from sqlalchemy.exc import SQLAlchemyError

        from parallel_workflow_runtime._core.results import one_line

        shown: str | None = None
        shown_at = -SHOWN_EVERY_SECONDS
        while not self._give_up:
            try:
                claimed = await asyncio.to_thread(
                    self.store.claim_all, self.workflow_id, ids, run_id
                )
            except SQLAlchemyError as error:  # e.g. the SQLite file's lock: look again
                self.error = one_line(error)
            else:
                if not isinstance(claimed, Holder):
                    with self._lock:
                        self.states.update(claimed)
                        self.held.update(claimed)
                    self.holder = None
                    self._start_renewing()
                    return
                if claimed.run_id not in (None, self._holder_run):
                    self._holder_run = claimed.run_id
                    self._holder_since = asyncio.get_running_loop().time()
                self.holder = claimed
                self.contended = True
                now = time.monotonic()
                if (
                    claimed.run_id is not None
                    and claimed.run_id != shown
                    and now - shown_at >= SHOWN_EVERY_SECONDS
                ):
                    shown, shown_at = claimed.run_id, now
                    log.warning(waiting_line(claimed, len(ids)))
            await asyncio.sleep(WAIT_SECONDS * random.uniform(0.5, 1.5))

    def _start_renewing(self) -> None:
        if self._renewer is None:
            # A thread, not a task of the event loop: a source that blocks the loop (an
            # async def that never awaits) would hold up the renewals, and the claims would
            # run out while this run still reads.
            self._renewer = threading.Thread(
                target=self._renew, name=f"cursor claims of {self.run_id}", daemon=True
            )
            self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            if self._owner is not None and self._owner.done():
                return  # the run is over without `finish` (its loop was torn down): let go
            with self._lock:
                held = self.held - set(self.taken)
            if not held or self.run_id is None:
                continue
            try:
                kept = self.store.renew(self.workflow_id, self.run_id, held)
            except Exception:  # the database is out of reach: the next renewal tries again
                continue
            for source_id in held - kept:
                self.taken[source_id] = taken_line()

    async def taken_from_it(self, source_id: str) -> str | None:
        """None while this run holds the source's cursor (its claim is renewed now), else
        why it does not, in one line: another run took it, and may be reading its rows."""
        if source_id not in self.held or self.run_id is None:
            return None
        if source_id not in self.taken:
            try:
                kept = await asyncio.to_thread(
                    self.store.renew, self.workflow_id, self.run_id, {source_id}
                )
            except Exception:  # out of reach: settle keeps nothing it does not hold
                return None
            if kept:
                return None
            self.taken[source_id] = taken_line()
        return self.taken[source_id]

    def reach(self, source_id: str, state: State) -> None:
        """The source succeeded and read up to `state`: kept if the run is recorded."""
        self.reached[source_id] = state

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[CursorSession]:
        """This run's claims, released after it if `finish` did not."""
        self._owner = asyncio.current_task()
        try:
            yield self
        finally:
            if not self.finished:
                await self.finish(recorded=False)

    async def finish(self, recorded: bool) -> list[str]:
        """Advance what this run reached if it was recorded, and release every claim; what
        could not be kept, one line each (a cursor another run took while this one read)."""
        self.finished = True
        self._give_up = True
        if self._claiming is not None and not self._claiming.done():
            # It stops at its next look; what it took meanwhile is released below.
            await asyncio.wait({self._claiming})
        self._stop.set()
        if self._renewer is not None:
            await asyncio.to_thread(self._renewer.join)
        if self.run_id is None or not self.asked:
            return []
        reached = self.reached if recorded else {}
        not_kept = await asyncio.to_thread(
            self.store.settle, self.workflow_id, self.run_id, reached, self.asked
        )
        self.held.clear()
        return [
            f"source {source_id}: its cursor was taken by another run before this run could"
            " keep where it read to: that run may read the same rows again"
            for source_id in sorted(not_kept)
        ]


def wait_limit(timeout_seconds: float | None) -> float | None:
    """How long a source waits for any one run's claim on its cursor: its timeout_seconds
    (None: no limit), but at least as long as a claim lasts, and a look more: the claim of a
    run that was killed (`kill -9`, a machine that went down) always runs out before the
    next run gives up."""
    if timeout_seconds is None:
        return None
    return max(timeout_seconds, CLAIM_SECONDS + 2 * WAIT_SECONDS)


def taken_line() -> str:
    """Why a source whose claim another run took failed."""
    return (
        "its cursor was taken by another run: this run's claim was not renewed for"
        f" {CLAIM_SECONDS:g} s (was its process stopped, or the history's database out of"
        " reach?), so what it read is not kept, and the cursor stays where that run leaves it"
    )


def waiting_line(holder: Holder, cursors: int) -> str:
    """The line that says a run waits for another's claim, and for how long at most."""
    together = "its cursor" if cursors == 1 else f"its {cursors} cursors together"
    return (
        f"source {holder.source_id} waits for its cursor: run {holder.run_id} holds it, for"
        f" {max(holder.seconds_left, 0):.0f} s more unless that run renews it (a live run does"
        f" every {RENEW_SECONDS:g} s, a killed one cannot); this run takes {together}, each"
        f" source waiting for one run at most its timeout_seconds (never under"
        f" {CLAIM_SECONDS:g} s)"
    )


# The run's cursors, for its sources' steps (set by running.run_workflow when the run has a
# history); None: every connector reads from its initial value and keeps nothing.
CURSORS: ContextVar[CursorSession | None] = ContextVar("cursors", default=None)
