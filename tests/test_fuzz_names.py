"""Fuzz `source_names`: any list of display names is either refused up front or rendered into a
project that works and shows those names verbatim.

For each generated answer (hostile text: arbitrary unicode, control characters, Jinja, YAML and
Markdown syntax, very long names, near-duplicates...) the property checks that

- a refused answer raises copier's ValueError naming `source_names` and leaves nothing at the
  destination;
- an accepted answer renders Python that compiles, a config.yaml that holds the exact display
  names in order, and a workflow whose `run --json` reports each name verbatim as succeeded;
- the partition is right: the documented rules, re-implemented here in Python, predict which
  answers are refused and why, and which ids the accepted names get.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import keyword
import os
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple

import copier
import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st
from parallel_workflow_runtime._core import project as runtime_project

from helpers import TEMPLATE, entry_name

# Rendering from this checkout includes the other engineers' uncommitted edits on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Dirty template changes included automatically")

PACKAGE = "fuzzed_names"
WORKFLOW_ID = "fuzzed-names"
CONFIG = Path("src", PACKAGE, "workflows", WORKFLOW_ID.replace("-", "_"), "config.yaml")


class Answer(NamedTuple):
    source_count: int
    source_names: list[Any]


class Refusal(NamedTuple):
    rule: str  # a short label for Hypothesis's statistics
    message: str  # what copier's error message must contain


# ---------------------------------------------------------------------------------------------
# The rules, as the README and copier.yml state them, re-implemented here.

# Also U+FFFE and U+FFFF: not control characters, but YAML cannot hold them (found by this test).
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ufffe\uffff]")
MAX_NAME_LENGTH = 60


def source_id(name: str, index: int) -> str:
    """A display name's identifier, as includes/names.jinja derives it."""
    slug = re.sub("[^a-z0-9]+", "_", name.lower()).strip("_")
    if not slug:
        return f"source_{index + 1}"  # e.g. a name written only in a non-Latin script
    if slug[0].isdigit() or keyword.iskeyword(slug):
        return f"source_{slug}"
    return slug


SOURCE_KINDS = ("python", "sql", "http", "file")


def entry_kind(entry: Any) -> Any:
    """The kind of a source_names entry: a `Name: kind` mapping's value, else python."""
    return next(iter(entry.values())) if isinstance(entry, dict) else "python"


def expected_refusal(answer: Answer) -> Refusal | None:
    """Why `answer` must be refused, or None when it must be accepted. Like the validator, it
    reports the first problem in list order."""
    names = answer.source_names
    if len(names) != answer.source_count:
        count = answer.source_count
        return Refusal("count", f"source_names has {len(names)} names but source_count is {count}")
    first_with_id: dict[str, str] = {}
    for index, entry in enumerate(names):
        item = f"source_names item {index + 1}"
        if isinstance(entry, dict) and len(entry) != 1:
            return Refusal("not one name", f"{item} must be a name or one `Name: kind`")
        if isinstance(entry, dict) and entry_kind(entry) not in SOURCE_KINDS:
            return Refusal("unknown kind", f"{item}: kind must be one of python, sql, http, file")
        name = entry_name(entry)
        if not isinstance(name, str):
            return Refusal("not text", f"{item} must be text")
        if not name.strip():
            return Refusal("empty", f"{item} is empty")
        if CONTROL_CHARACTERS.search(name):
            return Refusal(
                "control character", f"{item} contains a line break or another control character"
            )
        if len(name) > MAX_NAME_LENGTH:
            return Refusal("too long", f"{item} is longer than {MAX_NAME_LENGTH} characters")
        identifier = source_id(name, index)
        if identifier in first_with_id:
            return Refusal(
                "same identifier",
                f"source_names '{first_with_id[identifier]}' and '{name}' "
                f"both become the identifier '{identifier}'",
            )
        first_with_id[identifier] = name
    return None


# ---------------------------------------------------------------------------------------------
# Strategies.

ANY_CHARACTER = st.characters(codec="utf-8")
PRINTABLE_CHARACTER = st.characters(
    codec="utf-8", exclude_categories=("Cc", "Zl", "Zp"), exclude_characters="\ufffe\uffff"
)

