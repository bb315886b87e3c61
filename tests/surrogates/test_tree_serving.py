"""Tree serving through treelite answers as scikit-learn does (1e-9 relative) and pickles without it."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.ensemble import (
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)

from hwsurrogate.surrogates.models.tree_serving import (
    CACHE_ATTR,
    SMALL_BATCH_ROWS,
    ServesTrees,
    positive_proba_trees,
    predict_trees,
    servable,
)


def _data(seed: int = 0, nan: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 5))
    y = np.sin(x[:, 0]) + x[:, 1] * x[:, 2] + 3.0 + rng.normal(0, 0.05, 600)
    if nan:
        x[rng.random(x.shape) < 0.1] = np.nan
    return x, y, rng.normal(size=(SMALL_BATCH_ROWS, 5))


@pytest.mark.parametrize("nan_in_training", [False, True])
def test_histogram_trees_match_sklearn_including_missing_and_infinite_values(nan_in_training: bool) -> None:
    x, y, q = _data(nan=nan_in_training)
    model = HistGradientBoostingRegressor(max_iter=80, max_leaf_nodes=31, random_state=0).fit(x, y)
    q[::5, 1] = np.nan  # NaN at prediction time follows each node's learned (or default) direction
    edge = np.array([[np.inf, -np.inf, 0.0, np.nan, 1e300]])
    cache: dict = {}
    for rows in (q[:1], q[:5], q, edge):
        np.testing.assert_allclose(predict_trees(model, rows, cache=cache), model.predict(rows), rtol=1e-9)
    assert len(cache) == 1


@pytest.mark.parametrize("forest", [RandomForestRegressor, ExtraTreesRegressor])
def test_forests_match_sklearn(forest: type) -> None:
    x, y, q = _data(1)
    model = forest(n_estimators=20, min_samples_leaf=3, random_state=0).fit(x, y)
    assert servable(model)
    np.testing.assert_allclose(predict_trees(model, q), model.predict(q), rtol=1e-9)


def test_binary_classifier_probability_matches_sklearn() -> None:
    x, y, q = _data(2, nan=True)
    model = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(x, y > 3.0)
    assert servable(model)
    np.testing.assert_allclose(positive_proba_trees(model, q), model.predict_proba(q)[:, 1], rtol=1e-9)
    three = HistGradientBoostingClassifier(max_iter=5).fit(x, np.digitize(y, [2.5, 3.5]))
    np.testing.assert_array_equal(predict_trees(three, q[:2]), three.predict(q[:2]))  # labels, not GTIL


def test_refit_rebuilds_and_large_batches_other_losses_and_bad_shapes_use_sklearn() -> None:
    x, y, q = _data()
    model = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(x, y)
    cache: dict = {}
    before = predict_trees(model, q[:3], cache=cache)
    model.fit(x, -y)
    np.testing.assert_allclose(predict_trees(model, q[:3], cache=cache), model.predict(q[:3]), rtol=1e-9)
    assert not np.allclose(before, model.predict(q[:3]))
    big = np.tile(q, (4, 1))
    np.testing.assert_array_equal(predict_trees(model, big, max_rows=SMALL_BATCH_ROWS), model.predict(big))
    absolute = HistGradientBoostingRegressor(max_iter=20, loss="absolute_error").fit(x, y)
    assert not servable(absolute)
    np.testing.assert_array_equal(predict_trees(absolute, q[:2]), absolute.predict(q[:2]))
    with pytest.raises(ValueError, match="features"):
        predict_trees(model, np.zeros((1, 4)))


class _Holder(ServesTrees):
    def __init__(self, model: HistGradientBoostingRegressor) -> None:
        self.model = model


def test_cache_is_built_lazily_kept_on_the_instance_and_never_pickled() -> None:
    x, y, q = _data()
    holder = _Holder(HistGradientBoostingRegressor(max_iter=20, random_state=0).fit(x, y))
    old = pickle.loads(pickle.dumps(holder))  # as a pickle made before the cache existed
    assert CACHE_ATTR not in vars(holder)
    got = holder.predict_trees(holder.model, q[:2])
    assert CACHE_ATTR in vars(holder)
    clone = pickle.loads(pickle.dumps(holder))
    assert CACHE_ATTR not in vars(clone) and CACHE_ATTR in vars(holder)
    np.testing.assert_allclose(clone.predict_trees(clone.model, q[:2]), got, rtol=1e-9)
    np.testing.assert_allclose(old.predict_trees(old.model, q[:2]), got, rtol=1e-9)


def test_gemm_model_serves_small_batches_through_treelite_equal_to_sklearn_and_pickles() -> None:
    from .gemm_factories import assert_equals_sklearn, fitted_gemm_pyfunc

    model, rows = fitted_gemm_pyfunc(max_iter=40)
    runtime = model.runtime
    q = rows.head(3)
    got = assert_equals_sklearn(model, q)
    assert CACHE_ATTR in vars(runtime)
    reloaded = pickle.loads(pickle.dumps(model))
    assert CACHE_ATTR not in vars(reloaded.runtime)
    np.testing.assert_allclose(reloaded.predict_frame(q).to_numpy(), got.to_numpy(), rtol=1e-9)
    big = rows.head(SMALL_BATCH_ROWS + 1)  # scikit-learn's own loop: the same answers
    np.testing.assert_allclose(
        model.predict_frame(big)["runtime_ms"].to_numpy()[:3], got["runtime_ms"].to_numpy(), rtol=1e-9
    )


def test_latency_trees_serve_small_batches_equal_to_sklearn() -> None:
    from hwsurrogate.surrogates.features import nas as graphs
    from hwsurrogate.surrogates.models.latency_trees import LatencyTreeRegressor

    from .test_latency_training import tiny_latency_frame

    frame = tiny_latency_frame().filter(device_id="help/dev_a")
    keys = frame["arch_key"].to_list()
    model = LatencyTreeRegressor(max_iter=40).fit(keys, frame["latency_ms"].to_numpy())
    expected = np.exp(model.regressor_.predict(graphs.arch_vectors("nb201", keys[:4])))
    np.testing.assert_allclose(model.predict(keys[:4]), expected, rtol=1e-9)
    assert CACHE_ATTR in vars(model)
    assert CACHE_ATTR not in vars(pickle.loads(pickle.dumps(model)))
