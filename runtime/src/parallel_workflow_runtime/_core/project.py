"""The project the runtime serves: its Python package and its `workflows/` folder.

A rendered project registers itself when its package is imported: its `registry.py` calls
`Project.register("<package>", <the workflows folder>)`, and its `__init__.py` imports that
module. Everything the runtime names after the project comes from here: where the workflows
and settings.yaml are, the environment variables' prefix (`<PACKAGE>_REPORT_MODEL`), the
distribution name that names its user data folder, the title of the served API and
`python -m <package>` in messages. One process serves one project.

The project's folder (`root`) is where its package lives, not where a command runs: a
package imported from `<root>/src/<package>/` (an editable install, or src/ on PYTHONPATH)
beside a pyproject.toml that declares the project belongs to that folder, so the console
script run from anywhere (a cron job's home folder, say) uses the same history and `.env` as
a command run in the project. A package installed into site-packages has no such folder.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Self

from parallel_workflow_runtime._core.usage import ConfigError

# Modules that projects rendered before template 0.5.0 had at their package's top, which
# their source modules still import (`from <package>.config import Source`): the same modules
# of the runtime, under those names, until 1.0.0.
OLD_IMPORT_PATHS = {
    "config": "parallel_workflow_runtime._core.config",
    "results": "parallel_workflow_runtime._core.results",
    "sample_data": "parallel_workflow_runtime._connectors.sample_data",
}


@dataclass(frozen=True)
class ProjectBase:
    """A project's package (its import name) and the folder that holds its workflows: what
    every layer may know of it. Its command line is the public `Project` (_cli/entry.py)."""

    package: str
    workflows_dir: Path

    @classmethod
    def register(cls, package: str, workflows_dir: Path | str) -> Self:
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
        for name, module in OLD_IMPORT_PATHS.items():
            sys.modules.setdefault(f"{package}.{name}", lazily_imported(module))
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

    @functools.cached_property
    def root(self) -> Path | None:
        """The project's folder: `<root>` when the package is `<root>/src/<package>/` and
        `<root>/pyproject.toml` declares this distribution (an editable install, or src/ on
        PYTHONPATH); None for a package installed into site-packages, which belongs to no
        folder. Whatever the current folder is: a command gives the same answer anywhere."""
        package_folder = Path(os.path.abspath(self.workflows_dir)).parent
        if package_folder.name != self.package or package_folder.parent.name != "src":
            return None
        root = package_folder.parent.parent
        if declared_name(root / "pyproject.toml") != normalized(self.distribution):
            return None
        return root

    @property
    def env_file(self) -> Path | None:
        """`<root>/.env`, the variables that commands read when they are not set (None: the
        project has no folder, see `root`)."""
        return self.root / ".env" if self.root is not None else None

    def load_env_file(self) -> tuple[str, ...]:
        """Set the variables of `env_file` that the environment does not set already, and
        return their names (none without the file). A line that is not `NAME=value` is a
        ConfigError naming the file and the line: the variable it meant to set would be
        silently missing otherwise. PYTHON_DOTENV_DISABLED=1 skips the file (python-dotenv's
        switch, from its 1.2; the project's tests set it, so that they never read the .env of
        whoever runs them)."""
        global _from_env_file
        _from_env_file = ()
        path = self.env_file
        disabled = os.environ.get(ENV_FILE_DISABLED, "").strip().casefold() in TRUE_WORDS
        if path is None or disabled or not path.is_file():
            return ()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"cannot read {path}: {error}") from None
        # python-dotenv only logs the lines it cannot parse, and skips them.
        from dotenv import load_dotenv
        from dotenv.parser import parse_stream

        for binding in parse_stream(io.StringIO(text)):
            if binding.error:
                # The line itself is not shown: it may hold a secret.
                raise ConfigError(f"{path}: line {binding.original.line} is not NAME=value")
        before = set(os.environ)
        load_dotenv(stream=io.StringIO(text), override=False)
        _from_env_file = tuple(name for name in os.environ if name not in before)
        return _from_env_file

    @property
    def version(self) -> str | None:
        """The project's version: its pyproject.toml's when it runs from its folder (the
        checkout as it is now; an editable install's metadata keeps the version it was
        installed with), else the installed distribution's; None when neither says."""
        if self.root is not None:
            declared = project_table(self.root / "pyproject.toml").get("version")
            if isinstance(declared, str):
                return declared
        return installed_version(self.distribution)

    def versions(self) -> str:
        """`--version`'s line: the project's distribution and version, the runtime's and
        Agno's, from the installed metadata (importing Agno would take a second)."""
        runtime = installed_version("parallel-workflow-runtime") or "unknown"
        agno = installed_version("agno") or "not installed"
        return (
            f"{self.distribution} {self.version or '(version unknown)'}"
            f" (parallel-workflow-runtime {runtime}, agno {agno})"
        )


_registered: ProjectBase | None = None
# python-dotenv's variable that turns .env files off, and the values it takes as yes.
ENV_FILE_DISABLED = "PYTHON_DOTENV_DISABLED"
TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y"})
# The variables that this process took from the project's .env (load_env_file).
_from_env_file: tuple[str, ...] = ()


def installed_version(distribution: str) -> str | None:
    """The version of an installed distribution, None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def from_env_file() -> tuple[str, ...]:
    """The names of the variables this process took from the project's .env."""
    return _from_env_file


def project_table(pyproject: Path) -> dict[str, object]:
    """The `[project]` table of a pyproject.toml; empty when there is none to read (no such
    file, or one that is not TOML: it cannot be this project's)."""
    try:
        with pyproject.open("rb") as file:
            table = tomllib.load(file).get("project")
    except (OSError, ValueError):  # ValueError: not TOML, or not UTF-8
        return {}
    return table if isinstance(table, dict) else {}


def declared_name(pyproject: Path) -> str | None:
    """The `[project] name` of a pyproject.toml, normalized; None when it declares none."""
    name = project_table(pyproject).get("name")
    return normalized(name) if isinstance(name, str) else None


def normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): `My_Project` is `my-project`."""
    return re.sub(r"[-_.]+", "-", name).lower()


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


def make_current(project: ProjectBase) -> None:
    """Serve `project` in this process (its command line does, in case it was not registered)."""
    global _registered
    _registered = project


def current() -> ProjectBase:
    """The project registered in this process."""
    if _registered is None:
        raise RuntimeError(
            "no project is registered: import the project's package first (its registry.py"
            " calls Project.register)"
        )
    return _registered
