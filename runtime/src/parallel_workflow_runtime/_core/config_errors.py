"""What is wrong with a config.yaml or settings.yaml, as one sentence: pydantic's first
validation error, told with the rule of the field it concerns (its `description`)."""

from __future__ import annotations

from typing import get_args

from pydantic import BaseModel, ValidationError

from parallel_workflow_runtime._core.connector_config import (
    Auth,
    Paginator,
    Problem,
)
from parallel_workflow_runtime._core.masking import masked_text

# The names of the workflow's own steps (steps.py builds them): a source's step may not take one.


# The fields whose value is one of several models told apart by `type`, and those types.
TAGGED_UNIONS = ("auth", "paginator")
UNION_TAGS = frozenset(
    model.model_fields["type"].annotation.__args__[0]
    for union in (Auth, Paginator)
    for model in get_args(get_args(union)[0])
)
# What dlt calls a secret's setting; config.yaml names its environment variable instead.
SECRET_KEYS = ("token", "api_key", "password", "url")


def describe(error: ValidationError, model: type[BaseModel]) -> str:
    """The first problem pydantic found in data for `model`, as one sentence:
    `<where> must be <rule>, got ...`, the rule being the `description` of the field."""
    errors = error.errors()
    # A key that is not known says more than the key its author meant, missing beside it.
    problem = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    # A tagged union (an http block's `auth`, `paginator`) puts its tag in the location.
    loc = [
        part
        for index, part in enumerate(problem["loc"])
        if not (index and problem["loc"][index - 1] in TAGGED_UNIONS and part in UNION_TAGS)
    ]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(
        "."
    )
    key = next((part for part in reversed(loc) if isinstance(part, str)), "")
    if problem["type"] == "missing":
        return f"{where} is missing"
    if problem["type"] == "extra_forbidden" and key in SECRET_KEYS:
        return (
            f"{where} is not a known setting: a secret is never written in config.yaml; "
            f"put it in an environment variable and name it in {key}_env"
        )
    if problem["type"] == "extra_forbidden":
        return f"{where} is not a known setting"
    if key.endswith("_env"):  # never repeat what was given: it may be the secret itself
        return (
            f"{where} must be the name of an environment variable (letters, digits and _), "
            "not its value: put the value in that variable"
        )
    if problem["type"] == "model_type" or problem["type"] == "dict_type":
        return f"{where or 'the file'} must be a mapping"
    if problem["type"] == "union_tag_invalid":
        tags = problem["ctx"]["expected_tags"]
        return f"{where}.type must be one of {tags}, got {problem['ctx']['tag']!r}"
    if problem["type"] == "union_tag_not_found":
        return f"{where}.type is missing"
    if problem["type"] == "value_error" and isinstance(problem["ctx"]["error"], Problem):
        return f"{where}{problem['ctx']['error']}"
    if problem["type"] == "value_error":
        rule = str(problem["ctx"]["error"])
    else:
        rule = rules(model).get(key) or problem["msg"].removeprefix("Input should be ")
    # A URL given where it does not belong is shown without its password.
    return f"{where} must be {rule}, got {masked_text(repr(problem['input']))}"


def rules(model: type[BaseModel]) -> dict[str, str | None]:
    """The `description` of every field of `model` and of the models it holds, by name."""
    found: dict[str, str | None] = {}
    for name, info in model.model_fields.items():
        found[name] = info.description
        for inner in (info.annotation, *get_args(info.annotation)):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                found |= {key: rule for key, rule in rules(inner).items() if rule}
    return found
