"""Operator latency surrogates: ms of one operator call of an operator table on a described device.

:class:`OperatorLatencyModel` combines, by op kind (:mod:`hwsurrogate.datasets.optable`):

- **linear, bmm**: the GEMM trees (:class:`~.gemm.GemmRegressor`, roofline-ratio target, device
  descriptors as features) fitted on ``gemm`` rows plus the forward linear/bmm rows of the
  ``ops`` table. A backward row is the two GEMMs autograd runs, ``dX = dY @ W^T`` and
  ``dW = X^T @ dY`` (for bmm ``dA = dC @ B^T``, ``dB = A^T @ dC``), each predicted by the same trees.
  On a device the trees never saw, each GEMM takes at least ``compute_ms / ceiling``, where the
  ceiling is the highest utilisation a card of its board power limit sustains
  (:class:`GemmUtilisationCeiling`, from the training devices' GEMM rows).
- **vector kinds** (elementwise, activation, softmax, layernorm, reduction, copy, embedding):
  one gradient-boosted tree on ``log(latency / roofline)`` (:func:`~.features.ops.vector_features`),
  forward and backward rows alike (``backward`` is a feature). Kinds without operator
  micro-benchmarks (reduction, copy, embedding) learn from trace rows. A **backward** row of a
  vector kind is the forward prediction of the same shapes times the kind's backward / forward
  ratio measured on the training devices' trace rows (``backward_vector``, default
  ``"kind_ratio"``; on NeuSight's data V100 alone has training traces: softmax 2.6, layer norm
  2.2, elementwise 1.3, activations 1.1, embedding 7.7), so an unseen device's backward ops
  follow its own forward speed; ``"trees"`` keeps the trace trees, fitted on those rows alone.
- **conv2d**: the same on :func:`~.features.ops.conv_features` (forward only).
- **other** (views, ``size``, ``getitem``, Python scalar arithmetic): the overhead model, the
  median measured time of that op over the training rows (these are host-side dispatch costs,
  ~7 us on every GPU of NeuSight's traces); an op never seen in training stays NaN.

**Model context** (``context_kinds``): an operator inside a model does not run as its isolated
micro-benchmark does; where the training rows include model traces, the micro-benchmark trees'
predictions of those kinds are rescaled by one factor per (kind, phase) measured on the training
devices' trace rows (NeuSight's five training GPUs: elementwise 0.90, softmax 0.84, layer norm
0.94, activations 1.01). A model fitted on one device (this CPU in ``hws bench model-live``, whose
trace rows are its calibration models' operators timed in place) takes that device's own ratio;
``context_bytes_edges`` splits each (kind, phase) into size buckets of the rows' ``bytes``. A fit
on CPUs alone defaults to factors for every vector kind from trace rows that do not train the
trees (:data:`CPU_CONTEXT_KINDS`; chosen on the calibration models).

Because the trees predict the *ratio* to the roofline of the device (peak FP32 GFLOP/s, memory
bandwidth), a GPU never trained on gets a prediction from its descriptors alone. A row the model
cannot predict (a kind or phase it has no data for) is NaN, never a guess: the aggregation
reports those rows as unmodeled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.isotonic import IsotonicRegression

from hwsurrogate.datasets.optable import DTYPE_BYTES, GEMM_KINDS, check_op_table, derive_flops_bytes
from hwsurrogate.surrogates.features.gemm import device_table, gemm_features
from hwsurrogate.surrogates.features.ops import (
    OPS_FEATURE_VERSION,
    POWER_DESCRIPTOR,
    VECTOR_GROUP_KINDS,
    conv_features,
    describe_device,
    device_arrays,
    power_limits,
    vector_features,
)
from hwsurrogate.surrogates.models.gemm import GemmRegressor

__all__ = [
    "BACKWARD_RECIPES",
    "BACKWARD_VECTOR_MODES",
    "CONTEXT_KINDS",
    "CPU_CONTEXT_BYTES_EDGES",
    "CPU_CONTEXT_KINDS",
    "GemmUtilisationCeiling",
    "OperatorLatencyModel",
    "apply_scales",
    "backward_gemms",
    "fewshot_scales",
]

#: kinds whose micro-benchmark predictions are rescaled to the model context by default (see
#: ``OperatorLatencyModel._context_scales``); chosen leave-one-GPU-out on NeuSight's training GPUs
CONTEXT_KINDS: tuple[str, ...] = ("elementwise", "activation", "softmax", "layernorm")
#: the defaults of a fit whose devices are all CPUs (``hws bench model-live``: this CPU, its trace
#: rows the 16 calibration models' operators timed in place), chosen there by the lowest
#: leave-one-calibration-model-out error averaged over three runs, among its ``CONTEXT_VARIANTS``:
#: every vector kind gets one factor per (kind, phase), and the trace rows set the factors only
CPU_CONTEXT_KINDS: tuple[str, ...] = ("elementwise", "activation", "softmax", "layernorm", "reduction", "copy",
                                      "embedding")  # fmt: skip
#: no size buckets by default on CPUs (``context_bytes_edges``; the bucketed variants' error was higher)
CPU_CONTEXT_BYTES_EDGES: tuple[float, ...] = ()
#: GEMM rows of a device at or above this FLOPs quantile are its "large" ones (the ceiling's rows;
#: chosen leave-one-GPU-out against all compute-bound rows: 10.6 against 11.4 % mean e2e error)
_LARGEST_QUARTER = 0.75
#: ways to predict a backward row of a vector kind (``OperatorLatencyModel(backward_vector=...)``)
BACKWARD_VECTOR_MODES: tuple[str, ...] = ("op_ratio", "kind_ratio", "recipe", "trees")
#: ``backward_vector="recipe"``: the forward kernels autograd runs for the backward of a vector op
#: (NeuSight's decomposition, ``neusight/Tracing/parse.py``), each ``(kind, op, inputs, repeat)`` on
#: the row's ``rows x cols``: ``inputs`` None is the row's own, ``repeat`` ``"inputs"`` once per
#: input; kind ``"mem"`` is a fill or copy of ``inputs`` tensors at the device's bandwidth
BACKWARD_RECIPES: dict[tuple[str, str], tuple[tuple[str, str, int | None, int | str], ...]] = {
    ("softmax", "softmax"): (("elementwise", "mul", 2, 1), ("softmax", "softmax", 1, 1)),
    ("layernorm", "layer_norm"): (("elementwise", "mul", 2, 1),),
    ("activation", "gelu"): (("activation", "gelu", 1, 1),),
    ("activation", "relu"): (("activation", "relu", 1, 1),),
    ("activation", "tanh"): (("elementwise", "mul", 1, 1), ("elementwise", "add", 1, 1)),
    ("elementwise", "pow"): (("elementwise", "pow", 1, 1), ("elementwise", "mul", 2, 1), ("elementwise", "mul", 1, 1)),
    ("elementwise", "mul"): (("elementwise", "mul", None, "inputs"),),
    ("elementwise", "div"): (("elementwise", "div", None, "inputs"),),
    ("elementwise", "truediv"): (("elementwise", "div", None, "inputs"),),
    ("elementwise", "add"): (("mem", "fill", 1, "inputs"),),
    ("elementwise", "sub"): (("mem", "fill", 1, "inputs"),),
    ("elementwise", "dropout"): (("mem", "copy", None, 2),),
    ("elementwise", "where"): (("mem", "copy", None, 2),),
}  # fmt: skip
#: rows of a (kind[, op]) a device needs to set a backward ratio: a training trace has one softmax
#: row per layer, so 2 lets a fit on two of V100's three training traces have one
_MIN_RATIO_ROWS = 2
#: the one device id a single-device query is predicted under inside the GEMM trees
_QUERY_DEVICE = "__query_device__"


class GemmUtilisationCeiling:
    """The highest FP32 GEMM utilisation (achieved / peak FLOP/s) a device sustains, from its power limit.

    A card that cannot hold its boost clock under FP32 GEMM load within its board power limit runs
    its compute-bound GEMMs at a fraction of the datasheet peak. In NeuSight's GEMM data, the
    99th percentile of utilisation over the large compute-bound rows is 0.58 (P4, 75 W) and 0.44
    (T4, 70 W) against 0.84-0.94 on the 250 W cards (P100, A100, V100).

    ``fit`` takes that statistic per training device: ``quantile`` of ``compute time at peak /
    runtime`` over the device's fp32 GEMM rows with intensity above twice the ridge point and FLOPs
    in its largest quarter. It then fits a monotone (isotonic, non-decreasing) curve of log
    utilisation on log power limit. Outside the training devices' range the curve stays flat: a
    700 W card gets the highest training cards' ceiling. :class:`OperatorLatencyModel` uses it as
    a floor on each GEMM's predicted time, ``compute_ms / ceiling``, on devices its GEMM trees were
    not trained on (a 72 W L4 has an A100-class peak and L2, so the trees alone predict A100-class
    utilisation, which it does not sustain). A device without a stated
    ``power_limit_w``, or a model fitted on fewer than two distinct power limits, has no ceiling.
    """

    def __init__(self, quantile: float = 0.99) -> None:
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {quantile!r}")
        self.quantile = quantile

    def fit(self, g: pl.DataFrame, devices: pl.DataFrame) -> GemmUtilisationCeiling:
        """``g``: GEMM rows (device_id, op, m, n, k, batch, dtype, runtime_ms) of devices in ``devices``."""
        limits = power_limits(devices)
        rows = g.filter((pl.col("dtype") == "fp32") & (pl.col("runtime_ms") > 0))
        self.device_utilisation_: dict[str, float] = {}
        self.curve_: IsotonicRegression | None = None
        if rows.height:
            f = gemm_features(rows.select("device_id", "op", "m", "n", "k", "batch", "dtype"), devices)
            rows = rows.with_columns(
                (2.0 ** f["log2_compute_ms"] / rows["runtime_ms"]).alias("_u"),
                f["log2_intensity_over_ridge"].alias("_ior"),
                f["flops"].alias("_flops"),
            ).filter(pl.col("_ior") > 1.0)
        for (dev,), part in rows.group_by(["device_id"]) if rows.height else ():
            big = part.filter(pl.col("_flops") >= part["_flops"].quantile(_LARGEST_QUARTER))
            if big.height >= 10:
                self.device_utilisation_[str(dev)] = float(big["_u"].quantile(self.quantile))
        stated = {d: u for d, u in self.device_utilisation_.items() if np.isfinite(limits.get(d, np.nan))}
        if len({limits[d] for d in stated}) >= 2:
            x = np.log([limits[d] for d in stated])
            self.curve_ = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(
                x, np.log(list(stated.values()))
            )
        return self

    def ceiling(self, power_limit_w: float) -> float:
        """The utilisation ceiling of a device with this power limit; NaN where there is none."""
        if getattr(self, "curve_", None) is None or not np.isfinite(power_limit_w) or power_limit_w <= 0:
            return float("nan")
        return float(np.exp(self.curve_.predict([np.log(power_limit_w)])[0]))


def backward_gemms(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The two GEMMs of the backward of each linear/bmm row (columns op, batch, m, n, k).

    Forward ``C[m, n] = A[m, k] @ B[k, n]`` (``batch`` times); backward computes
    ``dA[m, k] = dC[m, n] @ B^T`` (reduction n) and ``dB[k, n] = A^T @ dC`` (reduction m).
    """
    d_in = frame.select(
        "op_kind", pl.col("batch"), pl.col("m"), pl.col("k").alias("n"), pl.col("n").alias("k")
    )
    d_w = frame.select(
        "op_kind", pl.col("batch"), pl.col("k").alias("m"), pl.col("n"), pl.col("m").alias("k")
    )
    return d_in, d_w


