"""`rows.batches()`: the rows of a connector source as Arrow record batches. The cursor moves
the same whether run() reads rows or batches (admission past the start, the highest value and
the keys at it, a partial read keeping the cursor); RowProfile.add_batch sums up what `add`
does row by row; Parquet files come as the batches they store. Real files and real runs."""

from __future__ import annotations

import datetime
import decimal
import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from parallel_workflow_runtime import RowProfile, Rows
from parallel_workflow_runtime._connectors.cursor_tracker import CursorTracker, encoded, row_key
from parallel_workflow_runtime._connectors.reading import admitted_batch
from parallel_workflow_runtime._core.results import SourceError, SourceSummary

from . import connector_sources
from .test_connectors import by_id, file_source, keys, run, write_config

UTC = datetime.UTC
DAY = datetime.datetime(2026, 11, 1, tzinfo=UTC)

# Cursor columns of each kind Arrow types, with missing values (None, NaN) in some.
POOLS: list[tuple[Any, list[Any]]] = [
    (pa.int64(), list(range(30))),
    (pa.int64(), [5, 5, 5, 6, 6]),
    (pa.int64(), [None, 3, 4, 4]),
    (pa.float64(), [float("nan"), 1.5, 2.5]),
    (pa.string(), ["2026-11-01", "2026-11-02", "2026-11-02"]),
    (pa.timestamp("us", tz="UTC"), [DAY + datetime.timedelta(hours=h) for h in (1, 2, 2, 3)]),
    (pa.decimal128(10, 2), [decimal.Decimal("1.10"), decimal.Decimal("2.20")]),
]


def test_a_batch_moves_the_cursor_exactly_as_its_rows_one_by_one() -> None:
    """admitted_batch looks at a batch whole when it can: it must admit the same rows, end at
    the same cursor and fail with the same line as admit() row by row, from no start and from
    a start with rows already seen there."""
    generator = random.Random(35)
    for case in range(400):
        kind, pool = POOLS[case % len(POOLS)]
        values = [generator.choice(pool) for _ in range(generator.randint(0, 12))]
        if case % 2:
            values.sort(key=lambda value: (value is None, value != value, str(value)))
        rows = [{"id": index, "updated_at": value} for index, value in enumerate(values)]
        chunks: list[list[dict[str, Any]]] = []
        while rows:
            size = generator.randint(1, 5)
            chunks.append(rows[:size])
            rows = rows[size:]
        start = None
        present = [value for value in values if value is not None and value == value]
        if case % 3 == 0 and present:
            boundary = generator.choice(present)
            seen = [
                row_key({"id": i, "updated_at": v}) for i, v in enumerate(values) if v == boundary
            ][:1]
            start = {"field": "updated_at", "value": encoded(boundary), "seen": seen}
        batches = [
            pa.RecordBatch.from_pylist(
                chunk, schema=pa.schema([("id", pa.int64()), ("updated_at", kind)])
            )
            for chunk in chunks
        ]

        assert admitted(batches, start, whole=True) == admitted(batches, start, whole=False), (
            values,
            start,
        )


def admitted(batches: list[Any], start: dict[str, Any] | None, whole: bool) -> Any:
    """The ids a fresh tracker admits and the cursor it ends at, batch by batch (`whole`) or
    row by row; the error's line when it fails."""
    tracker = CursorTracker("updated_at", start, None)
    kept: list[Any] = []
    try:
        for batch in batches:
            if whole:
                kept += admitted_batch(tracker, batch).column("id").to_pylist()
            else:
                kept += [row["id"] for row in batch.to_pylist() if tracker.admit(row)]
    except SourceError as error:
        return str(error)
    return kept, tracker.state()


def profile_rows() -> list[dict[str, Any]]:
    """Rows with NULLs, NaN, timestamps with and without a time zone, decimals and text."""
    return [
        {
            "id": n,
            "amount": [1.5, None, float("nan"), -2.0][n % 4],
            "price": None if n % 5 == 0 else decimal.Decimal(n) / 4,
            "at": DAY.replace(tzinfo=None) + datetime.timedelta(minutes=n),
            "updated_at": None if n % 7 == 3 else DAY + datetime.timedelta(hours=(n * 7) % 11),
            "note": None if n % 3 == 0 else f"note {n}",
        }
        for n in range(40)
    ]


@pytest.mark.parametrize("cursor", ["updated_at", "amount", "price", "at", "note", "id", None])
def test_add_batch_sums_up_the_rows_as_add_does_one_by_one(cursor: str | None) -> None:
    rows = profile_rows()
    one_by_one, in_batches = RowProfile(cursor=cursor), RowProfile(cursor=cursor)
    for row in rows:
        one_by_one.add(row)
    for start in range(0, len(rows), 15):
        in_batches.add_batch(pa.RecordBatch.from_pylist(rows[start : start + 15]))

    assert in_batches.summary() == one_by_one.summary()
    summary = in_batches.summary()
    assert summary["records"] == 40
    assert summary["details"]["nulls"] == {"amount": 20, "price": 8, "updated_at": 6, "note": 14}
    json.dumps(summary, allow_nan=False)


