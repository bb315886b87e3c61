"""Meta-training of one NAS space: source devices' latency table -> :class:`~.space.SpaceModel`.

:func:`fit_space` builds the feature table of the space's architectures (source-latency blocks,
architecture vectors, optional interactions, pairs, physical terms and GNN embedding), fits each
source device's weights on it (its own latency columns masked), takes their mean/covariance as
the prior, and picks ``tau``/noise by leave-one-source-device-out few-shot episodes.
Imports torch only through the GNN encoder and the architecture vectors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.datasets import archspaces
from hwsurrogate.errors import TrainingDataError
from hwsurrogate.surrogates.fewshot.config import MAX_PAIR_FEATURES, FewShotConfig
from hwsurrogate.surrogates.fewshot.posterior import (
    forward_transform,
    posterior_head,
    predict_head,
    ridge_masked,
)
from hwsurrogate.surrogates.fewshot.protocol import spearman
from hwsurrogate.surrogates.fewshot.space import (
    SpaceModel,
    pair_products,
    physical_vectors,
    source_blocks,
    source_table_ms,
    standardize,
    with_interactions,
)


def latency_matrix(frame: pl.DataFrame, space: str, devices: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(arch_keys, log-latency matrix (n_archs, n_devices), NaN where not measured) of ``space``."""
    sub = frame.filter((pl.col("space") == space) & pl.col("device_id").is_in(list(devices)))
    sub = sub.group_by("arch_key", "device_id").agg(pl.col("latency_ms").median())
    wide = sub.pivot(on="device_id", index="arch_key", values="latency_ms").sort("arch_key")
    for d in devices:
        if d not in wide.columns:
            raise TrainingDataError(f"device {d!r} has no {space} rows in the training frame")
    keys = wide["arch_key"].to_numpy().astype(str)
    mat = np.log(wide.select(list(devices)).to_numpy().astype(np.float64))
    return keys, mat


#: meta-trained GNN encoders of this process, keyed by (space, sources, table, config): the
#: benchmarks' ablations and validation folds refit the linear model many times on the same sources
_GNN_CACHE: dict[tuple[Any, ...], Any] = {}
_GNN_CACHE_SIZE = 64


def meta_train_gnn(
    space: str, keys: np.ndarray, z: np.ndarray, ref_rows: np.ndarray, config: Any, init: Any = None
) -> Any:
    """Meta-train (or fetch from this process's cache) the GNN encoder of :mod:`.meta_gnn`."""
    import hashlib

    from hwsurrogate.surrogates.fewshot.meta_gnn import MetaGNN

    h = hashlib.sha1(np.ascontiguousarray(np.nan_to_num(z, nan=1e9)).tobytes())
    h.update("\n".join(keys.tolist()).encode())
    key = (space, h.hexdigest(), tuple(int(r) for r in ref_rows), config, getattr(init, "cache_key_", None))
    if key not in _GNN_CACHE:
        if len(_GNN_CACHE) >= _GNN_CACHE_SIZE:
            _GNN_CACHE.pop(next(iter(_GNN_CACHE)))
        _GNN_CACHE[key] = MetaGNN(config).fit(space, keys.tolist(), z, ref_rows, init=init)
        _GNN_CACHE[key].cache_key_ = key
    return _GNN_CACHE[key]


def reference_rows(frame: pl.DataFrame, space: str, keys: np.ndarray) -> np.ndarray:
    """Table rows of HELP's reference architectures in HELP's order (empty if any is missing)."""
    refs = archspaces.HELP_REFERENCE_INDICES.get(space, ())
    if "arch_index" not in frame.columns or not refs:
        return np.zeros(0, dtype=np.int64)
    sub = (
        frame.filter(
            (pl.col("space") == space)
            & pl.col("device_id").str.starts_with("help/")
            & pl.col("arch_index").is_in(list(refs))
        )
        .select("arch_index", "arch_key")
        .unique("arch_index")
    )
    by_index = dict(zip(sub["arch_index"].to_list(), sub["arch_key"].to_list(), strict=True))
    index = {k: i for i, k in enumerate(keys.tolist())}
    rows = [index.get(by_index.get(r, ""), -1) for r in refs]
    return np.zeros(0, dtype=np.int64) if min(rows) < 0 else np.asarray(rows, dtype=np.int64)


