"""Training: data loading, splits, metrics and the ``train_*`` functions behind ``hws train``.

Each ``train_*_model`` function checks its data (raising before any MLflow run), splits it on a
fixed held-out set (:mod:`.splits`), fits, logs metrics (:mod:`.metrics`) and the model to MLflow,
and registers it; the commands in :mod:`hwsurrogate.cli.train` only parse options and print.

Import the sub-module you need: nothing is imported here, so reading a metric or a split does
not load scikit-learn, torch or MLflow.
"""

__all__ = ["fewshot", "fpga", "gemm", "latency", "latency_data", "metrics", "noise_ceiling", "ops", "splits", "tuning"]
