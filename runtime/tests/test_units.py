"""The unit tier's pure functions, each on its own in this process: masking credentials,
describing a bad config.yaml, retry backoff, a schedule's tick decisions and a cursor claim's
admission (on an SQLite file). The integration tests show the same behaviour end to end."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from pydantic import ValidationError

from parallel_workflow_runtime._core.config import ConfigFile
from parallel_workflow_runtime._core.config_errors import describe
from parallel_workflow_runtime._core.masking import masked, masked_text
from parallel_workflow_runtime._core.schedules import Schedule
from parallel_workflow_runtime._execution.source_limits import backoff_seconds
from parallel_workflow_runtime._schedule.decisions import by_overlap, missed_or_run
from parallel_workflow_runtime._store import cursors
from parallel_workflow_runtime._store.cursor_session import WAIT_SECONDS, wait_limit
from parallel_workflow_runtime._store.cursors import CursorStore, Holder
from parallel_workflow_runtime._store.migrate import migrate
from parallel_workflow_runtime._store.ticks import QUEUED, RUNNING, SKIPPED, Tick

# --- masking ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/runs", "postgresql://app:***@db:5432/runs"),
        (
            "postgresql://db/runs?user=app&password=s3cret",
            "postgresql://db/runs?user=app&password=***",
        ),
        ("postgresql://app:p@ss@db/runs", "postgresql://app:***@db/runs"),  # an @ in it
        ("sqlite:////var/data/history.sqlite", "sqlite:////var/data/history.sqlite"),
        ("https://api.example.com/v1/?page=2", "https://api.example.com/v1/?page=2"),
    ],
)
def test_a_url_is_shown_without_any_password_it_carries(url: str, shown: str) -> None:
    assert masked(url) == shown


def test_every_url_in_a_message_is_masked_and_the_rest_kept() -> None:
    message = "could not reach postgresql://a:one@h1/x, then mysql://b:two@h2/y (timeout)"

    assert masked_text(message) == (
        "could not reach postgresql://a:***@h1/x, then mysql://b:***@h2/y (timeout)"
    )


# --- describing a bad config.yaml -----------------------------------------------------------

VALID: dict[str, Any] = {
    "workflow": {"name": "Sales", "workflow_id": "sales"},
    "sources": [{"name": "Orders", "id": "orders"}],
}


def first_problem(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        ConfigFile.model_validate(data)
    return describe(caught.value, ConfigFile)


def test_a_wrong_value_is_one_sentence_that_names_where_it_is_and_the_rule() -> None:
    data = {**VALID, "sources": [{**VALID["sources"][0], "retries": "twice"}]}

    problem = first_problem(data)

    assert problem.startswith("sources[0].retries must be ")
    assert "got 'twice'" in problem and "\n" not in problem


def test_a_missing_and_an_unknown_key_are_named() -> None:
    assert "sources" in first_problem({"workflow": VALID["workflow"]})
    unknown = first_problem({**VALID, "workflow": {**VALID["workflow"], "colour": "red"}})
    assert "workflow.colour" in unknown


# --- retry backoff -------------------------------------------------------------------------


def test_backoff_doubles_per_attempt_within_a_random_half_and_stops_at_its_ceiling() -> None:
    for attempt, longest in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0)]:
        pauses = [backoff_seconds(0.5, attempt) for _ in range(100)]
        assert all(longest / 2 <= pause <= longest for pause in pauses), (attempt, pauses)
        assert len(set(pauses)) > 1  # jittered: sources failing together retry apart
    assert all(backoff_seconds(0.5, 60, ceiling=3.0) <= 3.0 for _ in range(100))
    assert backoff_seconds(0.5, 10_000) > 0  # no overflow, however many attempts


# --- a schedule's tick decisions -------------------------------------------------------------

START = datetime(2027, 1, 4, 12, 0, tzinfo=UTC)
LATE = timedelta(seconds=35)


def every_minute(**options: object) -> Schedule:
    return Schedule(workflow_id="w", name="m", cron="* * * * *", **options)  # type: ignore[arg-type]


def due(minutes: int) -> list[datetime]:
    return [START + timedelta(minutes=minute) for minute in range(minutes)]


@pytest.mark.parametrize(
    ("on_missed", "skipped", "runs", "catching_up"),
    [
        # 10 ticks due, the last on time (now is 12:09:10): 9 missed
        ("skip", 9, [9], False),
        ("run_once", 9, [9], False),  # one run, at the newest tick
        ("catch_up", 6, [6, 7, 8, 9], True),  # the newest max_catch_up (3) missed, in order
    ],
)
def test_missed_ticks_follow_on_missed(
    on_missed: str, skipped: int, runs: list[int], catching_up: bool
) -> None:
    schedule = every_minute(on_missed=on_missed, max_catch_up=3)
    now = START + timedelta(minutes=9, seconds=10)

    sorted_out = missed_or_run(schedule, due(10), now, LATE)

    assert len(sorted_out.skipped) == skipped
    assert all(why.startswith("missed: no replica was serving") for _, why in sorted_out.skipped)
    assert sorted_out.runs == [START + timedelta(minutes=minute) for minute in runs]
    assert sorted_out.catching_up is catching_up


def test_ticks_on_time_all_run_whatever_on_missed_says() -> None:
    for on_missed in ("skip", "run_once", "catch_up"):
        now = START + timedelta(seconds=10)
        sorted_out = missed_or_run(every_minute(on_missed=on_missed), due(1), now, LATE)
        assert (sorted_out.skipped, sorted_out.runs, sorted_out.catching_up) == ([], [START], False)


def test_a_tick_while_another_runs_follows_overlap() -> None:
    busy = Tick(schedule="w/m", at=START, state=RUNNING, replica="host:1:abc")

    assert by_overlap("allow", busy) == (RUNNING, None)
    assert by_overlap("queue", busy) == (QUEUED, None)
    state, reason = by_overlap("skip", busy)
    assert state == SKIPPED and reason is not None and START.isoformat() in reason
    for overlap in ("allow", "queue", "skip"):
        assert by_overlap(overlap, None) == (RUNNING, None)


# --- a cursor claim's admission --------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CursorStore]:
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'history.sqlite'}")
    migrate(engine)
    yield CursorStore(engine)
    engine.dispose()


def test_a_run_takes_all_its_cursors_or_none_and_is_told_who_is_in_the_way(
    store: CursorStore,
) -> None:
    assert store.claim_all("w", ["a", "b"], "run-1") == {"a": None, "b": None}

    in_the_way = store.claim_all("w", ["c", "b"], "run-2")

    assert isinstance(in_the_way, Holder)
    assert (in_the_way.source_id, in_the_way.run_id) == ("b", "run-1")
    assert 0 < in_the_way.seconds_left <= cursors.CLAIM_SECONDS
    # run-2 took nothing, not even `c`, which was free: a third run takes it at once.
    assert store.claim_all("w", ["c"], "run-3") == {"c": None}
    # The holder asking again is not in its own way.
    assert store.claim_all("w", ["a", "b"], "run-1") == {"a": None, "b": None}


def test_a_source_waits_for_a_claim_at_least_as_long_as_a_claim_lasts() -> None:
    at_least = cursors.CLAIM_SECONDS + 2 * WAIT_SECONDS

    assert wait_limit(None) is None  # no timeout: no limit
    assert wait_limit(1.0) == at_least  # a killed run's claim always runs out first
    assert wait_limit(at_least + 100) == at_least + 100
    assert wait_limit(0.0) == at_least
