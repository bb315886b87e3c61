"""A tiny but real GEMM model (sklearn Pipeline) logged to MLflow and registered as ``hws-gemm``.

Used by the end-to-end test and by ``benchmarks/service_load.py`` when no gemm model is
registered, so the service's real loading path (registry alias -> pyfunc -> Predictor) runs.
"""

from __future__ import annotations

import numpy as np
import polars as pl

#: Types in the pipeline that skops must be told to trust (we built the file ourselves).
TRUSTED_TYPES = ["sklearn.tree._tree.Tree", "numpy.log2"]

GEMM_INPUTS = ["device_id", "op", "m", "n", "k", "batch", "dtype", "layout"]


def synthetic_gemm_frame(n_rows: int = 400, seed: int = 0) -> pl.DataFrame:
    """GEMM shapes with a roofline-like runtime (two devices), power and energy."""
    rng = np.random.default_rng(seed)
    m, n, k = (2 ** rng.integers(4, 13, n_rows) for _ in range(3))
    device = rng.choice(["test/fast", "test/slow"], n_rows)
    speed = np.where(device == "test/fast", 2e12, 5e11)
    runtime_ms = (2.0 * m * n * k / speed) * 1e3 + 0.01
    power_w = np.where(device == "test/fast", 200.0, 80.0) + rng.normal(0, 1, n_rows)
    return pl.DataFrame(
        {
            "device_id": device,
            "op": "gemm",
            "m": m,
            "n": n,
            "k": k,
            "batch": 1,
            "dtype": "fp32",
            "layout": "nn",
            "runtime_ms": runtime_ms,
            "power_w": power_w,
            "energy_j": power_w * runtime_ms / 1e3,
        }
    )


def fit_gemm_pipeline(frame: pl.DataFrame, targets: list[str], *, n_estimators: int = 20, seed: int = 0):  # noqa: ANN201
    """One sklearn Pipeline (encoding + log2 dims + random forest), fitted on ``frame``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    features = ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["device_id", "op", "dtype"]),
            ("dims", FunctionTransformer(np.log2), ["m", "n", "k", "batch"]),
        ]
    )
    model = Pipeline(
        [
            ("features", features),
            ("forest", RandomForestRegressor(n_estimators=n_estimators, max_depth=10, random_state=seed)),
        ]
    )
    y = frame.select(targets).to_numpy()
    model.fit(frame.select(GEMM_INPUTS).to_pandas(), y if len(targets) > 1 else y.ravel())
    return model


def register_gemm_pipeline(model, *, experiment: str = "hws-gemm-tiny") -> str:  # noqa: ANN001
    """Log ``model`` with mlflow.sklearn, register it as ``hws-gemm`` and make it champion; returns version."""
    import mlflow

    from hwsurrogate.surrogates.api import MODEL_NAMES
    from hwsurrogate.surrogates.registry.tracking import register_and_promote, start_run

    with start_run(experiment, run_name="tiny-gemm"):
        mlflow.log_metric("test_runtime_ms_mape", 1.0)
        info = mlflow.sklearn.log_model(
            model, name="model", skops_trusted_types=TRUSTED_TYPES, pip_requirements=["scikit-learn", "skops"]
        )
    version, _ = register_and_promote(
        info.model_uri, MODEL_NAMES["gemm"], evaluate=lambda uri, keys: 0.0, holdout_keys=[], scope={},
        description="tiny test pipeline",
    )  # fmt: skip
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(MODEL_NAMES["gemm"], "champion", version)
    return version
