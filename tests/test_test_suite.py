"""The suite's own rules, as CI applies them: REQUIRE_NO_SKIPS=1 (tests/no_skips.py) fails a
run in which a test skipped, naming it, with and without pytest-xdist; without it a skip is a
skip. Each case is a pytest of its own on two small tests, one of which skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent

SMALL_SUITE = """
import pytest

def test_runs():
    assert True

def test_needs_a_server():
    pytest.skip("no server here")
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
@pytest.mark.parametrize("required", [True, False], ids=["required", "not required"])
def test_a_skip_fails_the_run_only_where_no_skips_are_required(
    tmp_path: Path, workers: list[str], required: bool
) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["no_skips"]\n')
    (tmp_path / "test_small.py").write_text(SMALL_SUITE)
    environment = {**os.environ, "PYTHONPATH": str(TESTS)}
    environment.pop("REQUIRE_NO_SKIPS", None)
    if required:
        environment["REQUIRE_NO_SKIPS"] = "1"

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *workers, str(tmp_path)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=120,
    )

    assert "1 passed, 1 skipped" in done.stdout, done.stdout[-2000:]
    line = "REQUIRE_NO_SKIPS=1: 1 skipped test(s) fail this run: test_small.py::test_needs_a_server"
    if required:
        assert done.returncode == 1 and line in done.stdout, done.stdout[-2000:]
    else:
        assert done.returncode == 0 and "REQUIRE_NO_SKIPS" not in done.stdout, done.stdout
