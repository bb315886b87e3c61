"""MLflow plumbing: metrics, pre-flight checks and champion promotion on the same benchmark."""

from __future__ import annotations

import uuid

import mlflow
import numpy as np
import polars as pl
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import LinearRegression

from hwsurrogate.errors import TrainingDataError
from hwsurrogate.surrogates.registry.tracking import (
    CHAMPION,
    check_training_frame,
    register_and_promote,
    start_run,
)
from hwsurrogate.surrogates.training.metrics import regression_metrics


def test_regression_metrics_match_hand_computed_values() -> None:
    m = regression_metrics(np.array([1.0, 2.0, 4.0]), np.array([1.05, 2.0, 3.0]))
    assert m["mape"] == pytest.approx((5 + 0 + 25) / 3)
    assert m["median_ape"] == pytest.approx(5)
    assert m["within_10pct"] == pytest.approx(2 / 3)
    assert m["rmse"] == pytest.approx(np.sqrt((0.0025 + 0 + 1) / 3))


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pl.DataFrame({"x": [], "y": []}), "0 training rows"),
        (pl.DataFrame({"x": [1, 2], "y": [float("nan"), None]}), "no finite values"),
        (pl.DataFrame({"x": [1, 2]}), r"missing column\(s\) \['y'\]"),
    ],
)
def test_bad_training_data_raises_before_any_run(frame: pl.DataFrame, message: str) -> None:
    with pytest.raises(TrainingDataError, match=message):
        check_training_frame(frame, ["y"], what="toy")


def test_champion_moves_only_when_the_new_version_wins() -> None:
    X = np.arange(20, dtype=float).reshape(-1, 1)
    y = 3 * X[:, 0] + 1
    name = f"toy-{uuid.uuid4().hex[:8]}"
    scores = {}

    def evaluate(uri: str) -> float:
        return scores[mlflow.pyfunc.load_model(uri).metadata.run_id]

    versions = []
    for score in (0.5, 0.9, 0.1):  # lower is better: v1 promoted, v2 not, v3 promoted
        with start_run("test-tracking") as run:
            info = mlflow.sklearn.log_model(LinearRegression().fit(X, y), name="model")
        scores[run.info.run_id] = score
        versions.append(register_and_promote(info.model_uri, name, evaluate=evaluate))
    assert [p for _, p in versions] == [True, False, True]
    assert str(MlflowClient().get_model_version_by_alias(name, CHAMPION).version) == versions[2][0]
