"""How the FPGA tree models answer, without scikit-learn: shared by the trained and the frozen models.

:class:`FpgaPrediction` is :class:`~.fpga.FpgaRegressor`'s predict-time behaviour (features through
:mod:`~hwsurrogate.surrogates.features.hls4ml` / :mod:`~hwsurrogate.surrogates.features.hlsyn`,
one tree model per target, the targets' spaces) except walking the trees; :class:`FpgaFrame` is the
task model's ``predict_frame`` (:func:`physically_consistent` hls4ml reports, HLSyn's normalised
space back to cycles and resources). :class:`~.fpga.FpgaRegressor` and :class:`~.fpga.FpgaPyfunc`
inherit them with scikit-learn's trees; :class:`FrozenFpgaRegressor` and :class:`FrozenFpga` hold
the same fitted state with :class:`~.tree_serving.FrozenTrees`, so the local served copy of
``hws predict fpga`` answers without importing scikit-learn (:mod:`.frozen`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.surrogates.api import NOTE_COLUMN, OUTPUTS
from hwsurrogate.surrogates.features.hls4ml import hls4ml_features
from hwsurrogate.surrogates.features.hlsyn import hlsyn_features
from hwsurrogate.surrogates.models.gemm_serving import as_polars
from hwsurrogate.surrogates.models.tree_serving import FrozenTrees

__all__ = [
    "HLS4ML_TARGETS",
    "HLSYN_TARGETS",
    "U200_CAPACITY",
    "FpgaFrame",
    "FpgaPrediction",
    "FrozenFpga",
    "FrozenFpgaRegressor",
    "physically_consistent",
]

HLS4ML_TARGETS: tuple[str, ...] = ("lut", "ff", "dsp", "bram", "cycles", "ii")
HLSYN_TARGETS: tuple[str, ...] = ("perf", "util_lut", "util_ff", "util_dsp", "util_bram")
#: Alveo U200 capacities (HLSyn/HARP device): LUT, FF, DSP, BRAM_18K.
U200_CAPACITY: dict[str, float] = {"lut": 1_182_240.0, "ff": 2_364_480.0, "dsp": 6_840.0, "bram": 4_320.0}


class FpgaPrediction:
    """Predict-time behaviour of a fitted FPGA regressor; subclasses give :meth:`_target_values`.

    Reads the fitted attributes ``kind``, ``targets``, ``log_target``, ``physics``, ``graphs``,
    ``parts_``, ``graph_stats_``, ``empty_features_`` and ``n_features_in_``.
    """

    def _target_values(self, target: str, x: np.ndarray) -> np.ndarray | None:
        """The fitted value of ``target`` (its training space) per feature row; None: no model."""
        raise NotImplementedError

    def _kernel_graphs(self) -> dict | None:
        if self.kind != "hlsyn" or self.graphs is None or not self.graphs.height:
            return None
        from hwsurrogate.surrogates.features.program_graphs import kernel_graphs

        return kernel_graphs(self.graphs)

    def _perf_base(self, x: np.ndarray) -> np.ndarray:
        from hwsurrogate.surrogates.features.program_graphs import LOOP_FEATURES

        col = self.n_features_in_ - len(LOOP_FEATURES) + LOOP_FEATURES.index("lp_log2_seq_iters")
        return -0.5 * np.nan_to_num(x[:, col], nan=0.0)

    def _physics_on(self, target: str) -> bool:
        return (
            bool(self.physics) and self.kind == "hlsyn" and (target == "perf" or target.startswith("util_"))
        )

    def _features(self, X: Any) -> np.ndarray:
        q = as_polars(X)
        if self.kind == "hls4ml":
            f = hls4ml_features(q, parts=getattr(self, "parts_", ()))
        else:
            f = hlsyn_features(q, getattr(self, "graph_stats_", None), self._kernel_graphs())
        x = f.to_numpy().astype(np.float64)
        empty = getattr(self, "empty_features_", None)
        if empty is not None:
            x[:, empty] = 0.0  # all-NaN at training (sklearn cannot bin them): a constant
        return x

    def _predict(self, X: Any) -> np.ndarray:
        x = self._features(X)
        out = np.full((x.shape[0], len(self.targets)), np.nan)
        for j, t in enumerate(self.targets):
            z = self._target_values(t, x)
            if z is not None:
                out[:, j] = np.expm1(z) if self.log_target else z
                if self._physics_on(t):
                    out[:, j] = z + self._perf_base(x) if t == "perf" else np.clip(2.0**z - 0.01, 0, None)
        return out


def physically_consistent(
    out: dict[str, np.ndarray], bram_unit: str | None
) -> tuple[dict[str, np.ndarray], list[str]]:
    """hls4ml outputs as a report states them, with a note per row where a value was changed.

    LUT, FF, DSP, cycles and II are whole numbers; BRAM is a whole number of the report's blocks
    (``bram36k`` reports count an 18K half as 0.5); II is at least 1 and at most ``cycles + 1``
    (a design that is not pipelined accepts a new input one cycle after it finishes: HLS reports
    ``interval = latency + 1``, as 91 of the 1,016 wa-hls4ml training rows do).
    """
    out = {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
    n = len(next(iter(out.values()))) if out else 0
    notes = [""] * n
    for col in ("lut", "ff", "dsp", "cycles", "ii"):
        if col in out:
            out[col] = np.rint(out[col])
    if "bram" in out:
        out["bram"] = np.rint(out["bram"] * 2) / 2 if bram_unit == "bram36k" else np.rint(out["bram"])
    if "ii" in out:
        out["ii"] = np.maximum(out["ii"], 1.0)
    if "ii" in out and "cycles" in out:
        limit = out["cycles"] + 1
        over = np.flatnonzero(np.isfinite(limit) & (out["ii"] > limit))
        for i in over:
            notes[i] = (
                f"ii {out['ii'][i]:.0f} clipped to cycles + 1 = {limit[i]:.0f} (an interval never exceeds the latency + 1)"
            )
        out["ii"] = np.where(np.isfinite(limit), np.minimum(out["ii"], limit), out["ii"])
    return out, notes


class FpgaFrame:
    """The ``fpga-hls4ml`` / ``fpga-hlsyn`` task's ``predict_frame``: ``task``, ``regressor``
    (:class:`FpgaPrediction`) and an optional validity ``classifier`` (:meth:`_valid_prob`)."""

    task: str
    regressor: Any
    classifier: Any

    def _valid_prob(self, x: np.ndarray) -> np.ndarray:
        """The validity classifier's positive probability per feature row."""
        raise NotImplementedError

    @property
    def training_domain(self) -> dict[str, Any] | None:
        """The regressor's training domain; None for models fitted before domains were recorded."""
        return getattr(self.regressor, "training_domain_", None)

    def predict_frame(self, queries: Any) -> pl.DataFrame:
        q = as_polars(queries)
        pred = self.regressor.predict(q)
        cols = dict(zip(self.regressor.targets, pred.T, strict=True))
        if self.task == "fpga-hlsyn":
            out = {
                "cycles": 1e7 / np.power(2.0, 2.0 * cols["perf"]),
                **{r: np.clip(cols[f"util_{r}"], 0, None) * cap for r, cap in U200_CAPACITY.items()},
            }
            if self.classifier is not None:
                x = self.regressor._features(q)
                out["valid_prob"] = self._valid_prob(x)
            notes: list[str] = []
        else:
            out = {t: np.clip(cols[t], 0, None) for t in self.regressor.targets}
            out, notes = physically_consistent(out, getattr(self.regressor, "bram_unit_", None))
        frame = pl.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in out.items()})
        for c in OUTPUTS[self.task]:
            if c not in frame.columns:
                frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(c))
        frame = frame.select(OUTPUTS[self.task]).with_columns(pl.all().fill_nan(None))
        if any(notes):
            frame = frame.with_columns(pl.Series(NOTE_COLUMN, [n or None for n in notes], dtype=pl.String))
        return frame


