"""A project's life after `copier copy`: updates to a newer template release, conflicts,
changed sources, a second workflow, and no drift from a fresh copy.

Each test starts from a throw-away git repository of this template with two releases:
v1.0.0 is this checkout; v2.0.0 changes files users edit (config.yaml, workflow.py, README.md),
files users own (the source modules) and a file they usually leave alone (.gitignore).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from copier import run_copy, run_update

from helpers import (
    BINARY_SUFFIXES,
    TEMPLATE,
    commit_all,
    copier,
    copy_checkout,
    git,
    project_env,
    run_in,
    runtime_commit,
    runtime_requirement,
    template_snapshot,
)
from user_path import (
    clean_environment,
    offline_installs,
    rewrite_every_source_as_a_user,
    shell,
    with_venv,
)

WORKFLOW_TEMPLATE = "template/src/{{ package_name }}/workflows/{{ workflow_module }}"
WORKFLOW = Path("src/parallel_workflow/workflows/parallel_workflow")
ANSWERS = ".copier-answers.parallel-workflow.yml"


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= 1, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def release_v2(template: Path) -> None:
    """The template's next release: what an update has to bring, or has to leave alone."""
    replace_once(
        template / WORKFLOW_TEMPLATE / "config.yaml.jinja", 'version: "1.0.0"', 'version: "1.1.0"'
    )
    append(template / "template" / ".gitignore", "*.log\n")
    replace_once(template / "template" / "README.md.jinja", "## Run it\n", "## Run it (1.1)\n")
    replace_once(
        template / WORKFLOW_TEMPLATE / "workflow.py.jinja",
        "Add a step of your own",
        "Add a step of your own (template 1.1)",
    )
    sources = next((template / WORKFLOW_TEMPLATE / "sources").glob("{% yield*"))
    replace_once(sources, "sample records;", "sample records (template 1.1);")
    replace_once(sources, "since the last run;", "since the last run (template 1.1);")
    commit_all(template, "v2")
    git(template, "tag", "v2.0.0")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = template_snapshot(tmp_path_factory.mktemp("releases") / "parallel-workflow")
    git(repository, "tag", "v1.0.0")
    release_v2(repository)
    return repository


# The sources these tests follow through updates: python sources, as every release before 0.7.0
# rendered by default (test_connector_sources_through_an_update follows the connector kinds).
PYTHON_SOURCES = ["User Database", "API Logs", "Analytics Data"]
# The default answer of 0.7.0 on: a sql source, a file source and a python source.
DEFAULT_SOURCES: list[object] = [{"User Database": "sql"}, {"API Logs": "file"}, "Analytics Data"]


def copy(template: Path, project: Path, vcs_ref: str = "v1.0.0", **answers: object) -> None:
    if "source_names" not in answers and "source_count" not in answers:
        answers["source_names"] = PYTHON_SOURCES
    run_copy(str(template), project, data=answers, defaults=True, vcs_ref=vcs_ref, quiet=True)


def update(project: Path, answers_file: str = ANSWERS, **changes: object) -> None:
    """`copier update` to the newest release, as the README tells users (overwrite is implied)."""
    run_update(
        project,
        data=changes,
        answers_file=answers_file,
        defaults=True,
        overwrite=True,
        quiet=True,
        unsafe=False,
    )


def new_project(template: Path, tmp_path: Path, **answers: object) -> Path:
    project = tmp_path / "project"
    copy(template, project, **answers)
    commit_all(project, "rendered at v1.0.0", init=True)
    return project


def read(project: Path, relative: Path | str) -> str:
    return (project / relative).read_text(encoding="utf-8")


