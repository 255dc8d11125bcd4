"""Whatever a source, a setting or a Ctrl-C does, it takes down no more than itself: the other
sources keep their results, every output stays strict JSON, the run is recorded."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import example_project.workflows
import pytest
import yaml
from agno.workflow import Parallel, Workflow
from example_project import Aggregation, Source, SourceLimits, SourceSummary

from parallel_workflow_runtime._cli.cli import main
from parallel_workflow_runtime._core.config import ConfigError, load_config
from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.registry import WorkflowEntry
from parallel_workflow_runtime._core.results import SourceFunction
from parallel_workflow_runtime._execution.source_limits import backoff_seconds
from parallel_workflow_runtime._execution.steps import (
    aggregation_step,
    preparation_step,
    report_step,
    source_steps,
)

from .conftest import cli, replace_source, user_environment, workflows_in


def run_sources(
    entry: WorkflowEntry,
    functions: dict[str, SourceFunction],
    *,
    timeout_seconds: float | None = 5.0,
    max_details_bytes: int = 1_000_000,
) -> Aggregation:
    """One run of the workflow over a synthetic source per function, bounded in time so that a
    hang fails the test instead of stalling it."""
    sources = tuple(
        Source(
            id=source_id,
            name=source_id.replace("_", " ").title(),
            settings={},
            folder=entry.config.path.parent,
            limits=SourceLimits(timeout_seconds=timeout_seconds),
        )
        for source_id in functions
    )
    config = dataclasses.replace(entry.config, sources=sources, max_details_bytes=max_details_bytes)
    workflow = entry.factory(config=config, report_model="", source_functions=functions)

    async def run() -> Aggregation:
        state: dict[str, Any] = {}
        await asyncio.wait_for(workflow.arun(input="faults", session_state=state), timeout=60)
        return Aggregation.model_validate(state["aggregation"])

    return asyncio.run(run())


def errors(aggregation: Aggregation) -> dict[str, str | None]:
    return {source.id: source.error for source in aggregation.sources}


def quick(source: Source) -> SourceSummary:
    return SourceSummary(records=3)


def test_a_source_that_exits_or_interrupts_fails_alone(entry: WorkflowEntry) -> None:
    def exits(source: Source) -> SourceSummary:
        sys.exit(3)

    def interrupts(source: Source) -> SourceSummary:
        raise KeyboardInterrupt

    async def exits_on_the_loop(source: Source) -> SourceSummary:
        raise SystemExit(4)

    aggregation = run_sources(
        entry,
        {
            "exits": exits,
            "interrupts": interrupts,
            "exits_on_the_loop": exits_on_the_loop,
            "quick": quick,
        },
    )

    assert errors(aggregation) == {
        "exits": "SystemExit: 3",
        "interrupts": "KeyboardInterrupt",
        "exits_on_the_loop": "SystemExit: 4",
        "quick": None,
    }
    assert aggregation.total_records == 3


@pytest.mark.usefixtures("synthetic_sources")
def test_the_cli_reports_the_others_when_a_source_exits(
    entry: WorkflowEntry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def exits(source: Any) -> Any:
        sys.exit(3)

    replace_source(monkeypatch, entry, entry.config.sources[0].id, exits)

    assert main(["run", "--json", "--workflow", entry.config.workflow_id]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["sources"][0]["error"] == "SystemExit: 3"
    assert [s["ok"] for s in document["sources"][1:]] == [True] * (len(document["sources"]) - 1)


def test_a_stopiteration_fails_its_source_at_once_even_without_a_timeout(
    entry: WorkflowEntry,
) -> None:
    def empty_cursor(source: Source) -> SourceSummary:
        next(iter([]))  # raises StopIteration, which a future cannot carry
        return SourceSummary(records=0)

    started = time.monotonic()
    aggregation = run_sources(
        entry, {"empty_cursor": empty_cursor, "quick": quick}, timeout_seconds=None
    )

    assert errors(aggregation) == {"empty_cursor": "StopIteration", "quick": None}
    assert time.monotonic() - started < 30  # it did not wait for anything


def test_details_that_are_not_strict_json_or_too_large_fail_their_source(
    entry: WorkflowEntry,
) -> None:
    def not_a_number(source: Source) -> SourceSummary:
        return SourceSummary(records=1, details={"ratio": float("nan")})

    def infinite(source: Source) -> SourceSummary:
        return SourceSummary(records=1, details={"ceiling": [float("inf")]})

    def huge(source: Source) -> SourceSummary:
        return SourceSummary(records=1, details={"dump": "x" * 2_000})

    def bad_records(source: Source) -> SourceSummary:
        return {"records": float("nan")}  # type: ignore[typeddict-item]

    aggregation = run_sources(
        entry,
        {
            "not_a_number": not_a_number,
            "infinite": infinite,
            "huge": huge,
            "bad_records": bad_records,
            "quick": quick,
        },
        max_details_bytes=1_000,
    )

    assert errors(aggregation) == {
        "not_a_number": "details must be JSON: NaN and Infinity are not",
        "infinite": "details must be JSON: NaN and Infinity are not",
        "huge": "details are 2,012 bytes as JSON, more than max_details_bytes (1,000)",
        "bad_records": "records must be a whole number >= 0, got nan",
        "quick": None,
    }


def test_run_json_stays_strict_json_when_a_source_returns_nan(
    entry: WorkflowEntry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def not_a_number(source: Any) -> Any:
        return SourceSummary(records=1, details={"ratio": float("nan")})

    replace_source(monkeypatch, entry, entry.config.sources[0].id, not_a_number)

    assert main(["run", "--json", "--workflow", entry.config.workflow_id]) == 1
    output = capsys.readouterr().out

    def refuse(constant: str) -> Any:
        raise ValueError(f"not strict JSON: {constant}")

    document = json.loads(output, parse_constant=refuse)
    assert document["sources"][0]["error"].startswith("details must be JSON")


def test_a_default_details_cap_of_one_megabyte(entry: WorkflowEntry) -> None:
    def fifty_megabytes_would_be_worse(source: Source) -> SourceSummary:
        return SourceSummary(records=1, details={"dump": "x" * 1_100_000})

    aggregation = run_sources(entry, {"big": fifty_megabytes_would_be_worse, "quick": quick})

    assert errors(aggregation)["big"] == (
        "details are 1,100,012 bytes as JSON, more than max_details_bytes (1,000,000)"
    )
    assert entry.config.max_details_bytes == 1_000_000


def edited_config(entry: WorkflowEntry, tmp_path: Path, **changes: Any) -> Path:
    data = yaml.safe_load(entry.config.path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        section, _, setting = key.partition("__")
        target = data["workflow"] if section == "workflow" else data["sources"][0]
        target[setting] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


REFUSED_SETTINGS = [
    (
        {"workflow__retries": 1_000_000},
        r"workflow\.retries must be a whole number from 0 to 100, got 1000000",
    ),
    ({"source__retries": 101}, r"sources\[0\]\.retries must be a whole number from 0 to 100"),
    (
        {"workflow__max_backoff_seconds": 0},
        r"workflow\.max_backoff_seconds must be a positive number",
    ),
    (
        {"source__id": "Aggregation"},
        r"sources\[0\]\.id must be other than the workflow's step names",
    ),
    (
        {"source__id": "ParallelProcessing"},
        r"sources\[0\]\.id must be other than the workflow's step names",
    ),
    (
        {"workflow__max_details_bytes": 0},
        r"workflow\.max_details_bytes must be a whole number of bytes",
    ),
    (
        {"workflow__timeout_seconds": float("nan")},
        r"workflow\.timeout_seconds must be a positive number",
    ),
    # A pause or a timeout of 1e300 s looks like a hung run: at most a day.
    (
        {"workflow__retry_backoff_seconds": 1.0e300},
        r"workflow\.retry_backoff_seconds must be a number of seconds from 0 to 86,400 \(a day\)",
    ),
    (
        {"source__max_backoff_seconds": 1.0e300},
        r"sources\[0\]\.max_backoff_seconds must be a positive number of seconds up to 86,400",
    ),
    (
        {"source__timeout_seconds": 86_401},
        r"sources\[0\]\.timeout_seconds must be a positive number of seconds up to 86,400 \(a "
        r"day\), or null, got 86401",
    ),
]


@pytest.mark.parametrize(("changes", "message"), REFUSED_SETTINGS)
def test_settings_that_would_hang_or_crash_a_run_are_refused(
    entry: WorkflowEntry, tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(edited_config(entry, tmp_path, **changes))


def test_no_pause_between_retries_is_longer_than_max_backoff_seconds() -> None:
    pauses = [backoff_seconds(0.5, attempt, 30.0) for attempt in range(1, 101)]

    assert max(pauses) <= 30.0
    assert min(pauses[-50:]) >= 15.0  # the ceiling, less at most half of it for the jitter
    assert backoff_seconds(0.5, 1_000_000, 30.0) <= 30.0  # no overflow, however many


@pytest.fixture
def hostile_workflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A workflow folder outside the project, importable as one of its workflows."""
    extra = tmp_path / "workflows"
    folder = extra / "hostile"
    (folder / "sources").mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "sources" / "__init__.py").write_text("")
    package = example_project.workflows
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(extra)])
    yield folder, f"{package.__name__}.hostile"
    for name in [name for name in sys.modules if name.startswith(f"{package.__name__}.hostile")]:
        del sys.modules[name]


