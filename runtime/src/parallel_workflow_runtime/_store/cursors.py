"""The cursors table of the run history's database: one row per connector source, how far it
has read (its state, JSON) and which run holds it now (a lease, store/lease.py, that lasts
CLAIM_SECONDS, timed by the database's clock). cursor_session.py is how a run uses it.

A cursor's state is JSON: its column (`field`), its `value`, the keys of the rows `seen` at
that value, and the `target` it was reached on (read_context.Target: the database and table,
the endpoint, the folder, or a bundled sample). A read whose target is another starts again
from the initial value (connectors.resumed); a cursor kept by 0.7.0 has no target, and is
taken as the current target's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agno.db.base import BaseDb
    from sqlalchemy import ColumnElement, Connection, Engine, Table

    from parallel_workflow_runtime._store.lease import Lease

log = logging.getLogger("parallel_workflow_runtime")

CLAIM_SECONDS = 60.0

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
