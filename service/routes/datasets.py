"""Datasets: schemas, counts and sources; paged row downloads; validated, idempotent uploads."""

from __future__ import annotations

import io
from typing import Annotated, Literal

import polars as pl
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from hwsurrogate.datasets.schemas import KINDS, check_kind, describe, with_measurement_id
from hwsurrogate.datasets.store import DatasetStore, partition_name
from hwsurrogate.errors import SchemaMismatchError, StoreError
from hwsurrogate.service.deps import ConfigDep, StoreDep, WriteAuth
from hwsurrogate.service.errors import InvalidFieldError, NotFoundError, PayloadTooLargeError
from hwsurrogate.service.routes._common import json_response
from hwsurrogate.service.schemas import (
    DatasetDetail,
    DatasetList,
    DatasetSummary,
    RowsPage,
    RowsUpload,
    UploadResult,
)

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

PARQUET_TYPES = ("application/vnd.apache.parquet", "application/x-parquet", "application/octet-stream")
ClientName = Annotated[
    str,
    Query(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="uploader name; rows get source 'upload:<client>'",
    ),
]


def _kind(kind: str) -> str:
    """Only declared table kinds (no path ever built from an unchecked name)."""
    try:
        return check_kind(kind)
    except SchemaMismatchError:
        raise NotFoundError(
            "kind", f"unknown dataset kind {kind!r}; expected one of {', '.join(KINDS)}"
        ) from None


def _summary(entry: dict[str, object], kind: str) -> DatasetSummary:
    devices = entry.get("devices")
    return DatasetSummary(
        kind=kind,
        rows=int(entry["rows"]),  # type: ignore[arg-type]
        sources=dict(entry["sources"]),  # type: ignore[arg-type]
        n_devices=len(devices) if isinstance(devices, list) else None,
    )


@router.get("", response_model=DatasetList)
def list_datasets(store: StoreDep) -> DatasetList:
    """Every table kind with its row count per source."""
    return DatasetList(datasets=[_summary(e, k) for k, e in store.summary().items()])


@router.get("/{kind}", response_model=DatasetDetail, responses={404: {"description": "unknown kind"}})
def get_dataset(kind: str, store: StoreDep) -> DatasetDetail:
    """The declared schema of ``kind`` (columns, dtypes, bounds, allowed values, docs), counts and sources."""
    kind = _kind(kind)
    lf = store.scan(kind)
    per_source = lf.group_by("source").agg(pl.len().alias("rows")).sort("source").collect()
    devices = None
    if "device_id" in lf.collect_schema():
        devices = lf.select(pl.col("device_id").unique().sort()).collect()["device_id"].to_list()
    return DatasetDetail(
        kind=kind,
        rows=int(per_source["rows"].sum()) if per_source.height else 0,
        sources=dict(zip(per_source["source"].to_list(), per_source["rows"].to_list(), strict=True)),
        n_devices=len(devices) if devices is not None else None,
        devices=devices,
        columns=describe(kind),  # type: ignore[arg-type]
    )


