"""Schedules run by real `serve` processes (scheduler.py): two replicas on one PostgreSQL, one
of them killed with SIGKILL mid-run; the CLI's `schedule list | next | trigger` and `history
ticks`; a schedule refused before the server listens. The policies themselves, with the clock
controlled, are test_scheduler.py's."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy
import yaml

from parallel_workflow_runtime._store.ticks import Tick, TickStore

from .conftest import (
    DATABASE_URL_ENV,
    ENV_PREFIX,
    PROJECT,
    free_port,
    user_environment,
    wait_until,
)
from .test_tracing import TRACED_PROGRAM, traced_cli, traced_workflows

EVERY_3_SECONDS = "* * * * * */3"  # croniter: a sixth field, seconds
FAST_SCHEDULER = json.dumps({"poll_seconds": 0.5, "stale_seconds": 3})


def ticks(workflows: Path, **environment: str) -> list[dict[str, Any]]:
    listed = traced_cli(workflows, "history", "ticks", "--limit", "500", "--json", **environment)
    assert listed.returncode == 0, listed.stderr
    return list(reversed(json.loads(listed.stdout)))  # oldest first


def ticks_of(schedule: str, environment: dict[str, str]) -> list[Tick]:
    """The schedule's ticks in the history (PostgreSQL), oldest first, read in this process."""
    engine = sqlalchemy.create_engine(environment[DATABASE_URL_ENV])
    try:
        return list(reversed(TickStore(engine).rows(schedule=schedule)))
    finally:
        engine.dispose()


# A replica whose own clock is CLOCK_OFFSET_ENV seconds off, as faketime would make it, for
# Python: time.time() and datetime.now() read that far ahead, before anything is imported (but
# psycopg's C module, which checks the size of the datetime type it finds). The database's
# clock, PostgreSQL's in its own process, stays as it is.
CLOCK_OFFSET_ENV = "TEST_CLOCK_OFFSET_SECONDS"
SHIFTED_CLOCK = f"""
import datetime, os, time
import psycopg
offset = float(os.environ[{CLOCK_OFFSET_ENV!r}])
real_time, real_time_ns = time.time, time.time_ns
time.time = lambda: real_time() + offset
time.time_ns = lambda: real_time_ns() + int(offset * 1e9)
class ShiftedDatetime(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return super().now(tz) + datetime.timedelta(seconds=offset)
    @classmethod
    def utcnow(cls):
        return super().utcnow() + datetime.timedelta(seconds=offset)
datetime.datetime = ShiftedDatetime
"""


