"""The user's path, as users take it: copy from the template's URL (this checkout published
as a bare git repository: tests/conftest.py's `published`), `git init`, a fresh virtual
environment, the install command that the rendered README and CI give (read from them, never
restated here), then every `run:` step of the rendered CI's `checks` job in order
(pre-commit, mypy, pytest, with a real PostgreSQL where scripts/test starts one), the console script
from that editable install, and the console script from a built wheel in another environment,
run in an empty directory. Nothing on PYTHONPATH: what the project imports, it imports because
it is installed. Installs are offline: the runtime from the published repository at the commit
copied, everything else from the wheels scripts/wheelhouse puts into .wheelhouse (PIP_NO_INDEX
and PIP_FIND_LINKS: the commands stay the same). tests/test_day_one.py takes the same path
online, from the package index, as a new user does.

The defaults run on this interpreter, after every source was rewritten the way a user would
(tests/user_path.py); the "mixed" scenario (odd names, a report model, twelve
sources) on another Python version found on the machine (REQUIRE_OTHER_PYTHON=1, which
.ci/run sets, turns its absence into a failure)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from helpers import commit_all, copier
from user_path import (
    WHEELHOUSE,
    clean_environment,
    offline_installs,
    other_pythons,
    pip_arguments,
    readme_install_command,
    rewrite_every_source_as_a_user,
    shell,
    with_venv,
)

MIXED = {
    "project_name": "Mixed Data Platform",
    "workflow_name": 'Nightly "ETL" — façade',
    "source_count": 5,
    "source_names": [
        "Customer DB (EU) - v2",
        "O'Reilly's exports",
        "日本語データ",
        "2024 Sales",
        "x" * 60,
    ],
    "report_model": "openai:gpt-4o-mini",
    "max_concurrency": 2,
}


def render(template: str, destination: Path, answers: dict) -> Path:
    """`copier copy` from the template's URL, as users copy it from GitHub: the project then
    installs its runtime from there, at the commit copied."""
    data = [f"--data={key}={value}" for key, value in answers.items() if key != "source_names"]
    if "source_names" in answers:
        data.append(f"--data=source_names={json.dumps(answers['source_names'])}")
    result = copier("copy", "--defaults", *data, template, str(destination))
    assert result.returncode == 0, result.stderr[-3000:]
    commit_all(destination, "rendered", init=True)  # pre-commit reads the files git tracks
    return destination


def ci_checks_job(project: Path) -> dict:
    ci = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text("utf-8"))
    job: dict = ci["jobs"]["checks"]
    return job


def ci_environment(job: dict) -> dict[str, str]:
    """The job's `env`, with this machine's PostgreSQL in place of the CI service's (none here
    unless scripts/test started one)."""
    environment = {key: str(value) for key, value in job.get("env", {}).items()}
    environment.pop("TEST_DATABASE_URL", None)
    if os.environ.get("TEST_DATABASE_URL"):
        environment["TEST_DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]
    return environment


def assert_ok(result: subprocess.CompletedProcess[str], what: str) -> None:
    assert result.returncode == 0, (
        f"{what} failed:\n{result.stdout[-5000:]}\n{result.stderr[-3000:]}"
    )


def console_script(project: Path) -> str:
    pyproject = tomllib.loads((project / "pyproject.toml").read_text("utf-8"))
    (name,) = pyproject["project"]["scripts"]
    return str(name)


def run_the_ci_steps(project: Path, python: str, tmp_path: Path) -> dict[str, str]:
    """The `checks` job on `python`: its setup steps done here (the checkout is the rendered
    project, setup-python a fresh venv of `python`), then each `run:` step in order. Returns
    the environment the steps ran in (the venv active)."""
    job = ci_checks_job(project)
    steps = job["steps"]
    uses = [step["uses"].split("@")[0] for step in steps if "uses" in step]
    assert uses == ["actions/checkout", "actions/setup-python"], "a new CI action to mirror here"
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
    environment = offline_installs(with_venv(clean_environment(), venv)) | ci_environment(job)
    environment["PRE_COMMIT_HOME"] = str(tmp_path / "pre-commit-home")

    runs = [step for step in steps if "run" in step]
    install = next(step for step in runs if "pip install" in step["run"])
    readme = (project / "README.md").read_text("utf-8")
    # What the README tells a user to install is what CI installs: one cannot drift alone.
    assert pip_arguments(readme_install_command(readme)) == pip_arguments(install["run"])
    assert [step["name"] for step in runs][-1] == "Test"
    for step in runs:
        step_environment = environment | {k: str(v) for k, v in step.get("env", {}).items()}
        if os.environ.get("REQUIRE_BROWSER") != "1":
            # GitHub's runners have a browser; this machine promises one only under .ci/run.
            step_environment.pop("REQUIRE_BROWSER", None)
        assert_ok(shell(step["run"], project, step_environment), f"CI step {step['name']!r}")
    return environment


def offline_report(project: Path) -> dict[str, str]:
    """The variable that overrides a configured report_model: empty forces the offline report
    (the mixed scenario configures openai:..., whose API key no test has)."""
    package = next(path.name for path in (project / "src").iterdir() if path.is_dir())
    return {f"{package.upper()}_REPORT_MODEL": ""}


def check_the_editable_console_script(project: Path, environment: dict[str, str]) -> None:
    environment = environment | offline_report(project)
    script = console_script(project)
    helped = shell(f"{script} --help", project, environment)
    assert_ok(helped, f"{script} --help")
    assert helped.stdout.startswith(f"usage: {script} ")
    ran = shell(f"{script} run --json", project, environment)
    assert_ok(ran, f"{script} run --json")
    document = json.loads(ran.stdout)
    assert document["failed"] == [] and document["total_sources"] >= 1


def check_the_wheel_in_an_empty_directory(project: Path, python: str, tmp_path: Path) -> None:
    """Build the wheel, install it alone into another venv and use it from an empty directory:
    no source tree near, nothing written where the command runs."""
    environment = offline_installs(clean_environment())
    dist = tmp_path / "dist"
    built = shell(f"{python} -m pip wheel --no-deps --wheel-dir {dist} .", project, environment)
    assert_ok(built, "building the wheel")
    (wheel,) = dist.glob("*.whl")
    package = next(path.name for path in (project / "src").iterdir() if path.is_dir())
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert f"{package}/py.typed" in names  # the sources' public API is typed for their checkers
    assert f"{package}/registry.py" in names and f"{package}/__main__.py" in names

    venv = tmp_path / "wheel-venv"
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    # With the serve extra, which keeps the run history. uv: the README gives no command for a
    # wheel, and uv installs it in a second of CPU.
    requirement = f"{wheel.name.split('-')[0]}[serve] @ {wheel.as_uri()}"
    uv_install = [sys.executable, "-m", "uv", "pip", "install", "--quiet", "--no-cache"]
    offline = ["--offline", "--no-index", "--find-links", str(WHEELHOUSE)]
    installed = subprocess.run(
        [*uv_install, *offline, "--python", str(venv / "bin" / "python"), requirement],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert_ok(installed, "installing the wheel")
    home = tmp_path / "home"
    empty = tmp_path / "empty"
    empty.mkdir()
    user = (
        with_venv(clean_environment(), venv)
        | {
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "AGNO_TELEMETRY": "false",
        }
        | offline_report(project)
    )
    script = console_script(project)
    for command in (
        f"{script} --help",
        f"{script} list",
        f"{script} run --json",
        f"{script} history",
    ):
        assert_ok(shell(command, empty, user), f"{command} from the wheel")
    assert list(empty.iterdir()) == [], "the installed command wrote into the current directory"
    histories = list(home.rglob("history.sqlite"))
    assert len(histories) == 1 and histories[0].is_relative_to(home / ".local" / "share")


def walk_the_users_path(
    template: str,
    answers: dict,
    python: str,
    tmp_path: Path,
    *,
    rewrite_the_sources: bool = False,
) -> None:
    project = tmp_path / "project"
    render(template, project, answers)
    if rewrite_the_sources:  # as "Make it yours" invites: the template's tests stay green
        assert rewrite_every_source_as_a_user(project)
        commit_all(project, "our own sources")
    environment = run_the_ci_steps(project, python, tmp_path)
    check_the_editable_console_script(project, environment)
    check_the_wheel_in_an_empty_directory(project, python, tmp_path)


@pytest.fixture(autouse=True)
def wheelhouse() -> None:
    assert (WHEELHOUSE / ".stamp").is_file(), "no .wheelhouse: run scripts/bootstrap first"


def test_the_defaults_with_every_source_rewritten_pass_their_ci_steps(
    published: str, tmp_path: Path
) -> None:
    walk_the_users_path(published, {}, sys.executable, tmp_path, rewrite_the_sources=True)


def test_the_mixed_scenario_passes_its_ci_steps_on_another_python(
    published: str, tmp_path: Path
) -> None:
    found = other_pythons()
    if not found:
        message = "no other Python 3.11+ than this one on the machine"
        if os.environ.get("REQUIRE_OTHER_PYTHON") == "1":
            pytest.fail(message)
        pytest.skip(message)
    version = min(found)
    walk_the_users_path(published, MIXED, found[version], tmp_path)
