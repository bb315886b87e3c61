"""Devices: list what the store and the few-shot registry know; register an unseen device."""

from __future__ import annotations

import json
import time
from typing import Annotated

import polars as pl
from fastapi import APIRouter, Depends

from hwsurrogate.service.adaptation import AdaptedInfo
from hwsurrogate.service.body import json_body, request_body
from hwsurrogate.service.deps import AdapterDep, ArchIndexDep, DispatchDep, StoreDep, WriteAuth
from hwsurrogate.service.errors import NotFoundError
from hwsurrogate.service.lookup import canonical_keys, store_devices
from hwsurrogate.service.schemas import (
    AdaptedDeviceInfo,
    DeviceDetail,
    DeviceList,
    DeviceRegistered,
    DeviceRegistration,
    DeviceSummary,
)

router = APIRouter(prefix="/v1/devices", tags=["devices"])


def _adapted(info: AdaptedInfo) -> AdaptedDeviceInfo:
    return AdaptedDeviceInfo(
        device_id=info.device_id,
        n_measurements=info.n_measurements,
        spaces=info.spaces,
        created_at=info.created_at,
        details={"model_name": info.model_name, "model_version": info.model_version, **info.details},
    )


@router.get("", response_model=DeviceList)
def list_devices(store: StoreDep, adapter: AdapterDep, dispatch: DispatchDep) -> DeviceList:
    """Devices with rows in the store (gemm, latency, devices tables) and devices adapted from few
    samples; ``tasks`` says per device which prediction tasks can answer it (served or adapted)."""
    known = store_devices(store)
    adapted = {a.device_id for a in adapter.list()}
    ids = sorted(set(known) | adapted)
    tasks = dispatch.tasks_of(ids)
    out = [
        DeviceSummary(
            device_id=d,
            kind=known.get(d, {}).get("kind"),  # type: ignore[arg-type]
            name=known.get(d, {}).get("name"),  # type: ignore[arg-type]
            tables=known.get(d, {}).get("tables", {}),  # type: ignore[arg-type]
            adapted=d in adapted,
            tasks=tasks[d],
        )
        for d in ids
    ]
    return DeviceList(count=len(out), devices=out)


@router.get(
    "/{device_id:path}", response_model=DeviceDetail, responses={404: {"description": "unknown device"}}
)
def get_device(device_id: str, store: StoreDep, adapter: AdapterDep, dispatch: DispatchDep) -> DeviceDetail:
    """One device: its descriptor row (if any), rows per table and its adaptation (if any)."""
    entry = store_devices(store).get(device_id)
    adapted = adapter.get(device_id)
    if entry is None and adapted is None:
        raise NotFoundError("device_id", f"unknown device_id {device_id!r}: not in the store and not adapted")
    entry = entry or {"tables": {}}
    row = entry.get("row")
    descriptors = None
    if isinstance(row, dict):
        descriptors = {
            k: v for k, v in row.items() if k not in ("device_id", "kind", "name") and v is not None
        }
        for key in ("descriptors", "fingerprint"):
            if isinstance(descriptors.get(key), str):
                try:
                    descriptors[key] = json.loads(descriptors[key])
                except ValueError:
                    pass
        descriptors = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in descriptors.items()}
    return DeviceDetail(
        device_id=device_id,
        kind=entry.get("kind"),  # type: ignore[arg-type]
        name=entry.get("name"),  # type: ignore[arg-type]
        tables=entry.get("tables", {}),  # type: ignore[arg-type]
        adapted=adapted is not None,
        tasks=dispatch.tasks_of([device_id])[device_id],
        descriptors=descriptors,
        adaptation=_adapted(adapted) if adapted is not None else None,
    )


@router.post(
    "",
    response_model=DeviceRegistered,
    status_code=201,
    dependencies=[WriteAuth],  # before the body dependency: no body is read for a request without a token
    openapi_extra=request_body(DeviceRegistration),
    responses={
        401: {"description": "missing or wrong token"},
        503: {"description": "few-shot not available"},
    },
)
def register_device(
    body: Annotated[DeviceRegistration, Depends(json_body(DeviceRegistration))],
    adapter: AdapterDep,
    arch_index: ArchIndexDep,
) -> DeviceRegistered:
    """Adapt a latency predictor to an unseen device from a fingerprint and/or a few measurements.

    The fingerprint is ``{space: {arch_index: latency_ms}}`` (the devices table format); each
    measurement names its architecture by ``arch_key`` or ``arch_index``. Needs the write token.
    """
    spaces: list[str] = []
    idx: list[int | None] = []
    keys: list[str | None] = []
    lat: list[float] = []
    for space, table in (body.fingerprint or {}).items():
        for index, ms in table.items():
            spaces.append(space)
            idx.append(int(index))
            keys.append(None)
            lat.append(ms)
    for m in body.measurements or []:
        spaces.append(m.space)
        idx.append(m.arch_index)
        keys.append(m.arch_key)
        lat.append(m.latency_ms)
    frame = pl.DataFrame(
        {
            "device_id": body.device_id,
            "space": spaces,
            "arch_index": idx,
            "arch_key": keys,
            "latency_ms": lat,
        },
        schema_overrides={"arch_index": pl.Int64, "arch_key": pl.String, "latency_ms": pl.Float64},
    )
    parts = []
    for (space,), part in frame.with_row_index("_pos").group_by("space", maintain_order=True):
        field = "measurements" if body.measurements else "fingerprint"
        ks = pl.Series(canonical_keys(str(space), part["arch_key"].to_list(), field=field), dtype=pl.String)
        if ks.null_count():
            missing = ks.is_null()
            resolved = arch_index.resolve(str(space), part["arch_index"].filter(missing), field=field)
            ks = ks.scatter(missing.arg_true(), resolved)
        parts.append(part.with_columns(ks.alias("arch_key")))
    frame = pl.concat(parts).sort("_pos").drop("_pos")
    t0 = time.perf_counter()
    info = adapter.adapt(body.device_id, frame)
    seconds = time.perf_counter() - t0
    return DeviceRegistered(**_adapted(info).model_dump(), adapt_seconds=round(seconds, 4))
