"""Day one, anywhere: the template copied from its git URL as a new team copies it, with only
Copier's messages as a guide and nothing of ours on the machine. Unlike test_user_path.py, no
wheelhouse, no find-links and none of this machine's pip settings: everything comes from the
package index, and the runtime from the template's repository at the commit copied (decision
0016). `check` and `run` go without any network at all (a network namespace of their own).

The template's repository is this checkout published as a bare git repository (`published`,
tests/conftest.py), reached as `git+file://...`, which Copier and pip treat as they treat
GitHub's. The commands are read from what Copier prints and what the rendered README and CI
say, never restated here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import TEMPLATE, commit_all, git, runtime_commit
from user_path import clean_environment, shell, with_venv

FOUR_KINDS: list[object] = [
    {"Orders DB": "sql"},
    {"Events": "http"},
    {"Exports": "file"},
    "Scoring",
]
PACKAGE = "parallel_workflow"
WORKFLOW_ID = "parallel-workflow"
ANSWERS = f".copier-answers.{WORKFLOW_ID}.yml"


def new_user(tmp_path: Path) -> dict[str, str]:
    """A new user's shell: Copier and uv installed as tools of their own, no virtual
    environment active, no pip or uv settings (this machine's pip.conf points at folders of
    wheels, which users do not have), no AGNO_TELEMETRY (the project must stay offline by
    itself)."""
    tools = tmp_path / "tools"
    tools.mkdir(exist_ok=True)
    for tool in ("copier", "uv"):
        (tools / tool).unlink(missing_ok=True)
        (tools / tool).symlink_to(TEMPLATE / ".venv" / "bin" / tool)
    environment = clean_environment() | {"PIP_CONFIG_FILE": os.devnull}
    environment.pop("AGNO_TELEMETRY", None)
    environment["PATH"] = os.pathsep.join([str(tools), environment["PATH"]])
    return environment


def without_network(command: str) -> str:
    """`command` in a network namespace of its own, where nothing but a loopback that is down
    exists: any connection fails at once, so what passes here needs no network."""
    unshare = "unshare --net" if os.geteuid() == 0 else "unshare --net --map-root-user"
    return f"{unshare} bash -e -o pipefail -c {shlex.quote(command)}"


def ok(result: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{what}:\n{result.stdout[-5000:]}\n{result.stderr[-4000:]}"
    return result


def copy(arguments: str, cwd: Path, environment: dict[str, str]) -> str:
    """`copier copy <arguments>` as the user types it; what Copier printed."""
    result = ok(shell(f"copier copy {arguments}", cwd, environment), f"copier copy {arguments}")
    return result.stdout + result.stderr


def copy_four_kinds(template: str, cwd: Path, environment: dict[str, str]) -> str:
    """`copier copy` of a project with a source of each kind into my-project; its output."""
    names = json.dumps(FOUR_KINDS)
    arguments = f"--defaults --data source_count=4 --data 'source_names={names}'"
    return copy(f"{arguments} {template} my-project", cwd, environment)


def printed_commands(output: str) -> list[str]:
    """The commands of Copier's closing message: the indented lines of its "Next:" block."""
    block = output.split("\nNext:\n\n", 1)[1].split("\n\n", 1)[0]
    lines = block.splitlines()
    assert lines and all(line.startswith("    ") for line in lines), block
    return [line.strip() for line in lines]


def uv_instead(output: str) -> tuple[str, str]:
    """The message's line for uv users: which printed command `uv ...` replaces."""
    found = re.search(r"^With uv, `(uv [^`]+)` replaces `([^`]+)`", output, re.MULTILINE)
    assert found, output[-2000:]
    return found[1], found[2]


