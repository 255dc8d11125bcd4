"""The API docs that `serve` offers, /docs and /openapi.json, behind the security key.

FastAPI's own docs routes would be open to anyone and its Swagger UI loads its scripts from
a CDN; these are guarded like every other route and /docs is a plain page that works offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse

from parallel_workflow_runtime._observe.page_templates import render


def add_docs_routes(app: FastAPI, dependencies: list[Any]) -> None:
    @app.get("/openapi.json", dependencies=dependencies, include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", dependencies=dependencies, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.openapi()))


def docs_page(document: dict[str, Any]) -> str:
    """The routes of the OpenAPI document as a page of its own (templates/api_docs.html.jinja,
    which escapes every string): Swagger UI, FastAPI's usual docs page, loads its scripts from
    a CDN, and this project works offline."""
    routes = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            fields = [parameter["name"] for parameter in operation.get("parameters", [])]
            form = operation.get("requestBody", {}).get("content", {})
            for body in form.values():
                schema = resolve(document, body.get("schema", {}))
                fields.extend(schema.get("properties", {}))
            summary = operation.get("summary", "")
            routes.append(Route(method.upper(), path, summary, fields))
    info = document["info"]
    return render(
        "api_docs.html.jinja",
        title=info["title"],
        description=info.get("description", ""),
        routes=routes,
    )


@dataclass(frozen=True)
class Route:
    """One operation of the API, as the docs page lists it."""

    method: str
    path: str
    summary: str
    fields: list[str]


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, or the schema its `$ref` names in the document's components."""
    reference = schema.get("$ref", "")
    if not reference.startswith("#/components/schemas/"):
        return schema
    resolved: dict[str, Any] = document["components"]["schemas"][reference.rpartition("/")[2]]
    return resolved
