"""Project-wide settings: `workflows/settings.yaml`, which environment variables override.

The variables are named after the package, so that two projects on one machine do not read
each other's: for the package `parallel_workflow`, `PARALLEL_WORKFLOW_REPORT_MODEL` and
`PARALLEL_WORKFLOW_HISTORY_DB`; `DATABASE_URL` and `DASK_SCHEDULER_ADDRESS` keep their usual
names.

Where the SQLite history goes: the variable's path; else settings.yaml's `sqlite_file`, which
starts at the project's folder (found from its package, project.py: wherever the command runs,
it is the same history) and, for a project installed into site-packages, which has no folder,
is the file of that name in the user's data folder: a command run from wherever it happens to
be writes nothing there.
"""

from __future__ import annotations

import re
from pathlib import Path

from platformdirs import user_data_path
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from parallel_workflow_runtime._core.config import Text, read_yaml
from parallel_workflow_runtime._core.config_errors import describe
from parallel_workflow_runtime._core.project import current
from parallel_workflow_runtime._core.usage import ConfigError

# The project's own variables, after its package's name: <PACKAGE>_REPORT_MODEL, ...
REPORT_MODEL_VARIABLE = "REPORT_MODEL"
HISTORY_DB_VARIABLE = "HISTORY_DB"
DATABASE_URL_ENV = "DATABASE_URL"
DASK_ADDRESS_ENV = "DASK_SCHEDULER_ADDRESS"  # the variable Dask itself reads


def report_model_env() -> str:
    """The variable that sets every workflow's report model, e.g. PARALLEL_WORKFLOW_REPORT_MODEL."""
    return current().env_prefix + REPORT_MODEL_VARIABLE


def history_db_env() -> str:
    """The variable that sets the SQLite history's path, e.g. PARALLEL_WORKFLOW_HISTORY_DB."""
    return current().env_prefix + HISTORY_DB_VARIABLE


class HistorySettings(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    # Relative: to the project's folder, or its file name in the user's data folder for an
    # installed project (see sqlite_file below).
    sqlite_file: Text = ".data/history.sqlite"


class ServeSettings(BaseModel):
    """Who may call `serve` besides this machine (see serve.py), and how long and how many
    connections it holds (see http_limits.py)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    # Host names (no port) that clients address the server by, besides the address it listens
    # on and the loopback names; `*.example.com` matches every subdomain.
    allowed_hosts: list[Text] = []
    # Browser origins, e.g. `https://dashboard.example.com`, allowed to call the API; CORS
    # stays off while this is empty.
    cors_origins: list[Text] = []
    # Seconds a client has to send a request's line and headers, and then its body; past
    # them its connection is closed.
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    # Connections held at once, fewer if the open-file limit allows fewer; past it, the one
    # that has waited longest for a request is closed.
    max_connections: int = Field(default=1000, ge=1, le=100_000)


class SchedulerSettings(BaseModel):
    """How `serve` runs the schedules of config.yaml (scheduler.py)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    # How often a replica looks for due ticks; a schedule may not fire more often.
    poll_seconds: float = Field(default=5.0, ge=0.1, le=3600)
    # A tick whose replica has not polled for this long (it was killed) is failed, and no
    # longer holds its schedule (overlap).
    stale_seconds: float = Field(default=30.0, ge=1, le=86_400)


class Settings(BaseSettings):
    """Every setting of the project, from the environment first, then settings.yaml."""

    # extra="forbid": a misspelt key in settings.yaml is an error (the environment is read
    # for the declared settings only). The prefix is the project's, given by load_settings.
    model_config = SettingsConfigDict(extra="forbid")

    history: HistorySettings = HistorySettings()
    # The workflow that `run` and `bench` run without --workflow when the project has several
    # (registry.default_entry); the template renders the first workflow's id.
    default_workflow: str | None = Field(
        default=None, pattern=r"\S", description="a workflow id (config.yaml's), or null"
    )
    serve: ServeSettings = ServeSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    # history_db_env(): the SQLite history's path instead of settings.yaml's.
    history_db: str = ""
    # report_model_env(): every workflow's report model; "" forces the offline report.
    report_model: str | None = None
    # Each source attempt an OpenTelemetry span, kept in the history and sent to
    # OTEL_EXPORTER_OTLP_ENDPOINT when that is set (tracing.py); <PREFIX>TRACING, `--trace`.
    tracing: bool = False
    # DATABASE_URL_ENV: a PostgreSQL history instead of the SQLite file.
    database_url: str = Field(default="", validation_alias=DATABASE_URL_ENV)
    # The Dask scheduler of `executor: dask`, e.g. tcp://10.0.0.5:8786; DASK_ADDRESS_ENV wins.
    # Empty: each run (each `serve`) starts a LocalCluster of its own and closes it after.
    dask_address: str = Field(
        default="", validation_alias=AliasChoices(DASK_ADDRESS_ENV, "dask_address")
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        settings_path = current().settings_path
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls, settings_path))


