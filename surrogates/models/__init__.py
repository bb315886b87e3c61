"""The surrogate models, one module per model family; each holds the model only.

MLflow logging lives in :mod:`hwsurrogate.surrogates.registry.pyfunc`, training (data, splits,
runs) in :mod:`hwsurrogate.surrogates.training`.

- :mod:`.gemm`: GEMM runtime/power trees (:class:`GemmRegressor`) and the task model
  :class:`GemmPyfunc` (runtime + power -> energy);
- :mod:`.fpga`: hls4ml / HLSyn trees (:class:`FpgaRegressor`), the power ensemble
  (:class:`LogTreeEnsemble`) and the task model :class:`FpgaPyfunc`;
- :mod:`.tree_serving`: fitted scikit-learn trees served through treelite for small batches and
  scikit-learn for large ones (:class:`ServesTrees`, :func:`predict_trees`), and as treelite
  checkpoints without scikit-learn (:class:`FrozenTrees`);
- :mod:`.gemm_serving`, :mod:`.fpga_serving`, :mod:`.latency_serving`: the predict-time code of
  the GEMM, FPGA and latency tree models, free of scikit-learn, shared by the estimators and their
  frozen forms; :mod:`.frozen` (:func:`freeze`, :class:`FrozenServed`): the served copy a one-off
  ``hws predict`` unpickles;
- :mod:`.latency_trees`, :mod:`.latency_gnn` (architecture latency) and :mod:`.hlsyn_gnn`
  (HLSyn program-graph GNN);
- :mod:`.ops`: per-call operator latency (:class:`OperatorLatencyModel`) for whole-model prediction.

Import the sub-module you need: nothing is imported here, so a module that needs one model
family does not load the libraries of the others (torch, scikit-learn).
"""

__all__ = [
    "fpga",
    "fpga_serving",
    "frozen",
    "gemm",
    "gemm_serving",
    "hlsyn_gnn",
    "latency_gnn",
    "latency_serving",
    "latency_trees",
    "ops",
    "tree_serving",
]
