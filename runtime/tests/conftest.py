"""Shared fixtures: offline by default, one test per discovered workflow."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import croniter  # noqa: F401  (see in_process_unless_integration)
import pytest
from agno.models.base import Model
from agno.models.response import ModelResponse

from parallel_workflow_runtime import Project
from parallel_workflow_runtime._core import project as project_module
from parallel_workflow_runtime._core.registry import WorkflowEntry, discover
from parallel_workflow_runtime._core.results import SourceFunction
from parallel_workflow_runtime._core.settings import DATABASE_URL_ENV
from parallel_workflow_runtime._execution.steps import SOURCE_FUNCTION_NAMES

# The project these tests run: tests/project/, as the template renders one (two workflows:
# the default answers, and five odd names with max_concurrency 2 and a report model).
RUNTIME = Path(__file__).resolve().parents[1]
PROJECT = RUNTIME / "tests" / "project"
SRC = PROJECT / "src"
sys.path.insert(0, str(SRC))
from example_project import Source, SourceSummary  # noqa: E402  (registers the project)

WORKFLOWS = discover()
# The workflow that `run` and `bench` run without --workflow: settings.yaml's default_workflow
# (test_registry.py checks that it is this one), which tests of another workflow name.
FIRST_WORKFLOW = next(iter(WORKFLOWS))
PACKAGE = "example_project"
ENV_PREFIX = "EXAMPLE_PROJECT_"
HISTORY_DB_ENV = f"{ENV_PREFIX}HISTORY_DB"
REPORT_MODEL_ENV = f"{ENV_PREFIX}REPORT_MODEL"
# The name pip knows the project by, as its pyproject.toml declares it.
DISTRIBUTION = "example-project"


def workflows_in(monkeypatch: pytest.MonkeyPatch, workflows_dir: Path) -> None:
    """The project's workflows in another folder, for one test, with a copy of its
    settings.yaml unless the folder has one of its own. The copy names no default workflow:
    the example project's is not among the test's."""
    if not (workflows_dir / "settings.yaml").exists():
        copy_settings(workflows_dir)
    monkeypatch.setattr(project_module, "_registered", Project(PACKAGE, workflows_dir))


def copy_settings(workflows_dir: Path) -> None:
    """The example project's settings.yaml into a workflows folder of a test's own, without
    its default workflow, which is none of the test's."""
    text = (SRC / PACKAGE / "workflows" / "settings.yaml").read_text(encoding="utf-8")
    kept = [line for line in text.splitlines() if not line.startswith("default_workflow:")]
    (workflows_dir / "settings.yaml").write_text("\n".join(kept) + "\n", encoding="utf-8")


def user_environment(**overrides: str) -> dict[str, str]:
    """The environment a user runs this project's commands in: its src/ on the path first,
    and the runtime's folder, where `tests` is a package (for SYNTHETIC_PROGRAM)."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), str(RUNTIME), os.environ.get("PYTHONPATH", "")]),
    }
    environment.update(overrides)
    return environment


def cli(*args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    """Run the package's command line as a user would, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "example_project", *args],
        capture_output=True,
        text=True,
        env=user_environment(**overrides),
        timeout=300,
    )


def wait_until(condition: Callable[[], Any], seconds: float, what: str, every: float = 0.05) -> Any:
    """What `condition` returns once it is true, looked at every `every` seconds: the event a
    test waits for, instead of a fixed sleep. Fails the test, naming `what`, after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"not within {seconds} s: {what}")


def free_port() -> int:
    """A loopback port that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# The engine is tested with synthetic sources, never with what your sources return (that is
# what each source's own test, tests/<workflow>/test_<id>.py, checks). The i-th source of a
# workflow (from 1) becomes one that returns i records at once.
SYNTHETIC_DETAILS = {"synthetic": True}


def synthetic_source(records: int) -> SourceFunction:
    async def synthetic(source: Source) -> SourceSummary:
        return SourceSummary(records=records, details=dict(SYNTHETIC_DETAILS))

    return synthetic


