"""scripts/release: recreates the tags vX.Y.Z from the commits CHANGELOG.md names, so that a
fresh clone of main (which has no tags) gets them back.

Each test builds a throw-away git repository with three commits, a CHANGELOG.md of its own
naming them and a copy of scripts/release; the last test checks this repository's own
CHANGELOG.md without creating anything.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import TEMPLATE, commit_all, git

SCRIPT = TEMPLATE / "scripts" / "release"
NO_COMMIT = (
    "CHANGELOG.md: [{}] names no commit: commit your work, then add `Commit: <hash>` under"
    " its heading"
)
Entries = list[tuple[str, str | None]]


def release(repository: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the repository's copy of scripts/release from elsewhere: it finds its root itself."""
    return subprocess.run(
        [str(repository / "scripts" / "release"), *args],
        cwd=repository.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


def tags(repository: Path) -> dict[str, str]:
    """Every tag and the object its ref holds (a tag object for an annotated tag)."""
    listing = git(
        repository, "for-each-ref", "refs/tags", "--format=%(refname:short) %(objectname)"
    )
    return dict(line.split() for line in listing.splitlines())


def tagged_commit(repository: Path, tag: str) -> str:
    return git(repository, "rev-parse", f"{tag}^{{commit}}").strip()


def write_changelog(repository: Path, entries: Entries, *, preamble: str = "") -> None:
    """A CHANGELOG.md with one entry per (version, commit or None), top to bottom, committed."""
    parts = ["# Changelog\n\nWhat each release changed.\n\n", preamble]
    for day, (version, commit) in enumerate(entries, 1):
        parts.append(f"## [{version}] - 2026-01-{30 - day:02}\n\n")
        if commit is not None:
            parts.append(f"Commit: {commit}\n\n")
        parts.append(f"### Added\n- Release {version}.\n\n")
    parts.append(f"[{entries[0][0]}]: https://example.invalid/compare/v0...v1\n")
    (repository / "CHANGELOG.md").write_text("".join(parts), encoding="utf-8")
    commit_all(repository, "CHANGELOG")


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """Three commits, release 1 to 3, and scripts/release; no CHANGELOG.md yet."""
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    shutil.copy2(SCRIPT, root / "scripts" / "release")
    for number in (1, 2, 3):
        (root / "code.txt").write_text(f"release {number}\n", encoding="utf-8")
        commit_all(root, f"release {number}", init=number == 1)
    return root


@pytest.fixture
def commits(repository: Path) -> list[str]:
    """The full hashes of release 1, 2 and 3."""
    log = git(repository, "log", "--format=%H", "--grep=^release ")
    return list(reversed(log.split()))


@pytest.fixture
def released(repository: Path, commits: list[str]) -> Entries:
    entries: Entries = [("0.3.0", commits[2]), ("0.2.0", commits[1]), ("0.1.0", commits[0])]
    write_changelog(repository, entries)
    return entries


def lines(entries: Entries, state: str) -> list[str]:
    return [f"v{version} -> {commit[:7]} ({state})" for version, commit in entries if commit]


def test_tags_are_created_at_the_named_commits(repository: Path, released: Entries) -> None:
    result = release(repository)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == lines(released, "created")
    assert result.stderr == ""
    for version, commit in released:
        assert tagged_commit(repository, f"v{version}") == commit
        assert git(repository, "cat-file", "-t", f"v{version}").strip() == "tag"
        message = git(repository, "tag", "-l", "--format=%(contents)", f"v{version}")
        assert message.strip() == f"Release {version}"


def test_a_second_run_finds_them_and_changes_nothing(repository: Path, released: Entries) -> None:
    assert release(repository).returncode == 0
    before = tags(repository)
    result = release(repository)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == lines(released, "exists")
    assert tags(repository) == before


def test_only_missing_tags_are_created(
    repository: Path, released: Entries, commits: list[str]
) -> None:
    git(repository, "tag", "v0.2.0", commits[1])
    result = release(repository)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        lines(released, "created")[0],
        lines(released, "exists")[1],
        lines(released, "created")[2],
    ]


