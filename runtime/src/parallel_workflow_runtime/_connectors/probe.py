"""For the `check` command: a connector source's target reached (`probe`) without reading
its rows or moving its cursor, each kind as its module says (`sql_reached`, `http_reached`,
`files_reached`), within a timeout.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from parallel_workflow_runtime._connectors.connector_imports import imported_once
from parallel_workflow_runtime._connectors.connectors import connector_error, target_of
from parallel_workflow_runtime._connectors.files import files_reached
from parallel_workflow_runtime._connectors.http import http_reached, sample_items
from parallel_workflow_runtime._connectors.read_context import Deadline, Secrets, Target
from parallel_workflow_runtime._connectors.sql import sql_reached
from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.connector_config import FileBlock, HttpBlock, SqlBlock
from parallel_workflow_runtime._core.results import SourceError


def probe(source: Source, timeout: float) -> str:
    """Reach a connector source's target without reading its rows or moving its cursor: `sql`
    connects and finds its table (or runs its query for no rows) with the cursor column,
    `http` asks for the first page (with its auth) and counts its items, `file` lists the
    files that match; a source that reads its bundled sample probes the sample.

    One line of what it reached, e.g. "sample data/orders.sqlite: table records"; else a
    SourceError of one line, without a secret. Within `timeout` seconds in any case, even
    against a peer that accepts and never answers: the probe runs in a thread of its own,
    left behind if it has not finished by then (its connection's own timeouts, a second
    longer, end it soon after). dlt's first import is not timed: it is not the target's time.
    """
    if source.connector is None:
        raise SourceError(f"source {source.id!r} is of kind {source.kind}: it has no target")
    imported_once(source.kind)
    secrets = Secrets()
    outcome: list[tuple[bool, Any]] = []
    try:
        target = target_of(source, secrets)
        # The connection's own timeouts a second later than the wait below: what happens at
        # `timeout` is always that wait giving up (one message), never a race of the two.
        deadline = Deadline(time.monotonic() + timeout + 1.0, timeout + 1.0)

        def reach() -> None:
            try:
                outcome.append((True, reached(source, target, secrets, deadline)))
            except BaseException as error:  # handed over to the caller's thread
                outcome.append((False, error))

        worker = threading.Thread(target=reach, name=f"probe {source.id}", daemon=True)
        worker.start()
        worker.join(timeout)
        if not outcome:
            raise SourceError(f"{source.kind}: {target.where}: no answer within {timeout:g} s")
        succeeded, value = outcome[0]
        if not succeeded:
            raise value
    except SourceError as error:
        raise SourceError(secrets.scrubbed(str(error))) from None
    except Exception as error:
        raise SourceError(connector_error(source, error, secrets)) from None
    return str(value)


def reached(source: Source, target: Target, secrets: Secrets, deadline: Deadline) -> str:
    """What `probe` reached of the target, in its own thread."""
    block = source.connector
    if isinstance(block, SqlBlock):
        return sql_reached(block, target, deadline)
    if isinstance(block, HttpBlock):
        if target.sample is not None:
            items = sum(len(chunk) for chunk in sample_items(target.sample, target.where))
            return f"{target.where}: {items} items"
        return http_reached(source, block, target, secrets, deadline)
    assert isinstance(block, FileBlock)
    return files_reached(source, block)
