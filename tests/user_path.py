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

import yaml

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
    """The install command of the rendered README's "Run it", as a user types it: in its
    commands (its first code block), not in the prose around them."""
    run_it = readme.split("## Run it", 1)[1].split("\n## ", 1)[0]
    commands = run_it.split("```bash\n", 1)[1].split("```", 1)[0]
    (line,) = [line for line in commands.splitlines() if "pip install -e" in line]
    return line.strip()


def pip_arguments(command: str) -> str:
    """What a command asks pip to install: `python -m pip install -e ".[dev]"` and
    `.venv/bin/pip install -e ".[dev]"` both give `-e ".[dev]"`."""
    found = re.search(r"pip install (.+)$", command)
    assert found, f"no pip install in {command!r}"
    return found[1].strip()


def rewrite_every_source_as_a_user(project: Path) -> list[str]:
    """What the rendered README's "Make it yours" invites, done to every source of every
    workflow: the demo settings (`data_file`, `latency_seconds`) deleted from config.yaml, a
    setting of the team's own (`table`), a new `run` (the first source an `async def`) that
    returns other records, and the source's own test rewritten with it. Returns the ids."""
    rewritten = []
    for config_path in sorted(project.glob("src/*/workflows/*/config.yaml")):
        folder = config_path.parent
        text = config_path.read_text(encoding="utf-8")
        text = re.sub(r"(?m)^    (data_file|latency_seconds): .*\n", "", text)
        text = re.sub(r'(?m)^(  - id: "(\w+)"\n)', r'\1    table: "warehouse.\2"\n', text)
        config_path.write_text(text, encoding="utf-8")
        ids = re.findall(r'(?m)^  - id: "(\w+)"$', text)
        kinds = {s["id"]: s.get("kind", "python") for s in yaml.safe_load(text)["sources"]}
        package = folder.parents[1].name
        tests = project / "tests" / folder.name
        for index, source_id in enumerate(ids):
            records = 40 + index
            connector = kinds[source_id] != "python"
            (folder / "sources" / f"{source_id}.py").write_text(
                (USER_CONNECTOR_SOURCE if connector else USER_SOURCE).format(
                    package=package,
                    records=records,
                    module="asyncio" if index == 0 else "time",
                    define="async def" if index == 0 else "def",
                    wait="await asyncio.sleep(0.01)" if index == 0 else "time.sleep(0.01)",
                ),
                encoding="utf-8",
            )
            workflow_id = re.search(r'(?m)^  workflow_id: "(.+)"$', text)
            assert workflow_id, config_path
            (tests / f"test_{source_id}.py").write_text(
                USER_SOURCE_TEST.format(
                    package=package,
                    workflow=folder.name,
                    workflow_id=workflow_id[1],
                    source_id=source_id,
                    records=records,
                    imports="import asyncio\n\n" if index == 0 else "",
                    # A connector source's run() takes the runtime's Rows, made of the rows.
                    rows_import=f"from {package} import Rows\n" if connector else "",
                    call=("asyncio.run({})" if index == 0 else "{}").format(
                        f'module.run(source, Rows({{"id": n}} for n in range({records})))'
                        if connector
                        else "module.run(source)"
                    ),
                ),
                encoding="utf-8",
            )
            rewritten.append(source_id)
    return rewritten


USER_SOURCE = '''"""Reads the rows of this source's warehouse table."""

from __future__ import annotations

import {module}

from {package} import Source, SourceSummary


{define} run(source: Source) -> SourceSummary:
    {wait}  # the query
    rows = [{{"id": number}} for number in range({records})]
    return SourceSummary(records=len(rows), details={{"table": source.settings["table"]}})
'''

USER_CONNECTOR_SOURCE = '''"""Loads the rows dlt reads into the team's warehouse table."""

from __future__ import annotations

import {module}

from {package} import Rows, Source, SourceSummary


{define} run(source: Source, rows: Rows) -> SourceSummary:
    {wait}  # the load
    loaded = [row for row in rows if row is not None][:{records}]
    return SourceSummary(records=len(loaded), details={{"table": source.settings["table"]}})
'''

USER_SOURCE_TEST = '''"""Our source reads its table."""

from __future__ import annotations

{imports}{rows_import}from {package}.workflows.{workflow}.sources import {source_id} as module

from ..conftest import load_source


def test_it_reads_its_table() -> None:
    source = load_source("{workflow_id}", "{source_id}")
    summary = {call}
    assert summary == {{"records": {records}, "details": {{"table": "warehouse.{source_id}"}}}}
'''
