"""The per-space model: :class:`SpaceModel` (a NAS space's meta-trained prior and feature table)
and the encoding of architectures into its feature rows.

An architecture's feature row is ``[z(a), x(a)]`` plus optional blocks: source-device latency
blocks (:func:`source_blocks`), PC interactions (:func:`with_interactions`), op-at-position pair
products (:func:`pair_products`), FBNet physical terms (:func:`physical_vectors`) and the
meta-trained GNN embedding. Table architectures are looked up; others go through the stored
encoders (:meth:`SpaceModel.design`), with the same functions that built the table at
meta-training (:mod:`.meta_train`), so training and serving share one feature pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwsurrogate.surrogates.fewshot.config import PHYSICAL_SPACES, FewShotError
from hwsurrogate.surrogates.fewshot.posterior import forward_transform


def standardize(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column-standardized ``a`` (NaN-aware; constant columns keep scale 1), its means and stds."""
    mean = np.nanmean(a, axis=0)
    std = np.nanstd(a, axis=0)
    std = np.where(std > 1e-9, std, 1.0)
    return (a - mean) / std, mean, std


def source_blocks(
    transforms: Sequence[str],
    z: np.ndarray,
    logl: np.ndarray,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    table_ms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source-latency feature blocks: ``z`` for "log", standardized ``g(y)`` for the others
    ("table": the sources' additive cost-table predictions ``table_ms`` in ms).

    Returns (features (n, blocks * n_src), means, stds of the non-log blocks); pass the stored
    means/stds to encode new rows the same way.
    """
    blocks, means, stds = [], [], []
    b = 0
    for t in transforms:
        if t == "log":
            blocks.append(z)
            continue
        if t == "table":
            if table_ms is None:
                raise ValueError("source block 'table' needs the sources' cost-table predictions")
            g = table_ms
        else:
            g = forward_transform(t, logl)
        if mean is None or std is None or len(mean) <= b:
            g, m, sd = standardize(g)
        else:
            m, sd = mean[b], std[b]
            g = (g - m) / sd
        blocks.append(g)
        means.append(m)
        stds.append(sd)
        b += 1
    n_src = z.shape[1]
    empty = np.zeros((0, n_src))
    return (
        np.concatenate(blocks, axis=1),
        np.stack(means) if means else empty,
        np.stack(stds) if stds else empty,
    )


def pair_products(xr: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Products of the raw arch-vector column pairs ``index`` (n_pairs, 2)."""
    return xr[:, index[:, 0]] * xr[:, index[:, 1]]


def with_interactions(F: np.ndarray, pcs: np.ndarray, pc_mean: np.ndarray) -> np.ndarray:
    """Append the standardized pairwise products (incl. squares) of the PC scores of ``F``."""
    k = pcs.shape[1] if pcs.ndim == 2 else 0
    if k == 0:
        return F
    s = (F - pc_mean) @ pcs
    iu = np.triu_indices(k)
    prod = s[:, iu[0]] * s[:, iu[1]]
    return np.concatenate([F, prod / np.sqrt(k)], axis=1)


def source_table_ms(xr: np.ndarray, cols: np.ndarray, coef: np.ndarray) -> np.ndarray | None:
    """The sources' cost-table predictions (ms) of raw arch vectors ``xr`` (None without tables)."""
    if not coef.size:
        return None
    return np.c_[xr[:, cols], np.ones(len(xr))] @ coef


def physical_vectors(space: str, arch_keys: Sequence[str]) -> np.ndarray:
    """(n, k) physical cost terms of each architecture, summed over its layers (FBNet only).

    See :func:`hwsurrogate.surrogates.features.nas.fbnet_physical_vectors` (imported here on
    first use: the features module imports torch, adaptation on table archs must not).
    """
    if space not in PHYSICAL_SPACES:
        raise FewShotError(f"physical features exist for {list(PHYSICAL_SPACES)}, not {space!r}")
    from hwsurrogate.surrogates.features.nas import fbnet_physical_vectors

    return fbnet_physical_vectors(arch_keys)


@dataclass
class SpaceModel:
    """Meta-trained prior and feature tables of one NAS space."""

    space: str
    arch_keys: np.ndarray  # (n_archs,) canonical keys of the table
    source_devices: list[str]
    features: np.ndarray  # (n_archs, p) float32 design rows of the table archs
    x_mean: np.ndarray  # arch-vector standardization (all raw columns)
    x_std: np.ndarray
    x_keep: np.ndarray  # bool mask of non-constant arch-vector columns
    z_mean: np.ndarray  # source log-latency standardization
    z_std: np.ndarray
    encoder: np.ndarray  # (n_x + 1, n_src): x -> z ridge encoder (last row = bias)
    prior_mean: np.ndarray  # (p,)
    prior_components: np.ndarray  # (n_src, p): per-device weights (mixture prior)
    prior_cov: np.ndarray  # (p, p)
    tau: float
    noise: float
    compact: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (p,) 1 = compact x column
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (p,) 1 = op-count x column
    pcs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (p_base, k) interaction PCs
    pc_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # per non-log transform: (n_src, p) source-device weights in that transform's units
    transform_components: dict[str, np.ndarray] = field(default_factory=dict)
    source_transforms: tuple[str, ...] = ("log",)  # blocks of source-latency features
    zt_mean: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (blocks, n_src) non-log blocks
    zt_std: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    pair_index: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))  # raw x columns
    pair_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pair_std: np.ndarray = field(default_factory=lambda: np.zeros(0))
    meta_scores: dict[str, float] = field(default_factory=dict)
    # the meta-trained .meta_gnn.MetaGNN whose standardized embedding ends the feature rows,
    # kept as (parameter arrays, metadata) and rebuilt (importing torch) only for archs outside
    # the table, so that adaptation never imports torch
    gnn_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    gnn_meta: dict[str, Any] | None = None
    gnn_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gnn_std: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # per transform: (n_src, n_gnn) source-device weights on the embedding columns alone
    gnn_components: dict[str, np.ndarray] = field(default_factory=dict)
    table: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (p,) 1 = per-position op one-hot
    # per transform: (n_src, n_table) source-device cost tables (weights on the table columns alone)
    table_components: dict[str, np.ndarray] = field(default_factory=dict)
    # "table" source block: raw arch-vector columns of the one-hots and (n_cols + 1, n_src) ms costs
    # per transform: (n_src, n_src) source-device weights on the "table" block alone (own column 0)
    span_components: dict[str, np.ndarray] = field(default_factory=dict)
    source_table_cols: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    source_table_coef: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    phys_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))  # physical feature standardization
    phys_std: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _gnn: Any = field(default=None, repr=False)
    _index: dict[str, int] | None = field(default=None, repr=False)

    @property
    def n_gnn(self) -> int:
        """Number of trailing feature columns holding the GNN embedding."""
        return int(len(self.gnn_mean)) if self.gnn_meta is not None else 0

    @property
    def gnn(self) -> Any:
        """The meta-trained GNN encoder (None without one); imports torch on first use."""
        if self.gnn_meta is None:
            return None
        if self._gnn is None:
            from hwsurrogate.surrogates.fewshot.meta_gnn import MetaGNN

            self._gnn = MetaGNN.from_arrays(self.gnn_arrays, self.gnn_meta)
        return self._gnn

    def prior(self, transform: str) -> tuple[np.ndarray, np.ndarray]:
        """(per-source-device weights (n_src, p), their covariance) in ``transform`` units."""
        if transform == "log":
            return self.prior_components, self.prior_cov
        if transform not in self.transform_components:
            raise FewShotError(f"this few-shot model has no prior for transform {transform!r}")
        W = self.transform_components[transform]
        return W, (np.cov(W.T) if len(W) > 1 else np.zeros((W.shape[1], W.shape[1])))

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self.arch_keys.tolist())}
        return self._index

    def rows(self, arch_keys: Sequence[str]) -> np.ndarray:
        """Table row of each key, -1 when the key is not in the table."""
        idx = self.index()
        return np.fromiter((idx.get(k, -1) for k in arch_keys), dtype=np.int64, count=len(arch_keys))

    def design(self, arch_keys: Sequence[str], *, use_z: bool, use_x: bool) -> np.ndarray:
        """Feature rows for any canonical keys of the space (table lookup, else the encoder)."""
        rows = self.rows(arch_keys)
        out = np.empty((len(arch_keys), self.n_features), dtype=np.float64)
        known = rows >= 0
        out[known] = self.features[rows[known]]
        if (~known).any():
            from hwsurrogate.surrogates.features.nas import (
                arch_vectors,  # torch import: only for archs outside the table
            )

            missing = [k for k, ok in zip(arch_keys, known, strict=True) if not ok]
            xr = arch_vectors(self.space, missing).astype(np.float64)
            x = ((xr - self.x_mean) / self.x_std)[:, self.x_keep]
            z = np.c_[x, np.ones(len(x))] @ self.encoder
            logl = z * self.z_std + self.z_mean
            table_ms = source_table_ms(xr, self.source_table_cols, self.source_table_coef)
            zs = source_blocks(self.source_transforms, z, logl, self.zt_mean, self.zt_std, table_ms)[0]
            parts = ([zs] if use_z else []) + ([x] if use_x else [])
            rows_f = with_interactions(np.concatenate(parts, axis=1), self.pcs, self.pc_mean)
            if len(self.pair_index):
                pairs = (pair_products(xr, self.pair_index) - self.pair_mean) / self.pair_std
                rows_f = np.concatenate([rows_f, pairs], axis=1)
            if len(self.phys_mean):
                phys = (physical_vectors(self.space, missing) - self.phys_mean) / self.phys_std
                rows_f = np.concatenate([rows_f, phys], axis=1)
            if self.n_gnn:
                emb = (self.gnn.embed(missing) - self.gnn_mean) / self.gnn_std
                rows_f = np.concatenate([rows_f, emb], axis=1)
            out[~known] = rows_f
        return out
