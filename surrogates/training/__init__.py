"""Training: data loading, splits, metrics and the ``train_*`` functions behind ``hws train``.

Each ``train_*_model`` function checks its data (raising before any MLflow run), splits it on a
fixed held-out set (:mod:`.splits`), fits, logs metrics (:mod:`.metrics`) and the model to MLflow,
and registers it; the commands in :mod:`hwsurrogate.cli.train` only parse options and print.

:mod:`.latency` and :mod:`.latency_data` (architecture latency) need torch, so they are imported
as sub-modules, not re-exported here.
"""

from __future__ import annotations

from hwsurrogate.surrogates.training.fpga import (
    FpgaTrainConfig,
    FpgaTrainResult,
    hlsyn_frame,
    hlsyn_graph_rows,
    hlsyn_protocol_rows,
    regression_rows,
    train_hls4ml_model,
    train_hlsyn_model,
)
from hwsurrogate.surrogates.training.gemm import GemmTrainConfig, GemmTrainResult, train_gemm_model
from hwsurrogate.surrogates.training.metrics import ape, mape, r2, regression_metrics, rmse, smape, spearman
from hwsurrogate.surrogates.training.noise_ceiling import NOISE_R2, CeilingResult, nb201_noise_ceiling
from hwsurrogate.surrogates.training.splits import (
    HELP_TEST_SIZE,
    HELP_TRAIN_POOL,
    HLSYN_TEST_KERNELS,
    Split,
    device_split,
    group_split,
    help_split,
    latency_test_mask,
    random_split,
    trim_10_90,
)

__all__ = [
    # fpga
    "FpgaTrainConfig",
    "FpgaTrainResult",
    "hlsyn_frame",
    "hlsyn_graph_rows",
    "hlsyn_protocol_rows",
    "regression_rows",
    "train_hls4ml_model",
    "train_hlsyn_model",
    # gemm
    "GemmTrainConfig",
    "GemmTrainResult",
    "train_gemm_model",
    # metrics
    "ape",
    "mape",
    "r2",
    "regression_metrics",
    "rmse",
    "smape",
    "spearman",
    # noise ceiling
    "NOISE_R2",
    "CeilingResult",
    "nb201_noise_ceiling",
    # splits
    "HELP_TEST_SIZE",
    "HELP_TRAIN_POOL",
    "HLSYN_TEST_KERNELS",
    "Split",
    "device_split",
    "group_split",
    "help_split",
    "latency_test_mask",
    "random_split",
    "trim_10_90",
]
