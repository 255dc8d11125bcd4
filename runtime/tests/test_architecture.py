"""The runtime's shape (decision 0018): layers that import only downwards, checked by
import-linter; modules of at most 400 lines; one public API at the package's top; the
paths that projects of 0.10.0 and before imported, gone since 0.12.0."""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import parallel_workflow_runtime

RUNTIME = Path(__file__).resolve().parents[1]
PACKAGE = RUNTIME / "src" / "parallel_workflow_runtime"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_LINES = 400
# The modules rendered projects imported before 0.11.0, and where their names live now.
OLD_PATHS = {
    "check": "_cli.check_sources",
    "config": "_core.config",
    "connectors": "_connectors.connectors",
    "history": "_store.history",
    "http_app": "_serve.http_app",
    "registry": "_core.registry",
    "results": "_core.results",
    "steps": "_execution.steps",
}


def lint_imports(*, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    if pythonpath is not None:
        environment["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(RUNTIME / "pyproject.toml")],
        capture_output=True,
        text=True,
        cwd=RUNTIME,
        env=environment,
        timeout=300,
    )


@pytest.mark.integration
def test_each_layer_imports_only_the_layers_below_it() -> None:
    result = lint_imports()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout, result.stdout


@pytest.mark.integration
def test_an_upward_import_inside_a_function_breaks_the_layers(tmp_path: Path) -> None:
    """The contract sees what import-time acyclicity hides: an import inside a function."""
    copy = tmp_path / "src" / "parallel_workflow_runtime"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "_core" / "results.py").open("a", encoding="utf-8") as module:
        module.write(
            "\n\ndef upward() -> None:\n"
            "    from parallel_workflow_runtime._cli import entry  # noqa: F401\n"
        )

    result = lint_imports(pythonpath=tmp_path / "src")

    assert result.returncode == 1, result.stdout + result.stderr
    assert str(tmp_path) not in result.stderr  # it read the copy, as a package, not a path
    said = " ".join(result.stdout.split())  # its lines wrap at the terminal's width
    assert "Each layer imports only the layers below it BROKEN" in said, said
    assert "_core.results -> parallel_workflow_runtime._cli.entry" in said, said


def test_no_module_is_longer_than_400_lines() -> None:
    lengths = {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }

    assert len(lengths) > 60
    assert {path: lines for path, lines in lengths.items() if lines > MAX_LINES} == {}


def test_the_public_api_is_the_package_top_and_every_name_resolves() -> None:
    public = parallel_workflow_runtime.__all__

    assert len(public) == len(set(public))
    for name in public:
        value = getattr(parallel_workflow_runtime, name)
        if inspect.isclass(value) or inspect.isfunction(value):  # not a constant, an alias
            # Defined in a private sub-package: the top only re-exports it.
            assert value.__module__.startswith("parallel_workflow_runtime._"), name
    assert set(public) <= set(dir(parallel_workflow_runtime))
    with pytest.raises(AttributeError, match="no attribute 'CursorStore'"):
        _ = parallel_workflow_runtime.CursorStore


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_an_old_path_is_gone_and_its_names_are_at_the_top(old: str) -> None:
    """Deprecated in 0.11 (a DeprecationWarning named the public import), removed in 0.12.0."""
    with pytest.raises(ModuleNotFoundError, match=f"parallel_workflow_runtime.{old}'"):
        importlib.import_module(f"parallel_workflow_runtime.{old}")
    new = importlib.import_module(f"parallel_workflow_runtime.{OLD_PATHS[old]}")
    assert any(
        getattr(new, name, None) is getattr(parallel_workflow_runtime, name)
        for name in parallel_workflow_runtime.__all__
    ), f"{old} had names that projects imported: the top exports them"
