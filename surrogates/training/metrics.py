"""The error and ranking metrics every trainer, benchmark and report computes, in one place.

Percentages are in % (``mape`` of 5.0 means 5 %). The formulas keep one order of operations
each, so a number computed here is bit-identical wherever it is computed:

- :func:`mape` is ``mean(|pred - true| / |true|) * 100`` (one multiplication after the mean);
- :func:`ape` gives each row's ``|pred - true| / |true| * 100``, for means over groups of rows
  (and :func:`regression_metrics`' ``mape``, the mean of :func:`ape`; it can differ from
  :func:`mape` in the last bit).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def ape(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Absolute percentage error of each prediction: ``|pred - true| / |true| * 100``."""
    return np.abs(y_pred - y_true) / np.abs(y_true) * 100


def mape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute percentage error in %: ``mean(|pred - true| / |true|) * 100``."""
    return float(np.mean(np.abs(y_pred - y_true) / np.abs(y_true)) * 100)


def smape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Symmetric MAPE in %: ``mean(2 |pred - true| / (|true| + |pred|)) * 100`` (0 where both are 0)."""
    denom = np.abs(y_true) + np.abs(y_pred)
    return float(
        np.mean(np.where(denom > 0, 2 * np.abs(y_pred - y_true) / np.where(denom > 0, denom, 1), 0)) * 100
    )


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((y_pred - y_true) ** 2)))


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (NaN when ``y_true`` is constant)."""
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    return 1 - float(((y_pred - y_true) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")


def spearman(a: Any, b: Any) -> float:
    """Spearman rank correlation of two equally long sequences (NaN if either is constant)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """R², RMSE, MAPE %, median APE %, fraction within ±10 %, Spearman, SMAPE %.

    APE-based entries skip rows whose true value is 0; Spearman needs at least 3 rows (else NaN).
    """
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be equal, non-empty shapes")
    nz = y_true != 0
    errors = ape(y_true[nz], y_pred[nz]) if nz.any() else np.array([np.nan])
    return {
        "r2": r2(y_true, y_pred),
        "rmse": rmse(y_true, y_pred),
        "mape": float(errors.mean()),
        "median_ape": float(np.median(errors)),
        "within_10pct": float((errors <= 10).mean()),
        "spearman": spearman(y_true, y_pred) if y_true.size > 2 else float("nan"),
        "smape": smape(y_true, y_pred),
    }
