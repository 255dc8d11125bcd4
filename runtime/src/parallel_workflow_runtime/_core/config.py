"""Load and check a workflow's config.yaml, the single source of truth for its sources.

The file's shape is declared once, as pydantic models (`WorkflowSection`, `SourceEntry`); a
value that does not fit is reported in one line that names where it is and what it must be,
e.g. `config.yaml: sources[0].retries must be a whole number from 0 to 100, got 'three'`.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from parallel_workflow_runtime._core.config_errors import describe
from parallel_workflow_runtime._core.connector_config import (
    CONNECTOR_KINDS,
    SOURCE_KINDS,
    ConnectorBlock,
    FileBlock,
    HttpBlock,
    Problem,
    SourceKind,
    SqlBlock,
    cursor_of,
)
from parallel_workflow_runtime._core.schedules import (
    DEFAULT_MESSAGE,
    ON_MISSED,
    OVERLAP,
    OnMissed,
    Overlap,
    Schedule,
    cron_problem,
    timezone_problem,
)
from parallel_workflow_runtime._core.usage import EXECUTOR_NAMES, ConfigError, ExecutorName

# The names of the workflow's own steps (steps.py builds them): a source's step may not take one.
PREPARATION_STEP = "Preparation"
PARALLEL_STEP = "ParallelProcessing"
AGGREGATION_STEP = "Aggregation"
REPORT_STEP = "Report"
RESERVED_STEP_NAMES = (PREPARATION_STEP, PARALLEL_STEP, AGGREGATION_STEP, REPORT_STEP)

MAX_RETRIES = 100
# The longest a timeout or a pause between retries may be: a day. A longer one is a typo,
# and a run that waits for it looks hung. For no timeout at all, timeout_seconds is null.
MAX_SECONDS = 86_400


@dataclass(frozen=True)
class SourceLimits:
    """How long one attempt at a source may take, and how a failure is retried."""

    timeout_seconds: float | None = 60.0  # None: no limit
    retries: int = 0  # extra attempts after a failure or a timeout
    retry_backoff_seconds: float = 0.5  # the pause before the first retry; doubles each time
    max_backoff_seconds: float = 30.0  # no pause between attempts is longer than this


@dataclass(frozen=True)
class Source:
    """One data source, as its entry under `sources:` in config.yaml describes it."""

    id: str
    name: str
    settings: dict[str, Any]  # the entry's own keys, e.g. `data_file`, `table`, `url`
    folder: Path  # the workflow's folder: relative paths in settings start here
    limits: SourceLimits = field(default_factory=SourceLimits)
    executor: ExecutorName | None = None  # None: "async" for an async def run, else "thread"
    # How it gets its data: "python" (its `run(source)` alone) or a connector kind whose
    # block (`sql:`, `http:`, `file:`) is `connector`; its `run(source, rows)` gets the rows.
    kind: SourceKind = "python"
    connector: ConnectorBlock | None = None

    @property
    def cursor(self) -> str | None:
        """The column (or field path) whose highest value a connector keeps between runs."""
        return cursor_of(self.connector)

    def path(self, setting: str) -> Path:
        """The file named by a setting such as `data_file`."""
        return self.folder / str(self.settings[setting])


@dataclass(frozen=True)
class WorkflowConfig:
    """A workflow's config.yaml, checked."""

    name: str
    workflow_id: str
    version: str
    report_model: str  # "" for the offline report
    max_concurrency: int  # how many sources may run at once
    max_details_bytes: int  # the largest `details` a source may return, as JSON
    sources: tuple[Source, ...]
    path: Path
    max_workers: int | None = None  # processes of the process pool / Dask LocalCluster; None: CPUs
    schedules: tuple[Schedule, ...] = ()  # when `serve` runs it by itself (scheduler.py)


# What config.yaml may hold. Each `description` is the rule in words: it completes the
# sentence "<where> must be ..." of the error message.
Text = Annotated[str, Field(min_length=1, pattern=r"\S", description="a non-empty string")]
Timeout = Annotated[
    float | None,
    Field(
        gt=0,
        le=MAX_SECONDS,
        allow_inf_nan=False,
        description=f"a positive number of seconds up to {MAX_SECONDS:,} (a day), or null",
    ),
]
Retries = Annotated[
    int, Field(ge=0, le=MAX_RETRIES, description=f"a whole number from 0 to {MAX_RETRIES}")
]
Seconds = Annotated[
    float,
    Field(
        ge=0,
        le=MAX_SECONDS,
        allow_inf_nan=False,
        description=f"a number of seconds from 0 to {MAX_SECONDS:,} (a day)",
    ),
]
PositiveSeconds = Annotated[
    float,
    Field(
        gt=0,
        le=MAX_SECONDS,
        allow_inf_nan=False,
        description=f"a positive number of seconds up to {MAX_SECONDS:,} (a day)",
    ),
]
Executor = Annotated[
    ExecutorName | None, Field(description=f"one of {', '.join(EXECUTOR_NAMES)}, or null")
]


class _Strict(BaseModel):
    # strict: "3" is not 3 and `true` is not 1; a typo in a setting's name is an error.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class WorkflowSection(_Strict):
    """The `workflow:` mapping: the workflow's identity and the defaults of every source."""

    name: Text
    workflow_id: Text
    version: str = "0.0.0"
    report_model: Annotated[str, Field(description="a string")] = ""
    max_concurrency: Annotated[int, Field(ge=1, description="a whole number of at least 1")] = 16
    max_details_bytes: Annotated[
        int, Field(ge=1, description="a whole number of bytes of at least 1")
    ] = 1_000_000
    timeout_seconds: Timeout = 60.0
    retries: Retries = 0
    retry_backoff_seconds: Seconds = 0.5
    max_backoff_seconds: PositiveSeconds = 30.0
    executor: Executor = None
    max_workers: Annotated[
        int | None, Field(ge=1, description="a whole number of at least 1, or null")
    ] = None


