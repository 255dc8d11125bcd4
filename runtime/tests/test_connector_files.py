"""The `file` kind against real folders: files that arrive with an old modification time
(`cp -p`, `tar x`), a record or line far too long for memory, and symbolic links out of the
folder. Real runs with their history, as in test_connectors; the memory of a read is measured
in a process of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from parallel_workflow_runtime._connectors.cursor_tracker import MAX_CURSOR_KEYS
from parallel_workflow_runtime._store.cursors import CursorStore
from parallel_workflow_runtime._store.history import open_history

from .conftest import RUNTIME, user_environment
from .test_connectors import by_id, file_source, folder, keys, run, write_config

__all__ = ["folder"]  # a fixture of test_connectors, used here

IN_2020 = 1_600_000_000  # a modification time long before any of the test's runs


def jsonl(path: Path, *ids: int, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": n}) + "\n" for n in ids), encoding="utf-8")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def state() -> dict[str, Any]:
    [cursor] = CursorStore.of(open_history()).all("connectors")
    return cursor.state or {}


# --- item 6: a file never seen is read, whatever its modification time ---------------------


@pytest.mark.integration
def test_files_that_arrive_with_an_old_modification_time_are_read(
    folder: Path, tmp_path: Path
) -> None:
    """At 0.8.0 a file whose modification time was before the cursor's was never read: `cp -p`,
    `rsync -a`, `tar x` and object-store syncs keep the time the file had elsewhere."""
    drop = folder / "drop"
    jsonl(drop / "a.jsonl", 1, 2)
    config = write_config(folder, file_source("logs", "drop", "*.jsonl", "jsonl"))
    first = by_id(run(config))["logs"]
    elsewhere = tmp_path / "elsewhere"
    jsonl(elsewhere / "b.jsonl", 3, mtime=IN_2020)
    subprocess.run(["cp", "-p", str(elsewhere / "b.jsonl"), str(drop / "b.jsonl")], check=True)
    jsonl(elsewhere / "c.jsonl", 4, 5, mtime=IN_2020 + 60)
    with tarfile.open(tmp_path / "c.tar", "w") as archive:
        archive.add(elsewhere / "c.jsonl", arcname="c.jsonl")
    subprocess.run(["tar", "xf", str(tmp_path / "c.tar"), "-C", str(drop)], check=True)
    assert (drop / "c.jsonl").stat().st_mtime == IN_2020 + 60

    second = by_id(run(config))["logs"]
    third = by_id(run(config))["logs"]
    time.sleep(0.01)
    with (drop / "a.jsonl").open("a", encoding="utf-8") as changed:
        changed.write('{"id": 6}\n')
    (drop / "b.jsonl").unlink()
    fourth = by_id(run(config))["logs"]

    assert keys(first) == [1, 2]
    assert sorted(keys(second)) == [3, 4, 5]
    assert third.ok and third.records == 0
    assert keys(fourth) == [1, 2, 6]  # a file read before and changed since: read again
    assert state()["files"] == ["a.jsonl", "c.jsonl"]  # b.jsonl is gone: so is its name


def test_a_cursor_kept_by_080_reads_on_from_its_time_then_keeps_the_names(folder: Path) -> None:
    """A cursor of 0.8.0 has the time and the files at that time, not the names of all: its
    next run reads as 0.8.0 did, and keeps the names from then on."""
    drop = folder / "drop"
    jsonl(drop / "old.jsonl", 1, mtime=IN_2020)
    jsonl(drop / "at.jsonl", 2, mtime=IN_2020 + 100)
    config = write_config(folder, file_source("logs", "drop", "*.jsonl", "jsonl"))
    run(config)
    store = CursorStore.of(open_history())
    [kept] = store.all("connectors")
    at = "2020-09-13T12:28:20+00:00"
    legacy = {**(kept.state or {}), "value": {"datetime": at}}
    legacy["seen"] = [(drop / "at.jsonl").resolve().as_uri()]
    del legacy["files"]
    settle(store, legacy)
    jsonl(drop / "new.jsonl", 3)

    result = by_id(run(config))["logs"]

    assert keys(result) == [3]
    assert state()["files"] == ["at.jsonl", "new.jsonl", "old.jsonl"]


def settle(store: CursorStore, cursor_state: dict[str, Any]) -> None:
    """The connectors workflow's `logs` cursor set to `cursor_state`, as a past run kept it."""
    store.claim("connectors", "logs", "a-past-run")
    store.settle("connectors", "a-past-run", {"logs": cursor_state})


