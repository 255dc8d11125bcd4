"""Database URLs fit to show: every password they carry replaced by `***`, in a URL and in
the messages that quote one (a driver's error, a source's config)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

SECRET_QUERY_KEYS = ("password", "pass", "pwd", "passfile", "sslpassword")


def masked(url: str) -> str:
    """A database URL fit to show: every password it carries, in the user info or the query,
    replaced by `***`."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if parts.password is None and not any(key.lower() in SECRET_QUERY_KEYS for key, _ in pairs):
        # Nothing to hide: the URL as it was (taken apart and put together again, an
        # SQLite URL's sqlite:////absolute/path would lose two of its slashes).
        return url
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:***@{netloc.rpartition('@')[2]}"
    query = urlencode(
        [(key, "***" if key.lower() in SECRET_QUERY_KEYS else value) for key, value in pairs],
        safe="*",
    )
    return parts._replace(netloc=netloc, query=query).geturl()


def masked_text(message: str) -> str:
    """Every database URL in a message masked (see `masked`)."""
    return re.sub(r"\b[a-z][a-z0-9+.-]*://\S+", lambda url: masked(url[0]), message)