@pytest.fixture
def synthetic_sources(entry: WorkflowEntry, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every source of `entry` synthetic for one test, also when the CLI runs it in-process."""
    for index, source in enumerate(entry.config.sources):
        replace_source(monkeypatch, entry, source.id, synthetic_source(index + 1))


@pytest.fixture
def all_sources_synthetic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every source of every workflow synthetic, for tests that serve them all."""
    for entry in WORKFLOWS.values():
        for index, source in enumerate(entry.config.sources):
            replace_source(monkeypatch, entry, source.id, synthetic_source(index + 1))


# The same in a fresh process: a program that makes every source of every workflow synthetic,
# then hands over to the command line.
SYNTHETIC_PROGRAM = """
import importlib, sys
from example_project import project
from parallel_workflow_runtime._core.registry import discover
from parallel_workflow_runtime._execution.steps import SOURCE_FUNCTION_NAMES
from tests.conftest import synthetic_source
for entry in discover().values():
    for index, source in enumerate(entry.config.sources):
        module = importlib.import_module(f"{entry.package}.sources.{source.id}")
        name = next(name for name in SOURCE_FUNCTION_NAMES if hasattr(module, name))
        setattr(module, name, synthetic_source(index + 1))
raise SystemExit(project.main(sys.argv[1:]))
"""


def synthetic_cli(*args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    """`cli`, with every source synthetic."""
    return subprocess.run(
        [sys.executable, "-c", SYNTHETIC_PROGRAM, *args],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env=user_environment(**overrides),
        timeout=300,
    )


def load_source(workflow_id: str, source_id: str) -> Source:
    """A source as its `run` receives it: its entry in its workflow's config.yaml."""
    config = WORKFLOWS[workflow_id].config
    return next(source for source in config.sources if source.id == source_id)


def run_source(workflow_id: str, source: Source) -> SourceSummary:
    """Call a source's `run` from its module `sources/<id>.py` as the workflow would, a plain
    `def` or an `async def` alike (or the function of a module written for 0.4.0)."""
    module = importlib.import_module(f"{WORKFLOWS[workflow_id].package}.sources.{source.id}")
    name = next(name for name in SOURCE_FUNCTION_NAMES if hasattr(module, name))
    result = getattr(module, name)(source)
    if inspect.isawaitable(result):
        return asyncio.run(cast(Coroutine[Any, Any, SourceSummary], result))
    return cast(SourceSummary, result)


def replace_source(
    monkeypatch: pytest.MonkeyPatch, entry: WorkflowEntry, source_id: str, function: SourceFunction
) -> None:
    """Make a source's module run `function` instead of its own code, for one test."""
    module = importlib.import_module(f"{entry.package}.sources.{source_id}")
    name = next(name for name in SOURCE_FUNCTION_NAMES if hasattr(module, name))
    monkeypatch.setattr(module, name, function)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The variables that make a server and a CLI share one history: an SQLite file, or the
    PostgreSQL database of TEST_DATABASE_URL."""
    environment = {HISTORY_DB_ENV: str(tmp_path / "history.sqlite")}
    if request.param == "postgresql":
        url = os.environ.get("TEST_DATABASE_URL", "").strip()
        if not url:
            pytest.skip(
                "no PostgreSQL server: set TEST_DATABASE_URL=postgresql+psycopg://user:password@"
                "127.0.0.1:5432/dbname to run this against one"
            )
        environment[DATABASE_URL_ENV] = url
    return environment


@pytest.fixture(autouse=True)
def history_in_tmp_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test's runs go to its own SQLite history, never to the project's .data/."""
    monkeypatch.setenv(HISTORY_DB_ENV, str(tmp_path / "history.sqlite"))
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No telemetry, the offline report, no API key, and no connection off this machine."""
    monkeypatch.setenv("AGNO_TELEMETRY", "false")
    # Empty, not unset: it overrides a report_model that config.yaml may configure.
    monkeypatch.setenv(REPORT_MODEL_ENV, "")
    for variable in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    connect = socket.socket.connect

    def loopback_only(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in (
            "127.0.0.1",
            "::1",
            "localhost",
        ):
            raise OSError(f"tests are offline: refused a connection to {address!r}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)


# --- the test pyramid ----------------------------------------------------------------------
# `integration`: a test that needs more than this process: a subprocess (the command line, a
# server, Phoenix, a browser), worker processes (the process and Dask executors), or a server
# to connect to (PostgreSQL, an HTTP API). The rest is the unit tier, which
# `./scripts/test --quick` runs: in this process, where a test that starts a process or
# connects to a server fails and says to mark it.
INTEGRATION = "integration"
# The fixtures that start what runs outside the test's process (some once per module or
# session, before a test's own fixtures could see it happen).
OUTSIDE_FIXTURES = frozenset(
    {
        "api_server",
        "cluster_processes",
        "dask_cluster",
        "fresh_history",
        "fresh_postgres",
        "on_dask_cluster",
        "phoenix",
        "secret_dask_cluster",
        "storage",
        "users_project",
    }
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{INTEGRATION}: needs a subprocess, worker processes or a server besides this process"
        " (./scripts/test --quick leaves it out)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parameters = getattr(item, "callspec", None)
        names = set(getattr(item, "fixturenames", ()))
        # A fixture parametrized "sqlite"/"postgresql" (storage, fresh_history, store) runs
        # the test against the PostgreSQL server in its "postgresql" case.
        on_postgresql = parameters is not None and "postgresql" in parameters.params.values()
        if (
            on_postgresql
            or OUTSIDE_FIXTURES & names
            or any(n.startswith("postgres") for n in names)
        ):
            item.add_marker(INTEGRATION)


@dataclass
class Outside:
    """What a unit test tried to start or reach outside its process."""

    attempts: list[str] = field(default_factory=list)

    def refuse(self, what: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            self.attempts.append(what)
            raise AssertionError(f"a unit test {what}: mark it @pytest.mark.{INTEGRATION}")

        return refused


@pytest.fixture(autouse=True)
def in_process_unless_integration(
    request: pytest.FixtureRequest, offline: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """A unit test runs in this process, whatever the code it tests catches: an attempt to
    start a process or connect to a server fails it at the end too. (croniter's import runs
    `file`, through platform.architecture: it is imported with this module, before any test.)"""
    if request.node.get_closest_marker(INTEGRATION) is not None:
        yield
        return
    outside = Outside()
    monkeypatch.setattr(subprocess.Popen, "_execute_child", outside.refuse("starts a subprocess"))
    monkeypatch.setattr(
        multiprocessing.process.BaseProcess, "start", outside.refuse("starts a worker process")
    )
    connect = socket.socket.connect  # offline's: loopback only

    def to_no_server(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            return outside.refuse(f"connects to a server ({address!r})")()
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", to_no_server)
    yield
    assert outside.attempts == [], f"mark it @pytest.mark.{INTEGRATION}: {outside.attempts}"


@pytest.fixture(params=list(WORKFLOWS))
def entry(request: pytest.FixtureRequest) -> WorkflowEntry:
    """Each workflow the registry discovers, in turn."""
    return WORKFLOWS[request.param]


@dataclass
class RecordingModel(Model):
    """A local Agno model: replies with a fixed report and records every message it was sent."""

    id: str = "recording-model"
    name: str = "RecordingModel"
    provider: str = "local"
    reply: str = "# Report\n\nWritten by the recording model."
    received: list[str] = field(default_factory=list)

    def invoke(self, messages: list[Any], **kwargs: Any) -> ModelResponse:
        self.received.extend(str(message.content) for message in messages)
        return ModelResponse(role="assistant", content=self.reply)

    async def ainvoke(self, messages: list[Any], **kwargs: Any) -> ModelResponse:
        return self.invoke(messages)

    def invoke_stream(self, messages: list[Any], **kwargs: Any) -> Iterator[ModelResponse]:
        yield self.invoke(messages)

    async def ainvoke_stream(self, messages: list[Any], **kwargs: Any) -> Any:
        yield self.invoke(messages)

    def _parse_provider_response(self, response: Any, **kwargs: Any) -> ModelResponse:
        return response

    def _parse_provider_response_delta(self, response: Any) -> ModelResponse:
        return response


@pytest.fixture
def recording_model() -> RecordingModel:
    return RecordingModel()


# Dask clusters of separate processes, for the executor and connector tests.
def start(*command: str, **environment: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_" + command[0], *command[1:]],
        env={**os.environ, **environment},
        cwd="/",  # not the project: only PYTHONPATH can make it importable
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def cluster_processes() -> Iterator[Any]:
    """Starts clusters of a scheduler and workers as separate processes; stops them all."""
    schedulers: list[subprocess.Popen[bytes]] = []
    workers_started: list[subprocess.Popen[bytes]] = []

    def cluster(workers: int, python_path: str, threads: int = 4) -> str:
        from distributed import Client

        address = f"tcp://127.0.0.1:{free_port()}"
        port = address.rsplit(":", 1)[1]
        environment = {"PYTHONPATH": python_path}
        schedulers.append(
            start(
                "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard", **environment
            )
        )
        for _ in range(workers):
            workers_started.append(
                start(
                    "worker", address, "--nthreads", f"{threads}", "--no-dashboard", **environment
                )
            )
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=60)
        return address

    yield cluster
    # The workers first: stopped together with their scheduler, a worker may spend Dask's
    # 30 s connect timeout saying goodbye to it. Then the schedulers.
    stop_groups(workers_started)
    stop_groups(schedulers)


def stop_groups(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each process group, then SIGKILL to any still there after 15 s: how fast
    Dask shuts down is not what these tests check, that nothing is left running is."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):  # a test may have killed it already
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


def forked_at_once(count: int, target: Callable[..., None], *args: Any) -> list[Any]:
    """`target(barrier, results, *args)` in `count` processes forked from this one (what it
    imported, Agno say, already imported), each waiting at `barrier` until all are there; what
    they appended to `results`, a list shared between them."""
    context = multiprocessing.get_context("fork")
    with context.Manager() as manager:
        results = manager.list()
        barrier = context.Barrier(count)
        processes = [
            context.Process(target=target, args=(barrier, results, *args)) for _ in range(count)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=180)
        return list(results)
