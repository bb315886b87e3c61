"""POST /v1/predict/fpga: resources and cycles of hls4ml models or HLS designs."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated

import polars as pl
from fastapi import APIRouter, Depends, HTTPException

from hwsurrogate.service.body import json_body, request_body
from hwsurrogate.service.deps import ConfigDep, DispatchDep, ModelsDep
from hwsurrogate.service.errors import InvalidFieldError
from hwsurrogate.service.routes._common import check_batch, domain_fields, finite_or_null
from hwsurrogate.service.schemas import (
    FpgaPrediction,
    FpgaPredictionBatch,
    FpgaQueryBatch,
    Hls4mlDesign,
    Hls4mlOnnxPrediction,
    Hls4mlOnnxQuery,
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
    out = finite_or_null(answer.outputs, OUTPUTS[task])
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


@router.post(
    "/fpga/onnx",
    openapi_extra=request_body(Hls4mlOnnxQuery),
    response_model=Hls4mlOnnxPrediction,
    responses={
        422: {"description": "bad ONNX file or hls4ml config (``field`` names it), or unsupported layer"},
        501: {"description": "hls4ml is not installed on the server"},
        503: {"description": "no fpga-hls4ml model is served"},
    },
)
def predict_fpga_onnx(
    query: Annotated[Hls4mlOnnxQuery, Depends(json_body(Hls4mlOnnxQuery))],
    models: ModelsDep,
    dispatch: DispatchDep,
) -> Hls4mlOnnxPrediction:
    """An ONNX model plus its hls4ml configuration -> LUT/FF/DSP/BRAM, cycles, II.

    hls4ml 1.3 converts the model to its model graph (no Vivado; the file is parsed as protobuf,
    nothing in it runs) and the layer list it settles on is what the surrogate reads, so the
    reuse factors and precisions are hls4ml's. A reuse factor that does not divide a layer, an
    unknown precision or a layer hls4ml or the surrogate does not support is a 422 naming it.
    """
    import importlib.util

    from hwsurrogate.surrogates.features import hls4ml_frontend as fe

    if importlib.util.find_spec("hls4ml") is None or importlib.util.find_spec("qonnx") is None:
        raise HTTPException(501, detail="this server has no hls4ml: pip install 'hwsurrogate[hls4ml]'")
    try:
        data = base64.b64decode(query.onnx_base64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidFieldError("onnx_base64", "onnx_base64 is not valid base64") from None
    raw = query.hls4ml_config.encode() if isinstance(query.hls4ml_config, str) else query.hls4ml_config
    try:
        design = fe.onnx_design(data, fe.read_hls4ml_config(raw), part=query.part)
    except fe.Hls4mlConfigError as exc:
        field = "onnx_base64" if exc.field == "model" else f"hls4ml_config.{exc.field}"
        raise InvalidFieldError(field.removesuffix(".config"), str(exc)) from None
    frame = pl.DataFrame([design.query()], schema_overrides={"reuse_factor": pl.Int64})
    preds, notes, flags = _predict(dispatch, models, "fpga-hls4ml", frame, "hls4ml", query.strict)
    return Hls4mlOnnxPrediction(
        layers=design.layers, reuse_factor=design.reuse_factor, precision=design.precision,
        strategy=design.strategy, io_type=design.io_type, part=design.part, warnings=notes,
        in_domain=flags[0], prediction=preds[0],
    )  # fmt: skip
