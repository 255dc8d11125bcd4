"""Every module the package imports is a dependency it declares (in `dependencies` or in an
extra), as deptry finds it with [tool.deptry] of pyproject.toml: nothing arrives only because
Agno, dlt or uvicorn happens to depend on it today."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import RUNTIME

# Each test here starts processes or servers (conftest.py: the test pyramid).
pytestmark = pytest.mark.integration


def deptry(folder: Path) -> subprocess.CompletedProcess[str]:
    """deptry over the package in `folder`: its pyproject.toml and src/ (not tests/)."""
    return subprocess.run(
        [sys.executable, "-m", "deptry", "--no-ansi", "."],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_import_is_a_declared_dependency() -> None:
    result = deptry(RUNTIME)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_import_whose_dependency_is_not_declared_is_found(tmp_path: Path) -> None:
    """The configuration checks what it should: without h11 (which http_limits.py imports and
    uvicorn depends on), deptry names it."""
    shutil.copytree(RUNTIME / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = (RUNTIME / "pyproject.toml").read_text(encoding="utf-8")
    h11 = [line for line in pyproject.splitlines(keepends=True) if '"h11>=' in line]
    assert len(h11) == 1, "runtime/pyproject.toml declares h11 once"
    (tmp_path / "pyproject.toml").write_text(pyproject.replace(h11[0], ""), encoding="utf-8")
    result = deptry(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "'h11' imported but it is a transitive dependency" in result.stdout + result.stderr
