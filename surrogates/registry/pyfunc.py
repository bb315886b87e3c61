"""The MLflow pyfunc models of the ``gemm``, ``fpga-*`` and ``latency`` tasks and how they are logged.

Each task's model is logged as an MLflow pyfunc: a pandas frame with the task's input columns
in, a pandas frame with its output columns out; the feature pipeline is inside the model.

- ``gemm`` and ``fpga-*``: :class:`FrameModel` wraps the task's own model
  (:class:`~hwsurrogate.surrogates.models.gemm.GemmPyfunc`,
  :class:`~hwsurrogate.surrogates.models.fpga.FpgaPyfunc`), whose ``predict_frame`` takes and
  returns polars frames; :func:`~.loading.native_model` finds it under ``.model`` and calls it
  without the pandas round trip.
- ``latency``: :class:`LatencyPyfunc` holds one fitted multi-device predictor per space
  (:class:`~hwsurrogate.surrogates.models.latency_trees.MultiDeviceLatencyTrees` or
  :class:`~hwsurrogate.surrogates.models.latency_gnn.MultiDeviceLatencyGNN`); both compute their
  features with :mod:`~hwsurrogate.surrogates.features.nas` inside ``predict``.

They are logged by :func:`~.artifact_model.log_artifact_model` (models-from-code, the task's
pyfunc pickled as an artifact and read back through an allow-list). A pickle stores classes by
their import path (this module, and the model classes in :mod:`hwsurrogate.surrogates.models`),
so moving one of them makes models logged before the move fail to load.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl

from hwsurrogate.surrogates.features.gemm import GEMM_QUERY_COLUMNS
from hwsurrogate.surrogates.models.fpga import FpgaPyfunc
from hwsurrogate.surrogates.models.gemm import GemmPyfunc
from hwsurrogate.surrogates.registry.artifact_model import log_artifact_model
from hwsurrogate.surrogates.registry.loading import latency_training_domain, predict_latency_frame


class FrameModel(mlflow.pyfunc.PythonModel):
    """MLflow wrapper of a model with ``predict_frame(polars) -> polars``: pandas in, pandas out."""

    def __init__(self, model: GemmPyfunc | FpgaPyfunc) -> None:
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return self.model.predict_frame(model_input).to_pandas()


_MLFLOW_TYPES = {pl.Int64: "long", pl.Int32: "integer", pl.Float64: "double", pl.Float32: "float",
                 pl.String: "string", pl.Boolean: "boolean"}  # fmt: skip


def frame_signature(inputs: pl.DataFrame, outputs: pl.DataFrame) -> Any:
    """The MLflow signature of a frame model, declared from the frames' polars types.

    Declared rather than inferred from pandas: ``infer_signature`` warns on every integer column
    (pandas integers cannot hold missing values), while our integer inputs are required and
    checked before any model sees them. A column with nulls in the example is optional.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    def schema(frame: pl.DataFrame) -> Schema:
        return Schema(
            [ColSpec(_MLFLOW_TYPES.get(s.dtype.base_type(), "string"), s.name, required=not s.has_nulls())
             for s in frame.iter_columns()]
        )  # fmt: skip

    return ModelSignature(inputs=schema(inputs), outputs=schema(outputs))


def _log_frame_model(model: GemmPyfunc | FpgaPyfunc, example: pl.DataFrame) -> Any:
    return log_artifact_model(
        FrameModel(model),
        signature=frame_signature(example, model.predict_frame(example)),
        input_example=example.to_pandas(),
    )


def log_gemm_model(model: GemmPyfunc, input_example: pl.DataFrame) -> Any:
    """Log the ``gemm`` model as an MLflow pyfunc with signature and input example; returns ModelInfo."""
    example = input_example.select([c for c in GEMM_QUERY_COLUMNS if c in input_example.columns]).head(5)
    return _log_frame_model(model, example)


def log_fpga_model(model: FpgaPyfunc, input_example: pl.DataFrame, input_cols: Sequence[str]) -> Any:
    """Log an ``fpga-*`` model as an MLflow pyfunc with signature and input example; returns ModelInfo."""
    return _log_frame_model(model, input_example.select(input_cols).head(5))


class SpacePredictor(Protocol):
    space: str

    def predict(self, arch_keys: list[str], device_ids: list[str]) -> np.ndarray: ...


def predictor_devices(model: Any) -> list[str]:
    return list(model.devices)


class LatencyPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc: a frame with ``device_id``, ``space``, ``arch_key`` -> frame with ``latency_ms``."""

    def __init__(self, models: Mapping[str, SpacePredictor], kind: str) -> None:
        self.models = dict(models)
        self.kind = kind

    @property
    def devices(self) -> dict[str, list[str]]:
        """Devices each space's model answers for."""
        return {space: predictor_devices(m) for space, m in self.models.items()}

    @property
    def training_domain(self) -> dict[str, Any]:
        """Device and space: the devices each space's model was fitted on (other queries are refused)."""
        return latency_training_domain(self.devices)

    def predict_frame(self, queries: pd.DataFrame) -> pd.DataFrame:
        return predict_latency_frame(self.models, queries)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return self.predict_frame(model_input)


def log_latency_model(model: LatencyPyfunc, example: pd.DataFrame) -> Any:
    """Log the ``latency`` model as an MLflow pyfunc with signature and input example; returns ModelInfo."""
    signature = frame_signature(pl.from_pandas(example), pl.from_pandas(model.predict_frame(example)))
    return log_artifact_model(model, signature=signature, input_example=example)
