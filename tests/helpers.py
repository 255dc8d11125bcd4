"""Helpers to render the template and run what it rendered, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]


def project_env(project: Path) -> dict[str, str]:
    """The environment of a rendered project's processes: its src on the path, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env["PYTHONPATH"] = str(project / "src")
    env["AGNO_TELEMETRY"] = "false"
    return env


def run_in(project: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `python <args>` inside a rendered project with this interpreter."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env=project_env(project),
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
