"""Training runs record the store versions they read; `--data-version` trains on exactly that data again."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from hwsurrogate.cli.train import train
from hwsurrogate.datasets.store import DatasetStore, parse_versions
from hwsurrogate.surrogates.training.gemm import GemmTrainConfig, train_gemm_model

from .gemm_factories import devices_frame, gemm_rows

FAST = GemmTrainConfig(max_iter=10, test_frac=0.25, min_power_rows=20, register=False)


@pytest.mark.slow  # two small gemm trainings logged to MLflow
def test_gemm_run_records_versions_and_data_version_reproduces_it(store: DatasetStore) -> None:
    store.append("devices", devices_frame(), partition="test")
    store.append("gemm", gemm_rows("test/gpu-a", 120, seed=1), partition="test")
    first = train_gemm_model(store, FAST)
    params = MlflowClient().get_run(first.run_id).data.params
    recorded = parse_versions(params["data_versions"])
    assert recorded == {k: v for k, v in store.versions().items() if k in ("gemm", "devices")}
    store.append("gemm", gemm_rows("test/gpu-b", 120, seed=2), partition="more")  # the store moves on
    assert store.read("gemm").height == 240 and store.at(recorded).read("gemm").height == 120
    # the CLI at the recorded versions trains on the same rows as the first run
    res = CliRunner().invoke(train, ["gemm", "--max-iter", "10", "--test-frac", "0.25", "--no-register", "--data-version",
                                     params["data_versions"]])  # fmt: skip
    assert res.exit_code == 0, res.output
    run_id = re.search(r"run ([0-9a-f]{32})", res.output).group(1)  # type: ignore[union-attr]
    again = MlflowClient().get_run(run_id).data.params
    assert again["data_versions"] == params["data_versions"]
    assert again["n_train"] == params["n_train"] and again["n_test"] == params["n_test"]
    assert "test/gpu-b" not in again.get("devices", "")


def test_bad_data_version_is_a_usage_error(store: DatasetStore) -> None:
    store.append("devices", devices_frame(), partition="test")
    for spec, message in (("gemm=x", "TABLE=VERSION"), ("devices=7", "no version 7")):
        res = CliRunner().invoke(train, ["gemm", "--no-register", "--data-version", spec])
        assert res.exit_code == 2 and message in res.output, res.output