HOSTILE_PIECES = [
    # Jinja, in case a name is ever rendered as a template rather than passed as data.
    "{{ x }}",
    "{{ 7*7 }}",
    "{% if %}",
    "{% endraw %}",
    "{#",
    "#}",
    "${{ matrix.x }}",
    # YAML: names are written into config.yaml and the answers file.
    "key: value",
    "- item",
    "null",
    "~",
    "true",
    "&a",
    "*a",
    "!tag",
    "#",
    " # comment",
    "[",
    "]",
    "{",
    "}",
    "|",
    ">",
    "---",
    "'",
    '"',
    "\\",
    "\\n",
    "\\u0041",
    "%s",
    # Markdown and HTML: the README and the report show names.
    "**bold**",
    "`code`",
    "<b>html</b>",
    "[link](x)",
    "_",
    "\u200b",  # zero-width space: not whitespace, so the name is not empty
    "\ufeff",
    "\xa0",  # whitespace for str.strip()
    # Scripts and letters whose lowercase differs in length or leaves ASCII.
    "日本語",
    "Ελληνικά",
    "العربية",
    "İ",
    "\u212a",  # KELVIN SIGN, lowercases to an ASCII "k"
    "ß",
    "📊",
    "👩‍💻",
]
# Refused wherever they are in a name.
LINE_BREAKS_AND_CONTROLS = [
    "\n",
    "\r\n",
    "\t",
    "\x00",
    "\x1b[31m",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
]
EMOJI_AND_SCRIPTS = st.lists(
    st.sampled_from(["日", "本", "語", "Ж", "ж", "λ", "ع", "א", "한", "📊", "🚀", "👩‍💻", " "]),
    min_size=1,
    max_size=8,
).map("".join)
PLAIN_NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9 ]{0,19}", fullmatch=True)


@st.composite
def hostile_names(draw: st.DrawFn) -> str:
    """A few hostile pieces, plain words and bits of arbitrary text, run together."""
    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(HOSTILE_PIECES),
                PLAIN_NAMES,
                st.text(PRINTABLE_CHARACTER, max_size=3),
            ),
            min_size=1,
            max_size=4,
        )
    )
    return draw(st.sampled_from(["", " "])).join(parts)


@st.composite
def broken_names(draw: st.DrawFn) -> str:
    """A name with a line break or another control character somewhere in it."""
    name = draw(hostile_names())
    position = draw(st.integers(0, len(name)))
    return name[:position] + draw(st.sampled_from(LINE_BREAKS_AND_CONTROLS)) + name[position:]


@st.composite
def padded_names(draw: st.DrawFn) -> str:
    """Leading and trailing spaces are part of the display name and must survive."""
    return draw(st.sampled_from([" ", "  ", "\u3000"])) + draw(PLAIN_NAMES) + "  "


@st.composite
def kinded_names(draw: st.DrawFn) -> dict[Any, str]:
    name = draw(st.one_of(PLAIN_NAMES, hostile_names(), padded_names()))
    kind = draw(st.sampled_from(["sql", "file", "python", "sql", "file", "ftp"]))
    return {name: kind}


def source_names() -> st.SearchStrategy[Any]:
    """One item of the list: mostly text likely to be accepted, often text that is not."""
    weighted: list[tuple[int, st.SearchStrategy[Any]]] = [
        (10, PLAIN_NAMES),
        (10, hostile_names()),
        (2, broken_names()),
        (2, st.text(ANY_CHARACTER, max_size=12)),  # control characters, blanks, anything
        (4, st.text(PRINTABLE_CHARACTER, min_size=1, max_size=12)),
        (3, st.text(PRINTABLE_CHARACTER, min_size=56, max_size=66)),  # around the limit of 60
        (4, padded_names()),
        (4, EMOJI_AND_SCRIPTS),  # often no ASCII letter at all: the id becomes source_<n>
        (1, st.one_of(st.integers(), st.none(), st.booleans())),  # what YAML makes of bare words
        # `Name: kind`: a connector reading the sample data offline (an http source would
        # need a token and the network), now and then a kind that does not exist.
        (4, kinded_names()),
    ]
    # st.one_of has no weights: pick a strategy from a list holding each one `weight` times.
    choices = [strategy for weight, strategy in weighted for _ in range(weight)]
    return st.sampled_from(choices).flatmap(lambda strategy: strategy)