def files(project: Path) -> dict[str, str]:
    """Every file in a project's working tree but git's and the ignored ones, by path."""
    tracked = git(project, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    paths = [
        path
        for path in tracked.split("\0")
        if path and (project / path).is_file() and not path.endswith(tuple(BINARY_SUFFIXES))
    ]
    return {path: read(project, path) for path in paths}


def answers_of(project: Path, answers_file: str = ANSWERS) -> dict:
    return yaml.safe_load(read(project, answers_file))


def assert_rendered_tests_pass(project: Path) -> None:
    """The project's whole suite: its workflows, command line, server, layout and the sources'
    own tests (the engine's are the runtime's, runtime/tests/)."""
    result = run_in(project, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def assert_no_conflicts(project: Path) -> None:
    for path, text in files(project).items():
        assert not path.endswith(".rej"), path
        assert not re.search(r"^(<<<<<<<|>>>>>>>) ", text, re.M), f"conflict left in {path}"


# A user's own work, as edits that can also be replayed on a fresh copy (test 6).
def edit_module(project: Path) -> None:
    replace_once(
        project / WORKFLOW / "sources" / "api_logs.py",
        "    return summarise_sample(source)\n",
        "    summary = summarise_sample(source)\n"
        '    summary["details"]["checked_by"] = "the data team"\n'
        "    return summary\n",
    )


def edit_config_settings(project: Path) -> None:
    replace_once(
        project / WORKFLOW / "config.yaml",
        "    data_file: data/api_logs.csv\n    latency_seconds: 0.8\n",
        "    data_file: data/api_logs.csv\n    latency_seconds: 0.3\n    retention_days: 30\n",
    )


VALIDATION_STEP = """

def validate(step_input: StepInput) -> StepOutput:
    \"\"\"Stop before the report when no source returned a single record.\"\"\"
    aggregation = aggregation_of(step_input)
    if aggregation.total_records == 0:
        return StepOutput(content="No records at all: no report today.", stop=True)
    return StepOutput(content=f"{aggregation.total_records:,} records checked")
"""


def add_a_step(project: Path) -> None:
    """README.md's "Add a step": a Validation step between Aggregation and Report."""
    workflow = project / WORKFLOW / "workflow.py"
    replace_once(
        workflow,
        "from agno.workflow import Parallel, Workflow\n",
        "from agno.workflow import Parallel, Step, Workflow\n"
        "from agno.workflow.types import StepInput, StepOutput\n",
    )
    replace_once(workflow, ")\n\nCONFIG_PATH", ")\n\nfrom ... import aggregation_of\n\nCONFIG_PATH")
    replace_once(workflow, "\n\n\ndef get_", "\n" + VALIDATION_STEP + "\n\ndef get_")
    replace_once(
        workflow,
        "            aggregation_step(config),\n",
        "            aggregation_step(config),\n"
        '            Step(name="Validation", executor=validate),\n',
    )


USER_EDITS: dict[str, Callable[[Path], None]] = {
    str(WORKFLOW / "sources" / "api_logs.py"): edit_module,
    str(WORKFLOW / "config.yaml"): edit_config_settings,
    str(WORKFLOW / "workflow.py"): add_a_step,
}


def make_user_edits(project: Path) -> None:
    for edit in USER_EDITS.values():
        edit(project)
    append(project / "README.md", "\nOur on-call rota is in notes/rota.md.\n")
    (project / "notes").mkdir()
    (project / "notes" / "rota.md").write_text("Mon: Ada\n", encoding="utf-8")
    commit_all(project, "the team's edits")


# 1
def test_an_update_keeps_the_users_edits_and_brings_the_template_change(
    template: Path, tmp_path: Path
) -> None:
    project = new_project(template, tmp_path)
    make_user_edits(project)

    update(project)

    config = read(project, WORKFLOW / "config.yaml")
    assert 'version: "1.1.0"' in config  # the template's change
    assert "latency_seconds: 0.3\n    retention_days: 30\n" in config  # the user's, beside it
    assert 'checked_by"] = "the data team"' in read(project, WORKFLOW / "sources" / "api_logs.py")
    readme = read(project, "README.md")
    assert "## Run it (1.1)\n" in readme  # the template's change
    assert readme.endswith("\nOur on-call rota is in notes/rota.md.\n")  # the user's, kept
    workflow = read(project, WORKFLOW / "workflow.py")
    assert "Add a step of your own (template 1.1)" in workflow
    assert 'Step(name="Validation", executor=validate),' in workflow and VALIDATION_STEP in workflow
    assert read(project, "notes/rota.md") == "Mon: Ada\n"
    assert read(project, ".gitignore").endswith("*.log\n")
    assert answers_of(project)["_commit"] == "v2.0.0"
    assert_no_conflicts(project)
    assert_rendered_tests_pass(project)
    run = run_in(project, "-m", "parallel_workflow", "run", "--json")
    document = json.loads(run.stdout)
    assert document["sources"][1]["details"]["checked_by"] == "the data team"
    assert document["report"].startswith("# ")  # the Report step still ran after Validation


# 2
def test_a_conflicting_edit_is_left_inline_and_nothing_is_lost(
    template: Path, tmp_path: Path
) -> None:
    project = new_project(template, tmp_path)
    make_user_edits(project)
    replace_once(project / WORKFLOW / "config.yaml", 'version: "1.0.0"', 'version: "3.0.0-ours"')
    commit_all(project, "our own workflow version")

    update(project)

    config = read(project, WORKFLOW / "config.yaml")
    conflict = re.search(
        r"<<<<<<< before updating\n(.*?)=======\n(.*?)>>>>>>> after updating\n", config, re.S
    )
    assert conflict, config
    assert conflict[1] == '  version: "3.0.0-ours"\n'
    assert conflict[2] == '  version: "1.1.0"\n'
    assert "latency_seconds: 0.3\n    retention_days: 30\n" in config
    assert 'checked_by"] = "the data team"' in read(project, WORKFLOW / "sources" / "api_logs.py")
    assert git(project, "diff", "--name-only", "--diff-filter=U").split() == [
        str(WORKFLOW / "config.yaml")
    ]


def pre_commit(project: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The rendered pre-commit configuration on everything staged, offline: the ruff hooks
    would install ruff from PyPI, so they are skipped here (the rendered CI runs them)."""
    git(project, "add", "-A")
    environment = project_env(project) | {
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "SKIP": "ruff-check,ruff-format",
    }
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--all-files"],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_pre_commit_refuses_conflict_markers_and_rej_files(template: Path, tmp_path: Path) -> None:
    project = new_project(template, tmp_path)
    # A Markdown heading underlined with exactly seven "=" is no conflict marker.
    append(project / "README.md", "\nOn call\n=======\n\nAda, then Grace.\n")
    commit_all(project, "a heading of our own")
    clean = pre_commit(project, tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    replace_once(project / WORKFLOW / "config.yaml", 'version: "1.0.0"', 'version: "3.0.0-ours"')
    commit_all(project, "our own workflow version")
    update(project)
    markers = pre_commit(project, tmp_path)

    assert markers.returncode == 1
    assert re.search(r"no unresolved conflict markers\.+Failed", markers.stdout)
    assert f"{WORKFLOW / 'config.yaml'}:" in markers.stdout

    git(project, "reset", "-q", "--hard", "HEAD")
    run_update(
        project, answers_file=ANSWERS, defaults=True, overwrite=True, quiet=True, conflict="rej"
    )
    rejected = pre_commit(project, tmp_path)

    assert rejected.returncode == 1
    assert re.search(r"no rejected update hunks \(\*\.rej\)\.+Failed", rejected.stdout)
    assert f"{WORKFLOW / 'config.yaml'}.rej" in rejected.stdout


# 3
def test_an_update_adds_a_source_and_a_moved_module_keeps_its_code(
    template: Path, tmp_path: Path
) -> None:
    project = new_project(template, tmp_path)
    make_user_edits(project)
    sources = project / WORKFLOW / "sources"
    replace_once(sources / "analytics_data.py", "sample records;", "web analytics;")
    # The README's recipe for a rename: move the module to the new id, then update.
    git(project, "mv", str(sources / "analytics_data.py"), str(sources / "web_analytics.py"))
    commit_all(project, "rename the Analytics Data source")
    names = ["User Database", "API Logs", "Web Analytics", "Billing"]

    update(project, source_count=4, source_names=names)

    ids = ["user_database", "api_logs", "web_analytics", "billing"]
    assert sorted(p.stem for p in sources.glob("*.py")) == sorted(["__init__", *ids])
    assert sorted(p.stem for p in (project / WORKFLOW / "data").glob("*.csv")) == sorted(ids)
    assert "web analytics;" in read(project, WORKFLOW / "sources" / "web_analytics.py")
    assert 'checked_by"] = "the data team"' in read(project, WORKFLOW / "sources" / "api_logs.py")
    assert "(template 1.1)" in read(project, WORKFLOW / "sources" / "billing.py")
    config = yaml.safe_load(read(project, WORKFLOW / "config.yaml"))
    assert [(s["id"], s["name"]) for s in config["sources"]] == list(zip(ids, names, strict=True))
    assert config["sources"][1]["retention_days"] == 30
    assert config["workflow"]["version"] == "1.1.0"
    assert_no_conflicts(project)
    assert_rendered_tests_pass(project)  # they check one Parallel branch per configured source
    run = run_in(project, "-m", "parallel_workflow", "run", "--json")
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert [s["id"] for s in document["sources"]] == ids
    assert document["sources"][1]["details"]["checked_by"] == "the data team"


def test_renaming_a_source_whose_settings_you_changed_leaves_them_inline(
    template: Path, tmp_path: Path
) -> None:
    project = new_project(template, tmp_path)
    make_user_edits(project)  # api_logs: latency 0.3 and retention_days

    update(project, source_names=["User Database", "Request Logs", "Analytics Data"])

    conflict = re.search(
        r"<<<<<<< before updating\n(.*?)=======\n(.*?)>>>>>>> after updating\n",
        read(project, WORKFLOW / "config.yaml"),
        re.S,
    )
    assert conflict
    assert 'id: "api_logs"' in conflict[1] and "retention_days: 30" in conflict[1]
    assert 'id: "request_logs"' in conflict[2] and "latency_seconds: 0.8" in conflict[2]


def test_removing_a_source_is_announced_and_git_still_has_its_module(
    template: Path, tmp_path: Path
) -> None:
    project = new_project(template, tmp_path)
    make_user_edits(project)
    module = WORKFLOW / "sources" / "api_logs.py"

    result = copier(
        "update",
        "--defaults",
        f"--answers-file={ANSWERS}",
        "--data=source_count=2",
        "--data=source_names=[User Database, Analytics Data]",
        str(project),
    )

    assert result.returncode == 0, result.stderr
    before_update = result.stderr.split("Updating to template version")[0]
    assert "loses its module" in before_update and "git checkout HEAD -- <path>" in before_update
    assert not (project / module).exists()
    assert not (project / WORKFLOW / "data" / "api_logs.csv").exists()
    git(project, "checkout", "HEAD", "--", str(module))
    assert 'checked_by"] = "the data team"' in read(project, module)


def test_connector_sources_through_an_update(template: Path, tmp_path: Path) -> None:
    """The default answers (a sql and a file source): the team rewrites the sql source's
    processing and tunes its block, runs once, then adds an http source with an update. Their
    code and settings stay, the new source gets its block and extra, the cursors survive."""
    project = new_project(template, tmp_path, source_names=DEFAULT_SOURCES)
    module = WORKFLOW / "sources" / "user_database.py"
    replace_once(
        project / module,
        "    return profile.summary()",
        '    summary = profile.summary()\n    summary["details"]["loaded_by"] = "the data team"\n'
        "    return summary",
    )
    replace_once(
        project / WORKFLOW / "config.yaml",
        "      table: records\n",
        "      table: records\n      chunk_size: 50\n",
    )
    commit_all(project, "the team's processing and chunk size")
    first = run_in(project, "-m", "parallel_workflow", "run", "--json")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert json.loads(first.stdout)["sources"][0]["records"] == 200

    names = [*DEFAULT_SOURCES, {"Billing": "http"}]
    update(project, source_count=4, source_names=names)

    assert_no_conflicts(project)
    assert 'loaded_by"] = "the data team"' in read(project, module)
    config = yaml.safe_load(read(project, WORKFLOW / "config.yaml"))
    kinds = [(s["id"], s.get("kind", "python")) for s in config["sources"]]
    assert kinds == [
        ("user_database", "sql"),
        ("api_logs", "file"),
        ("analytics_data", "python"),
        ("billing", "http"),
    ]
    assert config["sources"][0]["sql"]["chunk_size"] == 50
    assert config["sources"][3]["http"]["auth"] == {"type": "bearer", "token_env": "BILLING_TOKEN"}
    # The runtime at the commit of the release updated to, with every kind's connectors.
    assert runtime_commit(project, str(template)) == git(template, "rev-parse", "v2.0.0").strip()
    assert {"sql", "http", "file"} <= runtime_requirement(project).extras
    assert "(template 1.1)" in read(project, WORKFLOW / "sources" / "billing.py")
    assert_rendered_tests_pass(project)
    # The history kept the cursors: nothing new in the table or the folder, so nothing is read;
    # the new http source reads its bundled sample until BILLING_TOKEN is set, and says so.
    second = run_in(project, "-m", "parallel_workflow", "run", "--json")
    assert second.returncode == 0, second.stderr
    by_id = {source["id"]: source for source in json.loads(second.stdout)["sources"]}
    assert (by_id["user_database"]["records"], by_id["api_logs"]["records"]) == (0, 0)
    assert by_id["user_database"]["details"]["loaded_by"] == "the data team"
    sample = project / WORKFLOW / "data" / "billing.jsonl"
    items = len(sample.read_text(encoding="utf-8").splitlines())
    assert by_id["billing"]["records"] == items > 0
    assert by_id["billing"]["warnings"] == [
        "read the bundled sample data/billing.jsonl: BILLING_TOKEN is not set (set it and"
        " base_url to read the API, then remove sample_file)"
    ]


# 4
def test_an_update_without_changes_leaves_a_clean_tree(template: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    copy(template, project, vcs_ref="v2.0.0")
    commit_all(project, "rendered at v2.0.0", init=True)

    # As a user would: copier's command line, without --trust.
    result = copier("update", "--defaults", f"--answers-file={ANSWERS}", str(project))

    assert result.returncode == 0, result.stderr
    assert git(project, "status", "--porcelain") == ""


# 5
def test_a_second_workflow_is_added_beside_the_first_and_updated_on_its_own(
    template: Path, tmp_path: Path
) -> None:
    project = new_project(template, tmp_path)
    make_user_edits(project)
    replace_once(
        project / "pyproject.toml",
        "]\n\n[project.optional-dependencies]",
        '    "httpx>=0.27",\n]\n\n[project.optional-dependencies]',
    )
    commit_all(project, "a dependency of our own")
    shared_before = {p: t for p, t in files(project).items() if not p.startswith(str(WORKFLOW))}

    result = copier(
        "copy",
        "--vcs-ref=v1.0.0",
        f"--data-file={project / ANSWERS}",
        "--data=workflow_name=Nightly Reports",
        "--data=workflow_id=nightly-reports",
        "--data=source_count=2",
        "--data=source_names=[Orders, Refunds]",
        str(template),
        str(project),
    )

    assert result.returncode == 0, result.stderr
    second = Path("src/parallel_workflow/workflows/nightly_reports")
    added = git(project, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert sorted(line[3:] for line in added) == sorted(
        [".copier-answers.nightly-reports.yml"]
        + [str(second / name) for name in ("__init__.py", "config.yaml", "workflow.py")]
        + [str(second / "sources" / f"{name}.py") for name in ("__init__", "orders", "refunds")]
        + [str(second / "data" / f"{name}.csv") for name in ("orders", "refunds")]
        + [
            f"tests/nightly_reports/{name}.py"
            for name in ("__init__", "test_orders", "test_refunds")
        ]
    )
    assert all(read(project, p) == text for p, text in shared_before.items())
    listing = run_in(project, "-m", "parallel_workflow", "list")
    assert "parallel-workflow" in listing.stdout and "nightly-reports" in listing.stdout
    for workflow_id in ("parallel-workflow", "nightly-reports"):
        run = run_in(project, "-m", "parallel_workflow", "run", "--workflow", workflow_id, "--json")
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["workflow_id"] == workflow_id
    commit_all(project, "add the Nightly Reports workflow")

    # The second workflow alone: its answers, its folder, and the shared files' template change.
    update(
        project,
        ".copier-answers.nightly-reports.yml",
        source_count=3,
        source_names=["Orders", "Refunds", "Returns"],
    )

    changed = git(project, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert sorted(line[3:] for line in changed) == sorted(
        [
            ".copier-answers.nightly-reports.yml",
            ".gitignore",
            "README.md",
            "pyproject.toml",  # the runtime at v2.0.0's commit
            str(second / "config.yaml"),
            str(second / "workflow.py"),
            str(second / "sources" / "returns.py"),
            str(second / "data" / "returns.csv"),
            "tests/nightly_reports/test_returns.py",
        ]
    )
    assert answers_of(project)["_commit"] == "v1.0.0"
    assert answers_of(project, ".copier-answers.nightly-reports.yml")["_commit"] == "v2.0.0"
    commit_all(project, "update Nightly Reports")

    # Then the first one: nothing of the second workflow moves.
    update(project)

    changed = git(project, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert sorted(line[3:] for line in changed) == sorted(
        [ANSWERS, str(WORKFLOW / "config.yaml"), str(WORKFLOW / "workflow.py")]
    )
    assert answers_of(project)["_commit"] == "v2.0.0"
    assert '"httpx>=0.27",' in read(project, "pyproject.toml")
    assert_no_conflicts(project)
    assert_rendered_tests_pass(project)  # the update tests run once per workflow
    for workflow_id in ("parallel-workflow", "nightly-reports"):
        run = run_in(project, "-m", "parallel_workflow", "run", "--workflow", workflow_id, "--json")
        assert run.returncode == 0, run.stderr
        assert len(json.loads(run.stdout)["sources"]) == 3


# 6
@pytest.mark.parametrize(
    "answers",
    [
        {},
        {"source_count": 4, "source_names": ["Orders", "API Logs", "Refunds (EU)", "Customers"]},
    ],
    ids=["defaults", "four-sources"],
)
def test_an_updated_project_equals_a_fresh_copy_plus_the_users_edits(
    template: Path, tmp_path: Path, answers: dict
) -> None:
    project = new_project(template, tmp_path, **answers)
    for edit in USER_EDITS.values():
        edit(project)
    commit_all(project, "the team's edits")

    update(project)
    fresh = tmp_path / "fresh"
    copy(template, fresh, vcs_ref="v2.0.0", **answers)
    commit_all(fresh, "rendered at v2.0.0", init=True)
    for edit in USER_EDITS.values():
        edit(fresh)

    updated, expected = files(project), files(fresh)
    # The source modules are yours as well: only those created by v2 carry v2's docstring.
    modules = [path for path in expected if re.search(r"/sources/(?!__init__)\w+\.py$", path)]
    for path in modules:
        assert updated.pop(path) == expected.pop(path).replace(" (template 1.1)", "")
    assert sorted(updated) == sorted(expected)
    for path in expected:
        assert updated[path] == expected[path], f"{path} drifted from a fresh copy"


def test_ci_warns_when_a_newer_template_is_out(template: Path, tmp_path: Path) -> None:
    project = new_project(template, tmp_path)
    ci = yaml.safe_load(read(project, ".github/workflows/ci.yml"))
    (step,) = [
        s for s in ci["jobs"]["template-update"]["steps"] if "check-update" in s.get("run", "")
    ]
    environment = project_env(project)
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environment["PATH"]])

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-e", "-c", step["run"]],
            cwd=project,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )

    behind = check()
    assert behind.returncode == 0, behind.stderr
    assert behind.stdout == (
        f"::warning file={ANSWERS}::A newer template version is out: "
        f"copier update --answers-file {ANSWERS}\n"
    )

    update(project)
    commit_all(project, "update")
    current = check()
    assert current.returncode == 0, current.stderr
    assert current.stdout == f"{ANSWERS}: up to date\n"

    # A project rendered from a path that CI cannot reach: a warning, and the job passes.
    answers = read(project, ANSWERS)
    (project / ANSWERS).write_text(
        re.sub(r"(?m)^_src_path: .*$", "_src_path: /nowhere/parallel-workflow", answers),
        encoding="utf-8",
    )
    unreachable = check()
    assert unreachable.returncode == 0, unreachable.stderr
    assert unreachable.stdout.startswith(
        f"::warning file={ANSWERS}::Cannot check for a newer template version: "
    )
    assert unreachable.stdout.count("\n") == 1


# 7
def changelog_commit(version: str) -> str:
    """The commit CHANGELOG.md names for a release (scripts/release tags it)."""
    changelog = (TEMPLATE / "CHANGELOG.md").read_text(encoding="utf-8")
    found = re.search(rf"^## \[{re.escape(version)}\] .*?^Commit: (\w+)$", changelog, re.M | re.S)
    assert found, f"CHANGELOG.md names no commit for {version}"
    return found[1]


def add_release(repository: Path, commit: str, tag: str) -> None:
    """The template as it was at `commit` of this clone, as the next release of `repository`."""
    present = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=TEMPLATE)
    assert present.returncode == 0, f"{commit} is not in this clone: git fetch --unshallow"
    if (repository / ".git").exists():
        git(repository, "rm", "-rq", ".")
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit], cwd=TEMPLATE, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x"], cwd=repository, input=archive.stdout, check=True)
    commit_all(repository, tag, init=not (repository / ".git").exists())
    git(repository, "tag", tag)


# This checkout is the release after 0.7.0 here, whatever CHANGELOG.md calls it.
HEAD_RELEASE = "v0.9.0"


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A template repository with v0.4.0 (the commit before the engine moved to _runtime/),
    v0.5.0, v0.7.0 (the three as CHANGELOG.md names them) and v0.9.0, this checkout as it is
    now."""
    repository = tmp_path_factory.mktemp("releases") / "parallel-workflow"
    repository.mkdir()
    add_release(repository, changelog_commit("0.4.0"), "v0.4.0")
    add_release(repository, changelog_commit("0.5.0"), "v0.5.0")
    add_release(repository, changelog_commit("0.7.0"), "v0.7.0")
    git(repository, "rm", "-rq", ".")
    copy_checkout(repository)
    commit_all(repository, HEAD_RELEASE)
    git(repository, "tag", HEAD_RELEASE)
    return repository


def project_at(releases: Path, tag: str, tmp_path: Path) -> Path:
    """A project rendered at one of the releases, committed as its team would."""
    project = tmp_path / "project"
    copy(releases, project, vcs_ref=tag)
    commit_all(project, f"rendered at {tag}", init=True)
    return project


def removed_engine(project: Path, result: subprocess.CompletedProcess[str]) -> list[str]:
    """The files of the project's own engine that the update deleted (git still has them)."""
    return sorted(
        path
        for path in git(project, "diff", "--name-only", "--diff-filter=D", "HEAD").split()
        if "/workflows/" not in path
    )


def reinstalled(project: Path, tmp_path: Path) -> dict[str, str]:
    """The reinstall Copier's last words ask for, in a fresh virtual environment: the runtime
    from .wheelhouse (built from this checkout), the rest too, offline."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    environment = offline_installs(with_venv(clean_environment(), venv))
    environment["AGNO_TELEMETRY"] = "false"
    installed = shell('pip install --quiet -e ".[dev]"', project, environment)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return environment


def test_a_project_from_0_4_0_updates_and_its_old_source_modules_still_work(
    releases: Path, tmp_path: Path
) -> None:
    project = project_at(releases, "v0.4.0", tmp_path)
    module = project / WORKFLOW / "sources" / "api_logs.py"
    old_module = read(project, module.relative_to(project))
    assert "from parallel_workflow.config import Source" in old_module  # 0.4.0's import paths
    edit_module(project)  # the team's edit, as they wrote it against 0.4.0
    commit_all(project, "the team's edit")

    result = copier("update", "--defaults", f"--answers-file={ANSWERS}", str(project))

    assert result.returncode == 0, result.stderr
    assert "this update removes the engine" in result.stderr.split("Updating to")[0]
    assert answers_of(project)["_commit"] == HEAD_RELEASE
    edited = read(project, module.relative_to(project))
    assert 'checked_by"] = "the data team"' in edited and "def process_source(" in edited
    package = project / "src" / "parallel_workflow"
    # 0.4.0's engine sat at the package's top: gone, the wiring and the workflows stay.
    assert sorted(path.name for path in package.iterdir() if path.is_file()) == [
        "__init__.py",
        "__main__.py",
        "py.typed",
        "registry.py",
    ]
    assert (package / "workflows" / "settings.yaml").is_file()
    assert "cli.py" in {Path(path).name for path in removed_engine(project, result)}
    assert_no_conflicts(project)
    assert_rendered_tests_pass(project)
    # The old module's `from parallel_workflow.config import Source` works: directly, and in
    # a worker process and a Dask worker that import it themselves.
    for executor in ("thread", "process", "dask"):
        run = run_in(project, "-m", "parallel_workflow", "run", "--json", "--executor", executor)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["sources"][1]["details"]["checked_by"] == "the data team"
    edits = run_in(project, "-m", "parallel_workflow", "engine-edits")
    assert (edits.returncode, edits.stdout) == (
        0,
        "no file you had edited was removed by the template update\n",
    )


def test_a_0_5_0_project_updates_keeping_its_files_and_history_and_names_an_edited_engine_file(
    releases: Path, tmp_path: Path
) -> None:
    """0.5.0 → this version, as a team does it: an edited source and an edited engine file
    committed, a run in the history; `copier update` from the command line; the reinstall
    Copier asks for in the project's virtual environment, `engine-edits`, the tests."""
    project = project_at(releases, "v0.5.0", tmp_path)
    edit_module(project)
    engine_file = "src/parallel_workflow/_runtime/report.py"
    append(project / engine_file, "# Our tweak: the report's footer.\n")
    commit_all(project, "the team's edits, one to the engine")
    before = run_in(project, "-m", "parallel_workflow", "run", "--json", env={OFFLINE_REPORT: ""})
    assert before.returncode == 0, before.stderr
    run_id = json.loads(before.stdout)["run_id"]
    user_files = {
        path: text
        for path, text in files(project).items()
        if re.search(r"/sources/(?!__init__)\w+\.py$|^tests/\w+/test_\w+\.py$", path)
    }
    assert len(user_files) == 3  # 0.5.0 had no test per source yet: the update adds them

    result = copier("update", "--defaults", f"--answers-file={ANSWERS}", str(project))

    assert result.returncode == 0, result.stderr
    before_update, after_update = result.stderr.split("Updating to template version")
    assert "this update removes the engine" in before_update
    assert "engine-edits" in after_update.split("Updated ")[-1]
    assert answers_of(project)["_commit"] == HEAD_RELEASE
    assert_no_conflicts(project)
    assert {path: read(project, path) for path in user_files} == user_files  # byte for byte
    # The sources stay what they were: python sources reading their CSV. 0.7.0's default
    # connector kinds never reach a project whose answers name its sources without a kind.
    config = yaml.safe_load(read(project, WORKFLOW / "config.yaml"))
    assert [(source["name"], source.get("kind", "python")) for source in config["sources"]] == [
        (name, "python") for name in PYTHON_SOURCES
    ]
    assert not {"sql", "http", "file"} & set(config["sources"][0])
    data = sorted(path.name for path in (project / WORKFLOW / "data").iterdir())
    assert data == ["analytics_data.csv", "api_logs.csv", "user_database.csv"]
    package = project / "src" / "parallel_workflow"
    assert not (package / "_runtime").exists()
    shims = ("config.py", "results.py", "sample_data.py")  # 0.4.0's import paths, in 0.5.0
    assert not [name for name in shims if (package / name).exists()]
    removed = removed_engine(project, result)
    assert engine_file in removed and "src/parallel_workflow/config.py" in removed
    # The runtime, which 0.5.0 rendered into the project, is a dependency now: runtime/ of
    # the template's repository at the release's commit.
    release = git(releases, "rev-parse", f"{HEAD_RELEASE}^{{commit}}").strip()
    assert runtime_commit(project, str(releases)) == release

    environment = reinstalled(project, tmp_path)
    edits = shell("python -m parallel_workflow engine-edits", project, environment)
    print(f"$ python -m parallel_workflow engine-edits\n{edits.stdout}{edits.stderr}")
    assert edits.returncode == 1, edits.stderr
    assert edits.stdout.splitlines() == [
        f"{engine_file}: you had edited it, and the template update removed it (the engine is"
        f" parallel-workflow-runtime now); your version: git show HEAD:{engine_file}"
    ]
    history = shell("python -m parallel_workflow history --json", project, environment)
    assert history.returncode == 0, history.stderr
    assert run_id in [run["run_id"] for run in json.loads(history.stdout)]
    show = f"python -m parallel_workflow history show {run_id[:8]} --json"
    shown = shell(show, project, environment)
    assert shown.returncode == 0, shown.stderr
    sources = json.loads(shown.stdout)["aggregation"]["sources"]
    assert sources[1]["details"]["checked_by"] == "the data team"
    tests = shell("python -m pytest -q -p no:cacheprovider", project, environment)
    print(f"$ python -m pytest -q\n{tests.stdout[-600:]}")
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]


# A test of the team's own, written against the import paths of runtime 0.9.0 (template
# 0.7.0): deprecated in runtime 0.11, with a warning that named the import to use instead, and
# gone since 0.12.0.
TEAMS_TEST = f'''"""Our own checks of the workflow's config."""

from pathlib import Path

from parallel_workflow_runtime.config import load_config
from parallel_workflow_runtime.results import SourceSummary

CONFIG = Path(__file__).parents[1] / "{WORKFLOW.as_posix()}" / "config.yaml"


def test_the_workflow_reads_three_sources() -> None:
    assert len(load_config(CONFIG).sources) == 3
    assert SourceSummary(records=2)["records"] == 2
'''
# The same test with the imports that the warning of runtime 0.11 named.
TEAMS_TEST_UPDATED = TEAMS_TEST.replace(
    "from parallel_workflow_runtime.config import load_config\n"
    "from parallel_workflow_runtime.results import SourceSummary\n",
    "from parallel_workflow_runtime import SourceSummary, load_config\n",
)


def test_a_0_7_0_project_updates_its_runtime_imports_and_the_team_moves_its_old_ones(
    releases: Path, tmp_path: Path
) -> None:
    """0.7.0 → this version: the template's files move to the runtime's public API (its
    sub-packages are private since runtime 0.11.0); the team's own code, which imported the
    runtime's modules, fails to import them, naming the module, until it imports the public
    names instead (the import that runtime 0.11's DeprecationWarning named)."""
    project = project_at(releases, "v0.7.0", tmp_path)
    template_files = ("tests/conftest.py", "tests/test_project.py", WORKFLOW / "workflow.py")
    assert all("from parallel_workflow_runtime." in read(project, f) for f in template_files)
    teams_test = project / "tests" / "test_teams_checks.py"
    teams_test.write_text(TEAMS_TEST, encoding="utf-8")
    commit_all(project, "the team's own test")

    result = copier("update", "--defaults", f"--answers-file={ANSWERS}", str(project))

    assert result.returncode == 0, result.stderr
    assert answers_of(project)["_commit"] == HEAD_RELEASE
    assert_no_conflicts(project)
    assert read(project, "tests/test_teams_checks.py") == TEAMS_TEST
    for path in template_files:
        assert "from parallel_workflow_runtime." not in read(project, path), path
        assert "from parallel_workflow_runtime import (" in read(project, path), path
    environment = reinstalled(project, tmp_path)
    tests = shell("python -m pytest -q -p no:cacheprovider", project, environment)
    print(f"$ python -m pytest -q\n{tests.stdout[-1500:]}")
    assert tests.returncode != 0
    said = " ".join(tests.stdout.split())
    assert "No module named 'parallel_workflow_runtime.config'" in said, said[-3000:]
    assert "ERROR tests/test_teams_checks.py" in said and "1 error" in said, said[-3000:]

    teams_test.write_text(TEAMS_TEST_UPDATED, encoding="utf-8")
    tests = shell("python -m pytest -q -p no:cacheprovider", project, environment)
    print(f"$ python -m pytest -q\n{tests.stdout[-1500:]}")
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert "DeprecationWarning" not in tests.stdout


# The environment variable that overrides report_model: empty forces the offline report.
OFFLINE_REPORT = "PARALLEL_WORKFLOW_REPORT_MODEL"

# Every `workflow:` setting of a 0.5.0 config.yaml but the two that come from the answers
# (name, workflow_id: an update with other answers changes them), set as a team would.
CHANGED_SETTINGS = {
    "version": '"2.3.0"',
    "report_model": '"openai:gpt-4o-mini"',
    "max_concurrency": "2",
    "max_details_bytes": "500000",
    "timeout_seconds": "20",
    "retries": "1",
    "retry_backoff_seconds": "0.2",
    "max_backoff_seconds": "5",
    "executor": "thread",
    "max_workers": "2",
}


def test_a_0_5_0_project_whose_settings_all_changed_updates_without_a_conflict(
    releases: Path, tmp_path: Path
) -> None:
    project = project_at(releases, "v0.5.0", tmp_path)
    config_path = project / WORKFLOW / "config.yaml"
    workflow = yaml.safe_load(config_path.read_text(encoding="utf-8"))["workflow"]
    assert set(workflow) - {"name", "workflow_id"} == set(CHANGED_SETTINGS)  # every one of them
    for key, value in CHANGED_SETTINGS.items():
        text = config_path.read_text(encoding="utf-8")
        changed = re.sub(rf"(?m)^(  {key}: ).*$", rf"\g<1>{value}", text, count=1)
        assert changed != text, key
        config_path.write_text(changed, encoding="utf-8")
    commit_all(project, "our settings")

    # As a user does it: copier's command line, without --trust.
    result = copier("update", "--defaults", f"--answers-file={ANSWERS}", str(project))

    assert result.returncode == 0, result.stderr
    assert answers_of(project)["_commit"] == HEAD_RELEASE
    assert_no_conflicts(project)
    kept = yaml.safe_load(config_path.read_text(encoding="utf-8"))["workflow"]
    assert {key: kept[key] for key in CHANGED_SETTINGS} == {
        key: yaml.safe_load(value) for key, value in CHANGED_SETTINGS.items()
    }
    # The update may have changed the dependencies: Copier's last words say to reinstall.
    assert '.venv/bin/pip install -e ".[dev]"' in result.stderr.split("Updated ")[-1]
    run = run_in(project, "-m", "parallel_workflow", "run", "--json", env={OFFLINE_REPORT: ""})
    assert run.returncode == 0, run.stderr
    assert len(json.loads(run.stdout)["sources"]) == 3


def test_a_project_whose_sources_were_all_rewritten_passes_its_whole_suite_after_an_update(
    template: Path, tmp_path: Path
) -> None:
    """Sources and their tests rewritten as a user would (other records, no demo settings, an
    async def, a setting of their own): the update keeps them byte for byte and every rendered
    test, the template's and theirs, still passes. (The user-path test runs the same sources
    before an update, through the rendered CI's steps.)"""
    project = new_project(template, tmp_path)
    rewritten = rewrite_every_source_as_a_user(project)
    commit_all(project, "our own sources")
    ours = {
        path: text
        for path, text in files(project).items()
        if any(path.endswith((f"/{id_}.py", f"/test_{id_}.py")) for id_ in rewritten)
    }
    assert len(ours) == 2 * len(rewritten)

    update(project)

    assert_no_conflicts(project)
    assert {path: read(project, path) for path in ours} == ours
    config = yaml.safe_load(read(project, WORKFLOW / "config.yaml"))
    assert config["workflow"]["version"] == "1.1.0"  # the template's change, merged
    assert [sorted(source) for source in config["sources"]] == [["id", "name", "table"]] * 3
    result = run_in(project, "-m", "pytest", "-q", "-p", "no:cacheprovider", timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", result.stdout)


@pytest.mark.parametrize("runtime_from", ["git", "index"])
def test_a_release_that_changes_only_the_runtime_changes_one_line(
    tmp_path: Path, runtime_from: str
) -> None:
    """From 0.6.0 on an engine change reaches a project as a new runtime: the template
    release that brings it changes one line of the rendered project, the requirement on the
    runtime (its commit; its range, for a project that takes it from an index)."""
    template = template_snapshot(tmp_path / "releases" / "parallel-workflow")
    git(template, "tag", "v1.0.0")
    version = (template / "runtime" / "VERSION").read_text(encoding="utf-8").strip()
    major, minor, patch = (int(part) for part in version.split("."))
    following = f"{major}.{minor}.{patch + 1}"
    (template / "runtime" / "VERSION").write_text(f"{following}\n", encoding="utf-8")
    runtime = template / "runtime" / "src" / "parallel_workflow_runtime"
    append(runtime / "_observe" / "report.py", "# a fix\n")
    commit_all(template, "runtime only")
    git(template, "tag", "v1.0.1")
    project = tmp_path / "project"
    copy(template, project, runtime_from=runtime_from)
    commit_all(project, "rendered at v1.0.0", init=True)

    update(project)

    changed = git(project, "status", "--porcelain").splitlines()
    assert sorted(line[3:] for line in changed) == [ANSWERS, "pyproject.toml"]
    diff = git(project, "diff", "--unified=0", "--", "pyproject.toml").splitlines()
    lines = [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    if runtime_from == "git":
        old, new = (
            git(template, "rev-parse", f"{tag}^{{commit}}").strip() for tag in ("v1.0.0", "v1.0.1")
        )
        url = f"git+file://localhost{template}@{{}}#subdirectory=runtime"
        assert [line[:2] for line in lines] == ["- ", "+ "]
        assert lines[0].endswith(f' @ {url.format(old)}",') and lines[1].endswith(
            f' @ {url.format(new)}",'
        )
        assert runtime_commit(project, str(template)) == new
    else:
        extras = sorted(runtime_requirement(project).extras)
        assert lines == [
            f'-    "parallel-workflow-runtime[{",".join(extras)}]~={version}",',
            f'+    "parallel-workflow-runtime[{",".join(extras)}]~={following}",',
        ]