def run_printed(
    commands: list[str], cwd: Path, environment: dict[str, str], offline: tuple[str, ...]
) -> tuple[Path, dict[str, subprocess.CompletedProcess[str]]]:
    """Each command as printed, in order, in a shell of its own (a `cd` moves the next ones);
    those naming a word of `offline` without network. Returns the folder they ended in and
    what each printed."""
    results = {}
    for command in commands:
        if command.startswith("cd "):
            cwd = cwd / shlex.split(command)[1]
            continue
        line = without_network(command) if any(word in command for word in offline) else command
        results[command] = ok(shell(line, cwd, environment, timeout=1200), command)
    return cwd, results


def ci_steps(project: Path, run: str = "") -> list[tuple[str, str]]:
    """The `run:` steps of the rendered CI's checks job but its install (done as printed),
    each prefixed by `run` (e.g. `uv run`)."""
    ci = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text("utf-8"))
    steps = [step for step in ci["jobs"]["checks"]["steps"] if "run" in step]
    assert next(step["name"] for step in steps) == "Install"
    return [(step["name"], f"{run}{step['run']}") for step in steps[1:]]


def latest_run(project: Path, environment: dict[str, str], cwd: Path) -> dict:
    history = ok(
        shell(f"{project}/.venv/bin/{PACKAGE.replace('_', '-')} history --json", cwd, environment),
        "history",
    )
    return json.loads(history.stdout)[0]


def assert_every_source_ok(run: dict, names: list[str]) -> None:
    assert run["workflow_id"] == WORKFLOW_ID
    assert [(source["name"], source["status"]) for source in run["sources"]] == [
        (name, "ok") for name in names
    ]


def source_names(kinds: list[object]) -> list[str]:
    return [next(iter(entry)) if isinstance(entry, dict) else str(entry) for entry in kinds]


@pytest.fixture(autouse=True)
def network_namespaces() -> None:
    probe = subprocess.run(
        without_network("true"), shell=True, capture_output=True, text=True, timeout=60
    )
    assert probe.returncode == 0, f"cannot run without network here: {probe.stderr}"


def test_a_project_copied_from_the_template_url_installs_and_runs_as_copier_says(
    published: str, tmp_path: Path
) -> None:
    environment = new_user(tmp_path)
    output = copy_four_kinds(published, tmp_path, environment)

    project, printed = run_printed(
        printed_commands(output), tmp_path, environment, offline=(" check", " run")
    )
    assert project == tmp_path / "my-project"
    # The runtime came from the template's repository, at the commit copied.
    runtime_commit(project, published)
    ran = next(result for command, result in printed.items() if command.endswith(" run"))
    assert_every_source_ok(latest_run(project, environment, project), source_names(FOUR_KINDS))
    # Nothing was set up: each connector source says in one line that it read its sample.
    assert ran.stdout.count("sample") >= 2, ran.stdout
    for name, step in ci_steps(project):
        ok(shell(step, project, with_venv(environment, project / ".venv")), f"CI step {name}")

    # The console script from an empty folder: the same history, nothing written there.
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    assert latest_run(project, environment, empty) == latest_run(project, environment, project)
    assert list(empty.iterdir()) == []

    # A second workflow, as the rendered README says, then what Copier prints after it.
    readme = (project / "README.md").read_text(encoding="utf-8")
    block = readme.split("### Adding another workflow", 1)[1].split("```bash\n", 1)[1]
    command = block.split("```", 1)[0].replace("\\\n", " ")
    answers = yaml.safe_load((project / ANSWERS).read_text(encoding="utf-8"))
    command = (
        command.replace("<version in _commit>", answers["_commit"])
        .replace("<workflow_id>", WORKFLOW_ID)
        .replace("<template>", published)
    )
    assert command.startswith("copier copy "), command
    second = copy(command.removeprefix("copier copy "), project, environment)
    assert " conflict " not in second and "skip" not in second, second
    assert (
        git(
            project,
            "status",
            "--porcelain",
            "--",
            "pyproject.toml",
            "src/parallel_workflow/workflows/settings.yaml",
        )
        == ""
    )
    run_printed(printed_commands(second), project, environment, offline=(" check", " run"))
    plain = ok(
        shell(
            without_network(".venv/bin/python -m parallel_workflow run --json"),
            project,
            environment,
        ),
        "run",
    )
    assert json.loads(plain.stdout)["workflow_id"] == WORKFLOW_ID  # the first stays the default


