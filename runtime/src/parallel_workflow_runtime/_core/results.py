"""What a source returns, how its run went, and how a run's results add up."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict, computed_field, field_validator

from parallel_workflow_runtime._core.config import AGGREGATION_STEP, Source

if TYPE_CHECKING:  # Agno is imported by the steps; a source's worker process needs none of it
    from agno.workflow.types import StepInput


# Caps on the text that comes from outside the engine (README.md, "Limits on text"): a
# longer error, warning or request is cut, and ends with a note of its whole length.
MAX_MESSAGE_CHARS = 2_000  # an error or a warning, as one line
MAX_REQUEST_CHARS = 10_000  # the processing request
# How deep a source's details may nest: pydantic and the JSON parsers stop at about 200.
MAX_DETAILS_DEPTH = 100
# A surrogate code point on its own is not Unicode text: UTF-8 cannot encode it. Python makes
# one of each byte that is not UTF-8 in a command-line argument (os.fsdecode).
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class SourceSummary(TypedDict):
    """What a source module's `run(source)` returns."""

    records: int  # how many records the source processed
    details: NotRequired[dict[str, Any]]  # anything else worth reporting; must be JSON
    warnings: NotRequired[list[str]]  # lines worth a look that did not fail the source
    # Set by a connector (connectors.py), never by `run`: where the source's cursor got to.
    cursor: NotRequired[dict[str, Any] | None]


# A source module's `run`: a plain function (run in a thread of its own) or a coroutine.
SourceFunction = Callable[[Source], SourceSummary] | Callable[[Source], Awaitable[SourceSummary]]


class SourceState(StrEnum):
    """Where a source is in a run; the last four are how it ended."""

    WAITING = "waiting"  # for a free slot under max_concurrency
    RUNNING = "running"
    RETRYING = "retrying"  # pausing before its next attempt
    OK = "ok"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"  # the run was interrupted (Ctrl-C) before this source finished

    @property
    def label(self) -> str:
        """How tables and reports show it: `timed out`."""
        return self.value.replace("_", " ")


class AttemptTiming(BaseModel):
    """One attempt, in seconds after the parallel block started."""

    model_config = ConfigDict(frozen=True)

    # When it began waiting for a slot: for a retry, the end of the pause before it. None in
    # runs stored before it was recorded.
    queued: float | None = None
    started: float
    ended: float
    state: SourceState  # OK, FAILED or TIMED_OUT (CANCELLED when Ctrl-C stopped it)


class SourceTiming(BaseModel):
    """When a source waited, ran and finished, in seconds after the parallel block started."""

    model_config = ConfigDict(frozen=True)

    queued: float  # its step began: from here it waited (for its cursor, then a slot)
    attempts: list[AttemptTiming] = []
    finished: float
    waited_seconds: float = 0.0  # for its cursor, a concurrency slot (a free worker), all attempts


