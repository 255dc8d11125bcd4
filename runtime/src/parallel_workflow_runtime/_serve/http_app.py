"""The FastAPI app that `serve` runs: the few routes this project needs, most of them Agno's.

AgentOS's own app mounts about a hundred routes (memories, schedules, database migrations,
deleting sessions, ...). This one takes only the routes listed in AGNO_ROUTES from AgentOS's
routers, and adds its own for running a workflow, so that an HTTP run goes through
`running.run_workflow` and gets the same checks as a CLI run, and for the API docs
(http_docs.py), so that the security key protects them too. Agno's key check (OS_SECURITY_KEY)
guards every route but /health.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

from agno.os import AgentOS
from agno.os.auth import get_authentication_dependency
from agno.os.routers.health import get_health_router
from agno.os.routers.session import get_session_router
from agno.os.routers.workflows import get_workflow_router
from agno.os.settings import AgnoAPISettings
from agno.run.workflow import WorkflowRunOutput
from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute

from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.registry import discover
from parallel_workflow_runtime._core.results import RunOutcome
from parallel_workflow_runtime._core.settings import ServeSettings, load_settings
from parallel_workflow_runtime._core.usage import ExecutorName, HistoryError
from parallel_workflow_runtime._execution.contained_loop import LoopThread
from parallel_workflow_runtime._execution.executors import (
    Executors,
    pooled_specs,
    start_process_workers_early,
)
from parallel_workflow_runtime._execution.running import on_executor, run_workflow
from parallel_workflow_runtime._observe.page import record_page
from parallel_workflow_runtime._observe.trace_view import run_spans
from parallel_workflow_runtime._schedule.scheduled import checked_schedules, serving_scheduler
from parallel_workflow_runtime._serve.http_docs import add_docs_routes
from parallel_workflow_runtime._serve.http_guards import add_guards
from parallel_workflow_runtime._store.history import stored_run
from parallel_workflow_runtime._store.interrupted_runs import stand_in

if TYPE_CHECKING:
    from agno.db.base import BaseDb
    from agno.workflow import Workflow

    from parallel_workflow_runtime._core.config import WorkflowConfig

# The routes served as Agno's routers define them: health, the workflows and a run's session
# (whose session_state holds the aggregation). A run is read back by a route of this module:
# Agno's answers 500 to an empty session_id.
AGNO_ROUTES = frozenset(
    {
        ("GET", "/health"),
        ("GET", "/workflows"),
        ("GET", "/workflows/{workflow_id}"),
        ("GET", "/sessions/{session_id}"),
    }
)
# With tracing on: Agno's routes that read the traces in the history (its span trees).
TRACE_ROUTES = frozenset(
    {
        ("GET", "/traces"),
        ("GET", "/traces/{trace_id}"),
        ("GET", "/traces/filter-schema"),
        ("GET", "/trace_session_stats"),
        ("POST", "/traces/search"),
    }
)
# What every route of this module may answer besides its own: no or a wrong key (when
# OS_SECURITY_KEY is set), and a Host header this server is not reached by (http_guards.py).
GUARDED: dict[int | str, dict[str, Any]] = {
    400: {"description": "A Host header that this server does not answer"},
    401: {"description": "No or a wrong `Authorization: Bearer <OS_SECURITY_KEY>`"},
}
OUTCOME_EVENT = "RunOutcome"  # the name of a stream's last event, the run's document
logger = logging.getLogger(__name__)


def api_settings() -> AgnoAPISettings:
    """AgentOS's settings, OS_SECURITY_KEY among them, from the environment."""
    # With authorization_enabled, Agno's key check lets every request through, trusting a JWT
    # middleware to have checked it; this app has none.
    return AgnoAPISettings(authorization_enabled=False)


def build_app(
    db: BaseDb,
    *,
    host: str = "127.0.0.1",
    options: ServeSettings | None = None,
    settings: AgnoAPISettings | None = None,
    executor: ExecutorName | None = None,
    traced: bool = False,
) -> FastAPI:
    """The app serving every discovered workflow on `host`, with `db` as the run history,
    every source on `executor` if given (`serve --executor`), and Agno's /traces routes if
    `traced`."""
    entries = discover()
    configs = {wid: on_executor(entry.config, executor) for wid, entry in entries.items()}
    workflows = {wid: entries[wid].factory(db=db, config=configs[wid]) for wid in entries}
    return app_serving(
        workflows, configs, db, host=host, options=options, settings=settings, traced=traced
    )


