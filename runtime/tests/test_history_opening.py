"""`run` opens its history while its sources work (store/history_opening.py): the sources of a
run of python sources start before the history is open, the run is recorded once it is, a
history that cannot be opened is still one line, and what needs the history from the start (a
source's cursor) waits for it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy

from parallel_workflow_runtime._store.database import file_lock
from parallel_workflow_runtime._store.history import HistoryLocation, open_history
from parallel_workflow_runtime._store.history_opening import HistoryOpening
from parallel_workflow_runtime._store.migrate import HEAD, VERSION_TABLE

from .conftest import FIRST_WORKFLOW, HISTORY_DB_ENV, PROJECT, user_environment, wait_until

# Every source of every workflow notes that it started (a file named after it), then returns.
NOTING_PROGRAM = """
import importlib, os, sys
from pathlib import Path
from example_project import Source, SourceSummary, project
from parallel_workflow_runtime._core.registry import discover
from parallel_workflow_runtime._execution.steps import SOURCE_FUNCTION_NAMES

def noting(source: Source) -> SourceSummary:
    (Path(os.environ["STARTED_IN"]) / source.id).touch()
    return SourceSummary(records=1)

for entry in discover().values():
    for source in entry.config.sources:
        module = importlib.import_module(f"{entry.package}.sources.{source.id}")
        name = next(name for name in SOURCE_FUNCTION_NAMES if hasattr(module, name))
        setattr(module, name, noting)
raise SystemExit(project.main(sys.argv[1:]))
"""


def noting_run(history: Path, started_in: Path) -> subprocess.Popen[str]:
    """`run --json` of the first workflow, its sources noting in `started_in` that they ran."""
    started_in.mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-c", NOTING_PROGRAM, "run", "--workflow", FIRST_WORKFLOW, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT,
        env=user_environment(**{HISTORY_DB_ENV: str(history), "STARTED_IN": str(started_in)}),
    )


@pytest.mark.integration
def test_the_sources_start_while_another_process_holds_the_history_and_the_run_is_recorded(
    tmp_path: Path,
) -> None:
    history = tmp_path / "history.sqlite"
    started_in = tmp_path / "started"
    # The lock that opening a history takes (to make its tables): held by this test, as by
    # another run making a fresh history's tables. Before 0.12.0, `run` waited for it before
    # any source started.
    with file_lock(history.with_name(history.name + ".lock")):
        run = noting_run(history, started_in)
        wait_until(lambda: any(started_in.iterdir()), 60, "a source to start")
        assert run.poll() is None  # the run waits to record itself, not to start
    output, errors = run.communicate(timeout=120)

    assert run.returncode == 0, errors
    document = json.loads(output)
    stored = open_history(HistoryLocation(sqlite_file=history)).get_run(document["run_id"])
    assert stored is not None
    assert sorted(path.name for path in started_in.iterdir()) == sorted(
        result["id"] for result in document["sources"]
    )


@pytest.mark.integration
def test_a_history_a_newer_version_migrated_fails_the_run_in_one_line_after_its_sources(
    tmp_path: Path,
) -> None:
    history = tmp_path / "history.sqlite"
    open_history(HistoryLocation(sqlite_file=history))
    with sqlite3.connect(history) as connection:
        connection.execute(f"UPDATE {VERSION_TABLE} SET version_num = '9999'")
    connection.close()

    run = noting_run(history, tmp_path / "started")
    _, errors = run.communicate(timeout=120)

    assert run.returncode == 1, errors
    assert "Traceback" not in errors, errors
    assert any((tmp_path / "started").iterdir())  # the sources ran: only the record failed
    (line,) = [line for line in errors.splitlines() if line.startswith("error:")]
    assert line.startswith(
        f"error: the run was not saved in the history: cannot use the history in {history}"
    )
    assert "revision 9999" in line and f"its newest is {HEAD}" in line


def test_a_history_opening_answers_for_its_own_new_session_before_it_is_open(
    tmp_path: Path,
) -> None:
    history = tmp_path / "history.sqlite"
    with file_lock(history.with_name(history.name + ".lock")):  # it cannot open meanwhile
        opening = HistoryOpening(HistoryLocation(sqlite_file=history))
        session_id = opening.new_session_id()
        assert opening.get_session(session_id=session_id) is None  # at once, not waiting
    assert opening.failure() is None
    engine = sqlalchemy.create_engine(f"sqlite:///{history}")
    with engine.connect() as connection:
        names = sqlalchemy.inspect(connection).get_table_names()
    engine.dispose()
    assert {"agno_sessions", "agno_runs", VERSION_TABLE} <= set(names)
