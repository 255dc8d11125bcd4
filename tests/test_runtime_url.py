"""Where a rendered project installs its runtime from (decision 0016): `runtime_url` in
includes/names.jinja turns the template's location as Copier recorded it (`_src_path`) and the
commit copied into a PEP 508 direct reference that pip and uv accept. The forms Copier takes
(its shorthands, URLs, scp-like addresses, local paths), each as the template renders it."""

from __future__ import annotations

import jinja2
import pytest
from packaging.requirements import Requirement

from helpers import TEMPLATE

COMMIT = "0123456789abcdef0123456789abcdef01234567"
AT = f"@{COMMIT}#subdirectory=runtime"


def runtime_url(src_path: str, commit: str | None = COMMIT) -> str:
    """The macro as Copier renders it: its Jinja with the Ansible filters Copier loads."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE),
        extensions=["jinja2_ansible_filters.AnsibleCoreFiltersExtension"],
    )
    source = '{% from "includes/names.jinja" import runtime_url %}{{ runtime_url(src, commit) }}'
    return environment.from_string(source).render(src=src_path, commit=commit)


@pytest.mark.parametrize(
    ("src_path", "url"),
    [
        ("gh:org/parallel-workflow", "git+https://github.com/org/parallel-workflow.git"),
        ("gh:org/parallel-workflow.git", "git+https://github.com/org/parallel-workflow.git"),
        ("gh:/org/parallel-workflow", "git+https://github.com/org/parallel-workflow.git"),
        ("gl:group/sub/templates", "git+https://gitlab.com/group/sub/templates.git"),
        ("https://github.com/org/pw.git", "git+https://github.com/org/pw.git"),
        ("https://git.example.com/pw", "git+https://git.example.com/pw"),
        ("git@github.com:org/pw.git", "git+ssh://git@github.com/org/pw.git"),
        ("git+ssh://git@git.example.com/org/pw.git", "git+ssh://git@git.example.com/org/pw.git"),
        ("git+https://git.example.com/pw.git", "git+https://git.example.com/pw.git"),
        ("git+file:///srv/git/pw.git", "git+file://localhost/srv/git/pw.git"),
        ("git+file:///srv/my templates/pw.git", "git+file://localhost/srv/my%20templates/pw.git"),
        ("/home/ana/parallel-workflow", "git+file://localhost/home/ana/parallel-workflow"),
    ],
)
def test_each_form_copier_takes_becomes_a_reference_pip_and_uv_accept(
    src_path: str, url: str
) -> None:
    rendered = runtime_url(src_path)

    assert rendered == url + AT
    requirement = Requirement(f"parallel-workflow-runtime[sql] @ {rendered}")
    assert requirement.url == rendered and requirement.extras == {"sql"}


def test_a_local_folder_that_is_no_git_repository_is_referenced_as_a_folder() -> None:
    """Copier records no commit for it: pip builds runtime/ of the folder as it is."""
    assert runtime_url("/srv/parallel-workflow", None) == (
        "file://localhost/srv/parallel-workflow/runtime"
    )


@pytest.mark.parametrize("src_path", [".", "../parallel-workflow", "~/parallel-workflow", ""])
def test_a_path_relative_to_where_copier_ran_gives_none(src_path: str) -> None:
    """Nothing can resolve it later: the project then takes the range (tested in
    test_rendered_files.py, with Copier's message saying so)."""
    assert runtime_url(src_path) == ""
