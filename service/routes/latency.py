"""POST /v1/predict/latency: latency of architectures on an imported or adapted device."""

from __future__ import annotations

from typing import Annotated

import polars as pl
from fastapi import APIRouter, Depends
from fastapi.responses import Response

from hwsurrogate.service.body import json_body, request_body
from hwsurrogate.service.deps import ArchIndexDep, ConfigDep, DispatchDep
from hwsurrogate.service.lookup import canonical_keys
from hwsurrogate.service.routes._common import check_batch, domain_fields, finite_or_null, json_response
from hwsurrogate.service.schemas import LatencyPredictionBatch, LatencyQueryBatch
from hwsurrogate.service.served import run_dispatch

router = APIRouter(prefix="/v1/predict", tags=["predict"])


@router.post(
    "/latency",
    openapi_extra=request_body(LatencyQueryBatch),
    response_model=LatencyPredictionBatch,
    responses={
        404: {"description": "unknown device or arch index"},
        413: {"description": "too many architectures"},
        503: {"description": "no latency model served and the device is not adapted"},
    },
)
def predict_latency(
    batch: Annotated[LatencyQueryBatch, Depends(json_body(LatencyQueryBatch))],
    dispatch: DispatchDep,
    arch_index: ArchIndexDep,
    config: ConfigDep,
) -> Response:
    """Devices adapted with ``POST /v1/devices`` use their few-shot predictor; others the served model.

    Each architecture is its canonical ``arch_key`` (validated) or its ``arch_index`` in the
    space (resolved through the store's latency table).
    """
    check_batch("archs", len(batch.archs), config.max_predict_queries)
    keys = pl.Series("arch_key", canonical_keys(batch.space, [a.arch_key for a in batch.archs], field="archs"),
                     dtype=pl.String)  # fmt: skip
    if keys.null_count():
        missing = keys.is_null()
        idx = pl.Series([a.arch_index for a in batch.archs], dtype=pl.Int64).filter(missing)
        resolved = arch_index.resolve(batch.space, idx, field="archs")
        keys = keys.scatter(missing.arg_true(), resolved)
    frame = pl.DataFrame({"device_id": batch.device, "space": batch.space, "arch_key": keys})
    answer = run_dispatch(dispatch, "latency", frame, strict=batch.strict)
    latency = answer.outputs["latency_ms"].cast(pl.Float64)
    rows = finite_or_null(pl.DataFrame({"arch_key": keys, "latency_ms": latency}))
    head = {
        "device": batch.device,
        "space": batch.space,
        "predictor": answer.predictor,
        "model": {"name": answer.model.name, "version": answer.model.version},
        "warnings": answer.warnings,
        **domain_fields(answer.in_domain),
        "count": rows.height,
    }
    return json_response(head, "predictions", rows)
