"""JSON request bodies validated by pydantic-core straight from bytes (no ``json.loads`` pass).

FastAPI's body parameters decode JSON into Python objects and then validate them; for 10k-query
batches that doubles the parsing cost. ``JsonBody(Model)`` validates the raw bytes with
``Model.model_validate_json`` and raises the same ``RequestValidationError`` (locations start
with ``body``), and :func:`add_body_schemas` puts the models into the OpenAPI components so
``/docs`` and schema-driven clients see the same request schema as before.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

M = TypeVar("M", bound=BaseModel)

_BODY_MODELS: list[type[BaseModel]] = []


def json_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency returning ``model`` validated from the raw request body."""
    _BODY_MODELS.append(model)

    async def parse(request: Request) -> M:
        raw = await request.body()
        t0 = time.perf_counter()
        try:
            out = model.model_validate_json(raw)
            request.state.parse_s = time.perf_counter() - t0  # reported in Server-Timing
            return out
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None

    return parse


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the route's JSON request body."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def add_body_schemas(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the JSON schemas of every :func:`json_body` model."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            _, defs = models_json_schema(
                [(m, "validation") for m in _BODY_MODELS], ref_template="#/components/schemas/{model}"
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, spec in defs.get("$defs", {}).items():
                components.setdefault(name, spec)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
