"""The history of one `run`, opened while the run's sources work.

Opening the history is most of what a `run` costs besides the workflow itself: importing
SQLAlchemy and Agno's SQLite database, and checking the tables, about a fifth of a second on
a quiet machine, more than the rest of the runtime adds to a plain Agno script. A run of
`python` sources does not need the history before its sources have run: Agno looks up the
run's session when the run starts (a session id this process has just made up, which no
history holds) and writes the session and the run when it ends. So `run` checks at once what
is cheap to check and would otherwise be found out late (history.prepare_sqlite_file: the
folder is writable, the file is a history and not damaged) and imports the rest in a thread
of its own, where the imports take their time while the sources wait on their I/O. Whatever
needs the database first (Agno's write at the end, mostly) opens it then, a few milliseconds
once the imports are done.

A run that needs the history sooner (a source that keeps a cursor) waits for it before it
starts: running.py asks `opened()`. A traced run does not: its spans are written once the
history is open (span_history.py). `serve`, `history` and the bench open it as
before (history.open_history): they do not wait for it on a user's behalf per run.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import threading
import uuid
from typing import TYPE_CHECKING, Any

from parallel_workflow_runtime._core.usage import HistoryError
from parallel_workflow_runtime._store.history import (
    HistoryLocation,
    history_for_run,
    history_location,
    open_history,
    prepare_sqlite_file,
)

if TYPE_CHECKING:
    from agno.db.base import BaseDb


class HistoryOpening:
    """Agno's history database, open or still opening: what Agno and the runtime call on it
    waits until it is open, and then goes to it; a failure to open it is raised by every call
    (HistoryError, one line).

    Only the imports run in the thread. The opening itself (the tables' check, creating them,
    Alembic) is done by the first call that needs the database, on the run's event loop when
    that call comes from another thread (Agno writes the session from a worker thread): it
    silences what Agno prints to stderr while it creates a table, and sys.stderr is the whole
    process's, so it is done where nothing else of the run prints meanwhile (a warning the
    loop was about to log, say), not beside it.

    The methods Agno looks up on the class itself are defined here (Agno tells a database that
    keeps runs apart from sessions by its class's `upsert_run`); the others go through
    `__getattr__`."""

    def __init__(self, location: HistoryLocation) -> None:
        self.location = location
        self._database: BaseDb | None = None
        self._failure: HistoryError | None = None
        self._opening = threading.Lock()
        self._new_sessions: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None  # the run's, once it has started
        self._imports = threading.Thread(
            target=import_history_modules, name="importing the history's modules", daemon=True
        )
        self._imports.start()

    def opened(self) -> BaseDb:
        """The database, once it is open (HistoryError if it could not be)."""
        loop = self._loop
        if self._database is None and loop is not None and loop.is_running():
            try:
                on_loop = asyncio.get_running_loop() is loop
            except RuntimeError:  # no loop in this thread
                on_loop = False
            if not on_loop:  # opened on the loop, this thread waiting for it
                return asyncio.run_coroutine_threadsafe(self._opened_on_loop(), loop).result()
        return self._open()

    async def _opened_on_loop(self) -> BaseDb:
        return self._open()

    def _open(self) -> BaseDb:
        with self._opening:
            if self._database is None and self._failure is None:
                self._imports.join()
                try:
                    self._database = open_history(self.location)
                except HistoryError as error:
                    self._failure = error
            if self._failure is not None:
                raise self._failure
            assert self._database is not None
            return self._database

    def database_if_open(self) -> BaseDb | None:
        """The database if it is open by now; None while it is not (nothing waits or opens):
        the trace's writer (span_history.py) writes once the run's own writes opened it."""
        return self._database

    def failure(self) -> HistoryError | None:
        """Why the history could not be opened (opening it if nobody has yet), or None."""
        try:
            self.opened()
        except HistoryError as error:
            return error
        return None

    def done(self) -> None:
        """Returns once the thread has imported what it imports: no thread outlives `run`."""
        self._imports.join()

    def new_session_id(self) -> str:
        """A session id for a run, which starts on the running loop (if any): until the
        history is open, nothing is stored under it."""
        with contextlib.suppress(RuntimeError):  # no running loop: opened where it is asked
            self._loop = asyncio.get_running_loop()
        session_id = str(uuid.uuid4())
        self._new_sessions.add(session_id)
        return session_id

    def get_session(self, session_id: str, *args: Any, **kwargs: Any) -> Any:
        # Agno asks for the run's session as the run starts: a session made up by this
        # process, written only through this object, so not stored while it is not open.
        if session_id in self._new_sessions and self._database is None:
            return None
        return self.opened().get_session(session_id, *args, **kwargs)

    def upsert_session(self, *args: Any, **kwargs: Any) -> Any:
        return self.opened().upsert_session(*args, **kwargs)

    def upsert_run(self, *args: Any, **kwargs: Any) -> Any:
        return self.opened().upsert_run(*args, **kwargs)

    def get_run(self, *args: Any, **kwargs: Any) -> Any:
        return self.opened().get_run(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Only for names this class does not have: the rest of Agno's database interface.
        if name.startswith("__"):  # copy, pickle and friends: not the database's
            raise AttributeError(name)
        return getattr(self.opened(), name)


def import_history_modules() -> None:
    """What opening an SQLite history imports: SQLAlchemy and Agno's SQLite database, most of
    the time it takes. One missing is left for open_history to report, in the caller's
    thread (MissingExtra names the extra to install)."""
    with contextlib.suppress(ImportError):
        import sqlalchemy.orm  # noqa: F401

        from parallel_workflow_runtime._store import (  # noqa: F401
            agno_adapter,
            history_db,
            migrate,
            tables,
        )


def history_while_running() -> BaseDb | HistoryOpening | None:
    """The history `run` records into (history.history_for_run), opening in the background
    when it is an SQLite file; checked at once as far as that is cheap: HistoryError if the
    file cannot be made, is another program's database or is damaged."""
    location = history_location()
    if location.sqlite_file is None or importlib.util.find_spec("sqlalchemy") is None:
        return history_for_run()  # PostgreSQL, or the library-only install: None
    prepare_sqlite_file(location.sqlite_file)
    return HistoryOpening(location)


def opened(db: BaseDb | HistoryOpening | None) -> BaseDb | None:
    """`db` itself, or the database a HistoryOpening opened (waiting for it)."""
    return db.opened() if isinstance(db, HistoryOpening) else db
