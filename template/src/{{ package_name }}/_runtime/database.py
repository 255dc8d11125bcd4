"""Opening a database for the history safely: private SQLite files, locks while tables are
created, and error messages and URLs without passwords."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit

if TYPE_CHECKING:
    from agno.db.base import BaseDb

# SQLAlchemy comes with the serve and postgres extras, not with the package: it is imported
# where a database is opened, so that the command line runs without it.

SECRET_QUERY_KEYS = ("password", "pass", "pwd", "passfile", "sslpassword")


def masked(url: str) -> str:
    """A database URL fit to show: every password it carries, in the user info or the query,
    replaced by `***`."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:***@{netloc.rpartition('@')[2]}"
    query = urlencode(
        [
            (key, "***" if key.lower() in SECRET_QUERY_KEYS else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    return parts._replace(netloc=netloc, query=query).geturl()


def create_private(sqlite_file: Path) -> None:
    """The SQLite file (and its folder, when it is new) readable by its owner alone: runs
    hold what the sources returned."""
    if not sqlite_file.parent.exists():
        sqlite_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(sqlite_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    with open(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def advisory_lock(db: BaseDb) -> Iterator[None]:
    """A PostgreSQL session lock held while the tables are created."""
    from sqlalchemy import text

    engine = db.db_engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(hashtext('agno history tables'))"))
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(hashtext('agno history tables'))"))
            connection.commit()


def reason(error: Exception) -> str:
    """The database's own words for what went wrong, on one line, without any password."""
    original = getattr(error, "orig", None) or error
    return " ".join(masked_text(str(original)).split())


def masked_text(message: str) -> str:
    """Every database URL in a message masked (see `masked`)."""
    return re.sub(r"\b[a-z][a-z0-9+.-]*://\S+", lambda url: masked(url[0]), message)
