"""The runtime's own tables in the history's database, and the one way to Agno's (decision 0017).

- `tables`: the SQLAlchemy Core metadata of our tables (cursors, ticks);
- `migrations/`: Alembic's revisions of them, run by `migrate` when a history is opened;
- `lease`: the claim that one run or replica at a time holds on a row, timed by the database;
- `agno_adapter`: every private part of Agno's database adapters that the runtime uses.

tables.py imports SQLAlchemy; the modules that use this package import it inside their
functions, and Alembic is imported only when a history needs migrating: the command line's
`--help` imports none of them.
"""
