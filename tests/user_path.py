"""A rendered project the way its users run it: a fresh virtual environment, the install command
its README and CI give, the steps of its CI in order, its console script. Shared by
tests/test_user_path.py and scripts/wheelhouse (which downloads the wheels for each Python
found here), so it imports nothing beyond the standard library at the top."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
WHEELHOUSE = TEMPLATE / ".wheelhouse"
# The CI matrix of the rendered project runs 3.11 to 3.13; this machine's own is one of them.
CANDIDATE_VERSIONS = ("3.12", "3.13", "3.11")


def python_version(executable: str) -> str | None:
    """`X.Y` of an interpreter that runs, else None (a pyenv shim of a version that is not
    selected fails)."""
    try:
        result = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def other_pythons() -> dict[str, str]:
    """Interpreters of another minor version than this one that the rendered project supports,
    by version: on PATH (python3.12, ...) or installed by pyenv."""
    own = "{}.{}".format(*sys.version_info[:2])
    found: dict[str, str] = {}
    for version in CANDIDATE_VERSIONS:
        if version == own:
            continue
        candidates = [shutil.which(f"python{version}") or ""]
        pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
        candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"))
        for candidate in filter(None, candidates):
            if python_version(candidate) == version:
                found[version] = candidate
                break
    return found


def other_python_versions() -> list[str]:
    return sorted(other_pythons())


def clean_environment() -> dict[str, str]:
    """The environment of a user's shell: none of the test session's Python settings, and no
    virtual environment active."""
    dropped = ("PYTEST_", "PYTHON", "VIRTUAL_ENV", "COV_", "PIP_", "UV_")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    environment["PATH"] = os.pathsep.join(
        part
        for part in environment.get("PATH", "").split(os.pathsep)
        if not part.startswith(str(TEMPLATE / ".venv"))
    )
    return environment


def offline_installs(environment: dict[str, str]) -> dict[str, str]:
    """pip (pre-commit's too) installing from .wheelhouse only: the same commands, offline."""
    return environment | {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(WHEELHOUSE),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


def with_venv(environment: dict[str, str], venv: Path) -> dict[str, str]:
    """As after `source .venv/bin/activate`: its bin first on PATH."""
    return environment | {
        "PATH": os.pathsep.join([str(venv / "bin"), environment.get("PATH", "")]),
        "VIRTUAL_ENV": str(venv),
    }


def shell(
    command: str, cwd: Path, environment: dict[str, str], timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """A `run:` step as GitHub Actions runs it: bash, stopping at the first failing command."""
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", command],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def readme_install_command(readme: str) -> str:
    """The install command of the rendered README's "Run it", as a user types it."""
    run_it = readme.split("## Run it", 1)[1].split("\n## ", 1)[0]
    (line,) = [line for line in run_it.splitlines() if "pip install -e" in line]
    return line.strip()


def pip_arguments(command: str) -> str:
    """What a command asks pip to install: `python -m pip install -e ".[dev]"` and
    `.venv/bin/pip install -e ".[dev]"` both give `-e ".[dev]"`."""
    found = re.search(r"pip install (.+)$", command)
    assert found, f"no pip install in {command!r}"
    return found[1].strip()