def _device_ratios(rows: pl.DataFrame, pred: str, min_rows: int) -> list[float]:
    """Per device of ``rows`` (in device-id order) with at least ``min_rows`` rows whose ``pred``
    is finite and positive: their measured ``latency_ms`` summed over their ``pred`` summed."""
    ratios = []
    for dev_id in rows["device_id"].unique().sort().to_list():
        part = rows.filter(pl.col("device_id") == dev_id)
        predicted = part[pred].to_numpy()
        ok = np.isfinite(predicted) & (predicted > 0)
        if ok.sum() >= min_rows:
            ratios.append(float(part["latency_ms"].to_numpy()[ok].sum() / predicted[ok].sum()))
    return ratios


class OperatorLatencyModel:
    """Per-call latency of operator-table rows on any described device; see the module docstring.

    Parameters follow the scikit-learn convention (stored as given; ``fit`` does the work).
    ``device_features`` adds absolute device descriptors to the vector/conv trees (off: only
    device-relative features, which extrapolate better from few training devices).
    ``context_kinds``: op kinds whose micro-benchmark prediction is rescaled to the model context
    when the training rows hold model traces (``_context_scales``); empty: none.
    ``trace_in_trees``: trace rows (``model`` set) also train the trees and the overhead medians
    (as NeuSight's traces do); False: they only set the context factors, so each factor is
    in-model time over the prediction from the micro-benchmarks alone.
    ``context_bytes_edges``: increasing byte sizes that split each context kind into size buckets
    (one factor per (kind, phase, bucket) of the rows' ``bytes``); empty: one per (kind, phase).
    Left None, these three follow the fitted devices: :data:`CPU_CONTEXT_KINDS`,
    :data:`CPU_CONTEXT_BYTES_EDGES` and False when every device's ``kind`` is ``cpu``, else
    :data:`CONTEXT_KINDS`, none and True (resolved in ``fit`` as ``context_kinds_`` etc.).
    ``gemm_power_ceiling``: the quantile of the training devices' large compute-bound GEMM
    utilisation taken as their ceiling (:class:`GemmUtilisationCeiling`); None: no ceiling.
    ``backward_vector``: how a backward row of a vector kind is predicted. ``"trees"``: by the trace
    trees (``backward`` is a feature), from the training devices' backward trace rows alone.
    ``"op_ratio"`` / ``"kind_ratio"``: the forward prediction of the same row (micro-benchmark
    trees and model context, which carry over to unseen devices) times a backward / forward ratio
    fitted on the backward trace rows (``backward_ratio_``, see ``_backward_ratios``), one per
    (kind, op) with the kind's ratio for ops with too few rows, or one per kind (the default,
    chosen on V100's held-out training traces: docs/wholemodel.md); a row without a ratio takes
    its :data:`BACKWARD_RECIPES` entry. ``"recipe"``: the recipe for every row that has one.
    """

    def __init__(
        self,
        *,
        device_features: bool = False,
        gemm_device_features: bool = True,
        max_iter: int = 300,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 31,
        min_samples_leaf: int = 40,
        max_gemm_rows: int = 60_000,
        max_vector_rows: int = 80_000,
        random_state: int = 0,
        context_kinds: tuple[str, ...] | None = None,
        context_bytes_edges: tuple[float, ...] | None = None,
        trace_in_trees: bool | None = None,
        gemm_power_ceiling: float | None = 0.99,
        backward_vector: str = "kind_ratio",
    ) -> None:
        self.device_features = device_features
        self.gemm_device_features = gemm_device_features
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.max_gemm_rows = max_gemm_rows
        self.max_vector_rows = max_vector_rows
        self.random_state = random_state
        self.context_kinds = context_kinds
        self.context_bytes_edges = context_bytes_edges
        self.trace_in_trees = trace_in_trees
        self.gemm_power_ceiling = gemm_power_ceiling
        self.backward_vector = backward_vector

    # ------------------------------------------------------------------ fit
    def _trees(self) -> HistGradientBoostingRegressor:
        return HistGradientBoostingRegressor(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            random_state=self.random_state,
        )

    def _fit_group(self, rows: pl.DataFrame, devices: pl.DataFrame, features: Any, cap: int) -> Any:
        if rows.height == 0:
            return None
        if cap and rows.height > cap:
            # keep every trace row; sample the micro-benchmarks
            is_trace = (
                rows["model"].is_not_null() if "model" in rows.columns else pl.Series([False] * rows.height)
            )
            trace, micro = rows.filter(is_trace), rows.filter(~is_trace)
            micro = (
                micro.sample(max(cap - trace.height, 1), seed=self.random_state) if micro.height else micro
            )
            rows = pl.concat([micro, trace], how="diagonal_relaxed")
        dev = device_arrays(rows["device_id"], devices)
        x, roof = features(rows, dev, device_features=self.device_features)
        z = np.log(rows["latency_ms"].to_numpy() / roof)
        return self._trees().fit(x, z)

    def fit(
        self, ops: pl.DataFrame, devices: pl.DataFrame, gemm: pl.DataFrame | None = None
    ) -> OperatorLatencyModel:
        """Fit on ``ops`` rows (+ ``gemm`` rows) of devices described in ``devices``.

        Rows of devices without peak FP32 GFLOP/s and bandwidth are left out (listed in
        ``skipped_devices_``). Raises ``ValueError`` when nothing is left to fit.
        """
        if self.backward_vector not in BACKWARD_VECTOR_MODES:
            raise ValueError(
                f"OperatorLatencyModel: backward_vector must be one of {list(BACKWARD_VECTOR_MODES)}, "
                f"got {self.backward_vector!r}"
            )
        self.backward_ratio_: dict[tuple[str, ...], float] = {}  # none while the trees are fitted
        table = device_table(devices)
        described = table.filter(
            pl.col("peak_fp32_gflops").is_not_null() & pl.col("mem_bw_gbs").is_not_null()
        )
        ok = set(described["device_id"].to_list())
        need = {"device_id", "op_kind", "op", "phase", "latency_ms"}
        missing = sorted(need - set(ops.columns))
        if missing:
            raise ValueError(f"ops rows miss column(s) {missing}")
        used = set(ops["device_id"].unique().to_list()) | (
            set(gemm["device_id"].unique().to_list()) if gemm is not None and gemm.height else set()
        )
        self.skipped_devices_ = sorted(used - ok)
        ops = ops.filter(pl.col("device_id").is_in(sorted(ok)) & (pl.col("latency_ms") > 0))
        if "model" not in ops.columns:
            ops = ops.with_columns(pl.lit(None, pl.String).alias("model"))
        if ops["flops"].null_count() if "flops" in ops.columns else True:
            ops = _with_flops(ops)
        self.device_table_ = described.filter(pl.col("device_id").is_in(sorted(used & ok)))
        self.devices_ = self.device_table_["device_id"].to_list()
        self._resolve_context(devices)
        context_rows = ops.filter(pl.col("model").is_not_null())
        if not self.trace_in_trees_:
            ops = ops.filter(pl.col("model").is_null())
        self.feature_version_ = OPS_FEATURE_VERSION

        vec = ops.filter(pl.col("op_kind").is_in(sorted(VECTOR_GROUP_KINDS)))
        # micro-benchmarks and trace rows get separate trees: mixed, the few trace rows (other
        # ops, broadcasts, backward kernels) pull the micro-benchmark fit off on unseen devices
        micro, trace = vec.filter(pl.col("model").is_null()), vec.filter(pl.col("model").is_not_null())
        self.vector_ = self._fit_group(micro, devices, vector_features, self.max_vector_rows)
        self.vector_cover_ = {(k, p) for k, p in micro.select("op_kind", "phase").unique().iter_rows()}
        self.vector_trace_ = self._fit_group(trace, devices, vector_features, self.max_vector_rows)
        self.trace_cover_ = {(k, p) for k, p in trace.select("op_kind", "phase").unique().iter_rows()}
        self.trace_cover_ -= self.vector_cover_
        conv = ops.filter((pl.col("op_kind") == "conv2d") & (pl.col("phase") == "forward"))
        self.conv_ = self._fit_group(conv, devices, conv_features, self.max_vector_rows)

        g = _gemm_rows(ops, gemm)
        g = g.filter(pl.col("device_id").is_in(sorted(ok)))
        n_gemm = self._fit_gemm(g, devices)
        other = ops.filter((pl.col("op_kind") == "other") & (pl.col("phase") == "forward"))
        self.overhead_ms_ = dict(
            other.group_by("op").agg(pl.col("latency_ms").median()).iter_rows()
        )  # op -> median ms over the training devices
        # what timing an empty op costs (host-only ops, all of them pooled): the launch overlap
        # of a device-bound whole-model run (see ``wholemodel.predict_model_latency``)
        self.empty_op_ms_ = float(other["latency_ms"].median()) if other.height else float("nan")
        if (
            self.vector_ is None
            and self.vector_trace_ is None
            and self.conv_ is None
            and self.gemm_ is None
            and not self.overhead_ms_
        ):
            raise ValueError("no operator rows of a described device to fit")
        self.n_rows_ = {"vector": vec.height, "conv2d": conv.height, "gemm": n_gemm, "other": other.height}
        self.context_scale_ = self._context_scales(context_rows, devices)
        self.backward_ratio_ = self._backward_ratios(context_rows, devices)
        return self

    def _resolve_context(self, devices: pl.DataFrame) -> None:
        """``context_kinds_``, ``context_bytes_edges_``, ``trace_in_trees_``: the parameters, or the
        defaults of the fitted devices (CPU ones when every device's ``kind`` is ``cpu``)."""
        kinds = (
            devices.filter(pl.col("device_id").is_in(self.devices_))["kind"].to_list()
            if "kind" in devices.columns
            else []
        )
        cpu = bool(kinds) and all(k == "cpu" for k in kinds)
        self.context_kinds_ = tuple(
            self.context_kinds
            if self.context_kinds is not None
            else CPU_CONTEXT_KINDS
            if cpu
            else CONTEXT_KINDS
        )
        edges = self.context_bytes_edges
        self.context_bytes_edges_ = _check_edges(
            tuple(edges) if edges is not None else CPU_CONTEXT_BYTES_EDGES if cpu else ()
        )
        self.trace_in_trees_ = bool(self.trace_in_trees) if self.trace_in_trees is not None else not cpu

    def _fit_gemm(self, g: pl.DataFrame, devices: pl.DataFrame) -> int:
        """The GEMM trees (``gemm_``) and the power-limited utilisation ceiling (``gemm_ceiling_``,
        from every row); returns how many rows the trees were fitted on."""
        self.gemm_ = None
        self.gemm_ceiling_ = None
        if g.height == 0:
            return 0
        if self.gemm_power_ceiling is not None:
            self.gemm_ceiling_ = GemmUtilisationCeiling(self.gemm_power_ceiling).fit(g, devices)
        if self.max_gemm_rows and g.height > self.max_gemm_rows:
            g = g.sample(self.max_gemm_rows, seed=self.random_state)
        self.gemm_ = GemmRegressor(
            devices=devices,
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            device_features=self.gemm_device_features,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            random_state=self.random_state,
        ).fit(g, g["runtime_ms"])
        return g.height

    def _context_scales(
        self, trace: pl.DataFrame, devices: pl.DataFrame
    ) -> dict[tuple[str, str] | tuple[str, str, int], float]:
        """``(kind, phase) -> median over training devices of sum(measured) / sum(predicted)``.

        For the kinds in ``context_kinds_`` that the micro-benchmark trees (or GEMM trees) predict:
        an operator inside a model does not run as its micro-benchmark does (its input was just
        written by the previous op, other launch configurations, fresh output pages), and the
        training devices' trace rows of the same kind measure by how much. One factor per (kind,
        phase), the median over devices (each with >= 3 rows) of the device's time-weighted ratio,
        so one device's odd timings cannot set it; kinds with fewer than 2 such devices keep 1. A
        model fitted on a single device needs only that one. With ``context_bytes_edges`` the keys
        are ``(kind, phase, bucket)`` (bucket ``i``: ``bytes`` in ``[edge[i-1], edge[i])``), and a
        bucket without enough rows takes its kind's factor.
        """
        self.context_scale_ = {}
        out: dict[tuple[str, str] | tuple[str, str, int], float] = {}
        if not self.context_kinds_ or trace.height == 0:
            return out
        edges = self.context_bytes_edges_
        need = min(2, len(self.devices_))
        table = device_table(devices)
        rows_all = trace.filter(pl.col("op_kind").is_in(list(self.context_kinds_)))
        if self.backward_vector != "trees":  # backward vector rows follow their forward (``_backward_ratios``)
            rows_all = rows_all.filter(pl.col("phase") != "backward")
        if rows_all.height == 0:
            return out
        pred_all = np.full(rows_all.height, np.nan)
        for (dev_id,), part in rows_all.with_row_index("_i").group_by(["device_id"], maintain_order=True):
            device = table.filter(pl.col("device_id") == dev_id).row(0, named=True)
            pred_all[part["_i"].to_numpy()] = self.predict_ops(_as_op_table(part.drop("_i")), device)
        size = derive_flops_bytes(_as_op_table(rows_all))["bytes"].fill_null(0.0).to_numpy()
        bucket = np.digitize(size, edges) if edges else None
        rows_all = rows_all.with_columns(pl.Series("_pred", pred_all),
                                         pl.Series("_bucket", bucket if edges else np.zeros(rows_all.height, int)))  # fmt: skip

        def factor(rows: pl.DataFrame) -> float | None:
            ratios = _device_ratios(rows, "_pred", 3)
            return float(np.median(ratios)) if ratios and len(ratios) >= need else None

        for (kind, phase), rows in rows_all.group_by("op_kind", "phase", maintain_order=True):
            whole = factor(rows)
            if whole is None:
                continue
            if not edges:
                out[(str(kind), str(phase))] = whole
                continue
            for b in range(len(edges) + 1):
                got = factor(rows.filter(pl.col("_bucket") == b))
                out[(str(kind), str(phase), b)] = whole if got is None else got
        return out

    def _backward_ratios(self, trace: pl.DataFrame, devices: pl.DataFrame) -> dict[tuple[str, ...], float]:
        """``(kind,)`` or ``(kind, op) -> backward / forward ratio`` of the vector kinds' backward rows.

        A backward trace row carries its forward op's shapes. For each training device with such
        rows, the ratio is ``sum(measured backward) / sum(forward prediction of the same rows)``
        (the rows predicted as forward rows of the same shapes, so the micro-benchmark trees and
        the model context set the device's speed); the factor is the median over those devices
        (each with >= ``_MIN_RATIO_ROWS`` rows of the key). ``"op_ratio"`` adds one per (kind, op) where the op has
        the rows; other ops take their kind's. Empty for ``backward_vector="trees"`` or without
        backward trace rows (every backward row then goes to the trace trees, as before).
        """
        self.backward_ratio_ = {}
        if self.backward_vector == "trees" or trace.height == 0:
            return {}
        rows = trace.filter(
            (pl.col("phase") == "backward") & pl.col("op_kind").is_in(sorted(VECTOR_GROUP_KINDS))
        )
        if rows.height == 0:
            return {}
        table = device_table(devices)
        fw = np.full(rows.height, np.nan)
        for (dev_id,), part in rows.with_row_index("_i").group_by(["device_id"], maintain_order=True):
            device = table.filter(pl.col("device_id") == dev_id).row(0, named=True)
            fw[part["_i"].to_numpy()] = self.predict_ops(_as_forward(_as_op_table(part.drop("_i"))), device)
        rows = rows.with_columns(pl.Series("_fw", fw))

        def ratio(part: pl.DataFrame) -> float | None:
            ratios = _device_ratios(part, "_fw", _MIN_RATIO_ROWS)
            return float(np.median(ratios)) if ratios else None

        out: dict[tuple[str, ...], float] = {}
        for (kind,), part in rows.group_by(["op_kind"], maintain_order=True):
            got = ratio(part)
            if got is not None:
                out[(str(kind),)] = got
        if self.backward_vector in ("op_ratio", "recipe"):
            for (kind, op), part in rows.group_by("op_kind", "op", maintain_order=True):
                got = ratio(part)
                if got is not None:
                    out[(str(kind), str(op))] = got
        return out

    @property
    def covered_kinds(self) -> frozenset[str]:
        """The op kinds this model predicts (some only in one phase; see :meth:`covers`)."""
        kinds = {k for k, _ in getattr(self, "vector_cover_", set()) | getattr(self, "trace_cover_", set())}
        if getattr(self, "conv_", None) is not None:
            kinds.add("conv2d")
        if getattr(self, "gemm_", None) is not None:
            kinds |= GEMM_KINDS
        if getattr(self, "overhead_ms_", None):
            kinds.add("other")
        return frozenset(kinds)

    @property
    def empty_op_ms(self) -> float:
        """Median measured ms of the training rows' host-only ops (kind ``other``), NaN without any.

        It is what timing one operator alone costs beyond its kernel (launch + event
        synchronisation); a whole model run asynchronously on a GPU hides it behind the queued
        kernels, so :func:`~hwsurrogate.surrogates.wholemodel.predict_model_latency` takes it as
        ``overlap_ms``.
        """
        return float(getattr(self, "empty_op_ms_", float("nan")))

    # ------------------------------------------------------------------ predict
    def predict_ops(self, table: pl.DataFrame, device: Mapping[str, object]) -> np.ndarray:
        """ms of ONE call of each row on ``device`` (a ``devices`` row as a dict); NaN where unmodeled."""
        if not hasattr(self, "feature_version_"):
            raise ValueError("this OperatorLatencyModel is not fitted yet; call fit first")
        if self.feature_version_ != OPS_FEATURE_VERSION:
            raise ValueError(
                f"this operator model was fitted with feature pipeline v{self.feature_version_}; the installed "
                f"pipeline is v{OPS_FEATURE_VERSION}: retrain it (`hws train ops`)"
            )
        check_op_table(table, flops_required=False)
        dev = describe_device(device)
        out = np.full(table.height, np.nan)
        kind, phase = table["op_kind"].to_numpy(), table["phase"].to_numpy()
        pairs = list(zip(kind, phase, strict=True))
        for trees, cover in ((self.vector_, self.vector_cover_), (self.vector_trace_, self.trace_cover_)):
            vec = np.array([pair in cover for pair in pairs], dtype=bool)
            if vec.any() and trees is not None:
                x, roof = vector_features(
                    table.filter(pl.Series(vec)), dev, device_features=self.device_features
                )
                out[vec] = np.exp(trees.predict(x)) * roof
        conv = (kind == "conv2d") & (phase == "forward")
        if conv.any() and self.conv_ is not None:
            x, roof = conv_features(table.filter(pl.Series(conv)), dev, device_features=self.device_features)
            out[conv] = np.exp(self.conv_.predict(x)) * roof
        gemm = np.isin(kind, list(GEMM_KINDS))
        if gemm.any() and self.gemm_ is not None:
            out[gemm] = self._predict_gemm(table.filter(pl.Series(gemm)), device)
        scales = getattr(self, "context_scale_", {})
        edges = tuple(getattr(self, "context_bytes_edges_", ()))
        if scales and edges:
            size = derive_flops_bytes(table)["bytes"].fill_null(0.0).to_numpy()
            bucket = np.digitize(size, edges)
        for key, factor in scales.items():
            rows = (kind == key[0]) & (phase == key[1])
            out[rows & (bucket == key[2]) if len(key) == 3 else rows] *= factor
        mode = getattr(self, "backward_vector", "trees")  # models pickled before it have none
        ratios = getattr(self, "backward_ratio_", {})
        ops_ = table["op"].to_numpy()
        factor = np.array([ratios.get((k, o), ratios.get((k,), np.nan)) if p == "backward" else np.nan
                           for k, o, p in zip(kind, ops_, phase, strict=True)])  # fmt: skip
        back = np.isfinite(factor)
        if back.any():
            # the backward of a vector op: its forward prediction times the fitted ratio
            fw = self.predict_ops(_as_forward(table.filter(pl.Series(back))), device)
            out[back] = fw * factor[back]
        if mode != "trees":
            # "recipe": every backward row with a recipe; the ratio modes: those without a ratio
            # (no training device has backward trace rows of the kind)
            self._predict_recipes(table, device, out, None if mode == "recipe" else ~back)
        other = kind == "other"
        if other.any() and self.overhead_ms_:
            ops = table["op"].to_numpy()[other]
            out[other] = [self.overhead_ms_.get(o, np.nan) for o in ops]
        return out

    def _predict_recipes(
        self, table: pl.DataFrame, device: Mapping[str, object], out: np.ndarray, only: np.ndarray | None
    ) -> None:
        """``out`` of the backward rows with a :data:`BACKWARD_RECIPES` entry (those in ``only``
        where given): the sum of its forward kernels' predictions (``mem``: bytes over bandwidth)."""
        kind, ops, phase = (table[c].to_numpy() for c in ("op_kind", "op", "phase"))
        rows = [i for i in range(table.height) if phase[i] == "backward" and (kind[i], ops[i]) in BACKWARD_RECIPES
                and (only is None or only[i])]  # fmt: skip
        if not rows:
            return
        sub = table[rows]
        inputs = sub["inputs"].fill_null(1).to_numpy()
        numel = (sub["rows"].cast(pl.Float64) * sub["cols"].cast(pl.Float64)).fill_null(np.nan).to_numpy()
        elt = sub["dtype"].replace_strict(DTYPE_BYTES, default=4, return_dtype=pl.Float64).to_numpy()
        bw = describe_device(device)["mem_bw_gbs"]
        total = np.zeros(len(rows))
        parent, kernels, times = [], [], []
        for j in range(len(rows)):
            for k, o, n_in, repeat in BACKWARD_RECIPES[(kind[rows[j]], ops[rows[j]])]:
                n_in = int(inputs[j]) if n_in is None else n_in
                n_times = int(inputs[j]) if repeat == "inputs" else int(repeat)
                if k == "mem":
                    total[j] += n_times * n_in * numel[j] * elt[j] / (bw * 1e6)
                else:
                    parent.append(j)
                    kernels.append({"op_kind": k, "op": o, "inputs": n_in})
                    times.append(n_times)
        if kernels:
            idx = np.array(parent)
            frame = sub[idx].with_columns(
                pl.Series("op_kind", [r["op_kind"] for r in kernels]), pl.Series("op", [r["op"] for r in kernels]),
                pl.Series("inputs", [r["inputs"] for r in kernels], dtype=sub["inputs"].dtype),
            )  # fmt: skip
            pred = self.predict_ops(_as_forward(frame), device) * np.array(times)
            np.add.at(total, idx, pred)
        out[np.array(rows)] = total

    def _predict_gemm(self, rows: pl.DataFrame, device: Mapping[str, object]) -> np.ndarray:
        keep = {k: device.get(k) for k in ("peak_fp32_gflops", "peak_fp16_gflops", "mem_bw_gbs", "cores",
                                           "l2_mb", "clock_mhz", "descriptors") if k in device}  # fmt: skip
        extra = pl.DataFrame([{"device_id": _QUERY_DEVICE, **keep}], infer_schema_length=None)
        # the power-limited ceiling is for devices the GEMM trees never saw: a training device's
        # own rows already tell the trees how fast it runs (models pickled before it have none)
        fitted = getattr(self, "gemm_ceiling_", None)
        seen = device.get("device_id") in set(self.gemm_.devices_)
        ceiling = (
            fitted.ceiling(describe_device(device)[POWER_DESCRIPTOR])
            if fitted is not None and not seen
            else float("nan")
        )

        def query(frame: pl.DataFrame) -> np.ndarray:
            q = frame.select(
                pl.lit(_QUERY_DEVICE).alias("device_id"), pl.col("op_kind").alias("op"),
                "batch", "m", "n", "k", pl.lit("fp32").alias("dtype"),
            )  # fmt: skip
            out = self.gemm_.predict(q, extra_devices=extra)
            if np.isfinite(ceiling):
                # no faster than the device's power-limited ceiling allows on its compute-bound work
                compute_ms = 2.0 ** gemm_features(q, extra)["log2_compute_ms"].to_numpy()
                out = np.maximum(out, compute_ms / ceiling)
            return out

        fw = query(rows)
        back = (rows["phase"] == "backward").to_numpy()
        if back.any():
            d_in, d_w = backward_gemms(rows.filter(pl.Series(back)))
            fw[back] = query(d_in) + query(d_w)
        return fw


