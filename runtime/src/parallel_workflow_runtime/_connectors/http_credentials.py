"""What an `http` source authenticates with (`Credentials`), read from the environment by its
auth block (a bearer token, HTTP Basic, an API key in a header, the query or a cookie; with no
auth block, ~/.netrc's), and the origins (scheme, host, port) that say where they may go: to
base_url's origin alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from parallel_workflow_runtime._connectors.read_context import Notes, Secrets, basic_credentials
from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.connector_config import HttpBlock
from parallel_workflow_runtime._core.results import SourceError

Origin = tuple[str, str, int]
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> Origin:
    """A URL's origin: its scheme, host and port (the scheme's default port if it has none)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(scheme, 0)


def origin_shown(origin: Origin) -> str:
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    return (
        f"{scheme}://{host}" if port == DEFAULT_PORTS.get(scheme) else f"{scheme}://{host}:{port}"
    )


@dataclass
class Credentials:
    """What an `http` source authenticates with, for base_url's origin (scheme, host, port)
    alone: a request to another origin, where a next-page link or a redirect leads, goes
    without them, and the source's warnings say so.

    Why dropped and not refused: it is what browsers, curl and requests do with a redirect
    (an API may answer a download or a next page from a CDN or a storage bucket, which needs
    no credentials); a host that wanted them answers 401 or 403, and that failure's line says
    the credentials were not sent there."""

    origin: Origin
    headers: dict[str, str] = field(default_factory=dict)  # Authorization, an API key header
    query: dict[str, str] = field(default_factory=dict)  # an API key in the query
    cookies: dict[str, str] = field(default_factory=dict)  # an API key as a cookie
    notes: Notes = field(default_factory=Notes)

    def __bool__(self) -> bool:
        return bool(self.headers or self.query or self.cookies)

    def applied(self, request: Any) -> Any:
        """The request as it goes out: a copy with the credentials if it goes to base_url's
        origin, else as it is, which is without them.

        A copy, so that the request requests keeps (it copies it to follow a redirect) and
        the ones dlt makes for the next pages never hold them: a request to another origin has
        no way to carry them (requests strips only Authorization from a redirect, and only
        when the host changes; dlt put its auth on every request)."""
        if not self:
            return request
        origin = origin_of(request.url)
        if origin != self.origin:
            self.withheld(origin)
            return request
        request = request.copy()
        request.headers.update(self.headers)
        if self.query:
            request.prepare_url(request.url, self.query)
        if self.cookies:
            ours = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
            theirs = request.headers.get("Cookie")
            request.headers["Cookie"] = f"{theirs}; {ours}" if theirs else ours
        return request

    def withheld(self, origin: Origin) -> None:
        there, ours = origin_shown(origin), origin_shown(self.origin)
        self.notes.warn(
            f"http: sent the requests to {there} (a next page or a redirect) without"
            f" credentials: they go only to base_url's origin {ours}"
        )
        self.notes.hint(
            f"credentials were not sent to {there}: they go only to base_url's origin {ours}"
        )


# What a cookie value may hold (RFC 6265's cookie-octet): no space, quote, comma, semicolon or
# backslash, nor a control character.
COOKIE_VALUE = re.compile(r"[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*")


def http_credentials(
    source: Source, block: HttpBlock, secrets: Secrets, notes: Notes
) -> Credentials:
    """The credentials of an `http` block's auth, read from the environment (with no auth
    block, those ~/.netrc has for base_url's host, as requests would send)."""
    import requests.utils

    credentials = Credentials(origin_of(block.base_url), notes=notes)
    auth = block.auth
    what = f"http.auth of source {source.id!r}"
    if auth is None:
        netrc = requests.utils.get_netrc_auth(block.base_url)
        if netrc is not None:
            username, password = netrc
            secrets.add_basic(username, password)
            credentials.headers["Authorization"] = basic_credentials(username, password)
    elif auth.type == "bearer":
        credentials.headers["Authorization"] = f"Bearer {secrets.read(auth.token_env, what)}"
    elif auth.type == "http_basic":
        password = secrets.read(auth.password_env, what)
        secrets.add_basic(auth.username, password)
        credentials.headers["Authorization"] = basic_credentials(auth.username, password)
    elif auth.location == "header":
        credentials.headers[auth.name] = secrets.read(auth.api_key_env, what)
    elif auth.location == "query":
        credentials.query[auth.name] = secrets.read(auth.api_key_env, what)
    else:  # a cookie, which dlt's APIKeyAuth does not do (NotImplementedError)
        key = secrets.read(auth.api_key_env, what)
        if not COOKIE_VALUE.fullmatch(key):
            raise SourceError(
                f"{what}: the API key in {auth.api_key_env} holds a character a cookie cannot"
                " carry (a space, a quote, a comma, a semicolon or a backslash): send it in a"
                " header or the query (http.auth.location)"
            )
        credentials.cookies[auth.name] = key
    return credentials
