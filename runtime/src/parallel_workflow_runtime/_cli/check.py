"""`check`: whether the project is ready to run, in one table, without running it.

It loads settings.yaml and every workflow (config.yaml, then workflow.py with its sources'
modules and its report model), lists every environment variable the configuration names,
set or unset (never its value, and whether the project's .env set it), and tries what each
connector source reads (probe.probe: connect and read a first page or list the files)
under a timeout. Each finding is one row; any problem makes the exit code 1.

A source that reads its bundled sample because its variable is unset (a fresh render: sql's
`sqlite_file`, http's `sample_file`) is not a problem: its row says it reads the sample.

Here: the project-level checks (settings.yaml, the workflows, the history, the variables);
check_sources.py holds the sources' rows, check_findings.py the rows and their table.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from parallel_workflow_runtime._cli.check_findings import PROBLEM, Finding
from parallel_workflow_runtime._cli.check_sources import (
    BLOCKS,
    module_problems,
    sample_of,
    source_findings,
    within,
)
from parallel_workflow_runtime._core.config import Source, WorkflowConfig, load_config
from parallel_workflow_runtime._core.masking import masked_text
from parallel_workflow_runtime._core.project import current, from_env_file
from parallel_workflow_runtime._core.registry import WorkflowEntry
from parallel_workflow_runtime._core.results import one_line
from parallel_workflow_runtime._core.settings import (
    DASK_ADDRESS_ENV,
    DATABASE_URL_ENV,
    Settings,
    history_db_env,
    load_settings,
    report_model_env,
)
from parallel_workflow_runtime._core.usage import USAGE_ERRORS, UsageError

if TYPE_CHECKING:
    from parallel_workflow_runtime._store.history import HistoryLocation

# The API key variable of each report model provider that Agno's own model classes read
# (agno/models/<provider>: getenv("...")); a provider not listed here gets no row.
PROVIDER_API_KEYS = {
    "openai": "OPENAI_API_KEY",
    "openai-chat": "OPENAI_API_KEY",
    "openai-responses": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "google": "GOOGLE_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "xai": "XAI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "together": "TOGETHER_API_KEY",
    "fireworks": "FIREWORKS_API_KEY",
    "cohere": "CO_API_KEY",
    "perplexity": "PERPLEXITY_API_KEY",
    "cerebras": "CEREBRAS_API_KEY",
    "azure-openai": "AZURE_OPENAI_API_KEY",
}


@dataclass
class Variable:
    """An environment variable the configuration names: what for, and whether its being
    unset is a problem (a secret a source cannot do without) or not (an override)."""

    name: str
    uses: list[str] = field(default_factory=list)
    needed: bool = False

    def finding(self, from_env_file: Iterable[str]) -> Finding:
        is_set = bool(os.environ.get(self.name, "").strip())
        if is_set:
            status = "set (.env)" if self.name in from_env_file else "set"
        else:
            status = PROBLEM if self.needed else "unset"
        uses = "; ".join(dict.fromkeys(self.uses))
        return Finding(
            "variable", self.name, status, f"unset: {uses}" if status == PROBLEM else uses
        )


@dataclass
class Variables:
    """The variables found so far, each once, in the order they were first named."""

    by_name: dict[str, Variable] = field(default_factory=dict)

    def add(self, name: str, use: str, needed: bool = False) -> None:
        variable = self.by_name.setdefault(name, Variable(name))
        variable.uses.append(use)
        variable.needed = variable.needed or needed

    def findings(self) -> list[Finding]:
        loaded = from_env_file()
        return [variable.finding(loaded) for variable in self.by_name.values()]


def check_project(workflow_id: str | None, timeout: float) -> list[Finding]:
    """Every finding about the project, or about one workflow of it (and what all share)."""
    variables = Variables()
    findings: list[Finding] = []
    settings = checked_settings(findings)
    configs = loaded_configs(findings)
    if workflow_id is not None:
        if workflow_id not in configs:
            known = ", ".join(configs) or "none"
            raise UsageError(f"unknown workflow id {workflow_id!r}; known: {known}")
        configs = {workflow_id: configs[workflow_id]}
    if settings is not None:
        findings.append(default_workflow_finding(settings, configs, workflow_id))
        findings.append(history_finding(settings, timeout))
        add_project_variables(variables, settings, configs)
    # The sources' modules first, each under the timeout: building a workflow imports them, and
    # one whose code blocks when imported would hold the build, and check, for ever.
    modules = module_problems(configs, timeout)
    for config in configs.values():
        blocked = [
            problem
            for (workflow, _), problem in modules.items()
            if workflow == config.workflow_id and problem and problem.endswith(BLOCKS)
        ]
        findings.extend(workflow_findings(config, settings, timeout, blocked))
        for source in config.sources:
            add_source_variables(variables, config, source)
    findings.extend(source_findings(configs, modules, timeout))
    findings.extend(variables.findings())
    return findings


def checked_settings(findings: list[Finding]) -> Settings | None:
    """settings.yaml (and the variables that override it), or None with its problem."""
    path = current().settings_path
    try:
        settings = load_settings()
    except USAGE_ERRORS as error:
        findings.append(Finding("settings", path.name, PROBLEM, str(error)))
        return None
    findings.append(Finding("settings", path.name, "ok", str(path)))
    return settings


def loaded_configs(findings: list[Finding]) -> dict[str, WorkflowConfig]:
    """Every workflow's config.yaml that loads, by workflow id; a problem for each that
    does not, and for a workflow id two folders use (registry.discover refuses both)."""
    configs: dict[str, WorkflowConfig] = {}
    paths = sorted(current().workflows_dir.glob("*/config.yaml"))
    if not paths:
        detail = f"no folder of {current().workflows_dir} has a config.yaml"
        findings.append(Finding("workflow", "-", PROBLEM, detail))
    for path in paths:
        folder = path.parent.name
        try:
            config = load_config(path)
        except USAGE_ERRORS as error:
            findings.append(Finding("workflow", folder, PROBLEM, str(error)))
            continue
        other = configs.get(config.workflow_id)
        if other is not None:
            detail = f"workflows/{other.path.parent.name} and workflows/{folder} both use this id"
            findings.append(Finding("workflow", config.workflow_id, PROBLEM, detail))
            continue
        configs[config.workflow_id] = config
    return configs


def default_workflow_finding(
    settings: Settings, configs: dict[str, WorkflowConfig], workflow_id: str | None
) -> Finding:
    """What `run` runs without --workflow."""
    default = settings.default_workflow
    if default is None:
        if len(configs) == 1 or workflow_id is not None:
            return Finding("settings", "default_workflow", "ok", "the only workflow")
        return Finding("settings", "default_workflow", "unset", "run and bench need --workflow")
    if workflow_id is None and default not in configs:
        known = ", ".join(configs) or "none"
        detail = f"{default!r} is not a workflow of this project; known: {known}"
        return Finding("settings", "default_workflow", PROBLEM, detail)
    return Finding("settings", "default_workflow", "ok", default)


def history_finding(settings: Settings, timeout: float) -> Finding:
    """Whether the history can be used: its SQLite file, or a connection to PostgreSQL."""
    from parallel_workflow_runtime._store.history import history_location

    try:
        location = history_location(settings)
    except USAGE_ERRORS as error:
        return Finding("history", DATABASE_URL_ENV, PROBLEM, str(error))
    try:
        detail = reached_history(location, timeout)
    except Exception as error:  # whatever stops it is the finding
        return Finding("history", str(location), PROBLEM, masked_text(one_line(error)))
    return Finding("history", str(location), "ok", detail)


def reached_history(location: HistoryLocation, timeout: float) -> str:
    """One line on the history, which is read, never written (no table is created here)."""
    from parallel_workflow_runtime._store.history import check_sqlite_file

    if location.sqlite_file is not None:
        if not location.sqlite_file.exists():
            return "SQLite; created by the first run"
        check_sqlite_file(location.sqlite_file)
        return "SQLite"
    assert location.database_url is not None
    from sqlalchemy import create_engine, text

    engine = create_engine(
        location.database_url, connect_args={"connect_timeout": max(1, math.ceil(timeout))}
    )
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    return "PostgreSQL; connected"


def add_project_variables(
    variables: Variables, settings: Settings, configs: dict[str, WorkflowConfig]
) -> None:
    """The variables of settings.yaml's sections and of the workflows as a whole."""
    variables.add(DATABASE_URL_ENV, "the history in PostgreSQL instead of SQLite")
    variables.add(history_db_env(), "the SQLite history's path instead of settings.yaml's")
    variables.add(report_model_env(), "every workflow's report model (empty: the offline one)")
    for config in configs.values():
        model = report_model_of(config, settings)
        provider = model.split(":", 1)[0]
        if model and provider in PROVIDER_API_KEYS:
            use = f"{config.workflow_id}: the report model {model}"
            variables.add(PROVIDER_API_KEYS[provider], use, needed=True)
        if any(source.executor == "dask" for source in config.sources):
            where = f" (settings.yaml: {settings.dask_address})" if settings.dask_address else ""
            use = f"{config.workflow_id}: the Dask scheduler of executor: dask{where}"
            variables.add(DASK_ADDRESS_ENV, use)
    if settings.tracing:
        use = "where the traces go besides the history (tracing: true)"
        variables.add("OTEL_EXPORTER_OTLP_ENDPOINT", use)


