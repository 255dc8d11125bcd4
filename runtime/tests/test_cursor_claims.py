"""Runs that read the same cursors at once, as real processes of the command line (`run
--json`): the connector sources of a run take their cursors together, so that no two runs
ever wait for each other; a run waits for another's claim no longer than its sources'
timeout, says whom it waits for, and counts the wait; a claim is renewed while its run is
alive whatever its event loop does, and a run whose claim was taken all the same fails that
source rather than keep what it read.

Some tests shorten how long a claim lasts (TEST_CLAIM_SECONDS, TEST_RENEW_SECONDS, set in
the test's own program, PROGRAM): the same code, which would otherwise make them wait a
minute for a claim to run out.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from parallel_workflow_runtime._store.cursors import CursorStore, Holder
from parallel_workflow_runtime._store.history import open_history

from .conftest import HISTORY_DB_ENV, RUNTIME, user_environment, wait_until
from .connector_project import write_connector_workflow
from .test_connectors import (  # noqa: F401  (api_server: a fixture, used by name)
    PAGED,
    TOKEN,
    add_rows,
    api_server,
    file_source,
    http_source,
    sql_source,
    sqlite_table,
)
from .test_history import fresh_postgres  # noqa: F401  (a fixture, used by name)

# The command line of a project whose workflows folder is WORKFLOWS_DIR, with the claims'
# clock shortened where the test says so.
PROGRAM = textwrap.dedent(
    """
    import os, sys
    import example_project.workflows as workflows
    from parallel_workflow_runtime import Project
    from parallel_workflow_runtime._store import cursor_session, cursors
    for module, name in ((cursors, "CLAIM_SECONDS"), (cursor_session, "RENEW_SECONDS")):
        if os.environ.get("TEST_" + name):
            setattr(module, name, float(os.environ["TEST_" + name]))
    workflows.__path__.append(os.environ["WORKFLOWS_DIR"])
    sys.exit(Project.register("example_project", os.environ["WORKFLOWS_DIR"]).main())
    """
)

# A connector source's run(): every row's key (tests.connector_sources.collect), after a
# pause of PAUSE_PER_ROW seconds per row, for the tests that need a run caught reading.
COLLECT = textwrap.dedent(
    """
    import os, time
    from tests.connector_sources import collect

    def run(source, rows):
        pause = float(os.environ.get("PAUSE_PER_ROW", "0"))

        def slowly():
            for row in rows:
                time.sleep(pause)
                yield row

        return collect(source, slowly())
    """
)

# A python source whose async def blocks the event loop until the file BLOCK_UNTIL exists
# (two minutes at most), if that variable is set; from when the file BLOCK_FROM exists, which
# the test makes once the run's connector source has claimed its cursor (on that loop).
BLOCKER = textwrap.dedent(
    """
    import asyncio, os, time
    from pathlib import Path
    from parallel_workflow_runtime import SourceSummary

    async def run(source):
        until = os.environ.get("BLOCK_UNTIL")
        while until and not Path(os.environ["BLOCK_FROM"]).exists():
            await asyncio.sleep(0.05)  # the loop is free: the other source claims its cursor
        deadline = time.monotonic() + 120
        while until and not Path(until).exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # not await: the loop is held
        return SourceSummary(records=0)
    """
)


STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def no_run_left_behind() -> Iterator[None]:
    """A run that a failed test left running (one that hangs) is killed, stopped or not."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.communicate()


@dataclass
class Project:
    """A project whose workflow `connectors` has the given sources, run by its command line."""

    workflows: Path
    environment: dict[str, str]

    def start(self, *args: str, **environment: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", PROGRAM, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.environment, **environment},
            cwd=RUNTIME,
        )
        STARTED.append(process)
        return process

    def run(self, *args: str, **environment: str) -> subprocess.CompletedProcess[str]:
        process = self.start(*args, **environment)
        stdout, stderr = process.communicate(timeout=300)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def make_project(
    tmp_path: Path,
    sources: list[dict[str, Any]],
    modules: dict[str, str],
    workflow: dict[str, Any] | None = None,
    **environment: str,
) -> Project:
    """The connectors workflow of `sources` (with config.yaml's `workflow:` settings given) in
    a project whose commands run with `environment`."""
    workflows = tmp_path / "workflows"
    write_connector_workflow(workflows, sources, modules, **(workflow or {}))
    return Project(
        workflows, user_environment(WORKFLOWS_DIR=str(workflows), API_TOKEN=TOKEN, **environment)
    )


