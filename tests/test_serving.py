"""The `serve` extra on its own: a fresh virtual environment holding only the rendered project,
its `serve` and `postgres` extras and pytest runs the rendered project's HTTP tests. The wheels
come from .wheelhouse (scripts/bootstrap fills it), so the test itself needs no network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import TEMPLATE, copier

WHEELHOUSE = TEMPLATE / ".wheelhouse"


def test_the_serve_extra_alone_runs_the_rendered_http_tests(tmp_path: Path) -> None:
    assert (WHEELHOUSE / ".stamp").is_file(), "no .wheelhouse: run scripts/bootstrap first"
    project = tmp_path / "project"
    rendered = copier("copy", "--defaults", "--vcs-ref=HEAD", str(TEMPLATE), str(project))
    assert rendered.returncode == 0, rendered.stderr
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # uv resolves the extras from the same metadata pip reads, in about 1 s of CPU where pip
    # takes 18 s (measured on 2 cores): the suite's time goes to the tests, not the installer.
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "uv",
            "pip",
            "install",
            "--quiet",
            "--python",
            python,
            "--offline",
            "--no-index",
            "--no-cache",
            "--find-links",
            str(WHEELHOUSE),
            "-e",
            ".[serve,postgres]",
            "pytest",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHON"))}
    environment["AGNO_TELEMETRY"] = "false"

    result = subprocess.run(
        [python, "-m", "pytest", "tests/test_serve.py", "-q", "-rs", "-p", "no:cacheprovider"],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    if os.environ.get("TEST_DATABASE_URL"):  # .ci/run starts a server: PostgreSQL must run
        assert "skipped" not in result.stdout, result.stdout[-2000:]
