"""Render a matrix of answers and run what each rendering produced: tests, CLI and ruff."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from helpers import (
    CACHES,
    MYPY_CACHE,
    TEMPLATE,
    assert_hand_written,
    entry_name,
    lowest_version,
    project_env,
    render,
    run_in,
    runtime_commit,
    runtime_range,
    runtime_requirement,
    runtime_version,
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
    # The runtime from a package index, as a range, for the teams that publish it there.
    "seed names, the runtime from an index": {
        "project_name": "Seed Example",
        "source_count": 3,
        "source_names": ["User Database", "API Logs", "Analytics Data"],
        "runtime_from": "index",
    },
    # A model configured for the report: the project's own tests still run offline.
    "twelve sources, a report model": {"source_count": 12, "report_model": "openai:gpt-4o-mini"},
    # All at once: the cap itself is covered by the rendered tests (test_execution.py).
    "256 sources": {"source_count": 256, "max_concurrency": 256},
    # Every kind of source, the connectors' sample data offline (the http source is never read:
    # the project's tests run synthetic sources), and a name of each kind's sample data.
    "every kind": {
        "source_count": 5,
        "source_names": [
            {"Orders DB": "sql"},
            {"Events API": "http"},
            {"Exports": "file"},
            "Legacy Feed",
            {"Audit Log": "sql"},
        ],
        "max_concurrency": 2,
    },
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

    names = [entry_name(name) for name in answers["source_names"]]
    assert [s["name"] for s in config["sources"]] == names
    assert len(config["sources"]) == answers["source_count"]
    assert config["workflow"]["name"] == answers["workflow_name"]
    ids = [s["id"] for s in config["sources"]]
    assert len(set(ids)) == len(ids)
    for source_id in ids:
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", source_id)
        assert (workflow_dir(project, answers) / "sources" / f"{source_id}.py").is_file()
    # Each kind's sample data: a python source's CSV, an sql source's SQLite file, a file
    # source's folder of JSON lines, an http source's JSON lines (the endpoint's items).
    data = workflow_dir(project, answers) / "data"
    samples = {
        "python": lambda source_id: data / f"{source_id}.csv",
        "sql": lambda source_id: data / f"{source_id}.sqlite",
        "file": lambda source_id: data / source_id / "2026-11-30.jsonl",
        "http": lambda source_id: data / f"{source_id}.jsonl",
    }
    expected = {
        samples[source.get("kind", "python")](source["id"])
        for source in config["sources"]
        if source.get("kind", "python") in samples
    }
    assert {path for path in data.rglob("*") if path.is_file()} == expected


def rendered_tests(project: Path) -> list[str]:
    """The whole rendered suite, but for 256 sources not each source's own test: each demo
    source waits its 0.5-0.8 s of stand-in I/O (2.7 minutes in all); the other scenarios run
    those tests."""
    return ["--ignore-glob=tests/*/test_*.py"] if project.name == "scenario-256-sources" else []


def test_the_rendered_project_passes_its_own_tests_with_the_runtime_it_pins(
    rendered: tuple[Path, dict], tmp_path: Path
) -> None:
    """The whole rendered suite (the project's workflows, command line, server and layout, and
    each source's own test), with the runtime of this checkout: the one it names (runtime/ of
    the template's repository, at the commit copied), or one its range admits."""
    project = tmp_path / "project"  # a copy: its tests may write where the others read
    shutil.copytree(rendered[0], project, ignore=shutil.ignore_patterns(*CACHES))
    if runtime_requirement(project).url:
        runtime_commit(project, str(TEMPLATE))
    else:
        assert Version(runtime_version()) in runtime_range(project)
    result = run_in(
        project, "-m", "pytest", "-q", "-p", "no:cacheprovider", *rendered_tests(rendered[0])
    )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", result.stdout)
    assert " failed" not in result.stdout


@pytest.mark.parametrize("rendered", ["seed names, the runtime from an index"], indirect=True)
def test_the_rendered_project_passes_its_own_tests_with_the_lowest_runtime_of_its_range(
    rendered: tuple[Path, dict], lowest_runtime: Path, tmp_path: Path
) -> None:
    """The same suite in a virtual environment that holds the lowest runtime the project's
    range admits, as a user whose lock file still has it would run it (a project that names
    the runtime's commit, the default, has no range: it gets that runtime and no other)."""
    project = tmp_path / "project"
    shutil.copytree(rendered[0], project, ignore=shutil.ignore_patterns(*CACHES))
    python = lowest_runtime / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-c", "import parallel_workflow_runtime as r; print(r.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert installed == lowest_version(runtime_range(project))
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *rendered_tests(rendered[0])],
        cwd=project,
        env=project_env(project),
        capture_output=True,
        text=True,
        timeout=900,
    )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", result.stdout)


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


def test_the_rendered_python_imports_only_the_runtimes_public_api(
    rendered: tuple[Path, dict],
) -> None:
    """The runtime's sub-packages are private (its decision 0018): what a project imports from
    it is `from parallel_workflow_runtime import ...`, and each name it imports is public."""
    import parallel_workflow_runtime

    project, _ = rendered
    imports = []
    for path in sorted(project.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for line in re.findall(r"^\s*(?:from|import) parallel_workflow_runtime\b.*$", text, re.M):
            imports.append((path.relative_to(project).as_posix(), line.strip()))
        for names in re.findall(r"^from parallel_workflow_runtime import \(([^)]*)\)", text, re.M):
            unknown = set(re.findall(r"\w+", names)) - set(parallel_workflow_runtime.__all__)
            assert not unknown, f"{path}: {sorted(unknown)} are not public"

    assert imports, "the rendered project imports nothing of the runtime"
    private = [
        (path, line)
        for path, line in imports
        if not (line.startswith(PUBLIC_IMPORTS[0]) or line == PUBLIC_IMPORTS[1])
    ]
    assert private == [], private


# The package's top, by name or for its names (the rendered __init__.py reads the runtime's
# names through the package: `import parallel_workflow_runtime`).
PUBLIC_IMPORTS = ("from parallel_workflow_runtime import ", "import parallel_workflow_runtime")
