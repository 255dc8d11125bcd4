"""config.yaml is checked when it is loaded: a broken file names its problem in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from example_project import SourceLimits

from parallel_workflow_runtime._cli.cli import main
from parallel_workflow_runtime._core.config import ConfigError, load_config
from parallel_workflow_runtime._core.registry import WorkflowEntry

from .conftest import workflows_in


def broken_copy(entry: WorkflowEntry, tmp_path: Path, change: str) -> Path:
    data = yaml.safe_load(entry.config.path.read_text(encoding="utf-8"))
    if change == "duplicate id":
        data["sources"].append(dict(data["sources"][0]))
    elif change == "id not an identifier":
        data["sources"][0]["id"] = "user database"
    elif change == "missing name":
        del data["sources"][0]["name"]
    elif change == "a misspelt setting":
        data["workflow"]["max_concurency"] = 4
    elif change == "no sources":
        data["sources"] = []
    elif change == "cap of zero":
        data["workflow"]["max_concurrency"] = 0
    elif change == "negative timeout":
        data["workflow"]["timeout_seconds"] = -1
    elif change == "retries as text":
        data["sources"][0]["retries"] = "three"
    elif change == "backoff as a flag":
        data["sources"][0]["retry_backoff_seconds"] = True
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("duplicate id", r"sources\[\d+\]\.id '\w+' is used twice"),
        ("id not an identifier", r"sources\[0\]\.id must be a Python identifier"),
        ("missing name", r"sources\[0\]\.name is missing"),
        ("a misspelt setting", r"workflow\.max_concurency is not a known setting"),
        ("no sources", r"sources must be a non-empty list"),
        ("cap of zero", r"workflow\.max_concurrency must be a whole number of at least 1, got 0"),
        (
            "negative timeout",
            r"workflow\.timeout_seconds must be a positive number of seconds up to 86,400 \(a "
            r"day\), or null, got -1",
        ),
        (
            "retries as text",
            r"sources\[0\]\.retries must be a whole number from 0 to 100, got 'three'",
        ),
        (
            "backoff as a flag",
            r"sources\[0\]\.retry_backoff_seconds must be a number of seconds from 0 to 86,400 "
            r"\(a day\), got True",
        ),
    ],
)
def test_a_broken_config_names_its_problem(
    entry: WorkflowEntry, tmp_path: Path, change: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(broken_copy(entry, tmp_path, change))


def test_the_config_loads_every_source_with_its_settings(entry: WorkflowEntry) -> None:
    config = load_config(entry.config.path)

    assert config.sources, "a workflow needs at least one source"
    for source in config.sources:
        assert "id" not in source.settings and "name" not in source.settings
        assert source.folder == entry.config.path.parent


def test_a_source_overrides_the_workflows_limits(entry: WorkflowEntry, tmp_path: Path) -> None:
    data = yaml.safe_load(entry.config.path.read_text(encoding="utf-8"))
    data["workflow"].update(max_concurrency=3, timeout_seconds=30, retries=1)
    data["sources"][0].update(timeout_seconds=None, retries=4, retry_backoff_seconds=2)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")

    config = load_config(path)

    assert config.max_concurrency == 3
    first, *others = config.sources
    assert first.limits == SourceLimits(timeout_seconds=None, retries=4, retry_backoff_seconds=2)
    for source in others:
        default_backoff = data["workflow"]["retry_backoff_seconds"]
        assert source.limits == SourceLimits(30, 1, default_backoff)
    assert "retries" not in first.settings  # limits are not the source's own settings


def test_a_broken_config_is_a_one_line_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workflows = tmp_path / "workflows"
    (workflows / "broken").mkdir(parents=True)
    (workflows / "broken" / "config.yaml").write_text("workflow: [not, a, mapping]\n")
    workflows_in(monkeypatch, workflows)

    assert main(["list"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "workflow must be a mapping" in error