def replica(
    workflows: Path, log: Path, environment: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    program = TRACED_PROGRAM
    if CLOCK_OFFSET_ENV in environment:
        program = SHIFTED_CLOCK + TRACED_PROGRAM
    with log.open("a") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", program, str(workflows), "serve", "--port", str(port)],
            cwd=PROJECT,
            env=user_environment(**environment),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    address = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        try:
            if httpx.get(f"{address}/health", timeout=5).status_code == 200:
                return process, address
        except httpx.TransportError:
            time.sleep(0.2)


@pytest.fixture
def postgres_history() -> dict[str, str]:
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if not url:
        pytest.skip("no PostgreSQL server: set TEST_DATABASE_URL to run this against one")
    return {DATABASE_URL_ENV: url}


@pytest.fixture
def stopped_at_the_end() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_two_replicas_run_each_tick_once_through_one_killed_mid_run(
    tmp_path: Path,
    postgres_history: dict[str, str],
    stopped_at_the_end: list[subprocess.Popen[bytes]],
) -> None:
    name = f"kill-{uuid.uuid4().hex[:12]}"  # its ticks apart from other runs' in the database
    workflows = traced_workflows(
        tmp_path,
        {"nap": ("naps", {"seconds": 1.5})},
        # allow: the tick after the kill runs too, while the killed one still looks alive
        [{"name": name, "cron": EVERY_3_SECONDS, "overlap": "allow", "on_missed": "skip"}],
    )
    environment = {**postgres_history, f"{ENV_PREFIX}SCHEDULER": FAST_SCHEDULER}
    first, _ = replica(workflows, tmp_path / "first.log", environment)
    second, _ = replica(workflows, tmp_path / "second.log", environment)
    stopped_at_the_end.extend([first, second])
    schedule = f"traced/{name}"
    # Kill the replica that runs a tick now, mid-run, as a crash would: the second tick or a
    # later one, once both replicas have been deciding.
    running = wait_until(
        lambda: [t for t in ticks_of(schedule, environment)[1:] if t.state == "running"],
        60,
        "a second tick running",
        every=0.2,  # each look reads the ticks through a new connection
    )
    victim = first if str(first.pid) in str(running[-1].replica) else second
    survivor = second if victim is first else first
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    killed_at = datetime.now(UTC)

    def survived() -> bool:
        """The killed run's tick ended failed (stale), and two ticks since ran to the end."""
        mine = ticks_of(schedule, environment)
        ran = [t for t in mine if t.at > killed_at and t.state == "ok"]
        return len(mine) >= 6 and len(ran) >= 2 and any(t.state == "failed" for t in mine)

    wait_until(survived, 60, "the survivor's runs after the kill", every=0.2)
    survivor.send_signal(signal.SIGTERM)
    survivor.wait(timeout=60)

    mine = [t for t in ticks(workflows, **environment) if t["schedule"].endswith(f"/{name}")]
    times = [datetime.fromisoformat(t["at"]) for t in mine]
    # One row per tick (the table's key): never two runs of one tick. None missed: every
    # 3 s from the first tick to the last has its row, through the kill.
    assert len(times) == len(set(times)) >= 5
    assert all(b - a == timedelta(seconds=3) for a, b in itertools.pairwise(times))
    states = [t["state"] for t in mine]
    killed = [t for t in mine if str(victim.pid) in (t["replica"] or "") and t["state"] == "failed"]
    assert len(killed) == 1 and "stopped while it ran" in killed[0]["reason"]
    # The rest ran (1.5 s each, within the 3 s) on one replica or the other, but the last,
    # which the survivor's stop may have cancelled: N ticks, N runs.
    assert set(states) <= {"ok", "failed", "cancelled"}, mine
    assert states.count("ok") >= len(mine) - 2 and states.count("failed") == 1
    assert any(str(survivor.pid) in (t["replica"] or "") for t in mine if t["state"] == "ok")
    ran = [t["run_id"] for t in mine if t["state"] == "ok"]
    assert len(ran) == len(set(ran)) and all(ran)
    runs = traced_cli(workflows, "history", "--limit", "500", "--json", **environment)
    requests = [run["run_id"] for run in json.loads(runs.stdout)]
    assert set(ran) <= set(requests)


@pytest.mark.integration
def test_schedule_list_next_and_trigger_from_the_command_line(tmp_path: Path) -> None:
    workflows = traced_workflows(
        tmp_path,
        {"nap": ("naps", {"seconds": 0.01})},
        [{"name": "night", "cron": "30 2 * * *", "timezone": "Europe/Berlin"}],
    )

    listed = traced_cli(workflows, "schedule", "list", "--json")
    upcoming = traced_cli(workflows, "schedule", "next", "night", "--count", "3", "--json")
    triggered = traced_cli(workflows, "schedule", "trigger", "traced/night", "--json")

    assert listed.returncode == upcoming.returncode == 0, listed.stderr + upcoming.stderr
    [schedule] = json.loads(listed.stdout)
    assert schedule["schedule"] == "traced/night" and schedule["timezone"] == "Europe/Berlin"
    fires = [datetime.fromisoformat(fire["local"]) for fire in json.loads(upcoming.stdout)]
    assert [fire.strftime("%H:%M") for fire in fires] == ["02:30"] * 3
    assert fires[1] - fires[0] in (timedelta(hours=23), timedelta(hours=24), timedelta(hours=25))
    assert triggered.returncode == 0, triggered.stderr
    run = json.loads(triggered.stdout)
    assert "(schedule traced/night, triggered " in run["request"]
    [tick] = ticks(workflows)
    assert (tick["state"], tick["manual"], tick["run_id"]) == ("ok", True, run["run_id"])
    unknown = traced_cli(workflows, "schedule", "next", "nightly")
    assert (
        unknown.returncode == 2 and "no schedule 'nightly'; known: traced/night" in unknown.stderr
    )


@pytest.mark.integration
def test_a_schedule_faster_than_the_scheduler_looks_is_refused_before_serving(
    tmp_path: Path,
) -> None:
    workflows = traced_workflows(
        tmp_path, {"nap": ("naps", {"seconds": 0.01})}, [{"name": "busy", "cron": "* * * * * */2"}]
    )

    served = traced_cli(workflows, "serve", "--port", str(free_port()))

    assert served.returncode == 2
    assert served.stderr.count("\n") == 1
    assert "schedule traced/busy fires every 2 s, more often than the scheduler" in served.stderr
    assert "Serving on" not in served.stdout


@pytest.mark.integration
def test_serve_says_which_schedules_are_gone_from_config_yaml(
    tmp_path: Path, stopped_at_the_end: list[subprocess.Popen[bytes]]
) -> None:
    schedule = [{"name": "old", "cron": "0 3 * * *"}]
    workflows = traced_workflows(tmp_path, {"nap": ("naps", {"seconds": 0.01})}, schedule)
    assert traced_cli(workflows, "schedule", "trigger", "old").returncode == 0
    config = workflows / "traced" / "config.yaml"
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    del data["schedules"]
    config.write_text(yaml.safe_dump(data), encoding="utf-8")

    server, _ = replica(workflows, tmp_path / "serve.log", {})
    stopped_at_the_end.append(server)
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)

    log = (tmp_path / "serve.log").read_text()
    assert "note: schedule(s) traced/old are in no config.yaml now" in log
    [tick] = ticks(workflows)
    assert tick["schedule"] == "traced/old" and tick["state"] == "ok"  # what ran stays