def _check_edges(edges: tuple[float, ...]) -> tuple[float, ...]:
    """``context_bytes_edges`` as floats; refused unless positive and strictly increasing."""
    out = tuple(float(e) for e in edges)
    increasing = all(b > a for a, b in zip(out, out[1:], strict=False))
    if not increasing or any(not np.isfinite(e) or e <= 0 for e in out):
        raise ValueError(f"context_bytes_edges must be positive and strictly increasing, got {edges!r}")
    return out


def _as_forward(table: pl.DataFrame) -> pl.DataFrame:
    """Operator-table rows as the forward rows of the same shapes (flops/bytes derived again)."""
    return derive_flops_bytes(
        table.with_columns(
            pl.lit("forward").alias("phase"), pl.lit(None, pl.Float64).alias("flops"),
            pl.lit(None, pl.Float64).alias("bytes"),
        )  # fmt: skip
    )


def _as_op_table(ops: pl.DataFrame) -> pl.DataFrame:
    """``ops`` store rows as operator-table rows (the table's columns; one call each where unstated)."""
    from hwsurrogate.datasets.optable import OP_TABLE_SCHEMA

    frame = ops.select([c for c in OP_TABLE_SCHEMA if c in ops.columns])
    for c, t in OP_TABLE_SCHEMA.items():
        if c not in frame.columns:
            frame = frame.with_columns(pl.lit(None, t).alias(c))
    frame = frame.with_columns(pl.col("name").fill_null(pl.col("op")), pl.col("count").fill_null(1))
    return frame.select(list(OP_TABLE_SCHEMA))


