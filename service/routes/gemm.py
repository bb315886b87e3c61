"""POST /v1/predict/gemm: runtime, power and energy of GEMM shapes on a device."""

from __future__ import annotations

import time
from typing import Annotated

import polars as pl
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from hwsurrogate.service.body import json_rows_body, request_body
from hwsurrogate.service.deps import ConfigDep, DispatchDep
from hwsurrogate.service.routes._common import (
    check_batch,
    domain_fields,
    finite_or_null,
    json_response,
    server_timing,
)
from hwsurrogate.service.schemas import GemmPredictionBatch, GemmQueryBatch
from hwsurrogate.service.served import run_dispatch
from hwsurrogate.surrogates.api import INPUTS, OUTPUTS

router = APIRouter(prefix="/v1/predict", tags=["predict"])

#: column types of the query frame (the request's field names; ``device`` becomes ``device_id``)
_SCHEMA = {"device": pl.String, "op": pl.String, "m": pl.Int64, "n": pl.Int64, "k": pl.Int64,
           "batch": pl.Int64, "dtype": pl.String, "layout": pl.String}  # fmt: skip


@router.post(
    "/gemm",
    openapi_extra=request_body(GemmQueryBatch),
    response_model=GemmPredictionBatch,
    responses={413: {"description": "too many queries"}, 503: {"description": "no gemm model served"}},
)
def predict_gemm(
    queries: Annotated[pl.DataFrame, Depends(json_rows_body(GemmQueryBatch, "queries", _SCHEMA))],
    dispatch: DispatchDep,
    config: ConfigDep,
    request: Request,
) -> Response:
    """Predict ``runtime_ms``, ``power_w`` and ``energy_j`` (null when the model has no power target).

    Each prediction says ``in_domain`` (device, op, dtype and shape inside what the model was
    trained on); ``"strict": true`` refuses out-of-domain queries with a 422 instead."""
    t0 = time.perf_counter()
    check_batch("queries", queries.height, config.max_predict_queries)
    frame = queries.rename({"device": "device_id"})
    t_model = time.perf_counter()
    strict = bool(getattr(request.state, "body_fields", {}).get("strict", False))
    answer = run_dispatch(dispatch, "gemm", frame.select(INPUTS["gemm"]), strict=strict)
    t_model = time.perf_counter() - t_model
    out = finite_or_null(answer.outputs, OUTPUTS["gemm"])
    head: dict[str, object] = {
        "model": {"name": answer.model.name, "version": answer.model.version},
        "predictor": answer.predictor,
        **domain_fields(answer.in_domain),
        "count": out.height,
    }
    if answer.warnings:
        head["warnings"] = answer.warnings
    resp = json_response(head, "predictions", out)
    resp.headers["Server-Timing"] = server_timing(
        model=t_model, handler=time.perf_counter() - t0, parse=getattr(request.state, "parse_s", 0.0)
    )
    return resp
