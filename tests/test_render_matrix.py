"""Render a matrix of answers and run what each rendering produced: tests, CLI and ruff."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from helpers import MYPY_CACHE, assert_hand_written, render, run_in, warm_mypy_cache

ODD_NAMES = [
    "Customer DB (EU) - v2",
    'The "quoted" feed',
    "O'Reilly's exports",
    "C:\\data\\exports\\new",
    "{{ 7 * 7 }} & {% raw %}",
    "Données clients — Zürich",
    "日本語データ",
    "2024 Sales",
    "class",
    "key: value # not a comment",
    "- [list] *alias* &anchor !tag |pipe|",
    '"""triple""" `code` <b>html</b> \\N{BULLET}',
    "null",
    "  spaced out  ",
    "📊 Metrics",
    "x" * 60,
]

SCENARIOS: dict[str, dict] = {
    "defaults": {},
    "one source": {"source_count": 1, "source_names": ["Orders"]},
    "seed names": {
        "project_name": "Seed Example",
        "source_count": 3,
        "source_names": ["User Database", "API Logs", "Analytics Data"],
    },
    # A model configured for the report: the project's own tests still run offline.
    "twelve sources, a report model": {"source_count": 12, "report_model": "openai:gpt-4o-mini"},
    # All at once: the cap itself is covered by the rendered tests (test_execution.py).
    "256 sources": {"source_count": 256, "max_concurrency": 256},
    "odd names": {
        "project_name": 'Acme "Data" \\ Platform {{ x }}',
        "workflow_name": 'Nightly "ETL" {% if %} — façade',
        "source_count": len(ODD_NAMES),
        "source_names": ODD_NAMES,
    },
}


# One xdist group per scenario: its tests run on one worker, which renders it once.
@pytest.fixture(
    scope="session",
    params=[pytest.param(name, marks=pytest.mark.xdist_group(name)) for name in SCENARIOS],
)
def rendered(request: pytest.FixtureRequest, copie_session) -> tuple[Path, dict]:
    """One rendering per scenario, shared by the tests below."""
    project = render(copie_session, SCENARIOS[request.param])
    (answers_file,) = project.glob(".copier-answers.*.yml")
    answers = yaml.safe_load(answers_file.read_text(encoding="utf-8"))
    assert answers_file.name == f".copier-answers.{answers['workflow_id']}.yml"
    return project, answers


def workflow_dir(project: Path, answers: dict) -> Path:
    folder = answers["workflow_id"].replace("-", "_")
    return project / "src" / answers["package_name"] / "workflows" / folder


def test_config_yaml_holds_the_exact_display_names(rendered: tuple[Path, dict]) -> None:
    project, answers = rendered
    config = yaml.safe_load((workflow_dir(project, answers) / "config.yaml").read_text("utf-8"))

    assert [s["name"] for s in config["sources"]] == answers["source_names"]
    assert len(config["sources"]) == answers["source_count"]
    assert config["workflow"]["name"] == answers["workflow_name"]
    ids = [s["id"] for s in config["sources"]]
    assert len(set(ids)) == len(ids)
    for source_id in ids:
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", source_id)
        assert (workflow_dir(project, answers) / "sources" / f"{source_id}.py").is_file()
        assert (workflow_dir(project, answers) / "data" / f"{source_id}.csv").is_file()


# "seed names" renders the same workflow as "defaults" (only the project and package names
# differ) and "one source" the same with one source: there the tests of the engine with
# synthetic sources, of serving and of the history would repeat the defaults' run, so these
# two run the rendered tests that depend on the answers (workflow, registry, CLI, config,
# report, layout). "defaults" runs every rendered test, "256 sources" all but the executors.
ANSWER_DEPENDENT_TESTS = [
    "tests/test_workflow.py",
    "tests/test_registry.py",
    "tests/test_cli.py",
    "tests/test_config.py",
    "tests/test_report.py",
    "tests/test_layout.py",
]
SYNTHETIC_SOURCE_TESTS = ["--ignore=tests/test_execution.py", "--ignore=tests/test_history.py"]
ANSWER_TESTS = {
    "seed names": ANSWER_DEPENDENT_TESTS,
    # Also the faults: with one source, Ctrl-C leaves no source finished.
    "one source": [*ANSWER_DEPENDENT_TESTS, "tests/test_faults.py"],
    # The execution, executor and history tests run synthetic sources under the workflow's
    # settings: names and a model change nothing there (the 256 sources' runs do, but the
    # executors' real Dask cluster and process pools are the defaults' to run).
    "odd names": [*SYNTHETIC_SOURCE_TESTS, "--ignore=tests/test_executors.py"],
    "twelve sources, a report model": [
        *SYNTHETIC_SOURCE_TESTS,
        "--ignore=tests/test_executors.py",
    ],
    "256 sources": ["--ignore=tests/test_executors.py"],
}


def test_the_rendered_project_passes_its_own_tests(
    rendered: tuple[Path, dict], request: pytest.FixtureRequest
) -> None:
    project, _ = rendered
    tests = ANSWER_TESTS.get(request.node.callspec.params["rendered"], [])
    result = run_in(project, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests)

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", result.stdout)
    assert " failed" not in result.stdout


def test_the_rendered_python_is_ruff_clean_and_type_checks(rendered: tuple[Path, dict]) -> None:
    project, _ = rendered
    warm_mypy_cache()
    for command in (
        ["-m", "ruff", "check", "."],
        ["-m", "ruff", "format", "--check", "."],
        # The cache of the installed packages (Agno's own modules above all) is shared.
        ["-m", "mypy", f"--cache-dir={MYPY_CACHE}"],
    ):
        result = run_in(project, *command)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_rendered_python_compiles(rendered: tuple[Path, dict]) -> None:
    project, _ = rendered
    result = run_in(project, "-m", "compileall", "-q", "src", "tests")

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rendered_files_look_hand_written(rendered: tuple[Path, dict]) -> None:
    # Answers may hold Jinja syntax (the "odd names" do); it must never reach code.
    assert_hand_written(rendered[0], jinja_free="*.py")
