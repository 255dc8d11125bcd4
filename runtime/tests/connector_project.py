"""A project's command line over a workflows folder of a test's own: one workflow,
`connectors`, whose connector sources hand their rows to tests.connector_sources.collect. The
commands run in fresh processes, as a user's do, with the test's history."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .conftest import FIRST_WORKFLOW, RUNTIME, WORKFLOWS, user_environment

# The example project's command line, its workflows taken from the folder in argv[1].
PROGRAM = """
import sys
import example_project.workflows as workflows
from parallel_workflow_runtime import Project
workflows.__path__.append(sys.argv[1])
sys.exit(Project.register("example_project", sys.argv[1]).main(sys.argv[2:]))
"""

Cli = Callable[..., subprocess.CompletedProcess[str]]
# A connector source's module that hands its rows to the tests' collector.
COLLECTING_MODULE = "from tests.connector_sources import collect as run\n"


def write_connector_workflow(
    workflows: Path,
    sources: list[dict[str, Any]],
    modules: dict[str, str] | None = None,
    **workflow: Any,
) -> Path:
    """`workflows`/connectors/: a module per source (`modules`' text by id; by default one
    that hands its rows to tests.connector_sources.collect), the example project's workflow.py,
    a config.yaml of `sources` (and the `workflow:` settings given, e.g. timeout_seconds), and
    the project's settings.yaml with this workflow its default (the only one in this folder).
    Returns the workflow's folder."""
    target = workflows / "connectors"
    (target / "sources").mkdir(parents=True)
    (target / "__init__.py").write_text("")
    (target / "sources" / "__init__.py").write_text("")
    for source in sources:
        module = (modules or {}).get(source["id"], COLLECTING_MODULE)
        (target / "sources" / f"{source['id']}.py").write_text(module)
    example = WORKFLOWS[FIRST_WORKFLOW].config.path.parent
    (target / "workflow.py").write_text(
        (example / "workflow.py")
        .read_text()
        .replace("def get_example_project", "def get_connectors")
    )
    settings = (example.parent / "settings.yaml").read_text()
    settings = re.sub(r"(?m)^default_workflow:.*$", 'default_workflow: "connectors"', settings)
    (workflows / "settings.yaml").write_text(settings)
    document = {
        "workflow": {
            "name": "Connectors",
            "workflow_id": "connectors",
            "report_model": "",
            **workflow,
        },
        "sources": sources,
    }
    (target / "config.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return target


def connector_project(
    workflows: Path, sources: list[dict[str, Any]], **environment: str
) -> tuple[Path, Cli]:
    """`workflows`/connectors/ (write_connector_workflow; a test may add files there
    afterwards); the workflow's folder, and a function that runs a command of the project's
    command line on it (`cli("run", "--json")`) with `environment` added."""
    target = write_connector_workflow(workflows, sources)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", PROGRAM, str(workflows), *args],
            capture_output=True,
            text=True,
            env=user_environment(**environment),
            cwd=RUNTIME,
            timeout=300,
        )

    return target, cli
