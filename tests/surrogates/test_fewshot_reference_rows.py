"""The own-data reference rows of `hws bench fewshot-help` (ceilings + learning curve) on synthetic data."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from hwsurrogate.benchmarks.fewshot import own_data_reference_rows
from hwsurrogate.datasets import archspaces
from hwsurrogate.surrogates.features.nas import arch_vectors, vector_feature_names
from hwsurrogate.surrogates.fewshot import FewShotConfig, FewShotLatencyRegressor

torch.set_num_threads(1)


def _keys(n: int) -> list[str]:
    codes = np.random.default_rng(0).integers(0, 5, size=(n * 2, 6))
    return list(dict.fromkeys(archspaces.nb201_from_codes(c) for c in codes))[:n]


KEYS = _keys(300)
COUNTS = arch_vectors("nb201", KEYS)[
    :, [vector_feature_names("nb201").index(f"n_live_{op}") for op in archspaces.NB201_OPS]
].astype(float)


def _device(name: str, cost: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"device_id": name, "space": "nb201", "arch_index": np.arange(len(KEYS)),
                         "arch_key": KEYS, "latency_ms": 1.0 + COUNTS @ cost})  # fmt: skip


def test_reference_rows_fit_the_targets_own_data_and_trace_the_learning_curve() -> None:
    rng = np.random.default_rng(1)
    sources = [_device(f"synth/src{i}", rng.uniform(0.1, 2.0, 5)) for i in range(4)]
    target = _device("synth/target", np.array([0.0, 0.2, 3.0, 0.1, 1.5]))  # additive in ms
    frame = pl.concat([*sources, target])
    cfg = FewShotConfig(meta_draws=1, meta_query=100, tau_grid=(0.01,), noise_grid=(0.1,), gnn=())
    model = FewShotLatencyRegressor(cfg).fit(frame, devices=[f"synth/src{i}" for i in range(4)])
    rows = own_data_reference_rows(model, frame, "nb201", ["synth/target"], 100, seeds=2, curve=(20, 100))
    by = {r["split"]: r for r in rows}
    gbm = next(r for s, r in by.items() if "GBM on" in s)
    ridge = next(r for s, r in by.items() if "ridge (ms)" in s)
    # the target is exactly linear in the live op counts (ms): a ridge on its own data ranks it ~perfectly
    assert ridge["ours"] > 0.99 and gbm["ours"] > 0.9
    # trained on every row outside the test set (indices 100..299 trimmed to the 10th-90th percentile)
    assert gbm["n_train"] == ridge["n_train"] and 100 < gbm["n_train"] < 200
    curve = [r for r in rows if r["metric"] == "spearman_learning_curve"]
    refs = np.asarray(archspaces.HELP_REFERENCE_INDICES["nb201"])
    n_refs, refs_in_pool = int((refs < 300).sum()), int((refs < 100).sum())
    # 20 measurements, then all of the 100-arch pool plus the references outside it
    assert [r["n_measurements"] for r in curve] == [20, 100 - refs_in_pool + n_refs]
    assert curve[-1]["ours"] >= curve[0]["ours"] - 0.01 and curve[-1]["ours"] > 0.95
    assert all("reference only" in r["note"] for r in (gbm, ridge))
