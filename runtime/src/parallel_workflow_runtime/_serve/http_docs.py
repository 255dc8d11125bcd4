"""The API docs that `serve` offers, /docs and /openapi.json, behind the security key.

FastAPI's own docs routes would be open to anyone and its Swagger UI loads its scripts from
a CDN; these are guarded like every other route and /docs is a plain page that works offline.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse


def add_docs_routes(app: FastAPI, dependencies: list[Any]) -> None:
    @app.get("/openapi.json", dependencies=dependencies, include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", dependencies=dependencies, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.openapi()))


def docs_page(document: dict[str, Any]) -> str:
    """The routes of the OpenAPI document as a page of its own: Swagger UI, FastAPI's usual
    docs page, loads its scripts from a CDN, and this project works offline."""
    rows = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            fields = [parameter["name"] for parameter in operation.get("parameters", [])]
            form = operation.get("requestBody", {}).get("content", {})
            for body in form.values():
                schema = resolve(document, body.get("schema", {}))
                fields.extend(schema.get("properties", {}))
            rows.append(
                f"<tr><td>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(operation.get('summary', ''))}</td>"
                f"<td>{html.escape(', '.join(fields))}</td></tr>"
            )
    title = html.escape(document["info"]["title"])
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>{html.escape(document['info'].get('description', ''))}</p>"
        "<table><tr><th>Method</th><th>Path</th><th>What</th><th>Parameters</th></tr>"
        f"{''.join(rows)}</table>"
        "<p>The full description: <a href='openapi.json'>openapi.json</a>.</p></body></html>"
    )


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, or the schema its `$ref` names in the document's components."""
    reference = schema.get("$ref", "")
    if not reference.startswith("#/components/schemas/"):
        return schema
    resolved: dict[str, Any] = document["components"]["schemas"][reference.rpartition("/")[2]]
    return resolved
