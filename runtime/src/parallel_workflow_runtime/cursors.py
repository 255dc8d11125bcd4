"""The cursors of connector sources, kept in the run history's database beside Agno's tables.

A source's cursor says how far it has read (connectors.CursorTracker). A run that reads it:

1. claims it, before the source's first attempt: one run at a time holds a source's cursor,
   so two runs never both read the same new rows as new (the second waits for the first);
2. reads from it, wherever the source runs;
3. advances it when the source succeeded and the run is recorded in the history, and
   releases it. A failed, timed-out or cancelled source, or a run that was not recorded,
   releases it unchanged: the next run reads those rows again, nothing is skipped.

A claim lasts CLAIM_SECONDS and the run renews it while it runs: a run that was killed holds
its cursors no longer than that.

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
import time
from collections.abc import AsyncIterator, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agno.db.base import BaseDb
    from sqlalchemy import Engine, Table

TABLE = "parallel_workflow_cursors"
CLAIM_SECONDS = 60.0
RENEW_SECONDS = 15.0
WAIT_SECONDS = 0.2  # between two looks at a cursor another run holds


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


class CursorStore:
    """The cursors table of one history database."""

    def __init__(self, engine: Engine) -> None:
        from sqlalchemy import Column, Float, MetaData, String, Table, Text

        self.engine = engine
        self.table: Table = Table(
            TABLE,
            MetaData(),
            Column("workflow_id", String(200), primary_key=True),
            Column("source_id", String(200), primary_key=True),
            Column("state", Text, nullable=True),
            Column("run_id", String(100), nullable=True),
            Column("updated_at", Float, nullable=True),
            Column("claimed_by", String(100), nullable=True),
            Column("claimed_until", Float, nullable=True),
        )

    @classmethod
    def of(cls, db: BaseDb) -> CursorStore:
        return cls(db.db_engine)  # type: ignore[attr-defined]

    def create_table(self) -> None:
        """Create the table if it is not there (open_history calls it under its lock)."""
        self.table.create(self.engine, checkfirst=True)

    def claim(self, workflow_id: str, source_id: str, run_id: str) -> dict[str, Any] | bool | None:
        """The cursor's state if `run_id` now holds it, False if another live run does."""
        from sqlalchemy import and_, or_, select
        from sqlalchemy.exc import IntegrityError

        table = self.table
        key = and_(table.c.workflow_id == workflow_id, table.c.source_id == source_id)
        now = time.time()
        with self.engine.begin() as connection:
            claimed = connection.execute(
                table.update()
                .where(
                    key,
                    or_(
                        table.c.claimed_by.is_(None),
                        table.c.claimed_until < now,
                        table.c.claimed_by == run_id,
                    ),
                )
                .values(claimed_by=run_id, claimed_until=now + CLAIM_SECONDS)
            ).rowcount
            if claimed:
                state = connection.execute(select(table.c.state).where(key)).scalar_one()
                return json.loads(state) if state is not None else None
            exists = connection.execute(select(table.c.source_id).where(key)).first()
        if exists:
            return False
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    table.insert().values(
                        workflow_id=workflow_id,
                        source_id=source_id,
                        claimed_by=run_id,
                        claimed_until=now + CLAIM_SECONDS,
                    )
                )
        except IntegrityError:
            return False  # another run created it a moment ago, and holds it
        return None

    def renew(self, workflow_id: str, run_id: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                self.table.update()
                .where(self.table.c.workflow_id == workflow_id, self.table.c.claimed_by == run_id)
                .values(claimed_until=time.time() + CLAIM_SECONDS)
            )

    def settle(
        self, workflow_id: str, run_id: str, reached: dict[str, dict[str, Any] | None]
    ) -> None:
        """Advance the cursors `run_id` reached (by source id) and release all it holds, in
        one transaction."""
        table = self.table
        now = time.time()
        with self.engine.begin() as connection:
            for source_id, state in reached.items():
                connection.execute(
                    table.update()
                    .where(
                        table.c.workflow_id == workflow_id,
                        table.c.source_id == source_id,
                        table.c.claimed_by == run_id,
                    )
                    .values(
                        state=None if state is None else json.dumps(state),
                        run_id=run_id,
                        updated_at=now,
                    )
                )
            connection.execute(
                table.update()
                .where(table.c.workflow_id == workflow_id, table.c.claimed_by == run_id)
                .values(claimed_by=None, claimed_until=None)
            )

    def all(self, workflow_id: str | None = None) -> list[StoredCursor]:
        from sqlalchemy import or_, select

        table = self.table
        now = time.time()
        # A source that never got a cursor (it has not succeeded yet) and that nobody reads.
        query = (
            select(table)
            .where(or_(table.c.state.is_not(None), table.c.claimed_until > now))
            .order_by(table.c.workflow_id, table.c.source_id)
        )
        if workflow_id is not None:
            query = query.where(table.c.workflow_id == workflow_id)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [
            StoredCursor(
                workflow_id=row["workflow_id"],
                source_id=row["source_id"],
                state=json.loads(row["state"]) if row["state"] is not None else None,
                run_id=row["run_id"],
                updated_at=row["updated_at"],
                claimed_by=row["claimed_by"]
                if row["claimed_until"] is not None and row["claimed_until"] > now
                else None,
            )
            for row in rows
        ]


@dataclass
class CursorSession:
    """The cursors of one run: claimed as its sources start, settled when it has ended.

    `full_refresh`: the ids of the sources that read from their initial value this time
    (their cursor is replaced by where this read gets to); None for none, empty for all.
    """

    store: CursorStore
    workflow_id: str
    full_refresh: frozenset[str] | None = None
    run_id: str | None = None
    held: set[str] = field(default_factory=set)
    reached: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    async def claim(self, source_id: str, run_id: str) -> dict[str, Any] | None:
        """This source's cursor, once no other run holds it (waiting meanwhile)."""
        self.run_id = run_id
        while True:
            state = await asyncio.to_thread(self.store.claim, self.workflow_id, source_id, run_id)
            if state is not False:
                self.held.add(source_id)
                if self.full_refresh is not None and (
                    not self.full_refresh or source_id in self.full_refresh
                ):
                    return None
                assert not isinstance(state, bool)
                return state
            await asyncio.sleep(WAIT_SECONDS)

    def reach(self, source_id: str, state: dict[str, Any] | None) -> None:
        """The source succeeded and read up to `state`: kept if the run is recorded."""
        self.reached[source_id] = state

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[CursorSession]:
        """Renews this run's claims while it runs; releases them after, if `settle` did not."""
        renewing = asyncio.create_task(self._renew())
        try:
            yield self
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            if self.held and self.run_id is not None:
                await asyncio.to_thread(self.store.settle, self.workflow_id, self.run_id, {})

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            if self.held and self.run_id is not None:
                with contextlib.suppress(Exception):  # the next renewal tries again
                    await asyncio.to_thread(self.store.renew, self.workflow_id, self.run_id)

    def settle(self, recorded: bool) -> None:
        """Advance what this run reached if it was recorded, and release every claim."""
        if not self.held or self.run_id is None:
            return
        self.store.settle(self.workflow_id, self.run_id, self.reached if recorded else {})
        self.held.clear()


# The run's cursors, for its sources' steps (set by running.run_workflow when the run has a
# history); None: every connector reads from its initial value and keeps nothing.
CURSORS: ContextVar[CursorSession | None] = ContextVar("cursors", default=None)


def unknown_sources(requested: Iterable[str], known: Iterable[str]) -> list[str]:
    return sorted(set(requested) - set(known))