@pytest.mark.integration
def test_a_timezone_zoneinfo_cannot_open_is_one_line_from_schedule_list_and_run(
    tmp_path: Path,
) -> None:
    # zoneinfo looks a name up as a file: a 300-character name was an OSError traceback
    # ("File name too long") from every command that read config.yaml.
    workflows = traced_workflows(
        tmp_path,
        {"nap": ("naps", {"seconds": 0.01})},
        [{"name": "nightly", "cron": "0 3 * * *", "timezone": "A" * 300}],
    )

    for command in (["schedule", "list"], ["run"]):
        done = traced_cli(workflows, *command)

        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert "schedules[0].timezone must be an IANA timezone name" in done.stderr


@pytest.mark.integration
def test_a_replica_stopped_with_sigterm_mid_run_records_its_tick_with_the_run(
    tmp_path: Path, stopped_at_the_end: list[subprocess.Popen[bytes]]
) -> None:
    # The run was stopped and stored (cancelled) under its id, but its tick said cancelled
    # (or failed) with no run id: which run had it been?
    name = f"term-{uuid.uuid4().hex[:12]}"
    workflows = traced_workflows(
        tmp_path,
        {"nap": ("naps", {"seconds": 6})},
        [{"name": name, "cron": EVERY_3_SECONDS, "on_missed": "skip"}],
    )
    environment = {f"{ENV_PREFIX}SCHEDULER": FAST_SCHEDULER}
    server, _ = replica(workflows, tmp_path / "serve.log", environment)
    stopped_at_the_end.append(server)
    wait_until(
        lambda: [t for t in ticks(workflows, **environment) if t["state"] == "running"],
        20,
        "a tick running",
        every=0.2,
    )
    time.sleep(1)  # mid-run: the nap lasts 6 s

    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)

    [tick] = [t for t in ticks(workflows, **environment) if t["state"] != "skipped"]
    assert tick["state"] == "cancelled" and tick["run_id"], tick
    assert tick["reason"] == "the server stopped while it ran"
    shown = traced_cli(workflows, "history", "show", tick["run_id"], "--json", **environment)
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert (run["run_id"], run["status"]) == (tick["run_id"], "CANCELLED"), run


