"""The command line: the --json contract, exit codes, progress, listing and the bench."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from parallel_workflow_runtime._bench import workflow as workflow_bench
from parallel_workflow_runtime._bench.serve import Answer, burst_summary
from parallel_workflow_runtime._cli.cli import main
from parallel_workflow_runtime._core.registry import WorkflowEntry
from parallel_workflow_runtime._execution.children import descendants
from parallel_workflow_runtime._execution.contained_loop import ContainedLoop, new_loop

from .conftest import (
    FIRST_WORKFLOW,
    HISTORY_DB_ENV,
    PROJECT,
    RUNTIME,
    SYNTHETIC_PROGRAM,
    WORKFLOWS,
    cli,
    replace_source,
    synthetic_cli,
    user_environment,
)


@pytest.mark.integration
def test_run_json_reports_every_source(entry: WorkflowEntry) -> None:
    result = synthetic_cli("run", "--json", "--workflow", entry.config.workflow_id)

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["workflow_id"] == entry.config.workflow_id
    assert [s["id"] for s in document["sources"]] == [s.id for s in entry.config.sources]
    assert [s["name"] for s in document["sources"]] == [s.name for s in entry.config.sources]
    for source in document["sources"]:
        assert set(source) >= {"id", "name", "ok", "status", "attempts", "records", "seconds"}
        assert source["ok"] is True and source["error"] is None
        assert (source["status"], source["attempts"]) == ("ok", 1)
    assert document["total_sources"] == len(entry.config.sources)
    assert document["total_records"] == sum(s["records"] for s in document["sources"])
    assert document["failed"] == []
    assert document["wall_seconds"] > 0
    assert document["sequential_seconds"] == pytest.approx(
        sum(s["seconds"] for s in document["sources"]), abs=0.002
    )
    assert document["time_saved_seconds"] == pytest.approx(
        max(document["sequential_seconds"] - document["wall_seconds"], 0), abs=0.002
    )
    assert document["report"].startswith("# ")
    assert document["run_id"] and document["errors"] == []


@pytest.mark.usefixtures("synthetic_sources")
def test_run_prints_a_summary_and_the_report(
    entry: WorkflowEntry, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "Nightly refresh", "--workflow", entry.config.workflow_id]) == 0
    output = capsys.readouterr().out

    assert "s saved" in output
    assert "Request: Nightly refresh" in output


@pytest.mark.usefixtures("synthetic_sources")
def test_stream_prints_each_source_as_it_completes(
    entry: WorkflowEntry, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--stream", "--workflow", entry.config.workflow_id]) == 0
    output = capsys.readouterr().out

    for source in entry.config.sources:
        assert f"✓ {source.name}: " in output
    assert "▶ ParallelProcessing" in output


@pytest.mark.usefixtures("synthetic_sources")
def test_a_terminal_shows_a_live_table_of_the_sources(
    entry: WorkflowEntry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--workflow", entry.config.workflow_id]) == 0
    plain = capsys.readouterr().out
    # FORCE_COLOR makes rich treat the captured output as a terminal, as a user's shell is.
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert main(["run", "--workflow", entry.config.workflow_id]) == 0
    live = capsys.readouterr().out

    # Its first frame, before any source starts, then frames with sources running.
    assert f"{len(entry.config.sources)} waiting" in live
    assert "running" in live
    assert f"{len(entry.config.sources)} waiting" not in plain  # no live frames when piped
    assert "s saved" in plain


def test_bench_times_the_three_ways_and_its_numbers_are_sane(
    entry: WorkflowEntry, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["--sources=20", "--latency=0.05", "--max-concurrency=5", "--repeat=2", "--json"]

    assert main(["bench", "--workflow", entry.config.workflow_id, *arguments]) == 0
    bench = json.loads(capsys.readouterr().out)
    assert bench["ideal_seconds"] == pytest.approx(4 * 0.05)  # 20 sources, 5 at a time
    assert bench["sequential_seconds"] >= 20 * 0.05  # the sum of the sources' own times
    assert bench["measured_sequential_seconds"] is None  # not asked for: it would take 1 s
    assert len(bench["workflow_runs"]) == len(bench["raw_gather_runs"]) == 2
    assert min(bench["workflow_runs"] + bench["raw_gather_runs"]) >= bench["ideal_seconds"]
    assert bench["results_per_run"] == [20, 20]
    assert bench["wall_over_ideal"] == pytest.approx(
        bench["workflow_seconds"] / bench["ideal_seconds"], rel=0.01
    )
    assert bench["workflow_over_raw"] == pytest.approx(
        bench["workflow_seconds"] / bench["raw_gather_seconds"], rel=0.01
    )


def test_bench_runs_the_workflow_on_the_event_loop_that_run_uses(
    entry: WorkflowEntry, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `run` and `serve` run workflows on a ContainedLoop, whose callbacks cost a little more
    # than asyncio's own loop: a bench on asyncio.run would time a faster engine than users get.
    loops: list[asyncio.AbstractEventLoop] = []

    def noted_loop() -> asyncio.AbstractEventLoop:
        loops.append(new_loop())
        return loops[-1]

    monkeypatch.setattr(workflow_bench, "new_loop", noted_loop)
    arguments = ["--sources=4", "--latency=0.01", "--repeat=1", "--json"]

    assert main(["bench", "--workflow", entry.config.workflow_id, *arguments]) == 0
    assert len(json.loads(capsys.readouterr().out)["workflow_runs"]) == 1
    assert len(loops) == 2  # one per way timed: the sources' own (async) and thread
    assert all(isinstance(loop, ContainedLoop) for loop in loops)


def test_bench_prints_a_table_and_refuses_bad_options(
    entry: WorkflowEntry, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow = ["--workflow", entry.config.workflow_id]
    arguments = ["--sources=3", "--latency=0.05,0.1", "--repeat=2", "--kind=sync", "--sequential"]

    assert main(["bench", *workflow, *arguments]) == 0
    printed = capsys.readouterr()
    table = printed.out
    for way in (
        "ideal",
        "sequential (sum of times)",
        "sequential (measured, 1 run)",
        "workflow, thread",
        "raw gather",
    ):
        assert way in table
    assert "3 sync sources of 0.05/0.1 s, cap none" in table
    # Progress, on stderr, while it runs: one line a run, and before the slow baseline.
    assert printed.err.count("\nrun ") + printed.err.startswith("run ") == 2
    assert "one source after another, about 0 s ..." in printed.err
    for option, message in (
        ("--sources=0", "argument --sources: must be greater than 0, got 0"),
        ("--latency=nan", "argument --latency: must be from 0.001 to 3600 seconds, got nan"),
    ):
        with pytest.raises(SystemExit) as refused:
            main(["bench", *workflow, option])
        assert refused.value.code == 2
        assert message in capsys.readouterr().err


@pytest.mark.integration
def test_bench_startup_times_whole_processes_on_a_history_of_its_own(
    entry: WorkflowEntry, tmp_path: Path
) -> None:
    history = tmp_path / "history.sqlite"  # the project's history, as the user has it
    bench = cli(
        "bench", "--startup", "--repeat=1", "--json", "--workflow", entry.config.workflow_id,
        **{HISTORY_DB_ENV: str(history)},
    )  # fmt: skip

    assert bench.returncode == 0, bench.stderr
    timings = json.loads(bench.stdout)
    assert 0 < timings["block_seconds"] < timings["run_seconds"]
    assert timings["outside_block_seconds"] == pytest.approx(
        timings["run_seconds"] - timings["block_seconds"], abs=0.002
    )
    assert timings["outside_over_floor"] == pytest.approx(
        timings["outside_block_seconds"] / timings["import_floor_seconds"], rel=0.01
    )
    assert timings["import_floor_seconds"] > 0 and timings["help_seconds"] > 0
    assert "1/1: import agno.workflow" in bench.stderr
    assert not history.exists()  # the timed run wrote to a history of its own
    refused = cli(
        "bench", "--startup", "--executor=process", "--workflow", entry.config.workflow_id
    )
    assert refused.returncode == 2
    assert "--startup takes no --html, --executor or --sequential" in refused.stderr


@pytest.mark.integration
def test_bench_serve_sends_runs_at_once_to_a_real_server_and_finds_them_in_its_history(
    tmp_path: Path,
) -> None:
    entry = WORKFLOWS[FIRST_WORKFLOW]
    history = tmp_path / "history.sqlite"  # the project's history, as the user has it
    bench = cli(
        "bench", "--serve", "--runs=8", "--repeat=2", "--json", **{HISTORY_DB_ENV: str(history)}
    )  # fmt: skip

    assert bench.returncode == 0, bench.stderr
    timings = json.loads(bench.stdout)
    assert (timings["runs"], timings["repeat"], timings["sent"]) == (8, 2, 16)
    assert timings["sources"] == len(entry.config.sources)  # the workflow's own number
    assert (timings["latencies"], timings["source_kind"]) == ([0.05], "async")
    assert timings["answered_completed"] == timings["in_history"] == 16
    assert (timings["lost"], timings["errors"], timings["unanswered"]) == (0, 0, 0)
    assert [len(timings["bursts"]), timings["p95_over_p50_target"]] == [2, 3.0]
    for burst in timings["bursts"]:
        assert 0 < burst["p50_seconds"] <= burst["p95_seconds"] <= burst["max_seconds"]
        assert burst["p95_over_p50"] == pytest.approx(
            burst["p95_seconds"] / burst["p50_seconds"], rel=0.01
        )
        assert burst["block_seconds_median"] >= 0.05  # each run waited for its sources
    assert "1/2: " in bench.stderr and "2/2: " in bench.stderr
    assert not history.exists()  # the server wrote to a history of its own


@pytest.mark.integration
def test_bench_serve_prints_its_lines_and_leaves_no_process_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The server is a process of its own, which imports the project as a user's would.
    monkeypatch.setenv("PYTHONPATH", user_environment()["PYTHONPATH"])
    monkeypatch.setenv(HISTORY_DB_ENV, str(tmp_path / "history.sqlite"))
    before = descendants()
    arguments = ["--runs=4", "--repeat=1", "--kind=sync", "--latency=0.02,0.03", "--sources=2"]

    assert main(["bench", "--serve", *arguments]) == 0
    assert descendants() <= before
    printed = capsys.readouterr().out
    assert f"4 runs at once over HTTP, 1 times: {FIRST_WORKFLOW} with 2 sync sources" in printed
    assert "run's answer: p50 " in printed and "the runs' parallel blocks: median " in printed
    assert "runs: 4 sent, 4 answered COMPLETED, 4 of them in the history; lost 0" in printed
    assert "p95 / p50: " in printed and "the target 3.0 with none lost" in printed


def test_bench_serve_percentiles_interpolate_between_the_two_nearest_times() -> None:
    # Answers of 1 to 20 s, in no order: the median halfway between 10 and 11 s, the 95th
    # percentile 0.95 of the way from the shortest to the longest (1 + 19 * 0.95 = 19.05 s).
    answers = [Answer(float(seconds), 200, run_id=str(seconds)) for seconds in (20, *range(1, 20))]
    burst = burst_summary(answers, 20.0, {answer.run_id or "" for answer in answers})

    assert (burst["p50_seconds"], burst["p95_seconds"], burst["max_seconds"]) == (10.5, 19.05, 20)
    assert burst["p95_over_p50"] == round(19.05 / 10.5, 3)
    # `--runs=1`: its one answer's time is every percentile.
    alone = burst_summary([Answer(0.3, 200, run_id="only")], 0.3, {"only"})
    assert (alone["p50_seconds"], alone["p95_seconds"], alone["p95_over_p50"]) == (0.3, 0.3, 1)


SERVE_KINDS_ONLY = "--serve takes no --startup or --rows, and --kind async or sync only"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--serve", "--executor=dask"], "--serve takes no --html, --executor or --sequential"),
        (["--serve", "--startup"], SERVE_KINDS_ONLY),
        (["--serve", "--kind=sql"], SERVE_KINDS_ONLY),
        (["--serve", "--kind=cpu"], SERVE_KINDS_ONLY),
        (["--runs=5"], "--runs is for --serve"),  # nothing else would read it
    ],
)
def test_bench_serve_refuses_what_it_cannot_honour(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *arguments]) == 2
    error = capsys.readouterr().err
    assert error.endswith(f"error: {message}\n") and error.count("\n") == 1, error


def test_list_shows_every_workflow(
    entry: WorkflowEntry, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list"]) == 0
    assert entry.config.workflow_id in capsys.readouterr().out


def test_errors_name_the_command_as_it_was_typed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    errors = {}
    as_typed = (
        "/usr/local/bin/example-project",  # the console script
        "/project/src/example_project/__main__.py",  # python -m
    )
    for argv0 in as_typed:
        monkeypatch.setattr(sys, "argv", [argv0])
        assert main(["run", "--workflow", "no-such-workflow"]) == 2
        errors[argv0.rpartition("/")[2]] = capsys.readouterr().err

    as_script, as_module = errors.values()
    assert as_script.startswith("example-project: error: unknown workflow id")
    assert as_module == (
        "python -m example_project: error: unknown workflow id 'no-such-workflow'; "
        f"known: {', '.join(WORKFLOWS)}\n"
    )


@pytest.mark.usefixtures("synthetic_sources")
def test_a_failed_source_makes_the_exit_code_1(
    entry: WorkflowEntry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = entry.config.sources[-1]

    def fails(source: Any) -> Any:
        raise TimeoutError("export took too long")

    replace_source(monkeypatch, entry, broken.id, fails)

    assert main(["run", "--json", "--workflow", entry.config.workflow_id]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["failed"] == [broken.id]
    assert document["sources"][-1]["error"] == "TimeoutError: export took too long"
    assert sum(s["ok"] for s in document["sources"]) == len(entry.config.sources) - 1


# As where only the package is installed, without the serve and postgres extras.
WITHOUT_EXTRAS = """
import sys
for module in ("sqlalchemy", "agno.db.sqlite", "agno.db.postgres", "fastapi", "uvicorn"):
    sys.modules[module] = None  # importing it raises ImportError