def test_past_the_limit_the_cursor_keeps_the_newest_names_and_says_what_that_costs(
    folder: Path,
) -> None:
    drop = folder / "drop"
    for number in range(MAX_CURSOR_KEYS + 5):
        jsonl(drop / f"f{number:05}.jsonl", number, mtime=IN_2020 + number)
    config = write_config(folder, file_source("logs", "drop", "*.jsonl", "jsonl"))

    first = by_id(run(config))["logs"]
    kept = state()
    size = len(json.dumps(kept))
    jsonl(drop / "older.jsonl", -1, mtime=IN_2020 + 2)  # before the oldest name kept
    jsonl(drop / "newer.jsonl", -2, mtime=IN_2020 + 100)  # after it: read
    second = by_id(run(config))["logs"]

    assert first.records == MAX_CURSOR_KEYS + 5
    assert len(kept["files"]) == MAX_CURSOR_KEYS and "f00004.jsonl" not in kept["files"]
    assert first.warnings == [
        f"file: {MAX_CURSOR_KEYS + 5:,} files match *.jsonl in drop: the cursor keeps the names"
        f" of the newest {MAX_CURSOR_KEYS:,}, so a file that arrives with a modification time"
        " at or before 2020-09-13 12:26:44+00:00 (cp -p, rsync -a, tar x) is not read; move"
        " the files read out of the folder to stay under that"
    ]
    assert keys(second) == [-2]
    assert size < 250_000, size
    print(f"file cursor state with {MAX_CURSOR_KEYS:,} names: {size:,} bytes")


# --- item 8: a record past file.max_record_bytes fails its source, memory flat ----------------

