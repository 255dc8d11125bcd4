"""`check`'s rows about the sources: each source's module imported as `run` imports it,
one at a time under the timeout, and each connector source's target probed (_connectors/probe.py:
connect and read a first page or list the files), all at once, each in a daemon thread of its
own. And sample_of: the bundled sample a connector source reads while it is not configured,
which is not a problem (a fresh render reads it).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from parallel_workflow_runtime._cli.check_findings import PROBLEM, Finding
from parallel_workflow_runtime._core.config import Source, WorkflowConfig
from parallel_workflow_runtime._core.connector_config import HttpBlock, SqlBlock
from parallel_workflow_runtime._core.masking import masked_text
from parallel_workflow_runtime._core.results import SourceError, one_line
from parallel_workflow_runtime._core.usage import USAGE_ERRORS

# How much longer than its timeout a probe may take before check stops waiting for it: the
# connectors bound their own waits by the timeout, this is for one that does not.
PROBE_GRACE_SECONDS = 2.0


def sample_of(source: Source) -> str | None:
    """The bundled sample a connector source falls back to while it is not configured (sql's
    `sqlite_file`, http's `sample_file`); None when it has none."""
    block = source.connector
    if isinstance(block, SqlBlock):
        return block.sqlite_file
    if isinstance(block, HttpBlock):
        return block.sample_file
    return None


def source_findings(
    configs: dict[str, WorkflowConfig],
    modules: dict[tuple[str, str], str | None],
    timeout: float,
) -> list[Finding]:
    """A row per source, named `<workflow>/<source> (<kind>)`: what kept its module from
    giving its `run` (a run would fail the source), else each connector source's target
    probed, all at once, under `timeout`."""
    connectors_imported(configs)
    rows: list[tuple[str, Probe | Finding]] = []
    for config in configs.values():
        for source in config.sources:
            name = f"{config.workflow_id}/{source.id} ({source.kind})"
            problem = modules[config.workflow_id, source.id]
            if problem is not None:
                rows.append((name, Finding("source", name, PROBLEM, problem)))
            elif source.connector is None:
                rows.append((name, Finding("source", name, "not probed", "its run reads the data")))
            else:
                rows.append((name, Probe(source, timeout)))
    return [
        row if isinstance(row, Finding) else Finding("source", name, *row.outcome())
        for name, row in rows
    ]


# How a finding ends when a user's module did not return: its code blocks when imported.
BLOCKS = ": its code blocks when imported (a wait, a connection that never answers, a loop)"

Result = TypeVar("Result")


def within(seconds: float, call: Callable[[], Result]) -> Result | None:
    """`call()` in a daemon thread, waited for `seconds`: its result, its exception raised
    here, or None when it has not returned by then. The thread of a call that never returns
    is left behind; a daemon, it does not keep the process alive."""
    outcome: list[tuple[bool, Any]] = []

    def target() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as error:  # handed to the caller, whatever it is
            outcome.append((False, error))

    thread = threading.Thread(target=target, name="check-import", daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        return None
    returned, value = outcome[0]
    if not returned:
        raise value
    return value


def module_problems(
    configs: dict[str, WorkflowConfig], timeout: float
) -> dict[tuple[str, str], str | None]:
    """What keeps each source's module, sources/<id>.py, from giving its `run` (None: nothing),
    by (workflow id, source id). One module at a time, each within `timeout`: modules that
    import the same heavy library at once could break each other's import."""
    return {
        (config.workflow_id, source.id): module_problem(config, source, timeout)
        for config in configs.values()
        for source in config.sources
    }


def module_problem(config: WorkflowConfig, source: Source, timeout: float) -> str | None:
    from parallel_workflow_runtime._execution.steps import CannotRun, load_source_function

    try:
        function = within(timeout, lambda: load_source_function(config, source))
    except USAGE_ERRORS as error:  # no module, or no run in it
        return str(error)
    if function is None:
        return f"sources/{source.id}.py is still importing after {timeout:g} s{BLOCKS}"
    return function.message if isinstance(function, CannotRun) else None


def connectors_imported(configs: dict[str, WorkflowConfig]) -> None:
    """dlt and what the connectors read with, imported before the probes start their clocks:
    a second or two on a warm machine, far more on a cold and busy one, which the timeout is
    not about (the target's answer is). A missing dlt is the probes' finding."""
    from parallel_workflow_runtime._connectors.connector_imports import imported_once

    kinds = [s.kind for c in configs.values() for s in c.sources if s.connector is not None]
    if kinds:
        with contextlib.suppress(SourceError):
            imported_once(kinds[0])


class Probe:
    """probe.probe of one source in a daemon thread of its own: the probes run at once,
    and one that never returns neither holds the others up nor keeps the process alive."""

    def __init__(self, source: Source, timeout: float) -> None:
        self.source = source
        self.timeout = timeout
        self.result: tuple[str, str] | None = None
        self.thread = threading.Thread(target=self.run, name=f"check-{source.id}", daemon=True)
        self.thread.start()

    def run(self) -> None:
        from parallel_workflow_runtime._connectors.probe import probe

        try:
            line = probe(self.source, self.timeout)
        except SourceError as error:
            self.result = (PROBLEM, one_line(error))
        except Exception as error:  # whatever stops it is the finding
            self.result = (PROBLEM, masked_text(one_line(error)))
        else:
            # What probe reached starts with "sample <file>" when it is the bundled sample.
            sample = sample_of(self.source)
            reads_sample = sample is not None and line.startswith(f"sample {sample}")
            self.result = ("sample" if reads_sample else "ok", line)

    def outcome(self) -> tuple[str, str]:
        self.thread.join(self.timeout + PROBE_GRACE_SECONDS)
        if self.result is None:
            return (PROBLEM, f"no answer within {self.timeout:g} s")
        return self.result
