"""An `http` source's credentials go to the origin of its base_url alone (scheme, host, port),
and no encoding of a secret leaves the source: against two real processes of the test API, on
127.0.0.1 (base_url's) and 127.0.0.2 (another origin, which records what it receives).

The rule: a request to another origin (a next-page link, a redirect) is sent without any
credential, and the source's warnings say so, naming that origin; an error of the source then
says where the credentials were not sent."""

from __future__ import annotations

import _socket
import base64
import json
import os
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus

import pytest

from .connector_project import connector_project
from .test_connectors import (
    api_process,
    api_server,
    by_id,
    folder,
    http_source,
    keys,
    run,
    write_config,
)

__all__ = ["api_server", "folder"]  # fixtures of test_connectors, used here

# A secret with the characters that URLs and cookies encode: + / @ = & #.
SECRET = "s3cr+t/v@l=ue&x#y"
USER = "reader"

AUTHS: dict[str, dict[str, Any]] = {
    "bearer": {"type": "bearer", "token_env": "API_SECRET"},
    "header": {"type": "api_key", "api_key_env": "API_SECRET", "name": "X-Api-Token"},
    "query": {"type": "api_key", "api_key_env": "API_SECRET", "name": "sig", "location": "query"},
    "cookie": {
        "type": "api_key",
        "api_key_env": "API_SECRET",
        "name": "session",
        "location": "cookie",
    },
    "basic": {"type": "http_basic", "username": USER, "password_env": "API_SECRET"},
}


def encodings(secret: str) -> set[str]:
    """Every form in which a secret could leave: as it is and as HTTP Basic credentials of
    USER (base64), each also percent-encoded both ways (quote, quote_plus), in upper- and
    lower-case hex."""
    forms: set[str] = set()
    for value in (secret, base64.b64encode(f"{USER}:{secret}".encode()).decode()):
        encoded = {quote(value, safe=""), quote(value), quote_plus(value)}
        forms |= {value, *encoded, *(form.lower() for form in encoded if "%" in form)}
    return forms


def carries_credential(auth: str, received: dict[str, Any]) -> bool:
    """Whether a request, as the test API recorded it, carried the credential of `auth`."""
    headers, cookies = received["headers"], received["cookies"]
    if auth == "bearer":
        return bool(headers.get("authorization") == f"Bearer {SECRET}")
    if auth == "header":
        return bool(headers.get("x-api-token") == SECRET)
    if auth == "query":
        return parse_qs(received["query"]).get("sig") == [SECRET]
    if auth == "cookie":
        return bool(cookies.get("session") == SECRET)
    basic = base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
    return bool(headers.get("authorization") == f"Basic {basic}")


