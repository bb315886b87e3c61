"""The one metrics module gives bit-identical numbers to the inline formulas it replaced."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from hwsurrogate.surrogates.training.metrics import ape, mape, r2, regression_metrics, rmse, smape, spearman


def _old_regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """``registry.tracking.regression_metrics`` as it was before it moved (verbatim)."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    resid = y_pred - y_true
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    nz = y_true != 0
    ape_ = np.abs(resid[nz] / y_true[nz]) * 100 if nz.any() else np.array([np.nan])
    denom = np.abs(y_true) + np.abs(y_pred)
    smape_ = float(np.mean(np.where(denom > 0, 2 * np.abs(resid) / np.where(denom > 0, denom, 1), 0)) * 100)
    rho = spearmanr(y_true, y_pred).statistic if y_true.size > 2 else float("nan")
    return {
        "r2": 1 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
        "rmse": float(np.sqrt((resid**2).mean())),
        "mape": float(ape_.mean()),
        "median_ape": float(np.median(ape_)),
        "within_10pct": float((ape_ <= 10).mean()),
        "spearman": float(rho),
        "smape": smape_,
    }


def _pairs(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.exp(rng.normal(0, 3, n))  # positive targets over many decades, as latencies and runtimes
    return y, y * np.exp(rng.normal(0, 0.3, n))


@pytest.mark.parametrize("seed", range(5))
def test_each_metric_equals_its_former_inline_formula_bit_for_bit(seed: int) -> None:
    y, p = _pairs(seed, 997)
    # benchmarks/gemm.py, gemm_logo.py, fpga.py, collect_latency.py: per-row APE, then group means
    np.testing.assert_array_equal(ape(y, p), np.abs(p - y) / y * 100)
    # noise_ceiling.py, benchmarks/latency.py, fpga_power_nested.py: mean first, then * 100
    assert mape(y, p) == float(np.mean(np.abs(p - y) / y) * 100)
    # benchmarks/fpga.py summed RMSE (its own y - p order)
    assert rmse(y, p) == float(np.sqrt(np.mean((y - p) ** 2)))
    # every float(spearmanr(a, b).statistic)
    assert spearman(y, p) == float(spearmanr(y, p).statistic)
    old = _old_regression_metrics(y, p)
    new = regression_metrics(y, p)
    assert new.keys() == old.keys()
    for k, v in old.items():
        assert new[k] == v, k
    assert new["r2"] == r2(y, p) and new["smape"] == smape(y, p) and new["rmse"] == rmse(y, p)


def test_regression_metrics_edge_cases_match_the_old_definition() -> None:
    y = np.array([0.0, 2.0, -4.0, 0.0])  # zeros skipped by APE; a negative target counts |y|
    p = np.array([0.0, 2.5, -3.0, 1.0])
    old, new = _old_regression_metrics(y, p), regression_metrics(y, p)
    for k, v in old.items():
        assert new[k] == v or (np.isnan(new[k]) and np.isnan(v)), k
    tiny = regression_metrics(np.array([1.0, 2.0]), np.array([1.0, 3.0]))
    assert np.isnan(tiny["spearman"])  # fewer than 3 rows
    assert np.isnan(regression_metrics(np.ones(4), np.arange(4.0))["r2"])  # constant target
    with pytest.raises(ValueError, match="equal, non-empty"):
        regression_metrics(np.ones(3), np.ones(4))
