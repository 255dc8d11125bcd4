"""What the command line offers and what it reports: the values of its options, and the
errors it prints as one line (exit code 2) or as an interrupted run (exit code 130).

This module imports nothing, so that the command line builds its parser and catches these
errors without importing the modules that use them (Agno, pydantic, SQLAlchemy, ...):
`--help` answers at once and each command imports only what it needs. The modules that
raise these errors re-export them under their old names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from parallel_workflow_runtime._core.results import RunOutcome

# Where a source's `run` runs (executors.py); unset, `async def run` is awaited ("async") and a
# plain `def run` gets a thread of its own ("thread").
ExecutorName = Literal["thread", "async", "process", "dask"]
EXECUTOR_NAMES: tuple[ExecutorName, ...] = get_args(ExecutorName)

# What a run is asked to do when the command line or an HTTP request does not say.
DEFAULT_REQUEST = "Process all data sources"

# How long `check` waits for each source by default: long enough for a database or an API
# across the world to answer, short enough that a check of sources that do not answer is
# over in seconds (they are probed at once).
CHECK_TIMEOUT_SECONDS = 5.0


def missing_extra(what: str, extra: str) -> str:
    """The one line for a missing extra of the runtime. A rendered project installs them all in
    its one requirement on the runtime, so the extra was taken out of that requirement."""
    return (
        f"{what} needs the runtime's {extra} extra: keep {extra} in the extras of"
        " parallel-workflow-runtime[...] in the project's pyproject.toml, then pip install -e ."
    )


class UsageError(Exception):
    """Bad usage: printed as one line, exit code 2."""


class ConfigError(ValueError):
    """config.yaml (or settings.yaml) is missing something or holds a value of the wrong kind."""


class HistoryError(RuntimeError):
    """The history cannot be used: printed as one line, exit code 2."""


class ReportModelError(RuntimeError):
    """The configured report model cannot be used (unknown provider, SDK not installed, ...)."""


class ServeError(RuntimeError):
    """The server cannot start: printed as one line, exit code 2."""


class ExecutorError(Exception):
    """An executor cannot start (no extra installed, no scheduler there): one line, exit 2."""


class PageError(OSError):
    """A page cannot be written where asked: one line, exit code 2."""


class RunInterrupted(Exception):
    """Ctrl-C stopped the run; it was recorded as cancelled with the sources that finished."""

    def __init__(self, outcome: RunOutcome) -> None:
        super().__init__("interrupted")
        self.outcome = outcome


USAGE_ERRORS = (
    UsageError,
    ConfigError,
    ReportModelError,
    HistoryError,
    ServeError,
    ExecutorError,
    PageError,
)
