"""What a user gets from `copier copy` without --trust: hand-written-looking files, an
answers file that `copier update` can use (see test_lifecycle.py), and escaped names in
Markdown."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from helpers import (
    TEMPLATE,
    assert_hand_written,
    copier,
    run_in,
)


def test_copy_needs_no_trust_and_says_what_to_run_next(default_project: tuple[Path, str]) -> None:
    """Copier's closing message: a git repository first (pre-commit and `copier update` fail
    without one), the install, `check`, `run` and the tests, in the order to type them
    (tests/test_day_one.py runs them)."""
    project, output = default_project

    assert (project / "src" / "parallel_workflow" / "workflows" / "parallel_workflow").is_dir()
    commands = [
        line.strip().split("  #")[0]
        for line in output.split("\nNext:\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    ]
    assert commands == [
        f"cd {project}",
        'git init -q && git add -A && git commit -qm "Rendered from parallel-workflow"',
        'python3 -m venv .venv && .venv/bin/pip install -e ".[dev]"',
        ".venv/bin/python -m parallel_workflow check",
        ".venv/bin/python -m parallel_workflow run",
        ".venv/bin/python -m pytest",
    ]


def test_a_copy_from_a_relative_path_says_it_cannot_be_installed_or_updated(
    tmp_path: Path,
) -> None:
    """Copier records a relative path as it was given: nothing finds the template there later
    (pip, for the runtime; `copier update`). The copy says so, and how to copy instead."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "copier",
            "copy",
            "--defaults",
            "--vcs-ref=HEAD",
            ".",
            str(tmp_path / "p"),
        ],
        cwd=TEMPLATE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    said = " ".join((result.stdout + result.stderr).split())
    assert "This project was copied from a relative path, .: nothing can find the template" in said
    assert 'copier copy "$PWD" <destination>' in said
    # The dependency falls back to the range, which pip reports in its own words if no
    # index has it, rather than a git URL that points nowhere.
    pyproject = (tmp_path / "p" / "pyproject.toml").read_text(encoding="utf-8")
    assert "~=" in pyproject and "git+" not in pyproject


def test_rendered_files_look_hand_written(default_project: tuple[Path, str]) -> None:
    assert_hand_written(default_project[0])


def test_the_answers_file_records_every_answer(default_project: tuple[Path, str]) -> None:
    project, _ = default_project
    answers_file = project / ".copier-answers.parallel-workflow.yml"
    answers = yaml.safe_load(answers_file.read_text(encoding="utf-8"))

    # Each with its kind, a plain name for a python source.
    assert answers["source_names"] == [
        {"User Database": "sql"},
        {"API Logs": "file"},
        "Analytics Data",
    ]
    assert answers["source_count"] == 3
    assert answers["workflow_id"] == "parallel-workflow"
    assert answers["report_model"] == ""
    assert Path(answers["_src_path"]) == TEMPLATE
    assert "sources" not in answers and "workflow_module" not in answers  # derived, not asked


def test_the_project_name_is_escaped_in_markdown(tmp_path: Path) -> None:
    destination = tmp_path / "project"
    result = copier(
        "copy",
        "--defaults",
        "--vcs-ref=HEAD",
        "--data=project_name=<b>Pipes</b> | *stars* _under_ `code` [link](x)",
        "--data=package_name=escaped",
        str(TEMPLATE),
        str(destination),
    )
    assert result.returncode == 0, result.stderr
    heading = (destination / "README.md").read_text(encoding="utf-8").splitlines()[0]

    assert heading == "# \\<b\\>Pipes\\</b\\> \\| \\*stars\\* \\_under\\_ \\`code\\` \\[link\\](x)"


def test_the_readme_documents_every_setting_of_config_yaml(
    default_project: tuple[Path, str],
) -> None:
    """config.yaml's comments stay short and stable (an update must not conflict with a changed
    value): the README's table is where each setting is explained, so it lists every one the
    config check accepts, in the sections that accept it."""
    project, _ = default_project
    fields = run_in(
        project,
        "-c",
        "import json; from parallel_workflow_runtime._core import config as c; print(json.dumps({"
        "'workflow': list(c.WorkflowSection.model_fields),"
        " 'source': list(c.SourceEntry.model_fields)}))",
    )
    assert fields.returncode == 0, fields.stderr
    accepted = json.loads(fields.stdout)
    readme = (project / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Settings of config.yaml", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([a-z, ]+) \|", table, re.MULTILINE)
    documented = {name: set(where.split(", ")) for name, where in rows}

    expected: dict[str, set[str]] = {}
    for section, names in accepted.items():
        for name in names:
            expected.setdefault(name, set()).add(section)
    assert documented == expected