# --------------------------------------------------------------------------- frozen (no scikit-learn)

#: fitted attributes a frozen FPGA regressor keeps (the per-target trees become FrozenTrees)
_STATE = (
    "kind",
    "targets",
    "log_target",
    "physics",
    "graphs",
    "parts_",
    "graph_stats_",
    "empty_features_",
    "n_features_in_",
    "training_domain_",
    "bram_unit_",
)


class FrozenFpgaRegressor(FpgaPrediction):
    """A fitted :class:`~.fpga.FpgaRegressor`'s state and per-target trees (``None``: no model)."""

    def __init__(self, trees: dict[str, FrozenTrees | None], state: dict[str, Any]) -> None:
        self.trees = trees
        for name in _STATE:
            if name in state:
                setattr(self, name, state[name])

    @classmethod
    def of(cls, model: Any) -> FrozenFpgaRegressor | None:
        """The frozen form of a fitted FpgaRegressor, or None where a target's trees cannot be frozen."""
        fitted = getattr(model, "models_", None)
        if not isinstance(fitted, dict):
            return None
        trees: dict[str, FrozenTrees | None] = {}
        for target, m in fitted.items():
            trees[target] = None if m is None else FrozenTrees.of(m)
            if m is not None and trees[target] is None:
                return None
        return cls(trees, {name: getattr(model, name) for name in _STATE if hasattr(model, name)})

    def predict(self, X: Any) -> np.ndarray:
        return self._predict(X)

    def _target_values(self, target: str, x: np.ndarray) -> np.ndarray | None:
        trees = self.trees.get(target)
        return None if trees is None else trees.predict(x)


class FrozenFpga(FpgaFrame):
    """The frozen form of :class:`~.fpga.FpgaPyfunc`."""

    def __init__(
        self, task: str, regressor: FrozenFpgaRegressor, classifier: FrozenTrees | None = None
    ) -> None:
        self.task = task
        self.regressor = regressor
        self.classifier = classifier

    @classmethod
    def of(cls, model: Any) -> FrozenFpga | None:
        regressor = FrozenFpgaRegressor.of(model.regressor)
        classifier = FrozenTrees.of(model.classifier) if model.classifier is not None else None
        if regressor is None or (model.classifier is not None and classifier is None):
            return None
        return cls(model.task, regressor, classifier)

    def _valid_prob(self, x: np.ndarray) -> np.ndarray:
        return self.classifier.predict(x)
