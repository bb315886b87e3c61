"""How well *any* predictor can rank NAS-Bench-201 latencies on a device: a measured noise ceiling.

Every feature map inside a NAS-Bench-201 cell has the same shape, so an operation costs the same
on whichever of the cell's six edges it sits: two architectures with the same *op counts* (how
many conv3x3, conv1x1, avgpool, skip and none edges) run the same operations on the same tensor
shapes. There are 210 such classes among the 15,625 architectures (~74 per class).

For each device this module measures:

- ``residual_sd``: the spread of log-latency inside a class;
- ``position_cv_r2``: how much of that spread a gradient-boosted tree on the op *positions*
  (one-hot per edge, plus the counts) predicts, in 5-fold cross-validation over all 15,625
  architectures. Near 0 means the within-class spread is not a function of the architecture:
  it is measurement noise, and no architecture-based predictor can recover it;
- ``spearman`` / ``mape``: the scores, on HELP's 800 test architectures, of the oracle that
  predicts each architecture by the mean log-latency of the *other* members of its class (all
  15,625 architectures, so far more data than any benchmark's training pool).

Where ``position_cv_r2`` is near 0, the oracle's Spearman is (up to the small error of a
74-member mean) the best Spearman any predictor of that device can reach; a target above it
cannot be met on that data by any model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsurrogate.surrogates.training.metrics import mape, spearman

N_NB201_OPS = 5
#: a device's within-class spread counts as noise when op positions explain less than this (CV R^2)
NOISE_R2 = 0.05


@dataclass(frozen=True)
class CeilingResult:
    """One device's noise ceiling (see the module docstring)."""

    device_id: str
    spearman: float
    mape: float
    residual_sd: float
    position_cv_r2: float | None
    n_test: int


def op_count_classes(codes: np.ndarray) -> np.ndarray:
    """Class id of each NB201 architecture by its op counts; ``codes`` is (n, 6) op codes."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != 6:
        raise ValueError(f"codes: expected shape (n, 6) NB201 op codes, got {codes.shape}")
    counts = np.stack([(codes == c).sum(axis=1) for c in range(N_NB201_OPS)], axis=1)
    return np.unique(counts, axis=0, return_inverse=True)[1].ravel()


def loo_class_mean(log_y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Each row's class mean of ``log_y`` over the *other* rows of its class (NaN rows ignored).

    A row alone in its class gets NaN.
    """
    ok = np.isfinite(log_y)
    y0 = np.where(ok, log_y, 0.0)
    k = int(classes.max()) + 1
    total = np.bincount(classes, y0, minlength=k)
    count = np.bincount(classes, ok.astype(float), minlength=k)
    others = count[classes] - ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(others > 0, (total[classes] - y0) / others, np.nan)


def position_cv_r2(codes: np.ndarray, residual: np.ndarray, *, seed: int = 0) -> float:
    """5-fold CV R^2 of a boosted tree predicting ``residual`` from op positions and counts."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import KFold, cross_val_predict

    ok = np.isfinite(residual)
    onehot = np.eye(N_NB201_OPS)[np.asarray(codes)].reshape(len(codes), -1)
    counts = np.stack([(codes == c).sum(axis=1) for c in range(N_NB201_OPS)], axis=1)
    x = np.concatenate([onehot, counts], axis=1)[ok]
    r = residual[ok]
    model = HistGradientBoostingRegressor(max_iter=100, random_state=seed)
    pred = cross_val_predict(model, x, r, cv=KFold(5, shuffle=True, random_state=seed))
    return float(1.0 - np.mean((r - pred) ** 2) / np.var(r))


def nb201_noise_ceiling(
    latency_ms: np.ndarray,
    codes: np.ndarray,
    test_rows: np.ndarray,
    device_id: str,
    *,
    with_positions: bool = True,
) -> CeilingResult:
    """The ceiling for one device.

    ``latency_ms``: the device's latency of every architecture (NaN where unmeasured);
    ``codes``: their (n, 6) op codes; ``test_rows``: row positions of the scored test
    architectures (already trimmed as the benchmark trims them).
    """
    y = np.asarray(latency_ms, dtype=float)
    if y.shape[0] != len(codes):
        raise ValueError(f"latency_ms: {y.shape[0]} values for {len(codes)} architectures")
    if np.any(y[np.isfinite(y)] <= 0):
        raise ValueError(f"latency_ms: {device_id} has non-positive latencies")
    log_y = np.log(y)
    classes = op_count_classes(codes)
    oracle = loo_class_mean(log_y, classes)
    residual = log_y - oracle  # leave-one-out, so a row's own noise is not in its class mean
    test = np.asarray(test_rows)
    test = test[np.isfinite(log_y[test]) & np.isfinite(oracle[test])]
    rho = spearman(log_y[test], oracle[test])
    pred = np.exp(oracle[test])
    r2 = position_cv_r2(codes, residual) if with_positions else None
    return CeilingResult(device_id, rho, mape(y[test], pred), float(np.nanstd(residual)), r2, int(len(test)))
