"""Adapting the HLSyn design model to an unseen HLS kernel from a handful of its syntheses.

HLSyn's own protocol (``ZongyueQin/HLSyn``, ``config.py``, inference block) does not stop at
zero-shot: on each held-out kernel it adapts with 5/10/20 designs of that kernel and tests on a
30 % holdout of the kernel's designs, 5 repeats. The error of a model trained on other kernels
on a new kernel is mostly kernel-level: the whole kernel sits too high or too low, or its
spread is compressed. :func:`fit_kernel_correction` therefore fits, per target, an affine map of
the zero-shot prediction ``y = a + b * p`` on the measured designs, with the slope shrunk towards
1 (no change) by ``prior_designs`` pseudo-designs, so 5 designs mostly move the offset and 20
designs may also stretch the spread. Closed form, microseconds, no refit of the base model.

The method and ``prior_designs`` were fixed before the held-out kernels were scored (they are
never tuned on them); ``hws bench fpga-hlsyn-fewshot`` also reports the offset-only variant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["HLSYN_SHOTS", "KernelCorrection", "adaptation_splits", "fit_kernel_correction"]

#: HLSyn's adaptation sizes (designs of the new kernel).
HLSYN_SHOTS: tuple[int, ...] = (5, 10, 20)


@dataclass
class KernelCorrection:
    """Per target ``y = offset + slope * p`` on top of the zero-shot prediction ``p``."""

    targets: tuple[str, ...]
    offset: list[float]
    slope: list[float]
    n_designs: int
    prior_designs: float

    def apply(self, pred: np.ndarray) -> np.ndarray:
        """Corrected predictions of an ``(n, len(targets))`` array of zero-shot predictions."""
        p = np.asarray(pred, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != len(self.targets):
            raise ValueError(f"predictions have shape {p.shape}; expected (n, {len(self.targets)})")
        return np.asarray(self.offset) + np.asarray(self.slope) * p

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_json(cls, d: dict[str, object]) -> KernelCorrection:
        return cls(
            targets=tuple(d["targets"]),  # type: ignore[arg-type]
            offset=[float(x) for x in d["offset"]],  # type: ignore[attr-defined]
            slope=[float(x) for x in d["slope"]],  # type: ignore[attr-defined]
            n_designs=int(d["n_designs"]),  # type: ignore[call-overload]
            prior_designs=float(d["prior_designs"]),  # type: ignore[arg-type]
        )


def fit_kernel_correction(
    pred: np.ndarray,
    y: np.ndarray,
    targets: Sequence[str],
    *,
    prior_designs: float = 10.0,
    slope: bool = True,
) -> KernelCorrection:
    """Fit the per-target affine correction of zero-shot ``pred`` to measured ``y`` (both ``(k, T)``).

    The slope is the least-squares slope shrunk towards 1 with weight ``k / (k + prior_designs)``
    and clipped to [0, 3]; the offset then makes the corrected mean equal the measured mean.
    ``slope=False`` fits the offset only. NaN targets (a missing report) are skipped per target;
    a target with no measured value keeps the zero-shot prediction.
    """
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(y, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 2 or p.shape[1] != len(targets):
        raise ValueError(f"pred {p.shape} and y {t.shape} must both be (k, {len(targets)})")
    if p.shape[0] == 0:
        raise ValueError("no measured designs to adapt with")
    if not np.isfinite(p).all():
        raise ValueError("zero-shot predictions contain NaN or inf")
    offsets, slopes = [], []
    for j in range(len(targets)):
        ok = np.isfinite(t[:, j])
        k = int(ok.sum())
        if k == 0:
            offsets.append(0.0)
            slopes.append(1.0)
            continue
        pj, yj = p[ok, j], t[ok, j]
        b = 1.0
        var = float(np.var(pj))
        if slope and k >= 3 and var > 1e-12:
            ls = float(np.mean((pj - pj.mean()) * (yj - yj.mean())) / var)
            w = k / (k + prior_designs)
            b = float(np.clip(1.0 + w * (ls - 1.0), 0.0, 3.0))
        offsets.append(float(yj.mean() - b * pj.mean()))
        slopes.append(b)
    return KernelCorrection(tuple(targets), offsets, slopes, int(p.shape[0]), float(prior_designs))


def adaptation_splits(
    kernels: np.ndarray, *, repeat: int, shots: int, test_frac: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (adapt, test) masks over rows: per kernel a permutation seeded by ``repeat`` and the
    kernel name, the first ``test_frac`` of it tested on, the next ``shots`` adapted with.

    The test designs do not depend on ``shots``, so every k (and zero-shot) is scored on the same
    designs; the k-design set grows by inclusion (5 within 10 within 20).
    """
    adapt = np.zeros(len(kernels), dtype=bool)
    test = np.zeros(len(kernels), dtype=bool)
    for kernel in sorted(set(kernels.tolist())):
        idx = np.flatnonzero(kernels == kernel)
        seed = [repeat, *kernel.encode()]
        order = np.random.default_rng(seed).permutation(idx)
        n_test = int(round(test_frac * len(idx)))
        test[order[:n_test]] = True
        adapt[order[n_test : n_test + shots]] = True
    return adapt, test
