"""README.md's table of who owns which file is exact: every file of the project is in exactly
one of its rows, and every row names files that exist."""

from __future__ import annotations

import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# What running, testing and installing the project leaves behind, your own .env (git
# ignores it; .env.example is the project's) and the uv.lock that `uv sync` writes (yours, to
# commit or not): not part of it.
LEFT_BEHIND = {
    ".git", ".venv", "venv", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache",
    ".data", "build", "dist", ".env", "uv.lock",
}  # fmt: skip
CHECKED_FOLDERS = ("src", "tests", ".github")


def project_files() -> list[str]:
    """The files at the top of the project and under src/, tests/ and .github/."""
    files = [path for path in PROJECT.iterdir() if path.is_file()]
    for folder in CHECKED_FOLDERS:
        files += (path for path in (PROJECT / folder).rglob("*") if path.is_file())
    return sorted(
        path.relative_to(PROJECT).as_posix()
        for path in files
        if not LEFT_BEHIND.intersection(path.relative_to(PROJECT).parts)
        and not any(part.endswith(".egg-info") for part in path.parts)
    )


def pattern(path: str) -> re.Pattern[str]:
    """A path of the table as a regular expression: `*` is one folder, `<id>` a source's id
    (not `__init__`), and a trailing `/` everything below a folder."""
    expression = ""
    for part in re.split(r"(\*|<id>)", path.rstrip("/")):
        if part == "*":
            expression += r"[^/]+"
        elif part == "<id>":
            expression += r"(?!__init__\b)[A-Za-z_][A-Za-z0-9_]*"
        else:
            expression += re.escape(part)
    return re.compile(expression + ("/.+" if path.endswith("/") else ""))


def ownership_rows() -> list[tuple[str, re.Pattern[str]]]:
    """The paths in the table of README.md's section "What is where, and whose"."""
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    section = readme.partition("\n## What is where, and whose\n")[2].partition("\n## ")[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `"):
            cell = line.split(" | ")[0]
            rows += [(path, pattern(path)) for path in re.findall(r"`([^`]+)`", cell)]
    return rows


def test_every_file_is_in_exactly_one_row_of_the_ownership_table() -> None:
    rows = ownership_rows()
    assert len(rows) > 10, "README.md has no ownership table"
    for file in project_files():
        owners = [path for path, expression in rows if expression.fullmatch(file)]
        assert len(owners) == 1, f"{file} is in {len(owners)} rows of README.md's table: {owners}"


def test_every_row_of_the_ownership_table_names_files_that_exist() -> None:
    files = project_files()
    for path, expression in ownership_rows():
        assert any(expression.fullmatch(file) for file in files), f"no file is {path}"