def report_model_of(config: WorkflowConfig, settings: Settings) -> str:
    """The workflow's report model after the environment's override (steps.py's rule)."""
    override = settings.report_model
    return (config.report_model if override is None else override).strip()


def add_source_variables(variables: Variables, config: WorkflowConfig, source: Source) -> None:
    """A connector source's variables: needed, unless the source reads its sample without
    them (what each is for says so)."""
    from parallel_workflow_runtime._connectors.connectors import environment_variables

    for name, what in environment_variables(source):
        use = f"{config.workflow_id}/{source.id}: {what}"
        variables.add(name, use, needed=sample_of(source) is None)


def workflow_findings(
    config: WorkflowConfig, settings: Settings | None, timeout: float, blocked: list[str]
) -> list[Finding]:
    """The workflow built as `run` builds it, within `timeout`: its workflow.py and its report
    model (the provider's SDK); the sources' modules are source_findings'. Not with a broken
    settings.yaml, which building reads (its row is the problem), nor beside a source module
    that blocks when imported (building would wait for it)."""
    if settings is None:
        detail = "not built: settings.yaml has a problem"
        return [Finding("workflow", config.workflow_id, "not built", detail)]
    if blocked:
        return [Finding("workflow", config.workflow_id, "not built", blocked[0])]
    entry = WorkflowEntry(folder=config.path.parent.name, config=config)
    try:
        built = within(timeout, lambda: entry.factory(config=config))
    except Exception as error:  # a user's module may raise anything
        detail = str(error) if isinstance(error, USAGE_ERRORS) else one_line(error)
        return [Finding("workflow", config.workflow_id, PROBLEM, detail)]
    if built is None:
        detail = f"workflow.py is still building after {timeout:g} s{BLOCKS}"
        return [Finding("workflow", config.workflow_id, PROBLEM, detail)]
    sources = len(config.sources)
    model = report_model_of(config, settings) or "none: the offline report"
    return [
        Finding("workflow", config.workflow_id, "ok", f"{config.name}: {sources} sources"),
        Finding("report model", config.workflow_id, "ok", model),
    ]