def app_serving(
    workflows: dict[str, Workflow],
    configs: Mapping[str, WorkflowConfig],
    db: BaseDb,
    *,
    host: str = "127.0.0.1",
    options: ServeSettings | None = None,
    settings: AgnoAPISettings | None = None,
    traced: bool = False,
) -> FastAPI:
    """The app serving `workflows` (built from `configs`, by workflow id) on `host`: what
    build_app serves, and `bench --serve` too, with synthetic sources (bench/server.py)."""
    settings = settings or api_settings()
    # The process pools and Dask clusters of every workflow's sources: started with the
    # server, shared by its runs, closed when it stops.
    executors = Executors()
    dask_address = load_settings().dask_address
    specs = {spec for config in configs.values() for spec in pooled_specs(config, dask_address)}

    # The runs, on a loop of their own: one that blocks cannot stop the server answering.
    runs = LoopThread("runs")
    # config.yaml's schedules, run by this replica among the others (scheduler.py).
    timing = load_settings().scheduler
    schedules = checked_schedules(configs, timing.poll_seconds)  # UsageError before listening
    scheduler = (
        serving_scheduler(db, workflows, schedules, executors, timing) if schedules else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ticking: asyncio.Future[None] | None = None
        try:
            # The process workers' fork server imports the workflows' code meanwhile.
            start_process_workers_early(configs.values())
            await runs.run(executors.start(specs))
            if scheduler is not None:
                ticking = asyncio.ensure_future(runs.run(scheduler.serve_forever()))
            yield
        finally:
            if scheduler is not None and ticking is not None:
                await runs.run(scheduler.stop())  # its runs cancelled, and recorded so
                with contextlib.suppress(asyncio.CancelledError):
                    await ticking
            await runs.run(executors.close())
            runs.stop()

    agent_os = workflows_os(workflows, db, settings)
    app = bare_app(lifespan)
    add_agno_routes(app, agent_os, db, settings, traced)
    key_check = [Depends(get_authentication_dependency(settings))]
    app.state.executor_specs = specs  # for serve's checks before it listens
    app.state.schedules = schedules
    add_run_route(app, workflows, db, executors, runs, key_check)
    add_stored_run_route(app, db, key_check)
    add_page_route(app, db, key_check, traced)
    add_docs_routes(app, key_check)
    add_guards(app, host, options or ServeSettings())
    return app


def workflows_os(workflows: dict[str, Workflow], db: BaseDb, settings: AgnoAPISettings) -> AgentOS:
    """The AgentOS that holds the workflows for its routers; its own app, get_app(), is never
    built."""
    return AgentOS(
        id=current().distribution,
        description="Agno workflows that process data sources in parallel",
        workflows=list(workflows.values()),
        db=db,
        settings=settings,
        telemetry=False,  # AgentOS ignores AGNO_TELEMETRY; this project stays offline
    )


def bare_app(
    lifespan: Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]],
) -> FastAPI:
    """An app with no routes yet, not even FastAPI's docs: add_docs_routes serves them behind
    the key."""
    return FastAPI(
        title=current().distribution,
        description="Agno workflows that process data sources in parallel",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )


def add_agno_routes(
    app: FastAPI, agent_os: AgentOS, db: BaseDb, settings: AgnoAPISettings, traced: bool
) -> None:
    """The routes of AGNO_ROUTES, from Agno's health, workflow and session routers, and
    with `traced` those of TRACE_ROUTES, from its traces router."""
    routers = [
        (get_health_router(), AGNO_ROUTES),
        (get_workflow_router(agent_os, settings), AGNO_ROUTES),
        (get_session_router({db.id: [db]}, settings), AGNO_ROUTES),  # runs and session state
    ]
    if traced:
        from agno.os.routers.traces import get_traces_router

        routers.append((get_traces_router({db.id: [db]}, settings), TRACE_ROUTES))
    for router, allowed in routers:
        # The routes themselves, each with its router's key check, rather than
        # app.include_router: app.routes then lists every route that is served.
        app.router.routes.extend(allowed_routes(router, allowed))


def allowed_routes(router: APIRouter, allowed: frozenset[tuple[str, str]]) -> list[APIRoute]:
    """The routes of `router` whose method and path are in `allowed`."""
    return [
        route
        for route in router.routes
        if isinstance(route, APIRoute)
        and {(method, route.path) for method in route.methods or ()} <= allowed
    ]


def add_run_route(
    app: FastAPI,
    workflows: dict[str, Workflow],
    db: BaseDb,
    executors: Executors,
    runs: LoopThread,
    dependencies: list[Any],
) -> None:
    @app.post(
        "/workflows/{workflow_id}/runs",
        dependencies=dependencies,
        tags=["Workflows"],
        summary="Run a workflow",
        description="The run as JSON; with stream=true, Agno's events as server-sent events, "
        f"the last one ({OUTCOME_EVENT}) that same JSON document.",
        response_model=None,
        responses={
            **GUARDED,
            200: {
                "content": {
                    "application/json": {},
                    "text/event-stream": {},
                },
            },
            403: {"description": "Sent from a web page of another origin"},
            404: {"description": "No such workflow"},
        },
    )
    async def create_run(
        workflow_id: str,
        message: Annotated[str, Form(description="the processing request")],
        stream: Annotated[bool, Form(description="send the events as they happen")] = False,
    ) -> Response:
        workflow = workflows.get(workflow_id)
        if workflow is None:
            raise HTTPException(status_code=404, detail="Workflow not found")
        # A run keeps its ids on the Workflow object: each request runs a copy, as AgentOS does.
        run = workflow.deep_copy()
        if stream:
            events = event_stream(run, workflow_id, message, db, executors, runs)
            return StreamingResponse(
                standing_in(events, db, workflow_id, run), media_type="text/event-stream"
            )
        with stand_in(db, workflow_id, run):  # failed at restart if the server is killed
            outcome = await runs.run(run_workflow(run, message, db=db, executors=executors))
        return JSONResponse(run_document(workflow_id, outcome))


