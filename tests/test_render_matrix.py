"""Render a matrix of answers and run what each rendering produced: tests, CLI and ruff."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from helpers import (
    CACHES,
    MYPY_CACHE,
    assert_hand_written,
    render,
    run_in,
    warm_mypy_cache,
)

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


@pytest.fixture(scope="session", params=list(SCENARIOS))
def rendered(
    request: pytest.FixtureRequest, copie_session, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    """One rendering per scenario, shared by the tests below on every test worker: the first
    worker to ask renders it while the others wait. No xdist group ties a scenario's tests to
    one worker, so the long ones spread over all of them. The tests leave it as rendered
    (their caches go elsewhere); the one that runs the project's own tests runs a copy."""
    # Under xdist the workers' temporary folders share a parent that is new for each run.
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    project = shared / ("scenario-" + re.sub(r"\W+", "-", request.param))
    with project.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not project.exists():  # copie_session's own folder goes with its worker's session
            shutil.copytree(render(copie_session, SCENARIOS[request.param]), project)
    (answers_file,) = project.glob(".copier-answers.*.yml")
    answers = yaml.safe_load(answers_file.read_text(encoding="utf-8"))
    assert answers_file.name == f".copier-answers.{answers['workflow_id']}.yml"
    return project, answers


def untouched_env(tmp_path: Path) -> dict[str, str]:
    """Python's bytecode caches out of the shared rendering."""
    return {"PYTHONPYCACHEPREFIX": str(tmp_path / "pycache")}


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


# What each scenario runs of the rendered project's own tests, in parts that the test
# workers run side by side (the longest would hold one worker for minutes). "seed names"
# renders the same workflow as "defaults" (only the project and package names differ) and
# "one source" the same with one source: there the tests of the engine with synthetic sources,
# of serving and of the history would repeat the defaults' run, so these two run the rendered
# tests that depend on the answers (workflow, registry, CLI, config, report, layout).
ANSWER_DEPENDENT_TESTS = [
    "tests/test_workflow.py",
    "tests/test_registry.py",
    "tests/test_cli.py",
    "tests/test_config.py",
    "tests/test_report.py",
    "tests/test_layout.py",
]
# The execution, executor and history tests run synthetic sources under the workflow's
# settings: names and a model change nothing there (the 256 sources' runs do, but the
# executors' real Dask cluster and process pools are the defaults' to run).
# The hostile-input tests (text, the history's files, the event loop, serving limits, child
# processes) are of the same kind: the defaults run them.
HOSTILE_INPUT_TESTS = [
    "--ignore=tests/test_untrusted_text.py",
    "--ignore=tests/test_history_files.py",
    "--ignore=tests/test_event_loop.py",
    "--ignore=tests/test_serve_limits.py",
    "--ignore=tests/test_child_processes.py",
]
SYNTHETIC_SOURCE_TESTS = [
    "--ignore=tests/test_execution.py",
    "--ignore=tests/test_history.py",
    "--ignore=tests/test_executors.py",
    *HOSTILE_INPUT_TESTS,
]
RENDERED_TESTS = {
    # The defaults' whole rendered suite runs in tests/test_user_path.py (installed as the
    # README says, through the rendered CI's steps) and in tests/test_lifecycle.py (after an
    # update); test_serving.py runs test_serve.py with only the serve extra.
    ("seed names", "answers"): ANSWER_DEPENDENT_TESTS,
    # Also the faults: with one source, Ctrl-C leaves no source finished.
    ("one source", "answers and faults"): [*ANSWER_DEPENDENT_TESTS, "tests/test_faults.py"],
    ("odd names", "all but synthetic sources"): SYNTHETIC_SOURCE_TESTS,
    ("twelve sources, a report model", "all but synthetic sources"): SYNTHETIC_SOURCE_TESTS,
    ("256 sources", "CLI and serving"): ["tests/test_cli.py", "tests/test_serve.py"],
    # Not the 256 sources' own tests: each demo source waits its 0.5-0.8 s of stand-in I/O.
    ("256 sources", "the rest"): [
        "--ignore=tests/test_cli.py",
        "--ignore=tests/test_serve.py",
        "--ignore=tests/test_executors.py",
        "--ignore-glob=tests/*/test_*.py",
        *HOSTILE_INPUT_TESTS,
    ],
}


@pytest.mark.parametrize(
    ("rendered", "tests"),
    [(scenario, tests) for (scenario, _), tests in RENDERED_TESTS.items()],
    ids=[f"{scenario} - {part}" for scenario, part in RENDERED_TESTS],
    indirect=["rendered"],
)
def test_the_rendered_project_passes_its_own_tests(
    rendered: tuple[Path, dict], tests: list[str], tmp_path: Path
) -> None:
    project = tmp_path / "project"  # a copy: its tests may write where the others read
    shutil.copytree(rendered[0], project, ignore=shutil.ignore_patterns(*CACHES))
    result = run_in(project, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests)

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", result.stdout)
    assert " failed" not in result.stdout


def test_every_scenario_but_the_defaults_runs_a_part_of_its_rendered_tests() -> None:
    """The defaults run whole elsewhere (see RENDERED_TESTS); every other scenario here."""
    assert {scenario for scenario, _ in RENDERED_TESTS} == set(SCENARIOS) - {"defaults"}


def test_the_rendered_python_is_ruff_clean_and_type_checks(
    rendered: tuple[Path, dict], tmp_path: Path
) -> None:
    project, _ = rendered
    warm_mypy_cache()
    for command in (
        ["-m", "ruff", "check", "--no-cache", "."],
        ["-m", "ruff", "format", "--no-cache", "--check", "."],
        # The cache of the installed packages (Agno's own modules above all) is shared.
        ["-m", "mypy", f"--cache-dir={MYPY_CACHE}"],
    ):
        result = run_in(project, *command, env=untouched_env(tmp_path))
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_rendered_python_compiles(rendered: tuple[Path, dict], tmp_path: Path) -> None:
    project, _ = rendered
    result = run_in(project, "-m", "compileall", "-q", "src", "tests", env=untouched_env(tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rendered_files_look_hand_written(rendered: tuple[Path, dict]) -> None:
    # Answers may hold Jinja syntax (the "odd names" do); it must never reach code.
    assert_hand_written(rendered[0], jinja_free="*.py")
