"""Deterministic train/test splits shared by training and benchmarks.

Group splits hash the group key (no RNG state), so the same rows land in the same split on
every machine and every run: a fixed held-out set is what champion promotion compares on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl


def group_split(
    frame: pl.DataFrame, keys: Sequence[str], *, test_frac: float = 0.2, seed: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hold out every row of a fraction of the groups defined by ``keys`` (hash-based, stable)."""
    if not 0 < test_frac < 1:
        raise ValueError(f"test_frac must be in (0, 1), got {test_frac}")
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise ValueError(f"split keys {missing} are not columns of the frame")
    h = pl.concat_str([pl.col(k).cast(pl.String).fill_null("") for k in keys], separator="|").hash(seed=seed)
    is_test = (h % 10_000) < int(round(test_frac * 10_000))
    marked = frame.with_columns(is_test.alias("_test"))
    return marked.filter(~pl.col("_test")).drop("_test"), marked.filter(pl.col("_test")).drop("_test")


def random_split(
    frame: pl.DataFrame, *, test_frac: float = 0.2, seed: int = 42
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Row-level random split (the leaky protocol some papers use; kept for comparison only)."""
    rng = np.random.default_rng(seed)
    mask = rng.random(frame.height) < test_frac
    s = pl.Series(mask)
    return frame.filter(~s), frame.filter(s)


def device_split(frame: pl.DataFrame, test_devices: Sequence[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hold out whole devices."""
    known = set(frame["device_id"].unique().to_list())
    unknown = [d for d in test_devices if d not in known]
    if unknown:
        raise ValueError(f"test device(s) {unknown} have no rows; known: {sorted(known)[:10]}")
    is_test = pl.col("device_id").is_in(list(test_devices))
    return frame.filter(~is_test), frame.filter(is_test)
