"""The registered operator model (``hws-ops``): its MLflow pyfunc wrapper and its loader.

:class:`OpsPyfunc` wraps an :class:`~hwsurrogate.surrogates.models.ops.OperatorLatencyModel`. As a
pyfunc it takes a pandas frame of operator-table rows plus, per row, the device descriptor
columns (``device_id``, ``peak_fp32_gflops``, ``mem_bw_gbs``, ``cores``, ``l2_mb``, ``clock_mhz``)
and returns ``pred_ms`` (one call; NaN where the model does not cover the row). Python callers
use :func:`load_ops_model`, which returns the fitted model itself.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl

from hwsurrogate.datasets.optable import OP_TABLE_SCHEMA
from hwsurrogate.surrogates.features.gemm import DEVICE_DESCRIPTORS
from hwsurrogate.surrogates.features.ops import POWER_DESCRIPTOR
from hwsurrogate.surrogates.models.ops import OperatorLatencyModel
from hwsurrogate.surrogates.registry.loading import ModelNotFoundError
from hwsurrogate.surrogates.registry.tracking import CHAMPION

__all__ = ["OPS_MODEL_NAME", "OpsPyfunc", "load_ops_model", "log_ops_model", "predict_ops_frame"]

OPS_MODEL_NAME = "hws-ops"


#: integer columns of the operator table: MLflow's signature declares them as doubles (they are
#: null by op kind, and pandas holds a missing integer only as a float), read back as integers here
_INT_COLUMNS = tuple(c for c, t in OP_TABLE_SCHEMA.items() if t == pl.Int64)


def _integral(frame: pl.DataFrame, col: str) -> pl.Expr:
    """``col`` as Int64; a float column must hold whole numbers (an error naming it otherwise, never truncated)."""
    series = frame[col]
    if series.dtype.is_float():
        values = series.drop_nulls()
        bad = values.filter(~values.is_finite() | (values != values.round(0)))
        if bad.len():
            raise ValueError(f"operator column {col!r} must hold whole numbers, got {bad[0]}")
    return pl.col(col).cast(pl.Int64)


def predict_ops_frame(model: OperatorLatencyModel, frame: pl.DataFrame) -> np.ndarray:
    """Per-call ms of operator rows that carry their device's descriptors (one device at a time)."""
    if "device_id" not in frame.columns:
        raise ValueError("operator rows need a 'device_id' column with the device's descriptors beside it")
    out = np.full(frame.height, np.nan)
    idx = frame.with_row_index("__row")
    idx = idx.with_columns(_integral(idx, c) for c in _INT_COLUMNS if c in idx.columns)
    for (dev,), part in idx.group_by(["device_id"], maintain_order=True):
        device = {
            "device_id": dev,
            **{c: part[c][0] for c in (*DEVICE_DESCRIPTORS, POWER_DESCRIPTOR) if c in part.columns},
        }
        table = part.select([c for c in OP_TABLE_SCHEMA if c in part.columns])
        for col, dtype in OP_TABLE_SCHEMA.items():
            if col not in table.columns:
                table = table.with_columns(pl.lit(None, dtype).alias(col))
        table = table.with_columns(pl.col("name").fill_null(pl.col("op")), pl.col("count").fill_null(1))
        out[part["__row"].to_numpy()] = model.predict_ops(table.select(list(OP_TABLE_SCHEMA)), device)
    return out


class OpsPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow wrapper: pandas operator rows + descriptor columns in, ``pred_ms`` out."""

    def __init__(self, model: OperatorLatencyModel) -> None:
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        pred = predict_ops_frame(self.model, pl.from_pandas(model_input))
        return pd.DataFrame({"pred_ms": pred})


def log_ops_model(model: OperatorLatencyModel, example: pl.DataFrame) -> Any:
    """Log the operator model as an MLflow pyfunc with signature and input example; returns ModelInfo.

    The integer operator columns (shapes, ``count``) are declared as optional doubles, as MLflow
    advises for integer columns that may be missing: they are null by op kind, and pandas holds a
    missing integer only as a float. :func:`predict_ops_frame` reads them back as integers (a
    fraction is an error naming the column). Columns with no null in the example stay required."""
    from hwsurrogate.surrogates.registry.artifact_model import log_artifact_model
    from hwsurrogate.surrogates.registry.pyfunc import frame_signature

    example = example.with_columns(pl.col(c).cast(pl.Float64) for c in _INT_COLUMNS if c in example.columns)
    out = pl.DataFrame({"pred_ms": predict_ops_frame(model, example)})
    return log_artifact_model(
        OpsPyfunc(model), signature=frame_signature(example, out), input_example=example.to_pandas()
    )


def load_ops_model(*, alias: str = CHAMPION, version: str | int | None = None) -> OperatorLatencyModel:
    """The registered ``hws-ops`` model (alias ``champion`` unless a version is pinned)."""
    from hwsurrogate.surrogates.registry.loading import registered_version

    mv = registered_version(OPS_MODEL_NAME, alias=alias, version=version, train="hws train ops")
    loaded = mlflow.pyfunc.load_model(f"models:/{OPS_MODEL_NAME}/{mv.version}", suppress_warnings=True)
    from hwsurrogate.surrogates.registry.artifact_model import project_model

    model = getattr(project_model(loaded), "model", None)
    if not isinstance(model, OperatorLatencyModel):
        raise ModelNotFoundError(f"{OPS_MODEL_NAME} v{mv.version} is not an OperatorLatencyModel")
    return model
