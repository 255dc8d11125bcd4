"""The registry finds every workflow folder and builds each workflow from its config.yaml; the
commands that run one workflow take settings.yaml's default_workflow without --workflow."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
from agno.workflow import Parallel, Step
from example_project import Source

from parallel_workflow_runtime._cli.cli import main
from parallel_workflow_runtime._cli.entry import program_name
from parallel_workflow_runtime._core.config import ConfigError
from parallel_workflow_runtime._core.registry import WorkflowEntry, discover
from parallel_workflow_runtime._core.settings import load_settings

from .conftest import FIRST_WORKFLOW, PACKAGE, SRC, workflows_in


def test_the_registry_maps_each_workflow_id_to_its_factory(entry: WorkflowEntry) -> None:
    assert entry.folder == entry.config.workflow_id.replace("-", "_")
    assert entry.factory.__name__ == f"get_{entry.folder}"
    assert discover()[entry.config.workflow_id] == entry


def test_each_workflow_has_one_parallel_step_per_configured_source(entry: WorkflowEntry) -> None:
    workflow = entry.factory()
    config = entry.config

    assert workflow.id == config.workflow_id
    assert isinstance(workflow.steps, list)
    names = [step.name for step in workflow.steps if isinstance(step, Step | Parallel)]
    # The template's four steps in this order; steps of your own may stand between them.
    template_steps = ["Preparation", "ParallelProcessing", "Aggregation", "Report"]
    assert [name for name in names if name in template_steps] == template_steps
    (parallel,) = [step for step in workflow.steps if isinstance(step, Parallel)]
    branches = [step.name for step in parallel.steps if isinstance(step, Step)]
    assert branches == [source.id for source in config.sources]


def test_a_source_without_a_module_is_a_config_error(entry: WorkflowEntry) -> None:
    folder = entry.config.path.parent
    missing = Source(id="not_written_yet", name="Not written yet", settings={}, folder=folder)
    config = dataclasses.replace(entry.config, sources=(*entry.config.sources, missing))

    with pytest.raises(ConfigError, match=r"has no module sources/not_written_yet\.py"):
        entry.factory(config=config)


# settings.yaml's default_workflow: what `run` and `bench` run without --workflow.
DEFAULT_LINE = re.compile(r"^default_workflow: .*$", re.MULTILINE)


def project_with(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    default_line: str,
    folders: tuple[str, ...] = ("example_project", "mixed"),
) -> None:
    """The example project with only `folders` as workflows and settings.yaml's
    default_workflow line replaced by `default_line` ("" drops it), for one test."""
    workflows = tmp_path / "workflows"
    for folder in folders:
        shutil.copytree(
            SRC / PACKAGE / "workflows" / folder,
            workflows / folder,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    settings = (SRC / PACKAGE / "workflows" / "settings.yaml").read_text(encoding="utf-8")
    assert DEFAULT_LINE.search(settings), "settings.yaml sets no default_workflow"
    (workflows / "settings.yaml").write_text(DEFAULT_LINE.sub(default_line, settings), "utf-8")
    workflows_in(monkeypatch, workflows)


def ran(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The workflow id that `run --json` (with `arguments`) ran."""
    assert main(["run", "--json", *arguments]) == 0
    workflow_id: str = json.loads(capsys.readouterr().out)["workflow_id"]
    return workflow_id


@pytest.mark.usefixtures("all_sources_synthetic")
def test_run_without_workflow_runs_settings_default_and_workflow_chooses_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The example project, as the template renders a project with two workflows.
    assert load_settings().default_workflow == FIRST_WORKFLOW == "example-project"
    assert ran([], capsys) == "example-project"
    assert ran(["--workflow", "mixed"], capsys) == "mixed"

    project_with(tmp_path, monkeypatch, 'default_workflow: "mixed"')
    assert ran([], capsys) == "mixed"
    assert ran(["--workflow", "example-project"], capsys) == "example-project"


@pytest.mark.usefixtures("all_sources_synthetic")
def test_a_single_workflow_needs_no_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project_with(tmp_path, monkeypatch, "", folders=("mixed",))

    assert ran([], capsys) == "mixed"


@pytest.mark.parametrize(
    ("default_line", "folders", "message"),
    [
        (
            "",
            ("example_project", "mixed"),
            "choose a workflow with --workflow, or set default_workflow in settings.yaml:"
            " example-project, mixed",
        ),
        (
            'default_workflow: "nightly-reports"',
            ("example_project", "mixed"),
            "{settings}: default_workflow 'nightly-reports' is not a workflow of this project;"
            " known: example-project, mixed",
        ),
        # One workflow, and a default that names another (its id was renamed): said, not
        # silently replaced by the one there is.
        (
            'default_workflow: "example-project"',
            ("mixed",),
            "{settings}: default_workflow 'example-project' is not a workflow of this project;"
            " known: mixed",
        ),
        ("default_workflow: 7", ("mixed",), "{settings}: default_workflow must be"),
        ('default_workflow: " "', ("mixed",), "{settings}: default_workflow must be"),
    ],
)
def test_a_missing_or_wrong_default_is_a_one_line_usage_error(
    default_line: str,
    folders: tuple[str, ...],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project_with(tmp_path, monkeypatch, default_line, folders)

    for command in (["run"], ["bench", "--repeat=1", "--sources=2", "--latency=0.001"]):
        assert main(command) == 2
        printed = capsys.readouterr()
        assert printed.out == "" and printed.err.count("\n") == 1, printed.err
        expected = message.format(settings=tmp_path / "workflows" / "settings.yaml")
        assert printed.err.startswith(f"{program_name()}: error: {expected}"), printed.err
