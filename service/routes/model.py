"""POST /v1/predict/model: whole-model latency of an operator table (JSON) or an ONNX file.

Two bodies, told apart by ``Content-Type``:

- ``application/json``: :class:`~hwsurrogate.service.schemas.ModelTableQuery`, the operator table
  as rows (``device``, ``mode``, ``ops``);
- ``application/octet-stream`` (or ``application/onnx``): the bytes of an ONNX file, parsed as a
  protobuf by :mod:`hwsurrogate.datasets.frontends.onnx_graph` (never unpickled, no code run;
  size-limited by the service's body limit), with ``device``, ``mode`` and ``input_shape``
  (``1,3,224,224``, ``;`` between inputs) as query parameters.

The operator latency model is loaded once per process (the registered ``hws-ops`` champion) and
the device's descriptors come from the store's ``devices`` table; an unknown device is a 404.
"""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from hwsurrogate.errors import ModelSourceError
from hwsurrogate.service.body import json_body
from hwsurrogate.service.deps import ConfigDep, StoreDep
from hwsurrogate.service.errors import InvalidFieldError, PayloadTooLargeError
from hwsurrogate.service.routes._common import server_timing
from hwsurrogate.service.schemas import MAX_MODEL_OPS, ModelLatencyPrediction, ModelTableQuery
from hwsurrogate.service.served import ModelUnavailableError

router = APIRouter(prefix="/v1/predict", tags=["predict"])

_LOCK = threading.Lock()
_ONNX_TYPES = ("application/octet-stream", "application/onnx")
#: validates the JSON body (and puts ModelTableQuery into the OpenAPI components)
_parse_table = json_body(ModelTableQuery)


def _ops_model(request: Request) -> Any:
    """The operator latency model, loaded on first use and kept on the app (503 when none is registered)."""
    state = request.app.state
    model = getattr(state, "ops_model", None)
    if model is not None:
        return model
    with _LOCK:
        model = getattr(state, "ops_model", None)
        if model is None:
            from hwsurrogate.surrogates.registry.ops import load_ops_model

            try:
                model = load_ops_model()
            except Exception as exc:
                raise ModelUnavailableError(
                    "ops", f"no operator latency model is registered ({exc}); run `hws train ops`"
                ) from None
            state.ops_model = model
    return model


def _shapes(text: str | None) -> list[list[int]] | None:
    if text is None or not text.strip():
        return None
    out = []
    for part in text.split(";"):
        try:
            dims = [int(x) for x in part.split(",") if x.strip()]
        except ValueError:
            raise InvalidFieldError(
                "input_shape", f"input_shape: expected integers like 1,3,224,224, got {text!r}"
            ) from None
        if not dims or len(dims) > 8 or any(d < 1 or d > 1 << 24 for d in dims):
            raise InvalidFieldError(
                "input_shape", f"input_shape: 1 to 8 dims in [1, 2^24] each, got {part!r}"
            )
        out.append(dims)
    return out


@router.post(
    "/model",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ModelTableQuery"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
            "required": True,
        },
    },
    response_model=ModelLatencyPrediction,
    responses={
        404: {"description": "unknown device"},
        413: {"description": "body or table too large"},
        503: {"description": "no operator model registered"},
    },  # fmt: skip
)
async def predict_model(
    request: Request,
    store: StoreDep,
    config: ConfigDep,
    device: Annotated[str | None, Query(max_length=128, description="device id (ONNX bodies)")] = None,
    mode: Annotated[Literal["inference", "training"], Query(description="ONNX bodies")] = "inference",
    input_shape: Annotated[
        str | None, Query(max_length=512, description="ONNX bodies: 1,3,224,224 (';' between inputs)")
    ] = None,
    per_op: Annotated[bool, Query(description="ONNX bodies: also return the per-operator rows")] = False,
) -> JSONResponse:
    """Predict the whole-model latency (ms), with the share of each op kind and of unmodeled ops."""
    from starlette.concurrency import run_in_threadpool

    t0 = time.perf_counter()
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    raw = await request.body()
    if ctype in _ONNX_TYPES:
        if not device:
            raise InvalidFieldError("device", "device: the query parameter is required with an ONNX body")
        source: Any = raw
        shapes = _shapes(input_shape)
        want_per_op = per_op
    elif ctype in ("application/json", ""):
        query = await _parse_table(request)
        if len(query.ops) > MAX_MODEL_OPS:
            raise PayloadTooLargeError("ops", len(query.ops), MAX_MODEL_OPS)
        import polars as pl

        source = pl.DataFrame([r.model_dump() for r in query.ops], infer_schema_length=None)
        device, mode, shapes, want_per_op = query.device, query.mode, None, query.per_op
    else:
        raise InvalidFieldError(
            "content-type", f"content-type {ctype!r}: send application/json (an operator table) or "
            "application/octet-stream (an ONNX file)",
        )  # fmt: skip

    def run() -> dict[str, Any]:
        from hwsurrogate.surrogates.wholemodel import device_row, predict_model

        dev = device_row(store, device)  # 404 before any model work
        model = _ops_model(request)
        answer = predict_model(source, shapes, device, mode, ops_model=model, device=dev)
        return answer.to_dict(per_op=want_per_op)

    try:
        out = await run_in_threadpool(run)
    except ModelSourceError as exc:
        raise InvalidFieldError(exc.field, str(exc)) from None
    body = {"device": device, **out}
    name = getattr(request.app.state, "ops_model_ref", None)
    if name:
        body["model"] = name
    resp = JSONResponse(body)
    resp.headers["Server-Timing"] = server_timing(handler=time.perf_counter() - t0)
    return resp
