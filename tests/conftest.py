"""Test session settings: offline, and a git identity for the git commands Copier runs."""

from __future__ import annotations

import os

for variable, value in {
    "GIT_AUTHOR_NAME": "parallel-workflow tests",
    "GIT_AUTHOR_EMAIL": "tests@localhost",
    "GIT_COMMITTER_NAME": "parallel-workflow tests",
    "GIT_COMMITTER_EMAIL": "tests@localhost",
    "AGNO_TELEMETRY": "false",
}.items():
    os.environ.setdefault(variable, value)


# The longest tests first, so that the four workers do not end waiting for one of them.
LONGEST_FIRST = (
    "test_render_matrix.py::test_the_rendered_project_passes_its_own_tests",
    "test_lifecycle.py::test_a_project_from_0_4_0",
    "test_serving.py",
    "test_lifecycle.py::test_a_second_workflow",
    "test_fuzz_names.py",
)


def pytest_collection_modifyitems(items: list) -> None:
    def rank(item) -> int:
        return next(
            (index for index, name in enumerate(LONGEST_FIRST) if name in item.nodeid),
            len(LONGEST_FIRST),
        )

    items.sort(key=rank)
