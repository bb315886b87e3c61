"""Load registered surrogates as :class:`~.api.Predictor` objects (polars in, polars out).

Every task's model is logged as an MLflow pyfunc whose ``predict`` takes a pandas frame with
the task's input columns and returns a frame with its output columns; the feature pipeline is
inside the model, so loading it is all a caller needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.errors import HwSurrogateError
from hwsurrogate.surrogates.api import INPUTS, MODEL_NAMES, NOTE_COLUMN, OUTPUTS
from hwsurrogate.surrogates.registry.tracking import CHAMPION, configure_mlflow


class ModelNotFoundError(HwSurrogateError, LookupError):
    """No registered model (or alias / version) for a task."""


def native_model(model: Any) -> Any:
    """The project's own model inside a loaded pyfunc when it predicts polars frames, else None.

    Our GEMM and FPGA pyfuncs wrap an object with ``predict_frame(polars) -> polars`` that
    validates its input itself; calling it directly skips the pandas round trip and MLflow's
    per-call schema enforcement, which cost more than the trees for a single query.
    """
    try:
        inner = getattr(model.unwrap_python_model(), "model", None)
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
        missing = [c for c in INPUTS[self.task] if c not in queries.columns]
        if missing:
            raise ValueError(f"{self.task} queries miss column(s) {missing}")
        if self.native is not None:
            out: Any = self.native.predict_frame(queries.select(INPUTS[self.task]))
        else:
            out = self.model.predict(queries.select(INPUTS[self.task]).to_pandas())
        if isinstance(out, pl.DataFrame):
            frame = out
        elif isinstance(out, np.ndarray):  # plain regressors: columns are the outputs in order
            arr = out.reshape(len(out), -1)
            frame = pl.DataFrame({c: arr[:, i] for i, c in enumerate(OUTPUTS[self.task][: arr.shape[1]])})
        else:
            frame = pl.from_pandas(out)
        for col in OUTPUTS[self.task]:
            if col not in frame.columns:
                frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(col))
        notes = [NOTE_COLUMN] if NOTE_COLUMN in frame.columns else []  # per-row notes, for the dispatch
        return frame.select(*OUTPUTS[self.task], *notes)


def model_uri(task: str, *, alias: str = CHAMPION, version: str | int | None = None) -> str:
    name = MODEL_NAMES[task]
    return f"models:/{name}/{version}" if version is not None else f"models:/{name}@{alias}"


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
    from mlflow.exceptions import MlflowException

    if task not in MODEL_NAMES:
        raise ModelNotFoundError(f"unknown task {task!r}; expected one of {sorted(MODEL_NAMES)}")
    configure_mlflow()
    name = MODEL_NAMES[task]
    client = MlflowClient()
    try:
        mv = (
            client.get_model_version(name, str(version))
            if version is not None
            else client.get_model_version_by_alias(name, alias)
        )
    except MlflowException:
        what = f"version {version}" if version is not None else f"alias {alias!r}"
        raise ModelNotFoundError(
            f"no registered model {name!r} with {what}; run `hws train {task}` first"
        ) from None
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
