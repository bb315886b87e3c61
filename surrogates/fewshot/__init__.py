"""Few-shot latency prediction on an unseen device: meta-trained prior + closed-form adaptation.

The problem: a new phone/board/GPU, a handful of measured architectures (HELP's 10 reference
architectures plus a few more), and a latency prediction for every architecture of a NAS space.

**Model** (a hierarchical Bayesian linear model; one per NAS space). An architecture ``a`` is
described by a feature vector ``f(a) = [z(a), x(a)]``:

- ``z(a)``: its standardized log-latencies on the *source* devices (every architecture of a
  space's table was measured on every source device; NASFLAT/MultiPredict-style). For an
  architecture outside the table (a user model), ``z`` comes from a ridge encoder
  ``x -> z`` fitted on the table.
- ``x(a)``: the standardized architecture vector of :func:`~.graphs.arch_vectors` (op one-hots,
  op counts, live-path features, MAC proxies).
- ``e(a)`` (``FewShotConfig.gnn``, default NB201 and FBNet): the embedding of the GNN encoder
  of :mod:`.fewshot_gnn`, meta-trained on the source devices; it adds feature columns and two
  models (a ridge and a source-prior model on ``e`` alone) to the model average below.

A device's latency is linear in a transform of it, ``g(y) = mu + s * f(a) . w``, for ``g`` in
``log`` (multiplicative op costs), ``sqrt`` and ``ms`` (latency = sum of the ops' latencies).
Meta-training learns, per transform, the prior ``w ~ N(m, S + tau I)`` from the source
devices: each source device's ``w_d`` is fitted on its full table with its own columns of ``z``
masked, ``m``/``S`` are their mean/covariance; ``tau`` and the noise variance are chosen by
leave-one-source-device-out few-shot validation. Adapting to a new device is the closed-form
posterior mean given its k measurements (a ridge solve: milliseconds), with ``tau``/noise
picked by the support set's marginal likelihood, averaged with prior-free ridges on the
architecture features, and the transforms' heads averaged by their marginal likelihoods made
comparable by each transform's Jacobian (Bayesian model averaging). With ``prior="mixture"``
the prior is a mixture of Gaussians centred on the individual source devices, weighted by how
well each explains the support set (the posterior starts from the most similar known devices).

Honesty rules used by the benchmarks: a target device's latencies are only read at the support
architectures; the 10 reference architectures count as measurements.

The adaptation path imports numpy and polars only (no torch, no MLflow) so that ``hws adapt``
finishes in well under 2 s; features of the table architectures are stored in the model file.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from hwsurrogate.datasets import archspaces
from hwsurrogate.errors import HwSurrogateError, TrainingDataError

MODEL_NAME = "hws-fewshot-latency"
#: predictions stay within this factor of the measured support range (guards wild extrapolation
#: to architectures far outside the support, e.g. disconnected NB201 cells)
EXTRAPOLATION_FACTOR = 4.0
FEWSHOT_SPACES: tuple[str, ...] = ("nb201", "fbnet", "ofa")
PriorKind = Literal["gaussian", "mixture", "both"]
#: most op-at-position pair features FewShotConfig.edge_pairs may add (NB201 has 375)
MAX_PAIR_FEATURES = 2000
#: latency transforms a device head can be linear in (see FewShotConfig.transforms)
TRANSFORMS: tuple[str, ...] = ("log", "sqrt", "ms")
#: source-latency feature blocks: the transforms, or "table" (each source device's additive
#: per-position cost table fitted on its whole table, i.e. its latencies denoised to a lookup table)
SOURCE_BLOCKS: tuple[str, ...] = (*TRANSFORMS, "table")
#: spaces with physical per-layer cost features (FewShotConfig.physical_features)
PHYSICAL_SPACES: tuple[str, ...] = ("fbnet",)


class FewShotError(HwSurrogateError, ValueError):
    """Bad measurements or device name for few-shot adaptation (names the field)."""


class NotMetaTrainedError(HwSurrogateError, LookupError):
    """No meta-trained few-shot model is available (run ``hws train fewshot``)."""


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class FewShotConfig:
    """Hyperparameters of :class:`FewShotLatencyRegressor` (saved with the model)."""

    use_device_latencies: bool = True  # z(a): source-device log-latencies as arch features
    use_arch_features: bool = True  # x(a): graphs.arch_vectors as arch features
    # gaussian prior (mean/covariance of the source devices' weights), a mixture centred on the
    # individual source devices, or both averaged by marginal likelihood; gaussian won on the
    # validation devices (HELP meta-valid + leave-one-out mobile meta-train devices, NB201 and FBNet)
    prior: PriorKind = "gaussian"
    prior_ridge: float = 1.0  # ridge of each source device's full-table fit (prior estimation)
    tau_grid: tuple[float, ...] = (0.0003, 0.001, 0.003, 0.01, 0.03)  # isotropic prior variance added to S
    noise_grid: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)  # noise variance (standardized log units)
    encoder_ridge: float = 1.0  # ridge of the x -> z encoder for archs outside the table
    meta_k: int = 20  # support size of the meta-validation episodes
    meta_draws: int = 3  # support draws per pseudo-target device
    meta_query: int = 1000  # query archs per meta-validation episode
    # pairwise products of the first k principal components of [z, x], per space; k chosen on
    # HELP's meta-valid devices (NB201: 4 helps, FBNet: none does)
    interaction_pcs: tuple[tuple[str, int], ...] = (("nb201", 4),)
    # at adaptation, tau is picked by marginal likelihood among meta-tau x these factors and the
    # noise among evidence_noises (empty factors: use the meta-selected tau/noise as they are)
    evidence_tau_factors: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
    evidence_noises: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.4)
    flat_component: bool = True  # Bayesian model averaging with a prior-free ridge on x
    compact_component: bool = True  # ... and with a ridge on the compact (count/MAC) arch features
    # ... and with a ridge on the op counts alone: in an NB201 cell an op costs the same on every
    # edge, so latency ~ sum of per-op costs (a 5-weight model that 10-20 measurements pin down)
    count_component: bool = True
    flat_taus: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    # output transforms of the latency the linear model is fitted in ("log": multiplicative
    # op costs; "ms": latency = sum of op latencies, exact for sequential execution; "sqrt":
    # in between). Each has its own source-device prior; a device's heads are combined by
    # Bayesian model averaging with Jacobian-corrected marginal likelihoods (on ms).
    transforms: tuple[str, ...] = ("log", "sqrt", "ms")
    # the source-device latencies enter the arch features as these transforms (one block of
    # n_src standardized columns each): "ms" lets an additive device be a sum of source latencies
    source_transforms: tuple[str, ...] = ("log",)
    # spaces whose features include the products of the per-position op one-hots of two
    # different positions (NB201: op-at-edge pairs; lets an additive-in-ms model price op
    # combinations, e.g. cache effects on a Raspberry Pi); their weights come from the source prior
    edge_pairs: tuple[str, ...] = ()
    min_measurements: int = 5  # fewest measurements per space accepted by adapt
    random_state: int = 0
    # spaces whose arch features include the meta-trained GNN embedding of .fewshot_gnn
    # (a GIN encoder meta-trained on the source devices through a closed-form per-device head;
    # see docs/fewshot.md). Chosen on the validation devices (`hws bench fewshot-gnn`): NB201
    # 0.930 -> 0.933, FBNet 0.862 -> 0.876 with the settings below; OFA has not been validated.
    gnn: tuple[str, ...] = ("nb201", "fbnet")
    gnn_features: bool = True  # the embedding enters the source-prior Bayesian model as columns
    gnn_component: bool = True  # ... and a prior-free ridge on the embedding joins the model average
    # ... and a model on the embedding alone whose prior is fitted to the source devices' weights
    # on it (the stand-alone GNN head with a source-device Gaussian prior) joins the average
    gnn_prior_component: bool = True
    gnn_steps: int = 400  # meta-training steps of the encoder
    gnn_embed_dim: int = 16
    gnn_inner: str = "ridge"  # inner loop of meta-training: closed-form "ridge", "metasgd", "none" (v0)
    gnn_rank_loss: float = 0.0  # weight of the pairwise ranking loss in meta-training
    gnn_ensemble: int = 1  # independently seeded encoders (embeddings concatenated)
    # HELP's hardware embedding (the 10 reference latencies -> MLP) as the prior mean of a
    # device's head in meta-training; off: a learned global prior mean (measured better on the
    # validation devices: NB201 0.9327 vs 0.9323, FBNet 0.876 vs 0.875)
    gnn_use_references: bool = False
    # cross-space transfer: a space whose encoder (meta-trained earlier in the same fit, e.g.
    # "nb201") initializes the message-passing layers of the other spaces' encoders
    gnn_transfer_from: str = ""
    # a per-layer cost-table model: latency (in each transform) = sum over positions of the cost
    # of the op chosen there (the per-position op one-hots alone, e.g. FBNet's 22 x 9 table), with
    # a Gaussian prior fitted to the source devices' tables (mean + low-rank covariance of their
    # ridge fits, plus an evidence-selected diagonal among flat_taus) joins the model average
    table_component: tuple[str, ...] = ()
    # the prior's low-rank part is scaled by each of these (evidence-selected per device)
    table_cov_scales: tuple[float, ...] = (1.0,)
    # spaces whose features include physical per-layer cost terms summed over the layers (MACs of
    # the expand / depthwise / project convolutions, activation and parameter sizes, per-stage
    # conv counts; see physical_vectors): a basis for lookup-table devices beyond the sources' span
    physical_features: tuple[str, ...] = ()
    # spaces where a model on the "table" source block alone (the sources' denoised lookup-table
    # latencies as the only features, a Gaussian prior fitted to the source devices' weights on
    # them, each device's own column masked) joins the model average; needs "table" in
    # source_transforms (added automatically for these spaces)
    # (FBNet: HELP validation 0.8753 -> 0.8801; with no_flat 0.8830). Off by default: with the
    # NASFLAT task suite's source devices the pair collapses F3 0.911 -> 0.582 and FA 0.687 ->
    # 0.564 (rows "ablation: lookup-table span ..." of `hws bench fewshot-tasks`), so the HELP
    # validation gain does not carry to other source-device sets
    span_component: tuple[str, ...] = ()
    span_taus: tuple[float, ...] = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
    span_noises: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)
    # spaces where the prior-free ridges (flat, compact, op-count) stay out of the model average
    # even with flat_component on: on FBNet they took weight from better models on noisy phones
    no_flat: tuple[str, ...] = ()
    # how the model average weights its models: "evidence" (marginal likelihood of the support)
    # or "loo" (leave-one-out predictive log density of the support, closed form; Geisser's
    # pseudo-likelihood: rewards the model that predicts held-out support points, not the one
    # whose prior fits the support best)
    weighting: str = "evidence"

    def __post_init__(self) -> None:
        for name, allowed in (("transforms", TRANSFORMS), ("source_transforms", SOURCE_BLOCKS)):
            bad = [t for t in getattr(self, name) if t not in allowed]
            if bad:
                raise ValueError(f"FewShotConfig.{name}: {bad} not among {list(allowed)}")
        bad = [s for s in self.span_component if s not in FEWSHOT_SPACES]
        if bad:
            raise ValueError(f"FewShotConfig.span_component: {bad} not among {list(FEWSHOT_SPACES)}")
        bad = [s for s in self.physical_features if s not in PHYSICAL_SPACES]
        if bad:
            raise ValueError(f"FewShotConfig.physical_features: {bad} not among {list(PHYSICAL_SPACES)}")
        if self.weighting not in ("evidence", "loo"):
            raise ValueError(f"FewShotConfig.weighting: {self.weighting!r} is not evidence or loo")
        if self.prior not in ("gaussian", "mixture", "both"):
            raise ValueError(f"FewShotConfig.prior: {self.prior!r} is not gaussian, mixture or both")
        bad = [s for s in self.gnn if s not in FEWSHOT_SPACES]
        if bad:
            raise ValueError(f"FewShotConfig.gnn: {bad} not among {list(FEWSHOT_SPACES)}")
        for name in ("table_component", "no_flat"):
            bad = [s for s in getattr(self, name) if s not in FEWSHOT_SPACES]
            if bad:
                raise ValueError(f"FewShotConfig.{name}: {bad} not among {list(FEWSHOT_SPACES)}")
        if self.gnn_inner not in ("ridge", "metasgd", "none"):
            raise ValueError(f"FewShotConfig.gnn_inner: {self.gnn_inner!r} is not ridge, metasgd or none")
        if self.gnn_transfer_from not in ("", *FEWSHOT_SPACES):
            raise ValueError(
                f"FewShotConfig.gnn_transfer_from: {self.gnn_transfer_from!r} is not '' or one of {list(FEWSHOT_SPACES)}"
            )

    def gnn_config(self) -> Any:
        """The :class:`~.fewshot_gnn.MetaGNNConfig` of the ``gnn_*`` fields (imports torch)."""
        from hwsurrogate.surrogates.fewshot.meta_gnn import MetaGNNConfig

        return MetaGNNConfig(
            embed_dim=self.gnn_embed_dim,
            steps=self.gnn_steps,
            inner=self.gnn_inner,
            rank_loss_weight=self.gnn_rank_loss,
            ensemble=self.gnn_ensemble,
            use_references=self.gnn_use_references,
            seed=self.random_state,
        )


# --------------------------------------------------------------------------- linear algebra
def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def _ridge_masked(gram: np.ndarray, rhs: np.ndarray, keep: np.ndarray, lam: float) -> np.ndarray:
    """Ridge weights using only feature indices ``keep`` (others 0), from a precomputed Gram."""
    w = np.zeros(gram.shape[0])
    g = gram[np.ix_(keep, keep)]
    w[keep] = np.linalg.solve(g + lam * np.eye(len(keep)), rhs[keep])
    return w


def forward_transform(name: str, log_y: np.ndarray) -> np.ndarray:
    """``g(y)`` of latencies given as log-latencies (``log``, ``sqrt`` or ``ms``)."""
    if name == "log":
        return np.asarray(log_y, dtype=float)
    if name == "ms":
        return np.exp(log_y)
    if name == "sqrt":
        return np.exp(0.5 * np.asarray(log_y))
    raise ValueError(f"transform {name!r} is not one of {list(TRANSFORMS)}")


def log_jacobian(name: str, log_y: np.ndarray) -> float:
    """``sum log |g'(y)|`` over the support (puts marginal likelihoods of transforms on ms)."""
    log_y = np.asarray(log_y, dtype=float)
    if name == "log":
        return float(-log_y.sum())
    if name == "ms":
        return 0.0
    if name == "sqrt":
        return float((-np.log(2.0) - 0.5 * log_y).sum())
    raise ValueError(f"transform {name!r} is not one of {list(TRANSFORMS)}")