def received(base_url: str, dataset: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{base_url}/{dataset}/received", timeout=5) as answer:
        requests: list[dict[str, Any]] = json.load(answer)
        return requests


@pytest.fixture(scope="module")
def other_origin() -> Iterator[str]:
    """The test API on 127.0.0.2: another origin than base_url's, on this machine."""
    with api_process("127.0.0.2") as base_url:
        yield base_url


@pytest.fixture
def second_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' offline guard (conftest.offline) lets this process reach 127.0.0.2 too: it is
    this machine's loopback as much as 127.0.0.1."""
    guarded = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> Any:
        if sock.family == socket.AF_INET and address[0] == "127.0.0.2":
            return _socket.socket.connect(sock, address)
        return guarded(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


# How each source gets to the other origin: a next link in the body, one in a Link header, and
# a 302; what it then reads (the first page's ten rows at base_url, the rest there, or only
# the rest after a redirect).
PATHS: dict[str, tuple[str, dict[str, Any], list[int]]] = {
    "json_link": ("leads", {"paginator": {"type": "json_link"}}, list(range(1, 24))),
    "header_link": ("leads", {"paginator": {"type": "header_link"}}, list(range(1, 24))),
    "redirect": ("moved", {"paginator": {"type": "single_page"}}, list(range(11, 24))),
}


def test_credentials_of_every_auth_kind_never_reach_another_origin_by_a_link_or_a_redirect(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    api_server: str,
    other_origin: str,
    second_loopback: None,
) -> None:
    monkeypatch.setenv("API_SECRET", SECRET)
    run_tag = f"{os.getpid()}{os.urandom(3).hex()}"
    sources = []
    for auth, block in AUTHS.items():
        for path, (route, paging, _) in PATHS.items():
            dataset = f"{auth}-{path}-{run_tag}"
            sources.append(
                http_source(
                    f"{auth}_{path}",
                    api_server,
                    f"{dataset}/{route}",
                    auth=block,
                    params={"to": f"{other_origin}/{dataset}/capture"},
                    data_selector="data",
                    request_max_attempts=1,
                    **paging,
                )
            )
    # A redirect within base_url's origin keeps the credentials: they are base_url's.
    same = f"same-{run_tag}"
    sources.append(
        http_source(
            "same_origin",
            api_server,
            f"{same}/moved",
            auth=AUTHS["header"],
            params={"to": f"{api_server}/{same}/capture"},
            data_selector="data",
            paginator={"type": "single_page"},
        )
    )

    results = by_id(run(write_config(folder, *sources)))

    for auth in AUTHS:
        for path, (_, _, expected) in PATHS.items():
            dataset, result = f"{auth}-{path}-{run_tag}", results[f"{auth}_{path}"]
            assert result.ok, (auth, path, result.error)
            assert keys(result) == expected, (auth, path)
            [there] = received(api_server, dataset)
            assert carries_credential(auth, there), (auth, path, there)
            [elsewhere] = received(other_origin, dataset)
            assert not carries_credential(auth, elsewhere), (auth, path, elsewhere)
            assert "authorization" not in elsewhere["headers"], (auth, path)
            leaked = {form for form in encodings(SECRET) if form in json.dumps(elsewhere)}
            assert not leaked and SECRET not in elsewhere["url"], (auth, path, elsewhere)
            assert result.warnings == [
                f"http: sent the requests to {other_origin} (a next page or a redirect) without"
                f" credentials: they go only to base_url's origin {api_server}"
            ], (auth, path)
    assert results["same_origin"].ok and keys(results["same_origin"]) == list(range(11, 24))
    assert [carries_credential("header", r) for r in received(api_server, same)] == [True, True]
    assert results["same_origin"].warnings == []


def test_a_source_that_fails_on_another_origin_says_the_credentials_were_not_sent_there(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    api_server: str,
    other_origin: str,
    second_loopback: None,
) -> None:
    """The API behind the link wanted credentials: its 403 is the error, and the line says
    why it got none."""
    monkeypatch.setenv("API_SECRET", SECRET)
    dataset = f"refused-{os.getpid()}{os.urandom(3).hex()}"
    config = write_config(
        folder,
        http_source(
            "refused",
            api_server,
            f"{dataset}/moved",
            auth=AUTHS["bearer"],
            params={"to": f"{other_origin}/{dataset}/echo"},
            request_max_attempts=1,
        ),
    )

    result = by_id(run(config))["refused"]

    assert result.status == "failed"
    error = str(result.error)
    assert error.startswith("http: HTTPError: 403 Client Error: Forbidden for url: "), error
    assert error.endswith(
        f"(credentials were not sent to {other_origin}: they go only to base_url's origin"
        f" {api_server})"
    ), error
    assert not {form for form in encodings(SECRET) if form in error}


def test_no_encoding_of_a_secret_reaches_the_output_the_history_or_the_trace(
    tmp_path: Path, api_server: str
) -> None:
    """An API whose 403 repeats the request's credentials, raw and percent-encoded (the Basic
    ones base64-encoded, as they are sent): every form is scrubbed from the error line, in
    `run --json`, `history show --json` and the run's trace. The error line holds the URL
    (with the key of `location: query` percent-encoded) and, as dlt's setting
    RUNTIME__HTTP_SHOW_ERROR_BODY asks here, the body of the answer."""
    dataset = f"echo-{os.getpid()}{os.urandom(3).hex()}"
    sources = [
        http_source(auth, api_server, f"{dataset}/echo", auth=block, request_max_attempts=1)
        for auth, block in AUTHS.items()
    ]
    _, cli = connector_project(
        tmp_path / "workflows",
        sources,
        API_SECRET=SECRET,
        RUNTIME__HTTP_SHOW_ERROR_BODY="true",
    )

    ran = cli("run", "--trace", "--json")
    assert ran.returncode == 1, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    shown = cli("history", "show", run_id, "--json")
    traced = cli("history", "show", run_id, "--trace", "--json")

    errors = {source["id"]: source["error"] for source in json.loads(ran.stdout)["sources"]}
    assert set(errors) == set(AUTHS)
    for auth, error in errors.items():
        assert error.startswith("http: HTTPError: 403 Client Error: Forbidden"), (auth, error)
        assert "***" in error, (auth, error)  # the credential was there, and scrubbed
    trace = json.loads(traced.stdout)["trace"]
    assert any("403 Client Error" in json.dumps(span) for span in trace)
    for output in (ran, shown, traced):
        assert output.returncode in (0, 1), output.stderr
        text = output.stdout + output.stderr
        assert not {form for form in encodings(SECRET) if form in text}, text[:3000]


def test_every_form_of_a_secret_is_scrubbed_and_a_url_with_nothing_to_hide_is_left_as_is(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run()'s warnings and details leave the source too. A URL without a password, an
    SQLite file's (sqlite:////absolute/path), was taken apart and put together again by the
    masking, which dropped two of its slashes."""
    from parallel_workflow_runtime._connectors.read_context import Secrets

    secrets = Secrets()
    secrets.add_basic(USER, SECRET)
    for form in encodings(SECRET):
        assert secrets.scrubbed(f"at {form}.") == "at ***.", form
    shown = "sqlite:////var/data/demo.sqlite and postgresql://app:hunter2@db/runs"
    assert secrets.scrubbed(shown) == (
        "sqlite:////var/data/demo.sqlite and postgresql://app:***@db/runs"
    )
    summary = secrets.scrubbed_summary(
        {"records": 1, "details": {"seen": [f"?sig={quote_plus(SECRET)}", 3]}}
    )
    assert summary == {"records": 1, "details": {"seen": ["?sig=***", 3]}}