def _position_pairs(space: str) -> np.ndarray:
    """(n_pairs, 2) raw arch-vector columns of the one-hots of two different positions."""
    from hwsurrogate.surrogates.features.nas import vector_feature_names

    names = vector_feature_names(space)
    pos = [(i, m.group(1)) for i, n in enumerate(names) if (m := re.match(r"^([a-z]\d+)_", n))]
    return np.array(
        [(i, j) for a, (i, pi) in enumerate(pos) for (j, pj) in pos[a + 1 :] if pi != pj], dtype=np.int64
    ).reshape(-1, 2)


def _source_columns(j: int, n_dev: int, n_z: int) -> list[int]:
    """Feature columns holding source device ``j``'s latencies (one per source block)."""
    return list(range(j, n_z, n_dev)) if n_dev else []


def _interaction_basis(F: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """First ``k`` principal directions of ``F`` (for pairwise interaction features)."""
    if k <= 0:
        return np.zeros((F.shape[1], 0)), np.zeros(F.shape[1])
    mean = F.mean(axis=0)
    _, sv, vt = np.linalg.svd(F - mean, full_matrices=False)
    scale = np.maximum(sv[:k] / np.sqrt(len(F)), 1e-9)  # unit-variance scores
    return vt[:k].T / scale, mean


def _source_table_fit(
    xr: np.ndarray, latency_ms: np.ndarray, ridge: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Each source device's additive cost table: ms ridge on the per-position op one-hots.

    Returns (raw arch-vector columns of the one-hots, (n_cols + 1, n_src) costs, last row = bias).
    """
    cols = np.flatnonzero(_table_columns_raw(xr))
    A = np.c_[xr[:, cols], np.ones(len(xr))]
    reg = ridge * np.eye(A.shape[1])
    reg[-1, -1] = 0.0
    return cols, np.linalg.solve(A.T @ A + reg, A.T @ latency_ms)


def _table_columns_raw(xr: np.ndarray) -> np.ndarray:
    """Boolean mask of the raw columns that are per-position one-hots (names like ``l3_k5_e6``)."""
    return np.all((xr == 0) | (xr == 1), axis=0) & (xr.std(axis=0) > 1e-9)


def _table_columns(space: str, xr: np.ndarray, x_keep: np.ndarray) -> np.ndarray:
    """1 for the kept arch-vector columns that are per-position op one-hots (binary, position-named)."""
    from hwsurrogate.surrogates.features.nas import vector_feature_names

    names = np.asarray(vector_feature_names(space))[x_keep]
    positional = np.array([re.match(r"^[a-z]\d+_", n) is not None and "mmacs" not in n for n in names])
    binary = np.all((xr == 0) | (xr == 1), axis=0)
    return (positional & binary).astype(float)


def _centered_source_targets(
    cfg: FewShotConfig, Y: np.ndarray, logl: np.ndarray
) -> Iterator[tuple[str, np.ndarray]]:
    """(transform, column-centred standardized source latencies) for each of ``cfg.transforms``."""
    for t in cfg.transforms or ("log",):
        Yt = Y if t == "log" else standardize(forward_transform(t, logl))[0]
        yield t, Yt - Yt.mean(axis=0)


def _table_priors(
    cfg: FewShotConfig,
    table: np.ndarray,
    gram: np.ndarray,
    Fc: np.ndarray,
    Y: np.ndarray,
    logl: np.ndarray,
    lam: float,
) -> dict[str, np.ndarray]:
    """Per transform: each source device's cost table (ridge on the table columns alone)."""
    idx = np.flatnonzero(table)
    if not len(idx):
        return {}
    out = {}
    for t, Yc in _centered_source_targets(cfg, Y, logl):
        rhs = Fc[:, idx].T @ Yc
        g = gram[np.ix_(idx, idx)] + lam * np.eye(len(idx))
        out[t] = np.linalg.solve(g, rhs).T  # (n_src, n_table)
    return out


def _span_priors(
    cfg: FewShotConfig,
    cols: np.ndarray,
    gram: np.ndarray,
    Fc: np.ndarray,
    Y: np.ndarray,
    logl: np.ndarray,
    lam: float,
) -> dict[str, np.ndarray]:
    """Per transform: each source device's weights on the "table" block ``cols`` alone (own column masked)."""
    out = {}
    for t, Yc in _centered_source_targets(cfg, Y, logl):
        rhs = Fc[:, cols].T @ Yc  # (n_src, n_src)
        W = np.zeros((len(cols), len(cols)))
        for j in range(len(cols)):
            keep = np.flatnonzero(np.arange(len(cols)) != j)
            g = gram[np.ix_(cols[keep], cols[keep])] + lam * np.eye(len(keep))
            W[j, keep] = np.linalg.solve(g, rhs[keep, j])
        out[t] = W
    return out


def fit_space(
    cfg: FewShotConfig, frame: pl.DataFrame, space: str, devs: list[str], *, gnn_init: Any = None
) -> SpaceModel:
    """Meta-train the :class:`SpaceModel` of ``space`` on source devices ``devs`` of ``frame``.

    ``gnn_init``: a meta-trained encoder of another space whose message-passing layers
    initialize this space's GNN encoder (``FewShotConfig.gnn_transfer_from``).
    """
    from hwsurrogate.surrogates.features.nas import arch_vectors

    keys, logl = latency_matrix(frame, space, devs)
    z, z_mean, z_std = standardize(logl)
    observed = np.isfinite(z)
    xr = arch_vectors(space, keys.tolist()).astype(np.float64)
    x, x_mean, x_std = standardize(xr)
    x_keep = xr.std(axis=0) > 1e-9
    x = x[:, x_keep]
    # x -> z ridge encoder, fitted per device on its observed rows
    xa = np.c_[x, np.ones(len(x))]
    encoder = np.zeros((xa.shape[1], len(devs)))
    reg = cfg.encoder_ridge * np.eye(xa.shape[1])
    reg[-1, -1] = 0.0
    for j in range(len(devs)):
        o = observed[:, j]
        encoder[:, j] = np.linalg.solve(xa[o].T @ xa[o] + reg, xa[o].T @ z[o, j])
    z_filled = np.where(observed, z, xa @ encoder)
    logl_filled = z_filled * z_std + z_mean
    src_t = tuple(cfg.source_transforms) or ("log",)
    if space in cfg.span_component and cfg.use_device_latencies and "table" not in src_t:
        src_t = (*src_t, "table")
    st_cols = np.zeros(0, dtype=np.int64)
    st_coef = np.zeros((0, 0))
    if "table" in src_t:
        st_cols, st_coef = _source_table_fit(xr, np.exp(logl_filled))
    table_ms = source_table_ms(xr, st_cols, st_coef)
    zs, zt_mean, zt_std = source_blocks(src_t, z_filled, logl_filled, table_ms=table_ms)
    n_dev = len(devs)
    n_src = zs.shape[1] if cfg.use_device_latencies else 0
    parts = ([zs] if cfg.use_device_latencies else []) + ([x] if cfg.use_arch_features else [])
    F = np.concatenate(parts, axis=1)
    pcs, pc_mean = _interaction_basis(F, dict(cfg.interaction_pcs).get(space, 0))
    F = with_interactions(F, pcs, pc_mean)
    pair_index = np.zeros((0, 2), dtype=np.int64)
    pair_mean = pair_std = np.zeros(0)
    if space in cfg.edge_pairs and cfg.use_arch_features:
        pair_index = _position_pairs(space)
        if len(pair_index) > MAX_PAIR_FEATURES:
            raise ValueError(
                f"FewShotConfig.edge_pairs: {space} would get {len(pair_index)} pair features "
                f"(limit {MAX_PAIR_FEATURES}); use it for nb201 only"
            )
        pr = pair_products(xr, pair_index)
        live = pr.std(axis=0) > 1e-9
        pair_index = pair_index[live]
        pr, pair_mean, pair_std = standardize(pr[:, live])
        F = np.concatenate([F, pr], axis=1)
    phys_mean = phys_std = np.zeros(0)
    if space in cfg.physical_features and cfg.use_arch_features:
        phys, phys_mean, phys_std = standardize(physical_vectors(space, keys.tolist()))
        F = np.concatenate([F, phys], axis=1)
    gnn = None
    gnn_arrays: dict[str, np.ndarray] = {}
    gnn_meta = None
    gnn_mean = gnn_std = np.zeros(0)
    if space in cfg.gnn:
        gnn = meta_train_gnn(space, keys, z, reference_rows(frame, space, keys), cfg.gnn_config(), gnn_init)
        emb, gnn_mean, gnn_std = standardize(gnn.embed(keys.tolist()))
        F = np.concatenate([F, emb], axis=1)
        gnn_arrays, gnn_meta = gnn.to_arrays()
    compact = np.zeros(F.shape[1])
    counts = np.zeros(F.shape[1])
    if cfg.use_arch_features:
        from hwsurrogate.surrogates.features.nas import vector_feature_names

        names = np.asarray(vector_feature_names(space))[x_keep]
        is_compact = np.array([re.match(r"^[a-z]\d+_", n) is None for n in names], dtype=float)
        compact[n_src : n_src + len(names)] = is_compact
        counts[n_src : n_src + len(names)] = [re.match(r"^n_(?!live)", n) is not None for n in names]
    table = np.zeros(F.shape[1])
    if cfg.use_arch_features and space in cfg.table_component:
        table[n_src : n_src + int(x_keep.sum())] = _table_columns(space, xr[:, x_keep], x_keep)
    Fc = F - F.mean(axis=0)
    gram = Fc.T @ Fc
    p = F.shape[1]
    # targets: standardized log latency of each source device (imputed where missing)
    Y = z_filled - z_filled.mean(axis=0)
    rhs_all = Fc.T @ Y  # (p, n_src)
    lam = cfg.prior_ridge

    def device_weights(j: int, masked: Sequence[int]) -> np.ndarray:
        keep = np.ones(p, dtype=bool)
        keep[[c for m in masked for c in _source_columns(m, n_dev, n_src)]] = False
        return ridge_masked(gram, rhs_all[:, j], np.flatnonzero(keep), lam)

    W = np.stack([device_weights(j, [j]) for j in range(len(devs))])
    transform_components: dict[str, np.ndarray] = {}
    for t, Yc in _centered_source_targets(cfg, Y, logl_filled):
        if t == "log":
            continue
        rhs_t = Fc.T @ Yc
        transform_components[t] = np.stack(
            [
                ridge_masked(
                    gram,
                    rhs_t[:, j],
                    np.flatnonzero(~np.isin(np.arange(p), _source_columns(j, n_dev, n_src))),
                    lam,
                )
                for j in range(len(devs))
            ]
        )
    meta_scores, tau, noise = _meta_select(cfg, F, z, observed, devs, n_src, device_weights)
    gnn_components: dict[str, np.ndarray] = {}
    if gnn is not None:  # source-device weights on the embedding columns alone, per transform
        g_idx = np.arange(p - gnn_mean.shape[0], p)
        for t, Yc in _centered_source_targets(cfg, Y, logl_filled):
            rhs_t = Fc.T @ Yc
            gnn_components[t] = np.stack(
                [ridge_masked(gram, rhs_t[:, j], g_idx, lam)[g_idx] for j in range(len(devs))]
            )
    table_components = _table_priors(cfg, table, gram, Fc, Y, logl_filled, lam)
    span_components: dict[str, np.ndarray] = {}
    if space in cfg.span_component and "table" in src_t and cfg.use_device_latencies:
        b = src_t.index("table")
        span_components = _span_priors(
            cfg, np.arange(b * n_dev, (b + 1) * n_dev), gram, Fc, Y, logl_filled, lam
        )
    return SpaceModel(
        space=space,
        arch_keys=keys,
        source_devices=devs,
        features=F.astype(np.float32),
        x_mean=x_mean,
        x_std=x_std,
        x_keep=x_keep,
        z_mean=z_mean,
        z_std=z_std,
        encoder=encoder,
        prior_mean=W.mean(axis=0),
        prior_components=W,
        prior_cov=np.cov(W.T) if len(devs) > 1 else np.zeros((p, p)),
        tau=tau,
        noise=noise,
        compact=compact,
        counts=counts,
        pcs=pcs,
        pc_mean=pc_mean,
        transform_components=transform_components,
        source_transforms=src_t,
        zt_mean=zt_mean,
        zt_std=zt_std,
        pair_index=pair_index,
        pair_mean=pair_mean,
        pair_std=pair_std,
        meta_scores=meta_scores,
        gnn_arrays=gnn_arrays,
        gnn_meta=gnn_meta,
        gnn_components=gnn_components,
        gnn_mean=gnn_mean,
        gnn_std=gnn_std,
        table=table,
        table_components=table_components,
        span_components=span_components,
        source_table_cols=st_cols,
        source_table_coef=st_coef,
        phys_mean=phys_mean,
        phys_std=phys_std,
        _gnn=gnn,
    )


def _meta_select(
    cfg: FewShotConfig,
    F: np.ndarray,
    z: np.ndarray,
    observed: np.ndarray,
    devs: list[str],
    n_src: int,
    device_weights: Any,
) -> tuple[dict[str, float], float, float]:
    """Leave-one-source-device-out few-shot episodes pick ``tau`` and ``noise``."""
    rng = np.random.default_rng(cfg.random_state)
    grid = [(t, s) for t in cfg.tau_grid for s in cfg.noise_grid]
    scores = np.zeros((len(grid), len(devs)))
    p = F.shape[1]
    for j in range(len(devs)):
        others = [i for i in range(len(devs)) if i != j]
        Wj = np.stack([device_weights(i, [i, j]) for i in others])
        keep = np.ones(p, dtype=bool)
        keep[_source_columns(j, len(devs), n_src)] = False
        Fj = F[:, keep]
        Wk = Wj[:, keep]
        mean = Wk.mean(axis=0, keepdims=True)
        cov = np.cov(Wk.T) if len(others) > 1 else np.zeros((keep.sum(), keep.sum()))
        prior_means = Wk if cfg.prior == "mixture" else mean
        obs = np.flatnonzero(observed[:, j])
        y = z[:, j]
        for _ in range(cfg.meta_draws):
            sup = rng.choice(obs, size=min(cfg.meta_k, len(obs) // 2), replace=False)
            rest = np.setdiff1d(obs, sup)
            qry = rng.choice(rest, size=min(cfg.meta_query, len(rest)), replace=False)
            for g, (tau, noise) in enumerate(grid):
                head = posterior_head(Fj[sup], y[sup], prior_means, cov, tau=tau, noise=noise)
                scores[g, j] += spearman(predict_head(head, Fj[qry]), y[qry]) / cfg.meta_draws
    best = int(np.argmax(scores.mean(axis=1)))
    tau, noise = grid[best]
    out = {f"loo_spearman_{d}": float(scores[best, j]) for j, d in enumerate(devs)}
    out["loo_spearman_mean"] = float(scores[best].mean())
    return out, float(tau), float(noise)
