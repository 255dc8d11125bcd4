"""Every invalid answer is refused with one line naming the question and the value, and
nothing is left on disk: with --data, with --data-file and interactively."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pexpect
import pytest
import yaml

from helpers import TEMPLATE, copier

REFUSALS = {
    "count and names differ": (
        {"source_count": 2, "source_names": ["Orders", "Invoices", "Refunds"]},
        "source_names",
        "source_names has 3 names but source_count is 2",
    ),
    "duplicate names": (
        {"source_names": ["API Logs", "API Logs", "Orders"]},
        "source_names",
        "source_names 'API Logs' and 'API Logs' both become the identifier 'api_logs'",
    ),
    "duplicate only after deriving ids": (
        {"source_names": ["API Logs", "Orders", "api-logs!"]},
        "source_names",
        "source_names 'API Logs' and 'api-logs!' both become the identifier 'api_logs'",
    ),
    "empty name": (
        {"source_names": ["Orders", "   ", "Refunds"]},
        "source_names",
        "source_names item 2 is empty",
    ),
    "name too long": (
        {"source_names": ["Orders", "x" * 61, "Refunds"]},
        "source_names",
        "source_names item 2 is longer than 60 characters",
    ),
    "name with a line break": (
        {"source_names": ["Orders", "two\nlines", "Refunds"]},
        "source_names",
        "source_names item 2 contains a line break or another control character",
    ),
    "name that is not text": (
        {"source_names": ["Orders", 2024, "Refunds"]},
        "source_names",
        "source_names item 2 must be text, got '2024'",
    ),
    "names not a list": (
        {"source_names": "Orders, Invoices, Refunds"},
        "source_names",
        "source_names must be a YAML list of names, got 'Orders, Invoices, Refunds'",
    ),
    "names a mapping": (
        {"source_names": {"Orders": 1}},
        "source_names",
        "source_names must be a YAML list of names",
    ),
    "unknown kind": (
        {"source_names": ["Orders", {"Invoices": "ftp"}, "Refunds"]},
        "source_names",
        "source_names item 2: kind must be one of python, sql, http, file, got 'ftp'",
    ),
    "two names in one entry": (
        {"source_names": ["Orders", {"Invoices": "sql", "Refunds": "http"}, "Returns"]},
        "source_names",
        "source_names item 2 must be a name or one `Name: kind`, got",
    ),
    "kind given to an empty name": (
        {"source_names": ["Orders", {" ": "sql"}, "Refunds"]},
        "source_names",
        "source_names item 2 is empty",
    ),
    "count 0": (
        {"source_count": 0},
        "source_count",
        "source_count must be between 1 and 256, got 0",
    ),
    "count 257": (
        {"source_count": 257},
        "source_count",
        "source_count must be between 1 and 256, got 257",
    ),
    "cap 0": (
        {"max_concurrency": 0},
        "max_concurrency",
        "max_concurrency must be between 1 and 1024, got 0",
    ),
    "names with a noncharacter YAML cannot hold": (
        {"source_count": 1, "source_names": ["Inv\ufffeoices"]},
        "source_names",
        "source_names item 1 contains a line break or another control character",
    ),
    "package name not an identifier": (
        {"package_name": "my-package"},
        "package_name",
        "package_name must be a Python identifier that is not a keyword, got 'my-package'",
    ),
    "package name a keyword": (
        {"package_name": "class"},
        "package_name",
        "package_name must be a Python identifier that is not a keyword, got 'class'",
    ),
    "package name from a digit": (
        {"project_name": "2024 Reports"},
        "package_name",
        "got '2024_reports'",
    ),
    "workflow id not a slug": (
        {"workflow_id": "Parallel_Workflow"},
        "workflow_id",
        "workflow_id must be a lowercase slug ([a-z][a-z0-9-]*), got 'Parallel_Workflow'",
    ),
    "empty project name": ({"project_name": " "}, "project_name", "project_name must not be empty"),
    "project name on two lines": (
        {"project_name": "Parallel\nWorkflow"},
        "project_name",
        "project_name must be a single line without control characters",
    ),
    "workflow id too long": (
        {"workflow_id": "w" * 41},
        "workflow_id",
        "workflow_id must be at most 40 characters",
    ),
    "report model without provider": (
        {"report_model": "gpt-4o-mini"},
        "report_model",
        "got 'gpt-4o-mini'",
    ),
}


def refused(result, destination: Path, question: str, message: str) -> None:
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"ValueError: Validation error for question '{question}': ")
    assert message in last_line
    assert not destination.exists(), "a refused answer left files on disk"


@pytest.mark.parametrize("case", list(REFUSALS))
def test_data_answers_are_refused(case: str, tmp_path: Path) -> None:
    answers, question, message = REFUSALS[case]
    destination = tmp_path / "project"
    # As a user types them: text as is, anything else in YAML's JSON-compatible flow style.
    data = [
        f"--data={key}={value if isinstance(value, str) else json.dumps(value)}"
        for key, value in answers.items()
    ]
    result = copier("copy", "--defaults", "--vcs-ref=HEAD", *data, str(TEMPLATE), str(destination))

    refused(result, destination, question, message)


@pytest.mark.parametrize("case", ["duplicate only after deriving ids", "names not a list"])
def test_data_file_answers_are_refused(case: str, tmp_path: Path) -> None:
    answers, question, message = REFUSALS[case]
    data_file = tmp_path / "answers.yml"
    data_file.write_text(yaml.safe_dump(answers), encoding="utf-8")
    destination = tmp_path / "project"
    result = copier(
        "copy",
        "--defaults",
        "--vcs-ref=HEAD",
        f"--data-file={data_file}",
        str(TEMPLATE),
        str(destination),
    )

    refused(result, destination, question, message)


def test_interactive_answers_are_refused_until_valid(tmp_path: Path) -> None:
    destination = tmp_path / "project"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "copier", "copy", "--vcs-ref=HEAD", str(TEMPLATE), str(destination)],
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 200),
    )
    try:
        child.expect_exact("Project name")
        child.sendline("")
        child.expect_exact("Python package name")
        child.send("\x15my-package\r")  # Ctrl-U clears the proposed default
        child.expect_exact("package_name must be a Python identifier that is not a keyword")
        child.send("\x15parallel_workflow\r")
        for prompt in ("Workflow name", "Workflow id"):
            child.expect_exact(prompt)
            child.sendline("")
        child.expect_exact("How many data sources")
        child.send("\x150\r")
        child.expect_exact("source_count must be between 1 and 256, got 0")
        child.sendcontrol("c")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert not destination.exists()
