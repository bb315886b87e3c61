"""Helpers the prediction routes share: batch limits, columns from pydantic lists, fast JSON out."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import polars as pl
from fastapi.responses import Response
from pydantic_core import to_json

from hwsurrogate.service.errors import PayloadTooLargeError


def check_batch(field: str, n: int, limit: int) -> None:
    if n > limit:
        raise PayloadTooLargeError(field, n, limit)


def columns(items: Sequence[Any], fields: Sequence[str]) -> dict[str, list[Any]]:
    """Column lists of ``fields`` from a list of pydantic objects (no per-row dicts)."""
    return {f: [getattr(q, f) for q in items] for f in fields}


def finite_or_null(frame: pl.DataFrame, floats: Sequence[str] | None = None) -> pl.DataFrame:
    """NaN/inf model outputs become null: the API never sends non-JSON numbers.

    With ``floats``: only those columns, cast to Float64 first (one polars query, not two)."""
    if floats is None:
        return frame.with_columns(
            pl.when(pl.col(c).is_finite()).then(pl.col(c)).otherwise(None).alias(c)
            for c, dt in frame.schema.items()
            if dt.is_float()
        )
    as_float = {c: pl.col(c).cast(pl.Float64) for c in floats}
    return frame.select(pl.when(e.is_finite()).then(e).otherwise(None).alias(c) for c, e in as_float.items())


def domain_fields(in_domain: Sequence[bool | None]) -> dict[str, Any]:
    """The response's ``in_domain`` (every query inside the training domain: true; some outside:
    false; the model's domain unknown: null) and ``out_of_domain`` (indices of the queries outside)."""
    if any(flag is None for flag in in_domain) or not in_domain:
        return {"in_domain": None, "out_of_domain": []}
    outside = [i for i, flag in enumerate(in_domain) if flag is False]
    return {"in_domain": not outside, "out_of_domain": outside}


def json_response(head: dict[str, Any], rows_key: str, rows: pl.DataFrame, status: int = 200) -> Response:
    """``{**head, rows_key: [row, ...]}`` serialised by polars (fast for 10k-row batches)."""
    prefix = json.dumps(head)[:-1]
    sep = ", " if head else ""
    body = f'{prefix}{sep}"{rows_key}": {rows.write_json()}}}'
    return Response(content=body.encode(), media_type="application/json", status_code=status)


#: frames up to this many rows are encoded by :func:`json_predictions` in Python
SMALL_ROWS = 64


def json_predictions(
    head: dict[str, Any], rows_key: str, outputs: pl.DataFrame, floats: Sequence[str]
) -> Response:
    """``json_response(head, rows_key, finite_or_null(outputs, floats))``: the same content.

    A few rows (a single query's answer) are encoded in Python: the two polars queries cost
    ~0.14 ms, fifteen times the whole Python path; larger frames take the polars path."""
    if outputs.height > SMALL_ROWS:
        return json_response(head, rows_key, finite_or_null(outputs, floats))
    if outputs.columns == list(floats) and all(dt == pl.Float64 for dt in outputs.dtypes):
        records = outputs.rows()  # one call (~0.4 us) instead of a cast and a list per column (~7 us)
    else:
        records = list(zip(*(outputs.get_column(c).cast(pl.Float64).to_list() for c in floats), strict=True))
    rows = [
        {c: v if v is not None and math.isfinite(v) else None for c, v in zip(floats, row, strict=True)}
        for row in records
    ]
    # pydantic-core's serializer (Rust; FastAPI's own dependency): ~2 us for a one-query answer
    # where the standard library's two json.dumps calls took ~7.5 us (~40 us from cold caches,
    # the serving case); numbers in the shortest form that reads back as the same float
    return Response(content=to_json({**head, rows_key: rows}), media_type="application/json")


def server_timing(**seconds: float) -> str:
    """A ``Server-Timing`` header value (durations in ms), e.g. ``model;dur=12.3, handler;dur=15.0``."""
    return ", ".join(f"{name};dur={value * 1e3:.2f}" for name, value in seconds.items())
