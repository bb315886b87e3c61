"""Small-batch prediction for fitted ``HistGradientBoostingRegressor`` models, without per-tree calls.

scikit-learn predicts tree by tree: one Cython call (and one OpenMP region) per tree. For the
one-query requests the service answers most, a 300-tree model spends ~2 ms in that dispatch and
almost nothing in the trees. :func:`predict_hgb` walks every tree at once instead: the fitted
trees are packed once into flat arrays (feature, threshold, children, NaN direction, leaf value)
and each level of all trees is one vectorised numpy step. The sum over trees runs in the order
scikit-learn uses (baseline, then tree 1, 2, ...), so the answers are bit-for-bit the same.

Batches above ``max_rows`` (where scikit-learn's threaded Cython loop is faster) and models with
categorical features or a non-identity link go to ``model.predict``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

#: batches up to this many rows use the packed trees; larger ones scikit-learn's own loop
SMALL_BATCH_ROWS = 64


@dataclass(frozen=True)
class PackedTrees:
    """Every tree of one model as flat arrays indexed by ``tree offset + node``."""

    feature: np.ndarray  # intp: feature tested at each node (0 at leaves)
    threshold: np.ndarray  # float64: go left when x <= threshold
    missing_left: np.ndarray  # bool: where NaN goes
    left: np.ndarray  # intp: flat index of the left child (a leaf points at itself)
    right: np.ndarray  # intp
    value: np.ndarray  # float64: leaf values (0 elsewhere)
    roots: np.ndarray  # intp: flat index of each tree's root, in scikit-learn's order
    depth: int  # deepest leaf: steps needed to reach every leaf
    baseline: float

    @classmethod
    def from_model(cls, model: Any) -> PackedTrees:
        trees = [p for iteration in model._predictors for p in iteration]
        sizes = np.array([len(t.nodes) for t in trees])
        roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        nodes = np.concatenate([t.nodes for t in trees])
        leaf = nodes["is_leaf"].astype(bool)
        own = np.arange(len(nodes), dtype=np.intp)
        offset = np.repeat(roots, sizes)
        return cls(
            feature=np.where(leaf, 0, nodes["feature_idx"]).astype(np.intp),
            threshold=nodes["num_threshold"].astype(np.float64),
            missing_left=nodes["missing_go_to_left"].astype(bool),
            left=np.where(leaf, own, nodes["left"].astype(np.intp) + offset),
            right=np.where(leaf, own, nodes["right"].astype(np.intp) + offset),
            value=np.where(leaf, nodes["value"], 0.0).astype(np.float64),
            roots=roots,
            depth=int(max(t.get_max_depth() for t in trees)),
            baseline=float(np.ravel(model._baseline_prediction)[0]),
        )

    def raw_predict(self, x: np.ndarray) -> np.ndarray:
        """Baseline plus the leaf value of every tree, summed in scikit-learn's order."""
        node = np.broadcast_to(self.roots, (x.shape[0], self.roots.size)).copy()
        for _ in range(self.depth):
            xv = np.take_along_axis(x, self.feature[node], axis=1)
            nan = np.isnan(xv)
            go_left = np.where(nan, self.missing_left[node], xv <= self.threshold[node])
            node = np.where(go_left, self.left[node], self.right[node])
        terms = np.concatenate([np.full((x.shape[0], 1), self.baseline), self.value[node]], axis=1)
        return np.cumsum(terms, axis=1)[:, -1]  # sequential, as scikit-learn's += per tree


#: packed trees per fitted model, with the trees list they were packed from (a refit replaces it)
_PACKED: weakref.WeakKeyDictionary[Any, tuple[int, PackedTrees]] = weakref.WeakKeyDictionary()


def _packable(model: Any) -> bool:
    from sklearn.ensemble import HistGradientBoostingRegressor

    categorical = getattr(model, "is_categorical_", None)
    return (
        type(model) is HistGradientBoostingRegressor
        and model.loss == "squared_error"
        and model.n_trees_per_iteration_ == 1
        and (categorical is None or not np.any(categorical))
        and bool(model._predictors)
    )


def predict_hgb(model: Any, x: np.ndarray, *, max_rows: int = SMALL_BATCH_ROWS) -> np.ndarray:
    """``model.predict(x)`` for a fitted regressor, through the packed trees for small batches."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] > max_rows or not _packable(model):
        return model.predict(x)
    if x.shape[1] != model.n_features_in_:
        return model.predict(x)  # scikit-learn's own error names the mismatch
    cached = _PACKED.get(model)
    if cached is None or cached[0] != id(model._predictors):
        cached = _PACKED[model] = (id(model._predictors), PackedTrees.from_model(model))
    return cached[1].raw_predict(np.ascontiguousarray(x))
