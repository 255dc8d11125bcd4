"""The runtime package, runtime/: it builds into a wheel and an sdist that hold what a project
needs, it is ruff-clean and type-checks, its list of released engine files matches the
template's history, and the template pins it where it is."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

from helpers import RUNTIME, TEMPLATE, copier, runtime_version, type_check_runtime, warm_mypy_cache


def tool(*args: str, cwd: Path = RUNTIME) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_the_runtime_is_ruff_clean_and_type_checks() -> None:
    for command in (["ruff", "check", "."], ["ruff", "format", "--check", "."]):
        result = tool(*command)
        assert result.returncode == 0, result.stdout + result.stderr
    warm_mypy_cache()
    result = type_check_runtime()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found in" in result.stdout


def test_the_wheel_and_sdist_hold_the_package_its_types_and_its_data(tmp_path: Path) -> None:
    result = tool("uv", "build", "--offline", "--out-dir", str(tmp_path), ".")
    if result.returncode:  # no hatchling in uv's cache yet: the package index has it
        result = tool("uv", "build", "--out-dir", str(tmp_path), ".")
    assert result.returncode == 0, result.stderr[-3000:]
    version = runtime_version()
    (wheel,) = tmp_path.glob(f"parallel_workflow_runtime-{version}-py3-none-any.whl")
    (sdist,) = tmp_path.glob(f"parallel_workflow_runtime-{version}.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    package = "parallel_workflow_runtime/"
    assert {package + "py.typed", package + "_cli/released_engine_files.json"} <= set(names)
    source = RUNTIME / "src" / package
    modules = {f"{package}{path.relative_to(source).as_posix()}" for path in source.rglob("*.py")}
    assert modules <= set(names)
    assert f"{package}_store/migrations/versions/0001_cursors_and_ticks.py" in modules
    # The HTML pages' templates, which page_templates.py loads from the installed package.
    templates = (source / "_observe" / "templates").glob("*.jinja")
    assert {f"{package}_observe/templates/{path.name}" for path in templates} <= set(names)
    assert f"{package}_observe/templates/run.html.jinja" in names
    assert not [name for name in names if "tests/" in name or "example_project" in name]
    metadata = (
        zipfile.ZipFile(wheel)
        .read(f"parallel_workflow_runtime-{version}.dist-info/METADATA")
        .decode()
    )
    assert f"Version: {version}" in metadata
    assert "Requires-Python: >=3.11" in metadata
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    root = f"parallel_workflow_runtime-{version}/"
    for kept in ("README.md", "CHANGELOG.md", "VERSION", "pyproject.toml", "tests/conftest.py"):
        assert root + kept in members


def test_the_decision_records_picture_names_the_layers_that_import_linter_checks() -> None:
    """Decision 0018 draws the runtime's layers; runtime/pyproject.toml's contract is what
    holds them: the same names, in the same order, top to bottom."""
    decision = (TEMPLATE / "docs" / "decisions" / "0018-the-runtime-in-layers.md").read_text(
        encoding="utf-8"
    )
    picture = decision.split("```", 2)[1]
    drawn = re.findall(r"^ [├└]─ (_[a-z]+(?: \| _[a-z]+)*)", picture, re.M)
    with (RUNTIME / "pyproject.toml").open("rb") as file:
        [layers] = [
            contract["layers"]
            for contract in tomllib.load(file)["tool"]["importlinter"]["contracts"]
            if contract["type"] == "layers"
        ]

    assert drawn == layers
    subpackages = sorted(path.parent.name for path in RUNTIME.glob("src/*/_*/__init__.py"))
    assert sorted(name for layer in layers for name in layer.split(" | ")) == subpackages


def test_the_changelog_has_an_entry_for_the_version() -> None:
    changelog = (RUNTIME / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{runtime_version()}] - " in changelog


def test_the_list_of_released_engine_files_is_up_to_date() -> None:
    script = RUNTIME / "scripts" / "released_engine_files.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def rendered_pyproject(destination: Path, *answers: str) -> dict:
    result = copier(
        "copy", "--defaults", "--vcs-ref=HEAD", *answers, str(TEMPLATE), str(destination)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with (destination / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


# Every extra of the runtime that a project may use, in its one requirement on the runtime.
EXTRAS = "anthropic,distributed,file,http,openai,postgres,serve,sql,tracing"


def test_a_rendered_project_names_the_runtime_of_the_repository_it_was_copied_from(
    tmp_path: Path,
) -> None:
    """By default the runtime comes from runtime/ of the template's own repository, at the
    commit copied: a PEP 508 direct reference that pip and uv fetch wherever the template
    could be copied from (decision 0016), with every extra a project may use."""
    pyproject = rendered_pyproject(tmp_path / "p")
    (runtime, agno) = pyproject["project"]["dependencies"]
    prefix = f"parallel-workflow-runtime[{EXTRAS}] @ git+file://localhost{TEMPLATE}@"
    assert runtime.startswith(prefix) and runtime.endswith("#subdirectory=runtime")
    assert len(runtime.removeprefix(prefix).split("#")[0]) == 40  # the full commit hash
    assert agno == "agno>=3.1.10"
    # hatchling builds a project with a direct reference only when told it may.
    assert pyproject["tool"]["hatch"]["metadata"] == {"allow-direct-references": True}
    # No other requirement names the runtime: pip would look for it elsewhere too, and find
    # a second one wherever an index or a folder of wheels has it.
    (dev,) = pyproject["project"]["optional-dependencies"].values()
    assert not [requirement for requirement in dev if "parallel-workflow-runtime" in requirement]


def test_a_rendered_project_can_take_the_runtime_from_a_package_index(tmp_path: Path) -> None:
    pyproject = rendered_pyproject(tmp_path / "p", "--data=runtime_from=index")
    assert pyproject["project"]["dependencies"] == [
        f"parallel-workflow-runtime[{EXTRAS}]~={runtime_version()}",
        "agno>=3.1.10",
    ]
    assert "metadata" not in pyproject["tool"]["hatch"]


# The runtime's extras that this repository's development environment installs (pyproject.toml,
# dev group): all but `anthropic`, whose SDK no test uses.
DEVELOPED_EXTRAS = (
    "openai",
    "serve",
    "postgres",
    "distributed",
    "sql",
    "http",
    "file",
    "tracing",
    "test",
)


def test_the_development_environment_holds_every_requirement_of_the_runtime() -> None:
    """scripts/bootstrap installs the runtime with --no-deps (it is on no index), so the dev
    group must name what the runtime requires: a requirement added to runtime/pyproject.toml
    alone passes where someone installed it by hand, and fails on a fresh clone (alembic did)."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    project = tomllib.loads((RUNTIME / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = list(project["dependencies"])
    for extra in DEVELOPED_EXTRAS:
        wanted += project["optional-dependencies"][extra]
    problems = []
    for text in wanted:
        requirement = Requirement(text)
        if requirement.name == project["name"]:
            continue  # the `test` extra naming the others
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            problems.append(f"{text}: not installed (add it to pyproject.toml's dev group)")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            problems.append(f"{text}: {installed} is installed")
    assert not problems, "\n".join(problems)
