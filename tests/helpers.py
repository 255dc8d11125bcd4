"""Helpers to render the template and run what it rendered, as a user would."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

TEMPLATE = Path(__file__).resolve().parents[1]
# mypy's cache for the rendered projects and the engine, shared by the test workers: most of
# what mypy reads is the same installed packages every time (mypy replaces a cache file
# atomically, so two runs writing it at once leave it whole).
MYPY_CACHE = TEMPLATE / ".mypy_cache" / "rendered"
RUNTIME = TEMPLATE / "runtime"


def runtime_version() -> str:
    """The runtime's version in this checkout: runtime/VERSION, the one place it is written."""
    return (RUNTIME / "VERSION").read_text(encoding="utf-8").strip()


def runtime_requirement(project: Path) -> Requirement:
    """The rendered project's requirement on the runtime, from its pyproject.toml."""
    with (project / "pyproject.toml").open("rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    (requirement,) = [Requirement(d) for d in dependencies if d.startswith("parallel-workflow-")]
    return requirement


def runtime_range(project: Path) -> SpecifierSet:
    """The range of runtime versions the pyproject.toml of a project rendered with
    `runtime_from: index` admits."""
    requirement = runtime_requirement(project)
    assert requirement.url is None, f"{project} takes the runtime from {requirement.url}"
    return requirement.specifier


def runtime_commit(project: Path, repository: str) -> str:
    """The commit whose runtime/ a project rendered with `runtime_from: git` (the default)
    installs, after checking that it is runtime/ of `repository` (a path or a git+file URL)."""
    url = runtime_requirement(project).url
    path = repository.removeprefix("git+file://")
    pattern = rf"git\+file://localhost{re.escape(path)}@([0-9a-f]{{40}})#subdirectory=runtime"
    found = re.fullmatch(pattern, url or "")
    assert found, f"{project} takes the runtime from {url}, not from {repository}"
    return found[1]


def lowest_version(versions: SpecifierSet) -> str:
    """The lowest version a range admits: that of its `~=` or `>=` clause."""
    (lowest,) = [spec.version for spec in versions if spec.operator in ("~=", ">=", "==")]
    assert lowest in versions
    return lowest


def runtime_wheel(version: str, folder: Path) -> Path:
    """The runtime's wheel at `version`: this checkout's from .wheelhouse (scripts/wheelhouse
    builds it), an earlier one built from the commit runtime/CHANGELOG.md names for it."""
    if version == runtime_version():
        (wheel,) = (TEMPLATE / ".wheelhouse").glob(f"parallel_workflow_runtime-{version}-*.whl")
        return wheel
    changelog = (RUNTIME / "CHANGELOG.md").read_text(encoding="utf-8")
    found = re.search(rf"^## \[{re.escape(version)}\] .*?^Commit: (\w+)$", changelog, re.M | re.S)
    assert found, f"runtime/CHANGELOG.md names no commit for {version}"
    source = folder / f"runtime-{version}"
    source.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", found[1], "runtime"],
        cwd=TEMPLATE,
        capture_output=True,
        check=True,
    )
    extract = ["tar", "-x", "--strip-components=1"]
    subprocess.run(extract, cwd=source, input=archive.stdout, check=True)
    subprocess.run(
        [sys.executable, "-m", "uv", "build", "--quiet", "--wheel", "--out-dir", str(folder), "."],
        cwd=source,
        check=True,
        timeout=600,
    )
    (wheel,) = folder.glob(f"parallel_workflow_runtime-{version}-*.whl")
    return wheel


def type_check_runtime() -> subprocess.CompletedProcess[str]:
    """mypy on the runtime and its tests, as its pyproject.toml configures it."""
    MYPY_CACHE.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "mypy", f"--cache-dir={MYPY_CACHE}"],
        cwd=RUNTIME,
        capture_output=True,
        text=True,
        timeout=600,
    )


