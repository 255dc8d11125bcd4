"""What the documentation tells users, checked against what really happens: the sample output
in README.md, the `bench` help, the Copier version to install, `copier update` on a project
with uncommitted changes, `copier copy --pretend`, the rendered CI's limits and a release
rendered from a clone of main."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import TEMPLATE, commit_all, copier, git, run_in, template_snapshot

ANSWERS_FILE = ".copier-answers.parallel-workflow.yml"
DIRTY = "Destination repository is dirty; cannot continue."


def flat(text: str) -> str:
    """Text with every run of whitespace as one space: help and README lines wrap anywhere."""
    return " ".join(text.split())


def shape(line: str) -> str:
    """A line of output without what differs from run to run: every number becomes N, a
    timeline bar (its length follows the timings) one #, and runs of spaces one space. The
    straggler too: the two connector sources of the default answers end within milliseconds of
    each other, in either order."""
    line = re.sub(r"\w[\w ]*\w \(`?\w+`?\) ended last", "SOURCE ended last", line.rstrip())
    line = re.sub(r"\d+(?:\.\d+)?", "N", line)
    line = re.sub(r"[#.x~]*#[#.x~]*", "#", line)
    return re.sub(r" {2,}", " ", line)


def test_the_readme_sample_output_is_what_the_demo_run_prints(
    default_project: tuple[Path, str],
) -> None:
    """README.md's block after "Its output": `scripts/demo`'s run, piped, 100 columns wide,
    stdout then the line on stderr. Timings may differ; the lines and their words may not."""
    readme = (TEMPLATE / "README.md").read_text(encoding="utf-8")
    introduction, after = readme.split("Its output", 1)
    said = flat(introduction[-300:])
    assert "`python -m parallel_workflow run`, with `--html run.html`" in said
    assert "`COLUMNS=100`" in flat(after.split("\n\n", 1)[0])
    documented = after.split("\n````\n", 2)[1].splitlines()

    project, _ = default_project
    ran = run_in(
        project, "-m", "parallel_workflow", "run", "--html", "run.html", env={"COLUMNS": "100"}
    )
    assert ran.returncode == 0, ran.stderr
    printed = (ran.stdout + ran.stderr).splitlines()

    def shapes(lines: list[str]) -> list[str]:
        # On a busy machine a source can start late even with free slots: the gantt then
        # draws that wait too, a line the idle run in the README does not have.
        return [shape(line) for line in lines if ", waiting for a slot :" not in line]

    assert shapes(documented) == shapes(printed)


def test_bench_help_says_the_sources_run_one_after_another_only_with_sequential(
    default_project: tuple[Path, str],
) -> None:
    project, _ = default_project
    overview = run_in(project, "-m", "parallel_workflow", "--help", timeout=120)
    assert overview.returncode == 0, overview.stderr
    bench_line = re.search(r"^ +bench +(.+(?:\n {20,}.+)*)", overview.stdout, re.MULTILINE)
    assert bench_line, overview.stdout
    assert "sequential" not in bench_line[1]
    helped = run_in(project, "-m", "parallel_workflow", "bench", "--help", timeout=120)
    assert helped.returncode == 0, helped.stderr
    assert (
        "The sequential time is the sum of the sources' own times as measured in the workflow's"
        " runs: the sources run one after another only with --sequential."
    ) in flat(helped.stdout)

    # And so it is: the sum is measured by running them one after another only when asked.
    for flags, measured in [((), False), (("--sequential",), True)]:
        bench = ("bench", "--sources=3", "--latency=0.1", "--repeat=1", "--json", *flags)
        result = run_in(project, "-m", "parallel_workflow", *bench, timeout=300)
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert (document["measured_sequential_seconds"] is not None) is measured
        assert document["sequential_seconds"] >= 0.3


def test_the_copier_to_install_is_the_minimum_copier_yml_requires() -> None:
    required = yaml.safe_load((TEMPLATE / "copier.yml").read_text(encoding="utf-8"))[
        "_min_copier_version"
    ]
    readme = (TEMPLATE / "README.md").read_text(encoding="utf-8")
    installs = re.findall(r'(pipx install|uv tool install) "copier>=([^"]+)"', readme)
    assert {tool for tool, _ in installs} == {"pipx install", "uv tool install"}
    assert {version for _, version in installs} == {required}
    assert f"It takes Copier {required} or newer" in flat(readme)


def update(project: Path) -> subprocess.CompletedProcess[str]:
    return copier("update", "--defaults", f"--answers-file={ANSWERS_FILE}", str(project))


def assert_said_before_the_update_command(readme: str, where: str) -> None:
    """The paragraph that names copier's refusal tells to commit first, and the next code
    block is the update command it is about."""
    paragraphs = readme.split("\n\n")
    index = next((i for i, part in enumerate(paragraphs) if DIRTY in flat(part)), None)
    assert index is not None, f"{where} does not quote {DIRTY!r}"
    assert flat(paragraphs[index]).startswith("Commit your work before `copier update`")
    following = "\n\n".join(paragraphs[index + 1 :])
    block = following.split("```bash\n", 1)[1].split("```", 1)[0]
    assert "copier update --answers-file" in block, f"{where}: {block}"
    assert "\n## " not in following.split("```bash\n", 1)[0]


def test_update_refuses_uncommitted_changes_as_both_readmes_say(tmp_path: Path) -> None:
    template = template_snapshot(tmp_path / "template")
    project = tmp_path / "project"
    result = copier("copy", "--defaults", "--vcs-ref=HEAD", str(template), str(project))
    assert result.returncode == 0, result.stderr
    commit_all(project, "rendered", init=True)
    clean = update(project)
    assert clean.returncode == 0, clean.stderr  # committed: the update runs

    readme = project / "README.md"
    committed = readme.read_text(encoding="utf-8")
    readme.write_text(committed + "\nMy notes.\n", encoding="utf-8")
    (project / "notes.txt").write_text("untracked\n", encoding="utf-8")
    for dirt in ["a changed file", "an untracked file"]:
        refused = update(project)
        assert refused.returncode != 0, dirt
        assert DIRTY in refused.stderr, refused.stderr
        if dirt == "a changed file":
            assert readme.read_text(encoding="utf-8") == committed + "\nMy notes.\n"
            readme.write_text(committed, encoding="utf-8")
    assert git(project, "status", "--porcelain") == "?? notes.txt\n"

    assert_said_before_the_update_command(committed, "the rendered README")
    top = (TEMPLATE / "README.md").read_text(encoding="utf-8")
    assert_said_before_the_update_command(top, "README.md")


def test_pretend_writes_nothing_and_says_so(
    tmp_path: Path, default_project: tuple[Path, str]
) -> None:
    destination = tmp_path / "project"
    result = copier(
        "copy", "--pretend", "--defaults", "--vcs-ref=HEAD", str(TEMPLATE), str(destination)
    )
    assert result.returncode == 0, result.stderr
    assert not destination.exists()
    output = flat(result.stdout + result.stderr)
    assert "Rendered" not in output
    assert "Nothing was written (--pretend)." in output
    # A real copy still says what it rendered, and what to run next.
    assert "Rendered the workflow" in default_project[1]
    assert "Nothing was written" not in default_project[1]


def test_every_ci_job_has_a_timeout(default_project: tuple[Path, str]) -> None:
    project, _ = default_project
    ci = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text("utf-8"))
    assert ci["jobs"]
    for name, job in ci["jobs"].items():
        minutes = job.get("timeout-minutes")
        assert isinstance(minutes, int) and 0 < minutes <= 60, f"job {name}: {minutes!r}"


def test_a_clone_of_main_renders_an_unreleased_version_until_scripts_release(
    tmp_path: Path,
) -> None:
    """README, "Versions and updates": a clone of main has no tags and copier renders HEAD;
    after scripts/release it renders the latest release."""
    text = (TEMPLATE / "CHANGELOG.md").read_text(encoding="utf-8")
    top = re.search(r"^## \[(\d+\.\d+\.\d+)\][^\n]*\n\nCommit: ([0-9a-f]{40})$", text, re.M)
    if top is None:
        pytest.skip("the top CHANGELOG entry names no commit yet (a release in preparation)")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", "--no-tags", str(TEMPLATE), str(clone))
    present = subprocess.run(
        ["git", "cat-file", "-e", f"{top[2]}^{{commit}}"], cwd=clone, capture_output=True
    )
    if present.returncode:
        pytest.skip(f"this clone lacks {top[2][:7]} (shallow, or not a git checkout)")
    head = git(clone, "rev-parse", "--short", "HEAD").strip()

    unreleased = copier("copy", "--defaults", str(clone), str(tmp_path / "unreleased"))
    assert unreleased.returncode == 0, unreleased.stderr
    assert "No git tags found in template; using HEAD as ref" in unreleased.stderr
    assert re.search(rf"template version 0\.0\.0\.post\d+\.dev0\+{head}\b", unreleased.stderr)
    answers = (tmp_path / "unreleased" / ANSWERS_FILE).read_text(encoding="utf-8")
    assert yaml.safe_load(answers)["_commit"] == head

    # With uv on the PATH, as after scripts/bootstrap: it builds the newest release's runtime.
    with_uv = os.environ | {"PATH": f"{TEMPLATE / '.venv' / 'bin'}:{os.environ['PATH']}"}
    released = subprocess.run(
        [str(clone / "scripts" / "release")],
        capture_output=True,
        text=True,
        timeout=300,
        env=with_uv,
    )
    assert released.returncode == 0, released.stderr
    assert f"v{top[1]} -> {top[2][:7]} (created)" in released.stdout.splitlines()
    result = copier("copy", "--defaults", str(clone), str(tmp_path / "released"))
    assert result.returncode == 0, result.stderr
    answers = (tmp_path / "released" / ANSWERS_FILE).read_text(encoding="utf-8")
    assert yaml.safe_load(answers)["_commit"] == f"v{top[1]}"


def test_the_readmes_copy_from_a_clone_gives_a_project_that_checks_and_takes_updates(
    published: str, tmp_path: Path
) -> None:
    """README, "Versions and updates": its commands as written (the repository's URL for
    `<repository>`), then, in the project, what Copier's messages say: commit, and later
    `copier check-update` and `copier update`, which must find the template again."""
    readme = (TEMPLATE / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Versions and updates\n", 1)[1].split("\n## ", 1)[0]
    block = next(
        part.split("```", 1)[0]
        for part in section.split("```bash\n")[1:]
        if "scripts/release" in part.split("```", 1)[0]
    )
    commands = [line.split("  #", 1)[0].strip() for line in block.strip().splitlines()]
    assert commands[0].startswith("git clone <repository> ") and "copier copy" in commands[-1]
    commands[0] = commands[0].replace("<repository>", published.removeprefix("git+"))
    environment = os.environ | {"PATH": f"{TEMPLATE / '.venv' / 'bin'}:{os.environ['PATH']}"}
    ran = subprocess.run(
        ["bash", "-e", "-c", " && ".join(commands)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    project = tmp_path / "my-project"
    commit_all(project, "rendered", init=True)

    answers = yaml.safe_load((project / ANSWERS_FILE).read_text(encoding="utf-8"))
    for command in (["check-update"], ["update", "--defaults"]):
        result = subprocess.run(
            [sys.executable, "-m", "copier", *command, "--answers-file", ANSWERS_FILE],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        if command == ["check-update"]:
            assert "up-to-date" in result.stdout + result.stderr
    after = yaml.safe_load((project / ANSWERS_FILE).read_text(encoding="utf-8"))
    assert after["_commit"] == answers["_commit"] and after["_src_path"] == str(
        tmp_path / "parallel-workflow"
    )


READMES = (
    TEMPLATE / "README.md",
    TEMPLATE / "runtime" / "README.md",
    TEMPLATE / "template" / "README.md.jinja",
)


def versions_a_readme_may_name() -> set[str]:
    """What a README may say by number: a release of the template or the runtime (history:
    "from 0.5.0 on"), the Copier it needs and the Agno it was measured with (both read from
    where they are declared)."""
    changelogs = (TEMPLATE / "CHANGELOG.md", TEMPLATE / "runtime" / "CHANGELOG.md")
    released = {
        version
        for changelog in changelogs
        for version in re.findall(r"^## \[(\d+\.\d+\.\d+)\]", changelog.read_text("utf-8"), re.M)
    }
    copier_yml = yaml.safe_load((TEMPLATE / "copier.yml").read_text(encoding="utf-8"))
    runtime = (TEMPLATE / "runtime" / "pyproject.toml").read_text(encoding="utf-8")
    (agno,) = re.findall(r'^    "agno>=([\d.]+),<[\d.]+",$', runtime, re.M)
    config = next((TEMPLATE / "template").rglob("config.yaml.jinja")).read_text("utf-8")
    (workflow_version,) = re.findall(r'^  version: "([\d.]+)"$', config, re.M)
    return released | {copier_yml["_min_copier_version"], agno, workflow_version}


def test_the_readmes_type_no_version_that_should_be_derived() -> None:
    """Versions in the READMEs are derived, not typed: no range (a project's comes from
    runtime/VERSION, and the top README named one the projects did not pin), the rendered
    README never spells out the runtime's version (Jinja reads it), and every other version
    named is one that exists."""
    allowed = versions_a_readme_may_name()
    current = (TEMPLATE / "runtime" / "VERSION").read_text(encoding="utf-8").strip()
    for readme in READMES:
        text = readme.read_text(encoding="utf-8")
        assert not re.search(r"~=\s*\d", text), f"{readme.name} types a version range"
        for found in re.finditer(r"(?<![\w.])(\d+\.\d+\.\d+)(?!\.?\w)", text):
            version, before = found[1], text[max(found.start() - 6, 0) : found.start()]
            if re.search(r"until\s$", before):
                continue  # an announced end: of 0.4.0's import paths, of 0.10.0's
            assert version in allowed, f"{readme.relative_to(TEMPLATE)} names {version}"
        if readme.suffix == ".jinja":
            assert current not in text, f"{readme.name} types the runtime's version {current}"


def commands_of(script: str) -> str:
    """A script of scripts/ without its comments: what it runs."""
    text = (TEMPLATE / "scripts" / script).read_text(encoding="utf-8")
    return "\n".join(
        line.split(" #")[0] for line in text.splitlines() if not line.lstrip().startswith("#")
    )


def test_the_demo_installs_only_what_a_user_needs() -> None:
    """README's first command, scripts/demo, and the bootstrap it runs install neither Arize
    Phoenix (653 MB of the 2.6 GB the demo took, for the tracing tests alone) nor wheels of
    ours: the project installs from the package index and the template's repository, as a
    user's does. scripts/test installs both, for the tests."""
    for script in ("demo", "bootstrap"):
        commands = commands_of(script).lower()
        for installed in ("phoenix", "wheelhouse", "find-links", "find_links"):
            assert installed not in commands, f"scripts/{script} runs {installed}"
    commands = commands_of("test")
    assert "arize-phoenix" in commands and "scripts/wheelhouse" in commands
