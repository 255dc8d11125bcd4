"""A real HTTP API for the `http` sources of the tests, run as its own uvicorn process:

    python -m uvicorn tests.api_server:app --port PORT   (from runtime/)

Each dataset is named by the test (`/{dataset}/...`), so that tests sharing the server keep
apart. Rows are `{"id", "updated_at", "message"}`; `POST /{dataset}/rows?count=N` adds N.
The ways to page (page numbers, a cursor in the body, Link headers), to authenticate (bearer,
API key, HTTP Basic) and to fail (429 with Retry-After, a 500 once, a slow page, HTML,
malformed JSON) are routes of their own.

For the cross-origin cases the tests start a second process of this app on another loopback
address (127.0.0.2): `/{dataset}/leads` hands the first page with a next link (in the body and
in a Link header) to the URL in `to`, `/{dataset}/moved` answers a 302 to it, and
`/{dataset}/capture` answers the rest of the rows; each records what it received (headers,
query, cookies), which `GET /{dataset}/received` returns.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import os
from typing import Any
from urllib.parse import quote, quote_plus

from fastapi import FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

app = FastAPI()
TOKEN = os.environ.get("API_TOKEN", "test-token")  # what bearer and api-key auth expect
PAGE_SIZE = 10

datasets: dict[str, list[dict[str, Any]]] = {}
requests_seen: dict[str, int] = {}  # by dataset and route, for the fail-once routes
received: dict[str, list[dict[str, Any]]] = {}  # by dataset: what the recording routes got


def rows_of(dataset: str) -> list[dict[str, Any]]:
    if dataset not in datasets:
        datasets[dataset] = [row(number) for number in range(1, 24)]
    return datasets[dataset]


def row(number: int) -> dict[str, Any]:
    """Row `number`, updated `number` hours after the first of November 2026."""
    updated = datetime.datetime(2026, 11, 1) + datetime.timedelta(hours=number)
    return {"id": number, "updated_at": updated.isoformat(), "message": f"event {number}"}


def newer(dataset: str, since: str | None) -> list[dict[str, Any]]:
    return [r for r in rows_of(dataset) if since is None or r["updated_at"] >= since]


def bearer(authorization: str | None) -> None:
    if authorization != f"Bearer {TOKEN}":
        raise HTTPException(401, "a bearer token is needed")


def seen(key: str) -> int:
    requests_seen[key] = requests_seen.get(key, 0) + 1
    return requests_seen[key]


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/{dataset}/rows")
def add_rows(dataset: str, count: int = 1) -> dict[str, int]:
    rows = rows_of(dataset)
    first = len(rows) + 1
    rows.extend([row(first + n) for n in range(count)])
    return {"rows": len(rows)}


@app.get("/{dataset}/pages")
async def pages(
    dataset: str,
    page: int = 1,
    since: str | None = None,
    delay: float = 0.0,
    authorization: str | None = Header(default=None),
) -> dict[str, Any]:
    """Page numbers from 1, `total_pages` in the body, bearer auth, `delay` s per page."""
    bearer(authorization)
    if delay:
        await asyncio.sleep(delay)
    rows = newer(dataset, since)
    return {
        "data": rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
        "total_pages": max((len(rows) + PAGE_SIZE - 1) // PAGE_SIZE, 1),
    }


@app.get("/{dataset}/cursor")
def cursor(
    dataset: str, after: int = 0, x_api_key: str | None = Header(default=None)
) -> dict[str, Any]:
    """A cursor in the body (`next`), api-key auth in the X-API-Key header."""
    if x_api_key != TOKEN:
        raise HTTPException(401, "an API key is needed")
    rows = [r for r in rows_of(dataset) if r["id"] > after][:PAGE_SIZE]
    more = rows and rows[-1]["id"] < rows_of(dataset)[-1]["id"]
    return {"items": rows, "next": str(rows[-1]["id"]) if more else None}


@app.get("/{dataset}/linked")
def linked(dataset: str, request: Request, page: int = 1) -> Response:
    """The next page's URL in a Link header (GitHub's way); no auth."""
    rows = rows_of(dataset)
    body = rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    headers = {}
    if page * PAGE_SIZE < len(rows):
        headers["Link"] = f'<{request.url.replace_query_params(page=page + 1)}>; rel="next"'
    return JSONResponse(body, headers=headers)


@app.get("/{dataset}/limited")
def limited(dataset: str, page: int = 1) -> Response:
    """A 429 with Retry-After: 1 on the first request of each page, then the page."""
    if seen(f"{dataset}/limited/{page}") == 1:
        return JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "1"})
    rows = rows_of(dataset)
    return JSONResponse({"data": rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE], "total_pages": 3})


@app.get("/{dataset}/flaky")
def flaky(dataset: str) -> Response:
    """A 500 on the first request, then every row on one page."""
    if seen(f"{dataset}/flaky") == 1:
        return JSONResponse({"error": "internal"}, status_code=500)
    return JSONResponse({"data": rows_of(dataset)})


@app.get("/{dataset}/basic")
def basic(dataset: str, authorization: str | None = Header(None)) -> dict[str, Any]:
    """Every row on one page, to HTTP Basic auth as `reader` with the token as password."""
    expected = base64.b64encode(f"reader:{TOKEN}".encode()).decode()
    if authorization != f"Basic {expected}":
        raise HTTPException(401, "a user name and password are needed")
    return {"data": rows_of(dataset)}


@app.get("/{dataset}/slow")
async def slow(dataset: str, seconds: float = Query(60.0)) -> dict[str, Any]:
    """A page that takes `seconds` to come."""
    await asyncio.sleep(seconds)
    return {"data": rows_of(dataset)}


@app.get("/{dataset}/html")
def html(dataset: str) -> HTMLResponse:
    """A login page where JSON was expected, with status 200."""
    return HTMLResponse("<html><body><h1>Please sign in</h1></body></html>")


@app.get("/{dataset}/malformed")
def malformed(dataset: str) -> Response:
    return Response('{"data": [{"id": 1}, {"id": ', media_type="application/json")


def record(dataset: str, request: Request) -> None:
    """What a request carried that could be a credential, as this server received it."""
    received.setdefault(dataset, []).append(
        {
            "url": str(request.url),
            "query": request.url.query,
            "headers": dict(request.headers),
            "cookies": dict(request.cookies),
        }
    )


@app.get("/{dataset}/received")
def what_was_received(dataset: str) -> list[dict[str, Any]]:
    return received.get(dataset, [])


@app.get("/{dataset}/leads")
def leads(dataset: str, request: Request, to: str) -> Response:
    """The first ten rows, with the next page at `to` (another origin, say): in the body as
    `next` (json_link) and in a Link header (header_link). No auth is checked: what the
    request carried is recorded."""
    record(dataset, request)
    rows = rows_of(dataset)[:PAGE_SIZE]
    return JSONResponse({"data": rows, "next": to}, headers={"Link": f'<{to}>; rel="next"'})


@app.get("/{dataset}/moved")
def moved(dataset: str, request: Request, to: str) -> Response:
    """A 302 to `to`, after recording what the request carried."""
    record(dataset, request)
    return Response(status_code=302, headers={"Location": to})


@app.get("/{dataset}/capture")
def capture(dataset: str, request: Request) -> Response:
    """The rows after the first ten, and no next page; records what the request carried."""
    record(dataset, request)
    return JSONResponse({"data": rows_of(dataset)[PAGE_SIZE:], "next": None})


@app.get("/{dataset}/echo")
def echo(dataset: str, request: Request) -> Response:
    """A 403 whose body repeats what the request carried, each value as it came and
    percent-encoded both ways (as a careless or hostile API's error page may): an error line
    made from it holds the credentials in every encoding a URL or a header gives them."""
    carried = {**dict(request.query_params), **dict(request.headers)}
    return JSONResponse(
        {
            "error": "forbidden",
            "url": str(request.url),
            "carried": {
                name: [value, quote(value, safe=""), quote(value), quote_plus(value)]
                for name, value in carried.items()
            },
        },
        status_code=403,
    )
