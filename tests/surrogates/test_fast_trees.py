"""Packed-tree prediction gives scikit-learn's answers bit for bit, and falls back where it must."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from hwsurrogate.surrogates.models.fast_trees import predict_hgb


def _fitted(
    nan_in_training: bool, seed: int = 0, **kw: object
) -> tuple[HistGradientBoostingRegressor, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 5))
    y = np.sin(x[:, 0]) + x[:, 1] * x[:, 2] + rng.normal(0, 0.05, 600)
    if nan_in_training:
        x[rng.random(x.shape) < 0.1] = np.nan
    model = HistGradientBoostingRegressor(max_iter=80, max_leaf_nodes=31, random_state=seed, **kw).fit(x, y)
    return model, rng.normal(size=(64, 5))


@pytest.mark.parametrize("nan_in_training", [False, True])
def test_packed_trees_match_sklearn_exactly_including_missing_values(nan_in_training: bool) -> None:
    model, x = _fitted(nan_in_training)
    x[::7, 1] = np.nan  # NaN at prediction time follows each node's learned (or default) direction
    for rows in (x[:1], x[:5], x):
        np.testing.assert_array_equal(predict_hgb(model, rows), model.predict(rows))


def test_refit_model_is_repacked() -> None:
    model, x = _fitted(False)
    before = predict_hgb(model, x[:3])
    rng = np.random.default_rng(1)
    model.fit(rng.normal(size=(300, 5)), rng.normal(size=300))
    np.testing.assert_array_equal(predict_hgb(model, x[:3]), model.predict(x[:3]))
    assert not np.array_equal(before, model.predict(x[:3]))


def test_infinities_match_and_large_batches_and_other_losses_use_sklearn() -> None:
    model, x = _fitted(False)
    big = np.tile(x, (3, 1))
    np.testing.assert_array_equal(predict_hgb(model, big, max_rows=64), model.predict(big))
    edge = np.array([[np.inf, -np.inf, 0.0, np.nan, 1e300]])
    np.testing.assert_array_equal(predict_hgb(model, edge), model.predict(edge))
    absolute, xa = _fitted(False, loss="absolute_error")
    np.testing.assert_array_equal(predict_hgb(absolute, xa[:2]), absolute.predict(xa[:2]))
    with pytest.raises(ValueError, match="features"):
        predict_hgb(model, np.zeros((1, 4)))
