"""`python -m <package> serve`: every workflow the registry finds, over HTTP, with Agno's AgentOS.

The app lists the workflows (`GET /workflows`), runs one (`POST /workflows/<id>/runs` with
the form fields `message` and `stream=false`) and reads a run back from the history
(`GET /workflows/<id>/runs/<run_id>?session_id=<session_id>`); `/docs` shows every route.
Set OS_SECURITY_KEY and every route but /health requires `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .history import HistoryLocation, open_history
from .registry import discover
from .settings import PACKAGE

if TYPE_CHECKING:
    from agno.db.base import BaseDb
    from fastapi import FastAPI

SECURITY_KEY_ENV = "OS_SECURITY_KEY"  # read by AgentOS itself
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class ServeError(RuntimeError):
    """The server cannot start: printed as one line, exit code 2."""


def build_app(db: BaseDb) -> FastAPI:
    """The AgentOS app serving every discovered workflow, with `db` as its run history."""
    try:
        from agno.os import AgentOS
    except ImportError:
        raise ServeError('serving needs the serve extra: pip install -e ".[serve]"') from None
    agent_os = AgentOS(
        id=PACKAGE.replace("_", "-"),
        description="Agno workflows that process data sources in parallel",
        workflows=[entry.factory(db=db) for entry in discover().values()],
        db=db,  # the same history as the workflows', so the session routes find their runs
        telemetry=False,  # AgentOS ignores AGNO_TELEMETRY; this project stays offline
    )
    return agent_os.get_app()


def serve(host: str, port: int, location: HistoryLocation) -> None:
    try:
        import uvicorn
    except ImportError:
        raise ServeError('serving needs the serve extra: pip install -e ".[serve]"') from None
    app = build_app(open_history(location))
    print(f"Serving on http://{host}:{port} (API docs at /docs); run history: {location}")
    if host not in LOOPBACK and not os.environ.get(SECURITY_KEY_ENV):
        print(
            f"warning: anyone who can reach {host}:{port} can run these workflows; "
            f"set {SECURITY_KEY_ENV} to require a key"
        )
    uvicorn.run(app, host=host, port=port, log_level="info")
