"""The project's folder is where its package is, not where a command runs: one history (and
one .env) per project, wherever its command line runs from; a package installed into
site-packages has no folder, and keeps its history in the user data folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from example_project import Source, SourceSummary

from parallel_workflow_runtime import Project
from parallel_workflow_runtime._cli.cli import main
from parallel_workflow_runtime._core import project as project_module
from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.registry import discover
from parallel_workflow_runtime._core.settings import DATABASE_URL_ENV, HistorySettings, Settings
from parallel_workflow_runtime._store.history import history_location, open_history, recent_runs

from .conftest import DISTRIBUTION, HISTORY_DB_ENV, PACKAGE, PROJECT, SRC, replace_source

FIRST_ENTRY = next(iter(discover().values()))


async def quick(source: Source) -> SourceSummary:
    return SourceSummary(records=1)


def quiet_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default workflow's sources, each one record at once, for one test."""
    for source in FIRST_ENTRY.config.sources:
        replace_source(monkeypatch, FIRST_ENTRY, source.id, quick)


@pytest.fixture
def user_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder of its own for the test, with no history variable set: where the
    history goes is then for the project to decide. The user data folder it gives."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.delenv(HISTORY_DB_ENV)
    return home / ".local" / "share" / DISTRIBUTION


def a_project_named(folder: Path, name: str) -> Path:
    """A folder holding a pyproject.toml that declares the project `name`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "1.0"\n')
    return folder


def registered_at(
    package_folder: Path, monkeypatch: pytest.MonkeyPatch, package: str = PACKAGE
) -> Project:
    """This project registered as if its package were `package_folder`: a copy of its
    workflows there (their modules stay the imported ones), as its registry.py registers it."""
    shutil.copytree(
        SRC / PACKAGE / "workflows",
        package_folder / "workflows",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    project = Project(package, package_folder / "workflows")
    monkeypatch.setattr(project_module, "_registered", project)
    return project


def resolved(sqlite_file: str) -> Path | None:
    return history_location(Settings(history=HistorySettings(sqlite_file=sqlite_file))).sqlite_file


def test_a_relative_sqlite_file_starts_at_the_project_folder_wherever_the_command_runs(
    tmp_path: Path, user_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = a_project_named(tmp_path / "checkout", DISTRIBUTION)
    project = registered_at(checkout / "src" / PACKAGE, monkeypatch)
    empty = tmp_path / "empty"
    empty.mkdir()
    # Another checkout of the same project: its own folder is not this package's.
    other_checkout = a_project_named(tmp_path / "other-checkout", DISTRIBUTION)

    assert project.root == checkout
    for here in (checkout, checkout / "src" / PACKAGE, empty, other_checkout, Path("/")):
        monkeypatch.chdir(here)
        assert resolved(".data/history.sqlite") == checkout / ".data" / "history.sqlite"
        assert resolved("state/runs.sqlite") == checkout / "state" / "runs.sqlite"
        assert resolved(str(tmp_path / "kept.sqlite")) == tmp_path / "kept.sqlite"
    assert not user_data.exists()


def test_an_installed_package_keeps_its_history_in_the_user_data_folder_run_from_anywhere(
    tmp_path: Path, user_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site_packages = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    project = registered_at(site_packages / PACKAGE, monkeypatch)
    # A checkout of the project, which the installed package does not come from.
    checkout = a_project_named(tmp_path / "checkout", DISTRIBUTION)

    assert project.root is None
    for here in (checkout, tmp_path, site_packages):
        monkeypatch.chdir(here)
        assert resolved(".data/history.sqlite") == user_data / "history.sqlite"
        assert resolved("state/runs.sqlite") == user_data / "runs.sqlite"
        assert resolved(str(tmp_path / "kept.sqlite")) == tmp_path / "kept.sqlite"


@pytest.mark.parametrize(
    "layout",
    [
        "src/example_project beside another project's pyproject.toml",
        "src/example_project without a pyproject.toml",
        "src/example_project beside a pyproject.toml that is not TOML",
        "example_project beside the project's pyproject.toml, not under src/",
        "lib/example_project beside the project's pyproject.toml",
    ],
)
def test_a_package_folder_is_the_projects_only_under_src_beside_its_pyproject(
    layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "checkout"
    folder.mkdir()
    package_folder, _, beside = layout.partition(" beside ")
    if "another project's" in beside:
        a_project_named(folder, "another-project")
    elif "not TOML" in beside:
        (folder / "pyproject.toml").write_text("[project\nname = 'example-project'\n")
    elif beside:
        a_project_named(folder, "Example_Project")  # pip's rules: the same name
    package_folder = package_folder.removesuffix(" without a pyproject.toml")

    project = registered_at(folder / package_folder, monkeypatch)

    assert project.root is None


def test_the_project_name_is_compared_as_pip_compares_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = a_project_named(tmp_path / "checkout", "Example_Project")
    assert registered_at(checkout / "src" / PACKAGE, monkeypatch).root == checkout


def run_json(capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, object], str]:
    """`run --json` of the default workflow: its document, and what it printed on stderr."""
    assert main(["run", "--json"]) == 0
    printed = capsys.readouterr()
    document: dict[str, object] = json.loads(printed.out)
    return document, printed.err


def test_run_says_where_the_history_is_when_it_is_not_in_the_project_folder(
    tmp_path: Path,
    user_data: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    quiet_sources(monkeypatch)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    registered_at(tmp_path / "site-packages" / PACKAGE, monkeypatch)

    document, printed = run_json(capsys)

    history = user_data / "history.sqlite"
    assert printed.splitlines() == [
        f"History: {history} (this installed project's user data folder; {HISTORY_DB_ENV} or"
        f" {DATABASE_URL_ENV} puts it elsewhere)"
    ]
    assert [record.run_id for record in recent_runs(open_history(), None, None)] == [
        document["run_id"]
    ]
    assert list(empty.iterdir()) == []  # nothing where the command ran

    # A variable that chose the history, or the project's folder: nothing to say.
    monkeypatch.setenv(HISTORY_DB_ENV, str(tmp_path / "chosen.sqlite"))
    assert run_json(capsys)[1] == ""
    monkeypatch.delenv(HISTORY_DB_ENV)
    checkout = a_project_named(tmp_path / "checkout", DISTRIBUTION)
    registered_at(checkout / "src" / PACKAGE, monkeypatch)
    assert run_json(capsys)[1] == ""
    assert (checkout / ".data" / "history.sqlite").is_file()


# A file source that keeps a cursor (the modification time of the files it read): the same
# history seen from two places has the same cursor, and the second run reads nothing new.
FILE_SOURCE = """
  - id: "exports"
    name: "Exports"
    kind: file
    file:
      path: data/exports
      glob: "*.jsonl"
      format: jsonl
