"""Reading the latency table for training and benchmarks, and the HELP split protocol.

Everything goes through :class:`~hwsurrogate.datasets.store.DatasetStore`; nothing here reads
source files. ``wide`` frames have one row per architecture (``arch_index``, ``arch_key``) and
one ``latency_ms`` column per device id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import TrainingDataError, UnknownDeviceError
from hwsurrogate.surrogates.features import nas as graphs

#: HELP protocol: size of the per-device training pool (first indices of the space's list).
HELP_TRAIN_POOL: dict[str, int] = {"nb201": 900, "fbnet": 4000, "ofa": 4000}
#: HELP protocol: the test set is the next 1000 indices, trimmed to the 10th-90th percentile.
HELP_TEST_SIZE = 1000


@dataclass(frozen=True)
class Split:
    """Arch indices of a train pool and a test set."""

    train: np.ndarray
    test: np.ndarray


def help_split(space: str) -> Split:
    """HELP's split of ``space``: train = first 900/4000 indices, test = the next 1000."""
    n = HELP_TRAIN_POOL[graphs.check_space(space)]
    return Split(train=np.arange(n), test=np.arange(n, n + HELP_TEST_SIZE))


def trim_10_90(latency_ms: np.ndarray) -> np.ndarray:
    """Positions of the 10th-90th percentile by rank (1000 -> the 800 middle values), as HELP."""
    y = np.asarray(latency_ms, dtype=float)
    order = np.argsort(y, kind="stable")
    lo, hi = int(len(y) * 0.1), int(len(y) * 0.9)
    return np.sort(order[lo:hi])


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
