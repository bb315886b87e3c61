"""`hws train gemm --store s3://...` reads its rows from an object store (moto's server, tests/conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from hwsurrogate.cli.train import train
from hwsurrogate.datasets.store import DatasetStore, parse_versions

from .gemm_factories import devices_frame, gemm_rows


@pytest.mark.slow  # one small gemm training logged to MLflow
def test_train_gemm_reads_an_s3_store_and_records_it(
    s3_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = DatasetStore(s3_store)
    st.append("devices", devices_frame(), partition="test")
    st.append("gemm", gemm_rows("test/gpu-a", 120, seed=1), partition="test")
    st.append("gemm", gemm_rows("test/gpu-b", 120, seed=2), partition="test")
    monkeypatch.setenv("HWSURROGATE_STORE", str(tmp_path / "empty"))  # only --store names the bucket
    monkeypatch.chdir(tmp_path)
    # the session's shared registry: identical factory rows logged by another test from another
    # store must not come back with that store's source (the dataset digest covers the source)
    res = CliRunner().invoke(train, ["gemm", "--max-iter", "10", "--test-frac", "0.25", "--no-register",
                                     "--store", s3_store])  # fmt: skip
    assert res.exit_code == 0, res.output
    run = MlflowClient().get_run(re.search(r"run ([0-9a-f]{32})", res.output).group(1))  # type: ignore[union-attr]
    params = run.data.params
    assert int(params["n_train"]) + int(params["n_test"]) == 240  # every row in the bucket, none elsewhere
    assert parse_versions(params["data_versions"]) == {
        k: v for k, v in st.versions().items() if k in ("gemm", "devices")
    }
    assert run.data.tags["data_store"] == s3_store
    sources = [i.dataset.source for i in run.inputs.dataset_inputs]
    assert any(f"{s3_store}/gemm" in s for s in sources), sources
    assert not (tmp_path / "s3:").exists() and not (tmp_path / "empty").exists()
