"""What a connector source's block in config.yaml may hold: `sql:`, `http:` or `file:`.

The names are dlt's own (its `sql_table`, `rest_api` and `filesystem` sources), so that dlt's
documentation applies as it is, with one change: a secret is never written in config.yaml.
Where dlt takes a token, an API key, a password or a database URL, config.yaml names the
environment variable that holds it (`token_env`, `api_key_env`, `password_env`, `url_env`),
and the connector reads it where the source runs (a thread, a worker process, a Dask worker).
Unknown keys are refused, as everywhere in config.yaml.
"""

from __future__ import annotations

import datetime
import math
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

# How a source gets its data: `python` runs sources/<id>.py's `run(source)` alone; the others
# read the rows with dlt and hand them to its `run(source, rows)`.
SourceKind = Literal["python", "sql", "http", "file"]
SOURCE_KINDS: tuple[SourceKind, ...] = get_args(SourceKind)
CONNECTOR_KINDS: tuple[SourceKind, ...] = ("sql", "http", "file")

FileFormat = Literal["csv", "jsonl", "parquet"]
# How dlt's sql_table turns a table's rows into Python: row by row through SQLAlchemy (its
# default), or whole chunks at once into Arrow (pyarrow, connectorx) or pandas.
SqlBackend = Literal["sqlalchemy", "pyarrow", "connectorx", "pandas"]
SQL_BACKENDS: tuple[SqlBackend, ...] = get_args(SqlBackend)


class Problem(ValueError):
    """A rule over several settings: its message follows the place it is about."""


class _Block(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


EnvName = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="the name of an environment variable (letters, digits and _)",
    ),
]
Name = Annotated[str, Field(min_length=1, pattern=r"\S", description="a non-empty string")]


def finite(rule: str) -> AfterValidator:
    """Refuses NaN and infinity in a value that may also be a string or a date, with `rule`
    as what the value must be.

    Not pydantic's `allow_inf_nan=False`: put on a union that holds `str`, pydantic applies it
    to the string too, and any string value (a param `{sort: asc}`, a quoted initial_value)
    crashed every command with "TypeError: must be real number, not str". Nor that option on
    the float member alone: the union's error then names each member (`initial_value.str`)."""

    def checked(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(rule)
        return value

    return AfterValidator(checked)


CURSOR_VALUE_RULE = "a string, a number (not NaN or infinite), a date or null"
SCALAR_RULE = "a string, a number (not NaN or infinite) or true/false"
# A cursor's first value: where the first run starts (null: from the beginning).
CursorValue = Annotated[
    str | int | float | datetime.datetime | datetime.date | None,
    Field(description=CURSOR_VALUE_RULE),
    finite(CURSOR_VALUE_RULE),
]
Scalar = Annotated[str | int | float | bool, Field(description=SCALAR_RULE), finite(SCALAR_RULE)]
Count = Annotated[int, Field(ge=1, description="a whole number of at least 1")]
OptionalCount = Annotated[int | None, Field(ge=0, description="a whole number or null")]


class SqlBlock(_Block):
    """`sql:` a table or a query of a database that SQLAlchemy reaches (dlt's `sql_table`)."""

    # The SQLAlchemy URL is in this environment variable, never in config.yaml.
    url_env: EnvName
    # Read when url_env is not set: an SQLite file in the workflow's folder (the offline demo).
    sqlite_file: Name | None = None
    table: Name | None = None
    # A database schema (PostgreSQL's `public`, say); null: the connection's default.
    table_schema: Name | None = Field(default=None, alias="schema")
    query: Name | None = None
    # The column that only grows (an update time, an id): each run reads the rows from the
    # last run's highest value on. Null: every run reads everything.
    cursor: Name | None = None
    initial_value: CursorValue = None
    chunk_size: Count = 10_000
    # dlt's `backend` of sql_table (a table's; a query is read through SQLAlchemy). pyarrow
    # and connectorx build each chunk of rows in Arrow, pandas in a DataFrame, faster on a
    # large table (README.md); `rows` yields the same dicts on each.
    backend: SqlBackend = "sqlalchemy"

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlBlock:
        if (self.table is None) == (self.query is None):
            raise Problem(" needs exactly one of table and query")
        if self.query is not None and self.backend != "sqlalchemy":
            raise Problem(
                f".backend {self.backend} reads a table (sql.table): a query is read through"
                " SQLAlchemy, so leave backend out or set it to sqlalchemy"
            )
        return self


class BearerAuth(_Block):
    type: Literal["bearer"]
    token_env: EnvName


class ApiKeyAuth(_Block):
    type: Literal["api_key"]
    api_key_env: EnvName
    name: Name = "Authorization"  # the header, query parameter or cookie that carries it
    location: Literal["header", "query", "cookie"] = "header"


class HttpBasicAuth(_Block):
    type: Literal["http_basic"]
    username: Name
    password_env: EnvName


Auth = Annotated[BearerAuth | ApiKeyAuth | HttpBasicAuth, Field(discriminator="type")]


class PageNumberPaginator(_Block):
    type: Literal["page_number"]
    base_page: int = 0
    page: int | None = None
    page_param: Name | None = None
    total_path: Name | None = "total"
    maximum_page: OptionalCount = None
    stop_after_empty_page: bool = True
    has_more_path: Name | None = None


class OffsetPaginator(_Block):
    type: Literal["offset"]
    limit: Count
    offset: int = 0
    offset_param: Name | None = None
    limit_param: Name | None = None
    total_path: Name | None = "total"
    maximum_offset: OptionalCount = None
    stop_after_empty_page: bool = True
    has_more_path: Name | None = None


class CursorPaginator(_Block):
    type: Literal["cursor"]
    cursor_path: Name = "cursors.next"
    cursor_param: Name | None = None
    stop_after_empty_page: bool = False
    has_more_path: Name | None = None


class JsonLinkPaginator(_Block):
    type: Literal["json_link"]
    next_url_path: Name = "next"


class HeaderLinkPaginator(_Block):
    type: Literal["header_link"]
    links_next_key: Name = "next"


class HeaderCursorPaginator(_Block):
    type: Literal["header_cursor"]
    cursor_key: Name = "next"
    cursor_param: Name = "cursor"


class SinglePagePaginator(_Block):
    type: Literal["single_page"]


class AutoPaginator(_Block):
    type: Literal["auto"]


Paginator = Annotated[
    PageNumberPaginator
    | OffsetPaginator
    | CursorPaginator
    | JsonLinkPaginator
    | HeaderLinkPaginator
    | HeaderCursorPaginator
    | SinglePagePaginator
    | AutoPaginator,
    Field(discriminator="type"),
]


class HttpIncremental(_Block):
    """dlt's `incremental` of an endpoint: `cursor_path` in each item; `start_param`, when
    set, sends the last value to the API so that it answers only what is newer."""

    cursor_path: Name
    start_param: Name | None = None
    initial_value: CursorValue = None


class HttpBlock(_Block):
    """`http:` one endpoint of a REST API, read page by page (dlt's `rest_api`)."""

    base_url: Annotated[
        str, Field(pattern=r"^https?://\S+$", description="an http:// or https:// URL")
    ]
    path: str = ""
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, Scalar] = {}
    # Headers that are not secrets (an Accept, an API version); a secret goes in `auth`.
    headers: dict[str, str] = {}
    json_body: dict[str, Any] | None = Field(default=None, alias="json")
    data_selector: Name | None = None
    auth: Auth | None = None
    paginator: Paginator | None = None
    incremental: HttpIncremental | None = None
    # dlt's own retries of one request, on 429 (after its Retry-After), 5xx and connection
    # errors; the source's `retries` run the whole read again once dlt gave up (README.md).
    request_max_attempts: Count = 5
    # The longest one request may take; null: the source's timeout_seconds.
    request_timeout_seconds: Annotated[
        float | None,
        Field(gt=0, allow_inf_nan=False, description="a positive number of seconds, or null"),
    ] = None
    # Read instead of the API until it is configured (the offline demo): a JSON Lines file in
    # the workflow's folder, one item of the endpoint per line. It is read while the auth's
    # environment variable is not set, or, with no auth, for as long as it is here.
    sample_file: Name | None = None

    @field_validator("headers")
    @classmethod
    def _no_secret_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if name.lower() in {"authorization", "proxy-authorization", "cookie", "x-api-key"}:
                # A Problem: the usual message would repeat the value, a secret.
                raise Problem(
                    f" must not hold {name!r}: a secret goes in `auth`, which reads it from "
                    "an environment variable"
                )
        return headers


