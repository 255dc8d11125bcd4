"""The `sql` kind: a table or a query of a database that SQLAlchemy reaches, read by dlt's
`sql_table` (a table, on the sql.backend chosen) or by a statement of ours (a query), from the
cursor on; its target (the database the URL of `url_env` names, or the bundled SQLite sample),
and what `check` reaches of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from parallel_workflow_runtime._connectors.connector_imports import arrow_module, dlt_module
from parallel_workflow_runtime._connectors.cursor_tracker import CursorTracker, CursorWords
from parallel_workflow_runtime._connectors.read_context import (
    Chunks,
    Deadline,
    Secrets,
    Target,
    frame_arrow,
    is_frame,
)
from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.connector_config import SqlBlock
from parallel_workflow_runtime._core.results import SourceError


def sql_target(source: Source, block: SqlBlock, secrets: Secrets) -> Target:
    if block.table is not None:
        table = f"{block.table_schema}.{block.table}" if block.table_schema else block.table
        what = f"table {table}"
    else:
        what = f"query {' '.join(str(block.query).split())}"
    cursor = f", cursor {block.cursor}" if block.cursor else ""
    if os.environ.get(block.url_env) or block.sqlite_file is None:
        url = secrets.read(block.url_env, f"sql.url_env of source {source.id!r}")
        where = database_shown(url)
        return Target(f"{where}, {what}{cursor}", where, location=url)
    sample = source.folder / block.sqlite_file
    if not sample.is_file():
        raise SourceError(f"sql: {block.url_env} is not set and {block.sqlite_file} does not exist")
    where = f"sample {block.sqlite_file}"
    note = (
        f"read the bundled sample {block.sqlite_file}: {block.url_env} is not set (set it to read"
        " the database, then remove sqlite_file)"
    )
    # Read-only: the offline demo's file is never written by a read.
    url = f"sqlite:///file:{sample.resolve()}?mode=ro&uri=true"
    return Target(f"{where}, {what}{cursor}", where, note, sample, url)


def database_shown(url: str) -> str:
    """A database URL as a target's identity: the database (backend, user, host, port,
    name), not how it is reached: no password, driver or query options, which may change
    (or hold a secret) while the database stays the same."""
    from sqlalchemy.engine import URL, make_url

    parsed = make_url(url)
    # A URL made anew from the parts that say which database: URL.set(password=None) would
    # keep the password (None there means "unchanged").
    shown: str = URL.create(
        parsed.get_backend_name(),
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
    ).render_as_string(hide_password=False)
    return shown


def sql_rows(target: Target, block: SqlBlock, tracker: CursorTracker, deadline: Deadline) -> Chunks:
    dlt = dlt_module("sql")
    import sqlalchemy

    url = str(target.location)
    engine = sqlalchemy.create_engine(url, connect_args=connect_args(url, deadline))
    lent = lent_connections(engine)
    try:
        if block.cursor:
            with engine.connect() as connection:
                aware = cursor_column(connection, block, target.where)
            # A cursor kept while the column was `timestamp` read against it as `timestamptz`
            # (or the other way round): the same instant, taken as UTC.
            tracker.align(aware)
        since = tracker.since()
        if block.table is not None:
            from dlt.sources.sql_database import sql_table

            incremental = (
                dlt.sources.incremental(
                    block.cursor,
                    initial_value=since,
                    row_order="asc",
                    # "include": the rows whose cursor is NULL come too (WHERE ... OR IS NULL),
                    # and the tracker fails the source on the first, in every run: dlt's
                    # "raise" sees them in the first run alone, the WHERE hides them after.
                    on_cursor_value_missing="include",
                    range_start="open" if tracker.start_after else "closed",
                    # No deduplication of dlt's: the tracker keeps the keys of the rows at the
                    # last value, within MAX_CURSOR_KEYS. dlt's hashed each of them again
                    # (9 of the 10 s of 200,000 rows at one value) and warned on stderr.
                    primary_key=(),
                )
                if block.cursor and block.backend == "sqlalchemy"
                else None
            )
            resource = sql_table(
                credentials=engine,
                table=block.table,
                schema=block.table_schema,
                incremental=incremental,
                chunk_size=block.chunk_size,
                reflection_level="minimal",
                backend=block.backend,
                backend_kwargs=backend_kwargs(block, url),
                query_adapter_callback=(
                    since_where(block.cursor, since, tracker.start_after)
                    if block.cursor and block.backend != "sqlalchemy"
                    else None
                ),
            )
            if block.backend in ("connectorx", "pandas"):
                yield from conformed(resource, engine, block)
            else:
                yield from resource
        else:
            yield from query_rows(engine, block, since, tracker.start_after)
    finally:
        # A read that ends early (run() failed or returned, a row broke the cursor) leaves
        # dlt's generator, and its connection, to the garbage collector (its iterator is in
        # a reference cycle): idle in a transaction, a server-side cursor open, its lock
        # blocking an ALTER TABLE until then. Closed here, at once.
        for connection in list(lent.values()):
            connection.invalidate()
        engine.dispose()


def since_where(cursor: str, since: Any, after: bool) -> Callable[[Any, Any], Any]:
    """The WHERE and ORDER BY that dlt's incremental gives a table's query, for the backends
    that yield Arrow or DataFrames: their chunks are not handed to dlt's incremental, which
    fails on a chunk whose cursor values are all NULL (ArrowInvalid: Invalid null value) where
    the tracker says which column has a NULL. The tracker admits the rows, as for a query."""

    def adapted(query: Any, table: Any) -> Any:
        import sqlalchemy

        column = table.c[cursor]
        if since is not None:
            bound = column > since if after else column >= since
            query = query.where(sqlalchemy.or_(bound, column.is_(None)))
        return query.order_by(column.asc())

    return adapted


def backend_kwargs(block: SqlBlock, url: str) -> dict[str, Any]:
    """dlt's backend_kwargs for sql.backend, reading `url`. pandas: decimals kept exact.
    connectorx: a stream of Arrow batches of chunk_size rows (dlt's default reads the whole
    table into one), over the URL dlt makes of the engine's without its driver
    (postgresql://), or an SQLite file's path."""
    if block.backend == "pandas":
        return {"coerce_float": False}  # decimals stay Decimal, not floats
    if block.backend != "connectorx":
        return {}
    from sqlalchemy.engine import make_url

    try:
        import connectorx  # noqa: F401  (dlt imports it; missing, one line says so here)
    except ImportError:
        raise SourceError(
            "sql: backend connectorx needs the package connectorx: add the connectorx extra to"
            " parallel-workflow-runtime[...] in the project's pyproject.toml (or pip install"
            " connectorx), or set sql.backend to pyarrow"
        ) from None
    kwargs: dict[str, Any] = {"return_type": "arrow_stream", "batch_size": block.chunk_size}
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        # The sample's URL (sqlite:///file:<path>?mode=ro&uri=true) is SQLite's URI form,
        # which connectorx takes for a file of that name: it wants sqlite://<absolute path>.
        path = os.path.abspath(parsed.database.removeprefix("file:"))
        kwargs["conn"] = f"sqlite://{quote(path)}"
    return kwargs


def conformed(chunks: Iterable[Any], engine: Any, block: SqlBlock) -> Chunks:
    """The chunks of the connectorx and pandas backends as Arrow tables whose values are those
    of the sqlalchemy and pyarrow backends: a DataFrame made Arrow (datetimes, not pandas'
    Timestamps), and the columns of a NUMERIC(p, s) as decimals of that scale (connectorx
    gives every decimal 10 places, or a float on SQLite; pandas a float)."""
    import sqlalchemy

    decimals: dict[str, tuple[int, int]] | None = None
    for chunk in chunks:
        if not is_frame(chunk):
            yield chunk  # dlt's empty list before the rows, with the table's hints
            continue
        table = frame_arrow(chunk)
        if decimals is None:
            with engine.connect() as connection:
                columns = sqlalchemy.inspect(connection).get_columns(
                    block.table, schema=block.table_schema
                )
            decimals = {
                column["name"]: (column["type"].precision or 38, column["type"].scale)
                for column in columns
                if isinstance(column["type"], sqlalchemy.Numeric)
                and not isinstance(column["type"], sqlalchemy.Float)
                and column["type"].scale is not None
            }
        yield with_decimals(table, decimals)


def with_decimals(table: Any, decimals: dict[str, tuple[int, int]]) -> Any:
    arrow = arrow_module()
    for name, (precision, scale) in decimals.items():
        index = table.schema.get_field_index(name)
        wanted = arrow.decimal128(precision, scale)
        if index >= 0 and table.schema.field(index).type != wanted:
            field = table.schema.field(index).with_type(wanted)
            table = table.set_column(index, field, table.column(index).cast(wanted))
    return table


def lent_connections(engine: Any) -> dict[Any, Any]:
    """The connections of `engine`'s pool that are out (checked out) now, by their pool
    record: each as the pool lent it, which `invalidate()` closes (the Connection of whoever
    holds it then knows, and does not roll back on a closed one)."""
    import sqlalchemy

    lent: dict[Any, Any] = {}

    def checkout(_: Any, record: Any, connection: Any) -> None:
        lent[record] = connection

    sqlalchemy.event.listen(engine, "checkout", checkout)
    sqlalchemy.event.listen(engine, "checkin", lambda _, record: lent.pop(record, None))
    return lent


def cursor_column(connection: Any, block: SqlBlock, where: str) -> bool | None:
    """Whether the table or query has the cursor column (one line naming its columns if not),
    and whether that column holds datetimes with a time zone (True), without (False), or
    something else or unknown (None)."""
    import sqlalchemy

    assert block.cursor is not None
    if block.table is not None:
        name = f"{block.table_schema}.{block.table}" if block.table_schema else block.table
        inspector = sqlalchemy.inspect(connection)
        if not inspector.has_table(block.table, schema=block.table_schema):
            raise SourceError(f"sql: {where} has no table {name} (sql.table)")
        types = {
            column["name"]: column["type"]
            for column in inspector.get_columns(block.table, schema=block.table_schema)
        }
        if block.cursor not in types:
            raise SourceError(
                f"sql: table {name} has no column {block.cursor} (sql.cursor); its columns:"
                f" {', '.join(types)}"
            )
        kind = types[block.cursor]
        return bool(kind.timezone) if isinstance(kind, sqlalchemy.DateTime) else None
    result = connection.execute(
        sqlalchemy.text(f"SELECT * FROM ({block.query}) AS source_query WHERE 1 = 0")
    )
    columns = list(result.keys())
    description = result.cursor.description if result.cursor is not None else None
    result.close()
    if block.cursor not in columns:
        raise SourceError(
            f"sql: the query has no column {block.cursor} (sql.cursor); its columns:"
            f" {', '.join(columns)}"
        )
    if connection.dialect.name == "postgresql" and description:
        # The driver's type of the column, PostgreSQL's OID: timestamptz, timestamp.
        return POSTGRESQL_DATETIMES.get(description[columns.index(block.cursor)][1])
    return None


POSTGRESQL_DATETIMES = {1184: True, 1114: False}


def sql_cursor_words(block: SqlBlock) -> CursorWords:
    column = block.cursor
    if block.table is not None:
        table = f"{block.table_schema}.{block.table}" if block.table_schema else block.table
        subject = f"the cursor column {column} of table {table}"
    else:
        subject = f"the cursor column {column} of the query"
    return CursorWords(
        kind="sql",
        subject=subject,
        item="a row",
        missing_fix=(
            "choose a column without NULLs (sql.cursor), or give those rows a value or leave"
            f" them out in sql.query (COALESCE({column}, ...), WHERE {column} IS NOT NULL)"
        ),
        mixed_fix=(
            f"cast it to one type in sql.query (CAST({column} AS ...)) or choose another"
            " column (sql.cursor)"
        ),
        crowded_fix="a cursor column whose values rarely repeat (a time to the second, an id)",
    )


def connect_args(url: str, deadline: Deadline) -> dict[str, Any]:
    """A connection and a statement that cannot outlast the source's timeout (PostgreSQL)."""
    if not url.startswith(("postgresql", "postgres")):
        return {}
    seconds = deadline.remaining(86_400)
    return {
        "connect_timeout": max(int(seconds), 1),
        "options": f"-c statement_timeout={int(seconds * 1000)}",
    }


def query_rows(engine: Any, block: SqlBlock, since: Any, after: bool) -> Chunks:
    """A query's rows, as it is written; with a cursor, those from `since` on (after it, if
    `after`), in its order, and those whose cursor is NULL, which fail the source (as a
    table's do): a WHERE alone would leave them out of every run but the first, silently."""
    import sqlalchemy

    assert block.query is not None
    statement = f"SELECT * FROM ({block.query}) AS source_query"
    parameters: dict[str, Any] = {}
    if block.cursor:
        column = f"source_query.{engine.dialect.identifier_preparer.quote(block.cursor)}"
        if since is not None:
            statement += f" WHERE ({column} {'>' if after else '>='} :since OR {column} IS NULL)"
            parameters["since"] = since
        statement += f" ORDER BY {column}"
    with engine.connect() as connection:
        result = connection.execution_options(yield_per=block.chunk_size).execute(
            sqlalchemy.text(statement), parameters
        )
        for rows in result.mappings().partitions():
            yield [dict(row) for row in rows]


def sql_reached(block: SqlBlock, target: Target, deadline: Deadline) -> str:
    import sqlalchemy
    from sqlalchemy.engine import make_url

    url = str(target.location)
    database = make_url(url).database or ""
    if (
        make_url(url).get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and not database.startswith("file:")
        and not Path(database).is_file()
    ):  # SQLite would make an empty database there: a probe writes nothing
        raise SourceError(f"sql: the SQLite file {database} does not exist")
    engine = sqlalchemy.create_engine(url, connect_args=connect_args(url, deadline))
    try:
        with engine.connect() as connection:
            if block.table is not None:
                inspector = sqlalchemy.inspect(connection)
                name = f"{block.table_schema}.{block.table}" if block.table_schema else block.table
                if not inspector.has_table(block.table, schema=block.table_schema):
                    raise SourceError(f"sql: {target.where} has no table {name}")
                columns = [
                    column["name"]
                    for column in inspector.get_columns(block.table, schema=block.table_schema)
                ]
                found = f"table {name}"
            else:
                result = connection.execute(
                    sqlalchemy.text(f"SELECT * FROM ({block.query}) AS source_query WHERE 1 = 0")
                )
                columns = list(result.keys())
                result.close()
                found = f"query of {len(columns)} column{'' if len(columns) == 1 else 's'}"
    finally:
        engine.dispose()
    if block.cursor and block.cursor not in columns:
        raise SourceError(
            f"sql: the {found} of {target.where} has no column {block.cursor} (sql.cursor)"
        )
    return f"{target.where}: {found}"
