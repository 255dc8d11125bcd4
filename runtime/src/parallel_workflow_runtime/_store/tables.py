"""The runtime's own tables in the history's database, beside Agno's: one SQLAlchemy Core
`MetaData` that cursors.py and ticks.py read and write through, and that the migrations
(migrations/versions/) bring every history to.

A change to a table here needs a new revision in migrations/versions/ that makes it: a history
opened by this version is migrated to these definitions (migrate.py), and
tests/test_store.py compares the two.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, MetaData, String, Table, Text

CURSORS = "parallel_workflow_cursors"
TICKS = "parallel_workflow_ticks"

metadata = MetaData()

# The cursors of connector sources (cursors.py): how far each source has read, and which run
# holds it now (a lease: claimed_by until claimed_until, by the database's clock).
cursors = Table(
    CURSORS,
    metadata,
    Column("workflow_id", String(200), primary_key=True),
    Column("source_id", String(200), primary_key=True),
    Column("state", Text, nullable=True),  # JSON
    Column("run_id", String(100), nullable=True),  # the run that last advanced it
    Column("updated_at", Float, nullable=True),
    Column("claimed_by", String(100), nullable=True),
    Column("claimed_until", Float, nullable=True),
)

# The schedules' ticks (scheduler.py): one row per schedule and tick, decided once. A running
# tick is held by its replica as long as its heartbeat is renewed.
ticks = Table(
    TICKS,
    metadata,
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
