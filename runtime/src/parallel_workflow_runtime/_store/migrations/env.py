"""Alembic's environment for the runtime's tables: run only by migrate.py, on the connection it
hands over (config.attributes["connection"]), with the version table named for this package
so that it never meets a user's or Agno's own `alembic_version`."""

from alembic import context

from parallel_workflow_runtime._store.migrate import VERSION_TABLE
from parallel_workflow_runtime._store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    # Only our tables are compared (autogenerate, when a developer writes a revision):
    # Agno's and any others in the same database are not ours to change.
    include_name=lambda name, type_, _: type_ != "table" or name in metadata.tables,
)
with context.begin_transaction():
    context.run_migrations()
