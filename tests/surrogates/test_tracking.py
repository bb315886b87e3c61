"""MLflow plumbing: metrics, pre-flight checks and champion promotion on the same benchmark."""

from __future__ import annotations

import json
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
    log_training_dataset,
    register_and_promote,
    scope_alias,
    scope_covers,
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


def _toy_model_uri() -> tuple[str, str]:
    X = np.arange(20, dtype=float).reshape(-1, 1)
    with start_run("test-tracking") as run:
        info = mlflow.sklearn.log_model(LinearRegression().fit(X, 3 * X[:, 0] + 1), name="model",
                                        pip_requirements=["scikit-learn"])  # inferring them costs ~20 s
    return info.model_uri, run.info.run_id


def test_champion_moves_only_when_the_new_version_wins() -> None:
    name = f"toy-{uuid.uuid4().hex[:8]}"
    scores = {}

    def evaluate(uri: str, keys: frozenset[str] | None) -> float:
        return scores[mlflow.pyfunc.load_model(uri).metadata.run_id]

    versions = []
    for score in (0.5, 0.9, 0.1):  # lower is better: v1 promoted, v2 not, v3 promoted
        uri, run_id = _toy_model_uri()
        scores[run_id] = score
        versions.append(
            register_and_promote(uri, name, evaluate=evaluate, holdout_keys=["a", "b"], scope={"devices": ["d1"]},
                                 description=f"toy {score}")
        )  # fmt: skip
    assert [p for _, p in versions] == [True, False, True]
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == versions[2][0]
    v3 = client.get_model_version(name, versions[2][0])
    assert v3.description == "toy 0.1"
    record = json.loads(v3.tags["promotion"])
    assert record["decision"] == "promoted" and record["champion"]["version"] == versions[0][0]
    assert record["challenger"]["score"] == 0.1 and record["champion"]["score"] == 0.5
    assert client.get_model_version(name, versions[0][0]).tags["replaced_by"] == versions[2][0]
    assert (
        "0.9 vs champion's 0.5"
        in json.loads(client.get_model_version(name, versions[1][0]).tags["promotion"])["reason"]
    )


def test_both_versions_are_scored_only_on_rows_held_out_from_both() -> None:
    """The champion held out rows a-c; the challenger a, b, x, y (it trained on c). Both must be
    scored on {a, b} alone: on the challenger's own set, rows x, y (in the champion's training
    data) would flatter the champion."""
    name = f"toy-{uuid.uuid4().hex[:8]}"
    seen: list[tuple[str, frozenset[str] | None]] = []

    def evaluate(uri: str, keys: frozenset[str] | None) -> float:
        seen.append((uri, keys))
        return 1.0 if uri.endswith("/1") else 0.5

    uri, _ = _toy_model_uri()
    register_and_promote(
        uri, name, evaluate=evaluate, holdout_keys=["a", "b", "c"], scope={}, description="v1"
    )
    seen.clear()
    uri, _ = _toy_model_uri()
    _, promoted = register_and_promote(uri, name, evaluate=evaluate, holdout_keys=["a", "b", "x", "y"], scope={},
                                       description="v2")  # fmt: skip
    assert promoted
    assert [keys for _, keys in seen] == [frozenset({"a", "b"})] * 2
    assert json.loads(MlflowClient().get_model_version(name, "2").tags["promotion"])["shared_rows"] == 2


def test_no_shared_held_out_rows_means_no_automatic_promotion() -> None:
    name = f"toy-{uuid.uuid4().hex[:8]}"
    for i, keys in enumerate((["a"], ["b"])):
        uri, _ = _toy_model_uri()
        _, promoted = register_and_promote(uri, name, evaluate=lambda uri, keys: 0.0 if uri.endswith("/2") else 1.0,
                                           holdout_keys=keys, scope={}, description=f"v{i}")  # fmt: skip
    assert not promoted
    reason = json.loads(MlflowClient().get_model_version(name, "2").tags["promotion"])["reason"]
    assert "not comparable" in reason


