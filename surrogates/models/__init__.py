"""The surrogate models, one module per model family; each holds the model only.

MLflow logging lives in :mod:`hwsurrogate.surrogates.registry.pyfunc`, training (data, splits,
runs) in :mod:`hwsurrogate.surrogates.training`.

- :mod:`.gemm`: GEMM runtime/power trees (:class:`GemmRegressor`) and the task model
  :class:`GemmPyfunc` (runtime + power -> energy);
- :mod:`.fpga`: hls4ml / HLSyn trees (:class:`FpgaRegressor`), the power ensemble
  (:class:`LogTreeEnsemble`) and the task model :class:`FpgaPyfunc`;
- :mod:`.tree_serving`: fitted scikit-learn trees served through treelite for small batches and
  scikit-learn for large ones (:class:`ServesTrees`, :func:`predict_trees`);
- :mod:`.latency_trees`, :mod:`.latency_gnn` (architecture latency) and :mod:`.hlsyn_gnn`
  (HLSyn program-graph GNN) need torch, so they are imported as sub-modules, not re-exported here.
"""

from __future__ import annotations

from hwsurrogate.surrogates.models.fpga import (
    HLS4ML_TARGETS,
    HLSYN_TARGETS,
    HLSYN_TREE_PARAMS,
    U200_CAPACITY,
    FpgaPyfunc,
    FpgaRegressor,
    LogTreeEnsemble,
    fit_validity_classifier,
    hlsyn_reported_targets,
    hlsyn_targets,
)
from hwsurrogate.surrogates.models.gemm import GemmPyfunc, GemmRegressor, as_polars, power_rows
from hwsurrogate.surrogates.models.tree_serving import SMALL_BATCH_ROWS, ServesTrees, predict_trees

__all__ = [
    "HLS4ML_TARGETS",
    "HLSYN_TARGETS",
    "HLSYN_TREE_PARAMS",
    "SMALL_BATCH_ROWS",
    "U200_CAPACITY",
    "FpgaPyfunc",
    "FpgaRegressor",
    "GemmPyfunc",
    "GemmRegressor",
    "LogTreeEnsemble",
    "ServesTrees",
    "as_polars",
    "fit_validity_classifier",
    "hlsyn_reported_targets",
    "hlsyn_targets",
    "power_rows",
    "predict_trees",
]
