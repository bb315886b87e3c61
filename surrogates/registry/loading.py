"""Load registered surrogates as :class:`~.api.Predictor` objects (polars in, polars out).

Every task's model is logged as an MLflow pyfunc whose ``predict`` takes a pandas frame with
the task's input columns and returns a frame with its output columns; the feature pipeline is
inside the model, so loading it is all a caller needs.

:func:`load_predictor` loads through MLflow (seconds: MLflow's import and pyfunc loading).
:func:`.cache.load_served` is the short-command path: the same predictor, unpickled from a local
copy keyed by name, version and run id, and MLflow is not even imported while the local pointer
for the alias is known to be current (see :func:`.cache.tracking_stamp`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.errors import HwSurrogateError
from hwsurrogate.surrogates.api import INPUTS, MODEL_NAMES, NOTE_COLUMN, OUTPUTS
from hwsurrogate.surrogates.models.latency_serving import latency_frame, latency_ms, latency_training_domain
from hwsurrogate.surrogates.registry.tracking import CHAMPION, configure_mlflow

__all__ = [
    "LatencyModels",
    "LoadedPredictor",
    "ModelNotFoundError",
    "latency_training_domain",
    "load_predictor",
    "model_uri",
    "native_model",
    "predict_latency_frame",
    "registered_version",
    "resolve_version",
]


class ModelNotFoundError(HwSurrogateError, LookupError):
    """No registered model (or alias / version) for a task."""


def native_model(model: Any) -> Any:
    """The project's own model inside a loaded pyfunc when it predicts polars frames, else None.

    Our GEMM and FPGA pyfuncs wrap an object with ``predict_frame(polars) -> polars`` that
    validates its input itself; calling it directly skips the pandas round trip and MLflow's
    per-call schema enforcement, which cost more than the trees for a single query.
    """
    from hwsurrogate.surrogates.registry.artifact_model import project_model

    try:
        inner = getattr(project_model(model), "model", None)
    except Exception:  # not a PythonModel flavour (e.g. mlflow.sklearn)
        return None
    return inner if callable(getattr(inner, "predict_frame", None)) else None


@dataclass
class LoadedPredictor:
    """A registered pyfunc model wrapped in the :class:`~.api.Predictor` contract."""

    task: str
    name: str
    version: str
    model: Any
    metrics: dict[str, float] = field(default_factory=dict)
    native: Any = None  #: see :func:`native_model`

    def predict(self, queries: pl.DataFrame) -> pl.DataFrame:
        names = queries.columns  # a new list per call (~0.5 us): read once
        missing = [c for c in INPUTS[self.task] if c not in names]
        if missing:
            raise ValueError(f"{self.task} queries miss column(s) {missing}")
        # a select costs tens of microseconds, more than the trees of a one-row query: only when needed
        inputs = queries if names == list(INPUTS[self.task]) else queries.select(INPUTS[self.task])
        if self.native is not None:
            out: Any = self.native.predict_frame(inputs)
        else:
            out = self.model.predict(inputs.to_pandas())
        if isinstance(out, pl.DataFrame):
            frame = out
        elif isinstance(out, np.ndarray):  # plain regressors: columns are the outputs in order
            arr = out.reshape(len(out), -1)
            frame = pl.DataFrame({c: arr[:, i] for i, c in enumerate(OUTPUTS[self.task][: arr.shape[1]])})
        else:
            frame = pl.from_pandas(out)
        out_names = frame.columns
        for col in OUTPUTS[self.task]:
            if col not in out_names:
                frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(col))
        out_names = frame.columns
        notes = [NOTE_COLUMN] if NOTE_COLUMN in out_names else []  # per-row notes, for the dispatch
        columns = [*OUTPUTS[self.task], *notes]
        return frame if out_names == columns else frame.select(columns)


def model_uri(task: str, *, alias: str = CHAMPION, version: str | int | None = None) -> str:
    name = MODEL_NAMES[task]
    return f"models:/{name}/{version}" if version is not None else f"models:/{name}@{alias}"


def resolve_version(task: str, *, alias: str = CHAMPION, version: str | int | None = None) -> Any:
    """MLflow's ``ModelVersion`` for ``task``'s alias (default ``champion``) or pinned version."""
    if task not in MODEL_NAMES:
        raise ModelNotFoundError(f"unknown task {task!r}; expected one of {sorted(MODEL_NAMES)}")
    return registered_version(MODEL_NAMES[task], alias=alias, version=version, train=f"hws train {task}")


def registered_version(name: str, *, alias: str = CHAMPION, version: str | int | None = None, train: str) -> Any:
    """MLflow's ``ModelVersion`` of registered model ``name`` at ``alias`` or a pinned ``version``;
    :class:`ModelNotFoundError` naming the command (``train``) that makes one."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure_mlflow()
    client = MlflowClient()
    try:
        return (
            client.get_model_version(name, str(version))
            if version is not None
            else client.get_model_version_by_alias(name, alias)
        )
    except MlflowException:
        what = f"version {version}" if version is not None else f"alias {alias!r}"
        raise ModelNotFoundError(f"no registered model {name!r} with {what}; run `{train}` first") from None


def load_predictor(
    task: str,
    *,
    alias: str = CHAMPION,
    version: str | int | None = None,
    check_requirements: bool = True,
) -> LoadedPredictor:
    """Load ``task``'s model by alias (default ``champion``) or pinned version.

    ``check_requirements=False`` skips MLflow's comparison of the model's pip requirements with
    the installed packages (about 0.8 s of package metadata scanning per process); short-lived
    commands that load a model this project just trained use it.
    """
    import mlflow
    from mlflow import MlflowClient

    mv = resolve_version(task, alias=alias, version=version)
    name = MODEL_NAMES[task]
    client = MlflowClient()
    model = mlflow.pyfunc.load_model(f"models:/{name}/{mv.version}", suppress_warnings=not check_requirements)
    metrics: dict[str, float] = {}
    if mv.run_id:
        metrics = dict(client.get_run(mv.run_id).data.metrics)
    return LoadedPredictor(
        task=task,
        name=name,
        version=str(mv.version),
        model=model,
        metrics=metrics,
        native=native_model(model),
    )


# --------------------------------------------------------------------------- the local copy


def predict_latency_frame(models: Mapping[str, Any], queries: Any) -> Any:
    """``latency_ms`` (pandas) for a pandas frame of device_id, space, arch_key, per space's model.

    The latency pyfunc's ``predict_frame``; :func:`~..models.latency_serving.latency_ms` answers.
    """
    import pandas as pd

    return pd.DataFrame({"latency_ms": latency_ms(models, pl.from_pandas(queries))})


@dataclass
class LatencyModels:
    """The latency model's per-space predictors without the MLflow wrapper (polars in, polars out)."""

    models: dict[str, Any]
    kind: str = "tree"

    @property
    def devices(self) -> dict[str, list[str]]:
        return {space: list(m.devices) for space, m in self.models.items()}

    @property
    def training_domain(self) -> dict[str, Any]:
        return latency_training_domain(self.devices)

    def predict_frame(self, queries: pl.DataFrame) -> pl.DataFrame:
        return latency_frame(self.models, queries)