def add_page_route(app: FastAPI, db: BaseDb, dependencies: list[Any], traced: bool) -> None:
    @app.get(
        "/runs/{run_id}/page",
        dependencies=dependencies,
        tags=["Workflows"],
        summary="A stored run as an HTML page",
        description="The page `history show RUN_ID --html` writes: the run's timeline as SVG, "
        "its sources, report and facts, self-contained.",
        response_class=HTMLResponse,
        responses={
            **GUARDED,
            404: {"description": "No such run in the history"},
        },
    )
    def stored_run_page(run_id: str) -> HTMLResponse:
        # A plain def: FastAPI runs it in a thread, so reading the history blocks no run.
        try:
            record = stored_run(db, run_id)
            page = record_page(record, run_spans(db, record.run_id) if traced else None)
        except HistoryError as error:
            raise HTTPException(status_code=404, detail=str(error)) from None
        return HTMLResponse(page)


def add_stored_run_route(app: FastAPI, db: BaseDb, dependencies: list[Any]) -> None:
    @app.get(
        "/workflows/{workflow_id}/runs/{run_id}",
        dependencies=dependencies,
        tags=["Workflows"],
        summary="A stored run",
        description="The run as Agno stores it: status, content (the report), step results, "
        "metrics. Requires the session_id that the run answered.",
        responses={
            **GUARDED,
            404: {"description": "No such run of this workflow in this session"},
        },
    )
    def stored_workflow_run(
        workflow_id: str,
        run_id: str,
        session_id: Annotated[str, Query(min_length=1, description="the run's session_id")],
    ) -> dict[str, Any]:
        # A plain def: FastAPI runs it in a thread, so reading the history blocks no run.
        run = db.get_run(run_id)
        if not (
            isinstance(run, WorkflowRunOutput)
            and run.session_id == session_id
            and run.workflow_id == workflow_id
        ):
            raise HTTPException(status_code=404, detail="Run not found")
        return run.to_dict()


def run_document(workflow_id: str, outcome: RunOutcome) -> dict[str, Any]:
    """What a run answers: its ids, COMPLETED or ERROR, the report, the aggregation, errors."""
    aggregation = outcome.aggregation
    return {
        "run_id": outcome.run_id,
        "session_id": outcome.session_id,
        "workflow_id": workflow_id,
        "status": "COMPLETED" if outcome.exit_code == 0 else "ERROR",
        "content": outcome.report,
        "aggregation": aggregation.to_json_dict() if aggregation is not None else None,
        "errors": outcome.errors,
    }


async def event_stream(
    workflow: Workflow,
    workflow_id: str,
    message: str,
    db: BaseDb,
    executors: Executors,
    runs: LoopThread,
) -> AsyncIterator[str]:
    """Each of Agno's events as it happens, then the run's document."""
    events: asyncio.Queue[Any] = asyncio.Queue()
    here = asyncio.get_running_loop()

    def send(event: Any) -> None:  # called on the runs' loop, in their thread
        here.call_soon_threadsafe(events.put_nowait, event)

    run = asyncio.ensure_future(
        runs.run(run_workflow(workflow, message, db=db, on_event=send, executors=executors))
    )
    run.add_done_callback(lambda _: events.put_nowait(None))  # None: no more events
    try:
        while (event := await events.get()) is not None:
            yield server_sent_event(getattr(event, "event", type(event).__name__), event.to_dict())
        try:
            outcome = run.result()
        except Exception as error:
            # The answer has begun (200, the events so far): say so in its last event.
            logger.exception("the run of %s failed", workflow_id)
            outcome = RunOutcome(aggregation=None, report=None, errors=[f"the run failed: {error}"])
    finally:
        # A no-op once the run is over; before, the client went away: stop it, as Ctrl-C does.
        run.cancel()
    yield server_sent_event(OUTCOME_EVENT, run_document(workflow_id, outcome))


async def standing_in(
    events: AsyncIterator[str], db: BaseDb, workflow_id: str, workflow: Workflow
) -> AsyncIterator[str]:
    """`events`, with a stand-in for the run in the history while they last."""
    with stand_in(db, workflow_id, workflow):  # failed at restart if the server is killed
        async for event in events:
            yield event


def server_sent_event(name: str, data: dict[str, Any]) -> str:
    # One line of JSON: a newline inside it would end the event's data early.
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n"