def _inverse_to_log(name: str, g: np.ndarray, floor: float) -> np.ndarray:
    """log-latency from ``g(y)``; non-positive ``g`` (extrapolation) floors at ``floor`` (log ms)."""
    if name == "log":
        return g
    lo = np.exp(floor) if name == "ms" else np.exp(0.5 * floor)
    g = np.maximum(g, lo)
    return np.log(g) if name == "ms" else 2.0 * np.log(g)


@dataclass
class DeviceHead:
    """A device's adapted weights in one space: ``log y = y_mean + y_std * (f - f_mean) . w``."""

    space: str
    weights: np.ndarray
    f_mean: np.ndarray
    y_mean: float
    y_std: float
    n_measurements: int
    evidence: float = float("nan")  # log marginal likelihood of the support (standardized units)
    loo: float = float("nan")  # leave-one-out predictive log density of the support (same units)
    log_range: tuple[float, float] = (-np.inf, np.inf)  # predictions are clipped to this log range
    transform: str = "log"  # the head is linear in forward_transform(transform, log y)
    # Bayesian model average: the prediction (log ms) is sum_i component_weights[i] * components[i]
    components: list[DeviceHead] = field(default_factory=list)
    component_weights: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "transform": self.transform,
            "components": [c.to_json() for c in self.components],
            "component_weights": [float(v) for v in self.component_weights],
            "space": self.space,
            "weights": [float(v) for v in self.weights],
            "f_mean": [float(v) for v in self.f_mean],
            "y_mean": self.y_mean,
            "y_std": self.y_std,
            "n_measurements": self.n_measurements,
            "evidence": self.evidence,
            "log_range": [float(v) for v in self.log_range],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DeviceHead:
        return cls(
            space=str(d["space"]),
            weights=np.asarray(d["weights"], dtype=float),
            f_mean=np.asarray(d["f_mean"], dtype=float),
            y_mean=float(d["y_mean"]),
            y_std=float(d["y_std"]),
            n_measurements=int(d["n_measurements"]),
            evidence=float(d.get("evidence", float("nan"))),
            log_range=tuple(float(v) for v in d.get("log_range", (-np.inf, np.inf))),  # type: ignore[arg-type]
            transform=str(d.get("transform", "log")),
            components=[cls.from_json(c) for c in d.get("components", [])],
            component_weights=[float(v) for v in d.get("component_weights", [])],
        )


