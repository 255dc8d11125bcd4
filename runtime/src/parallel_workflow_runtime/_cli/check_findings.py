"""`check`'s findings: one row of its table each (Finding), the statuses a row can have,
and how check prints them: the findings table, and the line on what the project's .env set.
check.py and check_sources.py make the findings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parallel_workflow_runtime._core.project import current, from_env_file

if TYPE_CHECKING:
    from rich.table import Table

# A finding's status: "ok" and "sample" (a source reading its bundled sample) are fine, as
# are "set", "unset", "not probed" and "not built"; "problem" makes the exit code 1.
PROBLEM = "problem"
STATUS_STYLES = {PROBLEM: "bold red", "ok": "green", "sample": "yellow"}


@dataclass(frozen=True)
class Finding:
    """One row of the table: what was checked, its name, how it stands, and one line."""

    area: str  # settings, workflow, history, report model, source, variable
    name: str
    status: str
    detail: str

    @property
    def problem(self) -> bool:
        return self.status == PROBLEM

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "problem": self.problem,
        }


def problems(findings: Iterable[Finding]) -> int:
    return sum(finding.problem for finding in findings)


def findings_table(findings: list[Finding]) -> Table:
    """The findings as a rich Table, each status in its colour. Every cell is Text, never
    markup: a name or an error may hold brackets."""
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for column in ("What", "Name", "Status", "Detail"):
        table.add_column(column, overflow="fold")
    for finding in findings:
        status = Text(finding.status, style=STATUS_STYLES.get(finding.status, ""))
        table.add_row(Text(finding.area), Text(finding.name), status, Text(finding.detail))
    return table


def env_file_line() -> str | None:
    """Which variables the project's .env set, when it set any."""
    names = from_env_file()
    path: Path | None = current().env_file
    if not names or path is None:
        return None
    return f"{path} set {', '.join(names)} (a variable set in the environment wins over it)"
