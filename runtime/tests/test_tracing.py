"""Traces (tracing.py): each source attempt a span under its Agno step's, in the history and
in a real OTLP backend, Arize Phoenix, started here as a server on loopback.

Every traced run is a process of its own, as a user's is: tracing, once on, stays on in a
process (OpenTelemetry's tracer provider is set once), which would trace every later test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from parallel_workflow_runtime._observe.run_spans import MAX_SPANS_PER_RUN
from parallel_workflow_runtime._serve.http_app import build_app
from parallel_workflow_runtime._store.history import open_history

from .conftest import (
    ENV_PREFIX,
    FIRST_WORKFLOW,
    PROJECT,
    SRC,
    cli,
    copy_settings,
    free_port,
    user_environment,
)
from .test_serve import server

REPOSITORY = Path(__file__).resolve().parents[2]
# Phoenix's own environment (scripts/bootstrap): its pinned dependencies are not ours.
PHOENIX = Path(os.environ.get("PHOENIX_SERVER") or REPOSITORY / ".venv-phoenix" / "bin" / "phoenix")
PHOENIX_START_SECONDS = 180
PREFIX = "parallel_workflow"  # tracing.ATTRIBUTE_PREFIX

# The project's command line over a workflows folder of the test's own (`traced`), whose
# source modules take their `run` from tests.traced_sources: a worker process or a Dask worker
# imports them from there by name. With USER_PROVIDER set, the program first sets a tracer
# provider of its own, as a user's code may, and says at the end how many spans it got.
TRACED_PROGRAM = """
import os, sys
from pathlib import Path
import example_project.workflows
from parallel_workflow_runtime import Project
if os.environ.get("USER_PROVIDER"):
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    users = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(users))
    trace.set_tracer_provider(provider)
workflows = Path(sys.argv[1])
example_project.workflows.__path__.append(str(workflows))
code = Project("example_project", workflows).main(sys.argv[2:])
if os.environ.get("USER_PROVIDER"):
    print(f"user provider: {len(users.get_finished_spans())} spans", file=sys.stderr)
raise SystemExit(code)
"""

# Each source: its `run` in tests.traced_sources, then its entry's keys in config.yaml.
SOURCES: dict[str, tuple[str, dict[str, Any]]] = {
    "flaky": ("flaky", {"retries": 1, "retry_backoff_seconds": 0.01}),
    "stuck": ("hangs", {"timeout_seconds": 0.5}),
    "in_pool": ("crunches", {"executor": "process"}),
    "on_dask": ("crunches", {"executor": "dask"}),
    "on_loop": ("awaits", {}),
}


def traced_workflows(
    folder: Path,
    sources: dict[str, tuple[str, dict[str, Any]]],
    schedules: list[dict[str, Any]] | None = None,
) -> Path:
    """A workflows folder with one workflow, `traced`, of `sources` (and `schedules`)."""
    example = SRC / "example_project" / "workflows"
    copy_settings(folder)
    workflow = folder / "traced"
    (workflow / "sources").mkdir(parents=True)
    (workflow / "__init__.py").write_text("")
    (workflow / "sources" / "__init__.py").write_text("")
    code = (example / "example_project" / "workflow.py").read_text(encoding="utf-8")
    (workflow / "workflow.py").write_text(code.replace("get_example_project", "get_traced"))
    config = yaml.safe_load((example / "example_project" / "config.yaml").read_text("utf-8"))
    config["workflow"].update(workflow_id="traced", name="Traced", report_model="")
    config["sources"] = []
    for source_id, (function, keys) in sources.items():
        module = f"from tests.traced_sources import {function} as run\n"
        (workflow / "sources" / f"{source_id}.py").write_text(module)
        entry = {"id": source_id, "name": source_id.replace("_", " ").title(), **keys}
        entry.setdefault("marker", str(folder / f"{source_id}.tried"))
        config["sources"].append(entry)
    if schedules:
        config["schedules"] = schedules
    (workflow / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return folder


def traced_cli(workflows: Path, *args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", TRACED_PROGRAM, str(workflows), *args],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env=user_environment(**environment),
        timeout=300,
    )


def stored_trace(workflows: Path, run_id: str, **environment: str) -> list[dict[str, Any]]:
    """The run's spans as `history show RUN --trace --json` prints them."""
    shown = traced_cli(workflows, "history", "show", run_id, "--trace", "--json", **environment)
    assert shown.returncode == 0, shown.stderr
    spans: list[dict[str, Any]] = json.loads(shown.stdout)["trace"]
    return spans