def posterior_head(
    F: np.ndarray,
    log_y: np.ndarray,
    prior_means: np.ndarray,
    prior_cov: np.ndarray,
    *,
    tau: float | Sequence[float],
    noise: float | Sequence[float],
    space: str = "",
    iso: np.ndarray | None = None,
    transform: str = "log",
) -> DeviceHead:
    """Closed-form posterior mean of ``w`` for support features ``F`` (n, p) and ``log_y`` (n,).

    ``prior_means`` is (c, p): one Gaussian prior (c = 1) or a mixture of c equally likely
    components sharing the covariance ``prior_cov + tau I``; for a mixture the posterior mean is
    the responsibility-weighted mean of the component posteriors. When ``tau``/``noise`` are
    sequences, the pair with the highest marginal likelihood of the support set is used
    (type-II maximum likelihood: a device unlike the sources loosens the prior by itself).
    ``iso`` (p,) scales the ``tau`` term per feature (0 keeps a weight at its prior mean).
    The log marginal likelihood is returned in ``head.evidence``. ``transform`` names the
    latency transform the model is linear in (:func:`forward_transform`); the prior is in the
    standardized units of that transform.
    """
    n, p = F.shape
    gy = forward_transform(transform, log_y)
    y_mean = float(gy.mean())
    y_std = float(gy.std())
    if not np.isfinite(y_std) or y_std < 1e-6:
        y_std = 1.0  # all support latencies equal: keep the scale, fit only the offset
    yn = (gy - y_mean) / y_std
    f_mean = F.mean(axis=0)
    Fc = F - f_mean
    means = np.atleast_2d(prior_means)
    resid = yn[None, :] - means @ Fc.T  # (c, n)
    d = np.ones(p) if iso is None else np.asarray(iso, dtype=float)
    terms = _primal_terms if n > p else _dual_terms  # the cheaper of two exact forms
    evidence, t, s2, alpha_f, loglik = terms(Fc, resid, prior_cov, d, tau, noise)
    loo = _loo_log_density(Fc, resid[0], prior_cov + t * np.diag(d), s2)
    posts = means + alpha_f @ prior_cov + t * alpha_f * d  # m + S F^T K^-1 (y - F m)
    if means.shape[0] == 1:
        w = posts[0]
    else:
        r = np.exp(loglik - loglik.max())
        r /= r.sum()
        w = r @ posts
    margin = np.log(EXTRAPOLATION_FACTOR)
    log_range = (float(log_y.min() - margin), float(log_y.max() + margin))
    return DeviceHead(
        space,
        w,
        f_mean,
        y_mean,
        y_std,
        n,
        evidence=evidence,
        loo=loo,
        log_range=log_range,
        transform=transform,
    )


