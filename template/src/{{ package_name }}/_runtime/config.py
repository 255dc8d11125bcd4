"""Load and check a workflow's config.yaml, the single source of truth for its steps and sources."""

from __future__ import annotations

import keyword
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Set this environment variable to override `workflow.report_model` of every workflow,
# e.g. `openai:gpt-4o-mini`; set it to an empty string to force the offline report.
REPORT_MODEL_ENV = "{{ package_name | upper }}_REPORT_MODEL"

# The seed's four steps, in order: the workflow is built from these types.
STEP_TYPES = ("function", "parallel", "function", "agent")

# Settings of the workflow that each source's entry may override.
LIMIT_KEYS = ("timeout_seconds", "retries", "retry_backoff_seconds")


class ConfigError(ValueError):
    """config.yaml is missing something or holds a value of the wrong kind."""


@dataclass(frozen=True)
class SourceLimits:
    """How long one attempt at a source may take, and how a failure is retried."""

    timeout_seconds: float | None = 60.0  # None: no limit
    retries: int = 0  # extra attempts after a failure or a timeout
    retry_backoff_seconds: float = 0.5  # the pause before the first retry; doubles each time


@dataclass(frozen=True)
class Source:
    """One data source: its entry under `sources:` in config.yaml."""

    id: str
    name: str
    settings: Mapping[str, Any]
    folder: Path  # the workflow folder: relative paths in settings start here
    limits: SourceLimits = SourceLimits()

    def path(self, setting: str) -> Path:
        """The file named by a setting such as `data_file`."""
        return self.folder / str(self.settings[setting])


@dataclass(frozen=True)
class StepNames:
    """The names of the four steps, as config.yaml spells them."""

    preparation: str
    parallel: str
    aggregation: str
    report: str


@dataclass(frozen=True)
class WorkflowConfig:
    name: str
    workflow_id: str
    version: str
    report_model: str
    max_concurrency: int  # how many sources may run at once
    steps: StepNames
    sources: tuple[Source, ...]
    path: Path

    @property
    def effective_report_model(self) -> str:
        """The report model after the environment override; empty means the offline report."""
        return os.environ.get(REPORT_MODEL_ENV, self.report_model).strip()


def load_config(path: Path) -> WorkflowConfig:
    """Read a workflow's config.yaml; raise ConfigError naming the first problem found."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot be read: {error}") from error
    workflow = _mapping(data, "the file", path)
    settings = _mapping(workflow.get("workflow"), "workflow", path)
    max_concurrency = settings.get("max_concurrency", 16)
    if not _is_int(max_concurrency) or max_concurrency < 1:
        raise ConfigError(
            f"{path}: workflow.max_concurrency must be a whole number of at least 1, "
            f"got {max_concurrency!r}"
        )
    defaults = _limits(settings, SourceLimits(), "workflow", path)
    return WorkflowConfig(
        name=_text(settings, "name", "workflow", path),
        workflow_id=_text(settings, "workflow_id", "workflow", path),
        version=str(settings.get("version", "0.0.0")),
        report_model=str(settings.get("report_model") or ""),
        max_concurrency=max_concurrency,
        steps=_step_names(workflow.get("steps"), path),
        sources=_sources(workflow.get("sources"), defaults, path),
        path=path,
    )


def _step_names(steps: Any, path: Path) -> StepNames:
    if not isinstance(steps, list) or [
        step.get("type") if isinstance(step, dict) else None for step in steps
    ] != list(STEP_TYPES):
        raise ConfigError(f"{path}: steps must be four steps of types {', '.join(STEP_TYPES)}")
    names = [_text(step, "name", f"steps[{index}]", path) for index, step in enumerate(steps)]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: step names must be unique, got {names}")
    return StepNames(*names)


def _sources(entries: Any, defaults: SourceLimits, path: Path) -> tuple[Source, ...]:
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: sources must be a non-empty list")
    sources: list[Source] = []
    for index, entry in enumerate(entries):
        where = f"sources[{index}]"
        settings = _mapping(entry, where, path)
        source_id = _text(settings, "id", where, path)
        if not source_id.isidentifier() or keyword.iskeyword(source_id):
            raise ConfigError(f"{path}: {where}.id must be a Python identifier, got {source_id!r}")
        if any(source.id == source_id for source in sources):
            raise ConfigError(f"{path}: {where}.id {source_id!r} is used twice")
        sources.append(
            Source(
                id=source_id,
                name=_text(settings, "name", where, path),
                settings={
                    key: value
                    for key, value in settings.items()
                    if key not in ("id", "name", *LIMIT_KEYS)
                },
                folder=path.parent,
                limits=_limits(settings, defaults, where, path),
            )
        )
    return tuple(sources)


def _limits(
    settings: Mapping[str, Any], defaults: SourceLimits, where: str, path: Path
) -> SourceLimits:
    """The limits in `settings`, each falling back to `defaults` when absent."""
    timeout = settings.get("timeout_seconds", defaults.timeout_seconds)
    if timeout is not None and (not _is_number(timeout) or timeout <= 0):
        raise ConfigError(
            f"{path}: {where}.timeout_seconds must be a positive number or null, got {timeout!r}"
        )
    retries = settings.get("retries", defaults.retries)
    if not _is_int(retries) or retries < 0:
        raise ConfigError(f"{path}: {where}.retries must be a whole number >= 0, got {retries!r}")
    backoff = settings.get("retry_backoff_seconds", defaults.retry_backoff_seconds)
    if not _is_number(backoff) or backoff < 0:
        raise ConfigError(
            f"{path}: {where}.retry_backoff_seconds must be a number >= 0, got {backoff!r}"
        )
    return SourceLimits(
        timeout_seconds=None if timeout is None else float(timeout),
        retries=retries,
        retry_backoff_seconds=float(backoff),
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _mapping(value: Any, where: str, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {where} must be a mapping")
    return value


def _text(settings: Mapping[str, Any], key: str, where: str, path: Path) -> str:
    value = settings.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: {where}.{key} must be a non-empty string")
    return value
