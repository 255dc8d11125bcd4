"""`check`: a table (or JSON) of the project's settings, workflows, sources and variables, each
connector source's target tried for real (an SQLite file, a PostgreSQL server, an HTTP port,
a folder), exit 1 on any problem, and never a secret's value."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import example_project.workflows
import pytest
import yaml

from parallel_workflow_runtime import Project
from parallel_workflow_runtime._cli.cli import main
from parallel_workflow_runtime._core import project as project_module

from .conftest import HISTORY_DB_ENV, PACKAGE, REPORT_MODEL_ENV, SRC, WORKFLOWS, free_port

# What a connector source's module does with its rows: check never runs it, only builds it.
CONNECTOR_MODULE = """
from parallel_workflow_runtime import Rows, Source, SourceSummary


def run(source: Source, rows: Rows) -> SourceSummary:
    return SourceSummary(records=sum(1 for _ in rows))
"""
PYTHON_MODULE = """
from parallel_workflow_runtime import Source, SourceSummary


def run(source: Source) -> SourceSummary:
    return SourceSummary(records=1)
"""
WORKFLOW_MODULE = (WORKFLOWS["example-project"].config.path.parent / "workflow.py").read_text(
    encoding="utf-8"
)
SECRET = "s3cret-never-shown"


@dataclass
class CheckedProject:
    """A project of the test's own, in a folder as the template renders one (so that its
    .env is read), with workflows whose sources the test chooses."""

    root: Path
    folders: list[str]

    @property
    def workflows(self) -> Path:
        return self.root / "src" / PACKAGE / "workflows"

    def add_workflow(self, folder: str, sources: list[dict[str, Any]], **workflow: Any) -> Path:
        """A workflow `folder` of these sources, each with a module of its kind."""
        # Unique module names: the folder's modules stay imported for the rest of the tests.
        self.folders.append(folder)
        path = self.workflows / folder
        (path / "sources").mkdir(parents=True)
        (path / "data").mkdir()
        (path / "__init__.py").write_text("")
        (path / "sources" / "__init__.py").write_text("")
        for source in sources:
            module = PYTHON_MODULE if source.get("kind", "python") == "python" else CONNECTOR_MODULE
            (path / "sources" / f"{source['id']}.py").write_text(module)
        (path / "workflow.py").write_text(
            WORKFLOW_MODULE.replace("def get_example_project", f"def get_{folder}")
        )
        document = {
            "workflow": {
                "name": folder.title(),
                "workflow_id": folder.replace("_", "-"),
                **workflow,
            },
            "sources": sources,
        }
        (path / "config.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def settings(self, **changes: Any) -> None:
        path = self.workflows / "settings.yaml"
        settings = yaml.safe_load(path.read_text(encoding="utf-8"))
        path.write_text(yaml.safe_dump({**settings, **changes}), encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CheckedProject]:
    root = tmp_path / "checkout"
    workflows = root / "src" / PACKAGE / "workflows"
    workflows.mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "example-project"\nversion = "1"\n')
    settings = (SRC / PACKAGE / "workflows" / "settings.yaml").read_text(encoding="utf-8")
    (workflows / "settings.yaml").write_text(settings.replace("default_workflow:", "# was:"))
    # Its workflows are modules of the example project's package, as they would be of its own.
    monkeypatch.setattr(
        example_project.workflows, "__path__", [*example_project.workflows.__path__, str(workflows)]
    )
    monkeypatch.setattr(project_module, "_registered", Project(PACKAGE, workflows))
    checked = CheckedProject(root, [])
    yield checked
    for name in list(sys.modules):
        if any(name.startswith(f"{PACKAGE}.workflows.{folder}") for folder in checked.folders):
            del sys.modules[name]


def sqlite_sample(path: Path, rows: int = 3) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE records (id INTEGER, updated_at TEXT)")
        connection.executemany(
            "INSERT INTO records VALUES (?, ?)", [(n, f"2026-11-0{n}") for n in range(1, rows + 1)]
        )
    connection.close()


def sql_source(source_id: str, **block: Any) -> dict[str, Any]:
    return {
        "id": source_id,
        "name": source_id.title(),
        "kind": "sql",
        "sql": {"url_env": f"{source_id.upper()}_URL", "table": "records", **block},
    }


def http_source(source_id: str, base_url: str, **block: Any) -> dict[str, Any]:
    return {
        "id": source_id,
        "name": source_id.title(),
        "kind": "http",
        "http": {
            "base_url": base_url,
            "path": source_id,
            "auth": {"type": "bearer", "token_env": f"{source_id.upper()}_TOKEN"},
            **block,
        },
    }


def file_source(source_id: str, path: str) -> dict[str, Any]:
    return {
        "id": source_id,
        "name": source_id.title(),
        "kind": "file",
        "file": {"path": path, "glob": "*.jsonl", "format": "jsonl"},
    }


def check(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, dict[str, Any]]:
    """`check --json`: its exit code, and its findings by name (a source's without its kind,
    a workflow's report model as "<workflow> report model"), the whole output searched for
    SECRET."""
    code = main(["check", "--json", *arguments])
    printed = capsys.readouterr()
    assert SECRET not in printed.out + printed.err
    document = json.loads(printed.out)
    assert document["ok"] is (code == 0) and document["problems"] == sum(
        finding["problem"] for finding in document["checks"]
    )
    found = {}
    for finding in document["checks"]:
        suffix = " report model" if finding["area"] == "report model" else ""
        found[finding["name"].split(" (")[0] + suffix] = finding
    return code, found


def offline_demo(project: CheckedProject) -> Path:
    """A workflow of every kind as a fresh render has them: sql and http read their bundled
    samples (their variables unset), file its folder of the workflow."""
    workflow = project.add_workflow(
        "demo",
        [
            sql_source("orders", sqlite_file="data/orders.sqlite"),
            http_source("events", "https://api.example.com/v1/", sample_file="data/events.jsonl"),
            file_source("exports", "data/exports"),
            {"id": "scoring", "name": "Scoring"},
        ],
    )
    sqlite_sample(workflow / "data" / "orders.sqlite")
    (workflow / "data" / "events.jsonl").write_text('{"id": 1}\n{"id": 2}\n')
    (workflow / "data" / "exports").mkdir()
    (workflow / "data" / "exports" / "a.jsonl").write_text('{"id": 1}\n')
    return workflow


def test_a_fresh_project_reads_its_samples_and_all_is_well(
    project: CheckedProject, capsys: pytest.CaptureFixture[str]
) -> None:
    offline_demo(project)

    code, found = check(capsys)

    assert code == 0
    assert (found["demo/orders"]["status"], found["demo/orders"]["detail"]) == (
        "sample",
        "sample data/orders.sqlite: table records",
    )
    assert found["demo/events"]["status"] == "sample"
    assert found["demo/events"]["detail"] == "sample data/events.jsonl: 2 items"
    assert found["demo/exports"]["status"] == "ok"
    assert found["demo/scoring"]["status"] == "not probed"
    # The variables that would take the sources off their samples: unset, and no problem.
    for variable in ("ORDERS_URL", "EVENTS_TOKEN"):
        assert found[variable]["area"] == "variable" and found[variable]["status"] == "unset"
        assert "unset: reads the sample data/" in found[variable]["detail"]
    assert found["DATABASE_URL"]["status"] == "unset"
    assert found[HISTORY_DB_ENV]["status"] == "set"  # conftest's history of the test
    assert found[REPORT_MODEL_ENV]["status"] == "unset"  # set, but empty
    assert found["demo"] == {
        "area": "workflow",
        "name": "demo",
        "status": "ok",
        "detail": "Demo: 4 sources",
        "problem": False,
    }
    assert found["default_workflow"]["detail"] == "the only workflow"

    # The table says the same, and that all is well.
    assert main(["check"]) == 0
    table = capsys.readouterr().out
    assert table.rstrip().endswith("All is well.")
    assert "demo/orders (sql)" in table and "sample data/orders.sqlite: table records" in table


def test_names_and_errors_are_shown_as_they_are_not_as_markup(
    project: CheckedProject, capsys: pytest.CaptureFixture[str]
) -> None:
    project.add_workflow("marked", [file_source("logs", "data/[bold]logs[/bold]")])

    assert main(["check"]) == 1
    assert "file: the folder data/[bold]logs[/bold] does not exist" in capsys.readouterr().out


@pytest.mark.integration
def test_every_problem_is_a_row_of_its_own_and_the_exit_code_is_1(
    project: CheckedProject, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow = project.add_workflow(
        "broken_targets",
        [
            # No sample to fall back to, and its variable unset.
            sql_source("unset"),
            # A database that is not there, its password in the URL.
            sql_source("unreachable"),
            # A database without the table.
            sql_source("no_table"),
            # An API where nothing listens.
            http_source("closed", f"http://127.0.0.1:{free_port()}/"),
            file_source("no_folder", "data/not-there"),
        ],
    )
    monkeypatch.setenv("UNREACHABLE_URL", f"postgresql+psycopg://app:{SECRET}@127.0.0.1:1/db")
    sqlite3.connect(workflow / "empty.sqlite").close()
    monkeypatch.setenv("NO_TABLE_URL", f"sqlite:///{workflow / 'empty.sqlite'}")
    monkeypatch.setenv("CLOSED_TOKEN", SECRET)
    monkeypatch.delenv("UNSET_URL", raising=False)
    # A workflow whose config.yaml is broken, and one whose source module is.
    project.add_workflow("bad_config", [{"id": "one", "name": "One"}], max_concurrency=0)
    broken_module = project.add_workflow("bad_module", [{"id": "two", "name": "Two"}])
    (broken_module / "sources" / "two.py").write_text("def run(source:\n")
    project.settings(default_workflow="renamed")

    code, found = check(capsys, "--timeout", "3")

    assert code == 1
    problems = {name for name, finding in found.items() if finding["problem"]}
    assert problems == {
        "broken-targets/unset",
        "UNSET_URL",
        "broken-targets/unreachable",
        "broken-targets/no_table",
        "broken-targets/closed",
        "broken-targets/no_folder",
        "bad_config",
        "bad-module/two",
        "default_workflow",
    }
    detail = {name: finding["detail"] for name, finding in found.items()}
    assert "UNSET_URL" in detail["broken-targets/unset"]
    assert "has no table records" in detail["broken-targets/no_table"]
    assert detail["broken-targets/closed"].startswith("http: ")
    assert detail["broken-targets/no_folder"] == "file: the folder data/not-there does not exist"
    assert "workflow.max_concurrency must be a whole number of at least 1" in detail["bad_config"]
    assert detail["bad-module/two"] == "sources/two.py line 1: SyntaxError: '(' was never closed"
    assert found["bad-module"]["status"] == "ok"  # it builds: the source would fail alone
    assert detail["default_workflow"] == (
        "'renamed' is not a workflow of this project; known: bad-module, broken-targets"
    )
    for name in ("UNREACHABLE_URL", "NO_TABLE_URL", "CLOSED_TOKEN"):
        assert found[name]["status"] == "set"

    assert main(["check", "--timeout", "3"]) == 1
    assert capsys.readouterr().out.rstrip().endswith("9 problems.")


@pytest.mark.integration
def test_a_target_that_never_answers_is_a_problem_once_the_timeout_is_up(
    project: CheckedProject, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A port that accepts connections (the kernel does, into the backlog) and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        project.add_workflow(
            "silent",
            [http_source(f"api_{n}", f"http://127.0.0.1:{port}/") for n in range(3)],
        )
        for n in range(3):
            monkeypatch.setenv(f"API_{n}_TOKEN", SECRET)

        started = time.monotonic()
        code, found = check(capsys, "--timeout", "1")
        elapsed = time.monotonic() - started

    assert code == 1
    for n in range(3):
        assert found[f"silent/api_{n}"]["status"] == "problem"
        detail = found[f"silent/api_{n}"]["detail"]
        assert "timed out" in detail or "no answer within 1 s" in detail, detail
    assert elapsed < 5, "the three probes ran one after another, or past their timeout"


def test_the_env_file_sets_what_the_environment_does_not_and_check_says_which(
    project: CheckedProject, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow = offline_demo(project)
    real = workflow / "data" / "real.sqlite"
    sqlite_sample(real, rows=5)
    (project.root / ".env").write_text(
        f"ORDERS_URL=sqlite:///{real}\nEVENTS_TOKEN={SECRET}\n", encoding="utf-8"
    )
    # What .env sets goes after the test: unset now, recorded as unset (a delenv of a variable
    # that is not set records nothing).
    monkeypatch.setenv("ORDERS_URL", "")
    monkeypatch.delenv("ORDERS_URL")
    monkeypatch.setenv("EVENTS_TOKEN", "")  # set, though empty: .env does not override it

    code, found = check(capsys)

    assert code == 0
    assert found["ORDERS_URL"]["status"] == "set (.env)"
    assert found["demo/orders"]["status"] == "ok"  # the database, not the sample
    assert found["demo/orders"]["detail"] == f"sqlite:///{real}: table records"
    assert found["EVENTS_TOKEN"]["status"] == "unset" and os.environ["EVENTS_TOKEN"] == ""
    assert found["demo/events"]["status"] == "sample"
    monkeypatch.delenv("ORDERS_URL")  # as in a process of its own
    assert main(["check"]) == 0
    assert f"{project.root / '.env'} set ORDERS_URL (a variable set in the environment wins" in (
        capsys.readouterr().out
    )


def test_the_report_model_needs_its_providers_key_and_sdk(
    project: CheckedProject, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.add_workflow("reported", [{"id": "one", "name": "One"}], report_model="")
    pytest.importorskip("openai", reason="the test extra installs the OpenAI SDK")
    monkeypatch.setenv(REPORT_MODEL_ENV, "openai:gpt-4o-mini")

    code, found = check(capsys)
    assert code == 1
    assert found["OPENAI_API_KEY"]["status"] == "problem"
    assert found["OPENAI_API_KEY"]["detail"] == (
        "unset: reported: the report model openai:gpt-4o-mini"
    )
    assert found[REPORT_MODEL_ENV]["status"] == "set"

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    assert check(capsys)[0] == 0

    if importlib.util.find_spec("anthropic") is None:  # the test extra does not install it
        monkeypatch.setenv(REPORT_MODEL_ENV, "anthropic:claude-sonnet-4-5")
        code, found = check(capsys)
        assert code == 1
        assert "needs its provider's SDK" in found["reported"]["detail"]
        assert found["ANTHROPIC_API_KEY"]["status"] == "problem"


def test_dask_and_tracing_name_their_variables(
    project: CheckedProject, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.add_workflow("spread", [{"id": "one", "name": "One", "executor": "dask"}])
    project.settings(tracing=True, dask_address="tcp://127.0.0.1:8786")
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)

    code, found = check(capsys)

    assert code == 0
    assert found["DASK_SCHEDULER_ADDRESS"]["status"] == "unset"
    assert "settings.yaml: tcp://127.0.0.1:8786" in found["DASK_SCHEDULER_ADDRESS"]["detail"]
    assert found["OTEL_EXPORTER_OTLP_ENDPOINT"]["area"] == "variable"


def test_the_history_is_tried_without_writing_to_it(
    project: CheckedProject,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    project.add_workflow("quiet", [{"id": "one", "name": "One"}])
    history = Path(os.environ[HISTORY_DB_ENV])

    code, found = check(capsys)
    assert code == 0 and found[str(history)]["detail"] == "SQLite; created by the first run"
    assert not history.exists()

    history.write_text("not a database\n" * 100)
    code, found = check(capsys)
    assert code == 1 and "is not a database" in found[str(history)]["detail"]

    monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg://app:{SECRET}@127.0.0.1:1/runs")
    code, found = check(capsys, "--timeout", "2")
    assert code == 1
    assert found["postgresql+psycopg://app:***@127.0.0.1:1/runs"]["status"] == "problem"

    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if url:
        monkeypatch.setenv("DATABASE_URL", url)
        code, found = check(capsys)
        assert code == 0
        assert [f["detail"] for f in found.values() if f["area"] == "history"] == [
            "PostgreSQL; connected"
        ]


def test_a_broken_settings_yaml_is_a_problem_and_the_workflows_are_still_checked(
    project: CheckedProject, capsys: pytest.CaptureFixture[str]
) -> None:
    offline_demo(project)
    project.settings(histroy={"sqlite_file": "x.sqlite"})

    code, found = check(capsys)

    assert code == 1
    assert found["settings.yaml"]["status"] == "problem"
    assert "histroy is not a known setting" in found["settings.yaml"]["detail"]
    assert found["demo"]["status"] == "not built"  # building it reads settings.yaml
    assert found["demo/orders"]["status"] == "sample"


def test_usage_errors_exit_2(project: CheckedProject, capsys: pytest.CaptureFixture[str]) -> None:
    offline_demo(project)
    project.add_workflow("other", [{"id": "one", "name": "One"}])

    assert main(["check", "--workflow", "nope"]) == 2
    assert capsys.readouterr().err.endswith(
        "error: unknown workflow id 'nope'; known: demo, other\n"
    )
    for timeout in ("0", "-1", "nan", "inf", "soon"):
        with pytest.raises(SystemExit) as refused:
            main(["check", "--timeout", timeout])
        assert refused.value.code == 2
        assert "argument --timeout" in capsys.readouterr().err

    # --workflow: that workflow's sources only.
    code, found = check(capsys, "--workflow", "other")
    assert code == 0
    assert [name for name, f in found.items() if f["area"] == "source"] == ["other/one"]


def test_a_source_module_that_blocks_when_imported_is_a_problem_within_the_timeout(
    project: CheckedProject, capsys: pytest.CaptureFixture[str]
) -> None:
    """Building a workflow imports its sources' modules: one whose code waits at import (on a
    connection that never answers, say) would hold check for ever. Here it waits 20 s."""
    workflow = project.add_workflow(
        "blocking", [{"id": "slow", "name": "Slow"}, {"id": "fine", "name": "Fine"}]
    )
    module = workflow / "sources" / "slow.py"
    module.write_text("import time\n\ntime.sleep(20)\n" + module.read_text(encoding="utf-8"))

    started = time.monotonic()
    code, found = check(capsys, "--timeout", "1")
    elapsed = time.monotonic() - started

    assert code == 1
    blocked = "sources/slow.py is still importing after 1 s: its code blocks when imported"
    assert found["blocking/slow"]["status"] == "problem"
    assert found["blocking/slow"]["detail"].startswith(blocked)
    assert found["blocking/fine"]["status"] == "not probed"  # a python source, imported fine
    assert found["blocking"]["status"] == "not built"
    assert found["blocking"]["detail"].startswith(blocked)
    assert elapsed < 6, f"check took {elapsed:.1f} s"