def _dual_terms(
    Fc: np.ndarray, resid: np.ndarray, prior_cov: np.ndarray, d: np.ndarray, tau: Any, noise: Any
) -> tuple[float, float, float, np.ndarray, np.ndarray]:
    """Type-II ML over the (tau, noise) grid in the n-dimensional (Woodbury) form: n <= p.

    Returns (log evidence, tau, noise, ``K^-1 r @ Fc`` (c, p), per-component log-likelihoods (c,)) of
    the best grid point, ``K = Fc (S + tau diag(d)) Fc^T + noise I`` the marginal covariance.
    """
    n = Fc.shape[0]
    G = Fc @ prior_cov @ Fc.T
    FF = (Fc * d) @ Fc.T
    best: tuple[float, float, float, np.ndarray, np.ndarray] | None = None
    for t in np.atleast_1d(tau):
        for s2 in np.atleast_1d(noise):
            K = G + t * FF + s2 * np.eye(n)  # marginal covariance of yn
            alpha = np.linalg.solve(K, resid.T).T  # (c, n)
            loglik = -0.5 * np.einsum("cn,cn->c", resid, alpha)
            top = loglik.max()
            evidence = top + np.log(np.mean(np.exp(loglik - top))) - 0.5 * np.linalg.slogdet(K)[1]
            if best is None or evidence > best[0]:
                best = (float(evidence), float(t), float(s2), alpha, loglik)
    assert best is not None
    return best[0], best[1], best[2], best[3] @ Fc, best[4]


def _primal_terms(
    Fc: np.ndarray, resid: np.ndarray, prior_cov: np.ndarray, d: np.ndarray, tau: Any, noise: Any
) -> tuple[float, float, float, np.ndarray, np.ndarray]:
    """:func:`_dual_terms` in the p-dimensional form (n > p: hundreds of measurements).

    With ``S0 = S + tau diag(d)``, ``C = Fc^T Fc`` and ``M = noise I_p + S0 C``:
    ``K^-1 = (I_n - Fc M^-1 S0 Fc^T) / noise`` (push-through identity) and
    ``log|K| = (n - p) log(noise) + log|M|`` (Sylvester), valid for a singular ``S0``.
    """
    n, p = Fc.shape
    C = Fc.T @ Fc
    Ur = Fc.T @ resid.T  # (p, c)
    rr = np.einsum("cn,cn->c", resid, resid)
    best: tuple[float, float, float, np.ndarray, np.ndarray] | None = None
    for t in np.atleast_1d(tau):
        S0 = prior_cov + t * np.diag(d)
        S0C = S0 @ C
        S0Ur = S0 @ Ur
        for s2 in np.atleast_1d(noise):
            M = s2 * np.eye(p) + S0C
            sol = np.linalg.solve(M, S0Ur)  # (p, c)
            loglik = -0.5 * (rr - np.einsum("pc,pc->c", Ur, sol)) / s2
            top = loglik.max()
            logdet = (n - p) * np.log(s2) + np.linalg.slogdet(M)[1]
            evidence = top + np.log(np.mean(np.exp(loglik - top))) - 0.5 * logdet
            if best is None or evidence > best[0]:
                alpha_f = ((Ur - C @ sol) / s2).T  # (c, p) = K^-1 r @ Fc
                best = (float(evidence), float(t), float(s2), alpha_f, loglik)
    assert best is not None
    return best


