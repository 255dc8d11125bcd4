"""The `http` kind: the items of a REST API's endpoint, page after page, read by dlt's
`rest_api` through a requests session of ours (each request ends by the source's deadline, and
carries the credentials to base_url's origin alone: http_credentials.py); its target (the
endpoint, or the bundled JSON Lines sample), and what `check` reaches of it (the first page).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

from parallel_workflow_runtime._connectors.connector_imports import dlt_module
from parallel_workflow_runtime._connectors.cursor_tracker import CursorWords
from parallel_workflow_runtime._connectors.http_credentials import Credentials, http_credentials
from parallel_workflow_runtime._connectors.read_context import (
    Chunks,
    Deadline,
    Notes,
    Secrets,
    Target,
    without_user_info,
)
from parallel_workflow_runtime._core.config import Source
from parallel_workflow_runtime._core.connector_config import HttpBlock, cursor_of, secret_variable
from parallel_workflow_runtime._core.results import SourceError


def http_target(source: Source, block: HttpBlock) -> Target:
    endpoint = without_user_info(endpoint_url(block))
    cursor = cursor_of(block)
    cursor_part = f", cursor {cursor}" if cursor else ""
    if block.sample_file is None:
        return Target(endpoint + cursor_part, endpoint)
    variable = secret_variable(block.auth)
    if variable is not None and os.environ.get(variable):
        return Target(endpoint + cursor_part, endpoint)  # configured: the API, sample or not
    sample = source.folder / block.sample_file
    if variable is None:  # nothing tells a configured API from the demo's: sample_file does
        reason = f"sample_file is set (remove it to read {endpoint})"
        missing = f"http: the sample_file {block.sample_file} does not exist (remove it to read"
        missing += f" {endpoint})"
    else:
        reason = f"{variable} is not set (set it and base_url to read the API, then remove"
        reason += " sample_file)"
        missing = f"http: {variable} is not set and {block.sample_file} does not exist"
    if not sample.is_file():
        raise SourceError(missing)
    where = f"sample {block.sample_file}"
    note = f"read the bundled sample {block.sample_file}: {reason}"
    return Target(where + cursor_part, where, note, sample)


def endpoint_url(block: HttpBlock) -> str:
    """The URL of the endpoint's first page, as dlt joins base_url and path."""
    if not block.path:
        return block.base_url
    return block.base_url.rstrip("/") + "/" + block.path.lstrip("/")


SAMPLE_CHUNK = 1_000  # items of a sample handed on at once, as an API's page would be


def sample_items(path: Path, shown_as: str) -> Chunks:
    """The items of an `http` source's sample, a JSON Lines file: a JSON object a line (blank
    lines skipped)."""
    chunk: list[Any] = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as error:  # not JSON, or not UTF-8
                raise SourceError(f"http: {shown_as} line {number}: {error}") from None
            if not isinstance(item, dict):  # run(source, rows) is promised dicts
                kind = type(item).__name__
                raise SourceError(f"http: {shown_as} line {number}: a {kind}, not a JSON object")
            chunk.append(item)
            if len(chunk) == SAMPLE_CHUNK:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def http_cursor_words(path: str, where: str) -> CursorWords:
    return CursorWords(
        kind="http",
        subject=f"the cursor path {path} of {where}",
        item="an item",
        missing_fix="choose a field that every item has (http.incremental.cursor_path)",
        mixed_fix="choose a field of one type (http.incremental.cursor_path)",
        crowded_fix="a cursor field whose values rarely repeat (a time to the second, an id)",
    )


def http_rows(
    source: Source,
    block: HttpBlock,
    since: Any,
    secrets: Secrets,
    deadline: Deadline,
    notes: Notes,
) -> Chunks:
    dlt_module("http")
    from dlt.sources.rest_api import rest_api_resources

    credentials = http_credentials(source, block, secrets, notes)
    session = http_session(block, deadline, block.request_max_attempts, credentials)
    # No `auth` for dlt: it would put the credentials on every request, to whatever host a
    # next-page link names. The session's adapter adds them, to base_url's origin alone.
    client: dict[str, Any] = {"base_url": block.base_url, "session": session}
    if block.headers:
        client["headers"] = dict(block.headers)
    if block.paginator is not None:
        client["paginator"] = paginator_config(block)
    endpoint: dict[str, Any] = {"path": block.path, "method": block.method}
    if block.params:
        endpoint["params"] = dict(block.params)
    if block.json_body is not None:
        endpoint["json"] = block.json_body
    if block.data_selector is not None:
        # Compiled once: dlt parses a string selector again on every page.
        endpoint["data_selector"] = compiled_json_path(block.data_selector)
    if block.incremental is not None:
        incremental: dict[str, Any] = {"cursor_path": block.incremental.cursor_path}
        if block.incremental.start_param is not None:
            incremental["start_param"] = block.incremental.start_param
        if since is not None:
            incremental["initial_value"] = since
        endpoint["incremental"] = incremental
    config: Any = {"client": client, "resources": [{"name": source.id, "endpoint": endpoint}]}
    # The resource alone: a dlt source around it would build a schema no one reads, per run.
    (resource,) = rest_api_resources(config)
    yield from resource


