"""Where `python -m <package>` and the console script start: the command line behind checks
that need nothing but the standard library, so that a system other than POSIX, or a
dependency missing from the environment (after a `copier update` that added one, say), is
one line that says what to do, not a traceback from deep inside an import."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence

from parallel_workflow_runtime._core.project import ProjectBase, current, make_current

# The command the rendered README and CI install the project with.
INSTALL_COMMAND = 'pip install -e ".[dev]"'


class Project(ProjectBase):
    """The project the runtime serves (its package and its `workflows/` folder), with its
    command line: a rendered project's registry.py registers it, its `__main__.py` and console
    script call `main`."""

    def main(self, argv: Sequence[str] | None = None) -> int:
        """The command line (`python -m <package>`, the console script) for this project."""
        make_current(self)
        code = main(argv)
        # The command is done and the process ends next. Its teardown would walk every object
        # that dlt, pandas and SQLAlchemy made, looking for cycles to collect: 0.3 s of
        # waiting for nothing after the output. Out of the collector's sight (gc.freeze),
        # they go with the process instead. (A caller of main() in its own process keeps
        # the objects made so far for good: main is the command line, not a library call.)
        gc.freeze()
        return code


def main(argv: Sequence[str] | None = None) -> int:
    if os.name != "posix":
        print(f"{program_name()}: error: {not_posix()}", file=sys.stderr)
        return 2
    # The command's imports (Agno, pydantic, SQLAlchemy, rich: a million objects) make no
    # garbage, yet the collector would walk them again and again while they load: a tenth of
    # the command's CPU time. It is off until they are loaded (options.py's `command` turns it
    # back on before the command's work), and on again here whatever happened.
    gc.disable()
    try:
        from parallel_workflow_runtime._cli.cli import main as command_line

        return command_line(argv)
    except ModuleNotFoundError as error:
        print(f"{program_name()}: error: {missing_dependency(error)}", file=sys.stderr)
        return 2
    finally:
        gc.enable()


def missing_dependency(error: ModuleNotFoundError) -> str:
    """One line for an import that failed outside a source (a source's own failure is its
    result): which module, and the reinstall that brings what the project declares."""
    module = (error.name or str(error)).split(".")[0]
    return (
        f"the module '{module}' is not installed: reinstall the project in its virtual"
        f" environment ({INSTALL_COMMAND} in the project's folder); a template update may have"
        " changed its dependencies"
    )


def not_posix() -> str:
    """The history's lock (fcntl), the process executor and Ctrl-C need POSIX, and nothing here
    tests Windows (the template's decision 0007): said before anything imports them."""
    return (
        f"this project runs on POSIX systems only (Linux, macOS), not on {sys.platform};"
        " on Windows, run it in WSL (Windows Subsystem for Linux)"
    )


def program_name() -> str:
    """The command as it was typed: the console script's name, or `python -m <package>`."""
    # os.path, not pathlib: a Path is a WindowsPath where os.name says "nt".
    name = os.path.basename(sys.argv[0])
    return f"python -m {current().package}" if name in ("__main__.py", "") else name