def test_a_narrower_scope_is_registered_under_its_scope_not_over_the_champion() -> None:
    name = f"toy-{uuid.uuid4().hex[:8]}"
    wide = {"devices": ["gpperf/rtx4070", "neusight/Tesla_T4"], "sources": ["gpperf", "neusight"]}
    narrow = {"devices": ["neusight/Tesla_T4"], "sources": ["neusight"]}
    uri, _ = _toy_model_uri()
    register_and_promote(
        uri, name, evaluate=lambda u, k: 9.0, holdout_keys=["a"], scope=wide, description="wide"
    )
    uri, _ = _toy_model_uri()
    version, promoted = register_and_promote(uri, name, evaluate=lambda u, k: 0.0, holdout_keys=["a"], scope=narrow,
                                             description="narrow")  # fmt: skip
    assert not promoted
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == "1"
    alias = scope_alias(narrow)
    assert alias.startswith("scope-neusight-")
    assert str(client.get_model_version_by_alias(name, alias).version) == version
    assert scope_covers(wide, narrow) and not scope_covers(narrow, wide) and scope_covers(narrow, None)


def test_a_wider_scope_replaces_a_narrower_champion_unless_clearly_worse() -> None:
    name = f"toy-{uuid.uuid4().hex[:8]}"
    narrow = {"devices": ["local/cpu"]}
    wide = {"devices": ["local/cpu", "neusight/Tesla_T4"]}
    uri, _ = _toy_model_uri()
    register_and_promote(
        uri, name, evaluate=lambda u, k: 1.0, holdout_keys=["a"], scope=narrow, description="n"
    )
    uri, _ = _toy_model_uri()  # 5% worse on the shared rows, but answers a device more: promoted
    _, promoted = register_and_promote(uri, name, evaluate=lambda u, k: 1.05 if u.endswith("/2") else 1.0,
                                       holdout_keys=["a"], scope=wide, description="w")  # fmt: skip
    assert promoted
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(name, scope_alias(narrow)).version) == "1"
    uri, _ = _toy_model_uri()  # wider again but 50% worse than v2: kept
    wider = {"devices": [*wide["devices"], "help/pixel2"]}
    _, promoted = register_and_promote(uri, name, evaluate=lambda u, k: 1.5 if u.endswith("/3") else 1.0,
                                       holdout_keys=["a"], scope=wider, description="w2")  # fmt: skip
    assert not promoted


def test_logged_models_declare_pinned_public_requirements() -> None:
    from importlib.metadata import version

    from hwsurrogate.surrogates.registry.artifact_model import model_requirements

    reqs = dict(r.split("==") for r in model_requirements())
    assert reqs["hwsurrogate"] == version("hwsurrogate")
    assert {"scikit-learn", "polars", "treelite", "torch", "torch-geometric", "mlflow"} <= set(reqs)
    assert not any("+" in v for v in reqs.values())  # no local labels such as torch's +cpu


def test_identical_rows_from_two_stores_record_each_store_as_the_source(tmp_path) -> None:
    """MLflow reuses a dataset of the same name and digest: the digest must cover the source."""
    frame = pl.DataFrame({"m": [1, 2, 3], "runtime_ms": [0.1, 0.2, 0.3]})
    exp = mlflow.set_experiment(f"sources-{uuid.uuid4().hex}")
    runs = []
    for store in ("store-a", "store-b"):
        with mlflow.start_run(experiment_id=exp.experiment_id) as run:
            log_training_dataset(frame, name="gemm", source=str(tmp_path / store / "gemm"), targets="runtime_ms")
        runs.append(run.info.run_id)
    got = [mlflow.get_run(r).inputs.dataset_inputs[0].dataset for r in runs]
    assert [json.loads(d.source)["uri"] for d in got] == [str(tmp_path / s / "gemm") for s in ("store-a", "store-b")]
    assert got[0].digest != got[1].digest