class SourceResult(BaseModel):
    """The outcome of one source in one run."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    status: SourceState = SourceState.OK  # OK, FAILED, TIMED_OUT or CANCELLED
    records: int = 0
    seconds: float = 0.0  # time spent running it, over all attempts (not waiting for a slot)
    attempts: int = 1
    error: str | None = None  # one line, when it did not succeed
    details: dict[str, Any] = {}
    warnings: list[str] = []  # e.g. an async def run that blocked the event loop
    # A connector source's cursor after this run (its highest value read), as JSON; None for
    # a source that keeps none.
    cursor: Any = None
    timing: SourceTiming | None = None  # None in runs stored before 0.5.0

    @field_validator("error")
    @classmethod
    def _one_capped_line(cls, error: str | None) -> str | None:
        return None if error is None else single_line(error)

    @field_validator("warnings")
    @classmethod
    def _capped_lines(cls, warnings: list[str]) -> list[str]:
        return [single_line(warning) for warning in warnings]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.status is SourceState.OK

    @classmethod
    def success(
        cls,
        source: Source,
        summary: SourceSummary,
        attempts: int,
        seconds: float,
        warnings: Sequence[str],
        timing: SourceTiming,
        cursor: Any = None,
    ) -> SourceResult:
        """The result of a source whose attempt number `attempts` returned `summary`."""
        return cls(
            id=source.id,
            name=source.name,
            records=summary["records"],
            seconds=round(seconds, 3),
            attempts=attempts,
            details=summary.get("details", {}),
            warnings=[*warnings, *summary.get("warnings", [])],
            timing=timing,
            cursor=cursor,
        )

    @classmethod
    def failure(
        cls,
        source: Source,
        error: str,
        *,
        status: SourceState = SourceState.FAILED,
        attempts: int = 1,
        seconds: float = 0.0,
        warnings: Sequence[str] = (),
        timing: SourceTiming | None = None,
    ) -> SourceResult:
        """The result of a source that did not succeed."""
        return cls(
            id=source.id,
            name=source.name,
            status=status,
            attempts=attempts,
            seconds=round(seconds, 3),
            error=error,
            warnings=list(warnings),
            timing=timing,
        )


class SourceError(Exception):
    """A source failed; the message is already the one line to report."""


def one_line(error: BaseException) -> str:
    """`Type: message` on one line, whatever the exception said: it goes into tables,
    reports and logs. A SourceError's message is already that line."""
    message = str(error)
    if isinstance(error, SourceError):
        return single_line(message)
    return single_line(f"{type(error).__name__}: {message}" if message else type(error).__name__)


def single_line(text: str) -> str:
    """`text` as one line of valid text, cut at MAX_MESSAGE_CHARS."""
    return " ".join(valid_text(text, MAX_MESSAGE_CHARS).split())


def valid_text(text: str, max_chars: int) -> str:
    """`text` as valid Unicode of at most `max_chars` characters: each lone surrogate becomes
    U+FFFD, the replacement character, and a longer text is cut, ending with a note of its
    length (so that a text cut once is never cut again)."""
    if len(text) > max_chars:
        note = f" … [{len(text):,} characters in all]"
        text = text[: max_chars - len(note)] + note
    return LONE_SURROGATE.sub("\ufffd", text)


def checked_summary(summary: Any, max_details_bytes: int) -> SourceSummary:
    """What a source returned, checked: a record count and strict-JSON details of at most
    `max_details_bytes`; SourceError says what is wrong."""
    if not isinstance(summary, dict):
        raise SourceError(f"run() must return a SourceSummary, got {type(summary).__name__}")
    records = summary.get("records")
    if isinstance(records, bool) or not isinstance(records, int) or records < 0:
        raise SourceError(f"records must be a whole number >= 0, got {records!r}")
    details = summary.get("details", {})
    if not isinstance(details, dict):
        raise SourceError(f"details must be a mapping, got {type(details).__name__}")
    if nested_deeper(details, MAX_DETAILS_DEPTH):
        raise SourceError(f"details are nested more than {MAX_DETAILS_DEPTH} deep")
    try:
        text = json.dumps(details, allow_nan=False, ensure_ascii=False)
        size = len(text.encode())
    except UnicodeEncodeError as error:
        where = error.object[max(error.start - 20, 0) : error.start]
        raise SourceError(
            f"details must be valid Unicode text: a lone surrogate "
            f"{error.object[error.start]!r} after {where!r}"
        ) from None
    except ValueError:
        raise SourceError("details must be JSON: NaN and Infinity are not") from None
    except TypeError as error:
        raise SourceError(f"details must be JSON: {error}") from None
    if size > max_details_bytes:
        raise SourceError(
            f"details are {size:,} bytes as JSON, more than max_details_bytes "
            f"({max_details_bytes:,})"
        )
    checked = SourceSummary(records=records, details=details)
    warnings = summary.get("warnings", [])
    if not isinstance(warnings, list) or not all(isinstance(line, str) for line in warnings):
        raise SourceError("warnings must be a list of strings")
    if warnings:
        checked["warnings"] = warnings
    if "cursor" in summary:
        checked["cursor"] = summary["cursor"]
    return checked


