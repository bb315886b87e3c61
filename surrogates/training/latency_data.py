"""Reading the latency table for training and benchmarks (the HELP split is in :mod:`.splits`).

Everything goes through :class:`~hwsurrogate.datasets.store.DatasetStore`; nothing here reads
source files. ``wide`` frames have one row per architecture (``arch_index``, ``arch_key``) and
one ``latency_ms`` column per device id.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import TrainingDataError, UnknownDeviceError
from hwsurrogate.surrogates.features import nas as graphs


def read_latency(
    store: DatasetStore,
    *,
    space: str,
    devices: Sequence[str] | None = None,
    source: str | None = None,
) -> pl.DataFrame:
    """Long latency rows of one space (optionally some devices / one source), checked.

    Raises :class:`UnknownDeviceError` for a requested device with no rows in ``space`` and
    :class:`TrainingDataError` when nothing is left.
    """
    graphs.check_space(space)
    frame = store.scan("latency").filter(pl.col("space") == space)
    if source is not None:
        frame = frame.filter(pl.col("source") == source)
    frame = frame.select("device_id", "arch_index", "arch_key", "latency_ms").collect()
    if devices:
        present = set(frame["device_id"].unique().to_list())
        for d in devices:
            if d not in present:
                raise UnknownDeviceError(d, sorted(present))
        frame = frame.filter(pl.col("device_id").is_in(list(devices)))
    if frame.height == 0:
        where = f" from source {source!r}" if source else ""
        raise TrainingDataError(
            f"no {space} latency rows{where} in the store; run `hws data import help` first"
        )
    return frame


def to_wide(frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """Pivot long rows to one row per architecture and one column per device (NaN = missing)."""
    bad = frame.filter(~pl.col("latency_ms").is_finite() | (pl.col("latency_ms") <= 0))
    if bad.height:
        raise TrainingDataError(
            f"latency_ms must be finite and > 0; {bad.height} bad rows, first on {bad['device_id'][0]!r} "
            f"arch {bad['arch_key'][0]!r}"
        )
    dupes = frame.group_by("device_id", "arch_key").len().filter(pl.col("len") > 1)
    if dupes.height:  # several measurements of one arch (e.g. batches): keep their median
        frame = frame.group_by("device_id", "arch_key").agg(
            pl.col("arch_index").first(), pl.col("latency_ms").median()
        )
    devices = sorted(frame["device_id"].unique().to_list())
    wide = (
        frame.pivot(on="device_id", index=["arch_key"], values="latency_ms")
        .join(frame.group_by("arch_key").agg(pl.col("arch_index").min()), on="arch_key")
        .sort("arch_index", "arch_key", nulls_last=True)
    )
    return wide.select("arch_index", "arch_key", *devices), devices
