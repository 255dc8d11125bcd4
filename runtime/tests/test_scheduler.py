"""Schedules (schedules.py) and the scheduler (scheduler.py), with the clock controlled: each
test moves a clock of its own and polls, nothing sleeps for a tick. The runs are stand-ins
whose end each test decides, over a real ticks table (SQLite, and PostgreSQL when
TEST_DATABASE_URL is set); the real runs of real `serve` replicas are test_schedule_serve.py's.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy

from parallel_workflow_runtime._core.config import ConfigError, load_config
from parallel_workflow_runtime._core.schedules import OnMissed, Overlap, Schedule
from parallel_workflow_runtime._schedule.decisions import CATCHING_UP
from parallel_workflow_runtime._schedule.scheduler import Scheduler
from parallel_workflow_runtime._store.migrate import migrate
from parallel_workflow_runtime._store.ticks import RUNNING, SKIPPED, Tick, TickStore

from .conftest import WORKFLOWS

START = datetime(2027, 1, 4, 12, 0, 0, tzinfo=UTC)
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TickStore]:
    if request.param == "sqlite":
        engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'ticks.sqlite'}")
        ticks = TickStore(engine)
        migrate(engine)
        yield ticks
        engine.dispose()
        return
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if not url:
        pytest.skip("no PostgreSQL server: set TEST_DATABASE_URL to run this against one")
    # A database of this test's own (the test role may create them): other tests share the
    # server's, its ticks table among them.
    name = f"ticks_{uuid.uuid4().hex[:12]}"
    server = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    engine = sqlalchemy.create_engine(sqlalchemy.make_url(url).set(database=name))
    ticks = TickStore(engine)
    migrate(engine)
    yield ticks
    engine.dispose()
    with server.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE {name}")
    server.dispose()


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def move(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Runs:
    """Stand-in runs: each waits until the test ends it (or ends at once if `instant`)."""

    instant: bool = True
    started: list[Tick] = field(default_factory=list)
    ends: dict[datetime, asyncio.Event] = field(default_factory=dict)

    async def __call__(
        self, schedule: Schedule, tick: Tick, run_id: str
    ) -> tuple[str | None, bool]:
        self.started.append(tick)
        self.ends[tick.at] = asyncio.Event()
        if self.instant:
            self.ends[tick.at].set()
        await self.ends[tick.at].wait()
        return run_id, True

    def end_all(self) -> None:
        """End the runs under way, and any that starts from now on at once."""
        self.instant = True
        for event in self.ends.values():
            event.set()


async def begun(store: TickStore, runs: Runs) -> None:
    """Until the run of each tick the store holds as running has begun (runs.started): the
    scheduler starts each in a task of its own, which a poll does not wait for."""
    async with asyncio.timeout(30):
        while {t.at for t in store.rows(states=(RUNNING,))} - {t.at for t in runs.started}:
            await asyncio.sleep(0.001)


def scheduler(
    store: TickStore, schedule: Schedule, clock: Clock, runs: Runs, **options: Any
) -> Scheduler:
    return Scheduler(
        store=store,
        schedules=[schedule],
        start_run=runs,
        clock=clock,
        database_clock=clock,  # the database's clock, and this replica's agrees with it
        poll_seconds=1.0,
        **options,
    )


def every_minute(**options: Any) -> Schedule:
    return Schedule(workflow_id="w", name="m", cron="* * * * *", **options)


def states(store: TickStore) -> list[tuple[str, str]]:
    """(minute:second of the tick, its state), oldest first."""
    return [(tick.at.strftime("%M:%S"), tick.state) for tick in reversed(store.rows())]


# --- fire times -------------------------------------------------------------------------

DST = [
    # zone, from, the fire times of "30 2 * * *" around the change, local
    (
        "Europe/Berlin",
        datetime(2027, 3, 27, 0, 0),
        ["2027-03-27 02:30 +0100", "2027-03-28 03:00 +0200", "2027-03-29 02:30 +0200"],
    ),
    (
        "Europe/Berlin",
        datetime(2027, 10, 30, 0, 0),
        ["2027-10-30 02:30 +0200", "2027-10-31 02:30 +0200", "2027-11-01 02:30 +0100"],
    ),
    (
        "America/New_York",
        datetime(2027, 3, 13, 0, 0),
        ["2027-03-13 02:30 -0500", "2027-03-14 03:00 -0400", "2027-03-15 02:30 -0400"],
    ),
    (
        "America/New_York",
        datetime(2027, 11, 6, 0, 0),
        ["2027-11-06 02:30 -0400", "2027-11-07 02:30 -0500", "2027-11-08 02:30 -0500"],
    ),
]


@pytest.mark.parametrize(("zone", "start", "expected"), DST, ids=["berlin-spring",
                         "berlin-fall", "new-york-spring", "new-york-fall"])  # fmt: skip
def test_a_0230_schedule_fires_once_a_day_across_daylight_saving_changes(
    zone: str, start: datetime, expected: list[str]
) -> None:
    schedule = Schedule(workflow_id="w", name="night", cron="30 2 * * *", timezone=zone)
    after = start.replace(tzinfo=ZoneInfo(zone))

    fired = schedule.ticks_between(after, after + timedelta(days=3))

    assert [tick.strftime("%Y-%m-%d %H:%M %z") for tick in fired] == expected


async def test_a_daylight_saving_day_is_one_run_when_the_clock_polls_through_it(
    store: TickStore,
) -> None:
    # Berlin's fall-back night polled minute by minute: 02:30 happens twice, one run.
    zone = ZoneInfo("Europe/Berlin")
    clock = Clock(datetime(2027, 10, 31, 1, 0, tzinfo=zone).astimezone(UTC))
    runs = Runs()
    scheduling = scheduler(
        store, Schedule(workflow_id="w", name="n", cron="30 2 * * *", timezone="Europe/Berlin"),
        clock, runs,
    )  # fmt: skip
    for _ in range(4 * 60):
        await scheduling.poll()
        clock.move(minutes=1)
    await scheduling.wait()

    assert [tick.at.astimezone(zone).strftime("%H:%M %z") for tick in runs.started] == [
        "02:30 +0200"
    ]


# --- missed ticks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_missed", "expected"),
    [
        # down from 12:30 to 15:30: the ticks of 13:00, 14:00 and 15:00 were missed
        ("skip", [("12:00", "ok"), ("13:00", SKIPPED), ("14:00", SKIPPED), ("15:00", SKIPPED)]),
        ("run_once", [("12:00", "ok"), ("13:00", SKIPPED), ("14:00", SKIPPED), ("15:00", "ok")]),
        ("catch_up", [("12:00", "ok"), ("13:00", "ok"), ("14:00", "ok"), ("15:00", "ok")]),
    ],
)
async def test_ticks_missed_while_no_server_ran_follow_on_missed(
    store: TickStore, on_missed: OnMissed, expected: list[tuple[str, str]]
) -> None:
    hourly = Schedule(workflow_id="w", name="h", cron="0 * * * *", on_missed=on_missed,
                      overlap="allow")  # fmt: skip
    clock = Clock(START - timedelta(seconds=5))
    runs = Runs()
    first = scheduler(store, hourly, clock, runs)
    await first.poll()  # the server starts at 11:59:55
    clock.move(seconds=5)
    await first.poll()  # 12:00: the tick runs
    await first.wait()
    clock.move(minutes=30)  # the server stops at 12:30, starts again at 15:30
    clock.move(hours=3)
    again = scheduler(store, hourly, clock, runs)

    await again.poll()
    await again.wait()

    got = [(tick.at.strftime("%H:%M"), tick.state) for tick in reversed(store.rows())]
    assert got == expected
    skipped = [tick for tick in store.rows() if tick.state == SKIPPED]
    assert all(tick.reason and tick.reason.startswith("missed") for tick in skipped)


# --- overlap ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overlap", "expected"),
    [
        # a run of 150 s on a schedule of every minute: ticks at 00, 01, 02 (minutes)
        ("skip", [("00:00", "ok"), ("01:00", SKIPPED), ("02:00", SKIPPED), ("03:00", "ok")]),
        ("queue", [("00:00", "ok"), ("01:00", "ok"), ("02:00", "ok"), ("03:00", "ok")]),
        ("allow", [("00:00", "ok"), ("01:00", "ok"), ("02:00", "ok"), ("03:00", "ok")]),
    ],
)
async def test_a_run_longer_than_the_interval_follows_overlap(
    store: TickStore, overlap: Overlap, expected: list[tuple[str, str]]
) -> None:
    clock = Clock(START - timedelta(seconds=1))
    runs = Runs(instant=False)
    scheduling = scheduler(store, every_minute(overlap=overlap), clock, runs)
    await scheduling.poll()
    at_most_at_once = 0
    for second in range(0, 200):
        clock.now = START + timedelta(seconds=second)
        await scheduling.poll()
        await begun(store, runs)  # each run the poll started, in a task of its own
        running = [tick for tick in runs.started if not runs.ends[tick.at].is_set()]
        at_most_at_once = max(at_most_at_once, len(running))
        ending = []
        for tick in running:
            if clock.now - tick.decided_at >= timedelta(seconds=150):  # type: ignore[operator]
                ending.append(scheduling.runs[(tick.schedule, tick.at)])
                runs.ends[tick.at].set()
        if ending:  # each ended run records its end (and starts a queued tick) before the next
            await asyncio.wait(ending)
    runs.end_all()
    await scheduling.wait()
    for _ in range(3):  # the queued ticks start one after another, each once the last ended
        clock.move(seconds=1)
        await scheduling.poll()
        await scheduling.wait()

    assert states(store)[:4] == expected
    assert at_most_at_once == (1 if overlap != "allow" else 3)
    overlapped = [t for t in store.rows() if t.reason and t.reason.startswith("overlap")]
    assert len(overlapped) == (2 if overlap == "skip" else 0)


async def test_a_run_longer_than_agnos_lock_timeout_is_never_fired_again(
    store: TickStore,
) -> None:
    # Agno's scheduler takes a claim older than 300 s as stale and fires it again: here a run
    # says it is alive, so however long it runs, its tick is not another run.
    clock = Clock(START - timedelta(seconds=1))
    runs = Runs(instant=False)
    daily = Schedule(workflow_id="w", name="d", cron="0 12 * * *", overlap="allow")
    scheduling = scheduler(store, daily, clock, runs, stale_seconds=30)
    await scheduling.poll()
    for minute in range(0, 20):  # 20 minutes of a run that goes on
        clock.now = START + timedelta(minutes=minute)
        await scheduling.poll()  # which renews its heartbeat, on the moved clock

    assert len(runs.started) == 1
    [tick] = store.rows()
    assert tick.state == RUNNING
    runs.end_all()
    await scheduling.wait()
    assert store.rows()[0].state == "ok"


async def test_a_replica_that_died_mid_run_frees_its_schedule(store: TickStore) -> None:
    clock = Clock(START - timedelta(seconds=1))
    runs = Runs(instant=False)
    dead = scheduler(store, every_minute(), clock, runs, replica="dead")
    await dead.poll()
    clock.now = START
    await dead.poll()  # it starts the 12:00 run, then is killed: its tasks go
    killed = list(dead.runs.values())
    for task in killed:
        task.cancel()
    await asyncio.gather(*killed, return_exceptions=True)  # each records its end, then we undo it
    store.update(store.rows()[0], state=RUNNING, heartbeat_at=START)  # as SIGKILL leaves it
    alive = scheduler(store, every_minute(), clock, runs, replica="alive", stale_seconds=30)
    alive.started = START

    clock.now = START + timedelta(minutes=1)
    await alive.poll()

    ticks = {tick.at.strftime("%H:%M"): tick for tick in store.rows()}
    assert ticks["12:00"].state == "failed" and "(dead) stopped" in str(ticks["12:00"].reason)
    assert ticks["12:01"].state == RUNNING and ticks["12:01"].replica == "alive"
    runs.end_all()
    await alive.wait()


async def test_two_replicas_polling_the_same_ticks_fire_each_once(store: TickStore) -> None:
    clock = Clock(START - timedelta(seconds=1))
    runs = Runs()
    schedule = Schedule(workflow_id="w", name="s", cron="* * * * * */5", overlap="allow")
    replicas = [scheduler(store, schedule, clock, runs, replica=f"r{n}") for n in range(2)]
    for replica in replicas:
        await replica.poll()
    for second in range(0, 60):
        clock.now = START + timedelta(seconds=second)
        await asyncio.gather(*(replica.poll() for replica in replicas))
    for replica in replicas:
        await replica.wait()

    fired = [tick.at for tick in runs.started]
    assert len(fired) == len(set(fired)) == 12  # every 5 s for a minute, once each
    assert {tick.replica for tick in store.rows()} <= {"r0", "r1"}


async def test_trigger_runs_now_under_the_overlap_policy(store: TickStore) -> None:
    clock = Clock(START)
    runs = Runs(instant=False)
    scheduling = scheduler(store, every_minute(overlap="skip"), clock, runs)
    first = asyncio.get_running_loop().create_task(scheduling.trigger(every_minute()))
    while not runs.started:  # its run has begun
        await asyncio.sleep(0.01)
    clock.move(seconds=1)

    second = await scheduling.trigger(every_minute(overlap="skip"))

    assert second.state == SKIPPED and second.manual
    runs.end_all()
    assert (await first).state == RUNNING
    assert [tick.state for tick in store.rows()] == [SKIPPED, "ok"]


EVERY_10_SECONDS = "* * * * * */10"  # croniter: a sixth field, seconds


@pytest.mark.parametrize("overlap", ["skip", "queue", "allow"])
async def test_catch_up_runs_every_missed_tick_in_order_whatever_overlap_says(
    store: TickStore, overlap: Overlap
) -> None:
    # Both replicas down for 60 s: under overlap skip, of the 7 ticks due when one came back,
    # the oldest ran and the other 6 were skipped as overlapping it, and the next on-time
    # tick too.
    schedule = Schedule(workflow_id="w", name="c", cron=EVERY_10_SECONDS,
                        on_missed="catch_up", overlap=overlap)  # fmt: skip
    clock = Clock(START - timedelta(seconds=1))
    runs = Runs()
    before = scheduler(store, schedule, clock, runs)
    await before.poll()
    clock.now = START
    await before.poll()  # 12:00:00 runs; then both replicas are down from 12:00:05 to 12:01:05
    await before.wait()
    clock.now = START + timedelta(seconds=65)
    runs.instant = False
    again = scheduler(store, schedule, clock, runs)
    at_most_at_once = 0
    for _ in range(60):  # each run takes 2 s
        await again.poll()
        await asyncio.sleep(0)
        running = [tick for tick in runs.started if not runs.ends[tick.at].is_set()]
        at_most_at_once = max(at_most_at_once, len(running))
        ending = []
        for tick in running:
            if clock.now - tick.decided_at >= timedelta(seconds=2):  # type: ignore[operator]
                ending.append(again.runs[(tick.schedule, tick.at)])
                runs.ends[tick.at].set()
        if ending:  # each ended run records its end and starts the next queued tick
            await asyncio.wait(ending)
        await asyncio.sleep(0)  # a run started just now begins (runs.started)
        clock.move(seconds=1)
    runs.end_all()
    await again.wait()

    ticks = {tick.at.strftime("%M:%S"): tick for tick in store.rows()}
    caught_up = ["00:10", "00:20", "00:30", "00:40", "00:50", "01:00"]
    assert [ticks[at].state for at in caught_up] == ["ok"] * 6
    assert all(ticks[at].reason == CATCHING_UP for at in caught_up)
    started = [tick.at.strftime("%M:%S") for tick in runs.started]
    assert [at for at in started if at in caught_up] == caught_up  # oldest first
    if overlap != "allow":  # one run at a time: the catch-up's, then the ticks after it
        assert at_most_at_once == 1
    # The ticks that came while it caught up follow overlap: 01:10 came while the catch-up's
    # runs (2 s each, from 01:05) still ran.
    expected = {"skip": SKIPPED, "queue": "ok", "allow": "ok"}[overlap]
    assert ticks["01:10"].state == expected, ticks["01:10"]
    assert ticks["01:20"].state == "ok"
    if overlap == "skip":
        assert "catching up" in str(ticks["01:10"].reason)


async def test_catch_up_keeps_the_newest_max_catch_up_ticks(store: TickStore) -> None:
    schedule = Schedule(workflow_id="w", name="c", cron=EVERY_10_SECONDS,
                        on_missed="catch_up", max_catch_up=3)  # fmt: skip
    clock = Clock(START - timedelta(seconds=1))
    runs = Runs()
    first = scheduler(store, schedule, clock, runs)
    await first.poll()
    clock.now = START
    await first.poll()
    await first.wait()
    clock.now = START + timedelta(minutes=2)  # 11 ticks missed, 01:30 to 02:00 on time
    again = scheduler(store, schedule, clock, runs)

    await again.poll()
    await again.wait()

    ok = [tick.at.strftime("%M:%S") for tick in reversed(store.rows()) if tick.state == "ok"]
    assert ok == ["00:00", "01:00", "01:10", "01:20", "01:30", "01:40", "01:50", "02:00"]
    skipped = [tick for tick in store.rows() if tick.state == SKIPPED]
    assert len(skipped) == 5 and all("max_catch_up 3" in str(t.reason) for t in skipped)


# --- clocks -------------------------------------------------------------------------------


async def test_a_replica_whose_clock_is_two_hours_ahead_decides_nothing(
    store: TickStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Deciding by its own clock, it recorded every tick up to its "now" as missed, 2 h
    # ahead; then the healthy replica found those ticks decided and fired nothing for 2 h.
    schedule = Schedule(workflow_id="w", name="s", cron=EVERY_10_SECONDS, on_missed="skip")
    database = Clock(START - timedelta(seconds=1))
    runs = Runs()
    healthy = scheduler(store, schedule, database, runs, replica="healthy")
    ahead = Scheduler(
        store=store, schedules=[schedule], start_run=runs, poll_seconds=1.0, replica="ahead",
        clock=lambda: database.now + timedelta(hours=2), database_clock=database,
    )  # fmt: skip
    for second in range(-1, 120):  # together for 30 s, then the healthy one alone
        database.now = START + timedelta(seconds=second)
        await healthy.poll()
        if second < 30:
            await ahead.poll()
        await healthy.wait()  # each run takes less than a second

    ticks = list(reversed(store.rows()))
    assert [tick.at for tick in ticks] == [START + timedelta(seconds=s) for s in range(0, 120, 10)]
    assert {(tick.state, tick.replica) for tick in ticks} == {("ok", "healthy")}
    warnings = [r.getMessage() for r in caplog.records if "clock" in r.getMessage()]
    assert warnings == [
        "scheduler: this replica's clock is 7200 s ahead of the history database's: it "
        "decides no ticks until they agree within scheduler.poll_seconds (1 s); set this "
        "machine's clock right (NTP)"
    ]


async def test_ticks_recorded_ahead_of_the_database_do_not_silence_the_schedule(
    store: TickStore,
) -> None:
    # What a replica whose clock ran 2 h ahead left, before replicas checked their clocks:
    # each tick up to its "now" recorded as missed.
    schedule = Schedule(workflow_id="w", name="s", cron=EVERY_10_SECONDS, on_missed="skip")
    with store.engine.begin() as connection:
        for second in range(0, 7200, 10):
            at = START + timedelta(seconds=second)
            store.add(connection, Tick(schedule.key, at, SKIPPED, reason="missed",
                      replica="ahead", decided_at=START + timedelta(hours=2)))  # fmt: skip
    clock = Clock(START - timedelta(seconds=1))
    runs = Runs()
    healthy = scheduler(store, schedule, clock, runs, replica="healthy")

    for second in range(-1, 60):
        clock.now = START + timedelta(seconds=second)
        await healthy.poll()
        await healthy.wait()  # each run takes less than a second

    assert [tick.at.strftime("%M:%S") for tick in runs.started] == [
        "00:00", "00:10", "00:20", "00:30", "00:40", "00:50"
    ]  # fmt: skip


# --- config.yaml --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "x", "cron": "61 * * * *"}, "schedules[0].cron must be a cron expression"),
        ({"name": "x", "cron": "* * *"}, "five fields"),
        ({"name": "x", "cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "IANA timezone"),
        # zoneinfo opens a file by that name: too long a name, or a folder of zones, was an
        # OSError traceback ("File name too long", "Is a directory")
        ({"name": "x", "cron": "0 3 * * *", "timezone": "A" * 300}, "schedules[0].timezone"),
        ({"name": "x", "cron": "0 3 * * *", "timezone": "Europe"}, "IANA timezone"),
        ({"name": "x", "cron": "0 3 * * *", "overlap": "sometimes"}, "skip, queue, allow"),
        ({"name": "x", "cron": "0 3 * * *", "on_missed": "later"}, "run_once, catch_up"),
        ({"name": "a b", "cron": "0 3 * * *"}, "schedules[0].name must be a name"),
    ],
)
def test_a_malformed_schedule_is_a_one_line_config_error(
    tmp_path: Path, entry: dict[str, Any], message: str
) -> None:
    import yaml

    config = next(iter(WORKFLOWS.values())).config.path
    data = yaml.safe_load(config.read_text("utf-8"))
    data["schedules"] = [entry]
    broken = tmp_path / "config.yaml"
    broken.write_text(yaml.safe_dump(data), encoding="utf-8")

    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        load_config(broken)
    assert "\n" not in str(raised.value)
