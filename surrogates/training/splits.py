"""Every train/test split the trainers and benchmarks use: generic splitters and the named protocols.

Generic: :func:`group_split` (hash of a group key), :func:`random_split` (rows),
:func:`device_split` (whole devices). Named protocols: HELP's architecture split of the latency
spaces (:func:`help_split`, :func:`trim_10_90`), the fixed test architectures the latency
champion is compared on (:func:`latency_test_mask`) and HLSyn's held-out kernels
(:data:`HLSYN_TEST_KERNELS`). The few-shot device splits (``splits.json``) are read by
:func:`hwsurrogate.surrogates.fewshot.read_splits`.

Group splits hash the group key (no RNG state), so the same rows land in the same split on
every machine and every run: a fixed held-out set is what champion promotion compares on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

#: HELP protocol: size of the per-device training pool (first indices of the space's list).
HELP_TRAIN_POOL: dict[str, int] = {"nb201": 900, "fbnet": 4000, "ofa": 4000}
#: HELP protocol: the test set is the next 1000 indices, trimmed to the 10th-90th percentile.
HELP_TEST_SIZE = 1000
#: HLSyn's held-out kernels (baselines/src/config.py, ZongyueQin/HLSyn): v18 and v20 lists.
HLSYN_TEST_KERNELS: dict[str, tuple[str, ...]] = {
    "v18": ("stencil-3d", "doitgen-red", "gemm-ncubed", "fdtd-2d", "jacobi-2d", "trmm-opt"),
    "v20": ("gemm-p-large", "covariance", "gemm-ncubed", "symm", "fdtd-2d-large", "trmm-opt"),
}


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


@dataclass(frozen=True)
class Split:
    """Arch indices of a train pool and a test set."""

    train: np.ndarray
    test: np.ndarray


def help_split(space: str) -> Split:
    """HELP's split of ``space``: train = first 900/4000 indices, test = the next 1000."""
    from hwsurrogate.surrogates.features.nas import check_space

    n = HELP_TRAIN_POOL[check_space(space)]
    return Split(train=np.arange(n), test=np.arange(n, n + HELP_TEST_SIZE))


def trim_10_90(latency_ms: np.ndarray) -> np.ndarray:
    """Positions of the 10th-90th percentile by rank (1000 -> the 800 middle values), as HELP."""
    y = np.asarray(latency_ms, dtype=float)
    order = np.argsort(y, kind="stable")
    lo, hi = int(len(y) * 0.1), int(len(y) * 0.9)
    return np.sort(order[lo:hi])


def latency_test_mask(wide: pl.DataFrame, space: str) -> np.ndarray:
    """Boolean mask of the fixed test architectures of ``wide`` (one row per architecture).

    HELP's test indices when at least 100 of them are present, otherwise the 20 % of
    architectures with the smallest md5 of their key.
    """
    n_train = HELP_TRAIN_POOL[space]
    idx = wide["arch_index"].fill_null(-1).to_numpy()
    help_test = (idx >= n_train) & (idx < n_train + HELP_TEST_SIZE)
    if help_test.sum() >= 100:
        return help_test
    digests = np.array([int(hashlib.md5(k.encode()).hexdigest()[:8], 16) for k in wide["arch_key"]])
    n_test = max(1, int(round(0.2 * wide.height)))
    mask = np.zeros(wide.height, dtype=bool)
    mask[np.argsort(digests, kind="stable")[:n_test]] = True
    return mask
