"""hws train latency on tiny hand-made data: MLflow run, registry, reload, and bad input."""

from __future__ import annotations

import itertools
import json

import mlflow
import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch
from click.testing import CliRunner
from mlflow import MlflowClient

from hwsurrogate.cli.predict import predict_latency
from hwsurrogate.cli.train import latency_cmd as train_latency
from hwsurrogate.datasets.archspaces import NB201_OPS, format_nb201
from hwsurrogate.errors import TrainingDataError
from hwsurrogate.surrogates.models.latency_gnn import GNNConfig
from hwsurrogate.surrogates.models.latency_trees import MultiDeviceLatencyTrees
from hwsurrogate.surrogates.registry.loading import load_predictor
from hwsurrogate.surrogates.registry.pyfunc import LatencyPyfunc
from hwsurrogate.surrogates.training.latency import EXPERIMENT, train_latency_model

OP_COST = {"none": 0.0, "skip_connect": 0.05, "nor_conv_1x1": 0.4, "nor_conv_3x3": 1.2, "avg_pool_3x3": 0.3}


def tiny_latency_frame(
    n_archs: int = 60, devices: tuple[str, ...] = ("help/dev_a", "help/dev_b")
) -> pl.DataFrame:
    """NB201 cells whose latency is a known additive function of their ops (x2 on dev_b)."""
    rng = np.random.default_rng(0)
    combos = list(itertools.product(NB201_OPS, repeat=6))
    picks = rng.choice(len(combos), size=n_archs, replace=False)
    rows = []
    for i, c in enumerate(picks):
        ops = combos[c]
        base = 1.0 + sum(OP_COST[o] for o in ops)
        for scale, d in enumerate(devices, start=1):
            rows.append({"device_id": d, "space": "nb201", "arch_index": i, "arch_key": format_nb201(ops),
                         "latency_ms": scale * base})  # fmt: skip
    return pl.DataFrame(rows)


def _n_runs() -> int:
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    return 0 if exp is None else len(MlflowClient().search_runs([exp.experiment_id]))


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize("kind", ["tree", "gnn"])
def test_trained_model_reloads_with_identical_predictions(kind: str) -> None:
    frame = tiny_latency_frame()
    cfg = GNNConfig(hidden_channels=16, num_layers=2, epochs=5, batch_size=16, num_threads=1)
    result = train_latency_model(frame, model=kind, gnn_config=cfg)  # type: ignore[arg-type]
    run = MlflowClient().get_run(result.run_id)
    assert run.data.params["model"] == kind
    assert "test_nb201_latency_ms_spearman" in run.data.metrics
    assert "test_nb201_spearman/help/dev_b" in run.data.metrics
    queries = frame.select("device_id", "space", "arch_key").head(12)
    before = result.pyfunc.predict_frame(queries.to_pandas())["latency_ms"].to_numpy()
    reloaded = (
        mlflow.pyfunc.load_model(result.model_uri).predict(queries.to_pandas())["latency_ms"].to_numpy()
    )
    np.testing.assert_array_equal(reloaded, before)
    predictor = load_predictor("latency", version=result.version)
    served = predictor.predict(queries)["latency_ms"].to_numpy()
    np.testing.assert_array_equal(served, before)
    assert (before > 0).all() and np.isfinite(before).all()
    if kind == "tree":  # the CLI serves the same numbers
        key = queries["arch_key"][0]
        cli = CliRunner().invoke(
            predict_latency,
            ["--device", "help/dev_a", "--arch-key", key, "--version", result.version, "--json"],
        )
        assert cli.exit_code == 0, cli.output
        payload = json.loads(cli.output)
        assert payload["predictions"][0]["latency_ms"] == pytest.approx(before[0], rel=1e-12)
        bad = CliRunner().invoke(
            predict_latency, ["--device", "help/zzz", "--arch-key", key, "--version", result.version]
        )
        assert bad.exit_code != 0 and "unknown device_id 'help/zzz'" in bad.output


