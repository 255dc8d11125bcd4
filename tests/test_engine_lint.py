"""The engine, the part of the rendered project that is the same for every answer, is plain
Python in template/: ruff and mypy check it where it is, before anything is rendered."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import MYPY_CACHE, TEMPLATE

PACKAGE_TEMPLATE = TEMPLATE / "template" / "src" / "{{ package_name }}"


def tool(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=TEMPLATE,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_the_engine_has_no_jinja_and_is_ruff_clean() -> None:
    engine = sorted((PACKAGE_TEMPLATE / "_runtime").iterdir())
    assert [path.name for path in engine if path.suffix == ".jinja"] == []
    for command in (["ruff", "check", "."], ["ruff", "format", "--check", "."]):
        result = tool(*command)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_engine_type_checks_in_place(tmp_path: Path) -> None:
    # mypy wants a package name it can import: a link gives the template's folder one.
    (tmp_path / "parallel_workflow").symlink_to(PACKAGE_TEMPLATE, target_is_directory=True)
    environment = {**os.environ, "MYPYPATH": str(tmp_path)}

    result = tool("mypy", f"--cache-dir={MYPY_CACHE}", "-p", "parallel_workflow", env=environment)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found in" in result.stdout
