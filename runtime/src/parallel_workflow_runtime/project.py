"""The project the runtime serves: its Python package and its `workflows/` folder.

A rendered project registers itself when its package is imported: its `registry.py` calls
`Project.register("<package>", <the workflows folder>)`, and its `__init__.py` imports that
module. Everything the runtime names after the project comes from here: where the workflows
and settings.yaml are, the environment variables' prefix (`<PACKAGE>_REPORT_MODEL`), the
distribution name that finds the project's root and its user data folder, the title of the
served API and `python -m <package>` in messages. One process serves one project.
"""

from __future__ import annotations

import gc
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

# Modules that projects rendered before template 0.5.0 had at their package's top, which
# their source modules still import (`from <package>.config import Source`): the same modules
# of the runtime, under those names, until 1.0.0.
OLD_IMPORT_PATHS = ("config", "results", "sample_data")


@dataclass(frozen=True)
class Project:
    """A project's package (its import name) and the folder that holds its workflows."""

    package: str
    workflows_dir: Path

    @classmethod
    def register(cls, package: str, workflows_dir: Path | str) -> Project:
        """Make this the project the runtime serves in this process, and return it."""
        global _registered
        project = cls(package, Path(workflows_dir))
        # The same package again (imported anew, from another checkout) replaces it.
        if _registered is not None and _registered.package != package:
            raise RuntimeError(
                f"this process already serves the project {_registered.package!r}"
                f" ({_registered.workflows_dir}); it cannot serve {package!r} too"
            )
        _registered = project
        for name in OLD_IMPORT_PATHS:
            sys.modules.setdefault(f"{package}.{name}", lazily_imported(f"{__package__}.{name}"))
        return project

    @property
    def env_prefix(self) -> str:
        """The prefix of the project's environment variables, e.g. `PARALLEL_WORKFLOW_`."""
        return f"{self.package.upper()}_"

    @property
    def distribution(self) -> str:
        """The name pip knows the project by: the rendered pyproject.toml names it after the
        package. (Not read from installed metadata: the tests and `python -m` with
        PYTHONPATH=src run the package without installing it.)"""
        return self.package.replace("_", "-")

    @property
    def settings_path(self) -> Path:
        """settings.yaml, the settings every workflow of the project shares."""
        return self.workflows_dir / "settings.yaml"

    def main(self, argv: Sequence[str] | None = None) -> int:
        """The command line (`python -m <package>`, the console script) for this project."""
        from .entry import main

        global _registered
        _registered = self
        code = main(argv)
        # The command is done and the process ends next. Its teardown would walk every object
        # that dlt, pandas and SQLAlchemy made, looking for cycles to collect: 0.3 s of
        # waiting for nothing after the output. Out of the collector's sight (gc.freeze),
        # they go with the process instead. (A caller of main() in its own process keeps
        # the objects made so far for good: main is the command line, not a library call.)
        gc.freeze()
        return code


_registered: Project | None = None


def lazily_imported(name: str) -> ModuleType:
    """The module `name`, imported when one of its attributes is first read: importing the
    project's package (for `--help`, say) then imports neither pydantic nor Agno."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None, name  # a module of this package
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def current() -> Project:
    """The project registered in this process."""
    if _registered is None:
        raise RuntimeError(
            "no project is registered: import the project's package first (its registry.py"
            " calls Project.register)"
        )
    return _registered
