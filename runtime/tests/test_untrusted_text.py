"""Text that the engine does not write itself: what sources return and raise, and the request.
It enters as valid Unicode, of a bounded size, and cannot lose the run or break its output:
at worst its own source fails, with one clear line."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agno.run.workflow import WorkflowRunOutput
from example_project import Aggregation, Source, SourceSummary

from parallel_workflow_runtime._cli.cli import main
from parallel_workflow_runtime._core.registry import WorkflowEntry
from parallel_workflow_runtime._core.results import (
    MAX_DETAILS_DEPTH,
    MAX_MESSAGE_CHARS,
    MAX_REQUEST_CHARS,
    SourceResult,
)
from parallel_workflow_runtime._execution.running import run_workflow
from parallel_workflow_runtime._observe.report import render_report
from parallel_workflow_runtime._store.history import history_for_run

from .conftest import PROJECT, user_environment
from .test_faults import errors, quick, run_sources

# The sources of the command-line tests: module-level functions, so that a worker process
# finds them by name (the `process` executor).


def two_records(source: Source) -> SourceSummary:
    return SourceSummary(records=2)


async def two_records_async(source: Source) -> SourceSummary:
    return SourceSummary(records=2)


def raises_a_lone_surrogate(source: Source) -> SourceSummary:
    raise ValueError("cannot read caf\udcff")  # a byte that was not UTF-8, as os.fsdecode gives


def raises_twenty_megabytes(source: Source) -> SourceSummary:
    raise ValueError("A" * 20_000_000)


def prints(source: Source) -> SourceSummary:
    print("debug from a source", flush=True)
    return SourceSummary(records=1)


async def prints_async(source: Source) -> SourceSummary:
    print("debug from a source", flush=True)
    return SourceSummary(records=1)


# `python -c` with this: the first source of every workflow runs the function of this module
# named by the first argument, the others the one named by the second; the rest go to the CLI.
HOSTILE_CLI = """
import importlib, sys
from example_project import project
main = project.main
from parallel_workflow_runtime._core.registry import discover
from parallel_workflow_runtime._execution.steps import SOURCE_FUNCTION_NAMES
from tests import test_untrusted_text as functions
for entry in discover().values():
    for index, source in enumerate(entry.config.sources):
        module = importlib.import_module(f"{entry.package}.sources.{source.id}")
        name = next(name for name in SOURCE_FUNCTION_NAMES if hasattr(module, name))
        setattr(module, name, getattr(functions, sys.argv[1] if index == 0 else sys.argv[2]))
raise SystemExit(main(sys.argv[3:]))
"""


def hostile_cli(
    function: str, *args: str | bytes, others: str = "two_records"
) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh process, its first source replaced by `function` of this module and
    the others by `others`."""
    return subprocess.run(
        [sys.executable, "-c", HOSTILE_CLI, function, others, *args],
        capture_output=True,
        text=True,
        cwd=PROJECT,  # where `tests` is a package
        env=user_environment(),
        timeout=300,
    )


def test_invalid_unicode_from_a_source_fails_only_that_source(entry: WorkflowEntry) -> None:
    def surrogate_value(source: Source) -> SourceSummary:
        return SourceSummary(records=1, details={"x": "\ud800"})

    def surrogate_key(source: Source) -> SourceSummary:
        return SourceSummary(records=1, details={"nested": [{"\udcff": 1}]})

    def surrogate_error(source: Source) -> SourceSummary:
        raise ValueError("bad \ud800 text")

    aggregation = run_sources(
        entry,
        {
            "surrogate_value": surrogate_value,
            "surrogate_key": surrogate_key,
            "surrogate_error": surrogate_error,
            "quick": quick,
        },
    )

    assert errors(aggregation) == {
        "surrogate_value": "details must be valid Unicode text: a lone surrogate '\\ud800' "
        'after \'{"x": "\'',
        "surrogate_key": "details must be valid Unicode text: a lone surrogate '\\udcff' "
        'after \'{"nested": [{"\'',
        "surrogate_error": "ValueError: bad \ufffd text",
        "quick": None,
    }
    aggregation.model_dump_json().encode()  # what the history stores: valid UTF-8


def test_details_nested_too_deep_fail_only_their_source(entry: WorkflowEntry) -> None:
    def deep(levels: int) -> dict[str, Any]:
        details: dict[str, Any] = {}
        for _ in range(levels):
            details = {"level": details}
        return details

    def nested_900_deep(source: Source) -> SourceSummary:
        return SourceSummary(records=1, details=deep(900))

    def nested_as_deep_as_allowed(source: Source) -> SourceSummary:
        return SourceSummary(records=1, details=deep(MAX_DETAILS_DEPTH - 1))

    aggregation = run_sources(
        entry,
        {"too_deep": nested_900_deep, "deep": nested_as_deep_as_allowed, "quick": quick},
    )

    assert errors(aggregation) == {
        "too_deep": f"details are nested more than {MAX_DETAILS_DEPTH} deep",
        "deep": None,
        "quick": None,
    }


