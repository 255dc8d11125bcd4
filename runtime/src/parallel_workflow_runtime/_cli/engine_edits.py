"""`engine-edits`: the files of the old rendered engine that a `copier update` removed while
they held your edits.

Up to template 0.5.0 the engine was rendered into the project (`src/<package>/_runtime/`, and
before that the package's top); from 0.6.0 it is this package, and `copier update` deletes
those files, edited or not. Copier runs nothing of ours before it does (that would take
`--trust`), but `update` needs a clean git tree, so HEAD still holds each file as it was: a
file that HEAD has, the working tree no longer has, and whose content no release of the
template wrote (released_engine_files.json) held your edits.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib.resources import files
from pathlib import Path

from parallel_workflow_runtime._core.project import ProjectBase
from parallel_workflow_runtime._core.results import one_line


class EngineEditsError(Exception):
    """Why the check cannot be made (no git, not a git checkout)."""


def released_hashes() -> dict[str, list[str]]:
    """For each path under the package folder, the SHA-256 of every released version of it."""
    text = files(__package__).joinpath("released_engine_files.json").read_text("utf-8")
    hashes: dict[str, list[str]] = json.loads(text)
    return hashes


def removed_edits(project: ProjectBase) -> list[str]:
    """The paths (from the repository's top) of engine files with your edits that HEAD holds
    and the working tree no longer does."""
    package_folder = project.workflows_dir.parent
    # The package folder from the repository's top; an error outside a git checkout.
    prefix = (git(package_folder, "rev-parse", "--show-prefix") or b"").decode().strip()
    removed = []
    for relative, released in released_hashes().items():
        if (package_folder / relative).exists():
            continue
        committed = git(package_folder, "show", f"HEAD:./{relative}", check=False)
        if committed is None:
            continue  # not in HEAD either: nothing was removed
        if not {sha256(committed), sha256(as_template_text(committed, project))} & set(released):
            removed.append(prefix + relative)
    return removed


def as_template_text(content: bytes, project: ProjectBase) -> bytes:
    """A file rendered from Jinja, with the package name put back as the template wrote it
    (0.4.0's config.py, history.py and settings.yaml named its environment variables so)."""
    prefix = f"{project.package.upper()}_".encode()
    return content.replace(prefix, b"{{ package_name | upper }}_")


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def git(folder: Path, *args: str, check: bool = True) -> bytes | None:
    try:
        result = subprocess.run(["git", "-C", str(folder), *args], capture_output=True)
    except OSError as error:
        raise EngineEditsError(f"git cannot run: {one_line(error)}") from None
    if result.returncode and check:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise EngineEditsError(f"git {args[0]} failed in {folder}: {' '.join(message[-1:])}")
    return None if result.returncode else result.stdout