def test_a_cursor_of_nan_only_is_no_cursor_in_either_way() -> None:
    rows: list[dict[str, Any]] = [{"amount": float("nan")}, {"amount": None}]
    one_by_one, in_batches = RowProfile(cursor="amount"), RowProfile(cursor="amount")
    for row in rows:
        one_by_one.add(row)
    in_batches.add_batch(pa.RecordBatch.from_pylist(rows))

    assert in_batches.summary() == one_by_one.summary()
    assert "cursor" not in one_by_one.summary()["details"]


def test_rows_of_a_list_read_one_way_only() -> None:
    """What a project's tests hand to run(): Rows of their own list, in batches of a size."""
    given = [{"id": n, "note": None if n % 2 else "x"} for n in range(5)]

    assert list(Rows(given)) == given
    batches = list(Rows(given, batch_rows=2).batches())
    assert [batch.num_rows for batch in batches] == [2, 2, 1]
    assert [row for batch in batches for row in batch.to_pylist()] == given
    one_way = Rows(given)
    next(one_way)
    with pytest.raises(TypeError, match="read them one way only"):
        one_way.batches()
    other_way = Rows(given)
    other_way.batches()
    with pytest.raises(TypeError, match="read them one way only"):
        iter(other_way)


def default_run(source: Any, rows: Rows) -> SourceSummary:
    """The run() that the template renders for a `file` or `sql` source."""
    profile = RowProfile(cursor=source.cursor)
    for batch in rows.batches():
        profile.add_batch(batch)
    return profile.summary()


def rows_run(source: Any, rows: Rows) -> SourceSummary:
    """The rendered run() of 0.9.x, and of `http` sources: row by row."""
    profile = RowProfile(cursor=source.cursor)
    for row in rows:
        profile.add(row)
    return profile.summary()


def test_parquet_files_come_as_the_batches_they_store_and_csv_as_built_ones(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "workflow"
    (folder / "parquet").mkdir(parents=True)
    (folder / "csv").mkdir()
    table = pa.table(
        {
            "id": pa.array(range(25), pa.int32()),
            "at": pa.array(
                [DAY + datetime.timedelta(minutes=n) for n in range(25)], pa.timestamp("ms", "UTC")
            ),
            "amount": pa.array([None if n % 4 == 0 else n / 2 for n in range(25)]),
        }
    )
    pq.write_table(table, folder / "parquet" / "a.parquet")
    lines = ["id,amount"] + [f"{n},{'' if n % 4 == 0 else n / 2}" for n in range(25)]
    (folder / "csv" / "a.csv").write_text("\n".join(lines) + "\n")
    schemas: list[Any] = []

    def schema_of(source: Any, rows: Rows) -> SourceSummary:
        batches = list(rows.batches())
        schemas.append(batches[0].schema)
        return SourceSummary(records=sum(batch.num_rows for batch in batches))

    sources = [
        {**file_source("parquet", "parquet", "*.parquet", "parquet"), "file": {
            "path": "parquet", "glob": "*.parquet", "format": "parquet", "chunk_size": 10}},
        {**file_source("csv", "csv", "*.csv", "csv"), "file": {
            "path": "csv", "glob": "*.csv", "format": "csv", "chunk_size": 10}},
    ]  # fmt: skip
    config = write_config(folder, *sources)

    batched = by_id(
        run(config, functions={"parquet": default_run, "csv": default_run}, history=False)
    )
    by_rows = by_id(run(config, functions={"parquet": rows_run, "csv": rows_run}, history=False))
    run(config, functions={"parquet": schema_of}, history=False)

    for source_id in ("parquet", "csv"):
        assert batched[source_id].ok, batched[source_id].error
        assert batched[source_id].records == by_rows[source_id].records == 25
        assert batched[source_id].details == by_rows[source_id].details
    assert batched["parquet"].details["nulls"] == {"amount": 7}
    assert schemas[0] == table.schema  # int32 and ms timestamps as stored, not re-inferred


def test_a_run_that_reads_part_of_the_batches_keeps_the_file_cursor(tmp_path: Path) -> None:
    folder = tmp_path / "workflow"
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.table({"id": list(range(30))}), folder / "data" / "a.parquet")
    source = file_source("files", "data", "*.parquet", "parquet")
    source["file"]["chunk_size"] = 10
    config = write_config(folder, source)

    partial = by_id(run(config, functions={"files": connector_sources.first_batch_only}))["files"]
    whole = by_id(run(config, functions={"files": connector_sources.collect_batches}))["files"]
    again = by_id(run(config, functions={"files": connector_sources.collect_batches}))["files"]

    assert partial.ok and partial.records == 10 and partial.cursor is None
    assert partial.warnings[-1].startswith("run() returned before it read every row")
    assert keys(whole) == list(range(30)) and whole.cursor is not None
    assert again.records == 0


def test_bench_file_times_the_rendered_run_against_dlt_alone_wall_and_cpu(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from parallel_workflow_runtime._cli.cli import main

    assert main(["bench", "--kind=file", "--rows=3000", "--repeat=1", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)

    assert results["per_source"][0]["records"] == 3000
    for key in ("workflow_seconds", "workflow_cpu_seconds", "alone_seconds", "alone_cpu_seconds"):
        assert results[key] >= 0, key
    assert "cpu_ratio" in results and "ratio" in results