def test_train_cli_on_an_empty_store_says_what_to_import() -> None:
    out = CliRunner().invoke(train_latency, [])
    assert out.exit_code != 0 and "hws data import help" in out.output


def _tree_pyfunc(n_archs: int = 60) -> LatencyPyfunc:
    frame = tiny_latency_frame(n_archs=n_archs)
    per_device = {
        d: (g["arch_key"].to_list(), g["latency_ms"].to_numpy()) for (d,), g in frame.group_by("device_id")
    }
    return LatencyPyfunc({"nb201": MultiDeviceLatencyTrees("nb201").fit(per_device)}, kind="tree")


def test_tree_model_learns_the_device_scale() -> None:
    key = format_nb201(["nor_conv_3x3"] * 6)
    q = pd.DataFrame(
        {"device_id": ["help/dev_a", "help/dev_b"], "space": ["nb201"] * 2, "arch_key": [key, key]}
    )
    a, b = _tree_pyfunc(120).predict_frame(q)["latency_ms"]
    assert b / a == pytest.approx(2.0, rel=0.15)


def test_tree_pickles_round_trip_and_pickles_with_lzma_trees_still_load() -> None:
    import lzma
    import pickle

    model = _tree_pyfunc(40).models["nb201"]
    keys = [format_nb201(["nor_conv_3x3"] * 6), format_nb201(["skip_connect"] * 6)]
    devices = ["help/dev_a", "help/dev_b"]
    expected = model.predict(keys, devices)
    again = pickle.loads(pickle.dumps(model))
    assert again.predict(keys, devices).tolist() == expected.tolist()
    old_state = model.__dict__ | {"models_": lzma.compress(pickle.dumps(model.models_))}  # before the zlib switch
    old = MultiDeviceLatencyTrees.__new__(MultiDeviceLatencyTrees)
    old.__setstate__(old_state)
    assert old.predict(keys, devices).tolist() == expected.tolist()


def test_served_model_rejects_unknown_device_space_and_missing_column() -> None:
    pyfunc = _tree_pyfunc()
    q = pd.DataFrame(
        {"device_id": ["help/nope"], "space": ["nb201"], "arch_key": [format_nb201(["none"] * 6)]}
    )
    with pytest.raises(ValueError, match="unknown device_id 'help/nope'"):
        pyfunc.predict_frame(q)
    with pytest.raises(ValueError, match="unknown space 'fbnet'"):
        pyfunc.predict_frame(q.assign(space="fbnet", device_id="help/dev_a"))
    with pytest.raises(ValueError, match=r"miss column\(s\) \['arch_key'\]"):
        pyfunc.predict_frame(q.drop(columns="arch_key"))


@pytest.mark.parametrize(
    ("mutate", "kwargs", "message"),
    [
        (lambda f: f.head(0), {}, "0 training rows"),
        (lambda f: f, {"devices": ["help/dev_a", "help/missing"]}, "'help/missing' has no rows"),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 3)
                .then(float("nan"))
                .otherwise(pl.col("latency_ms"))
                .alias("latency_ms")
            ),
            {},
            "finite and > 0; 1 bad rows",
        ),
        (lambda f: f.with_columns(pl.lit("|bogus|").alias("arch_key")), {}, "not a valid nb201 key"),
    ],
)
def test_bad_input_raises_before_any_mlflow_run(mutate, kwargs, message) -> None:
    mlflow.set_tracking_uri(mlflow.get_tracking_uri())
    n_before = _n_runs()
    with pytest.raises(ValueError, match=message):
        train_latency_model(mutate(tiny_latency_frame()), model="tree", **kwargs)
    assert _n_runs() == n_before


def test_bad_input_error_is_a_training_data_error() -> None:
    with pytest.raises(TrainingDataError):
        train_latency_model(tiny_latency_frame().head(0))
