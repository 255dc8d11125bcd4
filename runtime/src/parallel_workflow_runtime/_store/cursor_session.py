"""How a run uses the cursors of its connector sources, which the run history keeps (cursors.py).

A source's cursor says how far it has read (cursor_tracker.CursorTracker). A run that reads it:

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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

# The module, not its CLAIM_SECONDS: the tests shorten a claim by setting it there.
from parallel_workflow_runtime._store import cursors
from parallel_workflow_runtime._store.cursors import CursorStore, Holder, State

log = logging.getLogger("parallel_workflow_runtime")

RENEW_SECONDS = 15.0
WAIT_SECONDS = 0.2  # between two looks at cursors another run holds (on average)
SHOWN_EVERY_SECONDS = 10.0  # the wait's line again, at most this often, when the holder changes


class CursorWaitTimedOut(Exception):
    """A source waited its whole timeout for its cursor: the message says who held it."""


@dataclass
class CursorSession:
    """The cursors of one run: claimed together as its first connector source starts,
    renewed by a thread while it runs, settled when it has ended.

    `full_refresh`: the ids of the sources that read from their initial value this time
    (their cursor is replaced by where this read gets to); None for none, empty for all.
    """

    opens_store: Callable[[], CursorStore]  # called when a source first claims its cursor
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

    @functools.cached_property
    def store(self) -> CursorStore:
        return self.opens_store()

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
        if self.contended:
            return "other runs took it first, one after another"
        # Its first look has not come back: SQLite waits for another process's write lock.
        return "the history's database has not answered (is another process writing to it?)"

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
        from sqlalchemy.exc import SQLAlchemyError

        from parallel_workflow_runtime._store.database import reason

        reached = self.reached if recorded else {}
        try:
            not_kept = await asyncio.to_thread(
                self.store.settle, self.workflow_id, self.run_id, reached, self.asked
            )
        except SQLAlchemyError as error:  # e.g. another process holds the SQLite write lock
            held, self.held = sorted(self.held), set()
            return [unsettled_line(held, bool(reached), reason(error))] if held else []
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
    return max(timeout_seconds, cursors.CLAIM_SECONDS + 2 * WAIT_SECONDS)


def taken_line() -> str:
    """Why a source whose claim another run took failed."""
    return (
        "its cursor was taken by another run: this run's claim was not renewed for"
        f" {cursors.CLAIM_SECONDS:g} s (was its process stopped, or the history's database out of"
        " reach?), so what it read is not kept, and the cursor stays where that run leaves it"
    )


def waiting_line(holder: Holder, held: int) -> str:
    """The line that says a run waits for another's claim, and for how long at most."""
    together = "its cursor" if held == 1 else f"its {held} cursors together"
    return (
        f"source {holder.source_id} waits for its cursor: run {holder.run_id} holds it, for"
        f" {max(holder.seconds_left, 0):.0f} s more unless that run renews it (a live run does"
        f" every {RENEW_SECONDS:g} s, a killed one cannot); this run takes {together}, each"
        f" source waiting for one run at most its timeout_seconds (never under"
        f" {cursors.CLAIM_SECONDS:g} s)"
    )


# The run's cursors, for its sources' steps (set by running.run_workflow when the run has a
# history); None: every connector reads from its initial value and keeps nothing.
CURSORS: ContextVar[CursorSession | None] = ContextVar("cursors", default=None)


def unsettled_line(held: list[str], reached: bool, error: str) -> str:
    """Why the cursors this run held were neither advanced nor released, in one line."""
    moved = "did not move (the next run reads those rows again) and " if reached else ""
    return (
        f"the cursors of {', '.join(held)} {moved}stay claimed by this run for at most"
        f" {cursors.CLAIM_SECONDS:g} s more: the history's database failed: {error}"
    )