def test_the_same_with_uv_sync(published: str, tmp_path: Path) -> None:
    environment = new_user(tmp_path)
    output = copy_four_kinds(published, tmp_path, environment)
    uv_command, replaced = uv_instead(output)
    commands = [
        uv_command if command == replaced else command for command in printed_commands(output)
    ]
    assert uv_command in commands

    project, _ = run_printed(commands, tmp_path, environment, offline=(" check", " run"))
    assert (project / "uv.lock").is_file()
    assert_every_source_ok(latest_run(project, environment, project), source_names(FOUR_KINDS))
    for name, step in ci_steps(project):
        ok(shell(step, project, with_venv(environment, project / ".venv")), f"CI step {name}")


def test_a_0_5_0_project_whose_sources_were_rewritten_takes_the_newest_release_with_a_plain_update(
    published: str, tmp_path: Path
) -> None:
    """The template's repository as its maintainers push it: main and the tags scripts/release
    makes from CHANGELOG.md. A team copied 0.5.0 and rewrote its sources; a plain `copier
    update` (no --vcs-ref) takes the newest release, adds a test per source that holds for
    their code, and the project installs and passes its suite as Copier's message says."""
    environment = new_user(tmp_path)
    repository = tmp_path / "parallel-workflow"
    ok(
        shell(
            f"git clone --quiet {published.removeprefix('git+')} {repository}",
            tmp_path,
            environment,
        ),
        "clone",
    )
    released = ok(
        shell(
            f"{repository}/scripts/release",
            repository,
            os.environ | {"PATH": f"{TEMPLATE}/.venv/bin:{os.environ['PATH']}"},
        ),
        "scripts/release",
    )
    newest = git(repository, "tag", "--sort=-v:refname").split()[0]
    assert newest != "v0.5.0", released.stdout  # a release after 0.5.0 exists
    copy(f"--defaults --vcs-ref v0.5.0 {repository} project", tmp_path, environment)
    project = tmp_path / "project"
    commit_all(project, "rendered at 0.5.0", init=True)
    workflow = project / "src" / PACKAGE / "workflows" / "parallel_workflow"
    for index, module in enumerate(sorted((workflow / "sources").glob("[!_]*.py"))):
        module.write_text(REWRITTEN_SOURCE.format(records=4 + index), encoding="utf-8")
    commit_all(project, "our own sources")

    updated = ok(
        shell(f"copier update --defaults --answers-file {ANSWERS}", project, environment),
        "copier update",
    )

    answers = yaml.safe_load((project / ANSWERS).read_text(encoding="utf-8"))
    assert answers["_commit"] == newest
    added = git(project, "status", "--porcelain", "--untracked-files=all", "--", "tests").split()
    assert [path for path in added if re.search(r"tests/parallel_workflow/test_\w+\.py$", path)]
    after = (updated.stdout + updated.stderr).split("Updated ")[-1]
    commands = [line.strip() for line in after.splitlines() if line.startswith("    ")]
    assert commands, after
    venv = "python3 -m venv .venv && "
    ok(shell(venv + commands[0], project, environment), commands[0])
    for command in commands[1:]:
        line = without_network(command) if " check" in command else command
        ok(shell(line, project, environment, timeout=1200), command)


REWRITTEN_SOURCE = '''"""Our source: the rows of our warehouse table."""

from __future__ import annotations

from parallel_workflow import Source, SourceSummary


def run(source: Source) -> SourceSummary:
    return SourceSummary(records={records}, details={{"table": "warehouse"}})
'''
