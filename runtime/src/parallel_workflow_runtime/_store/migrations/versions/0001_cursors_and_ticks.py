"""The cursors and ticks tables as runtime 0.9.0 (template 0.7.0) created them, with
`Table.create(checkfirst=True)` and no version table.

Each table is created only where it is missing: a history written by 0.9.0 already has both,
exactly so, and is left as it is (its data untouched) and recorded at this revision.

The tables are written out here as they were, not imported from tables.py: a later revision
changes tables.py, and this one must still make what 0.9.0 made.

Revision ID: 0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "parallel_workflow_cursors" not in existing:
        op.create_table(
            "parallel_workflow_cursors",
            sa.Column("workflow_id", sa.String(200), primary_key=True),
            sa.Column("source_id", sa.String(200), primary_key=True),
            sa.Column("state", sa.Text, nullable=True),
            sa.Column("run_id", sa.String(100), nullable=True),
            sa.Column("updated_at", sa.Float, nullable=True),
            sa.Column("claimed_by", sa.String(100), nullable=True),
            sa.Column("claimed_until", sa.Float, nullable=True),
        )
    if "parallel_workflow_ticks" not in existing:
        op.create_table(
            "parallel_workflow_ticks",
            sa.Column("schedule", sa.String(300), primary_key=True),
            sa.Column("at", sa.Float, primary_key=True),
            sa.Column("state", sa.String(20), nullable=False),
            sa.Column("reason", sa.Text, nullable=True),
            sa.Column("run_id", sa.String(100), nullable=True),
            sa.Column("replica", sa.String(200), nullable=True),
            sa.Column("decided_at", sa.Float, nullable=True),
            sa.Column("heartbeat_at", sa.Float, nullable=True),
            sa.Column("ended_at", sa.Float, nullable=True),
            sa.Column("manual", sa.Boolean, nullable=False),
        )


def downgrade() -> None:
    op.drop_table("parallel_workflow_ticks")
    op.drop_table("parallel_workflow_cursors")
