"""What the history does with what it is given: a location it cannot use is one line and
exit 2, another program's file is left alone, a page lookup reads a row or two whatever the
history's size, each source's result is stored once, and pruning gives the space back."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import resource
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agno.db.base import SessionType
from agno.session.workflow import WorkflowSession
from example_project import Source, SourceSummary

from parallel_workflow_runtime._cli.cli import main
from parallel_workflow_runtime._core.registry import discover
from parallel_workflow_runtime._core.settings import DATABASE_URL_ENV
from parallel_workflow_runtime._execution.running import run_workflow
from parallel_workflow_runtime._store.history import (
    HistoryError,
    history_location,
    open_history,
    recent_runs,
    stored_run,
)

from .conftest import (
    FIRST_WORKFLOW,
    HISTORY_DB_ENV,
    PROJECT,
    SYNTHETIC_PROGRAM,
    synthetic_cli,
    user_environment,
)

FIRST_ENTRY = next(iter(discover().values()))
FIRST_SOURCE = FIRST_ENTRY.config.sources[0].id


def record_runs(count: int, details_bytes: int = 0, error_bytes: int = 0) -> list[str]:
    """`count` runs of the first workflow's first two sources into the history: the first
    returns `details_bytes` of details, the second fails with an error that long."""
    db = open_history()
    config = dataclasses.replace(FIRST_ENTRY.config, sources=FIRST_ENTRY.config.sources[:2])
    first, second = (source.id for source in config.sources)

    async def bulky(source: Source) -> SourceSummary:
        return SourceSummary(records=1, details={"text": "d" * details_bytes})

    async def failing(source: Source) -> SourceSummary:
        raise ValueError("E" * error_bytes if error_bytes else "failed")

    functions = {first: bulky, second: failing}
    run_ids = []
    for _ in range(count):
        workflow = FIRST_ENTRY.factory(
            db=db, config=config, report_model="", source_functions=functions
        )
        outcome = asyncio.run(run_workflow(workflow, "files", db=db))
        assert outcome.run_id is not None, outcome.errors
        run_ids.append(outcome.run_id)
    return run_ids


def one_line_refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The one line on stderr of a command that refused, exit code 2, with no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql+psycopg://reports@localhost:abc/reports", "Port could not be cast"),
        ("postgresql+psycopg://reports@[::1:1/reports", "Invalid IPv6 URL"),
    ],
    ids=["port abc", "unclosed IPv6 address"],
)
def test_a_database_url_that_does_not_parse_is_one_line_for_every_command(
    url: str, named: str
) -> None:
    for command in (
        ["history"],
        ["run", "--workflow", FIRST_WORKFLOW, "--json"],
        ["history", "prune", "--keep", "1"],
    ):
        result = synthetic_cli(*command, **{DATABASE_URL_ENV: url})
        assert named in one_line_refusal(result), command
        assert result.stdout == ""


@pytest.mark.integration
def test_a_history_file_where_no_folder_can_be_made_is_one_line() -> None:
    result = synthetic_cli(
        "run",
        "--workflow",
        FIRST_WORKFLOW,
        "--json",
        **{HISTORY_DB_ENV: "/proc/nope/history.sqlite"},
    )

    assert "/proc/nope/history.sqlite" in one_line_refusal(result)
    assert result.stdout == ""


def test_the_postgres_scheme_means_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, "postgres://reports:pw@db:5432/reports")
    location = history_location()

    assert location.database_url == "postgresql+psycopg://reports:pw@db:5432/reports"


@pytest.mark.integration
def test_a_postgres_scheme_url_reaches_the_server_it_names() -> None:
    # Port 1 of this machine: nobody answers, and the message says so, in one line.
    result = synthetic_cli("history", DATABASE_URL="postgres://reports:s3cret@127.0.0.1:1/x")

    refusal = one_line_refusal(result)
    assert "Connection refused" in refusal and "s3cret" not in refusal


@pytest.mark.integration
def test_a_history_damaged_after_its_first_page_is_one_line_on_run() -> None:
    record_runs(2, details_bytes=20_000)
    history = Path(os.environ[HISTORY_DB_ENV])
    with sqlite3.connect(history) as connection:  # every page in the file, none in its log
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    with history.open("r+b") as file:  # the first page (the schema) intact, the rest not
        file.seek(4096)
        file.write(bytes(range(256)) * (history.stat().st_size // 256))

    for command in (["run", "--workflow", FIRST_WORKFLOW, "--json"], ["history"]):
        result = synthetic_cli(*command, **{HISTORY_DB_ENV: str(history)})
        assert "the file is damaged" in one_line_refusal(result), command


@pytest.mark.integration
def test_a_damaged_sqlite_history_is_one_line_on_run(tmp_path: Path) -> None:
    history = tmp_path / "history.sqlite"
    history.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))

    result = synthetic_cli(
        "run", "--workflow", FIRST_WORKFLOW, "--json", **{HISTORY_DB_ENV: str(history)}
    )

    assert str(history) in one_line_refusal(result)


@pytest.mark.integration
def test_another_programs_sqlite_file_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    theirs = tmp_path / "inventory.sqlite"
    with sqlite3.connect(theirs) as connection:
        connection.execute("CREATE TABLE items (name TEXT)")
        connection.execute("INSERT INTO items VALUES ('lamp')")
    connection.close()
    before = hashlib.sha256(theirs.read_bytes()).hexdigest()

    for command in (["history"], ["run", "--workflow", FIRST_WORKFLOW, "--json"]):
        result = synthetic_cli(*command, **{HISTORY_DB_ENV: str(theirs)})
        assert "is not a run history" in one_line_refusal(result), command

    assert hashlib.sha256(theirs.read_bytes()).hexdigest() == before


def limit_file_size() -> None:
    """In the child: no file may grow past 64 KiB, as on a disk that is full (Python ignores
    SIGXFSZ, so a write past it fails with EFBIG instead of killing the process)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


