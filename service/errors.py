"""Domain errors mapped to HTTP once: every 4xx body is JSON ``{"detail": ..., "field": ...}``."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from hwsurrogate.errors import (
    HwSurrogateError,
    ModelSourceError,
    SchemaMismatchError,
    StoreError,
    UnknownDeviceError,
)
from hwsurrogate.service.served import ModelUnavailableError, PredictionInputError


class PayloadTooLargeError(HwSurrogateError, ValueError):
    """A batch has more items than the service accepts in one call: HTTP 413 naming the field."""

    def __init__(self, field: str, n: int, limit: int) -> None:
        self.field = field
        super().__init__(f"{field}: {n} items exceed the limit of {limit} per request; split the batch")


class NotFoundError(HwSurrogateError, LookupError):
    """A named thing (arch index, dataset kind, adapted device) does not exist: HTTP 404."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class InvalidFieldError(HwSurrogateError, ValueError):
    """A field passed pydantic but failed a domain check (e.g. an invalid arch_key): HTTP 422."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def _clean(value: Any) -> Any:
    """JSON-safe copy of a validation error's context (NaN/inf inputs cannot be serialised)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc if p not in ("body",)) or "body"


def _json(status: int, detail: Any, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail}
    if field is not None:
        body["field"] = field
    return JSONResponse(status_code=status, content=body)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "field": _loc(e.get("loc", ())), "msg": e.get("msg", ""),
             "type": e.get("type", "")}
            for e in exc.errors()
        ]  # fmt: skip
        first = errors[0]["field"] if errors else "body"
        return _json(422, _clean(errors), first)

    @app.exception_handler(UnknownDeviceError)
    async def _unknown_device(request: Request, exc: UnknownDeviceError) -> JSONResponse:
        return _json(404, str(exc), "device")

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return _json(404, str(exc), exc.field)

    @app.exception_handler(InvalidFieldError)
    async def _invalid(request: Request, exc: InvalidFieldError) -> JSONResponse:
        return _json(422, str(exc), exc.field)

    @app.exception_handler(ModelSourceError)
    async def _model_source(request: Request, exc: ModelSourceError) -> JSONResponse:
        return _json(422, str(exc), exc.field)

    @app.exception_handler(PayloadTooLargeError)
    async def _too_large(request: Request, exc: PayloadTooLargeError) -> JSONResponse:
        return _json(413, str(exc), exc.field)

    @app.exception_handler(SchemaMismatchError)
    async def _schema(request: Request, exc: SchemaMismatchError) -> JSONResponse:
        return _json(422, str(exc), "rows")

    @app.exception_handler(PredictionInputError)
    async def _prediction_input(request: Request, exc: PredictionInputError) -> JSONResponse:
        return _json(422, str(exc), "queries")

    @app.exception_handler(ModelUnavailableError)
    async def _unavailable(request: Request, exc: ModelUnavailableError) -> JSONResponse:
        return _json(503, str(exc), exc.task)

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        return _json(503, f"store: {exc}")