def test_the_top_entry_without_a_commit_is_refused(repository: Path, commits: list[str]) -> None:
    write_changelog(repository, [("0.3.0", None), ("0.2.0", commits[1]), ("0.1.0", commits[0])])
    for args in [(), ("--check",)]:
        result = release(repository, *args)
        assert result.returncode == 2
        assert result.stderr == NO_COMMIT.format("0.3.0") + "\n"
        assert result.stdout == ""
    assert tags(repository) == {}


def test_an_unreleased_section_is_not_an_entry(repository: Path, commits: list[str]) -> None:
    entries: Entries = [("0.2.0", commits[1]), ("0.1.0", commits[0])]
    write_changelog(repository, entries, preamble="## [Unreleased]\n\n### Added\n- Soon.\n\n")
    result = release(repository)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == lines(entries, "created")


def test_a_tag_pointing_at_another_commit_is_refused(
    repository: Path, released: Entries, commits: list[str]
) -> None:
    git(repository, "tag", "v0.2.0", commits[0])
    result = release(repository)
    assert result.returncode == 2
    assert f"tag v0.2.0 points at {commits[0][:7]}, not at {commits[1][:7]}" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert tags(repository) == {"v0.2.0": commits[0]}, "nothing is created"


@pytest.mark.parametrize("kind", ["not an ancestor", "unknown"])
def test_a_commit_not_on_this_branch_is_refused(
    repository: Path, commits: list[str], kind: str
) -> None:
    if kind == "not an ancestor":
        git(repository, "checkout", "-q", "-b", "side", commits[0])
        (repository / "code.txt").write_text("a release on a side branch\n", encoding="utf-8")
        commit_all(repository, "side")
        elsewhere = git(repository, "rev-parse", "HEAD").strip()
        git(repository, "checkout", "-q", "-")
        expected = f"[0.2.0] names commit {elsewhere[:7]}, which is not an ancestor of HEAD"
    else:
        elsewhere = "0123456789abcdef" * 2 + "01234567"
        expected = f"[0.2.0] names commit {elsewhere}, which this clone does not have"
    write_changelog(
        repository, [("0.3.0", commits[2]), ("0.2.0", elsewhere), ("0.1.0", commits[0])]
    )
    for args in [(), ("--check",)]:
        result = release(repository, *args)
        assert result.returncode == 2
        assert result.stderr == f"CHANGELOG.md: {expected}\n"
    assert tags(repository) == {}


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        (["0.2.0", "0.3.0", "0.1.0"], "[0.2.0] is above [0.3.0]"),
        (["0.3.0", "0.3.0", "0.1.0"], "[0.3.0] is above [0.3.0]"),
        (["1.0.0", "0.10.0", "0.9.0"], None),  # compared as numbers, not as text
    ],
)
def test_versions_must_decrease_from_top_to_bottom(
    repository: Path, commits: list[str], versions: list[str], expected: str | None
) -> None:
    entries: Entries = list(zip(versions, reversed(commits), strict=True))
    write_changelog(repository, entries)
    result = release(repository, "--check")
    if expected is None:
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == lines(entries, "missing")
    else:
        assert result.returncode == 2
        assert result.stderr.startswith(f"CHANGELOG.md: {expected}: versions must decrease")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Commit: {short}", "`Commit: {short}` is not a full 40-hex hash"),
        ("Commit: {full}\n\nCommit: {full}", "[0.3.0] names more than one commit"),
    ],
)
def test_a_malformed_commit_line_is_refused(
    repository: Path, commits: list[str], line: str, expected: str
) -> None:
    write_changelog(repository, [("0.3.0", "PLACEHOLDER"), ("0.1.0", commits[0])])
    changelog = repository / "CHANGELOG.md"
    values = {"short": commits[2][:7], "full": commits[2]}
    text = changelog.read_text(encoding="utf-8")
    changelog.write_text(text.replace("Commit: PLACEHOLDER", line.format(**values)), "utf-8")
    commit_all(repository, "malformed")
    result = release(repository)
    assert result.returncode == 2
    assert expected.format(**values) in result.stderr
    assert tags(repository) == {}