def load_settings() -> Settings:
    """The settings as they are now; ConfigError names a broken settings.yaml in one line."""
    project = current()
    read_yaml(project.settings_path)  # a missing or unparsable file: ConfigError with its line
    try:
        # pydantic-settings takes the prefix per instance; its __init__ signature hides it.
        return Settings(_env_prefix=project.env_prefix)  # type: ignore[call-arg]
    except ValidationError as error:
        raise ConfigError(f"{project.settings_path}: {describe(error, Settings)}") from None
    except ValueError as error:
        # pydantic-settings' SettingsError (a ValueError; its module moved between versions):
        # a section's variable (e.g. <PREFIX>HISTORY for `history:`) that is not a JSON
        # object, of which it names only the field, in a traceback.
        raise ConfigError(unparsable_variable(error, project.env_prefix)) from None


def unparsable_variable(error: ValueError, env_prefix: str) -> str:
    """One line naming the variable pydantic-settings could not parse, and what it takes."""
    field = re.search(r'field "(\w+)"', str(error))
    if field is None:
        return f"the environment's settings: {error}"
    name = field.group(1)
    return (
        f"{env_prefix}{name.upper()}: not a JSON object; this variable replaces settings.yaml's "
        f'`{name}:` section, e.g. \'{{"key": "value"}}\''
    )


def sqlite_file(settings: Settings) -> Path:
    """The SQLite history: history_db_env()'s path as it is, else settings.yaml's `sqlite_file`:
    an absolute path as it is, a relative one from the project's folder (Project.root, found
    from where its package is, not from the current folder), and for a project installed into
    site-packages, which has no folder, the file of that name in the user's data folder
    (platformdirs: ~/.local/share/<distribution>/ on Linux, ~/Library/Application
    Support/<distribution>/ on macOS)."""
    if settings.history_db.strip():
        return Path(settings.history_db.strip())
    configured = Path(settings.history.sqlite_file)
    if configured.is_absolute():
        return configured
    root = current().root
    return root / configured if root is not None else user_data_folder() / configured.name


def user_data_folder() -> Path:
    """The project's folder in the user's data folder, named after its distribution."""
    return user_data_path(current().distribution)


def history_elsewhere(settings: Settings) -> str | None:
    """A line saying where the history is when settings.yaml's relative `sqlite_file` could
    not go into the project's folder (an installed project: the user data folder), which a
    user who looks for it in `.data/` would not guess; None otherwise (in the project, or
    where a variable or an absolute path put it on purpose)."""
    chosen = settings.history_db.strip() or settings.database_url.strip()
    if chosen or Path(settings.history.sqlite_file).is_absolute() or current().root is not None:
        return None
    return (
        f"History: {sqlite_file(settings)} (this installed project's user data folder;"
        f" {history_db_env()} or DATABASE_URL puts it elsewhere)"
    )