"""


@pytest.mark.integration
def test_the_package_runs_without_its_extras(entry: WorkflowEntry) -> None:
    def without_extras(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", WITHOUT_EXTRAS + SYNTHETIC_PROGRAM, *args],
            capture_output=True,
            text=True,
            cwd=PROJECT,
            env=user_environment(),
            timeout=300,
        )

    run = without_extras("run", "--json", "--workflow", entry.config.workflow_id)
    serving = without_extras("serve")

    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert document["errors"] == [] and document["total_sources"] == len(entry.config.sources)
    assert serving.returncode == 2
    assert "serving needs the runtime's serve extra: keep serve in the extras of" in serving.stderr


# The project's command line in a process where the modules named (comma-separated) in its
# first argument cannot be imported; the rest are its arguments.
WITHOUT_MODULES = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # importing it raises ModuleNotFoundError
from example_project import project
raise SystemExit(project.main(sys.argv[2:]))
"""


def without_modules(modules: Sequence[str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_MODULES, ",".join(modules), *arguments],
        capture_output=True,
        text=True,
        env=user_environment(),
        timeout=300,
    )


@pytest.mark.integration
def test_a_missing_dependency_is_one_line_naming_the_reinstall() -> None:
    # As after a `copier update` that added a dependency, before the reinstall: pebble, which
    # the engine imports for its process executor, is not installed.
    arguments = ["run", "--json", "--workflow", "example-project", "--executor", "process"]
    result = without_modules(["pebble"], *arguments)

    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    (line,) = result.stderr.splitlines()
    assert "the module 'pebble' is not installed" in line
    assert 'pip install -e ".[dev]"' in line