def warm_mypy_cache() -> None:
    """Fill the shared mypy cache once, by whichever test worker asks first, while the others
    wait: four cold mypy runs at once would each read all of Agno."""
    MYPY_CACHE.mkdir(parents=True, exist_ok=True)
    with (MYPY_CACHE.parent / "rendered.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        warm = MYPY_CACHE / ".warm"
        if not warm.exists():
            type_check_runtime()
            warm.touch()


def project_env(project: Path) -> dict[str, str]:
    """The environment of a rendered project's processes: its src on the path, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env["PYTHONPATH"] = str(project / "src")
    env["AGNO_TELEMETRY"] = "false"
    return env


def run_in(
    project: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python <args>` inside a rendered project with this interpreter (`env`: variables
    to set on top of the project's environment)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env=project_env(project) | (env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def copier(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The copier command line, without --trust, on this checkout."""
    return subprocess.run(
        [sys.executable, "-m", "copier", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def render(copie, answers: dict) -> Path:
    result = copie.copy(extra_answers=answers)
    assert result.exception is None, result.exception
    assert result.exit_code == 0
    return result.project_dir


def git(repository: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repository, capture_output=True, text=True, check=True
    ).stdout


def published_template(destination: Path) -> str:
    """This checkout as users reach the template: a bare git repository holding its history
    and, as one more commit, its uncommitted changes (scripts/snapshot), by its git+file://
    URL, which Copier and pip treat as they treat GitHub's."""
    result = subprocess.run(
        [str(TEMPLATE / "scripts" / "snapshot"), str(destination)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def template_snapshot(destination: Path) -> Path:
    """A clean git repository holding this checkout's files as they are now, uncommitted
    changes included, so that copier records a commit that `copier update` can find again."""
    copy_checkout(destination)
    commit_all(destination, "template snapshot", init=True)
    return destination


def copy_checkout(destination: Path) -> None:
    """This checkout's files as they are now (not git's, not the ignored ones) into a folder."""
    files = git(TEMPLATE, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    for relative in filter(None, files.split("\0")):
        source = TEMPLATE / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def commit_all(repository: Path, message: str, *, init: bool = False) -> None:
    """Commit everything in the working tree (copier update needs a clean tree)."""
    if init:
        git(repository, "init", "-q")
    git(repository, "add", "-A")
    git(repository, "commit", "-qm", message)


# What running the rendered project and its tools leaves behind (.data: the run history):
# not rendered, not checked.
CACHES = {".git", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".data"}
JINJA_MARKERS = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")
GITHUB_EXPRESSIONS = re.compile(r"\$\{\{ [\w.-]+ \}\}")


def entry_name(entry: Any) -> Any:
    """The display name of a source_names entry: a name, or a mapping of a name to its kind."""
    return next(iter(entry)) if isinstance(entry, dict) else entry


# What a project holds that is not text: the sample database of its sql sources.
BINARY_SUFFIXES = {".sqlite"}


def assert_hand_written(project: Path, jinja_free: str = "*") -> None:
    """Every rendered text file is tidy; those matching `jinja_free` hold no Jinja markers
    (pass "*.py" where the answers themselves contain Jinja syntax: it never reaches code)."""
    files = [
        path
        for path in sorted(project.rglob("*"))
        if path.is_file()
        and not CACHES.intersection(path.relative_to(project).parts)
        and path.suffix not in BINARY_SUFFIXES
    ]
    assert len(files) > 20
    for path in files:
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(project)
        if not text:
            continue  # e.g. tests/__init__.py
        if path.match(jinja_free):
            literal = GITHUB_EXPRESSIONS.sub("", text)  # ${{ matrix.x }} is GitHub's, not Jinja
            assert not JINJA_MARKERS.search(literal), f"Jinja left in {where}"
        assert text.endswith("\n") and not text.endswith("\n\n"), f"{where} ends badly"
        assert not text.startswith("\n"), f"{where} starts with a blank line"
        assert not re.search(r"[ \t]+$", text, re.MULTILINE), f"trailing spaces in {where}"
        assert "\n\n\n\n" not in text, f"more than two blank lines in a row in {where}"