"""
FILE_SOURCE_MODULE = """
from parallel_workflow_runtime import Rows, Source, SourceSummary


def run(source: Source, rows: Rows) -> SourceSummary:
    return SourceSummary(records=sum(1 for _ in rows))
"""


def copied_project(tmp_path: Path) -> Path:
    """A copy of the example project, its first workflow quick and with a file source."""
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", ".data"))
    workflow = project / "src" / PACKAGE / "workflows" / FIRST_ENTRY.folder
    config = workflow / "config.yaml"
    text = config.read_text(encoding="utf-8")
    text = "\n".join(
        "    latency_seconds: 0.01" if line.startswith("    latency_seconds:") else line
        for line in text.splitlines()
    )
    config.write_text(text.replace("\nsources:\n", "\nsources:\n" + FILE_SOURCE, 1), "utf-8")
    (workflow / "sources" / "exports.py").write_text(FILE_SOURCE_MODULE, encoding="utf-8")
    (workflow / "data" / "exports").mkdir()
    (workflow / "data" / "exports" / "2026-12-01.jsonl").write_text(
        "".join(json.dumps({"id": n}) + "\n" for n in range(3)), encoding="utf-8"
    )
    return project


def as_a_user(project: Path, home: Path, **variables: str) -> dict[str, str]:
    """The environment of a user whose project is importable from its src/ (as an editable
    install makes it), with no history variable set."""
    environment = {
        **os.environ,
        "PYTHONPATH": str(project / "src"),
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
    }
    for name in (HISTORY_DB_ENV, DATABASE_URL_ENV):
        environment.pop(name, None)
    return environment | variables


def command(
    where: Path, environment: dict[str, str], *arguments: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", PACKAGE, *arguments],
        cwd=where,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def ok_json(result: subprocess.CompletedProcess[str]) -> object:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def exports_records(document: object) -> int:
    assert isinstance(document, dict)
    (exports,) = [source for source in document["sources"] if source["id"] == "exports"]
    assert exports["ok"], exports
    records: int = exports["records"]
    return records


@pytest.mark.integration
def test_the_command_run_from_an_empty_folder_uses_the_projects_history_and_cursors(
    tmp_path: Path,
) -> None:
    project = copied_project(tmp_path)
    home = tmp_path / "home"
    empty = tmp_path / "empty"
    empty.mkdir()
    user = as_a_user(project, home)

    first = command(project, user, "run", "--json")
    second = command(empty, user, "run", "--json")

    assert exports_records(ok_json(first)) == 3
    # The cursor the first run left in the project's history: nothing new to read.
    assert exports_records(ok_json(second)) == 0
    assert "History:" not in second.stderr  # the project's own .data/: nothing to say
    for where in (project, empty):
        runs = ok_json(command(where, user, "history", "--json"))
        assert isinstance(runs, list)
        assert {run["run_id"] for run in runs} == {
            document["run_id"] for document in (json.loads(first.stdout), json.loads(second.stdout))
        }
        cursors = ok_json(command(where, user, "history", "cursors", "--json"))
        assert isinstance(cursors, list)
        assert [cursor["source_id"] for cursor in cursors] == ["exports"]
    assert ok_json(command(project, user, "history", "cursors", "--json")) == ok_json(
        command(empty, user, "history", "cursors", "--json")
    )
    assert (project / ".data" / "history.sqlite").is_file()
    assert list(empty.iterdir()) == [] and not home.exists()


@pytest.mark.integration
def test_the_projects_env_file_sets_what_the_environment_does_not(tmp_path: Path) -> None:
    project = copied_project(tmp_path)
    home = tmp_path / "home"
    empty = tmp_path / "empty"
    empty.mkdir()
    from_file = tmp_path / "from-env-file.sqlite"
    from_environment = tmp_path / "from-environment.sqlite"
    (project / ".env").write_text(
        f"# the project's variables\n{HISTORY_DB_ENV}={from_file}\nexport UNRELATED='yes'\n",
        encoding="utf-8",
    )

    run = command(empty, as_a_user(project, home), "run", "--json")
    assert run.returncode == 0, run.stderr
    assert from_file.is_file() and not (project / ".data").exists()

    # A variable set in the environment wins over the file's.
    environment = as_a_user(project, home, **{HISTORY_DB_ENV: str(from_environment)})
    run = command(project, environment, "run", "--json")
    assert run.returncode == 0, run.stderr
    assert from_environment.is_file()
    runs = ok_json(command(empty, as_a_user(project, home), "history", "--json"))
    assert isinstance(runs, list) and len(runs) == 1  # the first run only, in from_file


@pytest.mark.integration
@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("GOOD=1\nORDERS_DB_URL postgresql://app:s3cret@db/orders\n", 2),
        ("'UNCLOSED=1\n", 1),
    ],
)
def test_a_broken_env_file_is_one_line_naming_it_and_its_line_but_not_its_value(
    content: str, line: int, tmp_path: Path
) -> None:
    project = copied_project(tmp_path)
    (project / ".env").write_text(content, encoding="utf-8")

    result = command(tmp_path, as_a_user(project, tmp_path / "home"), "run", "--json")

    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr == (
        f"python -m {PACKAGE}: error: {project / '.env'}: line {line} is not NAME=value\n"
    )
    assert not (project / ".data").exists()
    # python-dotenv's switch turns the file off (the rendered project's tests set it).
    environment = as_a_user(project, tmp_path / "home", PYTHON_DOTENV_DISABLED="1")
    assert command(tmp_path, environment, "history").returncode == 0


def test_an_installed_project_reads_no_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = registered_at(tmp_path / "site-packages" / PACKAGE, monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("NOT_FROM_HERE=1\n", encoding="utf-8")

    assert project.env_file is None and project.load_env_file() == ()
    assert "NOT_FROM_HERE" not in os.environ
    assert current() is project


def test_version_is_the_folders_pyproject_or_else_the_installed_distributions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime, agno = version("parallel-workflow-runtime"), version("agno")
    # Installed: its metadata says (a dist-info beside the package, as pip leaves it).
    site_packages = tmp_path / "site-packages"
    dist_info = site_packages / "example_project-2.3.4.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: example-project\nVersion: 2.3.4\n", encoding="utf-8"
    )
    checkout = a_project_named(tmp_path / "checkout", DISTRIBUTION)
    in_checkout = Project(PACKAGE, checkout / "src" / PACKAGE / "workflows")
    with monkeypatch.context() as installed:
        installed.syspath_prepend(str(site_packages))
        registered_at(site_packages / PACKAGE, installed)
        with pytest.raises(SystemExit) as exited:
            main(["--version"])
        assert exited.value.code == 0
        assert capsys.readouterr().out == (
            f"example-project 2.3.4 (parallel-workflow-runtime {runtime}, agno {agno})\n"
        )
        # In its folder: the pyproject.toml as it is now, whatever an editable install
        # recorded; a version the build works out (dynamic): the installed one.
        assert in_checkout.version == "1.0"
        (checkout / "pyproject.toml").write_text(
            '[project]\nname = "example-project"\ndynamic = ["version"]\n', encoding="utf-8"
        )
        assert in_checkout.version == "2.3.4"
    # Neither: said so.
    assert in_checkout.versions().startswith("example-project (version unknown) (")
