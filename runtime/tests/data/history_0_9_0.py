"""Writes a run history as runtime 0.9.0 (template 0.7.0, the last release before migrations)
left it, with cursors and ticks in its tables, for tests/test_store.py: run with 0.9.0's own
code on the path, not this checkout's.

    git archive a7e12c8 runtime/src | tar -x -C /tmp/rt090
    PYTHONPATH=/tmp/rt090/runtime/src python runtime/tests/data/history_0_9_0.py \\
        runtime/tests/data/history-0.9.0.sqlite
    # PostgreSQL: into a database of its own, dumped as SQL (INSERTs, no owners)
    PYTHONPATH=/tmp/rt090/runtime/src python runtime/tests/data/history_0_9_0.py \\
        postgresql+psycopg://workflows:workflows@127.0.0.1:55432/history090
    pg_dump --inserts --no-owner --no-privileges postgresql://...:55432/history090 \\
        > runtime/tests/data/history-0.9.0.postgresql.sql

What it writes is EXPECTED_CURSORS and EXPECTED_TICKS, which the tests compare with what the
current code reads back.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

WORKFLOW = "connectors"
# Source id -> the state its cursor was settled at (None: claimed, never settled).
EXPECTED_CURSORS: dict[str, dict[str, Any] | None] = {
    "events": {"field": "updated_at", "value": "2026-11-30T10:00:00", "seen": [7, 8]},
    "orders": {"field": "id", "value": 40, "seen": [40], "target": "sample orders.sqlite"},
    "users": None,
}
HELD_BY = "run-that-holds-users"
# (tick time, state, reason, run id, manual)
EXPECTED_TICKS: list[tuple[datetime, str, str | None, str | None, bool]] = [
    (datetime(2026, 12, 1, 9, 0, tzinfo=UTC), "ok", None, "run-of-nine", False),
    (datetime(2026, 12, 1, 9, 5, tzinfo=UTC), "skipped", "overlap: still running", None, False),
    (datetime(2026, 12, 1, 9, 10, tzinfo=UTC), "queued", None, None, False),
    (datetime(2026, 12, 1, 9, 12, 30, tzinfo=UTC), "running", None, None, True),
]
SCHEDULE = "connectors/nightly"


def write(target: str) -> None:
    # 0.9.0's modules, which are not this checkout's (mypy cannot find them here).
    from parallel_workflow_runtime.cursors import CursorStore  # type: ignore[import-not-found]
    from parallel_workflow_runtime.history import (  # type: ignore[import-not-found]
        HistoryLocation,
        open_history,
    )
    from parallel_workflow_runtime.scheduler import (  # type: ignore[import-not-found]
        Tick,
        TickStore,
    )

    # 0.9.0's tables were made by create_table (create(checkfirst=True)), gone since.
    assert hasattr(CursorStore, "create_table"), "run with runtime 0.9.0 on PYTHONPATH"
    if "://" in target:
        db = open_history(HistoryLocation(database_url=target))
    else:
        db = open_history(HistoryLocation(sqlite_file=Path(target).resolve()))
    cursors = CursorStore.of(db)
    for source_id, state in EXPECTED_CURSORS.items():
        run_id = f"run-of-{source_id}"
        assert cursors.claim(WORKFLOW, source_id, run_id) is not False
        if state is not None:
            cursors.settle(WORKFLOW, run_id, {source_id: state}, [source_id])
    cursors.settle(WORKFLOW, "run-of-users", {}, ["users"])
    assert cursors.claim(WORKFLOW, "users", HELD_BY) is None  # held, never settled

    ticks = TickStore.of(db)
    with ticks.engine.begin() as connection:
        for at, decided, reason, ran, manual in EXPECTED_TICKS:
            tick = Tick(SCHEDULE, at, decided, reason, ran, "host:1:abc", at, at, manual=manual)
            assert ticks.add(connection, tick)


if __name__ == "__main__":
    write(sys.argv[1])