class FileBlock(_Block):
    """`file:` the files of a folder, local or any fsspec URL (dlt's `filesystem`)."""

    # A folder in the workflow's folder (data/logs), an absolute one, or a URL such as
    # s3://bucket/path (with that store's fsspec package installed and its credentials set).
    path: Name
    glob: Name = "*"
    format: FileFormat
    # Each run reads the files it has not read yet (by name, whatever their modification
    # time) and those changed since the last run (by their modification time).
    incremental: bool = True
    chunk_size: Count = 10_000
    # The longest record (a CSV record, a JSON line) a file may hold, in bytes: a longer one
    # fails the source, before it fills the memory (a file without a line break is one
    # record). Not for parquet, whose rows come in typed columns.
    max_record_bytes: Count = 16 * 1024 * 1024
    # false: only files inside `path` are read; a symbolic link (or a glob with ..) that
    # leads out of it is skipped, with a warning. For a folder others can write to.
    follow_symlinks: bool = True


def secret_variable(auth: BearerAuth | ApiKeyAuth | HttpBasicAuth | None) -> str | None:
    """The environment variable that holds an `http` auth's secret (None: no auth)."""
    if isinstance(auth, BearerAuth):
        return auth.token_env
    if isinstance(auth, ApiKeyAuth):
        return auth.api_key_env
    if isinstance(auth, HttpBasicAuth):
        return auth.password_env
    return None


ConnectorBlock = SqlBlock | HttpBlock | FileBlock
BLOCKS: dict[str, type[ConnectorBlock]] = {"sql": SqlBlock, "http": HttpBlock, "file": FileBlock}


def cursor_of(block: ConnectorBlock | None) -> str | None:
    """The field whose highest value a connector keeps between runs (None: it keeps none)."""
    if isinstance(block, SqlBlock):
        return block.cursor
    if isinstance(block, HttpBlock):
        return block.incremental.cursor_path if block.incremental else None
    if isinstance(block, FileBlock):
        return "modification_date" if block.incremental else None
    return None
