"""Adapting the HLSyn design model to an unseen HLS kernel from a handful of its syntheses.

HLSyn's own protocol (``ZongyueQin/HLSyn``, ``config.py``, inference block) does not stop at
zero-shot: on each held-out kernel it adapts with 5/10/20 designs of that kernel and tests on a
30 % holdout of the kernel's designs, 5 repeats. The error of a model trained on other kernels
on a new kernel is mostly kernel-level: the whole kernel sits too high or too low, or its
spread is compressed. :func:`fit_kernel_correction` therefore fits, per target, an affine map of
the zero-shot prediction ``y = a + b * p`` on the measured designs, with the slope shrunk towards
1 (no change) by ``prior_designs`` pseudo-designs, so 5 designs mostly move the offset and 20
designs may also stretch the spread. Closed form, microseconds, no refit of the base model.

The affine method and ``prior_designs`` were fixed before the held-out kernels were scored;
the optional nearest-design residual (``neighbours``) is chosen by ``hws bench
fpga-hlsyn-fewshot`` on validation kernels drawn from the training kernels, never on held-out
ones; the bench also reports the affine-only and offset-only variants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

__all__ = [
    "HLSYN_SHOTS",
    "MEASURED_COLUMNS",
    "KernelCorrection",
    "adaptation_splits",
    "check_hlsyn_measurements",
    "fit_kernel_correction",
    "from_hlsyn_space",
    "pragma_matrix",
    "to_hlsyn_space",
]

#: HLSyn's adaptation sizes (designs of the new kernel).
HLSYN_SHOTS: tuple[int, ...] = (5, 10, 20)


@dataclass
class KernelCorrection:
    """Per target ``y = offset + slope * p`` on top of the zero-shot prediction ``p``; with
    ``neighbours`` > 0, plus the mean remaining residual of the ``neighbours`` measured designs
    nearest in pragma space (:func:`pragma_matrix`, L1)."""

    targets: tuple[str, ...]
    offset: list[float]
    slope: list[float]
    n_designs: int
    prior_designs: float
    neighbours: int = 0
    support_pragmas: list[str] = field(default_factory=list)
    support_residuals: list[list[float]] = field(default_factory=list)

    def apply(self, pred: np.ndarray, pragmas: Sequence[str] | None = None) -> np.ndarray:
        """Corrected predictions of an ``(n, len(targets))`` array of zero-shot predictions (and
        the designs' pragma JSON, needed when ``neighbours`` > 0)."""
        p = np.asarray(pred, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != len(self.targets):
            raise ValueError(f"predictions have shape {p.shape}; expected (n, {len(self.targets)})")
        out = np.asarray(self.offset) + np.asarray(self.slope) * p
        if self.neighbours > 0 and self.support_pragmas:
            if pragmas is None or len(pragmas) != len(p):
                raise ValueError("this correction uses neighbouring designs: pass the designs' pragmas")
            x = pragma_matrix([*self.support_pragmas, *pragmas])
            sx, qx = x[: len(self.support_pragmas)], x[len(self.support_pragmas) :]
            k = min(self.neighbours, len(sx))
            dist = np.abs(qx[:, None, :] - sx[None, :, :]).sum(axis=-1)
            nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
            out = out + np.asarray(self.support_residuals)[nearest].mean(axis=1)
        return out

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
            neighbours=int(d.get("neighbours", 0)),  # type: ignore[call-overload]
            support_pragmas=[str(x) for x in d.get("support_pragmas", [])],  # type: ignore[attr-defined]
            support_residuals=[[float(v) for v in r] for r in d.get("support_residuals", [])],  # type: ignore[attr-defined]
        )


def pragma_matrix(pragmas: Sequence[str]) -> np.ndarray:
    """Designs' pragma JSON objects as rows: numeric pragmas as ``log2(1 + value)`` (-1 when a
    design lacks the key), string pragmas (``off``/``cg``/``fg``/``flatten``) as 2 per category."""
    import json

    designs = [json.loads(p) for p in pragmas]
    cols: list[np.ndarray] = []
    for key in sorted({k for d in designs for k in d}):
        values = [d.get(key) for d in designs]
        if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
            cols.append(
                np.array([np.log2(1.0 + max(float(v), 0.0)) if v is not None else -1.0 for v in values])
            )
        else:
            for cat in sorted({str(v) for v in values}):
                cols.append(np.array([2.0 * (str(v) == cat) for v in values]))
    return np.column_stack(cols) if cols else np.zeros((len(designs), 1))


def fit_kernel_correction(
    pred: np.ndarray,
    y: np.ndarray,
    targets: Sequence[str],
    *,
    prior_designs: float = 10.0,
    slope: bool = True,
    pragmas: Sequence[str] | None = None,
    neighbours: int = 0,
) -> KernelCorrection:
    """Fit the per-target affine correction of zero-shot ``pred`` to measured ``y`` (both ``(k, T)``).

    The slope is the least-squares slope shrunk towards 1 with weight ``k / (k + prior_designs)``
    and clipped to [0, 3]; the offset then makes the corrected mean equal the measured mean.
    ``slope=False`` fits the offset only. ``neighbours`` > 0 (with the designs' ``pragmas``) also
    keeps the measured designs' remaining residuals, added back for the nearest ones on apply. NaN targets (a missing report) are skipped per target;
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
    corr = KernelCorrection(tuple(targets), offsets, slopes, int(p.shape[0]), float(prior_designs))
    if neighbours > 0:
        if pragmas is None or len(pragmas) != len(p):
            raise ValueError("neighbours > 0 needs the measured designs' pragmas")
        corr.support_residuals = np.nan_to_num(t - corr.apply(p)).tolist()  # before neighbours are on
        corr.neighbours = int(neighbours)
        corr.support_pragmas = [str(x) for x in pragmas]
    return corr


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


# --------------------------------------------------------------------------- served outputs <-> HLSyn space
#: The measured columns of an adaptation file (totals as the HLS report gives them).
MEASURED_COLUMNS: tuple[str, ...] = ("cycles", "lut", "ff", "dsp", "bram")
MAX_ADAPT_DESIGNS = 10_000


def to_hlsyn_space(frame: pl.DataFrame) -> np.ndarray:
    """``(n, 5)`` HLSyn targets (perf, util_lut, util_ff, util_dsp, util_bram) of cycles and totals."""
    from hwsurrogate.surrogates.models.fpga import U200_CAPACITY

    cycles = frame["cycles"].cast(pl.Float64).to_numpy()
    cols = [np.log2(1e7 / cycles) / 2]
    cols += [frame[r].cast(pl.Float64).to_numpy() / cap for r, cap in U200_CAPACITY.items()]
    return np.column_stack(cols)


def from_hlsyn_space(values: np.ndarray) -> dict[str, np.ndarray]:
    """Cycles and totals of ``(n, 5)`` HLSyn targets (the served model's own conversion)."""
    from hwsurrogate.surrogates.models.fpga import U200_CAPACITY

    out = {"cycles": 1e7 / np.power(2.0, 2.0 * values[:, 0])}
    for j, (r, cap) in enumerate(U200_CAPACITY.items(), start=1):
        out[r] = np.clip(values[:, j], 0, None) * cap
    return out


def check_hlsyn_measurements(frame: pl.DataFrame, kernel: str, *, min_designs: int = 3) -> pl.DataFrame:
    """The measured designs of ``kernel``, checked; a ValueError names the column and the row.

    Columns: ``pragmas`` (a JSON object of the design's pragma values, as ``hws predict fpga
    --kind hlsyn`` takes them), ``cycles`` (> 0) and ``lut``, ``ff``, ``dsp``, ``bram`` (>= 0,
    the HLS report's totals; empty = not reported, that target is then fitted on the other designs); ``tool`` optional (default ``merlin``); ``kernel`` optional, and
    when present every row must name ``kernel``.
    """
    import json

    missing = [c for c in ("pragmas", *MEASURED_COLUMNS) if c not in frame.columns]
    if missing:
        raise ValueError(
            f"measurements miss column(s) {missing}; need pragmas, {', '.join(MEASURED_COLUMNS)}"
        )
    if frame.height < min_designs:
        raise ValueError(f"measurements have {frame.height} design(s); adapting needs at least {min_designs}")
    if frame.height > MAX_ADAPT_DESIGNS:
        raise ValueError(f"measurements have {frame.height} designs; at most {MAX_ADAPT_DESIGNS} are taken")
    if "kernel" in frame.columns:
        other = (frame["kernel"].cast(pl.String) != kernel).fill_null(True)
        if other.any():
            i = int(other.arg_true()[0])
            raise ValueError(
                f"measurements: column 'kernel' is {frame['kernel'][i]!r} in row {i}, not {kernel!r}"
            )
    for c in MEASURED_COLUMNS:
        v = frame[c].cast(pl.Float64, strict=False)
        unreadable = v.is_null() & frame[c].is_not_null()  # a value that is not a number
        missing = v.is_null() if c == "cycles" else v.is_null() & False  # empty resources: not reported
        bad = unreadable | missing | v.is_nan() | v.is_infinite() | ((v <= 0) if c == "cycles" else (v < 0))
        bad = bad.fill_null(False)
        if bad.any():
            i = int(bad.arg_true()[0])
            need = "> 0" if c == "cycles" else ">= 0"
            raise ValueError(
                f"measurements: column {c!r} must be a finite number {need}; row {i} is {frame[c][i]!r}"
            )
    pragmas = []
    for i, text in enumerate(frame["pragmas"].cast(pl.String).to_list()):
        try:
            obj = json.loads(text) if text is not None else None
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            raise ValueError(f"measurements: column 'pragmas' must be a JSON object; row {i} is {text!r}")
        pragmas.append(json.dumps(obj, sort_keys=True, separators=(",", ":")))
    tool = (
        frame["tool"].cast(pl.String)
        if "tool" in frame.columns
        else pl.Series("tool", ["merlin"] * frame.height)
    )
    return pl.DataFrame(
        {"kernel": [kernel] * frame.height, "pragmas": pragmas, "tool": tool.fill_null("merlin")}
    ).hstack(frame.select([pl.col(c).cast(pl.Float64) for c in MEASURED_COLUMNS]))
