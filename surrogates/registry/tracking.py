"""MLflow plumbing shared by every surrogate: runs, datasets, logged metrics, plots, registry aliases.

Default tracking is the embedded SQLite store ``sqlite:///mlflow.db`` with artifacts under
``./mlruns`` (``HWSURROGATE_MLFLOW_ARTIFACTS`` overrides the artifact folder for new
experiments); any ``MLFLOW_TRACKING_URI`` (e.g. a tracking server) works too.

Training code follows one order so that bad input never leaves a half-created run:
``check_training_frame`` (raises before anything is logged) -> ``start_run`` -> fit ->
``log_regression_report`` -> log the model -> ``register_and_promote``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.errors import TrainingDataError
from hwsurrogate.settings import get_settings

CHAMPION = "champion"


def configure_mlflow() -> str:
    """Point MLflow at the configured tracking URI and return it."""
    import mlflow

    uri = get_settings(fresh=True).tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _experiment_id(name: str) -> str:
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifacts = os.environ.get("HWSURROGATE_MLFLOW_ARTIFACTS")
    location = Path(artifacts).resolve().as_uri() if artifacts else None
    return mlflow.create_experiment(name, artifact_location=location)


@contextlib.contextmanager
def start_run(experiment: str, run_name: str | None = None, **tags: str) -> Iterator[Any]:
    """``mlflow.start_run`` in experiment ``experiment`` (created on first use)."""
    import mlflow

    configure_mlflow()
    with mlflow.start_run(
        experiment_id=_experiment_id(experiment), run_name=run_name, tags=tags or None
    ) as run:
        yield run


def check_training_frame(
    frame: pl.DataFrame, targets: Sequence[str], *, what: str, min_rows: int = 2, required: Sequence[str] = ()
) -> None:
    """Raise :class:`TrainingDataError` naming the problem before any MLflow run is created."""
    if frame.height < min_rows:
        raise TrainingDataError(f"{what}: {frame.height} training rows; need at least {min_rows}")
    missing = [c for c in (*targets, *required) if c not in frame.columns]
    if missing:
        raise TrainingDataError(f"{what}: missing column(s) {missing}")
    for t in targets:
        s = frame[t]
        if s.dtype.is_numeric():
            bad = s.is_null() | (~s.cast(pl.Float64).is_finite())
            if bad.all():
                raise TrainingDataError(f"{what}: target {t!r} has no finite values")


def parity_figure(y_true: np.ndarray, y_pred: np.ndarray, *, label: str, log: bool = True) -> Any:
    """Parity (predicted vs measured) and relative-residual plots side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.5))
    ax1.scatter(y_true, y_pred, s=4, alpha=0.4)
    lo = float(np.nanmin([y_true.min(), y_pred.min()]))
    hi = float(np.nanmax([y_true.max(), y_pred.max()]))
    ax1.plot([lo, hi], [lo, hi], "k--", lw=1)
    if log and lo > 0:
        ax1.set_xscale("log")
        ax1.set_yscale("log")
    ax1.set_xlabel(f"measured {label}")
    ax1.set_ylabel(f"predicted {label}")
    ax1.set_title(f"parity: {label}")
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(y_true != 0, (y_pred - y_true) / y_true * 100, np.nan)
    ax2.scatter(y_true, rel, s=4, alpha=0.4)
    ax2.axhline(0, color="k", lw=1)
    if log and lo > 0:
        ax2.set_xscale("log")
    ax2.set_xlabel(f"measured {label}")
    ax2.set_ylabel("relative error %")
    ax2.set_title("residuals")
    fig.tight_layout()
    return fig


def log_regression_report(
    y_true: np.ndarray, y_pred: np.ndarray, *, split: str, target: str, log_scale: bool = True
) -> dict[str, float]:
    """Log ``<split>_<target>_<metric>`` metrics and a parity/residual PNG; return the metrics."""
    import matplotlib.pyplot as plt
    import mlflow

    from hwsurrogate.surrogates.training.metrics import regression_metrics

    metrics = regression_metrics(y_true, y_pred)
    mlflow.log_metrics({f"{split}_{target}_{k}": v for k, v in metrics.items() if np.isfinite(v)})
    fig = parity_figure(y_true, y_pred, label=target, log=log_scale)
    mlflow.log_figure(fig, f"plots/parity_{split}_{target}.png")
    plt.close(fig)
    return metrics


def log_training_dataset(
    frame: pl.DataFrame, *, name: str, source: str, targets: str | None = None, context: str = "training"
) -> None:
    """Log the training data as an MLflow dataset (digest + source) on the active run."""
    import mlflow

    ds = mlflow.data.from_polars(frame, source=source, name=name, targets=targets)
    mlflow.log_input(ds, context=context)


def register_and_promote(
    model_uri: str,
    model_name: str,
    *,
    evaluate: Callable[[str], float],
    higher_is_better: bool = False,
    metric_name: str = "benchmark_metric",
) -> tuple[str, bool]:
    """Register ``model_uri`` as a new version; move alias ``champion`` only if it wins.

    ``evaluate(model_uri) -> float`` scores a model on ONE fixed test set; it is called for the
    new version and for the current champion, so both are compared on the same benchmark.
    Returns (new version, promoted?).
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure_mlflow()
    client = MlflowClient()
    mv = mlflow.register_model(model_uri, model_name)
    new_score = float(evaluate(f"models:/{model_name}/{mv.version}"))
    client.set_model_version_tag(model_name, mv.version, metric_name, f"{new_score:.6g}")
    try:
        champ = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        champ = None
    promote = champ is None
    if champ is not None:
        champ_score = float(evaluate(f"models:/{model_name}/{champ.version}"))
        promote = new_score > champ_score if higher_is_better else new_score < champ_score
    if promote:
        client.set_registered_model_alias(model_name, CHAMPION, mv.version)
    return str(mv.version), promote


def log_data_versions(versions: dict[str, int], *, store: str | os.PathLike[str] | None = None) -> None:
    """Record the store table versions a run read (param ``data_versions``: what ``--data-version`` takes)."""
    import mlflow

    from hwsurrogate.datasets.store import format_versions

    if versions:
        mlflow.log_param("data_versions", format_versions(versions))
    if store is not None:
        mlflow.set_tag("data_store", str(store))
