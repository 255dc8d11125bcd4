"""The engine, the part of the rendered project that is the same for every answer, is plain
Python in template/: ruff and mypy check it where it is, before anything is rendered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import PACKAGE_TEMPLATE, TEMPLATE, type_check_engine, warm_mypy_cache


def tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=TEMPLATE, capture_output=True, text=True, timeout=300
    )


def test_the_engine_has_no_jinja_and_is_ruff_clean() -> None:
    engine = sorted((PACKAGE_TEMPLATE / "_runtime").iterdir())
    assert [path.name for path in engine if path.suffix == ".jinja"] == []
    for command in (["ruff", "check", "."], ["ruff", "format", "--check", "."]):
        result = tool(*command)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_engine_type_checks_in_place(tmp_path: Path) -> None:
    warm_mypy_cache()

    result = type_check_engine(tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found in" in result.stdout