def http_session(
    block: HttpBlock, deadline: Deadline, max_attempts: int, credentials: Credentials
) -> Any:
    """dlt's requests session for a read of `block`: dlt's retries (at most `max_attempts`
    tries of a request), each request ending by the deadline, the credentials on those to
    base_url's origin alone."""
    from dlt.sources.helpers.requests import Client

    timeout = deadline.remaining(block.request_timeout_seconds or 60.0)
    if block.request_timeout_seconds is not None:
        timeout = min(timeout, block.request_timeout_seconds)
    session = Client(
        request_timeout=timeout,
        request_max_attempts=max_attempts,
        raise_for_status=False,  # dlt checks each answer itself (its response_actions)
    ).session
    # Each request (dlt's retries and redirects too) passes this adapter: it ends by the
    # source's deadline, or does not start, and gets the credentials if it goes to base_url's
    # origin.
    adapter = http_adapter(deadline, credentials)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    read_environment_once(session, block.base_url)
    return session


def paginator_config(block: HttpBlock) -> dict[str, Any]:
    """The block's paginator as dlt's configuration: only what config.yaml sets, and its type."""
    assert block.paginator is not None
    return block.paginator.model_dump(exclude_unset=True) | {"type": block.paginator.type}


@functools.cache
def compiled_json_path(path: str) -> Any:
    from dlt.common.jsonpath import compile_path

    return compile_path(path)


def read_environment_once(session: Any, base_url: str) -> None:
    """What requests reads from the environment on every request (proxies, no_proxy, CA
    bundle), read once for the whole read: that lookup cost a third of the CPU of each page,
    which the sources on `thread` share. A next-page link to another host gets the proxies of
    `base_url`'s. (~/.netrc is read by http_credentials: its password is a credential.)"""
    import requests.utils

    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
    session.trust_env = False


def http_adapter(deadline: Deadline, credentials: Credentials) -> Any:
    """A requests adapter whose requests never outlast `deadline` (a thread cannot be stopped,
    so a source's read on `thread` ends by its timeout only if each request does), and carry
    the credentials only to base_url's origin: every request of the session passes here, the
    first, each next page and each redirect, as it goes on the wire."""
    from requests.adapters import HTTPAdapter

    class SourceAdapter(HTTPAdapter):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            deadline.check()  # not retried by dlt: a SourceError is none of its errors
            timeout = kwargs.get("timeout")
            if isinstance(timeout, int | float) or timeout is None:
                kwargs["timeout"] = deadline.remaining(timeout or 60.0)
            return super().send(credentials.applied(request), *args, **kwargs)

    return SourceAdapter()


def http_reached(
    source: Source, block: HttpBlock, target: Target, secrets: Secrets, deadline: Deadline
) -> str:
    from dlt.sources.helpers.rest_client import RESTClient
    from dlt.sources.rest_api.config_setup import create_paginator

    credentials = http_credentials(source, block, secrets, Notes())
    client = RESTClient(
        base_url=block.base_url,
        headers=dict(block.headers) or None,
        # dlt's own conversion of the dict its rest_api config takes (a TypedDict there).
        paginator=create_paginator(paginator_config(block)) if block.paginator else None,  # type: ignore[arg-type]
        data_selector=compiled_json_path(block.data_selector) if block.data_selector else None,
        # One try: `check` says what the first answer was, dlt's retries would hide it. The
        # credentials go with the session, to base_url's origin alone, as in a read.
        session=http_session(block, deadline, 1, credentials),
    )
    pages: Generator[list[Any], None, None] = client.paginate(  # type: ignore[assignment]
        path=block.path,
        method=block.method,
        params=dict(block.params) or None,
        json=block.json_body,
    )
    try:
        first: list[Any] = next(pages, [])
    finally:
        pages.close()
    return f"{target.where}: first page, {len(first)} items"
