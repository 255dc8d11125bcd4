"""The run history loses nothing and hides nothing: in SQLite, and in PostgreSQL when
TEST_DATABASE_URL points at a server whose role may create databases. It lives in the project
when a command runs inside it, else in the user's data folder, never where a command happens
to run; and the file lock that guards it is why the package refuses systems other than POSIX."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing
import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from example_project import Source, SourceSummary
from sqlalchemy import create_engine, make_url, text

from parallel_workflow_runtime._cli.cli import main
from parallel_workflow_runtime._core.masking import masked
from parallel_workflow_runtime._core.registry import WorkflowEntry, discover
from parallel_workflow_runtime._core.settings import DATABASE_URL_ENV
from parallel_workflow_runtime._execution.running import run_workflow
from parallel_workflow_runtime._store.history import (
    open_history,
    prune,
    recent_runs,
)

from .conftest import (
    FIRST_WORKFLOW,
    HISTORY_DB_ENV,
    forked_at_once,
    user_environment,
)

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "").strip()
FIRST_ENTRY = next(iter(discover().values()))


@pytest.fixture
def fresh_postgres(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, as DATABASE_URL; dropped afterwards."""
    if not TEST_DATABASE_URL:
        pytest.skip("no PostgreSQL server: set TEST_DATABASE_URL to run this against one")
    name = f"history_{uuid.uuid4().hex[:12]}"
    server = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    yield url
    with server.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    server.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_history(request: pytest.FixtureRequest) -> str:
    """A history nobody has used yet: a new SQLite file (see conftest) or PostgreSQL database."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("fresh_postgres"))
    return os.environ[HISTORY_DB_ENV]


async def quick(source: Source) -> SourceSummary:
    return SourceSummary(records=1)


def record_a_run(entry: WorkflowEntry = FIRST_ENTRY) -> str:
    """One quick run of the workflow, over its first three sources, into the history; its
    run id. (How many sources a run has changes nothing in how the history keeps it.)"""
    db = open_history()
    config = dataclasses.replace(entry.config, sources=entry.config.sources[:3])
    functions = {source.id: quick for source in config.sources}
    workflow = entry.factory(db=db, config=config, report_model="", source_functions=functions)
    outcome = asyncio.run(run_workflow(workflow, "history", db=db))
    assert outcome.errors == [] and outcome.run_id is not None
    return outcome.run_id


def run_when_all_are_ready(barrier: multiprocessing.synchronize.Barrier, runs: list[str]) -> None:
    barrier.wait(timeout=60)
    try:
        runs.append(record_a_run())
    except BaseException as error:  # reported by the test, which counts the runs
        runs.append(f"failed: {error!r}")


def test_sixteen_runs_at_once_on_a_fresh_history_are_all_recorded(fresh_history: str) -> None:
    # Processes forked from this one start at once (Agno already imported) on a history whose
    # tables do not exist yet: each one would create them.
    run_ids = forked_at_once(16, run_when_all_are_ready)

    assert len(run_ids) == 16 and not [run for run in run_ids if run.startswith("failed")]
    stored = {record.run_id for record in recent_runs(open_history(), None, None)}
    assert stored == set(run_ids)


def test_an_unreachable_database_is_a_one_line_error_and_no_source_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql+psycopg://reports:s3cret@127.0.0.1:1/reports")

    for command in (
        ["history", "--json"],
        ["history"],
        ["run", "--workflow", FIRST_WORKFLOW, "--json"],
    ):
        assert main(command) == 2, command
        captured = capsys.readouterr()
        assert captured.out == ""  # no JSON that is not one, no summary of a run that did not run
        assert captured.err.count("\n") == 1
        assert "cannot use the history in postgresql+psycopg://reports:***@127.0.0.1:1" in (
            captured.err
        )
        assert "s3cret" not in captured.err


def test_a_file_that_is_not_a_database_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_database = tmp_path / "passwd"
    not_a_database.write_text("root:x:0:0:root:/root:/bin/bash\n" * 100)
    monkeypatch.setenv(HISTORY_DB_ENV, str(not_a_database))

    assert main(["history", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert f"cannot use the history in {not_a_database}: file is not a database" in captured.err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["passwd"]  # nothing beside it


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://app:hunter2@db.internal:5432/runs",
            "postgresql+psycopg://app:***@db.internal:5432/runs",
        ),
        (
            "postgresql+psycopg://db.internal/runs?user=app&password=hunter2&sslmode=require",
            "postgresql+psycopg://db.internal/runs?user=app&password=***&sslmode=require",
        ),
        (
            "postgresql://app:one@db.internal/runs?sslpassword=two",
            "postgresql://app:***@db.internal/runs?sslpassword=***",
        ),
    ],
)
def test_every_password_in_a_database_url_is_masked(url: str, shown: str) -> None:
    assert masked(url) == shown


def test_a_password_in_the_query_never_reaches_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        DATABASE_URL_ENV, "postgresql+psycopg://127.0.0.1:1/runs?user=app&password=hunter2"
    )

    assert main(["history"]) == 2
    error = capsys.readouterr().err
    assert "password=***" in error and "hunter2" not in error


def test_a_new_sqlite_history_is_private_to_its_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = tmp_path / "new-folder" / "history.sqlite"
    monkeypatch.setenv(HISTORY_DB_ENV, str(history))
    previous = os.umask(0o022)  # the usual umask, which would make both world-readable
    try:
        record_a_run()
    finally:
        os.umask(previous)

    assert stat.S_IMODE(history.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(history.stat().st_mode) == 0o600


def test_prune_keeps_the_newest_runs(
    fresh_history: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_ids = [record_a_run() for _ in range(5)]

    assert main(["history", "prune", "--keep", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"deleted_runs": 3}
    kept = [record.run_id for record in recent_runs(open_history(), None, None)]
    assert sorted(kept) == sorted(run_ids[-2:])
    assert main(["history", "prune", "--keep", "2"]) == 0
    assert "Deleted 0 runs from " in capsys.readouterr().out


def test_prune_deletes_the_runs_older_than_a_given_age(fresh_history: str) -> None:
    old = [record_a_run() for _ in range(2)]
    # Agno records when a run started, to the second. The cutoff is put 1.5 s after the old
    # runs and 1.5 s before the new one starts, however long that one then takes to run: a
    # second of rounding still leaves half a second either side.
    cutoff = time.time() + 1.5
    time.sleep(3.0)
    new = record_a_run()

    deleted = prune(open_history(), None, None, older_than=timedelta(seconds=time.time() - cutoff))

    assert deleted == len(old)
    assert [record.run_id for record in recent_runs(open_history(), None, None)] == [new]


def test_prune_needs_to_be_told_how_much_to_keep(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["history", "prune"])

    assert refused.value.code == 2
    assert "one of the arguments --keep --older-than is required" in capsys.readouterr().err


# Run in a fresh interpreter: the modules that Windows lacks cannot be imported, and once the
# entry point is imported (as it is on Windows, where it must import), os.name and
# sys.platform say Windows. (Faking them before the import breaks the standard library
# itself: shutil then imports `nt`.)
AS_ON_WINDOWS = """
import os, sys
for name in ("fcntl", "termios", "tty", "pty", "resource", "grp", "pwd"):
    sys.modules[name] = None  # `import fcntl` now fails, as it does on Windows
from example_project import project
main = project.main
os.name, sys.platform = "nt", "win32"
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.integration
@pytest.mark.parametrize("arguments", [["--help"], ["run", "--json"], ["history"]])
def test_every_command_refuses_a_system_other_than_posix_in_one_line(
    arguments: list[str], tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", AS_ON_WINDOWS, *arguments],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=user_environment(AGNO_TELEMETRY="false"),
        timeout=120,
    )

    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "POSIX" in result.stderr and "WSL" in result.stderr and "win32" in result.stderr
    assert list(tmp_path.iterdir()) == []
