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