def test_a_replica_whose_clock_runs_two_hours_ahead_decides_no_tick_and_silences_no_one(
    tmp_path: Path,
    postgres_history: dict[str, str],
    stopped_at_the_end: list[subprocess.Popen[bytes]],
) -> None:
    # Joining the history for a while, it recorded every tick up to its own "now" (2 h ahead)
    # as missed; after it left, the healthy replica fired nothing for 2 h.
    name = f"skew-{uuid.uuid4().hex[:12]}"
    workflows = traced_workflows(
        tmp_path,
        {"nap": ("naps", {"seconds": 0.2})},
        [{"name": name, "cron": EVERY_3_SECONDS, "on_missed": "skip"}],
    )
    environment = {**postgres_history, f"{ENV_PREFIX}SCHEDULER": FAST_SCHEDULER}
    healthy, _ = replica(workflows, tmp_path / "healthy.log", environment)
    stopped_at_the_end.append(healthy)
    ahead_environment = {**environment, CLOCK_OFFSET_ENV: "7200"}
    ahead, _ = replica(workflows, tmp_path / "ahead.log", ahead_environment)
    stopped_at_the_end.append(ahead)
    joined = datetime.now(UTC)
    schedule = f"traced/{name}"

    def refused_while_the_healthy_one_decided() -> bool:
        refusal = "decides no ticks until they agree" in (tmp_path / "ahead.log").read_text()
        return refusal and len([t for t in ticks_of(schedule, environment) if t.at > joined]) >= 3

    wait_until(
        refused_while_the_healthy_one_decided, 90, "three ticks with both replicas up", every=0.2
    )
    ahead.send_signal(signal.SIGTERM)
    ahead.wait(timeout=60)
    left = datetime.now(UTC)
    wait_until(
        lambda: len([t for t in ticks_of(schedule, environment) if t.at > left]) >= 3,
        60,
        "three ticks of the healthy replica alone",
        every=0.2,
    )
    healthy.send_signal(signal.SIGTERM)
    healthy.wait(timeout=60)
    stopped = datetime.now(UTC)

    engine = sqlalchemy.create_engine(postgres_history[DATABASE_URL_ENV])
    store = TickStore(engine)
    mine = list(reversed(store.rows(schedule=f"traced/{name}")))
    # Gone from the history others share: ticks ahead of time, had there been any, would
    # come first in their `history ticks`.
    with engine.begin() as connection:
        connection.execute(store.table.delete().where(store.table.c.schedule == f"traced/{name}"))
    engine.dispose()
    assert mine, (tmp_path / "healthy.log").read_text()
    assert all(str(healthy.pid) in str(tick.replica) for tick in mine), mine
    assert all(tick.at <= stopped for tick in mine), mine[-1]
    # Every 3 s from the first tick to the last, through the other's stay and after it.
    assert all(b.at - a.at == timedelta(seconds=3) for a, b in itertools.pairwise(mine)), mine
    assert stopped - mine[-1].at < timedelta(seconds=6)
    assert {tick.state for tick in mine[:-1]} == {"ok"}, mine
    said = [line for line in (tmp_path / "ahead.log").read_text().splitlines() if "clock" in line]
    assert said == [
        "scheduler: this replica's clock is 7200 s ahead of the history database's: it decides "
        "no ticks until they agree within scheduler.poll_seconds (0.5 s); set this machine's "
        "clock right (NTP)"
    ]
