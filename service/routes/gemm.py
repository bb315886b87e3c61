"""POST /v1/predict/gemm: runtime, power and energy of GEMM shapes on a device."""

from __future__ import annotations

import time
from typing import Annotated

import polars as pl
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from hwsurrogate.service.batching import RequestBatcher
from hwsurrogate.service.body import QueryRows, json_query_rows, request_body
from hwsurrogate.service.deps import DirectRoute, DispatchDep
from hwsurrogate.service.routes._common import (
    check_batch,
    domain_fields,
    json_predictions,
    server_timing,
)
from hwsurrogate.service.schemas import GemmPredictionBatch, GemmQueryBatch
from hwsurrogate.service.served import checked_answer, run_dispatch
from hwsurrogate.surrogates.api import INPUTS, OUTPUTS
from hwsurrogate.surrogates.predict import Answer, Dispatch

# DirectRoute: its dependencies awaited without FastAPI's general solver (~45 us a request)
router = APIRouter(prefix="/v1/predict", tags=["predict"], route_class=DirectRoute)

#: column types of the query frame (the request's field names) and the frame's names for them
_COLUMNS = {"device": "device_id"}
_SCHEMA = {"device": pl.String, "op": pl.String, "m": pl.Int64, "n": pl.Int64, "k": pl.Int64,
           "batch": pl.Int64, "dtype": pl.String, "layout": pl.String}  # fmt: skip


@router.post(
    "/gemm",
    openapi_extra=request_body(GemmQueryBatch),
    response_model=GemmPredictionBatch,
    responses={413: {"description": "too many queries"}, 503: {"description": "no gemm model served"}},
)
async def predict_gemm(
    queries: Annotated[QueryRows, Depends(json_query_rows(GemmQueryBatch, "queries", _SCHEMA, _COLUMNS))],
    dispatch: DispatchDep,
    request: Request,
) -> Response:
    """Predict ``runtime_ms``, ``power_w`` and ``energy_j`` (null when the model has no power target).

    Each prediction says ``in_domain`` (device, op, dtype and shape inside what the model was
    trained on); ``"strict": true`` refuses out-of-domain queries with a 422 instead."""
    t0 = time.perf_counter()
    # the config and the batcher straight from the app: each FastAPI dependency costs ~10 us a request
    state = request.app.state
    check_batch("queries", queries.height, state.config.max_predict_queries)
    strict = bool(getattr(request.state, "body_fields", {}).get("strict", False))
    parse_s = getattr(request.state, "parse_s", 0.0)
    batcher: RequestBatcher | None = state.request_batcher
    if batcher is None or queries.height > batcher.max_request_rows:
        # large batches (and --no-batching): the whole request in the thread pool, off the event loop
        return await run_in_threadpool(_predict, dispatch, queries, strict, t0, parse_s)
    # a few queries: validated rows go to the batcher, which builds one frame for all it merges
    t_model = time.perf_counter()
    answer = checked_answer("gemm", queries, await batcher.predict(dispatch, "gemm", queries, strict=strict))
    return _response(answer, t0, time.perf_counter() - t_model, parse_s)


def _predict(dispatch: Dispatch, queries: QueryRows, strict: bool, t0: float, parse_s: float) -> Response:
    t_model = time.perf_counter()
    frame = queries.frame()
    parse_s += time.perf_counter() - t_model
    answer = run_dispatch(dispatch, "gemm", frame.select(INPUTS["gemm"]), strict=strict)
    return _response(answer, t0, time.perf_counter() - t_model, parse_s)


def _response(answer: Answer, t0: float, model_s: float, parse_s: float) -> Response:
    head: dict[str, object] = {
        "model": {"name": answer.model.name, "version": answer.model.version},
        "predictor": answer.predictor,
        **domain_fields(answer.in_domain),
        "count": answer.outputs.height,
    }
    if answer.warnings:
        head["warnings"] = answer.warnings
    resp = json_predictions(head, "predictions", answer.outputs, OUTPUTS["gemm"])
    resp.headers["Server-Timing"] = server_timing(
        model=model_s, handler=time.perf_counter() - t0, parse=parse_s
    )
    return resp
