"""POST /v1/predict/fpga: resources and cycles of hls4ml models or HLS designs."""

from __future__ import annotations

import json
from typing import Annotated

import polars as pl
from fastapi import APIRouter, Depends

from hwsurrogate.service.body import json_body, request_body
from hwsurrogate.service.deps import ConfigDep, DispatchDep, ModelsDep
from hwsurrogate.service.routes._common import check_batch, finite_or_null
from hwsurrogate.service.schemas import (
    FpgaPrediction,
    FpgaPredictionBatch,
    FpgaQueryBatch,
    Hls4mlDesign,
    HlsDesign,
    ModelRef,
)
from hwsurrogate.service.served import ServedModels, run_dispatch
from hwsurrogate.surrogates.api import OUTPUTS
from hwsurrogate.surrogates.predict import Dispatch

router = APIRouter(prefix="/v1/predict", tags=["predict"])


def _hls4ml_frame(designs: list[Hls4mlDesign]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "model": [
                json.dumps([layer.model_dump(exclude_none=True) for layer in d.layers], separators=(",", ":"))
                for d in designs
            ],
            "reuse_factor": [d.config.reuse_factor for d in designs],
            "precision": [d.config.precision for d in designs],
            "strategy": [d.config.strategy for d in designs],
            "io_type": [d.config.io_type for d in designs],
            "part": [d.config.part for d in designs],
        },
        schema_overrides={"reuse_factor": pl.Int64},
    )


def _hls_frame(designs: list[HlsDesign]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "kernel": [d.kernel for d in designs],
            "pragmas": [json.dumps(d.pragmas, sort_keys=True, separators=(",", ":")) for d in designs],
            "tool": [d.tool for d in designs],
        }
    )


def _predict(
    dispatch: Dispatch, models: ServedModels, task: str, frame: pl.DataFrame, kind: str
) -> list[FpgaPrediction]:
    answer = run_dispatch(dispatch, task, frame)
    out = finite_or_null(answer.outputs.cast(dict.fromkeys(OUTPUTS[task], pl.Float64)))
    ref = ModelRef(name=answer.model.name, version=answer.model.version)
    stage = models.stage(task)
    return [FpgaPrediction(type=kind, stage=stage, model=ref, **row) for row in out.iter_rows(named=True)]  # type: ignore[arg-type]


@router.post(
    "/fpga",
    openapi_extra=request_body(FpgaQueryBatch),
    response_model=FpgaPredictionBatch,
    responses={413: {"description": "too many designs"}, 503: {"description": "no model for a design type"}},
)
def predict_fpga(
    batch: Annotated[FpgaQueryBatch, Depends(json_body(FpgaQueryBatch))],
    models: ModelsDep,
    dispatch: DispatchDep,
    config: ConfigDep,
) -> FpgaPredictionBatch:
    """``type: hls4ml`` (layer list + config) -> LUT/FF/DSP/BRAM, cycles, II; ``type: hls`` (kernel +
    pragmas) -> cycles, resources and validity probability. ``stage`` says whether the numbers are
    HLS estimates or post-synthesis results."""
    check_batch("designs", len(batch.designs), config.max_predict_queries)
    slots: list[FpgaPrediction | None] = [None] * len(batch.designs)
    groups: dict[str, list[int]] = {"hls4ml": [], "hls": []}
    for i, d in enumerate(batch.designs):
        groups[d.type].append(i)
    if groups["hls4ml"]:
        frame = _hls4ml_frame([batch.designs[i] for i in groups["hls4ml"]])  # type: ignore[misc]
        for i, p in zip(groups["hls4ml"], _predict(dispatch, models, "fpga-hls4ml", frame, "hls4ml"), strict=True):
            slots[i] = p
    if groups["hls"]:
        frame = _hls_frame([batch.designs[i] for i in groups["hls"]])  # type: ignore[misc]
        for i, p in zip(groups["hls"], _predict(dispatch, models, "fpga-hlsyn", frame, "hls"), strict=True):
            slots[i] = p
    preds = [p for p in slots if p is not None]
    return FpgaPredictionBatch(count=len(preds), predictions=preds)
