"""What `serve` answers, and to whom: a browser must not be able to drive it from another site.

- DNS rebinding: a page on evil.example can make its own name resolve to 127.0.0.1 and then
  call this server "same-origin". Its requests still carry `Host: evil.example`, so only the
  names this server is really reached by are answered (Starlette's TrustedHostMiddleware).
- Cross-site requests: a page on any site can post a form here; the browser sends it with
  that site's `Origin`. A state-changing request from another origin gets 403.
- CORS is off unless `serve.cors_origins` in settings.yaml lists the origins of pages that
  may call the API from a browser.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.settings import ServeSettings
from parallel_workflow_runtime._core.usage import ConfigError

# As Starlette reads them from the Host header: without the port, an IPv6 address in brackets.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def add_guards(app: FastAPI, host: str, options: ServeSettings) -> None:
    """The Host check, CORS when configured and the Origin check, in that order."""
    cors_origins = [origin.rstrip("/") for origin in options.cors_origins]
    # Starlette runs the middleware added last first.
    app.add_middleware(OriginGuard, trusted_origins=cors_origins)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host, options))


def allowed_hosts(host: str, options: ServeSettings) -> list[str]:
    """The Host names answered: the address listened on, the loopback names, the configured."""
    for name in options.allowed_hosts:
        # Starlette takes `*.example.com` but no other wildcard, and would fail with an assert.
        if "*" in name[1:] or (name.startswith("*") and not name.startswith("*.")):
            raise ConfigError(
                f"{current().settings_path}: serve.allowed_hosts: {name!r} is not a host name; "
                "a wildcard must look like *.example.com"
            )
    return [host_name(host), *LOOPBACK_NAMES, *(name.lower() for name in options.allowed_hosts)]


def host_name(host: str) -> str:
    """`host` as it appears in a URL or a Host header: an IPv6 address in brackets."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host.lower()  # a name, such as localhost
    return f"[{address}]" if address.version == 6 else str(address)


class OriginGuard:
    """Refuses, with 403, a state-changing request sent from another origin than this
    server's own or a configured CORS origin. Browsers name the page's origin in `Origin`
    (older ones at least say `Sec-Fetch-Site: cross-site`); scripts and curl send neither,
    and need the key instead when one is set."""

    def __init__(self, app: ASGIApp, trusted_origins: Sequence[str]) -> None:
        self.app = app
        self.trusted_origins = {origin.lower() for origin in trusted_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING:
            headers = Headers(scope=scope)
            # TrustedHostMiddleware, which runs first, has checked the Host header.
            refusal = self.refusal(headers, f"{scope['scheme']}://{headers.get('host', '')}")
            if refusal is not None:
                await JSONResponse({"detail": refusal}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, headers: Headers, own_origin: str) -> str | None:
        """Why the request is refused, or None."""
        origin = headers.get("origin")
        if origin is None:
            if headers.get("sec-fetch-site") == "cross-site":
                return "refused a cross-site request: only this server's own pages may send it"
            return None
        if origin.rstrip("/").lower() in {own_origin.lower(), *self.trusted_origins}:
            return None
        return (
            f"refused a request from origin {origin}: it is not this server's own origin "
            "nor one of serve.cors_origins"
        )