@router.get(
    "/{kind}/rows",
    response_model=RowsPage,
    responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}, 404: {}},
)
def get_rows(
    kind: str,
    store: StoreDep,
    config: ConfigDep,
    device: Annotated[str | None, Query(max_length=128)] = None,
    source: Annotated[str | None, Query(max_length=128)] = None,
    space: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    format: Annotated[Literal["json", "csv", "parquet"], Query()] = "json",
) -> Response:
    """A page of rows, filtered by device / source / space; ``format=csv|parquet`` downloads a file."""
    kind = _kind(kind)
    limit = min(limit, config.max_page_rows)
    try:
        lf = store.scan(kind, device=device, source=source, space=space)
    except StoreError as exc:
        raise InvalidFieldError(
            "device" if device is not None and "device" in str(exc) else "space", str(exc)
        ) from None
    total = int(lf.select(pl.len()).collect().item())
    page = lf.slice(offset, limit).collect()
    name = f"{kind}-{offset}-{offset + page.height}"
    headers = {"X-Total-Count": str(total)}
    if format == "csv":
        headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        return Response(page.write_csv(), media_type="text/csv", headers=headers)
    if format == "parquet":
        buf = io.BytesIO()
        page.write_parquet(buf, compression="zstd")
        headers["Content-Disposition"] = f'attachment; filename="{name}.parquet"'
        return Response(buf.getvalue(), media_type="application/vnd.apache.parquet", headers=headers)
    page = page.with_columns(pl.col(pl.Datetime).dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ"))
    resp = json_response({"kind": kind, "total": total, "limit": limit, "offset": offset}, "rows", page)
    resp.headers.update(headers)
    return resp


def _read_frame(body: bytes, content_type: str, max_rows: int) -> pl.DataFrame:
    ctype = content_type.split(";")[0].strip().lower()
    if ctype in PARQUET_TYPES:
        try:
            frame = pl.read_parquet(io.BytesIO(body))  # polars only: no pickle, no pandas metadata
        except Exception as exc:
            raise InvalidFieldError(
                "body", f"body: not a readable parquet file ({type(exc).__name__})"
            ) from None
    elif ctype == "application/json":
        try:
            upload = RowsUpload.model_validate_json(body)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None
        if len(upload.rows) > max_rows:
            raise PayloadTooLargeError("rows", len(upload.rows), max_rows)
        try:
            frame = pl.DataFrame(upload.rows, infer_schema_length=None)
        except Exception:
            frame = _diagnose(upload.rows)
    else:
        raise InvalidFieldError(
            "content-type",
            f"content-type {ctype!r}: send application/json rows or an application/vnd.apache.parquet file",
        )
    if frame.height > max_rows:
        raise PayloadTooLargeError("rows", frame.height, max_rows)
    if frame.height == 0:
        raise InvalidFieldError("rows", "rows: the upload holds no rows")
    return frame


def _diagnose(rows: list[dict[str, object]]) -> pl.DataFrame:
    """Name the column whose values polars cannot put into one typed column."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    for name in names:
        try:
            pl.Series(name, [r.get(name) for r in rows], strict=True)
        except Exception:
            kinds = sorted({type(r.get(name)).__name__ for r in rows if r.get(name) is not None})
            raise InvalidFieldError(
                f"rows.{name}", f"rows: column {name!r} mixes value types {kinds}"
            ) from None
    raise InvalidFieldError("rows", "rows: could not build a table from the rows")


@router.post(
    "/{kind}/rows",
    response_model=UploadResult,
    dependencies=[WriteAuth],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": RowsUpload.model_json_schema()},
                "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
    responses={401: {}, 404: {}, 413: {}, 422: {}},
)
async def upload_rows(
    kind: str, request: Request, store: StoreDep, config: ConfigDep, client: ClientName = "anonymous"
) -> UploadResult:
    """Add measurements to ``kind``, validated against its schema (422 names the column).

    Rows get ``source='upload:<client>'`` and land in that source's partition; the write is atomic.
    Rows whose ``measurement_id`` is already stored are skipped, so re-sending is harmless; a
    missing ``measurement_id`` column is derived from the table's natural key.
    """
    kind = _kind(kind)
    body = await request.body()
    ctype = request.headers.get("content-type", "application/json")
    return await run_in_threadpool(_store_upload, store, kind, body, ctype, client, config.max_upload_rows)


def _store_upload(
    store: DatasetStore, kind: str, body: bytes, content_type: str, client: str, max_rows: int
) -> UploadResult:
    """Parse, stamp provenance and append (off the event loop: parsing 50k rows takes a while)."""
    frame = _read_frame(body, content_type, max_rows)
    source = f"upload:{client}"
    frame = frame.drop([c for c in ("imported_at", "source") if c in frame.columns])
    frame = frame.with_columns(pl.lit(source).alias("source"))
    if "origin" not in frame.columns:
        frame = frame.with_columns(pl.lit(source).alias("origin"))
    else:
        frame = frame.with_columns(pl.col("origin").cast(pl.String, strict=False).fill_null(source))
    if "measurement_id" not in frame.columns:
        frame = with_measurement_id(frame, kind)
    received = frame.height
    added = store.append(kind, frame, partition=source)
    return UploadResult(
        kind=kind, source=source, partition=partition_name(source), received=received, added=added,
        duplicates=received - added,
    )  # fmt: skip