def test_check_creates_nothing(repository: Path, released: Entries) -> None:
    (repository / "code.txt").write_text("work in progress\n", encoding="utf-8")
    result = release(repository, "--check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == lines(released, "missing")
    assert tags(repository) == {}


def test_a_dirty_tree_refuses_to_tag(repository: Path, released: Entries) -> None:
    (repository / "code.txt").write_text("work in progress\n", encoding="utf-8")
    result = release(repository)
    assert result.returncode == 2
    assert result.stderr.startswith("release: the working tree has uncommitted changes")
    assert tags(repository) == {}
    # Once every tag exists there is nothing to create, and a dirty tree is no obstacle.
    git(repository, "stash", "-q")
    assert release(repository).returncode == 0
    git(repository, "stash", "pop", "-q")
    result = release(repository)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == lines(released, "exists")


def test_this_repository_changelog_names_its_releases() -> None:
    """`scripts/release --check` on this checkout's own CHANGELOG.md, tags or not. While the
    top entry is being prepared it names no commit yet; the script reports that only after
    every other entry checked out, so that refusal is accepted here."""
    text = (TEMPLATE / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", text, re.MULTILINE)
    named = re.findall(r"^Commit: ([0-9a-f]{40})$", text, re.MULTILINE)
    assert versions and named
    for commit in named:
        present = subprocess.run(
            ["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=TEMPLATE, capture_output=True
        )
        if present.returncode:
            pytest.skip(f"this clone lacks {commit[:7]} (shallow, or not a git checkout)")
    top = text.split(f"## [{versions[0]}]", 1)[1].split("\n## ", 1)[0]
    result = subprocess.run(
        [str(SCRIPT), "--check"], cwd=TEMPLATE, capture_output=True, text=True, timeout=60
    )
    if "\nCommit: " not in top:
        assert result.returncode == 2
        assert result.stderr == NO_COMMIT.format(versions[0]) + "\n"
        return
    assert result.returncode == 0, result.stderr
    pattern = r"v(\d+\.\d+\.\d+) -> [0-9a-f]{7} \((exists|missing)\)"
    found = [re.fullmatch(pattern, line) for line in result.stdout.splitlines()]
    assert all(found), result.stdout
    assert [match[1] for match in found if match] == versions


def test_no_release_section_repeats_a_heading() -> None:
    """Keep a Changelog: one `### Added` (`### Changed`, ...) per release, every change of that
    kind under it; a second one is easily missed by a reader."""
    text = (TEMPLATE / "CHANGELOG.md").read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    assert sections
    for section in sections:
        headings = re.findall(r"^### (.+?)\s*$", section, re.MULTILINE)
        repeated = sorted({heading for heading in headings if headings.count(heading) > 1})
        assert repeated == [], f"[{section.split(']')[0].lstrip('[')}] repeats ### {repeated}"


def test_the_newest_release_builds_the_runtime_it_pins_into_dist(
    repository: Path, commits: list[str]
) -> None:
    """A release whose commit holds runtime/ (0.6.0 on): its wheel and sdist land in dist/,
    built from that commit, not from the working tree."""
    shutil.copytree(
        TEMPLATE / "runtime",
        repository / "runtime",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", ".mypy_cache", ".ruff_cache"),
    )
    (repository / ".gitignore").write_text("dist/\n.venv\n", encoding="utf-8")
    (repository / ".venv").symlink_to(TEMPLATE / ".venv")  # scripts/bootstrap's, with uv
    commit_all(repository, "the runtime")
    with_runtime = git(repository, "rev-parse", "HEAD").strip()
    write_changelog(repository, [("2.0.0", with_runtime), ("1.0.0", commits[0])])
    assert release(repository).returncode == 0  # tags v1.0.0 and v2.0.0
    (repository / "runtime" / "VERSION").write_text("9.9.9\n", encoding="utf-8")  # not built

    result = release(repository)

    assert result.returncode == 0, result.stderr
    version = (TEMPLATE / "runtime" / "VERSION").read_text(encoding="utf-8").strip()
    wheel = f"dist/parallel_workflow_runtime-{version}-py3-none-any.whl"
    sdist = f"dist/parallel_workflow_runtime-{version}.tar.gz"
    assert result.stdout.splitlines()[-2:] == [wheel, sdist]
    assert (repository / wheel).is_file() and (repository / sdist).is_file()
    assert tagged_commit(repository, "v2.0.0") == with_runtime


def test_the_github_workflows_pass_actionlint(default_project: tuple[Path, str]) -> None:
    """This repository's release workflow and the CI that every rendered project gets."""
    project, _ = default_project
    workflows = [
        *sorted((TEMPLATE / ".github" / "workflows").glob("*.yml")),
        project / ".github" / "workflows" / "ci.yml",
    ]
    assert len(workflows) >= 2
    for workflow in workflows:
        result = subprocess.run(
            [str(TEMPLATE / ".venv" / "bin" / "actionlint"), "-no-color", str(workflow)],
            cwd=workflow.parents[2],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def release_tag_check(tag: str, tagged: str) -> subprocess.CompletedProcess[str]:
    """The release workflow's own step that checks a pushed tag, run on this checkout's main
    as GitHub checks it out there."""
    workflow = yaml.safe_load(
        (TEMPLATE / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8")
    )
    (step,) = [
        step
        for step in workflow["jobs"]["build"]["steps"]
        if step.get("name") == "Check the tag against CHANGELOG.md"
    ]
    return subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=TEMPLATE,
        env=os.environ | {"TAG": tag, "TAGGED": tagged},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_release_workflow_publishes_only_the_commit_changelog_names() -> None:
    text = (TEMPLATE / "CHANGELOG.md").read_text(encoding="utf-8")
    version, commit = re.findall(r"^## \[(\d+\.\d+\.\d+)\] .*?^Commit: (\w+)$", text, re.M | re.S)[
        0
    ]
    other = git(TEMPLATE, "rev-parse", f"{commit}~1").strip()

    named = release_tag_check(f"v{version}", commit)
    elsewhere = release_tag_check(f"v{version}", other)
    unknown = release_tag_check("v99.0.0", commit)

    assert named.returncode == 0, named.stdout + named.stderr
    assert elsewhere.returncode == 1
    assert f"::error::v{version} is {other}, but CHANGELOG.md on main names {commit}" in (
        elsewhere.stdout
    )
    assert unknown.returncode == 1 and "names no commit for 99.0.0" in unknown.stdout


# What a project rendered from this template gets: its files, and the runtime it installs.
REACHES_USERS = (
    "copier.yml",
    "includes",
    "template",
    "runtime/src",
    "runtime/pyproject.toml",
    "runtime/VERSION",
    "runtime/README.md",
)


def newest_releases() -> list[tuple[str, str]]:
    """(version, commit) of each release CHANGELOG.md names, newest first."""
    text = (TEMPLATE / "CHANGELOG.md").read_text(encoding="utf-8")
    return re.findall(r"^## \[(\d+\.\d+\.\d+)\] .*?^Commit: (\w+)$", text, re.M | re.S)


def test_every_change_that_reaches_users_projects_is_released() -> None:
    """A change to what a rendered project gets is a release: the newest release CHANGELOG.md
    names holds exactly what this checkout has there (its working tree included), so that
    `copier update` brings every change to users (README.md, "Releasing")."""
    version, commit = newest_releases()[0]
    changed = git(TEMPLATE, "diff", "--stat", commit, "--", *REACHES_USERS).strip()
    assert changed == "", (
        f"changed since release {version} ({commit[:7]}), so no user gets it: release it"
        f" (README.md, Releasing)\n{changed}"
    )


def test_a_release_that_changes_the_runtime_gives_it_a_new_version() -> None:
    """Between two releases, a change to the runtime moves runtime/VERSION: a project's
    history of runtimes (and an index, for those who publish it) tells them apart."""
    releases = [
        (version, commit)
        for version, commit in newest_releases()
        if subprocess.run(
            ["git", "cat-file", "-e", f"{commit}:runtime/VERSION"],
            cwd=TEMPLATE,
            capture_output=True,
        ).returncode
        == 0
    ]
    assert releases, "no release holds runtime/"
    for (newer, newer_commit), (older, older_commit) in itertools.pairwise(releases):
        changed = git(TEMPLATE, "diff", "--stat", older_commit, newer_commit, "--", "runtime/src")
        versions = [
            git(TEMPLATE, "show", f"{commit}:runtime/VERSION").strip()
            for commit in (older_commit, newer_commit)
        ]
        if changed.strip():
            assert versions[0] != versions[1], f"{older} and {newer} ship runtime {versions[0]}"
