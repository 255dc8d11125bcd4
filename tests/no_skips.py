"""REQUIRE_NO_SKIPS=1 (as .ci/run sets): a suite in which any test skipped fails.

A test skips where this machine lacks what it needs (PostgreSQL, Chromium, Phoenix, another
Python). On a developer's machine that is fine, and `-ra` lists why; in CI a skip would hide
a test that was never run behind a green result, so there the run fails and names each one.
Loaded by tests/conftest.py; on pytest-xdist only the controller sees every worker's skips.
"""

from __future__ import annotations

import os

import pytest

VARIABLE = "REQUIRE_NO_SKIPS"


def skipped_reports(config: pytest.Config) -> list[pytest.TestReport]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or os.environ.get(VARIABLE) != "1":
        return []
    return list(reporter.stats.get("skipped", []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if skipped_reports(session.config) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = skipped_reports(terminalreporter.config)
    if skipped:
        terminalreporter.write_line(
            f"{VARIABLE}=1: {len(skipped)} skipped test(s) fail this run: "
            + ", ".join(report.nodeid for report in skipped),
            red=True,
        )
