"""`python -m <package> serve`: every workflow the registry finds, over HTTP (see http_app.py).

The server listens on 127.0.0.1 unless `--host` says otherwise. Anywhere else it refuses to
start without OS_SECURITY_KEY, the key that every route but /health then requires as
`Authorization: Bearer <key>`, unless `--allow-unauthenticated` says that is intended.
This module imports no web framework, so that the command line starts without the serve extra.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import sys

from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.settings import load_settings
from parallel_workflow_runtime._core.usage import ExecutorName, ServeError, missing_extra
from parallel_workflow_runtime._execution.children import no_process_left_behind
from parallel_workflow_runtime._execution.executors import preflight
from parallel_workflow_runtime._observe import tracing
from parallel_workflow_runtime._store.history import HistoryLocation, open_history
from parallel_workflow_runtime._store.ticks import TickStore

SECURITY_KEY_ENV = "OS_SECURITY_KEY"  # read by AgentOS's key check
# Agno's key check lets every request through when these are set, trusting a JWT middleware
# that this server does not have.
JWT_ENVS = ("JWT_VERIFICATION_KEY", "JWT_JWKS_FILE")
SERVE_EXTRA = missing_extra("serving", "serve")


def serve(
    host: str,
    port: int,
    location: HistoryLocation,
    *,
    allow_unauthenticated: bool = False,
    executor: ExecutorName | None = None,
    trace: bool = False,
) -> None:
    """Serve until stopped; ServeError, before anything listens, when the server cannot.
    `trace` (or settings.yaml's `tracing`): every run traced (tracing.py), Agno's /traces
    routes served."""
    try:
        import uvicorn

        from parallel_workflow_runtime._serve.http_app import api_settings, build_app
        from parallel_workflow_runtime._serve.http_limits import (
            LISTEN_BACKLOG,
            LimitedConfig,
            LimitError,
            connection_limits,
        )
        from parallel_workflow_runtime._store.interrupted_runs import mark_interrupted
    except ImportError:
        raise ServeError(SERVE_EXTRA) from None
    settings = api_settings()
    warnings = security_warnings(host, bool(settings.os_security_key), allow_unauthenticated)
    options = load_settings().serve
    try:
        limits = connection_limits(options)
    except LimitError as error:
        raise ServeError(str(error)) from None
    if not is_loopback(host) and not options.allowed_hosts:
        warnings.append(
            f"note: only requests addressed to {host} or to this machine's loopback names are "
            "answered; add the host names clients use to serve.allowed_hosts in"
            f" {current().settings_path}"
        )
    db = open_history(location)
    interrupted = mark_interrupted(db)
    if interrupted:
        warnings.append(
            f"note: {interrupted} run(s) left running by a server that stopped are now "
            "recorded as failed (interrupted)"
        )
    traced = tracing.wanted(trace, load_settings().tracing)
    app = build_app(
        db, host=host, options=options, settings=settings, executor=executor, traced=traced
    )
    gone = TickStore.of(db).remove_schedules_but([s.key for s in app.state.schedules])
    if gone:
        warnings.append(
            f"note: schedule(s) {', '.join(gone)} are in no config.yaml now: their queued ticks "
            "are dropped (the ticks that ran stay in the history)"
        )
    if traced:  # now that the workflows' report models are imported (tracing.instrument_agno)
        tracing.enable(db, current().distribution)
    asyncio.run(preflight(app.state.executor_specs))  # ExecutorError: one line, exit code 2
    with listen(host, port, LISTEN_BACKLOG) as sock:
        # Only now that the port is ours: nothing claims to serve where it cannot.
        print(f"Serving on {url(host, port)} (API docs at /docs); run history: {location}")
        for warning in warnings:
            print(warning)
        sys.stdout.flush()  # before uvicorn's log lines, which go to stderr
        # What the runs' sources started ends with the server, at the latest (children.py).
        with no_process_left_behind():
            config = LimitedConfig(app, limits, host=host, port=port, log_level="info")
            try:
                uvicorn.Server(config).run(sockets=[sock])
            finally:
                tracing.flush()


def security_warnings(host: str, keyed: bool, allow_unauthenticated: bool) -> list[str]:
    """What to warn about; ServeError when serving as asked would be unsafe."""
    for name in JWT_ENVS:
        if os.environ.get(name):
            raise ServeError(
                f"{name} is set, which turns off Agno's {SECURITY_KEY_ENV} check, but this "
                f"server verifies no JWTs: unset {name}"
            )
    if keyed or is_loopback(host):
        return []
    if not allow_unauthenticated:
        raise ServeError(
            f"refusing to serve on {host} without a key, as anyone who can reach it could run "
            f"these workflows: set {SECURITY_KEY_ENV}=<a long random secret> or pass "
            "--allow-unauthenticated"
        )
    return [
        f"warning: no {SECURITY_KEY_ENV}: anyone who can reach {host} can run these "
        "workflows and read their history"
    ]


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A socket listening on host:port; ServeError, in one line, when it cannot be had."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        # As uvicorn does: a restarted server need not wait for old connections to time out.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as error:  # also a host name that does not resolve (socket.gaierror)
        sock.close()
        reason = (error.strerror or str(error)).lower()
        raise ServeError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name, which may resolve to any address


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
