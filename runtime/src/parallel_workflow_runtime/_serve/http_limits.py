"""How long `serve` waits for a request, and how many connections it holds at once.

uvicorn bounds the size of a request's headers (h11's 16 KiB) and the idle time between two
requests on one connection (`timeout_keep_alive`), but not the time a client may take to send
its headers or its body: a client that connects and sends half a request holds a file
descriptor for ever. A thousand of them exhaust the open-file limit; accept() then fails on
every turn of the event loop and asyncio logs a traceback each time (hundreds of MB a minute),
while no new request, /health included, gets in. uvicorn's `limit_concurrency` does not help:
it answers 503 only once a request's headers have arrived, and the connection stays open.

So the server speaks HTTP through a subclass of uvicorn's h11 protocol that
- closes a connection whose request line and headers take longer than
  `serve.header_timeout_seconds`, or whose body takes longer than `serve.body_timeout_seconds`;
- keeps at most `max_connections` open: a new connection past it closes the one that has
  waited longest for a request (a half-sent one, or an idle keep-alive one), so that a real
  client, which sends its request at once, still gets in; when every connection is busy with
  a request, the newcomer is closed instead;
- says what it closed in one warning line per LOG_INTERVAL_SECONDS, not one per connection;
  so does a failed accept(), which asyncio would log with a traceback each time.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from parallel_workflow_runtime._core.settings import ServeSettings

# The kernel's queue of connections not yet accepted: uvicorn's. A shorter one would make
# clients wait (a connection refused while it is full is retried a second later).
LISTEN_BACKLOG = 2048
# The files the server needs besides its connections (the history, pools, pipes, logs), and
# room for the connections asyncio accepts in one go before the protocol sees them and closes
# others. Should a burst still exhaust the limit, asyncio retries accept() a second later.
FILES_RESERVED = 128
ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's message
LOG_INTERVAL_SECONDS = 60.0
HEADERS_LATE = "closed without complete headers in time"
BODY_LATE = "closed without a complete body in time"
logger = logging.getLogger("uvicorn.error")  # uvicorn's own log, on stderr


class LimitError(RuntimeError):
    """The open-file limit leaves no room for connections: one line, exit code 2."""


@dataclass
class ConnectionLimits:
    """The limits every connection of one server shares, and what it has closed lately."""

    header_timeout: float
    body_timeout: float
    max_connections: int
    closed: Counter[str] = field(default_factory=Counter)  # by why, since the last log line
    report: asyncio.Handle | None = None  # the next log line, while one is due

    def count(self, reason: str) -> None:
        """Count a connection closed for `reason`; the first of a quiet spell is logged at
        once, the others in one line per LOG_INTERVAL_SECONDS."""
        self.closed[reason] += 1
        if self.report is None:
            self.report = asyncio.get_running_loop().call_soon(self.log)

    def log(self) -> None:
        if self.closed:
            counts = ", ".join(f"{number} {reason}" for reason, number in self.closed.items())
            logger.warning("connections: %s", counts)
            self.closed.clear()
            # Another line no sooner than LOG_INTERVAL_SECONDS from now.
            self.report = asyncio.get_running_loop().call_later(LOG_INTERVAL_SECONDS, self.log)
        else:
            self.report = None


def connection_limits(options: ServeSettings) -> ConnectionLimits:
    """The limits of `options`, with max_connections lowered to what the open-file limit
    allows; the soft limit is raised first, up to the hard one, as far as they need."""
    wanted = options.max_connections + FILES_RESERVED
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass  # the soft limit stays as it is, and the cap below follows it
    allowed = options.max_connections
    if soft != resource.RLIM_INFINITY:
        allowed = min(allowed, soft - FILES_RESERVED)
    if allowed < 1:
        raise LimitError(
            f"the open-file limit of {soft} leaves no room for connections: the server needs "
            f"{FILES_RESERVED + 1} at least; raise it (ulimit -n)"
        )
    return ConnectionLimits(options.header_timeout_seconds, options.body_timeout_seconds, allowed)


class LimitedConfig(uvicorn.Config):
    """uvicorn's configuration, with the limits that LimitedH11Protocol reads."""

    def __init__(self, app: Any, limits: ConnectionLimits, **options: Any) -> None:
        super().__init__(app, http=LimitedH11Protocol, backlog=LISTEN_BACKLOG, **options)
        self.limits = limits
        logging.getLogger("asyncio").addFilter(AcceptFailures(limits))


class AcceptFailures(logging.Filter):
    """Counts asyncio's "socket.accept() out of system resource" (too many open files: it
    retries a second later) in ConnectionLimits' line instead of a traceback each time."""

    def __init__(self, limits: ConnectionLimits) -> None:
        super().__init__()
        self.limits = limits

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(ACCEPT_FAILED):
            return True
        self.limits.count("accept() calls that found no free file (retried a second later)")
        return False


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the deadlines and the connection cap of ConnectionLimits."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        assert isinstance(config, LimitedConfig)
        self.limits = config.limits
        self.deadline: asyncio.TimerHandle | None = None
        self.receiving_body = False  # the deadline running is the body's
        # When it began to wait for a request (connected, or answered the last one); None
        # while a request is being received or answered.
        self.waiting_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.waiting_since = self.loop.time()
        if len(self.connections) > self.limits.max_connections and not self.evict_one():
            self.limits.count("refused at the connection limit, every one busy")
            self.close()
            return
        self.start_deadline(self.limits.header_timeout, HEADERS_LATE)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.IDLE:  # still no complete request line and headers
            if self.deadline is None:  # the first bytes after an idle keep-alive spell
                self.start_deadline(self.limits.header_timeout, HEADERS_LATE)
        elif state is h11.SEND_BODY:
            self.waiting_since = None
            if not self.receiving_body:
                self.start_deadline(self.limits.body_timeout, BODY_LATE)
                self.receiving_body = True
        else:  # the request is in, or the connection is over
            self.waiting_since = None
            self.stop_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.waiting_since = self.loop.time()  # uvicorn's keep-alive timeout runs now

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_deadline()
        super().connection_lost(exc)

    def evict_one(self) -> bool:
        """Close the connection that has waited longest for a request; False if none waits."""
        waiting = [
            connection
            for connection in self.connections
            if isinstance(connection, LimitedH11Protocol)
            and connection is not self
            and connection.waiting_since is not None
        ]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda connection: connection.waiting_since or 0.0)
        self.limits.count("closed at the connection limit while waiting for a request")
        oldest.close()
        return True

    def start_deadline(self, seconds: float, reason: str) -> None:
        self.stop_deadline()
        self.deadline = self.loop.call_later(seconds, self.expire, reason)

    def stop_deadline(self) -> None:
        self.receiving_body = False
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def expire(self, reason: str) -> None:
        self.deadline = None
        self.limits.count(reason)
        self.close()

    def close(self) -> None:
        """Close the connection; an answer being sent is cut short (the app sees a
        disconnect)."""
        self.waiting_since = None
        self.stop_deadline()
        if not self.transport.is_closing():
            self.transport.close()
        self.connections.discard(self)  # at once: the cap counts it out from now