@pytest.mark.integration
def test_a_first_run_on_a_full_disk_is_one_line_and_no_traceback(tmp_path: Path) -> None:
    history = tmp_path / "history.sqlite"
    result = subprocess.run(
        [sys.executable, "-c", SYNTHETIC_PROGRAM, "run", "--workflow", FIRST_WORKFLOW, "--json"],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env=user_environment(**{HISTORY_DB_ENV: str(history)}),
        preexec_fn=limit_file_size,
        timeout=120,
    )

    assert result.returncode in (1, 2), result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert str(history) in result.stderr.strip().splitlines()[-1] or "history" in result.stderr


@pytest.mark.parametrize("days", ["1e10", "1e300"])
def test_prune_older_than_a_huge_age_is_a_usage_error(
    days: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["history", "prune", "--older-than", days])

    assert refused.value.code == 2
    assert "must be at most 999999999 days" in capsys.readouterr().err


def test_prune_older_than_the_largest_age_deletes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    record_runs(1)

    assert main(["history", "prune", "--older-than", "999999999", "--json"]) == 0
    assert '"deleted_runs": 0' in capsys.readouterr().out


def test_pruning_gives_the_space_back(capsys: pytest.CaptureFixture[str]) -> None:
    record_runs(6, details_bytes=200_000)
    history = Path(os.environ[HISTORY_DB_ENV])
    full = on_disk(history)

    assert main(["history", "prune", "--keep", "0"]) == 0
    capsys.readouterr()

    assert full > 1_000_000
    assert on_disk(history) < full / 10


def on_disk(history: Path) -> int:
    """The bytes the history takes: its file and its write-ahead log."""
    log = history.with_name(history.name + "-wal")
    return history.stat().st_size + (log.stat().st_size if log.exists() else 0)


def test_a_lookup_by_id_reads_no_list_of_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    run_ids = record_runs(3)
    db = open_history()

    def listed(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a lookup by id listed the stored runs")

    # Whatever the history holds, a lookup reads one run (or, for a prefix, two ids).
    monkeypatch.setattr(db, "get_runs", listed)
    monkeypatch.setattr(db, "get_sessions", listed)
    assert stored_run(db, run_ids[0]).run_id == run_ids[0]
    assert stored_run(db, run_ids[1][:8]).run_id == run_ids[1]
    for unknown in ("0" * 36, "not-a-run", "%", "_"):
        with pytest.raises(HistoryError, match="no run"):
            stored_run(db, unknown)


def test_each_sources_result_is_stored_once_per_run() -> None:
    (run_id,) = record_runs(1, error_bytes=1_500)  # under the cap on a message's length
    history = Path(os.environ[HISTORY_DB_ENV])
    aggregation = stored_run(open_history(), run_id).aggregation
    assert aggregation is not None
    error = json.dumps(aggregation.sources[1].error)[1:-1]  # as the JSON column holds it
    assert len(error) > 1_500

    with sqlite3.connect(history) as connection:
        (run_data, session_id) = connection.execute(
            "SELECT run_data, session_id FROM agno_runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        (session_data,) = connection.execute(
            "SELECT session_data FROM agno_sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
    connection.close()

    # In the Aggregation step's output, and nowhere else in the run (not in the branch's
    # output, the Parallel block's, the report or the run's content) or in its session.
    assert run_data.count(error) == 1
    assert error not in session_data
    # The session read back has its state as the run left it, the aggregation included.
    session = open_history().get_session(session_id, SessionType.WORKFLOW)
    assert isinstance(session, WorkflowSession) and session.session_data is not None
    state = session.session_data["session_state"]
    assert state["aggregation"]["sources"][1]["error"] == aggregation.sources[1].error


def test_sessions_written_and_read_in_bulk_are_stored_once_too() -> None:
    """Agno's bulk `upsert_sessions` (its own bulk writes use it) goes straight to SQL, past
    the `upsert_session` that leaves the aggregation out: it is covered as well, and
    `get_sessions` puts it back as `get_session` does."""
    (run_id,) = record_runs(1, error_bytes=1_500)
    db = open_history()
    session_id = stored_run(db, run_id).session_id
    session = db.get_session(session_id, SessionType.WORKFLOW)
    assert isinstance(session, WorkflowSession) and session.session_data is not None
    error = session.session_data["session_state"]["aggregation"]["sources"][1]["error"]
    assert len(error) > 1_500

    db.upsert_sessions([session], preserve_updated_at=True)

    with sqlite3.connect(os.environ[HISTORY_DB_ENV]) as connection:
        (session_data,) = connection.execute(
            "SELECT session_data FROM agno_sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
    connection.close()
    assert json.dumps(error)[1:-1] not in session_data
    assert "aggregation" not in json.loads(session_data)["session_state"]
    listed = db.get_sessions(session_type=SessionType.WORKFLOW)
    assert isinstance(listed, list)
    [again] = [s for s in listed if isinstance(s, WorkflowSession) and s.session_id == session_id]
    assert again.session_data is not None
    assert again.session_data["session_state"]["aggregation"]["sources"][1]["error"] == error


@pytest.mark.integration
def test_the_page_of_a_run_is_private_like_the_history(tmp_path: Path) -> None:
    page = tmp_path / "run.html"
    previous = os.umask(0o022)
    try:
        result = synthetic_cli("run", "--workflow", FIRST_WORKFLOW, "--html", str(page))
    finally:
        os.umask(previous)

    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*.partial"))
    assert recent_runs(open_history(), None, None)