class SourceEntry(_Strict):
    """One entry under `sources:`; any key not declared here is the source's own setting."""

    model_config = ConfigDict(extra="allow")

    id: Text
    name: Text
    timeout_seconds: Timeout = None
    retries: Retries = 0
    retry_backoff_seconds: Seconds = 0.5
    max_backoff_seconds: PositiveSeconds = 30.0
    executor: Executor = None
    kind: Annotated[SourceKind, Field(description=f"one of {', '.join(SOURCE_KINDS)}")] = "python"
    sql: SqlBlock | None = None
    http: HttpBlock | None = None
    file: FileBlock | None = None

    @model_validator(mode="after")
    def _block_of_its_kind(self) -> SourceEntry:
        for kind in CONNECTOR_KINDS:
            given = getattr(self, kind) is not None
            if self.kind == kind and not given:
                raise Problem(f".{kind} is missing: kind {kind} reads what it says")
            if given and self.kind != kind:
                raise Problem(
                    f".{kind} is read only by kind {kind}, and this source's kind is "
                    f"{self.kind}: set kind: {kind}, or remove the block"
                )
        return self

    @property
    def connector(self) -> ConnectorBlock | None:
        block: ConnectorBlock | None = getattr(self, self.kind, None)
        return block

    @field_validator("id")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not value.isidentifier() or keyword.iskeyword(value):
            raise ValueError("a Python identifier (its module is sources/<id>.py)")
        if value in RESERVED_STEP_NAMES:
            raise ValueError(f"other than the workflow's step names {list(RESERVED_STEP_NAMES)}")
        return value


class ScheduleEntry(_Strict):
    """One entry under `schedules:` (schedules.py, scheduler.py)."""

    name: Annotated[
        str,
        Field(
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
            max_length=100,
            description="a name of letters, digits, _, . and - (it names the schedule)",
        ),
    ]
    cron: Annotated[str, Field(description="a cron expression")]
    timezone: Annotated[str, Field(description="an IANA timezone name")] = "UTC"
    on_missed: Annotated[OnMissed, Field(description=f"one of {', '.join(ON_MISSED)}")] = "run_once"
    max_catch_up: Annotated[
        int, Field(ge=1, le=1000, description="a whole number from 1 to 1000")
    ] = 10
    overlap: Annotated[Overlap, Field(description=f"one of {', '.join(OVERLAP)}")] = "skip"
    max_runtime_seconds: Timeout = None
    message: Text = DEFAULT_MESSAGE

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        problem = cron_problem(value)
        if problem is not None:
            raise ValueError(f"a cron expression: {problem}")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        problem = timezone_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class ConfigFile(_Strict):
    workflow: WorkflowSection
    sources: Annotated[list[SourceEntry], Field(min_length=1, description="a non-empty list")]
    schedules: Annotated[list[ScheduleEntry], Field(description="a list")] = []


LIMIT_KEYS = tuple(
    name for name in SourceEntry.model_fields if name in SourceLimits.__annotations__
)


def load_config(path: Path) -> WorkflowConfig:
    """Read a workflow's config.yaml; raise ConfigError naming the first problem found."""
    data = read_yaml(path)
    try:
        checked = ConfigFile.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{path}: {describe(error, ConfigFile)}") from None
    workflow = checked.workflow
    sources: list[Source] = []
    for index, entry in enumerate(checked.sources):
        if any(source.id == entry.id for source in sources):
            raise ConfigError(f"{path}: sources[{index}].id {entry.id!r} is used twice")
        sources.append(
            Source(
                id=entry.id,
                name=entry.name,
                settings=dict(entry.model_extra or {}),
                folder=path.parent,
                limits=_limits(workflow, entry),
                executor=entry.executor
                if "executor" in entry.model_fields_set
                else workflow.executor,
                kind=entry.kind,
                connector=entry.connector,
            )
        )
    schedules: list[Schedule] = []
    for index, declared in enumerate(checked.schedules):
        if any(schedule.name == declared.name for schedule in schedules):
            raise ConfigError(f"{path}: schedules[{index}].name {declared.name!r} is used twice")
        schedules.append(Schedule(workflow_id=workflow.workflow_id, **declared.model_dump()))
    return WorkflowConfig(
        name=workflow.name,
        workflow_id=workflow.workflow_id,
        version=workflow.version,
        report_model=workflow.report_model,
        max_concurrency=workflow.max_concurrency,
        max_details_bytes=workflow.max_details_bytes,
        sources=tuple(sources),
        path=path,
        max_workers=workflow.max_workers,
        schedules=tuple(schedules),
    )


def _limits(workflow: WorkflowSection, entry: SourceEntry) -> SourceLimits:
    """The source's limits: those its entry sets, else the workflow's defaults."""
    given = entry.model_fields_set
    return SourceLimits(
        **{key: getattr(entry if key in given else workflow, key) for key in LIMIT_KEYS}
    )


# libyaml's parser where PyYAML was built with it: a 256-source config.yaml loads in 13 ms
# instead of 80 ms, and every command, test and served run loads it.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read: {error.strerror}") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"{path}: is not valid YAML{line}") from None
