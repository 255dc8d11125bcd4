"""The heavy imports of the connector kinds, done once per process, under one lock, before
any connector source of that process reads.

Why: dlt tells a page of rows from a DataFrame or an Arrow table by looking pandas and pyarrow
up in `sys.modules` (dlt.common.libs.is_pandas_frame, is_arrow_object), and imports parts of
them lazily in the middle of a read (the `file` kind's CSV reader imports pandas, its Parquet
reader pyarrow.parquet). On `thread`, a `file` source's first read then imports pandas while an
`sql` or `http` source, in another thread, already reads: that one finds pandas in
`sys.modules` half made and fails with "partially initialized module 'pandas' has no attribute
'DataFrame'" (or pyarrow's Schema, Table), every first run of a process. Two threads importing
pandas and pyarrow at once can also meet in a circular import, which gives one of them the
half-made module the same way.

So every connector source's first act, wherever it runs (a thread, the event loop, a worker
process, a Dask worker's threads), is `imported_once()`: the first one imports all of it, the
others wait on the lock, and none reads before everything is imported. All kinds at once, not
only the caller's: an `sql` source's read is broken by a `file` source's import as much as by
its own. It costs about a second and a half, once per process, and only processes that run a
connector source pay it.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from typing import Any

from parallel_workflow_runtime._core.results import SourceError
from parallel_workflow_runtime._core.usage import missing_extra

# The dlt packages each kind needs, for the message when one is missing.
EXTRAS = {"sql": "sql", "http": "http", "file": "file"}

# What a connector's read imports, of any kind, with what dlt imports lazily during one.
# Each is imported if it is installed; a kind whose packages are missing says so when it reads.
# tests/test_connector_imports.py checks that a read of each kind imports none of these
# families afterwards (dlt, sqlalchemy, pandas, pyarrow, numpy, fsspec, requests).
HEAVY_MODULES = (
    "dlt",
    "dlt.extract.incremental.transform",
    "sqlalchemy",
    "sqlalchemy.dialects.sqlite",
    "dlt.sources.sql_database",
    "dlt.sources.sql_database.helpers",
    "dlt.sources.sql_database.schema_types",
    "dlt.sources.rest_api",
    "dlt.sources.helpers.requests",
    "dlt.sources.helpers.rest_client",
    "dlt.common.jsonpath",
    "dlt.sources.filesystem",
    "dlt.sources.filesystem.readers",
    "fsspec.implementations.local",
    "fsspec.implementations.chained",
    "numpy",
    "pandas",
    "pandas.core.methods.to_dict",
    "pyarrow",
    "pyarrow.parquet",
    "pyarrow.compute",
    "pyarrow.pandas_compat",
    "pyarrow.vendored.version",
    "dlt.common.libs.pandas",
    "dlt.common.libs.pyarrow",
    # The `sql` kind's backends besides sqlalchemy (sql.backend): dlt imports these in a read.
    "dlt.common.libs.pandas_sql",
    "dlt.sources.sql_database.arrow_helpers",
    "connectorx",
)

_lock = threading.Lock()
_done = False


def imported_once(kind: str) -> None:
    """Import what any connector kind's read needs, once in this process; the callers that
    come meanwhile wait until it is all imported. A SourceError if dlt itself is missing."""
    global _done
    if _done:  # the usual case, without the lock
        return
    with _lock:
        if _done:
            return
        dlt_module(kind)
        for name in HEAVY_MODULES:
            # Not installed (pandas without the `file` extra, sqlalchemy without `sql`): the
            # kind that needs it says so when it reads; the others never import it.
            with contextlib.suppress(Exception):
                importlib.import_module(name)
        with contextlib.suppress(Exception):
            # dlt's plugins: the entry points of every installed package, which dlt loads
            # (imports) on the first configuration it resolves, in the middle of a read.
            from dlt.common.configuration.plugins import manager

            manager()
        _done = True


def arrow_module() -> Any:
    """pyarrow, for `rows.batches()`: imported under the lock of `imported_once` until that has
    run (a test's Rows of its own, read before any connector), so that two threads never
    import it at once. A SourceError that says what to install if it is missing."""
    try:
        with contextlib.nullcontext() if _done else _lock:
            import pyarrow.compute  # type: ignore[import-untyped]
        import pyarrow
    except ImportError:
        raise SourceError(missing_extra("rows.batches()", "file")) from None
    return pyarrow


def dlt_module(kind: str) -> Any:
    """dlt, or a SourceError that says what to install."""
    try:
        import dlt
    except ImportError:
        raise SourceError(missing_extra(f"kind {kind}", EXTRAS[kind])) from None
    return dlt
