"""Opening a database for the history safely: private SQLite files, locks while tables are
created, and error messages without passwords."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parallel_workflow_runtime._core.masking import masked_text

if TYPE_CHECKING:
    from agno.db.base import BaseDb
    from sqlalchemy.engine import Engine

# SQLAlchemy comes with the serve and postgres extras, not with the package: it is imported
# where a database is opened, so that the command line runs without it.


def create_private(sqlite_file: Path) -> None:
    """The SQLite file (and its folder, when it is new) readable by its owner alone: runs
    hold what the sources returned."""
    if not sqlite_file.parent.exists():
        sqlite_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(sqlite_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock among this machine's processes on `path`, a file that exists only
    while someone holds it: a lock file left beside the history after every run is litter.

    Whoever holds it deletes it before releasing it, so a process that was waiting may wake
    up holding a file no longer at `path` (or one that a newcomer created and locked since):
    it checks, and starts again on the file that is there now."""
    # POSIX only, imported here so that the command line imports on any system and can say
    # which systems it needs (cli.require_posix).
    import fcntl

    while True:
        descriptor = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except BaseException:
            os.close(descriptor)
            raise
        if _is_at(descriptor, path):
            break
        os.close(descriptor)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while still locked: nobody can take this file after
        os.close(descriptor)  # which releases the lock


def _is_at(descriptor: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def advisory_lock(db: BaseDb) -> Iterator[None]:
    """A PostgreSQL session lock held while the tables are created."""
    from sqlalchemy import text

    from parallel_workflow_runtime._store.agno_adapter import engine_of

    with engine_of(db).connect() as connection:
        # The tables take a while to create on a loaded machine: wait for whoever does it,
        # past the history's lock_timeout (bounded_lock_waits).
        connection.execute(text("SET LOCAL lock_timeout = 0"))
        connection.execute(text("SELECT pg_advisory_lock(hashtext('agno history tables'))"))
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(hashtext('agno history tables'))"))
            connection.commit()


# How long a statement of the history waits for another session's lock on PostgreSQL before
# it fails, as SQLite waits for its file's write lock (5 s, Python's default): a session
# stopped inside a transaction (its process stopped with SIGSTOP, say) would otherwise hold
# every other run up without end. A failed claim or renewal is tried again; a failed save
# says so in the run's errors.
LOCK_TIMEOUT_MS = 5000


def bounded_lock_waits(engine: Engine) -> None:
    """Every new PostgreSQL connection of `engine` waits at most LOCK_TIMEOUT_MS for a lock,
    whatever its URL's own `options` say besides."""
    from sqlalchemy import event

    @event.listens_for(engine, "do_connect")
    def _with_lock_timeout(
        dialect: Any, record: Any, arguments: Any, parameters: dict[str, Any]
    ) -> None:
        options = parameters.get("options", "")
        parameters["options"] = f"{options} -c lock_timeout={LOCK_TIMEOUT_MS}".strip()


def reason(error: Exception) -> str:
    """The database's own words for what went wrong, on one line, without any password."""
    original = getattr(error, "orig", None) or error
    return " ".join(masked_text(str(original)).split())
