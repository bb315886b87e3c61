"""Datasets: schemas, counts and sources; paged row downloads; validated, idempotent uploads."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Literal

import polars as pl
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from hwsurrogate.datasets.importers import IMPORTERS
from hwsurrogate.datasets.schemas import (
    KINDS,
    check_kind,
    columns,
    conform,
    describe,
    records_frame,
    with_measurement_id,
)
from hwsurrogate.datasets.store import DatasetStore, Page, partition_name
from hwsurrogate.errors import SchemaMismatchError, StoreError
from hwsurrogate.service.deps import ConfigDep, StoreDep, WriteAuth
from hwsurrogate.service.errors import InvalidFieldError, NotFoundError, PayloadTooLargeError
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
        page = store.page(
            kind,
            offset=offset,
            limit=limit,
            batch_rows=STREAM_CHUNK_ROWS,
            device=device,
            source=source,
            space=space,
        )
    except StoreError as exc:
        raise InvalidFieldError(
            "device" if device is not None and "device" in str(exc) else "space", str(exc)
        ) from None
    name = f"{kind}-{offset}-{offset + page.rows}"
    headers = {"X-Total-Count": str(page.total)}
    if format == "csv":
        headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        return StreamingResponse(_csv_chunks(page), media_type="text/csv", headers=headers)
    if format == "parquet":  # one file: built in memory, bounded by max_page_rows
        buf = io.BytesIO()
        frames = list(page.batches)
        (pl.concat(frames) if frames else pl.DataFrame(schema=page.schema)).write_parquet(
            buf, compression="zstd"
        )
        headers["Content-Disposition"] = f'attachment; filename="{name}.parquet"'
        return Response(buf.getvalue(), media_type="application/vnd.apache.parquet", headers=headers)
    head = {"kind": kind, "total": page.total, "limit": limit, "offset": offset}
    return StreamingResponse(_json_chunks(head, page), media_type="application/json", headers=headers)


#: Rows per chunk of a streamed download: memory per request stays near one chunk, not one page.
STREAM_CHUNK_ROWS = 2000
#: Downloads reading or encoding a chunk at once (the rest wait): bounds the server's memory
#: under many concurrent downloads; more would not be faster, the work is CPU-bound.
STREAM_SLOTS = threading.BoundedSemaphore(4)
#: A CSV cell starting with one of these is a formula to a spreadsheet; it gets a leading quote.
_FORMULA_START = r"^[=+\-@\t\r]"


def _encoded(page: Page, encode: Callable[[pl.DataFrame], bytes]) -> Iterator[bytes]:
    """``encode`` of each batch of ``page``, read and encoded while holding one of :data:`STREAM_SLOTS`."""
    while True:
        with STREAM_SLOTS:
            frame = next(page.batches, None)
            if frame is None:
                return
            data = encode(frame)
        yield data


def _json_rows(frame: pl.DataFrame) -> bytes:
    """The rows of ``frame`` as JSON objects separated by commas (no brackets)."""
    frame = frame.with_columns(pl.col(pl.Datetime).dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ"))
    return frame.write_json().encode()[1:-1]


def _json_chunks(head: dict[str, object], page: Page) -> Iterator[bytes]:
    """``{**head, "rows": [...]}`` encoded chunk by chunk (what ``json_response`` sends, streamed)."""
    yield (json.dumps(head)[:-1] + ', "rows": [').encode()
    sep = b""
    for data in _encoded(page, _json_rows):
        if data:
            yield sep + data
            sep = b","
    yield b"]}"


def neutralise_formulas(frame: pl.DataFrame) -> pl.DataFrame:
    """Text cells starting with = + - @ (or a tab / CR) get a leading ``'`` so no spreadsheet runs them."""
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(_FORMULA_START))
        .then(pl.lit("'") + pl.col(c))
        .otherwise(pl.col(c))
        .alias(c)
        for c, dt in frame.schema.items()
        if dt == pl.String
    )


def _csv_chunks(page: Page) -> Iterator[bytes]:
    header = [True]

    def encode(frame: pl.DataFrame) -> bytes:
        data = neutralise_formulas(frame).write_csv(include_header=header[0]).encode()
        header[0] = False
        return data

    yield from _encoded(page, encode)
    if header[0]:  # no chunk at all: still send the header line
        yield pl.DataFrame(schema=page.schema).write_csv().encode()