# Reads one `file` source of the config in argv[1] as a run would, in this process alone, and
# prints what it measured: the resident memory before the read and at its peak, and its error.
MEASURED_READ = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from parallel_workflow_runtime._core.config import load_config
    from parallel_workflow_runtime._connectors.connector_imports import imported_once
    from parallel_workflow_runtime._connectors.connectors import ConnectorRun
    from tests.connector_sources import count

    def resident(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024

    source = load_config(Path(sys.argv[1])).sources[0]
    imported_once("file")
    before = resident("VmRSS:")
    try:
        outcome = {"records": ConnectorRun(count)(source)["records"]}
    except Exception as error:
        outcome = {"error": str(error)}
    print(json.dumps({**outcome, "before": before, "peak": resident("VmHWM:")}))
    """
)


def measured_read(config: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", MEASURED_READ, str(config)],
        capture_output=True,
        text=True,
        cwd=RUNTIME,
        env=user_environment(),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def one_long_line(path: Path, size: int, start: bytes) -> None:
    """A file of `size` bytes with no line break after `start`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = b"x" * (1 << 20)
    with path.open("wb") as file:
        file.write(start)
        for _ in range(size // len(block)):
            file.write(block)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("file_format", "start", "expected"),
    [
        (
            "csv",
            b"id,text\n1,",
            "file: a.csv has a record longer than 16,777,216 bytes (file.max_record_bytes) at"
            " byte 8: raise file.max_record_bytes if such records are expected (an unclosed"
            " quote makes the rest of a CSV file one record)",
        ),
        (
            "jsonl",
            b'{"t": "',
            "file: a.jsonl has a line longer than 16,777,216 bytes (file.max_record_bytes) at"
            " byte 0: raise file.max_record_bytes if such lines are expected",
        ),
    ],
)
def test_a_line_of_300_mb_fails_its_source_in_one_line_with_flat_memory(
    folder: Path, file_format: str, start: bytes, expected: str
) -> None:
    """At 0.8.0 a 2 GiB file with no line break took a `csv` source to a 14.5 GiB peak (jsonl
    2.9 GiB) before its timeout. file.max_record_bytes (16 MiB unless set) stops it there."""
    one_long_line(folder / "huge" / f"a.{file_format}", 300 << 20, start)
    config = write_config(folder, file_source("huge", "huge", f"*.{file_format}", file_format))

    measured = measured_read(config)

    grown = (measured["peak"] - measured["before"]) >> 20
    print(f"{file_format}: 300 MB without a line break: peak grew {grown} MB", measured)
    assert measured.get("error") == expected
    assert grown < 150, measured


def test_an_unclosed_quote_in_a_csv_of_many_lines_fails_at_the_limit(folder: Path) -> None:
    """Many short lines after a quote that never closes: one record to pandas, all of it held."""
    lines = "".join(f"{n},text {n}\n" for n in range(200_000))
    (folder / "quote").mkdir()
    (folder / "quote" / "a.csv").write_text(f'id,text\n1,"never closed\n{lines}')
    entry = file_source("quote", "quote", "*.csv", "csv")
    entry["file"]["max_record_bytes"] = 100_000

    result = by_id(run(write_config(folder, entry)))["quote"]

    assert result.error == (
        "file: a.csv has a record longer than 100,000 bytes (file.max_record_bytes) at byte 8:"
        " raise file.max_record_bytes if such records are expected (an unclosed quote makes the"
        " rest of a CSV file one record)"
    )


def test_records_within_the_limit_are_read_whole_quoted_line_breaks_and_all(folder: Path) -> None:
    (folder / "ok").mkdir()
    long_text = "y" * 9_000
    rows = [f'{n},"line one\nline two, ""quoted""\r\n{long_text}"' for n in range(1, 400)]
    (folder / "ok" / "a.csv").write_text("id,text\n" + "\n".join(rows) + "\n", encoding="utf-8")
    jsonl(folder / "ok" / "a.jsonl", *range(1, 50))
    sources = [
        file_source("csv", "ok", "*.csv", "csv"),
        file_source("jsonl", "ok", "*.jsonl", "jsonl"),
    ]
    for source in sources:
        source["file"]["max_record_bytes"] = 10_000
        source["file"]["chunk_size"] = 7

    results = by_id(run(write_config(folder, *sources), functions={}))

    assert results["csv"].ok, results["csv"].error
    assert keys(results["csv"]) == list(range(1, 400))
    assert keys(results["jsonl"]) == list(range(1, 50))


# --- symbolic links and paths out of the folder ---------------------------------------------


def test_follow_symlinks_false_reads_nothing_from_outside_the_folder(
    folder: Path, tmp_path: Path
) -> None:
    """A drop folder others can write to: a link to /etc/passwd there would be read and handed
    to run() (and a linked folder walked) by default, as at 0.8.0."""
    drop, outside = folder / "drop", tmp_path / "outside"
    jsonl(drop / "a.jsonl", 1)
    jsonl(drop / "sub" / "b.jsonl", 2)
    jsonl(outside / "secret.jsonl", 99)
    jsonl(outside / "linked" / "c.jsonl", 98)
    (drop / "out.jsonl").symlink_to(outside / "secret.jsonl")
    (drop / "linked").symlink_to(outside / "linked")
    (drop / "inside.jsonl").symlink_to(drop / "sub" / "b.jsonl")  # stays in the folder: read
    guarded = file_source("guarded", "drop", "**/*.jsonl", "jsonl")
    guarded["file"]["follow_symlinks"] = False
    upward = file_source("upward", "drop", "../../outside/*.jsonl", "jsonl")
    upward["file"]["follow_symlinks"] = False
    config = write_config(
        folder, guarded, upward, file_source("default", "drop", "**/*.jsonl", "jsonl")
    )

    results = by_id(run(config))

    assert sorted(keys(results["guarded"])) == [1, 2, 2]
    assert results["guarded"].warnings == [
        "file: skipped 2 files that lead out of drop (symbolic links, or a glob with ..):"
        " linked/c.jsonl, out.jsonl; file.follow_symlinks is false"
    ]
    assert results["upward"].records == 0
    assert results["upward"].warnings == [
        "file: skipped 1 file that leads out of drop (symbolic links, or a glob with ..):"
        " ../../outside/secret.jsonl; file.follow_symlinks is false"
    ]
    assert sorted(keys(results["default"])) == [1, 2, 2, 98, 99]


def test_the_line_too_long_is_found_where_it_starts_and_cr_line_ends_count(folder: Path) -> None:
    """The byte where the long record starts, in the middle of a file; CR alone ends a CSV
    record as pandas reads it (no record of 600 KB there, with a limit of 10 KB)."""
    (folder / "mid").mkdir()
    first = b'{"id": 1}\n{"id": 2}\n'
    (folder / "mid" / "a.jsonl").write_bytes(first + b'{"id": "' + b"z" * 20_000 + b'"}\n')
    rows = "".join(f"{n},text {n}\r" for n in range(1, 50_000))
    (folder / "mid" / "b.csv").write_text(f"id,text\r{rows}", encoding="utf-8")
    sources = [
        file_source("jsonl", "mid", "*.jsonl", "jsonl"),
        file_source("csv", "mid", "*.csv", "csv"),
    ]
    for source in sources:
        source["file"]["max_record_bytes"] = 10_000

    results = by_id(run(write_config(folder, *sources)))

    assert results["jsonl"].error == (
        f"file: a.jsonl has a line longer than 10,000 bytes (file.max_record_bytes) at byte"
        f" {len(first)}: raise file.max_record_bytes if such lines are expected"
    )
    assert (results["csv"].ok, results["csv"].records) == (True, 49_999), results["csv"].error
