"""Honest floors: the rendered project at the lowest versions its pyproject allows for its
direct dependencies (`uv pip compile --resolution lowest-direct`, resolved by scripts/wheelhouse
into .wheelhouse/lowest-direct.txt) installs, lints, type-checks and passes its own tests. A
floor that does not work there (pebble 5.1.0 hung a run, pydantic 2.9 made Agno warn, ruff 0.6
and mypy 1.10 failed the project's own checks) fails this test until it is raised."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import copier
from user_path import WHEELHOUSE, clean_environment, shell, with_venv

LOWEST = WHEELHOUSE / "lowest-direct.txt"


def pins(text: str) -> dict[str, str]:
    """`name==version` lines by normalised name."""
    found = {}
    for line in text.splitlines():
        name, separator, version = line.split("#")[0].strip().partition("==")
        if separator:
            found[name.strip().lower().replace("_", "-")] = version.strip()
    return found


def test_the_rendered_project_works_at_its_lowest_direct_versions(
    published: str, tmp_path: Path
) -> None:
    assert LOWEST.is_file(), "no .wheelhouse/lowest-direct.txt: run scripts/bootstrap first"
    project = tmp_path / "project"
    # From the template's URL, as users copy it: the runtime comes from there too.
    rendered = copier("copy", "--defaults", published, str(project))
    assert rendered.returncode == 0, rendered.stderr[-3000:]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    uv = [sys.executable, "-m", "uv", "pip"]
    python = ["--python", str(venv / "bin" / "python")]
    offline = ["--offline", "--no-index", "--no-cache", "--find-links", str(WHEELHOUSE)]
    install = subprocess.run(
        [*uv, "install", "--quiet", *offline, *python, "-r", str(LOWEST), "-e", ".[dev]"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    # What is installed is the lowest resolution: nothing newer slipped in (the floors of a
    # template change that scripts/bootstrap has not resolved yet would, and fail here).
    frozen = subprocess.run([*uv, "freeze", *python], capture_output=True, text=True, check=True)
    installed, lowest = pins(frozen.stdout), pins(LOWEST.read_text(encoding="utf-8"))
    assert {name: installed.get(name) for name in lowest} == lowest
    for floor in ("pebble", "pydantic", "mypy", "ruff"):
        assert floor in lowest

    environment = with_venv(clean_environment(), venv) | {"AGNO_TELEMETRY": "false"}
    for command in ("ruff check .", "ruff format --check .", "mypy", "python -m pytest -q"):
        result = shell(command, project, environment)
        assert result.returncode == 0, f"{command}:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