def _with_flops(ops: pl.DataFrame) -> pl.DataFrame:
    """``flops``/``bytes`` by the operator-table conventions for rows that lack them."""
    derived = derive_flops_bytes(_as_op_table(ops))
    return ops.with_columns(derived["flops"], derived["bytes"])


def _gemm_rows(ops: pl.DataFrame, gemm: pl.DataFrame | None) -> pl.DataFrame:
    """GEMM training rows: the ``gemm`` table's plus the forward linear/bmm rows of ``ops``."""
    cols = ["device_id", "op", "m", "n", "k", "batch", "dtype", "runtime_ms"]
    parts = []
    if gemm is not None and gemm.height:
        parts.append(gemm.filter(pl.col("op").is_in(["linear", "bmm", "gemm"])).select(cols))
    fw = ops.filter(pl.col("op_kind").is_in(sorted(GEMM_KINDS)) & (pl.col("phase") == "forward"))
    if fw.height:
        parts.append(
            fw.select(
                "device_id",
                pl.col("op_kind").alias("op"),
                "m",
                "n",
                "k",
                "batch",
                pl.lit("fp32").alias("dtype"),
                pl.col("latency_ms").alias("runtime_ms"),
            )  # fmt: skip
        )
    if not parts:
        return pl.DataFrame(
            schema={c: pl.String if c in ("device_id", "op", "dtype") else pl.Float64 for c in cols}
        )
    return pl.concat(parts, how="vertical_relaxed").filter(pl.col("runtime_ms") > 0)


