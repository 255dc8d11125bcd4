"""How a project hands itself to the runtime: registration, the old import paths, and
`engine-edits` after an update that removed the engine a project carried before 0.6.0."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from parallel_workflow_runtime import Project
from parallel_workflow_runtime._core import project as project_module
from parallel_workflow_runtime._core.project import OLD_IMPORT_PATHS, current

from .conftest import PACKAGE, SRC, user_environment


def test_one_process_serves_one_project() -> None:
    registered = current()
    assert registered.package == PACKAGE

    with pytest.raises(RuntimeError, match="already serves the project 'example_project'"):
        Project.register("another_project", Path("/elsewhere/workflows"))
    assert current() is registered


def test_the_same_package_registered_again_replaces_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(project_module, "_registered", current())

    moved = Project.register(PACKAGE, tmp_path / "workflows")

    assert current() is moved and moved.settings_path == tmp_path / "workflows" / "settings.yaml"
    assert (moved.env_prefix, moved.distribution) == ("EXAMPLE_PROJECT_", "example-project")


def test_the_0_4_0_import_paths_are_the_runtimes_modules() -> None:
    for name, module in OLD_IMPORT_PATHS.items():
        old = importlib.import_module(f"{PACKAGE}.{name}")
        assert old is importlib.import_module(module)
    from example_project.config import Source  # type: ignore[import-not-found]  # as in 0.4.0

    assert Source is importlib.import_module("parallel_workflow_runtime").Source


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def engine_edits(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", PACKAGE, "engine-edits"],
        cwd=project,
        capture_output=True,
        text=True,
        env=user_environment(PYTHONPATH=str(project / "src")),
        timeout=120,
    )


@pytest.mark.integration
def test_engine_edits_names_each_removed_engine_file_that_held_edits(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(SRC, project / "src", ignore=shutil.ignore_patterns("__pycache__"))
    engine = project / "src" / PACKAGE / "_runtime"
    engine.mkdir()
    (engine / "report.py").write_text("# our own report\n", encoding="utf-8")  # edited
    (engine / "notes.py").write_text("# no engine file of any release\n", encoding="utf-8")
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "0.5.0")
    assert engine_edits(project).stdout == (
        "no file you had edited was removed by the template update\n"
    )
    shutil.rmtree(engine)  # what `copier update` to 0.6.0 does

    result = engine_edits(project)

    path = f"src/{PACKAGE}/_runtime/report.py"
    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout.splitlines() == [
        f"{path}: you had edited it, and the template update removed it (the engine is"
        f" parallel-workflow-runtime now); your version: git show HEAD:{path}"
    ]


@pytest.mark.integration
def test_engine_edits_outside_a_git_checkout_is_one_line(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(SRC, project / "src", ignore=shutil.ignore_patterns("__pycache__"))

    result = engine_edits(project)

    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "git rev-parse failed in" in result.stderr