def tracing_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("tracing:")]


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Arize Phoenix serving on loopback, offline, with a working folder of its own: its
    address, where OTLP over HTTP goes (/v1/traces) and its REST API answers."""
    if not PHOENIX.exists():
        message = f"no Arize Phoenix at {PHOENIX}: scripts/bootstrap installs it"
        if os.environ.get("REQUIRE_PHOENIX"):
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    folder = tmp_path_factory.mktemp("phoenix")
    environment = {
        **os.environ,
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(free_port()),
        "PHOENIX_WORKING_DIR": str(folder),
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
    }
    log = folder / "phoenix.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(PHOENIX), "serve"],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PHOENIX_START_SECONDS
        while not answers(f"{address}/healthz"):
            assert process.poll() is None, f"Phoenix exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"Phoenix not ready: {log.read_text()[-2000:]}"
            time.sleep(0.5)
        yield address
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def phoenix_spans(address: str, project: str, trace_id: str, count: int) -> list[dict[str, Any]]:
    """The trace's spans as Phoenix's REST API gives them back, once it has `count` of them."""
    deadline = time.monotonic() + 60
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        answer = httpx.get(
            f"{address}/v1/projects/{project}/spans",
            params={"trace_id": trace_id, "limit": 1000},
            timeout=30,
        )
        if answer.status_code == 200:
            spans = answer.json()["data"]
            if len(spans) >= count:
                return spans
        time.sleep(0.5)
    raise AssertionError(f"Phoenix has {len(spans)} of the trace's {count} spans")


def by_name(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {span["name"]: span for span in spans}


def test_every_attempt_is_a_span_in_the_history_and_in_phoenix(
    tmp_path: Path, phoenix: str
) -> None:
    workflows = traced_workflows(tmp_path, SOURCES)
    project = f"traced-{tmp_path.name}"
    environment = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": phoenix,
        # Phoenix files the spans under this project (a standard OTel resource attribute).
        "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}",
    }

    ran = traced_cli(workflows, "run", "--trace", "--json", **environment)

    assert ran.returncode == 1, ran.stderr  # `stuck` timed out: the run says so
    assert tracing_lines(ran.stderr) == []  # nothing dropped, nothing unsent
    run = json.loads(ran.stdout)
    statuses = {source["id"]: source["status"] for source in run["sources"]}
    assert statuses == {
        "flaky": "ok",
        "stuck": "timed_out",
        "in_pool": "ok",
        "on_dask": "ok",
        "on_loop": "ok",
    }
    spans = stored_trace(workflows, run["run_id"])
    named = by_name(spans)
    ids = {span["span_id"]: span for span in spans}

    def parent(name: str) -> str:
        return str(ids[named[name]["parent_id"]]["name"])

    # workflow -> Parallel -> a step per source -> its attempts -> what the source made.
    root = next(span for span in spans if span["parent_id"] is None)
    assert root["name"].endswith(".arun") and root["attributes"]["agno.run.id"] == run["run_id"]
    assert parent("ParallelProcessing.aexecute") == root["name"]
    for source_id in SOURCES:
        assert parent(f"{source_id}.aexecute") == "ParallelProcessing.aexecute"
        assert parent(f"{source_id} attempt 1") == f"{source_id}.aexecute"
    # A retried source: two attempts, the first failed with its error's type.
    first, second = named["flaky attempt 1"], named["flaky attempt 2"]
    assert first["attributes"][f"{PREFIX}.outcome"] == "failed"
    assert first["attributes"]["error.type"] == "ConnectionError"
    assert first["status"] == "ERROR" and "the database went away" in first["message"]
    assert second["attributes"][f"{PREFIX}.outcome"] == "ok"
    assert second["attributes"][f"{PREFIX}.records"] == 3
    assert parent("flaky attempt 2") == "flaky.aexecute"
    assert parent("flaky query") == "flaky attempt 2"  # the source's own span, on its thread
    # A timed-out one.
    stuck = named["stuck attempt 1"]
    assert stuck["attributes"][f"{PREFIX}.outcome"] == "timed_out"
    assert stuck["attributes"]["error.type"] == "timeout" and stuck["status"] == "ERROR"
    # The process pool's and Dask's: the source's span in the worker, and its own under it.
    for source_id, executor in (("in_pool", "process"), ("on_dask", "dask")):
        attempt = f"{source_id} attempt 1"
        assert named[attempt]["attributes"][f"{PREFIX}.executor"] == executor
        in_worker = [s for s in spans if s["name"] == f"{source_id} run in a worker"]
        assert len(in_worker) == 1 and parent(in_worker[0]["name"]) == attempt
        assert in_worker[0]["attributes"]["process.pid"] != os.getpid()
        crunching = [s for s in spans if s["name"] == "crunching"]
        assert any(ids[s["parent_id"]] is in_worker[0] for s in crunching), source_id
    assert parent("awaiting the API") == "on_loop attempt 1"  # on the event loop

    # Phoenix got the same spans, with the same parents.
    sent = phoenix_spans(phoenix, project, root["trace_id"], len(spans))
    assert {s["context"]["span_id"]: s.get("parent_id") for s in sent} == {
        span["span_id"]: span["parent_id"] for span in spans
    }
    received = by_name(sent)
    assert received["stuck attempt 1"]["attributes"]["error.type"] == "timeout"
    assert received["flaky attempt 1"]["attributes"][f"{PREFIX}.source.id"] == "flaky"

    # The tree as a user reads it, and the run's page.
    shown = traced_cli(workflows, "history", "show", run["run_id"][:8], "--trace")
    assert shown.returncode == 0, shown.stderr
    for line in ("flaky attempt 2", "stuck attempt 1", "in_pool run in a worker", "crunching"):
        assert line in shown.stdout
    assert "timed_out, error timeout" in shown.stdout
    page = tmp_path / "run.html"
    paged = traced_cli(workflows, "history", "show", run["run_id"], "--html", str(page))
    assert paged.returncode == 0, paged.stderr
    assert "<h2>Trace</h2>" in page.read_text() and "flaky attempt 2" in page.read_text()


QUICK = {"first": ("awaits", {}), "second": ("flaky", {"retries": 1})}


@pytest.mark.integration
@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        # Nothing listens there.
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:{port}"}, "could not send"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:{port}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "bogus",
            },
            "OTEL_EXPORTER_OTLP_PROTOCOL='bogus' is not one this project sends",
        ),
        ({"USER_PROVIDER": "1"}, "your code set a tracer provider already"),
    ],
    ids=["unreachable-endpoint", "wrong-protocol", "users-provider"],
)
def test_an_export_that_cannot_happen_costs_one_line_and_nothing_else(
    tmp_path: Path, environment: dict[str, str], expected: str
) -> None:
    workflows = traced_workflows(tmp_path, QUICK)
    port = str(free_port())
    environment = {key: value.format(port=port) for key, value in environment.items()}
    started = time.monotonic()

    ran = traced_cli(workflows, "run", "--trace", "--json", **environment)

    assert ran.returncode == 0, ran.stderr
    assert time.monotonic() - started < 60  # an exporter's retries do not hold the command
    lines = tracing_lines(ran.stderr)
    assert len(lines) == 1 and expected in lines[0], ran.stderr
    run = json.loads(ran.stdout)
    assert [source["status"] for source in run["sources"]] == ["ok", "ok"]
    names = {span["name"] for span in stored_trace(workflows, run["run_id"])}
    assert {"first attempt 1", "second attempt 1", "second attempt 2"} <= names
    if "USER_PROVIDER" in environment:
        assert "user provider: 0 spans" not in ran.stderr and "user provider:" in ran.stderr


@pytest.mark.integration
def test_a_source_that_makes_100000_spans_keeps_the_run_and_says_what_was_dropped(
    tmp_path: Path,
) -> None:
    workflows = traced_workflows(
        tmp_path, {"chatty": ("many_spans", {"spans": 100_000}), "quiet": ("awaits", {})}
    )

    ran = traced_cli(workflows, "run", "--trace", "--json")

    assert ran.returncode == 0, ran.stderr
    [line] = tracing_lines(ran.stderr)
    assert "more than 10,000 spans" in line and "dropped" in line
    run = json.loads(ran.stdout)
    spans = stored_trace(workflows, run["run_id"])
    names = [span["name"] for span in spans]
    # The source's own spans up to the limit; the run's, steps' and attempts' beyond it.
    assert names.count("tiny") < MAX_SPANS_PER_RUN < len(spans) < MAX_SPANS_PER_RUN + 20
    assert {"quiet attempt 1", "chatty attempt 1", "Aggregation.aexecute"} <= set(names)


@pytest.mark.integration
def test_a_run_without_a_trace_says_so_in_one_line(tmp_path: Path) -> None:
    workflows = traced_workflows(tmp_path, QUICK)
    ran = traced_cli(workflows, "run", "--json")
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]

    shown = traced_cli(workflows, "history", "show", run_id, "--trace")

    assert shown.returncode == 2
    assert shown.stderr.count("\n") == 1 and "has no trace: it ran with tracing off" in shown.stderr


def test_serve_mounts_the_trace_routes_only_with_tracing_and_behind_its_guards(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    base = "http://127.0.0.1:7777"
    with TestClient(build_app(open_history()), base_url=base) as untraced:
        assert untraced.get("/traces").status_code == 404
    monkeypatch.setenv("OS_SECURITY_KEY", "the-key")
    with TestClient(build_app(open_history(), traced=True), base_url=base) as traced:
        key = {"Authorization": "Bearer the-key"}
        assert traced.get("/traces").status_code == 401
        assert traced.get("/traces", headers=key).status_code == 200
        assert traced.get("/traces", headers={**key, "Host": "evil.example"}).status_code == 400
        forged = {**key, "Origin": "https://evil.example"}
        assert traced.post("/traces/search", headers=forged, json={}).status_code == 403


@pytest.mark.integration
def test_serve_with_tracing_from_the_environment_serves_each_runs_trace(tmp_path: Path) -> None:
    environment = {
        f"{ENV_PREFIX}TRACING": "true",
        f"{ENV_PREFIX}HISTORY_DB": str(tmp_path / "history.sqlite"),
    }
    with server(environment, tmp_path / "serve.log") as client:
        workflow_id = client.get("/workflows").json()[0]["id"]
        run = client.post(f"/workflows/{workflow_id}/runs", data={"message": "Traced"}).json()
        deadline = time.monotonic() + 30
        while True:  # the spans reach the history in batches, within a second or so
            listed = client.get("/traces", params={"run_id": run["run_id"]}).json()["data"]
            if listed or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        [trace] = listed
        detail = client.get(f"/traces/{trace['trace_id']}").json()
    assert trace["run_id"] == run["run_id"] and detail["total_spans"] >= 3


@pytest.mark.integration
def test_bench_trace_times_traced_against_untraced_runs_and_processes() -> None:
    arguments = ["--sources=20", "--latency=0.02", "--repeat=2", "--json"]

    benched = cli("bench", "--workflow", FIRST_WORKFLOW, "--trace", *arguments)

    assert benched.returncode == 0, benched.stderr
    bench = json.loads(benched.stdout)
    runs = bench["runs"]
    for way in ("untraced", "traced", "bare_untraced", "bare_traced"):
        assert len(runs[way]) == 2 and min(runs[way]) >= 0.02, way
    assert bench["traced_over_untraced"] == pytest.approx(
        bench["traced_seconds"] / bench["untraced_seconds"], rel=0.01
    )
    assert bench["traced_over_bare"] == pytest.approx(
        bench["traced_seconds"] / bench["bare_traced_seconds"], rel=0.01
    )
    # `run` against `run --trace`: the median of the pairs' differences.
    pairs = bench["run_pairs"]
    assert len(runs["run_untraced"]) == len(runs["run_traced"]) == len(runs["cpu_traced"]) == 7
    untraced, traced = runs["run_untraced"], runs["run_traced"]
    differences = sorted(b - a for a, b in zip(untraced, traced, strict=True))
    assert bench["run_traced_extra_seconds"] == pytest.approx(differences[pairs // 2], abs=0.002)
    assert (bench["bare_target"], bench["run_target_seconds"]) == (1.1, 0.05)
    table = cli("bench", "--workflow", FIRST_WORKFLOW, "--trace", *arguments[:-1])
    assert table.returncode == 0, table.stderr
    assert "median of 7 alternating pairs" in table.stdout
    assert "bare Agno workflow traced the same way" in table.stdout
    refused = cli("bench", "--workflow", FIRST_WORKFLOW, "--trace", "--kind", "cpu")
    assert refused.returncode == 2 and "--trace times --kind async or sync" in refused.stderr


@pytest.mark.integration
def test_16_traced_runs_at_once_on_a_fresh_history_each_keep_their_trace(tmp_path: Path) -> None:
    workflows = traced_workflows(tmp_path, {"only": ("awaits", {})})
    fresh = {f"{ENV_PREFIX}HISTORY_DB": str(tmp_path / "fresh.sqlite")}
    environment = user_environment(**fresh)
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", TRACED_PROGRAM, str(workflows), "run", "--trace", "--json"],
            cwd=PROJECT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(16)
    ]
    answers = [run.communicate(timeout=300) for run in runs]

    assert [run.returncode for run in runs] == [0] * 16, [err for _, err in answers]
    assert all(tracing_lines(err) == [] for _, err in answers)
    for output, _ in answers:
        spans = stored_trace(workflows, json.loads(output)["run_id"], **fresh)
        names = {span["name"] for span in spans}
        assert {"only attempt 1", "awaiting the API", "Traced.arun"} <= names


def test_the_trace_is_kept_in_a_sqlite_and_a_postgresql_history(
    tmp_path: Path, storage: dict[str, str]
) -> None:
    workflows = traced_workflows(tmp_path, QUICK)

    ran = traced_cli(workflows, "run", "--trace", "--json", **storage)

    assert ran.returncode == 0, ran.stderr
    spans = stored_trace(workflows, json.loads(ran.stdout)["run_id"], **storage)
    attempts = {
        span["name"]: span["attributes"][f"{PREFIX}.outcome"]
        for span in spans
        if f"{PREFIX}.outcome" in span["attributes"]
    }
    assert attempts == {
        "first attempt 1": "ok",
        "second attempt 1": "failed",
        "second attempt 2": "ok",
    }


@pytest.mark.integration
def test_every_span_of_a_run_whose_sources_fail_and_time_out_is_in_the_history(
    tmp_path: Path,
) -> None:
    workflows = traced_workflows(
        tmp_path,
        {
            "flaky": ("flaky", {"retries": 1, "retry_backoff_seconds": 0.01}),
            "failing": ("flaky", {}),  # its only attempt fails
            "stuck": ("hangs", {"timeout_seconds": 0.5}),
            "on_loop": ("awaits", {}),
        },
    )

    ran = traced_cli(workflows, "run", "--trace", "--json")

    assert ran.returncode == 1, ran.stderr
    assert tracing_lines(ran.stderr) == []
    spans = stored_trace(workflows, json.loads(ran.stdout)["run_id"])
    names = sorted(span["name"] for span in spans)
    steps = ["Preparation", "ParallelProcessing", "Aggregation", "Report"]
    steps += ["flaky", "failing", "stuck", "on_loop"]
    attempts = ["flaky attempt 1", "flaky attempt 2", "failing attempt 1", "stuck attempt 1"]
    made = ["flaky query", "on_loop attempt 1", "awaiting the API"]
    assert names == sorted(["Traced.arun", *(f"{s}.aexecute" for s in steps), *attempts, *made])
    outcomes = {
        span["name"]: span["attributes"][f"{PREFIX}.outcome"]
        for span in spans
        if f"{PREFIX}.outcome" in span["attributes"]
    }
    assert outcomes["failing attempt 1"] == "failed" and outcomes["stuck attempt 1"] == "timed_out"


@pytest.mark.integration
def test_ctrl_c_keeps_the_spans_of_the_run_it_stopped(tmp_path: Path) -> None:
    workflows = traced_workflows(tmp_path, {"quick": ("awaits", {}), "held": ("holds", {})})
    process = subprocess.Popen(
        [sys.executable, "-c", TRACED_PROGRAM, str(workflows), "run", "--trace", "--json"],
        cwd=PROJECT,
        env=user_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    held = tmp_path / "held.tried"
    deadline = time.monotonic() + 120
    while not held.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 130, stderr
    listed = traced_cli(workflows, "history", "--json")
    (record,) = json.loads(listed.stdout)
    spans = {span["name"]: span for span in stored_trace(workflows, record["run_id"])}
    assert spans["held attempt 1"]["attributes"][f"{PREFIX}.outcome"] == "cancelled"
    assert spans["quick attempt 1"]["attributes"][f"{PREFIX}.outcome"] == "ok"
    assert {"Traced.arun", "ParallelProcessing.aexecute", "awaiting the API"} <= set(spans)


def test_a_run_cut_short_is_written_with_its_open_root_then_whole_once_it_ends(
    tmp_path: Path,
) -> None:
    from agno.db.sqlite import SqliteDb
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from sqlalchemy import select

    from parallel_workflow_runtime._observe.run_spans import RunSpans
    from parallel_workflow_runtime._store.agno_adapter import agno_table, engine_of

    db = SqliteDb(db_file=str(tmp_path / "history.sqlite"))
    spans = RunSpans(exporter=None)
    spans.keep_in(db)
    provider = TracerProvider()  # this test's own: the process's is never set here
    provider.add_span_processor(spans)  # type: ignore[arg-type]  # a processor, duck-typed
    tracer = provider.get_tracer("parallel_workflow_runtime")

    def stored() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        traces, rows = agno_table(db, "traces"), agno_table(db, "spans")
        assert traces is not None and rows is not None
        with engine_of(db).connect() as connection:
            return (
                [dict(row) for row in connection.execute(select(traces)).mappings()],
                [dict(row) for row in connection.execute(select(rows)).mappings()],
            )

    root = tracer.start_span("Traced.arun", attributes={"agno.run.id": "run-1"})
    with trace.use_span(root), tracer.start_as_current_span("only attempt 1"):
        pass
    assert spans.force_flush()  # a second Ctrl-C: the command's end, the run under way

    [cut_short], rows = stored()
    assert cut_short["run_id"] == "run-1"
    statuses = {row["name"]: row["status_code"] for row in rows}
    assert statuses == {"Traced.arun": "ERROR", "only attempt 1": "UNSET"}

    root.end()  # the run went on after all (`serve`'s shutdown flushed meanwhile)
    assert spans.force_flush()

    [whole], rows = stored()
    assert whole["run_id"] == "run-1" and whole["end_time"] >= cut_short["end_time"]
    statuses = {row["name"]: row["status_code"] for row in rows}
    assert statuses == {"Traced.arun": "UNSET", "only attempt 1": "UNSET"} and len(rows) == 2
    spans.shutdown()
