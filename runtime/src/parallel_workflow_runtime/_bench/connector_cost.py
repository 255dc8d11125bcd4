"""`bench --kind sql|http|file`: what reading through the workflow costs over dlt alone.

For `sql` and `file` the bench writes a table of `rows` rows (an SQLite file, a Parquet file)
and times two ways of reading it, `repeat` times each: the workflow with one connector source
per `sources` (its `run(source, rows)` counts the rows), and dlt iterating the same resource
alone in this process, with the same cursor. For `http` it starts an API in a process of its
own whose every page of 100 rows comes after `page_delay` seconds, and times the `sources`
sources together in the workflow against the slowest of them alone. It prints ratios: the
targets (README.md, "Connector sources") are 1.15 for a table, 1.2 for the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
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

from parallel_workflow_runtime._connectors.connectors import ConnectorRun, open_rows
from parallel_workflow_runtime._connectors.read_context import Deadline, Secrets, flattened
from parallel_workflow_runtime._core.config import Source, SourceLimits, WorkflowConfig
from parallel_workflow_runtime._core.connector_config import (
    FileBlock,
    HttpBlock,
    PageNumberPaginator,
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


def count_rows(source: Source, rows: Any) -> SourceSummary:
    """The bench's `run(source, rows)`: it counts, the least work a source can do per row."""
    return SourceSummary(records=sum(1 for _ in rows))


def run_connector_bench(
    entry: WorkflowEntry, settings: ConnectorBenchSettings, progress: Progress | None = None
) -> dict[str, Any]:
    say = progress or (lambda line: None)
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as folder,
        data_for(settings, Path(folder), say) as block,
    ):
        sources = tuple(
            Source(
                id=f"{settings.kind}_{index}",
                name=f"{settings.kind} source {index}",
                settings={},
                folder=Path(folder),
                limits=SourceLimits(timeout_seconds=None),
                kind=settings.kind,
                connector=block,
            )
            for index in range(1, settings.sources + 1)
        )
        config = dataclasses.replace(
            entry.config, sources=sources, max_concurrency=len(sources), path=entry.config.path
        )
        workflow_runs = [
            through_workflow(entry, config) for _ in range_said(settings, say, "workflow")
        ]
        # A table: dlt reading it once. The API: each source alone, the slowest of them.
        compared = sources if settings.kind == "http" else sources[:1]
        alone_runs = [
            max(alone(source) for source in compared)
            for _ in range_said(settings, say, "dlt alone")
        ]
    workflow_seconds = statistics.median(seconds for seconds, _ in workflow_runs)
    per_source = workflow_runs[-1][1].sources  # the first run also imports dlt and its readers
    alone_seconds = statistics.median(alone_runs)
    total_rows = sum(source.records for source in per_source)
    return {
        "kind": settings.kind,
        "sources": settings.sources,
        "rows_per_source": settings.rows,
        "repeat": settings.repeat,
        "page_delay_seconds": settings.page_delay if settings.kind == "http" else None,
        "workflow_seconds": round(workflow_seconds, 3),
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
        # sql, file: the workflow's read of one table against dlt's; http: all the sources
        # together against the slowest alone.
        "ratio": round(workflow_seconds / alone_seconds, 3) if alone_seconds else None,
        "target": 1.2 if settings.kind == "http" else 1.15,
    }


def range_said(settings: ConnectorBenchSettings, say: Progress, what: str) -> Iterator[int]:
    for run in range(1, settings.repeat + 1):
        say(f"{what} {run}/{settings.repeat} ...")
        yield run


def through_workflow(entry: WorkflowEntry, config: WorkflowConfig) -> tuple[float, Aggregation]:
    """One run of the workflow, its sources counting the rows dlt reads for them."""
    workflow = entry.factory(
        config=config,
        report_model="",
        source_functions={source.id: ConnectorRun(count_rows) for source in config.sources},
    )
    state: dict[str, Any] = {}
    started = time.perf_counter()
    asyncio.run(workflow.arun(input="bench", session_state=state))
    elapsed = time.perf_counter() - started
    aggregation = Aggregation.model_validate(state["aggregation"])
    failed = [f"{s.id}: {s.error}" for s in aggregation.sources if not s.ok]
    if failed:
        raise RuntimeError(f"the bench's sources failed: {failed[0]}")
    return elapsed, aggregation


def alone(source: Source) -> float:
    """dlt reading the source's resource, counted in this process: no workflow around it."""
    chunks, _ = open_rows(source, None, Secrets(), Deadline(None, None))
    started = time.perf_counter()
    sum(1 for _ in flattened(chunks))
    return time.perf_counter() - started


@contextlib.contextmanager
def data_for(
    settings: ConnectorBenchSettings, folder: Path, say: Progress
) -> Iterator[SqlBlock | HttpBlock | FileBlock]:
    """The data the bench's sources read, and the block that points them at it."""
    if settings.kind == "sql":
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
