"""The bench is the `bench` command's alone: nothing else in the package imports it, so that
`run`, `serve` and a project's own code never load its modules (issue 34)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import FIRST_WORKFLOW, HISTORY_DB_ENV, user_environment

# Each test here starts processes or servers (conftest.py: the test pyramid).
pytestmark = pytest.mark.integration

# Imports every module of every sub-package of the runtime but the bench (and Alembic's
# migration scripts, which run only under Alembic), in a fresh process, and prints the bench's
# modules that are loaded then: any top-level import of the bench, however indirect, shows in it.
EVERY_MODULE_BUT_THE_BENCH = """
import importlib, json, pkgutil, sys
import parallel_workflow_runtime
for module in pkgutil.iter_modules(parallel_workflow_runtime.__path__):
    if module.name == "_bench":
        continue  # (walk_packages would import the package to walk it)
    imported = importlib.import_module(f"parallel_workflow_runtime.{module.name}")
    for inner in pkgutil.walk_packages(getattr(imported, "__path__", []), imported.__name__ + "."):
        if ".migrations" not in inner.name:
            importlib.import_module(inner.name)
bench = [name for name in sys.modules if name.startswith("parallel_workflow_runtime._bench")]
print(json.dumps(sorted(bench)))
"""

# The project's command line, as `python -m example_project` runs it; when the process ends,
# the bench's modules that it loaded go to the file named by its first argument. The imports
# that a command makes inside its functions (the pages, the history) show here.
COMMAND_THEN_LOADED_MODULES = """
import atexit, json, sys
from pathlib import Path
loaded_file = Path(sys.argv[1])
atexit.register(lambda: loaded_file.write_text(json.dumps(
    sorted(name for name in sys.modules if name.startswith("parallel_workflow_runtime._bench"))
)))
from example_project import project
raise SystemExit(project.main(sys.argv[2:]))
"""


def python(program: str, *arguments: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", program, *arguments],
        capture_output=True,
        text=True,
        env=user_environment(**environment),
        timeout=300,
    )


def test_no_module_of_the_runtime_imports_the_bench() -> None:
    imported = python(EVERY_MODULE_BUT_THE_BENCH)

    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout) == []


@pytest.mark.parametrize(
    "command",
    [
        ["run", "--json", "--workflow", FIRST_WORKFLOW, "--html", "{folder}/run.html"],
        ["history", "--json"],
        ["check"],
    ],
)
def test_a_command_other_than_bench_loads_none_of_the_bench(
    command: list[str], tmp_path: Path
) -> None:
    loaded_file = tmp_path / "loaded.json"
    arguments = [argument.format(folder=tmp_path) for argument in command]

    ran = python(
        COMMAND_THEN_LOADED_MODULES,
        str(loaded_file),
        *arguments,
        **{HISTORY_DB_ENV: str(tmp_path / "history.sqlite")},
    )

    assert ran.returncode == 0, ran.stderr
    assert json.loads(loaded_file.read_text(encoding="utf-8")) == []


def test_bench_loads_the_bench(tmp_path: Path) -> None:
    # The other side of the tests above: what they look for is what `bench` does load.
    loaded_file = tmp_path / "loaded.json"
    arguments = ["--workflow", FIRST_WORKFLOW, "--sources=2", "--latency=0.001", "--repeat=1"]

    ran = python(
        COMMAND_THEN_LOADED_MODULES,
        str(loaded_file),
        "bench",
        *arguments,
        **{HISTORY_DB_ENV: str(tmp_path / "history.sqlite")},
    )

    assert ran.returncode == 0, ran.stderr
    loaded = json.loads(loaded_file.read_text(encoding="utf-8"))
    assert "parallel_workflow_runtime._bench.workflow" in loaded