def _loo_log_density(Fc: np.ndarray, resid: np.ndarray, S0: np.ndarray, s2: float) -> float:
    """Leave-one-out log predictive density of the support under the marginal ``K = Fc S0 Fc^T + s2 I``.

    Each point's LOO residual is ``(K^-1 r)_i / (K^-1)_ii`` with variance ``1 / (K^-1)_ii``. For
    n > p, ``K^-1 = (I - Fc M^-1 S0 Fc^T) / s2`` with ``M = s2 I + S0 Fc^T Fc`` (as in
    :func:`_primal_terms`), so the n x n inverse is never formed.
    """
    n, p = Fc.shape
    if n > p:
        B = np.linalg.solve(s2 * np.eye(p) + S0 @ (Fc.T @ Fc), S0 @ Fc.T)  # (p, n)
        kinv_diag = (1.0 - np.einsum("np,pn->n", Fc, B)) / s2
        alpha = (resid - Fc @ (B @ resid)) / s2
    else:
        kinv = np.linalg.inv(Fc @ S0 @ Fc.T + s2 * np.eye(n))
        kinv_diag, alpha = np.diag(kinv), kinv @ resid
    kinv_diag = np.maximum(kinv_diag, 1e-12)
    return float(np.sum(-0.5 * np.log(2 * np.pi / kinv_diag) - 0.5 * alpha**2 / kinv_diag))


def predict_head(head: DeviceHead, F: np.ndarray) -> np.ndarray:
    """log-latency predictions of ``head`` for feature rows ``F`` (clipped to ``head.log_range``)."""
    if head.components:
        return sum(
            a * predict_head(c, F) for a, c in zip(head.component_weights, head.components, strict=True)
        )
    raw = head.y_mean + head.y_std * ((F - head.f_mean) @ head.weights)
    return np.clip(_inverse_to_log(head.transform, raw, head.log_range[0]), *head.log_range)


# --------------------------------------------------------------------------- per-space model
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
    # the meta-trained .fewshot_gnn.MetaGNN whose standardized embedding ends the feature rows,
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
            table_ms = _source_table_ms(xr, self.source_table_cols, self.source_table_coef)
            zs = _source_blocks(self.source_transforms, z, logl, self.zt_mean, self.zt_std, table_ms)[0]
            parts = ([zs] if use_z else []) + ([x] if use_x else [])
            rows_f = _with_interactions(np.concatenate(parts, axis=1), self.pcs, self.pc_mean)
            if len(self.pair_index):
                pairs = (_pair_products(xr, self.pair_index) - self.pair_mean) / self.pair_std
                rows_f = np.concatenate([rows_f, pairs], axis=1)
            if len(self.phys_mean):
                phys = (physical_vectors(self.space, missing) - self.phys_mean) / self.phys_std
                rows_f = np.concatenate([rows_f, phys], axis=1)
            if self.n_gnn:
                emb = (self.gnn.embed(missing) - self.gnn_mean) / self.gnn_std
                rows_f = np.concatenate([rows_f, emb], axis=1)
            out[~known] = rows_f
        return out


#: meta-trained GNN encoders of this process, keyed by (space, sources, table, config): the
#: benchmarks' ablations and validation folds refit the linear model many times on the same sources
_GNN_CACHE: dict[tuple[Any, ...], Any] = {}
_GNN_CACHE_SIZE = 64


def meta_train_gnn(
    space: str, keys: np.ndarray, z: np.ndarray, ref_rows: np.ndarray, config: Any, init: Any = None
) -> Any:
    """Meta-train (or fetch from this process's cache) the GNN encoder of ``.fewshot_gnn``."""
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


def _reference_rows(frame: pl.DataFrame, space: str, keys: np.ndarray) -> np.ndarray:
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


