"""How few-shot latency predictors are scored: HELP's evaluation protocol and the device splits.

:func:`evaluate_help_protocol` adapts a model to each target device from HELP's 10 reference
architectures plus a few random ones and scores it on HELP's test set
(:func:`help_protocol_rows`, :func:`score_predictions`); :func:`read_splits` reads HELP's and
NASFLAT's source/validation/test device splits from ``splits.json``. Only support rows of a
target device are given to the model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from hwsurrogate.datasets import archspaces
from hwsurrogate.errors import TrainingDataError
from hwsurrogate.surrogates.fewshot.posterior import DeviceHead, predict_head
from hwsurrogate.surrogates.training.metrics import spearman


class AdaptsRows(Protocol):
    """What the protocol needs of a model (:class:`~.regressor.FewShotLatencyRegressor` has it)."""

    def features(self, space: str, arch_keys: Sequence[str]) -> np.ndarray: ...

    def adapt_rows(self, space: str, F: np.ndarray, log_y: np.ndarray) -> DeviceHead: ...


def help_protocol_rows(
    arch_index: np.ndarray, latency_ms: np.ndarray, *, n_pool: int, n_test: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """(support-pool rows, test rows) of one device under HELP's protocol.

    Pool: architectures with index < ``n_pool`` (900 NB201, 4000 FBNet/OFA). Test: the next
    ``n_test`` indices, trimmed to the 10th-90th latency percentile on the device (HELP's
    evaluation set, 800 archs). The pool is NOT trimmed here: trimming it would need the target
    device's latencies of the whole pool, which a few-shot user does not have.
    """
    arch_index = np.asarray(arch_index)
    pool = np.flatnonzero(arch_index < n_pool)
    test = np.flatnonzero((arch_index >= n_pool) & (arch_index < n_pool + n_test))
    v = latency_ms[test]
    lo, hi = np.percentile(v, [10, 90])
    return pool, test[(v >= lo) & (v <= hi)]


def score_predictions(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Spearman, MAPE % and fraction within +-10 % (latencies in ms)."""
    ape = np.abs(y_pred - y_true) / y_true
    return {
        "spearman": spearman(y_pred, y_true),
        "mape": float(ape.mean() * 100),
        "within_10pct": float((ape <= 0.10).mean()),
    }


def evaluate_help_protocol(
    model: AdaptsRows,
    frame: pl.DataFrame,
    space: str,
    devices: Sequence[str],
    *,
    n_pool: int,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    n_random: int = 10,
    use_references: bool = True,
) -> dict[str, dict[str, float]]:
    """Few-shot scores of ``model`` on target ``devices`` under HELP's protocol.

    Support per seed: HELP's 10 reference architectures (``use_references``) plus ``n_random``
    random pool architectures (not references); every support latency counts as a measurement.
    Only support rows of the target device are given to the model. Returns per device the
    seed-averaged metrics plus ``n_measurements``; key ``"_pooled"`` holds y/pred arrays of
    seed 0 for parity plots (as lists).
    """
    refs = np.asarray(archspaces.HELP_REFERENCE_INDICES[space]) if use_references else np.array([], int)
    out: dict[str, dict[str, Any]] = {}
    pooled_y: list[np.ndarray] = []
    pooled_p: list[np.ndarray] = []
    for dev in devices:
        d = frame.filter((pl.col("device_id") == dev) & (pl.col("space") == space)).sort("arch_index")
        if d.height == 0:
            raise TrainingDataError(f"target device {dev!r} has no {space} rows")
        idx = d["arch_index"].to_numpy()
        y = d["latency_ms"].to_numpy().astype(float)
        F = model.features(space, d["arch_key"].to_list())
        pool, test = help_protocol_rows(idx, y, n_pool=n_pool)
        ref_rows = np.flatnonzero(np.isin(idx, refs))
        candidates = np.setdiff1d(pool, ref_rows)
        per_seed = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            rnd = rng.choice(candidates, size=n_random, replace=False) if n_random else np.array([], int)
            sup = np.r_[ref_rows, rnd].astype(int)
            head = model.adapt_rows(space, F[sup], np.log(y[sup]))
            pred = np.exp(predict_head(head, F[test]))
            per_seed.append(score_predictions(y[test], pred))
            if seed == seeds[0]:
                pooled_y.append(y[test])
                pooled_p.append(pred)
        res = {k: float(np.mean([s[k] for s in per_seed])) for k in per_seed[0]}
        res["spearman_std"] = float(np.std([s["spearman"] for s in per_seed]))
        res["n_measurements"] = float(len(ref_rows) + n_random)
        res["n_test"] = float(len(test))
        out[dev] = res
    out["_pooled"] = {"y": np.concatenate(pooled_y).tolist(), "pred": np.concatenate(pooled_p).tolist()}
    return out


# --------------------------------------------------------------------------- device splits
_SPLIT_SPACE = {"nb201": "nasbench201", "fbnet": "fbnet", "ofa": "ofa"}
_LATBENCH_PREFIXES = ("desktop_", "embedded_", "mobile_")


def qualify_device(name: str) -> str:
    """Source-qualified device id of a name in ``splits.json`` (LatBench names vs HELP names)."""
    return ("latbench/" if name.startswith(_LATBENCH_PREFIXES) else "help/") + name


@dataclass(frozen=True)
class DeviceSplit:
    """Source (train), validation and test devices of one named split; ``n_pool``: HELP's support pool."""

    name: str
    space: str
    train: tuple[str, ...]
    valid: tuple[str, ...]
    test: tuple[str, ...]
    n_pool: int = 0


def default_splits_path() -> Path:
    """``$HWSURROGATE_DATA_DIR/latency/splits.json`` (FileNotFoundError when the variable is unset)."""
    from hwsurrogate.settings import get_settings

    data = get_settings(fresh=True).data_dir
    if data is None:
        raise FileNotFoundError(
            "HWSURROGATE_DATA_DIR is not set; pass the path of latency/splits.json explicitly"
        )
    return Path(data) / "latency" / "splits.json"


def read_splits(path: str | os.PathLike[str] | None = None) -> dict[str, DeviceSplit]:
    """HELP and NASFLAT device splits from ``splits.json`` (keys like ``help-nb201``, ``nb201-N1``)."""
    p = Path(path) if path is not None else default_splits_path()
    try:
        raw = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"device splits {str(p)!r} could not be read: {exc}") from None
    out: dict[str, DeviceSplit] = {}
    try:
        for space, folder in _SPLIT_SPACE.items():
            h = raw["help"].get(folder)
            if h:
                out[f"help-{space}"] = DeviceSplit(
                    f"help-{space}",
                    space,
                    tuple(qualify_device(d) for d in h["meta_train"]),
                    tuple(qualify_device(d) for d in h["meta_valid"]),
                    tuple(qualify_device(d) for d in h["meta_test"]),
                    int(h["num_meta_train_sample"]),
                )
        for space, tasks in raw.get("nasflat", {}).items():
            for task in tasks.values():
                name = f"{space}-{task['name_inferred']}"
                out[name] = DeviceSplit(
                    name,
                    space,
                    tuple(qualify_device(d) for d in task["train"]),
                    (),
                    tuple(qualify_device(d) for d in task["test"]),
                )
    except (KeyError, TypeError, AttributeError) as exc:
        raise FileNotFoundError(f"device splits {str(p)!r} are malformed (missing {exc})") from None
    return out