def _group(kinds: np.ndarray) -> np.ndarray:
    return np.where(np.isin(kinds, sorted(GEMM_KINDS)), "gemm", "vector")


def fewshot_scales(
    model: OperatorLatencyModel,
    table: pl.DataFrame,
    measured_ms: np.ndarray,
    device: Mapping[str, object],
    *,
    min_rows: int = 3,
) -> dict[str, float]:
    """Multiplicative corrections of ``model`` for ``device`` from a few measured operator rows.

    ``gemm`` (linear/bmm): ``sum(measured) / sum(predicted)``, so the time-dominant GEMMs set it (an
    unseen GPU's GEMM efficiency or sustained clock is what its descriptors miss). ``vector`` (every
    other kind) and ``all``: the median of ``measured / predicted``, robust to one odd row (a
    broadcast or fused backward kernel can be 10x off alone). A group with fewer than
    ``min_rows`` measured rows gets no scale (its rows stay zero-shot). Raises ``ValueError`` when no row is covered or a value is not positive.
    """
    measured = np.asarray(measured_ms, dtype=np.float64)
    if measured.shape != (table.height,):
        raise ValueError(f"measured_ms has {measured.size} values for {table.height} operator rows")
    if not (np.isfinite(measured) & (measured > 0)).all():
        raise ValueError("measured_ms must be finite and > 0")
    pred = model.predict_ops(table, device)
    ok = np.isfinite(pred) & (pred > 0)
    if not ok.any():
        raise ValueError("none of the measured operator rows is covered by the model")
    groups = _group(table["op_kind"].to_numpy())
    ratio = measured / np.where(ok, pred, 1.0)
    out = {"all": float(np.median(ratio[ok]))}
    gemm, vector = ok & (groups == "gemm"), ok & (groups == "vector")
    if gemm.sum() >= min_rows:
        out["gemm"] = float(measured[gemm].sum() / pred[gemm].sum())
    if vector.sum() >= min_rows:
        out["vector"] = float(np.median(ratio[vector]))
    return out


def apply_scales(table: pl.DataFrame, per_call_ms: np.ndarray, scales: Mapping[str, float]) -> np.ndarray:
    """``per_call_ms`` times each row's group scale from :func:`fewshot_scales` (1 where it has none)."""
    groups = _group(table["op_kind"].to_numpy())
    factor = np.array([scales.get(g, 1.0) for g in groups], dtype=np.float64)
    return np.asarray(per_call_ms, dtype=np.float64) * factor