def _source_blocks(
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
            g, m, sd = _standardize(g)
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


def _position_pairs(space: str) -> np.ndarray:
    """(n_pairs, 2) raw arch-vector columns of the one-hots of two different positions."""
    from hwsurrogate.surrogates.features.nas import vector_feature_names

    names = vector_feature_names(space)
    pos = [(i, m.group(1)) for i, n in enumerate(names) if (m := re.match(r"^([a-z]\d+)_", n))]
    return np.array(
        [(i, j) for a, (i, pi) in enumerate(pos) for (j, pj) in pos[a + 1 :] if pi != pj], dtype=np.int64
    ).reshape(-1, 2)


def _pair_products(xr: np.ndarray, index: np.ndarray) -> np.ndarray:
    return xr[:, index[:, 0]] * xr[:, index[:, 1]]


def _source_columns(j: int, n_dev: int, n_z: int) -> list[int]:
    """Feature columns holding source device ``j``'s latencies (one per source block)."""
    return list(range(j, n_z, n_dev)) if n_dev else []


def _standardize(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = np.nanmean(a, axis=0)
    std = np.nanstd(a, axis=0)
    std = np.where(std > 1e-9, std, 1.0)
    return (a - mean) / std, mean, std


def _interaction_basis(F: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """First ``k`` principal directions of ``F`` (for pairwise interaction features)."""
    if k <= 0:
        return np.zeros((F.shape[1], 0)), np.zeros(F.shape[1])
    mean = F.mean(axis=0)
    _, sv, vt = np.linalg.svd(F - mean, full_matrices=False)
    scale = np.maximum(sv[:k] / np.sqrt(len(F)), 1e-9)  # unit-variance scores
    return vt[:k].T / scale, mean


def _with_interactions(F: np.ndarray, pcs: np.ndarray, pc_mean: np.ndarray) -> np.ndarray:
    """Append the standardized pairwise products (incl. squares) of the PC scores of ``F``."""
    k = pcs.shape[1] if pcs.ndim == 2 else 0
    if k == 0:
        return F
    s = (F - pc_mean) @ pcs
    iu = np.triu_indices(k)
    prod = s[:, iu[0]] * s[:, iu[1]]
    return np.concatenate([F, prod / np.sqrt(k)], axis=1)


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


def _source_table_ms(xr: np.ndarray, cols: np.ndarray, coef: np.ndarray) -> np.ndarray | None:
    """The sources' cost-table predictions (ms) of raw arch vectors ``xr`` (None without tables)."""
    if not coef.size:
        return None
    return np.c_[xr[:, cols], np.ones(len(xr))] @ coef


def _table_columns_raw(xr: np.ndarray) -> np.ndarray:
    """Boolean mask of the raw columns that are per-position one-hots (names like ``l3_k5_e6``)."""
    return np.all((xr == 0) | (xr == 1), axis=0) & (xr.std(axis=0) > 1e-9)


def physical_vectors(space: str, arch_keys: Sequence[str]) -> np.ndarray:
    """(n, k) physical cost terms of each architecture, summed over its layers (FBNet only).

    Per layer and op: a conv indicator, MACs of the 1x1 expand, the depthwise and the 1x1 project
    convolutions, input / hidden / output activation sizes, parameters, a skip's projection MACs
    and a projecting-skip indicator, 5x5-kernel, grouped and stride-2 indicators, and a conv
    indicator per stage: the terms a per-op latency lookup table is made of.
    """
    if space not in PHYSICAL_SPACES:
        raise FewShotError(f"physical features exist for {list(PHYSICAL_SPACES)}, not {space!r}")
    from hwsurrogate.surrogates.features.nas import _FB_E, _FB_G, _FB_K, _fbnet_layers, fbnet_op_codes

    stage, cin, cout, stride, res = (a[:, None] for a in _fbnet_layers())
    ops = np.arange(len(archspaces.FBNET_OPS))
    k, e, g = _FB_K[ops][None], _FB_E[ops][None], _FB_G[ops][None]
    hout, mid = res // stride, cin * e
    conv = (ops != len(ops) - 1)[None] * np.ones_like(cin)
    proj = (1 - conv) * ((cin != cout) | (stride != 1))
    terms = [
        conv,
        conv * res**2 * cin * mid / g,
        conv * hout**2 * k**2 * mid,
        conv * hout**2 * mid * cout / g,
        conv * res**2 * cin,
        conv * res**2 * mid,
        conv * hout**2 * mid,
        conv * hout**2 * cout,
        conv * (cin * mid / g + k**2 * mid + mid * cout / g),
        proj * hout**2 * cin * cout,
        proj,
        conv * (k == 5),
        conv * (g == 2),
        conv * (stride == 2),
    ] + [conv * (stage == s) for s in range(int(stage.max()) + 1)]
    table = np.stack([np.broadcast_to(t, conv.shape).astype(np.float64) for t in terms], axis=-1)
    codes = fbnet_op_codes(list(arch_keys))
    return table[np.arange(codes.shape[1])[None, :], codes].sum(axis=1)


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
        Yt = Y if t == "log" else _standardize(forward_transform(t, logl))[0]
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


class FewShotLatencyRegressor:
    """Device-adaptive latency predictor (see the module docstring).

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
            self.spaces_[space] = self._fit_space(frame, space, devs)
            if progress is not None:
                progress()
        if not self.spaces_:
            raise TrainingDataError("no space had at least 2 source devices")
        return self

    def _fit_space(self, frame: pl.DataFrame, space: str, devs: list[str]) -> SpaceModel:
        from hwsurrogate.surrogates.features.nas import arch_vectors

        cfg = self.config
        keys, logl = latency_matrix(frame, space, devs)
        z, z_mean, z_std = _standardize(logl)
        observed = np.isfinite(z)
        xr = arch_vectors(space, keys.tolist()).astype(np.float64)
        x, x_mean, x_std = _standardize(xr)
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
        table_ms = _source_table_ms(xr, st_cols, st_coef)
        zs, zt_mean, zt_std = _source_blocks(src_t, z_filled, logl_filled, table_ms=table_ms)
        n_dev = len(devs)
        n_src = zs.shape[1] if cfg.use_device_latencies else 0
        parts = ([zs] if cfg.use_device_latencies else []) + ([x] if cfg.use_arch_features else [])
        F = np.concatenate(parts, axis=1)
        pcs, pc_mean = _interaction_basis(F, dict(cfg.interaction_pcs).get(space, 0))
        F = _with_interactions(F, pcs, pc_mean)
        pair_index = np.zeros((0, 2), dtype=np.int64)
        pair_mean = pair_std = np.zeros(0)
        if space in cfg.edge_pairs and cfg.use_arch_features:
            pair_index = _position_pairs(space)
            if len(pair_index) > MAX_PAIR_FEATURES:
                raise ValueError(
                    f"FewShotConfig.edge_pairs: {space} would get {len(pair_index)} pair features "
                    f"(limit {MAX_PAIR_FEATURES}); use it for nb201 only"
                )
            pr = _pair_products(xr, pair_index)
            live = pr.std(axis=0) > 1e-9
            pair_index = pair_index[live]
            pr, pair_mean, pair_std = _standardize(pr[:, live])
            F = np.concatenate([F, pr], axis=1)
        phys_mean = phys_std = np.zeros(0)
        if space in cfg.physical_features and cfg.use_arch_features:
            phys, phys_mean, phys_std = _standardize(physical_vectors(space, keys.tolist()))
            F = np.concatenate([F, phys], axis=1)
        gnn = None
        gnn_arrays: dict[str, np.ndarray] = {}
        gnn_meta = None
        gnn_mean = gnn_std = np.zeros(0)
        if space in cfg.gnn:
            src = cfg.gnn_transfer_from
            init = self.spaces_[src].gnn if src and src != space and src in self.spaces_ else None
            gnn = meta_train_gnn(space, keys, z, _reference_rows(frame, space, keys), cfg.gnn_config(), init)
            emb, gnn_mean, gnn_std = _standardize(gnn.embed(keys.tolist()))
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
            return _ridge_masked(gram, rhs_all[:, j], np.flatnonzero(keep), lam)

        W = np.stack([device_weights(j, [j]) for j in range(len(devs))])
        transform_components: dict[str, np.ndarray] = {}
        for t, Yc in _centered_source_targets(cfg, Y, logl_filled):
            if t == "log":
                continue
            rhs_t = Fc.T @ Yc
            transform_components[t] = np.stack(
                [
                    _ridge_masked(
                        gram,
                        rhs_t[:, j],
                        np.flatnonzero(~np.isin(np.arange(p), _source_columns(j, n_dev, n_src))),
                        lam,
                    )
                    for j in range(len(devs))
                ]
            )
        meta_scores, tau, noise = self._meta_select(F, z, observed, devs, n_src, device_weights)
        gnn_components: dict[str, np.ndarray] = {}
        if gnn is not None:  # source-device weights on the embedding columns alone, per transform
            g_idx = np.arange(p - gnn_mean.shape[0], p)
            for t, Yc in _centered_source_targets(cfg, Y, logl_filled):
                rhs_t = Fc.T @ Yc
                gnn_components[t] = np.stack(
                    [_ridge_masked(gram, rhs_t[:, j], g_idx, lam)[g_idx] for j in range(len(devs))]
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
        self,
        F: np.ndarray,
        z: np.ndarray,
        observed: np.ndarray,
        devs: list[str],
        n_src: int,
        device_weights: Any,
    ) -> tuple[dict[str, float], float, float]:
        """Leave-one-source-device-out few-shot episodes pick ``tau`` and ``noise``."""
        cfg = self.config
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
                    scores[g, j] += _spearman(predict_head(head, Fj[qry]), y[qry]) / cfg.meta_draws
        best = int(np.argmax(scores.mean(axis=1)))
        tau, noise = grid[best]
        out = {f"loo_spearman_{d}": float(scores[best, j]) for j, d in enumerate(devs)}
        out["loo_spearman_mean"] = float(scores[best].mean())
        return out, float(tau), float(noise)

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
        _atomic_write_bytes(Path(path), buf.getvalue())

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


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- measurements
MEASUREMENT_COLUMNS: tuple[str, ...] = ("space", "arch_key", "latency_ms")
_DEVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-/]{0,127}$")


def check_device_name(device_id: str) -> str:
    if not isinstance(device_id, str) or not _DEVICE_RE.match(device_id) or ".." in device_id:
        raise FewShotError(
            f"device {device_id!r}: use 1-128 characters from letters, digits and _ . : - / "
            "(starting with a letter or digit, no '..')"
        )
    return device_id


def check_measurements(measurements: pl.DataFrame, *, min_per_space: int) -> pl.DataFrame:
    """Validate and canonicalize a measurements frame (space, arch_key, latency_ms).

    Raises :class:`FewShotError` naming the column and the first bad row for: missing columns,
    null/NaN/inf/non-positive latencies, unparseable arch keys, duplicated (space, arch_key)
    and fewer than ``min_per_space`` rows in a space.
    """
    missing = [c for c in MEASUREMENT_COLUMNS if c not in measurements.columns]
    if missing:
        raise FewShotError(
            f"measurements miss column(s) {missing}; expected columns {list(MEASUREMENT_COLUMNS)}"
        )
    m = measurements.select(MEASUREMENT_COLUMNS)
    if m.height == 0:
        raise FewShotError("measurements are empty; need at least a few measured architectures")
    try:
        lat = m["latency_ms"].cast(pl.Float64, strict=True)
    except Exception:
        raise FewShotError("column 'latency_ms' must be numeric (milliseconds)") from None
    bad = lat.is_null() | ~lat.is_finite().fill_null(False) | (lat <= 0).fill_null(False)
    if bad.any():
        i = int(bad.arg_true()[0])
        raise FewShotError(
            f"column 'latency_ms' must be finite and > 0; {int(bad.sum())} bad row(s), "
            f"first at row {i} with value {lat[i]!r}"
        )
    spaces = m["space"].cast(pl.String)
    keys: list[str] = []
    for i, (space, key) in enumerate(
        zip(spaces.to_list(), m["arch_key"].cast(pl.String).to_list(), strict=True)
    ):
        if space not in FEWSHOT_SPACES:
            raise FewShotError(f"column 'space' row {i}: {space!r} is not one of {list(FEWSHOT_SPACES)}")
        try:
            keys.append(archspaces.check_arch_key(space, key or ""))
        except ValueError as exc:
            raise FewShotError(f"column 'arch_key' row {i}: {exc}") from None
    out = pl.DataFrame({"space": spaces, "arch_key": keys, "latency_ms": lat})
    dup = out.select(pl.struct("space", "arch_key").is_duplicated()).to_series()
    if dup.any():
        i = int(dup.arg_true()[0])
        raise FewShotError(
            f"column 'arch_key': {int(dup.sum())} rows repeat an architecture, e.g. row {i} "
            f"({out['space'][i]}, {out['arch_key'][i]!r}); give one latency per architecture"
        )
    counts = out.group_by("space").len()
    few = counts.filter(pl.col("len") < min_per_space)
    if few.height:
        raise FewShotError(
            f"too few measurements: {dict(zip(few['space'].to_list(), few['len'].to_list(), strict=True))} "
            f"per space; need at least {min_per_space} per space (10 HELP reference architectures "
            "plus 10 more is the recommended set)"
        )
    return out


def read_measurements(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Read a CSV or parquet measurements file (columns space, arch_key, latency_ms)."""
    p = Path(path)
    if not p.is_file():
        raise FewShotError(f"measurements file {str(p)!r} does not exist")
    try:
        if p.suffix.lower() in {".parquet", ".pq"}:
            return pl.read_parquet(p)
        return pl.read_csv(p, infer_schema_length=10000)
    except Exception as exc:  # polars raises several types for malformed files
        raise FewShotError(f"measurements file {str(p)!r} could not be read: {exc}") from None


# --------------------------------------------------------------------------- evaluation protocol
def help_protocol_rows(
    arch_index: np.ndarray, latency_ms: np.ndarray, *, n_pool: int, n_test: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """(support-pool rows, test rows) of one device under HELP's protocol.

    Pool: architectures with index < ``n_pool`` (900 NB201, 4000 FBNet/OFA). Test: the next
    ``n_test`` indices, trimmed to the 10th-90th latency percentile on the device (HELP's
    evaluation set, 800 archs). The pool is NOT trimmed here: trimming it would need the target
    device's latencies of the whole pool, which a few-shot user does not have.
    """
    arch_index = np.asarray(arch_index)
    pool = np.flatnonzero(arch_index < n_pool)
    test = np.flatnonzero((arch_index >= n_pool) & (arch_index < n_pool + n_test))
    v = latency_ms[test]
    lo, hi = np.percentile(v, [10, 90])
    return pool, test[(v >= lo) & (v <= hi)]


def score_predictions(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Spearman, MAPE % and fraction within +-10 % (latencies in ms)."""
    ape = np.abs(y_pred - y_true) / y_true
    return {
        "spearman": _spearman(y_pred, y_true),
        "mape": float(ape.mean() * 100),
        "within_10pct": float((ape <= 0.10).mean()),
    }


def evaluate_help_protocol(
    model: FewShotLatencyRegressor,
    frame: pl.DataFrame,
    space: str,
    devices: Sequence[str],
    *,
    n_pool: int,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    n_random: int = 10,
    use_references: bool = True,
) -> dict[str, dict[str, float]]:
    """Few-shot scores of ``model`` on target ``devices`` under HELP's protocol.

    Support per seed: HELP's 10 reference architectures (``use_references``) plus ``n_random``
    random pool architectures (not references); every support latency counts as a measurement.
    Only support rows of the target device are given to the model. Returns per device the
    seed-averaged metrics plus ``n_measurements``; key ``"_pooled"`` holds y/pred arrays of
    seed 0 for parity plots (as lists).
    """
    refs = np.asarray(archspaces.HELP_REFERENCE_INDICES[space]) if use_references else np.array([], int)
    out: dict[str, dict[str, Any]] = {}
    pooled_y: list[np.ndarray] = []
    pooled_p: list[np.ndarray] = []
    for dev in devices:
        d = frame.filter((pl.col("device_id") == dev) & (pl.col("space") == space)).sort("arch_index")
        if d.height == 0:
            raise TrainingDataError(f"target device {dev!r} has no {space} rows")
        idx = d["arch_index"].to_numpy()
        y = d["latency_ms"].to_numpy().astype(float)
        F = model.features(space, d["arch_key"].to_list())
        pool, test = help_protocol_rows(idx, y, n_pool=n_pool)
        ref_rows = np.flatnonzero(np.isin(idx, refs))
        candidates = np.setdiff1d(pool, ref_rows)
        per_seed = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            rnd = rng.choice(candidates, size=n_random, replace=False) if n_random else np.array([], int)
            sup = np.r_[ref_rows, rnd].astype(int)
            head = model.adapt_rows(space, F[sup], np.log(y[sup]))
            pred = np.exp(predict_head(head, F[test]))
            per_seed.append(score_predictions(y[test], pred))
            if seed == seeds[0]:
                pooled_y.append(y[test])
                pooled_p.append(pred)
        res = {k: float(np.mean([s[k] for s in per_seed])) for k in per_seed[0]}
        res["spearman_std"] = float(np.std([s["spearman"] for s in per_seed]))
        res["n_measurements"] = float(len(ref_rows) + n_random)
        res["n_test"] = float(len(test))
        out[dev] = res
    out["_pooled"] = {"y": np.concatenate(pooled_y).tolist(), "pred": np.concatenate(pooled_p).tolist()}
    return out


# --------------------------------------------------------------------------- device splits
_SPLIT_SPACE = {"nb201": "nasbench201", "fbnet": "fbnet", "ofa": "ofa"}
_LATBENCH_PREFIXES = ("desktop_", "embedded_", "mobile_")


def qualify_device(name: str) -> str:
    """Source-qualified device id of a name in ``splits.json`` (LatBench names vs HELP names)."""
    return ("latbench/" if name.startswith(_LATBENCH_PREFIXES) else "help/") + name


@dataclass(frozen=True)
class DeviceSplit:
    name: str
    space: str
    train: tuple[str, ...]
    valid: tuple[str, ...]
    test: tuple[str, ...]
    n_pool: int = 0


def default_splits_path() -> Path:
    from hwsurrogate.settings import get_settings

    data = get_settings(fresh=True).data_dir
    if data is None:
        raise FileNotFoundError(
            "HWSURROGATE_DATA_DIR is not set; pass the path of latency/splits.json explicitly"
        )
    return Path(data) / "latency" / "splits.json"


def read_splits(path: str | os.PathLike[str] | None = None) -> dict[str, DeviceSplit]:
    """HELP and NASFLAT device splits from ``splits.json`` (keys like ``help-nb201``, ``nb201-N1``)."""
    p = Path(path) if path is not None else default_splits_path()
    try:
        raw = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"device splits {str(p)!r} could not be read: {exc}") from None
    out: dict[str, DeviceSplit] = {}
    try:
        for space, folder in _SPLIT_SPACE.items():
            h = raw["help"].get(folder)
            if h:
                out[f"help-{space}"] = DeviceSplit(
                    f"help-{space}",
                    space,
                    tuple(qualify_device(d) for d in h["meta_train"]),
                    tuple(qualify_device(d) for d in h["meta_valid"]),
                    tuple(qualify_device(d) for d in h["meta_test"]),
                    int(h["num_meta_train_sample"]),
                )
        for space, tasks in raw.get("nasflat", {}).items():
            for task in tasks.values():
                name = f"{space}-{task['name_inferred']}"
                out[name] = DeviceSplit(
                    name,
                    space,
                    tuple(qualify_device(d) for d in task["train"]),
                    (),
                    tuple(qualify_device(d) for d in task["test"]),
                )
    except (KeyError, TypeError, AttributeError) as exc:
        raise FileNotFoundError(f"device splits {str(p)!r} are malformed (missing {exc})") from None
    return out