# Edits that keep a name's identifier in most cases, so the edited copy is a near-duplicate.
NEAR_DUPLICATE_EDITS = {
    "upper": str.upper,
    "swapcase": str.swapcase,
    "title": str.title,
    "dashes": lambda name: name.replace(" ", "-"),
    "double spaces": lambda name: name.replace(" ", "  "),
    "punctuated": lambda name: f"{name}!",
    "underscored": lambda name: f"__{name}__",
    "spaced": lambda name: f" {name} ",
}


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    """1 to 5 names, sometimes with a near-duplicate, mostly with a matching source_count."""
    # Unique: Hypothesis likes to repeat values, which would make most lists exact duplicates.
    names = draw(st.lists(source_names(), min_size=1, max_size=5, unique_by=repr))
    texts = [index for index, name in enumerate(names) if isinstance(name, str)]
    if texts and draw(st.sampled_from([True, False, False])):
        original = names[draw(st.sampled_from(texts))]
        edit = draw(st.sampled_from(sorted(NEAR_DUPLICATE_EDITS)))
        note(f"near-duplicate: {edit}")
        position = draw(st.integers(0, len(names)))
        near_duplicate = NEAR_DUPLICATE_EDITS[edit](original)
        if len(names) < 5:
            names.insert(position, near_duplicate)
        else:
            names[min(position, 4)] = near_duplicate
    count = len(names)
    if draw(st.sampled_from([False] * 19 + [True])):
        count = max(1, count + draw(st.sampled_from([-1, 1])))
    return Answer(count, names)


# ---------------------------------------------------------------------------------------------
# Checks.


def render(answer: Answer, destination: Path) -> ValueError | None:
    """Render the template with `answer`; the ValueError copier raised when it refused it."""
    try:
        copier.run_copy(
            str(TEMPLATE),
            destination,
            defaults=True,
            vcs_ref="HEAD",
            quiet=True,
            data={
                "package_name": PACKAGE,
                "workflow_id": WORKFLOW_ID,
                "source_count": answer.source_count,
                "source_names": answer.source_names,
            },
        )
    except ValueError as error:
        return error
    return None


def check_refused(refusal: ValueError, destination: Path) -> None:
    assert "Validation error for question 'source_names'" in str(refusal), refusal
    leftovers = list(destination.iterdir()) if destination.exists() else []
    assert leftovers == [], f"a refused answer left files on disk: {leftovers}"


def check_rendered(answer: Answer, project: Path) -> None:
    """The project compiles, its config holds the names and its workflow reports them."""
    for module in sorted(project.rglob("*.py")):
        compile(module.read_text(encoding="utf-8"), str(module), "exec", dont_inherit=True)

    config = yaml.safe_load((project / CONFIG).read_text(encoding="utf-8"))
    names = [entry_name(entry) for entry in answer.source_names]
    assert [source["name"] for source in config["sources"]] == names
    kinds = [source.get("kind", "python") for source in config["sources"]]
    assert kinds == [entry_kind(entry) for entry in answer.source_names]

    exit_code, output = run_json_in_this_process(project)
    assert exit_code == 0, output[-2000:]
    reported = json.loads(output)["sources"]
    assert [source["name"] for source in reported] == names
    assert all(source["ok"] for source in reported), reported


def run_json_in_this_process(project: Path) -> tuple[int, str]:
    """`run --json` of the project's own command line, imported from its src/ in this process
    (Agno is imported already: a subprocess for each example would spend ~1.5 s of CPU on
    imports). Every rendering has the same package name, so its modules are forgotten after."""
    sys.path.insert(0, str(project / "src"))
    os.environ[f"{PACKAGE.upper()}_HISTORY_DB"] = str(project / ".data" / "history.sqlite")
    # One project per process: the runtime's tests may have registered theirs in this one.
    registered_before = runtime_project._registered
    runtime_project._registered = None
    try:
        registered = importlib.import_module(PACKAGE).project
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            exit_code = registered.main(["run", "--json"])
        return exit_code, output.getvalue()
    finally:
        sys.path.remove(str(project / "src"))
        del os.environ[f"{PACKAGE.upper()}_HISTORY_DB"]
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]
        runtime_project._registered = registered_before


