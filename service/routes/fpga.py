"""POST /v1/predict/fpga: resources and cycles of hls4ml models or HLS designs."""

from __future__ import annotations

import json
from typing import Annotated

import polars as pl
from fastapi import APIRouter, Depends

from hwsurrogate.service.body import json_body, request_body
from hwsurrogate.service.deps import ConfigDep, DispatchDep, ModelsDep
from hwsurrogate.service.routes._common import check_batch, domain_fields, finite_or_null
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
    dispatch: Dispatch, models: ServedModels, task: str, frame: pl.DataFrame, kind: str, strict: bool
) -> tuple[list[FpgaPrediction], list[str], list[bool | None]]:
    answer = run_dispatch(dispatch, task, frame, strict=strict)
    out = finite_or_null(answer.outputs.select(OUTPUTS[task]).cast(dict.fromkeys(OUTPUTS[task], pl.Float64)))
    ref = ModelRef(name=answer.model.name, version=answer.model.version)
    stage = models.stage(task)
    preds = [FpgaPrediction(type=kind, stage=stage, model=ref, **row) for row in out.iter_rows(named=True)]  # type: ignore[arg-type]
    flags = answer.in_domain if len(answer.in_domain) == len(preds) else [None] * len(preds)
    return preds, [f"{kind}: {w}" for w in answer.warnings], flags


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
    warnings: list[str] = []
    in_domain: list[bool | None] = [None] * len(batch.designs)
    for i, d in enumerate(batch.designs):
        groups[d.type].append(i)
    for kind, task, make in (("hls4ml", "fpga-hls4ml", _hls4ml_frame), ("hls", "fpga-hlsyn", _hls_frame)):
        if groups[kind]:
            frame = make([batch.designs[i] for i in groups[kind]])  # type: ignore[arg-type]
            preds, notes, flags = _predict(dispatch, models, task, frame, kind, batch.strict)
            warnings += notes  # query rows in them count within this design type
            for i, p, flag in zip(groups[kind], preds, flags, strict=True):
                slots[i], in_domain[i] = p, flag
    preds = [p for p in slots if p is not None]
    return FpgaPredictionBatch(
        warnings=warnings, **domain_fields(in_domain), count=len(preds), predictions=preds
    )