@pytest.mark.integration
def test_run_json_stays_one_document_with_invalid_unicode_in_the_request_and_an_error(
    entry: WorkflowEntry, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow_id = entry.config.workflow_id
    # As a shell passes $'caf\xff': a byte that is not UTF-8.
    result = hostile_cli(
        "raises_a_lone_surrogate", "run", b"caf\xff", "--json", "--workflow", workflow_id
    )

    assert result.returncode == 1, result.stderr  # for that source alone
    document = json.loads(result.stdout)
    assert document["request"] == "caf\ufffd"
    assert document["sources"][0]["error"] == "ValueError: cannot read caf\ufffd"
    assert [source["ok"] for source in document["sources"]] == [
        index > 0 for index in range(len(entry.config.sources))
    ]
    assert main(["history", "show", document["run_id"], "--json"]) == 0
    stored = json.loads(capsys.readouterr().out)
    assert stored["aggregation"]["sources"] == document["sources"]


def test_the_request_enters_every_run_as_valid_capped_text(entry: WorkflowEntry) -> None:
    # run_workflow is where both the command line's and the HTTP server's requests enter.
    db = history_for_run()
    assert db is not None
    workflow = entry.factory(db=db, report_model="")
    requests = {"caf\udcff": "caf\ufffd", "x" * 1_000_000: None}
    for request, expected in requests.items():
        outcome = asyncio.run(run_workflow(workflow, request, db=db))

        assert outcome.aggregation is not None and outcome.errors == [], outcome.errors
        stored = outcome.aggregation.request
        if expected is not None:
            assert stored == expected
        else:
            note = " … [1,000,000 characters in all]"
            assert stored == "x" * (MAX_REQUEST_CHARS - len(note)) + note
        run = db.get_run(outcome.run_id or "")
        assert isinstance(run, WorkflowRunOutput) and run.input == stored  # as Agno stored it


@pytest.mark.integration
def test_a_twenty_megabyte_error_message_is_capped_in_the_output_and_the_history(
    entry: WorkflowEntry, tmp_path: Path
) -> None:
    result = hostile_cli(
        "raises_twenty_megabytes", "run", "--json", "--workflow", entry.config.workflow_id
    )

    assert result.returncode == 1, result.stderr
    error = json.loads(result.stdout)["sources"][0]["error"]
    note = " … [20,000,012 characters in all]"
    kept = MAX_MESSAGE_CHARS - len("ValueError: ") - len(note)
    assert error == "ValueError: " + "A" * kept + note
    assert len(result.stdout) < 100_000  # 40 MB before
    assert (tmp_path / "history.sqlite").stat().st_size < 2_000_000  # 120 MB before


def test_errors_and_warnings_are_kept_as_one_capped_line() -> None:
    result = SourceResult(
        id="noisy",
        name="Noisy",
        error="first line\nsecond\ud800 line " + "e" * 1_000_000,
        warnings=["\n".join(["w"] * 1_000_000)],
    )

    assert result.error is not None and "\n" not in result.error
    assert result.error.startswith("first line second\ufffd line eee")
    assert len(result.error) <= MAX_MESSAGE_CHARS
    (warning,) = result.warnings
    assert warning.startswith("w w w") and len(warning) <= MAX_MESSAGE_CHARS


@pytest.mark.integration
@pytest.mark.parametrize(
    ("executor", "function", "others"),
    [
        ("thread", "prints", "two_records"),
        ("async", "prints_async", "two_records_async"),
        ("process", "prints", "two_records"),
    ],
)
def test_what_a_source_prints_goes_to_stderr_with_json(
    entry: WorkflowEntry, executor: str, function: str, others: str
) -> None:
    workflow_id = entry.config.workflow_id
    result = hostile_cli(
        function, "run", "--json", "--executor", executor, "--workflow", workflow_id, others=others
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sources"][0]["ok"] is True  # stdout: only the document
    assert "debug from a source" in result.stderr


@pytest.mark.parametrize("latency", ["1e-300", "0", "1e308", "inf"])
def test_a_bench_latency_it_cannot_time_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], latency: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", "--latency", f"0.2,{latency}"])

    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f"argument --latency: must be from 0.001 to 3600 seconds, got {latency}" in error


def test_a_request_cannot_add_structure_to_the_report(entry: WorkflowEntry) -> None:
    workflow = entry.factory(report_model="")
    state: dict[str, Any] = {}
    asyncio.run(workflow.arun(input="Weekly\n# Injected heading\n\n- [x](y)", session_state=state))
    aggregation = Aggregation.model_validate(state["aggregation"])

    report = render_report(aggregation)

    headings = [line for line in report.splitlines() if line.startswith("#")]
    assert "# Injected heading" not in headings
    assert "Request: Weekly # Injected heading - \\[x\\](y)" in report.splitlines()
