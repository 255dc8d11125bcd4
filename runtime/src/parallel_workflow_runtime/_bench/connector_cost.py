"""`bench --kind sql|http|file`: what reading through the workflow costs over dlt alone.

For `sql` and `file` the bench writes a table of `rows` rows (an SQLite file, or a table in the
PostgreSQL database of `--url-env`; a Parquet file) and times two ways of reading it, `repeat`
times each, wall and CPU: the workflow with one connector source per `sources`, whose
`run(source, rows)` is the one the template renders (a RowProfile of `rows.batches()`), and
dlt iterating the same resource alone in this process, with the same cursor, counting its
chunks' rows. `sql` does it on each backend asked for (`--backend`), and on PostgreSQL times a
plain psycopg server-side cursor over the same query too (sql_baseline.py). For `http` it
starts an API in a process of its own whose every page of 100 rows comes after `page_delay`
seconds, and times the `sources` sources together in the workflow against the slowest of them
alone. It prints ratios: the targets (README.md, "Connector sources") are 1.15 for a table,
1.2 for the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from parallel_workflow_runtime._bench.sql_baseline import (
    database_name,
    postgres_table,
    psycopg_baseline,
)
from parallel_workflow_runtime._connectors.connectors import ConnectorRun, open_rows
from parallel_workflow_runtime._connectors.profile import RowProfile
from parallel_workflow_runtime._connectors.read_context import Deadline, Rows, Secrets, is_frame
from parallel_workflow_runtime._core.config import Source, SourceLimits, WorkflowConfig
from parallel_workflow_runtime._core.connector_config import (
    FileBlock,
    HttpBlock,
    PageNumberPaginator,
    SqlBackend,
    SqlBlock,
)
from parallel_workflow_runtime._core.registry import WorkflowEntry
from parallel_workflow_runtime._core.results import Aggregation, SourceSummary

ConnectorKind = Literal["sql", "http", "file"]
Progress = Callable[[str], None]
PAGE_SIZE = 100
START = datetime.datetime(2026, 11, 1)  # the first row's update time; one a second after it


@dataclass(frozen=True)
class ConnectorBenchSettings:
    kind: ConnectorKind
    sources: int = 1
    rows: int = 1_000_000  # per source
    repeat: int = 3
    page_delay: float = 0.05  # seconds the API takes for each page (http)
    backends: tuple[SqlBackend, ...] = ("sqlalchemy",)  # sql: each timed in turn
    # sql: the environment variable of a database URL to write the table into (None: an
    # SQLite file); on PostgreSQL a psycopg server-side cursor is timed too.
    url_env: str | None = None


def count_rows(source: Source, rows: Rows) -> SourceSummary:
    """The bench's `run(source, rows)` of an API: it counts, the least work per row."""
    return SourceSummary(records=sum(1 for _ in rows))


def profile_batches(source: Source, rows: Rows) -> SourceSummary:
    """The bench's `run(source, rows)` of a table or a file: the one the template renders
    (a RowProfile of the batches)."""
    profile = RowProfile(cursor=source.cursor)
    for batch in rows.batches():
        profile.add_batch(batch)
    return profile.summary()


def run_connector_bench(
    entry: WorkflowEntry, settings: ConnectorBenchSettings, progress: Progress | None = None
) -> dict[str, Any]:
    say = progress or (lambda line: None)
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as folder,
        data_for(settings, Path(folder), say) as block,
    ):
        variants: list[SqlBlock | HttpBlock | FileBlock] = [block]
        if isinstance(block, SqlBlock):
            variants = [block.model_copy(update={"backend": name}) for name in settings.backends]
        timed = [timed_block(entry, settings, Path(folder), variant, say) for variant in variants]
        baseline = None
        if isinstance(block, SqlBlock) and settings.url_env is not None:
            url = os.environ[settings.url_env]
            if url.startswith(("postgresql", "postgres")):
                baseline = psycopg_baseline(url, block, settings, say)
    results = {
        "kind": settings.kind,
        "sources": settings.sources,
        "rows_per_source": settings.rows,
        "repeat": settings.repeat,
        "page_delay_seconds": settings.page_delay if settings.kind == "http" else None,
        **timed[0],
        "target": 1.2 if settings.kind == "http" else 1.15,
    }
    if isinstance(block, SqlBlock):
        results["database"] = database_name(settings)
        results["backends"] = timed
        results["psycopg"] = baseline
    return results


