"""``hws tune``'s search set-ups, no cluster: space checks per task, and a trial scored as promotion scores."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from hwsurrogate.cli import main
from hwsurrogate.cli.tune import TASKS
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.surrogates.api import MODEL_NAMES
from hwsurrogate.surrogates.registry.tracking import champion_holdout
from hwsurrogate.surrogates.training.tuning import TUNABLE, parse_space, tune_setup

from .fpga_factories import hls4ml_rows
from .test_latency_training import tiny_latency_frame


def test_the_cli_offers_exactly_the_tunable_tasks() -> None:
    assert sorted(TASKS) == sorted(TUNABLE)


@pytest.mark.parametrize(
    ("task", "space", "message"),
    [
        ("latency", '{"depth": [3]}', "latency has no parameter 'depth'"),
        ("latency", '{"max_leaf_nodes": [15, 1]}', "max_leaf_nodes values must be ints >= 2, got 1"),
        ("latency", '{"l2_regularization": [-0.5]}', "l2_regularization values must be floats >= 0, got -0.5"),
        ("latency", '{"learning_rate": [0]}', "learning_rate values must be positive floats, got 0"),
        ("latency", '{"max_iter": [1.5]}', "max_iter values must be positive ints, got 1.5"),
        ("latency", '{"max_train_archs": [true]}', "max_train_archs values must be ints >= 2, got True"),
        ("fpga-hls4ml", '{"max_train_rows": [100]}', "fpga-hls4ml has no parameter 'max_train_rows'"),
        ("fpga-hls4ml", '{"learning_rate": ["0.1"]}', "learning_rate values must be positive floats, got '0.1'"),
        ("fpga-hls4ml", '{"max_iter": []}', "max_iter must be a non-empty list"),
        ("fpga-hls4ml", "[1, 2]", "expected a JSON object"),
    ],
)
def test_each_task_refuses_a_bad_space_naming_the_parameter(
    task: str, space: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:  # refused before any cluster is reached (the address is dead)
        main(["tune", task, "--ray", "127.0.0.1:1", "--space", space])
    assert exc.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())


def test_a_good_space_keeps_its_values_typed() -> None:
    assert parse_space("latency", '{"max_leaf_nodes": [15, 31], "l2_regularization": [0, 0.5]}') == {
        "max_leaf_nodes": [15, 31], "l2_regularization": [0.0, 0.5]
    }  # fmt: skip
    assert parse_space("fpga-hls4ml", None) == {"max_iter": [150, 300], "learning_rate": [0.05, 0.1]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["latency", "--source", "help"], "--source does not apply to latency"),
        (["latency", "--test-frac", "0.3"], "--test-frac does not apply to latency"),
        (["fpga-hls4ml", "--device", "x"], "--device does not apply to fpga-hls4ml"),
        (["gemm", "--arch-space", "nb201"], "--arch-space does not apply to gemm"),
    ],
)
def test_an_option_the_task_does_not_take_is_refused_by_name(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["tune", *args, "--ray", "127.0.0.1:1"])
    assert message in capsys.readouterr().err


def _hls4ml_store(store: DatasetStore) -> DatasetStore:
    store.append("fpga", hls4ml_rows(), partition="test")
    return store


def _latency_store(store: DatasetStore) -> DatasetStore:
    rows = tiny_latency_frame(40).with_columns(
        pl.lit("test").alias("source"), pl.lit("tests").alias("origin"), pl.lit("fp32").alias("precision"),
        pl.lit(1).alias("batch"), pl.lit(True).alias("measured"),
        pl.concat_str("device_id", "arch_key", separator="|").alias("measurement_id"),
    )  # fmt: skip
    store.append("latency", rows, partition="test")
    return store


@pytest.mark.parametrize(
    ("task", "make", "config"),
    [("fpga-hls4ml", _hls4ml_store, {"max_iter": 15, "learning_rate": 0.2}),
     ("latency", _latency_store, {"max_iter": 30, "max_leaf_nodes": 7, "max_train_archs": 25})],
)  # fmt: skip
def test_a_trial_is_scored_on_the_rows_and_by_the_score_of_promotion(
    task: str, make: object, config: dict, store: DatasetStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial's score (in memory) equals the registered version's score by the task's own promotion
    function, and the rows a search holds out are those the version records as held out."""
    # a registry of its own: other tests register (and promote) the same task names
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("HWSURROGATE_MLFLOW_ARTIFACTS", str(tmp_path / "mlruns"))
    setup = tune_setup(task, make(store))  # type: ignore[operator]
    trial = setup.evaluate(setup.fit(config), None)
    version, promoted = setup.train_winner(config)
    assert promoted and version == "1"  # the first version: no champion to beat
    assert setup.evaluate(f"models:/{MODEL_NAMES[task]}/{version}", None) == pytest.approx(trial, rel=1e-9)
    champ = champion_holdout(MODEL_NAMES[task])
    assert champ is not None and champ[1] == setup.holdout_keys and setup.n_test > 0
    other = {**config, "max_iter": 2}  # a different configuration scores differently: the values are used
    assert setup.evaluate(setup.fit(other), None) != pytest.approx(trial, rel=1e-6)
