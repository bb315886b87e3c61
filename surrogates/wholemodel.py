"""Whole-model latency composed from per-operator predictions.

:func:`predict_model_latency` takes an operator table (:mod:`hwsurrogate.datasets.optable`: any
front end) and a per-call operator predictor, and sums ``count x per-call ms`` over the rows,
with a per-``op_kind`` breakdown. :func:`predict_model` is the one call from a model source (ONNX
file, ``FILE.py:CALLABLE``, config.json, module, or a ready table) and a device id to a
:class:`ModelPrediction`, with the registered operator model and the store's device row.

Rows the predictor cannot model (NaN: ``other`` ops, kinds without data) are never dropped:
their time is estimated (see :func:`predict_model_latency`), included in ``latency_ms``, and
reported as ``unmodeled_share`` and ``unmodeled_ops``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from hwsurrogate.datasets.optable import check_op_table
from hwsurrogate.errors import ModelSourceError, UnknownDeviceError

if TYPE_CHECKING:
    from hwsurrogate.datasets.store import DatasetStore

__all__ = [
    "ModelPrediction",
    "device_row",
    "fit_gap",
    "launch_overlap_ms",
    "predict_model",
    "predict_model_latency",
]

MODES = ("inference", "training")


@dataclass(frozen=True)
class ModelPrediction:
    """A whole-model latency answer.

    ``breakdown``: op_kind -> ``{"ms", "share", "ops", "unmodeled_ms"}`` (``ops`` = calls,
    counting ``count``); ``per_op``: the operator table plus ``pred_ms`` (per call, NaN where
    the model could not predict), ``est_ms`` (the estimate used for those), ``modeled`` and
    ``total_ms`` (= count x per-call ms).
    """

    latency_ms: float
    mode: str
    breakdown: dict[str, dict[str, float]]
    unmodeled_share: float
    unmodeled_ops: list[str]
    per_op: pl.DataFrame = field(repr=False)

    def to_dict(self, *, per_op: bool = False) -> dict[str, Any]:
        """JSON-able: latency_ms and the breakdown at the top level (+ the per-op rows if asked)."""
        out: dict[str, Any] = {
            "latency_ms": self.latency_ms,
            "mode": self.mode,
            "unmodeled_share": self.unmodeled_share,
            "unmodeled_ops": self.unmodeled_ops,
            "breakdown": self.breakdown,
            "n_ops": int(self.per_op.height),
        }
        if per_op:
            cols = [
                "name",
                "op_kind",
                "op",
                "phase",
                "module",
                "count",
                "flops",
                "bytes",
                "pred_ms",
                "total_ms",
                "modeled",
            ]
            out["per_op"] = [
                {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
                for row in self.per_op.select(cols).to_dicts()
            ]
        return out


def predict_model_latency(
    table: pl.DataFrame,
    predict_ops: Callable[[pl.DataFrame], np.ndarray],
    *,
    mode: str,
    gap_ms: float = 0.0,
    overlap_ms: float = 0.0,
) -> ModelPrediction:
    """Sum ``count x`` per-call predictions of an operator table into one latency.

    ``predict_ops(table)`` returns ms per ONE call of each row, NaN where it cannot model the
    row. ``mode`` must match the table: ``training`` needs backward rows, ``inference`` none.
    ``gap_ms`` is a fixed cost added per operator call (the launch/dispatch gap between ops),
    views included; 0 by default.

    ``overlap_ms`` (>= 0, default 0) aggregates for an asynchronous, device-bound run (a GPU
    under eager PyTorch): an operator timed alone (CUDA events around one call, as the operator
    data are measured) includes a fixed host cost, what an empty op costs to time; in a whole
    model that cost overlaps with the kernels already queued. So each call costs
    ``max(per-call ms - overlap_ms, 0)``, and calls with 0 FLOPs and 0 bytes (host-only ops:
    views, ``getitem``, ``size``, Python arithmetic) cost 0. Leave it 0 for a device that runs
    operators synchronously (a CPU).

    Unmodeled rows (NaN) are estimated from the modeled rows of the same answer: each gets
    ``max(flops / F, bytes / B)`` ms, where F and B are the FLOP/s and byte/s that the modeled
    rows of the same ``op_kind`` achieve together (their summed FLOPs and bytes over their summed
    predicted time; e.g. a backward elementwise op from the forward ones), or all modeled rows
    when none of its kind is modeled: the unmodeled op is assumed to run as efficiently as this
    model's comparable modeled ops on this device.
    Views (0 FLOPs, 0 bytes) cost 0. The estimates are part of ``latency_ms``; their share of it
    is ``unmodeled_share`` and their ``op`` names are ``unmodeled_ops``.
    """
    if mode not in MODES:
        raise ModelSourceError(f"mode {mode!r} must be one of {list(MODES)}", field="mode")
    check_op_table(table)
    has_backward = bool((table["phase"] == "backward").any())
    if mode == "training" and not has_backward:
        raise ModelSourceError(
            "mode 'training' needs backward rows: build the table with mode='training'", field="mode"
        )
    if mode == "inference" and has_backward:
        raise ModelSourceError(
            "mode 'inference' but the table has backward rows (a training table)", field="mode"
        )
    for name, value in (("gap_ms", gap_ms), ("overlap_ms", overlap_ms)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    pred = np.asarray(predict_ops(table), dtype=np.float64).reshape(-1)
    if pred.shape[0] != table.height:
        raise ValueError(f"predict_ops returned {pred.shape[0]} values for {table.height} operator rows")
    bad = np.isinf(pred) | (pred < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"predict_ops returned {pred[i]!r} ms for op {table['name'][i]!r} (row {i}); need finite >= 0 or NaN"
        )
    count = table["count"].to_numpy().astype(np.float64)
    flops = table["flops"].to_numpy().astype(np.float64)
    nbytes = table["bytes"].to_numpy().astype(np.float64)
    modeled = np.isfinite(pred)
    if not modeled.any():
        kinds = sorted(set(table["op_kind"].to_list()))
        raise ModelSourceError(
            f"no operator of this model could be predicted (op kinds {kinds})", field="model"
        )
    est = np.zeros_like(pred)
    kinds_arr = table["op_kind"].to_numpy()
    for kind in np.unique(kinds_arr[~modeled]):
        todo = ~modeled & (kinds_arr == kind)
        same = modeled & (kinds_arr == kind)
        ref = same if same.any() and (pred[same] * count[same]).sum() > 0 else modeled
        ref_ms = float((pred[ref] * count[ref]).sum())
        if ref_ms <= 0:
            continue
        f_rate = (flops[ref] * count[ref]).sum() / ref_ms  # FLOPs per ms
        b_rate = (nbytes[ref] * count[ref]).sum() / ref_ms
        with np.errstate(divide="ignore", invalid="ignore"):
            by_f = np.where(f_rate > 0, flops / f_rate, 0.0)
            by_b = np.where(b_rate > 0, nbytes / b_rate, 0.0)
        est = np.where(todo, np.maximum(by_f, by_b), est)
    per_call = np.where(modeled, pred, est)
    if overlap_ms > 0:
        host_only = (flops == 0) & (nbytes == 0)
        per_call = np.where(host_only, 0.0, np.maximum(per_call - overlap_ms, 0.0))
        est = np.where(modeled, 0.0, per_call)
    per_call = per_call + gap_ms
    total = per_call * count
    latency = float(total.sum())
    unmodeled_ms = float((est * count).sum())
    per_op = table.with_columns(
        pl.Series("pred_ms", pred),
        pl.Series("est_ms", np.where(modeled, np.nan, est)),
        pl.Series("modeled", modeled),
        pl.Series("total_ms", total),
    )
    kinds = (
        per_op.with_columns(
            pl.when(pl.col("modeled")).then(0.0).otherwise(pl.col("est_ms") * pl.col("count")).alias("_u")
        )
        .group_by("op_kind")
        .agg(
            pl.col("total_ms").sum().alias("ms"),
            pl.col("count").sum().alias("ops"),
            pl.col("_u").sum().alias("unmodeled_ms"),
        )
        .sort("ms", descending=True)
    )
    breakdown = {
        row["op_kind"]: {
            "ms": float(row["ms"]),
            "share": float(row["ms"] / latency) if latency > 0 else 0.0,
            "ops": float(row["ops"]),
            "unmodeled_ms": float(row["unmodeled_ms"]),
        }
        for row in kinds.iter_rows(named=True)
    }
    unmodeled_ops = sorted(set(per_op.filter(~pl.col("modeled"))["op"].to_list()))
    return ModelPrediction(
        latency_ms=latency,
        mode=mode,
        breakdown=breakdown,
        unmodeled_share=unmodeled_ms / latency if latency > 0 else 0.0,
        unmodeled_ops=unmodeled_ops,
        per_op=per_op,
    )


def fit_gap(predicted_ms: Sequence[float], calls: Sequence[float], measured_ms: Sequence[float]) -> float:
    """The per-operator-call launch gap (ms, >= 0) that closes sum-of-operators to end-to-end.

    Each calibration model ``j`` implies a gap ``(r_j - p_j) / n_j`` from its measured latency
    ``r_j``, its predicted operator sum ``p_j`` (gap 0) and its operator calls ``n_j`` (counts
    included); the answer is their median, clipped at 0. The median, not least squares: a model
    whose operators the surrogate over- or under-predicts (e.g. weights that stay in cache) is an
    outlier of the gap, not evidence about it. The gap is what eager frameworks spend between
    operators (dispatch, allocation, refilling caches after the previous op) beyond what the
    operators timed alone show.
    """
    p, n, r = (np.asarray(v, dtype=np.float64) for v in (predicted_ms, calls, measured_ms))
    if not (p.shape == n.shape == r.shape) or p.size == 0:
        raise ValueError(f"fit_gap needs equal, non-empty lengths; got {p.size}, {n.size}, {r.size}")
    if (
        not (np.isfinite(p).all() and np.isfinite(n).all() and np.isfinite(r).all())
        or (r <= 0).any()
        or (n <= 0).any()
    ):
        raise ValueError("fit_gap needs finite predictions, calls > 0 and measured latencies > 0")
    return max(0.0, float(np.median((r - p) / n)))


def launch_overlap_ms(ops_model: Any, device: Mapping[str, object]) -> float:
    """The ``overlap_ms`` of :func:`predict_model_latency` for ``device`` (a ``devices`` row).

    A GPU (``kind == "gpu"``) runs operators asynchronously: the operator model's empty-op time
    (``ops_model.empty_op_ms``, the training rows' median host-only op) is hidden per call. Any
    other device, or a model without that time, gets 0.
    """
    if device.get("kind") != "gpu":
        return 0.0
    value = float(getattr(ops_model, "empty_op_ms", float("nan")))
    return value if np.isfinite(value) and value > 0 else 0.0


def device_row(store: DatasetStore, device_id: str) -> dict[str, object]:
    """The ``devices`` row of ``device_id`` as a dict (UnknownDeviceError listing known ids)."""
    devices = store.read("devices")
    hit = devices.filter(pl.col("device_id") == device_id) if devices.height else devices
    if hit.height == 0:
        known = sorted(devices["device_id"].to_list()) if devices.height else []
        raise UnknownDeviceError(device_id, known)
    return hit.row(0, named=True)


def predict_model(
    model_source: Any,
    input_shape: Sequence[int] | Sequence[Sequence[int]] | None,
    device_id: str,
    mode: str = "inference",
    *,
    batch: int | None = None,
    seqlen: int | None = None,
    ops_model: Any | None = None,
    device: Mapping[str, object] | None = None,
    store: DatasetStore | None = None,
    gap_ms: float = 0.0,
    overlap_ms: float | None = None,
) -> ModelPrediction:
    """Predict the whole-model latency of ``model_source`` on ``device_id``.

    ``model_source``: an operator table (``pl.DataFrame``), an ONNX path or bytes,
    ``FILE.py:CALLABLE``, ``package.module:CALLABLE``, a config.json path or dict, or an
    ``nn.Module`` (:func:`hwsurrogate.datasets.frontends.load_op_table`). ``ops_model``: an
    ``OperatorLatencyModel`` (default: the registered ``hws-ops`` champion); ``device``: the
    device's ``devices`` row (default: read from ``store``). ``gap_ms`` and ``overlap_ms``: see
    :func:`predict_model_latency`; ``overlap_ms=None`` takes :func:`launch_overlap_ms` (the
    operator model's empty-op time on a GPU, 0 elsewhere).
    """
    from hwsurrogate.datasets.frontends import load_op_table
    from hwsurrogate.datasets.optable import op_table

    if isinstance(model_source, pl.DataFrame):
        table = op_table(model_source)
    else:
        table = load_op_table(model_source, input_shape, batch=batch, seqlen=seqlen, mode=mode)
    if device is None:
        from hwsurrogate.datasets.store import DatasetStore

        device = device_row(store or DatasetStore(), device_id)
    if ops_model is None:
        ops_model = _registered_ops_model()
    dev = dict(device)
    if overlap_ms is None:
        overlap_ms = launch_overlap_ms(ops_model, dev)
    return predict_model_latency(
        table, lambda t: ops_model.predict_ops(t, dev), mode=mode, gap_ms=gap_ms, overlap_ms=overlap_ms
    )


def _registered_ops_model() -> Any:
    from hwsurrogate.surrogates.registry.ops import load_ops_model

    return load_ops_model()