def check_refused_or_rendered(answer: Answer, destination: Path) -> ValueError | None:
    """The property without the model: refused cleanly, or rendered into a working project."""
    refusal = render(answer, destination)
    if refusal is not None:
        check_refused(refusal, destination)
    else:
        check_rendered(answer, destination)
    return refusal


# ---------------------------------------------------------------------------------------------
# Tests.


@settings(
    max_examples=25,
    deadline=None,  # a rendering plus a run per accepted example: seconds, not ms
    derandomize=True,  # the same examples on every run and in CI
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@example(answer=Answer(2, ["API Logs", "api-logs!"]))
@example(answer=Answer(2, ['{{ 7*7 }} "quoted" C:\\path\\', "{% if %}{# x"]))
@example(answer=Answer(2, ["Orders", "x" * 61]))
@example(answer=Answer(3, [{"User Database": "sql"}, {"API Logs": "file"}, "Analytics Data"]))
@example(answer=Answer(2, [{"{{ 7*7 }}: x": "sql"}, {"Orders": "ftp"}]))
# The workflow's own step names as display names: their ids are lowercase, so no source's step
# can take a step's name (config.yaml refuses such an id when it is written by hand).
@example(answer=Answer(4, ["Preparation", "ParallelProcessing", "Aggregation", "Report"]))
@given(answer=answers())
def test_names_are_refused_or_shown_verbatim(
    answer: Answer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    note(f"answer: {answer!r}")
    expected = expected_refusal(answer)
    event(f"refused: {expected.rule}" if expected else "accepted")
    destination = tmp_path_factory.mktemp("fuzz") / "project"

    refusal = check_refused_or_rendered(answer, destination)

    if expected is None:
        assert refusal is None, f"refused although every rule holds: {refusal}"
        config = yaml.safe_load((destination / CONFIG).read_text(encoding="utf-8"))
        names = [entry_name(entry) for entry in answer.source_names]
        ids = [source_id(name, index) for index, name in enumerate(names)]
        assert [source["id"] for source in config["sources"]] == ids
    else:
        assert refusal is not None, f"accepted although it breaks a rule: {expected}"
        assert expected.message in str(refusal)


def test_the_model_agrees_with_the_documented_examples() -> None:
    """The rules re-implemented above give the ids and refusals that copier.yml documents."""
    assert source_id("API Logs", 0) == source_id("api-logs!", 5) == "api_logs"
    assert source_id("日本語データ", 3) == "source_4"
    assert source_id("2024 Sales", 0) == "source_2024_sales"
    assert source_id("class", 0) == "source_class"
    assert expected_refusal(Answer(3, ["API Logs", "Orders", "api-logs!"])) == Refusal(
        "same identifier",
        "source_names 'API Logs' and 'api-logs!' both become the identifier 'api_logs'",
    )
    assert expected_refusal(Answer(2, ["日本", "Source 1"])) == Refusal(
        "same identifier",
        "source_names '日本' and 'Source 1' both become the identifier 'source_1'",
    )
    assert expected_refusal(Answer(1, ["x" * 60])) is None
    assert expected_refusal(Answer(1, ["two\u2028lines"])) is not None
    assert expected_refusal(Answer(1, [{"Orders": "sql", "Refunds": "file"}])) == Refusal(
        "not one name", "source_names item 1 must be a name or one `Name: kind`"
    )


def test_yaml_noncharacters_are_refused(tmp_path: Path) -> None:
    # Found by the fuzzing: PyYAML cannot read U+FFFE, so copier failed without naming a question.
    check_refused_or_rendered(Answer(2, ["Orders", "Inv\ufffeoices"]), tmp_path / "project")
