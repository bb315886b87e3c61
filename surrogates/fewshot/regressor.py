"""The few-shot latency predictor: :class:`FewShotLatencyRegressor`.

``fit`` meta-trains one :class:`~.space.SpaceModel` per NAS space (:mod:`.meta_train`);
``adapt`` turns a new device's handful of measurements into a :class:`~.posterior.DeviceHead`
in closed form (the source-prior posterior averaged with prior-free ridges, per latency
transform, by marginal likelihood); ``predict`` gives milliseconds; ``save``/``load`` keep the
model in one ``.npz`` file. Adaptation and prediction on table architectures import numpy and
polars only.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.errors import TrainingDataError
from hwsurrogate.io import atomic_write_bytes
from hwsurrogate.surrogates.fewshot.config import (
    FEWSHOT_SPACES,
    FewShotConfig,
    FewShotError,
    NotMetaTrainedError,
)
from hwsurrogate.surrogates.fewshot.meta_train import fit_space
from hwsurrogate.surrogates.fewshot.posterior import DeviceHead, log_jacobian, posterior_head, predict_head
from hwsurrogate.surrogates.fewshot.space import SpaceModel


class FewShotLatencyRegressor:
    """Device-adaptive latency predictor (see the package docstring).

    ``fit(frame)`` meta-trains on the ``latency`` rows of the source devices (all devices of
    the frame unless ``devices`` is given); ``adapt(space, arch_keys, latency_ms)`` returns a
    :class:`DeviceHead` for a new device in closed form; ``predict(head, arch_keys)`` gives ms.
    """

    def __init__(self, config: FewShotConfig | None = None) -> None:
        self.config = config or FewShotConfig()

    # ------------------------------------------------------------------ meta-training
    def fit(
        self,
        frame: pl.DataFrame,
        *,
        devices: dict[str, Sequence[str]] | Sequence[str] | None = None,
        spaces: Sequence[str] | None = None,
        progress: Any = None,
    ) -> FewShotLatencyRegressor:
        """Meta-train one :class:`SpaceModel` per space (see :func:`.meta_train.fit_space`)."""
        cfg = self.config
        if not (cfg.use_device_latencies or cfg.use_arch_features):
            raise ValueError("FewShotConfig needs use_device_latencies or use_arch_features")
        for col in ("device_id", "space", "arch_key", "latency_ms"):
            if col not in frame.columns:
                raise TrainingDataError(f"few-shot training frame misses column {col!r}")
        present = frame["space"].unique().to_list()
        spaces = [s for s in (spaces or FEWSHOT_SPACES) if s in present]
        if cfg.gnn_transfer_from in spaces:  # the transfer source is meta-trained first
            spaces = [cfg.gnn_transfer_from] + [s for s in spaces if s != cfg.gnn_transfer_from]
        if not spaces:
            raise TrainingDataError(f"no rows of spaces {list(FEWSHOT_SPACES)} in the training frame")
        self.spaces_: dict[str, SpaceModel] = {}
        for space in spaces:
            if devices is None:
                devs = sorted(frame.filter(pl.col("space") == space)["device_id"].unique().to_list())
            elif isinstance(devices, dict):
                devs = list(devices.get(space, []))
            else:
                devs = list(devices)
            devs = [d for d in devs if d in set(frame.filter(pl.col("space") == space)["device_id"].unique())]
            if len(devs) < 2:
                if isinstance(devices, dict) and space not in devices:
                    continue
                raise TrainingDataError(f"{space}: need at least 2 source devices, got {devs}")
            src = cfg.gnn_transfer_from
            init = self.spaces_[src].gnn if src and src != space and src in self.spaces_ else None
            self.spaces_[space] = fit_space(cfg, frame, space, devs, gnn_init=init)
            if progress is not None:
                progress()
        if not self.spaces_:
            raise TrainingDataError("no space had at least 2 source devices")
        return self

    # ------------------------------------------------------------------ adaptation / prediction
    def _space(self, space: str) -> SpaceModel:
        if not hasattr(self, "spaces_"):
            raise NotMetaTrainedError("FewShotLatencyRegressor is not meta-trained; call fit() first")
        if space not in self.spaces_:
            raise FewShotError(
                f"space {space!r} is not covered by this few-shot model; it covers {sorted(self.spaces_)}"
            )
        return self.spaces_[space]

    def features(self, space: str, arch_keys: Sequence[str]) -> np.ndarray:
        cfg = self.config
        return self._space(space).design(
            arch_keys, use_z=cfg.use_device_latencies, use_x=cfg.use_arch_features
        )

    def adapt_rows(self, space: str, F: np.ndarray, log_y: np.ndarray) -> DeviceHead:
        """Adapt from design rows ``F`` and log-latencies (the benchmarks' fast path).

        Per output transform (``config.transforms``): with ``flat_component`` the source-prior
        posterior is averaged with ridges on the architecture features alone (no source prior),
        weighted by their marginal likelihoods (Bayesian model averaging): sources unlike the
        device lose weight automatically. The transforms' heads are then averaged the same way,
        their marginal likelihoods made comparable by the Jacobian of each transform.
        """
        cfg = self.config
        log_y = np.asarray(log_y, dtype=float)
        transforms = list(cfg.transforms) or ["log"]
        heads = [self._adapt_transform(space, F, log_y, t) for t in transforms]
        if len(heads) == 1:
            return heads[0]
        n = len(log_y)
        score = [h.loo if cfg.weighting == "loo" else h.evidence for h in heads]
        ev = np.array(
            [
                v - n * np.log(h.y_std) + log_jacobian(h.transform, log_y)
                for v, h in zip(score, heads, strict=True)
            ]
        )
        a = np.exp(ev - ev.max())
        a /= a.sum()
        first = heads[0]
        return DeviceHead(
            space,
            np.zeros(0),
            np.zeros(0),
            first.y_mean,
            first.y_std,
            n,
            evidence=float(ev.max() + np.log(np.mean(np.exp(ev - ev.max())))),
            log_range=first.log_range,
            transform="bma",
            components=heads,
            component_weights=[float(v) for v in a],
        )

    def _adapt_transform(self, space: str, F: np.ndarray, log_y: np.ndarray, transform: str) -> DeviceHead:
        """One transform's head: the source-prior posterior(s) averaged with the flat ridges."""
        sm = self._space(space)
        cfg = self.config
        W, cov = sm.prior(transform)
        src_iso = None
        if sm.n_gnn and not cfg.gnn_features:  # the embedding only feeds its own ridge component
            g = slice(F.shape[1] - sm.n_gnn, None)
            W, cov = W.copy(), cov.copy()
            W[:, g] = 0.0
            cov[g, :] = 0.0
            cov[:, g] = 0.0
            src_iso = np.ones(F.shape[1])
            src_iso[g] = 0.0
        kinds = ["mixture", "gaussian"] if cfg.prior == "both" else [cfg.prior]
        taus: list[float] = [sm.tau * f for f in cfg.evidence_tau_factors] or [sm.tau]
        noises: list[float] = list(cfg.evidence_noises) or [sm.noise]
        if not cfg.evidence_tau_factors:
            noises = [sm.noise]
        heads = [
            posterior_head(
                F,
                log_y,
                W if kind == "mixture" else W.mean(axis=0, keepdims=True),
                cov,
                tau=taus,
                noise=noises,
                space=space,
                iso=src_iso,
                transform=transform,
            )
            for kind in kinds
        ]
        n_z = len(sm.source_devices) * len(sm.source_transforms) if cfg.use_device_latencies else 0
        p = F.shape[1]
        isos = []
        if cfg.flat_component and cfg.use_arch_features and space not in cfg.no_flat:
            iso = np.ones(p)
            iso[:n_z] = 0.0  # the flat models ignore the source-device latencies
            if src_iso is not None:
                iso[src_iso == 0] = 0.0
            isos = [iso]
            if cfg.compact_component and sm.compact.shape == (p,) and sm.compact.any():
                isos.append(sm.compact)  # counts/MACs/paths only: few weights, sample-efficient
            if cfg.count_component and sm.counts.shape == (p,) and sm.counts.any():
                isos.append(sm.counts)
        if sm.n_gnn and cfg.gnn_component:
            iso = np.zeros(p)
            iso[p - sm.n_gnn :] = 1.0  # a ridge on the meta-trained GNN embedding alone
            isos.append(iso)
        if sm.n_gnn and cfg.gnn_prior_component and transform in sm.gnn_components:
            g = slice(p - sm.n_gnn, None)
            Wg = sm.gnn_components[transform]
            mean_g = np.zeros((1, p))
            mean_g[0, g] = Wg.mean(axis=0)
            cov_g = np.zeros((p, p))
            if len(Wg) > 1:
                cov_g[g, g] = np.cov(Wg.T)
            iso = np.zeros(p)
            iso[g] = 1.0
            heads.append(
                posterior_head(
                    F,
                    log_y,
                    mean_g,
                    cov_g,
                    tau=cfg.flat_taus,
                    noise=noises,
                    iso=iso,
                    space=space,
                    transform=transform,
                )  # fmt: skip
            )
        if space in cfg.span_component and transform in sm.span_components:
            heads.append(_span_head(sm, cfg, F, log_y, transform))
        if space in cfg.table_component and transform in sm.table_components and sm.table.shape == (p,):
            heads += _table_heads(sm, cfg, F, log_y, transform, noises)
        if isos:
            heads += [
                posterior_head(
                    F,
                    log_y,
                    np.zeros((1, p)),
                    np.zeros((p, p)),
                    tau=cfg.flat_taus,
                    noise=noises,
                    iso=d,
                    space=space,
                    transform=transform,
                )
                for d in isos
            ]
        head = heads[0]
        if len(heads) == 1:
            return head
        ev = np.array([h.evidence for h in heads])
        loo = np.array([h.loo for h in heads])
        a = np.exp((loo - loo.max()) if cfg.weighting == "loo" else (ev - ev.max()))
        a /= a.sum()
        head.weights = sum(ai * h.weights for ai, h in zip(a, heads, strict=True))
        head.evidence = float(ev.max() + np.log(np.mean(np.exp(ev - ev.max()))))
        head.loo = float(loo.max() + np.log(np.mean(np.exp(loo - loo.max()))))
        return head

    def adapt(self, space: str, arch_keys: Sequence[str], latency_ms: np.ndarray) -> DeviceHead:
        y = np.asarray(latency_ms, dtype=float)
        return self.adapt_rows(space, self.features(space, arch_keys), np.log(y))

    def predict(self, head: DeviceHead, arch_keys: Sequence[str]) -> np.ndarray:
        """Latency in ms of ``arch_keys`` on the adapted device ``head``."""
        return np.exp(predict_head(head, self.features(head.space, arch_keys)))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model to one ``.npz`` file atomically (temp file + ``os.replace``)."""
        if not hasattr(self, "spaces_"):
            raise NotMetaTrainedError("cannot save a few-shot model that is not meta-trained")
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {"config": asdict(self.config), "spaces": {}}
        for space, sm in self.spaces_.items():
            for name in (
                "arch_keys", "features", "x_mean", "x_std", "x_keep", "z_mean", "z_std",
                "encoder", "prior_mean", "prior_components", "prior_cov", "pcs", "pc_mean", "compact", "counts",
                "zt_mean", "zt_std", "pair_index", "pair_mean", "pair_std",
            ):  # fmt: skip
                arrays[f"{space}/{name}"] = np.asarray(getattr(sm, name))
            for t, Wt in sm.transform_components.items():
                arrays[f"{space}/transform_components_{t}"] = np.asarray(Wt)
            for name in ("source_table_cols", "source_table_coef", "phys_mean", "phys_std"):
                arrays[f"{space}/{name}"] = np.asarray(getattr(sm, name))
            if sm.table_components:
                arrays[f"{space}/table"] = np.asarray(sm.table)
                arrays |= {
                    f"{space}/table_components_{t}": np.asarray(v) for t, v in sm.table_components.items()
                }
            arrays |= {f"{space}/span_components_{t}": np.asarray(v) for t, v in sm.span_components.items()}
            if sm.gnn_meta is not None:
                arrays |= {f"{space}/gnn_param/{k}": v for k, v in sm.gnn_arrays.items()}
                arrays[f"{space}/gnn_mean"] = np.asarray(sm.gnn_mean)
                arrays[f"{space}/gnn_std"] = np.asarray(sm.gnn_std)
                for t, Wg in sm.gnn_components.items():
                    arrays[f"{space}/gnn_components_{t}"] = np.asarray(Wg)
            meta["spaces"][space] = {
                "gnn": sm.gnn_meta,
                "source_devices": sm.source_devices,
                "tau": sm.tau,
                "noise": sm.noise,
                "source_transforms": list(sm.source_transforms),
                "meta_scores": sm.meta_scores,
            }
        arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FewShotLatencyRegressor:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta.json"]).decode())
            cfg = meta["config"]
            cfg.setdefault("transforms", ["log"])  # files saved before transforms existed
            cfg = FewShotConfig(**{k: _tuples(v) if isinstance(v, list) else v for k, v in cfg.items()})
            model = cls(cfg)
            model.spaces_ = {}
            for space, info in meta["spaces"].items():
                arr = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(space + "/")}
                model.spaces_[space] = SpaceModel(
                    space=space,
                    arch_keys=arr["arch_keys"].astype(str),
                    source_devices=list(info["source_devices"]),
                    features=arr["features"],
                    x_mean=arr["x_mean"],
                    x_std=arr["x_std"],
                    x_keep=arr["x_keep"].astype(bool),
                    z_mean=arr["z_mean"],
                    z_std=arr["z_std"],
                    encoder=arr["encoder"],
                    prior_mean=arr["prior_mean"],
                    prior_components=arr["prior_components"],
                    prior_cov=arr["prior_cov"],
                    tau=float(info["tau"]),
                    noise=float(info["noise"]),
                    compact=arr.get("compact", np.zeros(0)),
                    counts=arr.get("counts", np.zeros(0)),
                    pcs=arr.get("pcs", np.zeros((0, 0))),
                    pc_mean=arr.get("pc_mean", np.zeros(0)),
                    source_transforms=tuple(info.get("source_transforms", ["log"])),
                    zt_mean=arr.get("zt_mean", np.zeros((0, 0))),
                    zt_std=arr.get("zt_std", np.zeros((0, 0))),
                    pair_index=arr.get("pair_index", np.zeros((0, 2), dtype=np.int64)),
                    pair_mean=arr.get("pair_mean", np.zeros(0)),
                    pair_std=arr.get("pair_std", np.zeros(0)),
                    transform_components={
                        k.removeprefix("transform_components_"): v
                        for k, v in arr.items()
                        if k.startswith("transform_components_")
                    },
                    meta_scores=dict(info["meta_scores"]),
                    table=arr.get("table", np.zeros(0)),
                    span_components={
                        k.removeprefix("span_components_"): v
                        for k, v in arr.items()
                        if k.startswith("span_components_")
                    },
                    source_table_cols=arr.get("source_table_cols", np.zeros(0, dtype=np.int64)),
                    source_table_coef=arr.get("source_table_coef", np.zeros((0, 0))),
                    phys_mean=arr.get("phys_mean", np.zeros(0)),
                    phys_std=arr.get("phys_std", np.zeros(0)),
                    table_components={
                        k.removeprefix("table_components_"): v
                        for k, v in arr.items()
                        if k.startswith("table_components_")
                    },
                )
                if info.get("gnn"):
                    sm = model.spaces_[space]
                    sm.gnn_arrays = {
                        k.split("/", 1)[1]: v for k, v in arr.items() if k.startswith("gnn_param/")
                    }
                    sm.gnn_meta = dict(info["gnn"])
                    sm.gnn_mean, sm.gnn_std = arr["gnn_mean"], arr["gnn_std"]
                    sm.gnn_components = {
                        k.removeprefix("gnn_components_"): v
                        for k, v in arr.items()
                        if k.startswith("gnn_components_")
                    }
        return model

    @property
    def source_devices(self) -> set[str]:
        return {d for sm in self.spaces_.values() for d in sm.source_devices}


def _tuples(v: list[Any]) -> tuple[Any, ...]:
    return tuple(_tuples(x) if isinstance(x, list) else x for x in v)


def _span_head(
    sm: SpaceModel, cfg: FewShotConfig, F: np.ndarray, log_y: np.ndarray, transform: str
) -> DeviceHead:
    """The lookup-table span model: the "table" source block alone, prior N(mean, cov + tau I) of the sources' weights."""
    p = F.shape[1]
    n_dev = len(sm.source_devices)
    b = list(sm.source_transforms).index("table")
    cols = np.arange(b * n_dev, (b + 1) * n_dev)
    W = sm.span_components[transform]
    mean = np.zeros((1, p))
    mean[0, cols] = W.mean(axis=0)
    cov = np.zeros((p, p))
    if len(W) > 1:
        cov[np.ix_(cols, cols)] = np.cov(W.T)
    iso = np.zeros(p)
    iso[cols] = 1.0
    return posterior_head(
        F,
        log_y,
        mean,
        cov,
        tau=cfg.span_taus,
        noise=cfg.span_noises,
        iso=iso,
        space=sm.space,
        transform=transform,
    )


def _table_heads(
    sm: SpaceModel,
    cfg: FewShotConfig,
    F: np.ndarray,
    log_y: np.ndarray,
    transform: str,
    noises: Sequence[float],
) -> list[DeviceHead]:
    """Cost-table model(s): table columns only, prior N(mean of the source tables, c * S + tau I)."""
    p = F.shape[1]
    idx = np.flatnonzero(sm.table)
    Wt = sm.table_components[transform]
    mean = np.zeros((1, p))
    mean[0, idx] = Wt.mean(axis=0)
    S = np.cov(Wt.T) if len(Wt) > 1 else np.zeros((len(idx), len(idx)))
    heads = []
    for c in cfg.table_cov_scales or (1.0,):
        cov = np.zeros((p, p))
        cov[np.ix_(idx, idx)] = c * S
        heads.append(
            posterior_head(
                F,
                log_y,
                mean,
                cov,
                tau=cfg.flat_taus,
                noise=noises,
                iso=sm.table,
                space=sm.space,
                transform=transform,
            )  # fmt: skip
        )
    return heads
