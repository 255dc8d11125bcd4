"""Test session settings: offline, and a git identity for the git commands Copier runs."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

# A skipped test fails the run under REQUIRE_NO_SKIPS=1 (.ci/run): pytest's hooks, imported.
from no_skips import pytest_sessionfinish, pytest_terminal_summary  # noqa: F401

from helpers import (
    TEMPLATE,
    copier,
    lowest_version,
    published_template,
    runtime_range,
    runtime_wheel,
)

HERE = Path(__file__).resolve().parent

for variable, value in {
    "GIT_AUTHOR_NAME": "parallel-workflow tests",
    "GIT_AUTHOR_EMAIL": "tests@localhost",
    "GIT_COMMITTER_NAME": "parallel-workflow tests",
    "GIT_COMMITTER_EMAIL": "tests@localhost",
    "AGNO_TELEMETRY": "false",
}.items():
    os.environ.setdefault(variable, value)


# The longest tests first, as measured (seconds on 2 cores with four workers).
LONGEST_FIRST = (
    "test_user_path.py::test_the_mixed_scenario",  # 390
    "test_user_path.py::test_the_defaults",  # 350
    "test_floors.py",  # 200
    "test_day_one.py::test_a_project_copied",  # 120, from the package index
    "test_day_one.py::test_a_0_5_0_project",  # 100
    "test_day_one.py::test_the_same_with_uv_sync",  # 65
    "test_lifecycle.py::test_a_project_whose_sources_were_all_rewritten",  # 90
    "test_lifecycle.py::test_a_second_workflow",  # 70
    "test_lifecycle.py::test_a_project_from_0_4_0",  # 60
    "test_the_rendered_project_passes_its_own_tests[256 sources - the rest]",  # 60
    "test_the_rendered_project_passes_its_own_tests[odd names",  # 50
    "test_the_rendered_project_passes_its_own_tests[twelve",  # 50
    "test_serving.py",  # 50
    "test_the_rendered_project_passes_its_own_tests[256 sources - CLI",  # 50
    "test_fuzz_names.py",  # 50
    "test_the_rendered_project_passes_its_own_tests",  # 35 each
    "test_lifecycle.py::test_an_update_",  # 30 each
)


# The template's tests render it with Copier and install, run and lint what it generated, in
# processes of their own: the integration tier (runtime/tests/conftest.py says what that is),
# but for these, which parse text in this process.
IN_PROCESS_MODULES = ("test_runtime_url.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    """Marks the template's tests (this folder's) `integration`, but IN_PROCESS_MODULES'.

    xdist (--maxschedchunk 1) starts each worker on two consecutive tests, then gives it the
    next one whenever it has one left. So the order is: each of the longest, one per worker,
    followed by one of the shortest, then the rest longest first: no worker starts with two
    long ones."""
    for item in items:
        if item.path.parent == HERE and item.path.name not in IN_PROCESS_MODULES:
            item.add_marker("integration")

    def rank(item) -> int:
        return next(
            (index for index, name in enumerate(LONGEST_FIRST) if name in item.nodeid),
            len(LONGEST_FIRST),
        )

    items.sort(key=rank)
    # Each xdist worker collects the same tests and sorts them the same way; without xdist,
    # or with a few tests chosen by hand, there is nothing to pair.
    workers = getattr(config, "workerinput", {}).get("workercount", 0)
    if workers == 0 or len(items) < 2 * workers:
        return
    longest, shortest = items[:workers], items[-workers:]
    rest = items[workers:-workers]
    items[:] = [test for pair in zip(longest, shortest, strict=True) for test in pair] + rest


@pytest.fixture(scope="module")
def default_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The default answers rendered with copier's command line, and what copier printed."""
    destination = tmp_path_factory.mktemp("default") / "project"
    result = copier("copy", "--defaults", "--vcs-ref=HEAD", str(TEMPLATE), str(destination))
    assert result.returncode == 0, result.stderr
    return destination, result.stdout + result.stderr


def shared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder all the test workers of this session share (under xdist their temporary
    folders have a parent that is new for each run)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    return shared


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of this checkout published as users reach the template (a bare git repository,
    scripts/snapshot): a project copied from it installs its runtime from it, as one copied
    from GitHub does. Made once, shared by the workers."""
    shared = shared_folder(tmp_path_factory)
    with (shared / "published.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        url_file = shared / "published.url"
        if not url_file.exists():
            url_file.write_text(published_template(shared / "parallel-workflow.git"))
        return url_file.read_text()


@pytest.fixture(scope="session")
def lowest_runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with the lowest runtime that the range of a project rendered with
    `runtime_from: index` admits and what its tests need, offline from .wheelhouse; made once,
    shared by the workers."""
    shared = shared_folder(tmp_path_factory)
    venv = shared / "lowest-runtime"
    with (shared / "lowest-runtime.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".ready").exists():
            project = shared / "lowest-runtime-project"
            if not project.exists():
                arguments = ("copy", "--defaults", "--vcs-ref=HEAD", "--data=runtime_from=index")
                arguments += (str(TEMPLATE), str(project))
                rendered = copier(*arguments)
                assert rendered.returncode == 0, rendered.stderr[-3000:]
            wheel = runtime_wheel(lowest_version(runtime_range(project)), shared / "wheels")
            uv = [sys.executable, "-m", "uv"]
            subprocess.run([*uv, "venv", "--quiet", str(venv)], check=True, timeout=300)
            install = subprocess.run(
                [
                    *uv, "pip", "install", "--quiet", "--offline", "--no-index",
                    "--find-links", str(TEMPLATE / ".wheelhouse"),
                    "--python", str(venv / "bin" / "python"),
                    f"parallel-workflow-runtime[serve] @ {wheel.as_uri()}", "pytest",
                ],
                capture_output=True,
                text=True,
                timeout=600,
            )  # fmt: skip
            assert install.returncode == 0, install.stderr[-3000:]
            (venv / ".ready").touch()
    return venv