def nested_deeper(value: Any, max_depth: int) -> bool:
    """Whether lists and mappings in `value` nest more than `max_depth` levels deep (the
    mapping itself is level 1). It looks no deeper than that, so it cannot overflow the stack."""
    if not isinstance(value, dict | list):
        return False
    if max_depth == 0:
        return True
    items = value.values() if isinstance(value, dict) else value
    return any(nested_deeper(item, max_depth - 1) for item in items)


class Aggregation(BaseModel):
    """The merged results of a run; the CLI's `run --json` prints this and a few more keys."""

    model_config = ConfigDict(frozen=True)

    workflow_id: str
    workflow_name: str
    request: str
    sources: list[SourceResult]
    total_sources: int
    total_records: int
    failed: list[str]  # the ids of the sources that did not succeed
    started_at: float = 0.0  # when the parallel block started, in seconds since the epoch
    wall_seconds: float  # the parallel block, from Preparation's end to Aggregation's start
    sequential_seconds: float  # the sum of the sources' own times: one after another
    time_saved_seconds: float
    efficiency_percent: float

    @field_validator("request")
    @classmethod
    def _valid_request(cls, request: str) -> str:
        return valid_text(request, MAX_REQUEST_CHARS)

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON types, as the session state, the history and `--json` hold it."""
        return self.model_dump(mode="json")


def aggregate(
    workflow_id: str,
    workflow_name: str,
    request: str,
    results: Sequence[SourceResult],
    wall_seconds: float,
    started_at: float = 0.0,
) -> Aggregation:
    """Merge the per-source results; `time_saved_seconds` compares with running them one by one."""
    sequential_seconds = sum(result.seconds for result in results)
    time_saved = max(sequential_seconds - wall_seconds, 0.0)
    return Aggregation(
        workflow_id=workflow_id,
        workflow_name=workflow_name,
        request=request,
        sources=list(results),
        total_sources=len(results),
        total_records=sum(result.records for result in results),
        failed=[result.id for result in results if not result.ok],
        started_at=started_at,
        wall_seconds=round(wall_seconds, 3),
        sequential_seconds=round(sequential_seconds, 3),
        time_saved_seconds=round(time_saved, 3),
        efficiency_percent=round(100 * time_saved / sequential_seconds, 1)
        if sequential_seconds
        else 0.0,
    )


def aggregation_of(step_input: StepInput) -> Aggregation:
    """The run's aggregation, for the steps after Aggregation, whatever ran in between."""
    output = step_input.get_step_output(AGGREGATION_STEP)
    if output is None or not isinstance(output.content, str):
        raise RuntimeError(f"no {AGGREGATION_STEP} step has run before this one")
    # The Aggregation step's own text keeps the aggregation it was made from (steps.py).
    made_from = getattr(output.content, "aggregation", None)
    if isinstance(made_from, Aggregation):
        return made_from
    return Aggregation.model_validate_json(output.content)


async def awaited(awaitable: Awaitable[Any]) -> Any:
    """What an `async def run` returned (any awaitable), as the coroutine asyncio.run takes."""
    return await awaitable


@dataclass
class RunOutcome:
    """What one run produced: the aggregation, the report and anything that went wrong."""

    aggregation: Aggregation | None
    report: str | None
    errors: list[str] = field(default_factory=list)
    run_id: str | None = None  # Agno's id of the run, as the history records it
    session_id: str | None = None

    @property
    def exit_code(self) -> int:
        """0 when every source and the report succeeded, else 1."""
        if self.errors or self.aggregation is None or self.aggregation.failed:
            return 1
        return 0

    def to_json_dict(self) -> dict[str, Any]:
        """The `run --json` document: the aggregation, the run's id, the report, the errors."""
        document = self.aggregation.to_json_dict() if self.aggregation is not None else {}
        document.update(run_id=self.run_id, report=self.report, errors=self.errors)
        return document