def test_a_source_module_that_does_not_import_fails_only_its_source(
    entry: WorkflowEntry, hostile_workflow: tuple[Path, str]
) -> None:
    folder, _ = hostile_workflow
    modules = {
        "good": "def run(source):\n    return {'records': 2}\n",
        "typo": "def run(source)\n    return {'records': 2}\n",
        "raises": "x = 1\nraise RuntimeError('no credentials')\n",
        "missing": "import not_installed_anywhere\n",
        "exits": "import sys\nsys.exit(5)\n",
    }
    for source_id, code in modules.items():
        (folder / "sources" / f"{source_id}.py").write_text(code, encoding="utf-8")
    data = yaml.safe_load(entry.config.path.read_text(encoding="utf-8"))
    data["sources"] = [{"id": source_id, "name": source_id} for source_id in modules]
    (folder / "config.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    config = load_config(folder / "config.yaml")
    workflow = Workflow(
        name="hostile",
        steps=[
            preparation_step(config),
            Parallel(*source_steps(config), name="ParallelProcessing"),
            aggregation_step(config),
            report_step(config, ""),
        ],
        telemetry=False,
    )
    state: dict[str, Any] = {}

    asyncio.run(workflow.arun(input="hostile", session_state=state))

    assert errors(Aggregation.model_validate(state["aggregation"])) == {
        "good": None,
        "typo": "sources/typo.py line 1: SyntaxError: expected ':'",
        "raises": "sources/raises.py line 2: RuntimeError: no credentials",
        "missing": "sources/missing.py line 1: No module named 'not_installed_anywhere'",
        "exits": "sources/exits.py line 2: SystemExit: 5",
    }


def test_a_workflow_without_workflow_py_is_a_one_line_usage_error(
    entry: WorkflowEntry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "half_made").mkdir()
    (tmp_path / "half_made" / "config.yaml").write_text(entry.config.path.read_text("utf-8"))
    workflows_in(monkeypatch, tmp_path)

    assert main(["run"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "workflows/half_made has no workflow.py" in error


BROKEN_SETTINGS = [
    ("history: [unclosed\n", r"settings\.yaml: is not valid YAML \(line 2\)"),
    (
        "history:\n  sqlite_file: 42\n",
        r"settings\.yaml: history\.sqlite_file must be a non-empty string, got 42",
    ),
    ("histroy:\n  sqlite_file: x\n", r"settings\.yaml: histroy is not a known setting"),
]


@pytest.mark.parametrize(("text", "message"), BROKEN_SETTINGS)
def test_a_broken_settings_yaml_is_a_one_line_usage_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    text: str,
    message: str,
) -> None:
    broken = tmp_path / "settings.yaml"
    broken.write_text(text, encoding="utf-8")
    workflows_in(monkeypatch, tmp_path)

    assert main(["history"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert re.search(message, error), error


@pytest.mark.parametrize("section", ["history", "serve"])
def test_a_section_variable_that_is_not_json_is_a_one_line_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], section: str
) -> None:
    # A user who means <PREFIX>HISTORY_DB and types <PREFIX>HISTORY: pydantic-settings raised
    # its own SettingsError, a traceback naming only the field.
    variable = current().env_prefix + section.upper()
    monkeypatch.setenv(variable, "/tmp/history.sqlite")

    assert main(["history"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert f"{variable}: not a JSON object" in error and f"`{section}:` section" in error


# A run whose first source is quick and the others hang, as `python -c` gets it.
INTERRUPTED_RUN = """
import importlib, pathlib, sys, time
from example_project import project
main = project.main
from parallel_workflow_runtime._core.registry import discover
from parallel_workflow_runtime._execution.steps import SOURCE_FUNCTION_NAMES

workflow_id, started = sys.argv[1], pathlib.Path(sys.argv[2])
entry = discover()[workflow_id]


quick_returned = started.with_name("quick returned")


def quick(source):
    quick_returned.touch()
    return dict(records=1)


def slow(source):
    while not quick_returned.exists() and len(entry.config.sources) > 1:
        time.sleep(0.05)
    time.sleep(1.0)  # long enough for the quick one to be reported, even on a busy machine
    started.touch()
    time.sleep(120)


for number, source in enumerate(entry.config.sources):
    module = importlib.import_module(entry.package + ".sources." + source.id)
    name = next(name for name in SOURCE_FUNCTION_NAMES if hasattr(module, name))
    fast = number == 0 and len(entry.config.sources) > 1
    setattr(module, name, quick if fast else slow)
sys.exit(main(["run", "--workflow", workflow_id]))
"""


@pytest.mark.integration
def test_ctrl_c_stops_the_run_in_one_line_and_records_what_finished(
    entry: WorkflowEntry, tmp_path: Path
) -> None:
    started = tmp_path / "slow sources started"
    first, *others = entry.config.sources
    process = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_RUN, entry.config.workflow_id, str(started)],
        env=user_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not started.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)

    assert (process.returncode, stderr) == (130, "interrupted\n"), stdout
    listing = cli("history", "--json")
    (record,) = json.loads(listing.stdout)
    assert record["status"] == "CANCELLED"
    states = {source["id"]: source["status"] for source in record["sources"]}
    expected = {source.id: "cancelled" for source in entry.config.sources}
    if others:
        expected[first.id] = "ok"
    assert states == expected