def _parquet_frame(kind: str, body: bytes, max_rows: int, max_bytes: int) -> pl.DataFrame:
    """Decode a parquet upload only after its footer says it fits: rows, columns, types, size.

    The footer is the uploader's claim; the decoded table must then match it (a file whose
    pages hold more than its footer declares is refused).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(pa.BufferReader(body))
        meta = pf.metadata
        arrow_schema = pf.schema_arrow
    except Exception as exc:
        raise InvalidFieldError("body", f"body: not a readable parquet file ({type(exc).__name__})") from None
    if meta.num_rows > max_rows:
        raise PayloadTooLargeError("rows", meta.num_rows, max_rows)
    decoded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if decoded > max_bytes:
        raise PayloadTooLargeError("body", decoded, max_bytes, unit="decoded bytes (per the parquet footer)")
    known = {c.name for c in columns(kind)}
    for f in arrow_schema:
        if f.name not in known:
            raise InvalidFieldError(
                f"rows.{f.name[:128]}",
                f"{kind}: unexpected column {f.name[:128]!r}; the schema has {sorted(known)}",
            )
        t = f.type
        if pa.types.is_dictionary(t):
            t = t.value_type
        scalar = (
            pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
            or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)
            or pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_null(t)
        )  # fmt: skip
        if not scalar:
            raise InvalidFieldError(
                f"rows.{f.name}", f"{kind}: column {f.name!r} has type {t}; expected a scalar"
            )
    try:
        table = pf.read(use_pandas_metadata=False)
    except Exception as exc:
        raise InvalidFieldError("body", f"body: not a readable parquet file ({type(exc).__name__})") from None
    for name, column in zip(table.column_names, table.columns, strict=True):
        try:  # pyarrow does not check UTF-8 when decoding: bad text would poison the stored table
            column.validate(full=True)
        except Exception as exc:
            raise InvalidFieldError(
                f"rows.{name}", f"{kind}: column {name!r} is not valid ({str(exc).splitlines()[0][:200]})"
            ) from None
    # a fresh table: the file's schema and field metadata (uploader bytes) never reach polars
    table = pa.Table.from_arrays(table.columns, names=table.column_names)
    try:
        frame = pl.from_arrow(table)
    except (Exception, pl.exceptions.PanicException) as exc:
        raise InvalidFieldError("body", f"body: not a readable parquet file ({type(exc).__name__})") from None
    assert isinstance(frame, pl.DataFrame)
    if frame.height != meta.num_rows:
        raise InvalidFieldError(
            "body", f"body: the file holds {frame.height} rows, its footer says {meta.num_rows}"
        )
    return frame


def _read_frame(kind: str, body: bytes, content_type: str, max_rows: int, max_bytes: int) -> pl.DataFrame:
    ctype = content_type.split(";")[0].strip().lower()
    if ctype in PARQUET_TYPES:
        frame = _parquet_frame(kind, body, max_rows, max_bytes)
    elif ctype == "application/json":
        try:
            upload = RowsUpload.model_validate_json(body)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None
        if len(upload.rows) > max_rows:
            raise PayloadTooLargeError("rows", len(upload.rows), max_rows)
        frame = records_frame(kind, upload.rows)
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


#: Device-id namespaces that belong to the importers ('neusight/Tesla_T4'): an upload cannot add
#: rows under them, so it can never shadow or extend an imported source's devices.
RESERVED_NAMESPACES = frozenset(IMPORTERS)


def _check_namespace(frame: pl.DataFrame) -> None:
    if "device_id" not in frame.columns:
        return
    bad = frame["device_id"].str.split("/").list.first().is_in(sorted(RESERVED_NAMESPACES))
    if bad.any():
        row = int(bad.arg_true()[0])
        raise InvalidFieldError(
            f"rows.{row}.device_id",
            f"rows: row {row} device_id {frame['device_id'][row]!r} is in the namespace of an imported "
            f"source ({', '.join(sorted(RESERVED_NAMESPACES))}); uploads name their own devices, "
            "e.g. 'local/<host>-cpu' or '<team>/<device>'",
        )


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
    limits = (config.max_upload_rows, config.max_upload_decoded_bytes)
    return await run_in_threadpool(_store_upload, store, kind, body, ctype, client, limits)


def _store_upload(
    store: DatasetStore, kind: str, body: bytes, content_type: str, client: str, limits: tuple[int, int]
) -> UploadResult:
    """Parse, validate, stamp provenance and append (off the event loop: parsing 50k rows takes a while).

    The frame is conformed (strictly typed) before its ``measurement_id`` is derived, and the
    derived id depends on the canonical values only, not on the client: re-sending the same
    measurement under another client name adds nothing.
    """
    frame = _read_frame(kind, body, content_type, *limits)
    source = f"upload:{client}"
    now = datetime.now(UTC)
    frame = frame.drop([c for c in ("imported_at", "source") if c in frame.columns])
    frame = frame.with_columns(
        pl.lit(source).alias("source"), pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias("imported_at")
    )
    if "origin" not in frame.columns:
        frame = frame.with_columns(pl.lit(source).alias("origin"))
    elif frame["origin"].dtype in (pl.String, pl.Null):
        frame = frame.with_columns(pl.col("origin").cast(pl.String).fill_null(source))
    derive = "measurement_id" not in frame.columns
    if derive:
        frame = frame.with_columns(pl.lit("").alias("measurement_id"))
    frame = conform(kind, frame)
    if derive:
        frame = with_measurement_id(frame, kind, namespace="upload")
    _check_namespace(frame)
    received = frame.height
    added = store.append(kind, frame, partition=source)
    return UploadResult(
        kind=kind, source=source, partition=partition_name(source), received=received, added=added,
        duplicates=received - added,
    )  # fmt: skip