# What the commands use, none of which `--help` imports.
THE_ENGINES_DEPENDENCIES = (
    "agno",
    "pydantic",
    "yaml",
    "rich",
    "sqlalchemy",
    "dlt",
    "pebble",
    "markdown_it",
)


@pytest.mark.integration
@pytest.mark.parametrize("arguments", [["--help"], ["run", "--help"], ["bench", "--help"]])
def test_help_imports_nothing_that_the_commands_use(arguments: list[str]) -> None:
    result = without_modules(THE_ENGINES_DEPENDENCIES, *arguments)

    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.startswith("usage: ")


@pytest.mark.integration
def test_version_names_the_project_the_runtime_and_agno_at_once() -> None:
    # Read from the installed metadata: none of the modules the commands use is imported.
    result = without_modules(THE_ENGINES_DEPENDENCIES, "--version")

    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    runtime = (RUNTIME / "VERSION").read_text(encoding="utf-8").strip()
    # The project's version is its pyproject.toml's: it runs from its folder, uninstalled.
    assert result.stdout == (
        f"example-project 0.0.0 (parallel-workflow-runtime {runtime}, agno {version('agno')})\n"
    )


@pytest.mark.integration
@pytest.mark.parametrize("listing", [["history"], ["history", "ticks"]])
def test_a_limit_too_large_for_the_database_is_a_usage_error(listing: list[str]) -> None:
    # SQLite and PostgreSQL hold a LIMIT of 64 bits: a larger one was an OverflowError (or
    # "bigint out of range") traceback, once the history had a run.
    assert cli("run", "--workflow", FIRST_WORKFLOW).returncode == 0

    listed = cli(*listing, "--limit", "99999999999999999999")

    assert listed.returncode == 2, listed.stderr
    assert "Traceback" not in listed.stderr
    assert listed.stderr.splitlines()[-1].endswith(
        "error: argument --limit: must be at most 1000000, got 99999999999999999999"
    )
    assert cli(*listing, "--limit", "1000000").returncode == 0


@pytest.mark.integration
def test_schedule_next_refuses_more_fire_times_than_it_can_compute_at_once() -> None:
    # Two million fire times kept croniter busy for minutes before printing anything.
    asked = cli("schedule", "next", "nightly", "--count", "2000000")

    assert asked.returncode == 2
    assert asked.stderr.splitlines()[-1].endswith(
        "error: argument --count: must be at most 1000, got 2000000"
    )
