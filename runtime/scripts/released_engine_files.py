"""Writes src/parallel_workflow_runtime/_cli/released_engine_files.json: the SHA-256 of every
file that a released template version rendered into projects and that the current template
no longer renders (so `copier update` deletes it). `engine-edits` tells a file the user edited
from one a release wrote.

    python runtime/scripts/released_engine_files.py           write it
    python runtime/scripts/released_engine_files.py --check   exit 1 if it is out of date

The releases are the template's CHANGELOG.md entries with a `Commit:` line (no git tags
needed); a file rendered from Jinja is hashed as its template text, which engine_edits.py
compares with the user's file after putting the package name back into that form.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
MANIFEST = REPOSITORY / "runtime/src/parallel_workflow_runtime/_cli/released_engine_files.json"
PACKAGE_FOLDER = "template/src/{{ package_name }}/"
# Engine releases: the versions whose projects carry the engine in their package.
RELEASES = ("0.4.0", "0.5.0")


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPOSITORY), *args], capture_output=True, text=True, check=True
    ).stdout


def release_commit(version: str) -> str:
    changelog = (REPOSITORY / "CHANGELOG.md").read_text(encoding="utf-8")
    entry = changelog.split(f"## [{version}]", 1)[1]
    match = re.search(r"^Commit:\s*([0-9a-f]{40})\s*$", entry, re.MULTILINE)
    assert match, f"CHANGELOG.md names no commit for {version}"
    return match[1]


def rendered_paths(files: list[str]) -> set[str]:
    """The paths under the package folder that a template's files render, Jinja or not."""
    return {
        name.removeprefix(PACKAGE_FOLDER).removesuffix(".jinja")
        for name in files
        if name.startswith(PACKAGE_FOLDER) and not name.startswith(PACKAGE_FOLDER + "workflows/")
    }


def manifest() -> dict[str, list[str]]:
    current = rendered_paths(git("ls-files", "template/").splitlines())
    hashes: dict[str, set[str]] = {}
    for version in RELEASES:
        commit = release_commit(version)
        files = git("ls-tree", "-r", "--name-only", commit, "--", "template/src/").splitlines()
        for name in files:
            path = name.removeprefix(PACKAGE_FOLDER).removesuffix(".jinja")
            if name.startswith(PACKAGE_FOLDER) and path in rendered_paths([name]) - current:
                content = subprocess.run(
                    ["git", "-C", str(REPOSITORY), "show", f"{commit}:{name}"],
                    capture_output=True,
                    check=True,
                ).stdout
                hashes.setdefault(path, set()).add(hashlib.sha256(content).hexdigest())
    return {path: sorted(values) for path, values in sorted(hashes.items())}


def main() -> int:
    text = json.dumps(manifest(), indent=1) + "\n"
    if sys.argv[1:] == ["--check"]:
        if MANIFEST.read_text(encoding="utf-8") != text:
            print(f"{MANIFEST.relative_to(REPOSITORY)} is out of date: run {sys.argv[0]}")
            return 1
        return 0
    MANIFEST.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
