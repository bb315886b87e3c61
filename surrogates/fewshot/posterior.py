"""The closed-form Bayesian linear algebra of few-shot adaptation.

A device head is linear in a transform of its latency, ``g(y) = mu + s * f(a) . w``; given a
Gaussian prior (or a mixture) on ``w`` and a device's k support measurements,
:func:`posterior_head` returns the posterior mean head with ``tau``/noise picked by the support's
marginal likelihood (type-II maximum likelihood), and :func:`predict_head` evaluates a head.
numpy only: adaptation never imports torch or MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwsurrogate.surrogates.fewshot.config import EXTRAPOLATION_FACTOR, TRANSFORMS


def ridge_masked(gram: np.ndarray, rhs: np.ndarray, keep: np.ndarray, lam: float) -> np.ndarray:
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
