"""`bench --kind sql` on PostgreSQL (`--url-env`): the table it reads, written there for the
bench and dropped after it, and the floor it is measured against: a plain psycopg server-side
cursor (a named cursor, fetching `ITERSIZE` rows a round trip) reading the same query, each
row a tuple, nothing else done with it. And the lines that print what the backends got.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from parallel_workflow_runtime._core.connector_config import SqlBlock
from parallel_workflow_runtime._core.usage import UsageError

if TYPE_CHECKING:
    from parallel_workflow_runtime._bench.connector_cost import ConnectorBenchSettings

ITERSIZE = 100_000


def database_name(settings: ConnectorBenchSettings) -> str:
    if settings.url_env is None:
        return "sqlite"
    from sqlalchemy.engine import make_url

    return str(make_url(os.environ[settings.url_env]).get_backend_name())


@contextlib.contextmanager
def postgres_table(url: str, rows: int, start: datetime.datetime) -> Iterator[str]:
    """A table of `rows` rows in the PostgreSQL database of `url`, as the SQLite one (an id,
    a name, an amount, an update time a second apart, with an index), dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if make_url(url).get_backend_name() != "postgresql":
        raise UsageError("--url-env names a PostgreSQL database (postgresql+psycopg://...)")
    table = f"bench_records_{os.getpid()}"
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
            connection.execute(
                text(
                    f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text, amount double"
                    " precision, updated_at timestamp NOT NULL)"
                )
            )
            connection.execute(
                text(
                    f"INSERT INTO {table} SELECT n, 'name ' || n, n * 1.5, CAST(:start AS"
                    " timestamp) + n * interval '1 second' FROM generate_series(1, :rows) AS n"
                ),
                {"start": start, "rows": rows},
            )
            connection.execute(text(f"CREATE INDEX ON {table} (updated_at)"))
            connection.execute(text(f"ANALYZE {table}"))
        yield table
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def psycopg_baseline(
    url: str, block: SqlBlock, settings: ConnectorBenchSettings, say: Callable[[str], None]
) -> dict[str, Any]:
    """psycopg alone reading what an `sql` source's first read asks (the table by its cursor),
    through a server-side cursor: wall and CPU, medians of `repeat`."""
    runs: list[tuple[float, float, int]] = []
    for run in range(1, settings.repeat + 1):
        say(f"psycopg server-side cursor {run}/{settings.repeat} ...")
        runs.append(server_side_read(url, f"SELECT * FROM {block.table} ORDER BY {block.cursor}"))
    seconds = statistics.median(wall for wall, _, _ in runs)
    cpu = statistics.median(cpu for _, cpu, _ in runs)
    return {
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "rows": runs[-1][2],
        "rows_per_second": round(runs[-1][2] / seconds) if seconds else None,
        "itersize": ITERSIZE,
    }


def server_side_read(url: str, statement: str) -> tuple[float, float, int]:
    """The rows of `statement` through a named (server-side) psycopg cursor, counted: wall,
    CPU and how many. The connection is SQLAlchemy's engine's, its psycopg one as it is."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        raw = engine.raw_connection()
        try:
            connection = raw.driver_connection
            assert connection is not None
            started, cpu = time.perf_counter(), time.process_time()
            with connection.cursor(name="bench_baseline") as cursor:
                cursor.itersize = ITERSIZE
                cursor.execute(statement)
                count = sum(1 for _ in cursor)
            connection.rollback()
            return time.perf_counter() - started, time.process_time() - cpu, count
        finally:
            raw.close()
    finally:
        engine.dispose()


def print_backends(console: Console, results: dict[str, Any]) -> None:
    """`bench --kind sql`: each backend's rows per second through the workflow, its ratios
    to dlt alone (wall, CPU), and to the psycopg cursor when there is one."""
    backends = results.get("backends") or []
    floor = results.get("psycopg")
    if len(backends) < 2 and floor is None:
        return
    first = backends[0]["rows_per_second"] or 0
    table = Table(
        "backend", "rows/s", "wall s", "CPU s", "÷ alone", "÷ alone CPU",
        f"× {backends[0]['backend']}", "÷ psycopg",
        title=f"{results['database']}, {results['rows_per_source']:,} rows: the workflow's runs"
        " (rows/s, wall and CPU), over dlt alone, over the first backend's rows/s, over the"
        " psycopg cursor's wall",
    )  # fmt: skip
    for timed in backends:
        table.add_row(
            timed["backend"],
            f"{timed['rows_per_second'] or 0:,}",
            f"{timed['workflow_seconds']:.2f}",
            f"{timed['workflow_cpu_seconds']:.2f}",
            f"{timed['ratio']:.2f}",
            f"{timed['cpu_ratio']:.2f}",
            f"{(timed['rows_per_second'] or 0) / first:.2f}" if first else "",
            f"{timed['workflow_seconds'] / floor['seconds']:.2f}" if floor else "",
        )
    if floor is not None:
        table.add_row(
            "psycopg cursor",
            f"{floor['rows_per_second'] or 0:,}",
            f"{floor['seconds']:.2f}",
            f"{floor['cpu_seconds']:.2f}",
            "", "", "", "1.00", style="bold",
        )  # fmt: skip
    console.print(table)