def users_and_orders(tmp_path: Path, timeout_seconds: float) -> Project:
    """`users` and `orders`: sql sources of one 5-row table (COLLECT) that time out after
    `timeout_seconds`, whose claims last 1 s (renewed every 0.25 s)."""
    database = tmp_path / "users.sqlite"
    sqlite_table(database, 5)
    return make_project(
        tmp_path,
        [sql_source("users"), sql_source("orders")],
        {"users": COLLECT, "orders": COLLECT},
        workflow={"timeout_seconds": timeout_seconds},
        USERS_URL=f"sqlite:///{database}",
        TEST_CLAIM_SECONDS="1",
        TEST_RENEW_SECONDS="0.25",
    )


def waiting_line(process: subprocess.Popen[str]) -> str:
    """The first line on a run's stderr that says a source waits for its cursor ("" if the
    run ended without one)."""
    assert process.stderr is not None
    line = process.stderr.readline()
    while line and "waits for its cursor" not in line:
        line = process.stderr.readline()
    return line


def sources_of(completed: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    """The sources of a `run --json`, by id."""
    return {source["id"]: source for source in json.loads(completed.stdout)["sources"]}


def read_keys(source: dict[str, Any]) -> list[Any]:
    return list(source["details"].get("keys", []))


def claimed_by(workflow_id: str = "connectors") -> dict[str, str | None]:
    """Who holds each cursor of the workflow now."""
    return {c.source_id: c.claimed_by for c in CursorStore.of(open_history()).all(workflow_id)}


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_history(request: pytest.FixtureRequest) -> str:
    """A history nobody has used yet: a new SQLite file (see conftest) or PostgreSQL database."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("fresh_postgres"))
    return os.environ["EXAMPLE_PROJECT_HISTORY_DB"]


# --- all or nothing ------------------------------------------------------------------------------


def test_a_claim_takes_every_cursor_or_none(fresh_history: str) -> None:
    store = CursorStore.of(open_history())
    assert store.claim("connectors", "b", "run-x") is None

    blocked = store.claim_all("connectors", ["c", "a", "b"], "run-y")

    # run-x holds b: run-y holds nothing, not even a and c, which were free.
    assert isinstance(blocked, Holder) and (blocked.source_id, blocked.run_id) == ("b", "run-x")
    assert 55 < blocked.seconds_left <= 60
    assert claimed_by() == {"b": "run-x"}
    store.settle("connectors", "run-x", {"b": {"field": "id", "value": 7}})
    assert store.claim_all("connectors", ["c", "a", "b"], "run-y") == {
        "a": None, "b": {"field": "id", "value": 7}, "c": None,
    }  # fmt: skip
    assert claimed_by() == {"a": "run-y", "b": "run-y", "c": "run-y"}
    # What run-y reached is kept; what run-x reaches now, no longer holding b, is not.
    assert store.settle("connectors", "run-x", {"b": {"field": "id", "value": 9}}) == {"b"}
    assert store.settle("connectors", "run-y", {"a": {"field": "id", "value": 3}}) == set()
    assert claimed_by() == {"a": None, "b": None}
    assert {c.source_id: c.state for c in store.all("connectors")} == {
        "a": {"field": "id", "value": 3}, "b": {"field": "id", "value": 7},
    }  # fmt: skip


# --- sixteen runs at once of three connector sources -----------------------------------------


def write_jsonl(folder: Path, name: str, ids: range) -> None:
    """A JSONL file of these ids, which appears whole (renamed into the glob's sight)."""
    partial = folder / f".{name}.partial"
    partial.write_text("".join(json.dumps({"id": n}) + "\n" for n in ids), encoding="utf-8")
    os.replace(partial, folder / name)


def test_sixteen_runs_of_three_connector_sources_at_once_read_each_new_row_once(
    tmp_path: Path,
    api_server: str,  # noqa: F811  (the fixture imported above)
    fresh_history: str,
) -> None:
    database = tmp_path / "users.sqlite"
    sqlite_table(database, 200)
    logs = tmp_path / "logs"
    logs.mkdir()
    write_jsonl(logs, "0000.jsonl", range(10_001, 10_021))
    dataset = f"claims-{tmp_path.name}"
    project = make_project(
        tmp_path,
        [
            sql_source("users"),
            http_source("events", api_server, f"{dataset}/pages", **PAGED),
            file_source("logs", str(logs), "*.jsonl", "jsonl"),
        ],
        {"users": COLLECT, "events": COLLECT, "logs": COLLECT},
        USERS_URL=f"sqlite:///{database}",
    )
    started = time.monotonic()
    runs = [project.start("run", "--json") for _ in range(16)]
    # Rows come in while the runs run, to each kind of source: each must be read once.
    batch = 0
    while any(process.poll() is None for process in runs) and batch < 120:
        time.sleep(0.5)
        batch += 1
        sqlite_table(database, 5, start=201 + 5 * (batch - 1))
        add_rows(api_server, dataset, 3)
        write_jsonl(logs, f"{batch:04d}.jsonl", range(10_001 + 20 * batch, 10_021 + 20 * batch))
    outputs = []
    for process in runs:
        try:
            outputs.append(process.communicate(timeout=max(started + 480 - time.monotonic(), 1)))
        except subprocess.TimeoutExpired:
            running = sum(process.poll() is None for process in runs)
            pytest.fail(f"{running} of the 16 runs still running after 8 minutes: {claimed_by()}")
    wall = time.monotonic() - started
    last = project.run("run", "--json")  # whatever came in after the last of the 16

    read: dict[str, list[Any]] = {"users": [], "events": [], "logs": []}
    for process, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
        for source_id, source in sources_of(subprocess.CompletedProcess([], 0, stdout)).items():
            assert source["status"] == "ok", source
            read[source_id] += read_keys(source)
    assert last.returncode == 0, last.stderr[-3000:]
    for source_id, source in sources_of(last).items():
        read[source_id] += read_keys(source)
    twice = {key: {k for k, n in Counter(keys).items() if n > 1} for key, keys in read.items()}
    assert twice == {"users": set(), "events": set(), "logs": set()}
    assert sorted(read["users"]) == list(range(1, 201 + 5 * batch))
    assert sorted(read["events"]) == list(range(1, 24 + 3 * batch))
    assert sorted(read["logs"]) == list(range(10_001, 10_021 + 20 * batch))
    kind = "postgresql" if fresh_history.startswith("postgresql") else "sqlite"
    print(f"16 runs at once ({kind}): {wall:.1f} s, {batch} batches")


# --- a claim lasts while its run is alive ----------------------------------------------------


@pytest.fixture
def users_project(tmp_path: Path) -> Project:
    """`users` (sql, 40 rows, COLLECT) and `blocker` (a python source, BLOCKER)."""
    database = tmp_path / "users.sqlite"
    sqlite_table(database, 40)
    blocker = {"id": "blocker", "name": "Blocker"}
    return make_project(
        tmp_path,
        [sql_source("users"), blocker],
        {"users": COLLECT, "blocker": BLOCKER},
        USERS_URL=f"sqlite:///{database}",
        TEST_CLAIM_SECONDS="3",
        TEST_RENEW_SECONDS="0.5",
    )


def test_a_run_whose_event_loop_is_blocked_keeps_its_claim(
    users_project: Project, tmp_path: Path
) -> None:
    # Run A's blocker holds A's event loop, from when A holds the cursor, while A's `users`
    # reads; run B starts then, and A's loop stays held for two claims (6 s) after B began
    # waiting.
    block, release = tmp_path / "block", tmp_path / "release"
    first = users_project.start(
        "run", "--json", BLOCK_FROM=str(block), BLOCK_UNTIL=str(release), PAUSE_PER_ROW="0.02"
    )
    holder = wait_until(lambda: claimed_by().get("users"), 120, "run A holds the cursor")
    block.touch()
    second_process = users_project.start("run", "--json")
    line = waiting_line(second_process)
    time.sleep(6)
    release.touch()
    stdout, stderr = first.communicate(timeout=120)
    first_run = subprocess.CompletedProcess([], first.returncode, stdout, stderr)
    second_out, second_err = second_process.communicate(timeout=120)
    second = subprocess.CompletedProcess([], second_process.returncode, second_out, second_err)

    assert holder in line, line  # B waited for A...
    assert second.returncode == 0, second.stderr[-3000:]
    a, b = sources_of(first_run)["users"], sources_of(second)["users"]
    # (A's blocker fails, for blocking the loop; its `users` does not.)
    assert (a["status"], b["status"]) == ("ok", "ok"), (a, b)
    assert json.loads(stdout)["run_id"] == holder
    assert (sorted(read_keys(a)), read_keys(b)) == (list(range(1, 41)), [])
    assert b["timing"]["waited_seconds"] > 6  # ...which renewed its claim all the while


def stop_outside_a_write(process: subprocess.Popen[str]) -> None:
    """Stop `process` (SIGSTOP) at a moment it does not hold the SQLite history's one write
    lock, which it takes for a few milliseconds to renew its claims: stopped inside one, it
    would keep every other run from writing (the tests below show what they say then)."""
    for _ in range(100):
        process.send_signal(signal.SIGSTOP)
        wait_until(lambda: stopped(process.pid), 10, "the process stopped", every=0.01)
        probe = sqlite3.connect(os.environ[HISTORY_DB_ENV], timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # "database is locked": let it finish its write
            process.send_signal(signal.SIGCONT)
            time.sleep(0.05)
        finally:
            probe.close()
    raise AssertionError("the process held the history's write lock at every try")


def stopped(pid: int) -> bool:
    """Whether the process is stopped by a signal (state T in /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "T"


def test_a_run_whose_claim_was_taken_while_it_was_stopped_fails_that_source(
    users_project: Project,
) -> None:
    # Run A reads slowly; it is stopped (SIGSTOP) for longer than a claim lasts, long enough
    # for run B to take the cursor and read every row; then A goes on.
    first = users_project.start("run", "--json", PAUSE_PER_ROW="0.1")
    wait_until(lambda: claimed_by().get("users"), 120, "run A holds the cursor")
    time.sleep(1.0)  # A is reading
    stop_outside_a_write(first)
    try:
        second = users_project.run("run", "--json")
    finally:
        first.send_signal(signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=120)

    assert second.returncode == 0, second.stderr[-3000:]
    b = sources_of(second)["users"]
    assert sorted(read_keys(b)) == list(range(1, 41))
    a = sources_of(subprocess.CompletedProcess([], first.returncode, stdout, stderr))["users"]
    assert first.returncode == 1 and a["status"] == "failed", a
    second_id = json.loads(second.stdout)["run_id"]
    assert a["error"].startswith("its cursor was taken by another run"), a["error"]
    assert "\n" not in a["error"]
    # The cursor is where B left it: A's read is not kept.
    [cursor] = CursorStore.of(open_history()).all("connectors")
    assert cursor.run_id == second_id and cursor.claimed_by is None


def timed_out_unanswered(locked: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The `run --json` of a run whose claim the history's database never answered (another
    session held its lock): it failed without a traceback, each source timed out saying so."""
    assert locked.returncode == 1
    assert "Traceback" not in locked.stderr, locked.stderr[-3000:]
    outcome: dict[str, Any] = json.loads(locked.stdout)
    for source in outcome["sources"]:
        assert source["status"] == "timed_out", source
        assert source["error"].endswith(
            "waiting for its cursor: the history's database has not answered (is another"
            " process writing to it?)"
        ), source["error"]
    return outcome


@pytest.mark.integration
def test_a_run_that_cannot_write_the_history_says_so_in_lines_and_leaves_the_cursors(
    tmp_path: Path,
) -> None:
    # Another process holds the SQLite file's one write lock for the whole run, as a run
    # stopped (SIGSTOP, a debugger) in the middle of renewing its claims would.
    project = users_and_orders(tmp_path, timeout_seconds=2)
    open_history()  # its tables, before the lock
    locker = sqlite3.connect(os.environ[HISTORY_DB_ENV], isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        locked = project.run("run", "--json")
    finally:
        locker.close()

    outcome = timed_out_unanswered(locked)
    # It never held them: nothing to release, and the run says why it was not saved.
    assert outcome["errors"] == ["the run was not saved in the history: database is locked"]
    assert locked.stderr.splitlines()[-1] == f"error: {outcome['errors'][0]}", locked.stderr
    # Nothing moved; the claims it could not release were never taken.
    assert claimed_by() == {}


@pytest.mark.integration
@pytest.mark.usefixtures("fresh_postgres")
def test_a_run_whose_cursors_another_session_locks_on_postgresql_ends_at_its_timeout(
    tmp_path: Path,
) -> None:
    # A session holds a lock on the cursors' table that lets nobody else write it, as a
    # process stopped in the middle of renewing its claims would: PostgreSQL waits for a row
    # lock without end, unless the history sets lock_timeout.
    project = users_and_orders(tmp_path, timeout_seconds=2)
    store = CursorStore.of(open_history())
    store.claim_all("connectors", ["orders", "users"], "earlier-run")  # the rows exist
    store.settle("connectors", "earlier-run", {})
    with store.engine.connect() as locker, locker.begin():
        locker.execute(text(f"LOCK TABLE {store.table.name} IN EXCLUSIVE MODE"))
        started = time.monotonic()
        locked = project.run("run", "--json")
        seconds = time.monotonic() - started

    outcome = timed_out_unanswered(locked)
    assert outcome["errors"] == []  # the run itself is saved: its tables are not locked
    # Its sources' timeout, its claim's lock_timeout, its release's, and the process.
    assert seconds < 60, seconds


@pytest.mark.integration
def test_a_run_that_loses_the_history_while_it_reads_keeps_no_cursor(
    users_project: Project,
) -> None:
    # Run A holds the cursor and reads; then another process takes the history's write lock
    # until A has ended: A cannot save its run nor let go of its claim.
    first = users_project.start("run", "--json", PAUSE_PER_ROW="0.1")  # 4 s of reading
    wait_until(lambda: claimed_by().get("users"), 120, "run A holds the cursor")
    locker = sqlite3.connect(os.environ[HISTORY_DB_ENV], isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        stdout, stderr = first.communicate(timeout=120)
    finally:
        locker.close()

    assert first.returncode == 1
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = json.loads(stdout)["errors"]
    assert errors == [
        "the run was not saved in the history: database is locked",
        "the cursors of users stay claimed by this run for at most 3 s more: the history's"
        " database failed: database is locked",
    ], errors
    # Its claim has run out (3 s after its last renewal): the next run reads every row again.
    assert claimed_by() == {}
    second = users_project.run("run", "--json")
    assert second.returncode == 0, second.stderr[-3000:]
    assert sorted(read_keys(sources_of(second)["users"])) == list(range(1, 41))


# --- a run that was killed -----------------------------------------------------------------


def test_after_kill_9_the_next_run_says_whom_it_waits_for_and_counts_the_wait(
    users_project: Project,
) -> None:
    # A holds the cursor with claims of 20 s and reads slowly (5 s a row: it outlives B's start,
    # however long that takes on a busy machine).
    first = users_project.start("run", "--json", PAUSE_PER_ROW="5", TEST_CLAIM_SECONDS="20")
    holder = wait_until(lambda: claimed_by().get("users"), 120, "run A holds the cursor")
    # B starts while A lives, and says whom it waits for, in one line: the source, the run, how
    # long. (Starting B after the kill raced with its start-up: at CI's load B took 19 s to reach
    # the cursor, and the claim had nearly run out.)
    started = time.monotonic()
    second = users_project.start("run", "--json")
    line = waiting_line(second)
    seen_waiting = time.monotonic()
    assert line.startswith(f"source users waits for its cursor: run {holder}"), line
    assert re.search(r"for \d+(\.\d)? s more", line), line
    first.kill()  # SIGKILL: nothing of A lets go of its claim
    first.communicate(timeout=30)
    killed = time.monotonic()

    stdout, rest = second.communicate(timeout=300)
    finished = time.monotonic()

    assert second.returncode == 0, rest[-3000:]
    users = {source["id"]: source for source in json.loads(stdout)["sources"]}["users"]
    assert sorted(read_keys(users)) == list(range(1, 41))
    # B did not take the cursor when A died: it waited for A's last claim to run out, up to
    # 20 s after A's last renewal (every 0.5 s; 10 s is the margin for a late one), and counted
    # all of that wait.
    waited = users["timing"]["waited_seconds"]
    assert (killed - seen_waiting) + 10 < waited <= finished - started
    # It said so once.
    assert holder not in rest, rest[-3000:]


@pytest.mark.integration
def test_a_wait_for_a_cursor_ends_with_each_sources_timeout(tmp_path: Path) -> None:
    database = tmp_path / "users.sqlite"
    sqlite_table(database, 5)
    project = make_project(
        tmp_path,
        # users: the workflow's timeout_seconds (2 s, below); orders: its own, 4 s.
        [sql_source("users"), {**sql_source("orders"), "timeout_seconds": 4}],
        {"users": COLLECT, "orders": COLLECT},
        workflow={"timeout_seconds": 2},
        USERS_URL=f"sqlite:///{database}",
        # A source waits at least as long as a claim lasts: here 1 s, less than its timeout.
        TEST_CLAIM_SECONDS="1",
        TEST_RENEW_SECONDS="0.25",
    )
    # A live run holds `orders` (this process's claim lasts a minute, longer than the test).
    store = CursorStore.of(open_history())
    assert not isinstance(store.claim("connectors", "orders", "a-live-run"), bool)

    waited = project.run("run", "--json")

    # The sources of a run take their cursors together: both wait, each for its timeout.
    sources = sources_of(waited)
    assert waited.returncode == 1
    for source_id, seconds in (("users", 2), ("orders", 4)):
        source = sources[source_id]
        assert (source["status"], source["attempts"], source["records"]) == ("timed_out", 0, 0)
        assert source["error"].startswith(
            f"timed out after {seconds} s waiting for its cursor: run a-live-run holds"
        ), source["error"]
        # Give or take a second: the connectors' first import runs in a thread meanwhile and
        # competes with the event loop, which times the wait (2.56 s for 2 s seen in CI).
        assert source["timing"]["waited_seconds"] == pytest.approx(seconds, abs=1.0)
    # Neither cursor moved, and the live run still holds its own.
    assert claimed_by() == {"orders": "a-live-run"}


@pytest.mark.integration
def test_a_wait_through_runs_that_each_finish_in_turn_outlasts_the_timeout(
    tmp_path: Path,
) -> None:
    # A claim lasts 1 s: the sources wait at most their 4 s for any one run.
    project = users_and_orders(tmp_path, timeout_seconds=4)
    store = CursorStore.of(open_history())
    assert not isinstance(store.claim("connectors", "orders", "run-x"), bool)
    process = project.start("run", "--json")
    line = waiting_line(process)
    assert "run run-x holds it" in line, line

    # run-x holds `orders` 2.5 s more, then run-y (which took it as run-x let go) 2.5 s:
    # 1.5 s to spare for each on a loaded machine, where the waiter saw run-x before we did.
    time.sleep(2.5)
    with store.engine.begin() as connection:
        connection.execute(
            store.table.update()
            .where(store.table.c.source_id == "orders")
            .values(claimed_by="run-y")
        )
    time.sleep(2.5)
    assert store.settle("connectors", "run-y", {}) == set()
    stdout, stderr = process.communicate(timeout=60)

    # Neither held it for 4 s: the sources waited 5 s, longer than their timeout, and read.
    assert process.returncode == 0, (stdout + stderr)[-3000:]
    sources = sources_of(subprocess.CompletedProcess([], 0, stdout))
    for source in sources.values():
        assert (source["status"], source["records"]) == ("ok", 5), source
        assert source["timing"]["waited_seconds"] > 4.5