def timed_block(
    entry: WorkflowEntry,
    settings: ConnectorBenchSettings,
    folder: Path,
    block: SqlBlock | HttpBlock | FileBlock,
    say: Progress,
) -> dict[str, Any]:
    """The workflow's runs and dlt's alone over `block`, wall and CPU (medians)."""
    backend = block.backend if isinstance(block, SqlBlock) else None
    label = f" ({backend})" if backend else ""
    sources = tuple(
        Source(
            id=f"{settings.kind}_{index}",
            name=f"{settings.kind} source {index}",
            settings={},
            folder=folder,
            limits=SourceLimits(timeout_seconds=None),
            kind=settings.kind,
            connector=block,
        )
        for index in range(1, settings.sources + 1)
    )
    config = dataclasses.replace(
        entry.config, sources=sources, max_concurrency=len(sources), path=entry.config.path
    )
    run = count_rows if settings.kind == "http" else profile_batches
    workflow_runs = [
        through_workflow(entry, config, run) for _ in range_said(settings, say, f"workflow{label}")
    ]
    # A table: dlt reading it once. The API: each source alone, the slowest of them.
    compared = sources if settings.kind == "http" else sources[:1]
    alone_runs = [
        max((alone(source) for source in compared), key=lambda timing: timing[0])
        for _ in range_said(settings, say, f"dlt alone{label}")
    ]
    workflow_seconds = statistics.median(seconds for seconds, _, _ in workflow_runs)
    workflow_cpu = statistics.median(cpu for _, cpu, _ in workflow_runs)
    per_source = workflow_runs[-1][2].sources  # the first run also imports dlt and its readers
    alone_seconds = statistics.median(seconds for seconds, _ in alone_runs)
    alone_cpu = statistics.median(cpu for _, cpu in alone_runs)
    total_rows = sum(source.records for source in per_source)
    return {
        "backend": backend,
        "workflow_seconds": round(workflow_seconds, 3),
        "workflow_cpu_seconds": round(workflow_cpu, 3),
        "rows_per_second": round(total_rows / workflow_seconds) if workflow_seconds else None,
        "per_source": [
            {
                "id": source.id,
                "records": source.records,
                "seconds": source.seconds,
                "rows_per_second": round(source.records / source.seconds)
                if source.seconds
                else None,
                "error": source.error,
            }
            for source in per_source
        ],
        "alone_seconds": round(alone_seconds, 3),
        "alone_cpu_seconds": round(alone_cpu, 3),
        # sql, file: the workflow's read of one table against dlt's; http: all the sources
        # together against the slowest alone.
        "ratio": round(workflow_seconds / alone_seconds, 3) if alone_seconds else None,
        "cpu_ratio": round(workflow_cpu / alone_cpu, 3) if alone_cpu else None,
    }


def range_said(settings: ConnectorBenchSettings, say: Progress, what: str) -> Iterator[int]:
    for run in range(1, settings.repeat + 1):
        say(f"{what} {run}/{settings.repeat} ...")
        yield run


def through_workflow(
    entry: WorkflowEntry, config: WorkflowConfig, run: Callable[[Source, Rows], SourceSummary]
) -> tuple[float, float, Aggregation]:
    """One run of the workflow, its sources handing the rows dlt reads to `run`: its wall
    time, the CPU time of this process (all its threads), and what it aggregated."""
    workflow = entry.factory(
        config=config,
        report_model="",
        source_functions={source.id: ConnectorRun(run) for source in config.sources},
    )
    state: dict[str, Any] = {}
    started, cpu = time.perf_counter(), time.process_time()
    asyncio.run(workflow.arun(input="bench", session_state=state))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    aggregation = Aggregation.model_validate(state["aggregation"])
    failed = [f"{s.id}: {s.error}" for s in aggregation.sources if not s.ok]
    if failed:
        raise RuntimeError(f"the bench's sources failed: {failed[0]}")
    return elapsed, cpu, aggregation


def alone(source: Source) -> tuple[float, float]:
    """dlt reading the source's resource in this process, no workflow around it: its chunks
    counted as they come (lists, rows, Arrow tables), nothing made of them. Wall and CPU."""
    chunks, _ = open_rows(source, None, Secrets(), Deadline(None, None))
    started, cpu = time.perf_counter(), time.process_time()
    sum(chunk_rows(chunk) for chunk in chunks)
    return time.perf_counter() - started, time.process_time() - cpu


def chunk_rows(chunk: Any) -> int:
    if isinstance(chunk, list):
        return len(chunk)
    return len(chunk) if is_frame(chunk) else 1


@contextlib.contextmanager
def data_for(
    settings: ConnectorBenchSettings, folder: Path, say: Progress
) -> Iterator[SqlBlock | HttpBlock | FileBlock]:
    """The data the bench's sources read, and the block that points them at it."""
    if settings.kind == "sql" and settings.url_env is not None:
        say(f"writing a table of {settings.rows:,} rows into {settings.url_env}'s database ...")
        with postgres_table(os.environ[settings.url_env], settings.rows, START) as table:
            yield SqlBlock(url_env=settings.url_env, table=table, cursor="updated_at")
    elif settings.kind == "sql":
        say(f"writing an SQLite table of {settings.rows:,} rows ...")
        sqlite_table(folder / "bench.sqlite", settings.rows)
        yield SqlBlock(
            url_env="PARALLEL_WORKFLOW_BENCH_URL_UNSET",
            sqlite_file="bench.sqlite",
            table="records",
            cursor="updated_at",
        )
    elif settings.kind == "file":
        say(f"writing a Parquet file of {settings.rows:,} rows ...")
        parquet_file(folder / "data" / "bench.parquet", settings.rows)
        yield FileBlock(path="data", glob="*.parquet", format="parquet")
    else:
        with bench_api(settings) as base_url:
            yield HttpBlock(
                base_url=base_url,
                path="rows",
                paginator=PageNumberPaginator(
                    type="page_number", base_page=1, total_path="total_pages"
                ),
                data_selector="data",
            )


def sqlite_table(path: Path, rows: int) -> None:
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as database:
        database.execute(
            "CREATE TABLE records (id INTEGER PRIMARY KEY, name TEXT, amount REAL,"
            " updated_at TEXT NOT NULL)"
        )
        database.executemany(
            "INSERT INTO records VALUES (?, ?, ?, ?)",
            (
                (n, f"name {n}", n * 1.5, (START + datetime.timedelta(seconds=n)).isoformat())
                for n in range(1, rows + 1)
            ),
        )
        database.commit()


def parquet_file(path: Path, rows: int) -> None:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    path.parent.mkdir(parents=True)
    ids = pa.array(range(1, rows + 1))
    pq.write_table(
        pa.table({"id": ids, "amount": pa.compute.multiply(ids, 1.5)}), path, row_group_size=100_000
    )


@contextlib.contextmanager
def bench_api(settings: ConnectorBenchSettings) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            f"{__package__}.http_api",
            str(port),
            str(settings.rows),
            str(PAGE_SIZE),
            str(settings.page_delay),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("the bench's API did not start")
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=10)
