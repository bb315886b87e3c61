"""The CLI on an ``s3://`` store (moto's server, ``s3_store`` in tests/conftest.py): a collector writes
into it, ``hws data list`` shows it, and bad store URIs are usage errors naming ``--store``."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from hwsurrogate.cli import cli
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import StoreError
from hwsurrogate.service.config import ServiceConfig


def _hws(*args: str) -> object:
    return CliRunner().invoke(cli, list(args))


def test_gemm_collector_writes_to_s3_and_data_list_shows_it(
    s3_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a store URI taken for a path would leave an "s3:" folder here
    res = _hws("collect", "gemm", "--sweep", "grid", "--sizes", "8,16", "--dtype", "fp32", "--min-time", "0",
               "--threads", "1", "--store", s3_store)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"added 8 gemm row(s) to {s3_store}" in res.output  # the 2 x 2 x 2 grid
    stored = DatasetStore(s3_store).read("gemm")  # endpoint and credentials from the AWS_* environment
    assert stored.height == 8 and sorted(set(stored["m"].to_list())) == [8, 16]
    assert set(stored["source"]) == {"collector:gemm"}
    listed = _hws("data", "list", "--json", "--store", s3_store)
    assert listed.exit_code == 0, listed.output
    summary = json.loads(listed.output)
    assert summary["gemm"]["rows"] == 8 and summary["gemm"]["sources"] == {"collector:gemm": 8}
    assert not (tmp_path / "s3:").exists() and not (tmp_path / "store").exists()


def test_collector_push_failure_keeps_rows_in_the_local_dir_not_the_bucket(
    s3_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class DownClient:
        def __init__(self, base_url: str, token: str | None = None) -> None:
            pass

        def upload_rows(self, kind: str, frame: pl.DataFrame) -> dict[str, int]:
            raise ConnectionRefusedError("connection refused")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "hwsurrogate.client", types.SimpleNamespace(HwsClient=DownClient))
    res = _hws("collect", "gemm", "--sweep", "grid", "--sizes", "8", "--min-time", "0", "--push", "http://down:1",
               "--store", s3_store)  # fmt: skip
    assert res.exit_code == 1 and "upload of 1 gemm rows failed" in res.output
    kept = list(
        (tmp_path / "local" / "unsent").glob("gemm-*.parquet")
    )  # the fixture's $HWSURROGATE_LOCAL_DIR
    assert len(kept) == 1 and pl.read_parquet(kept[0]).height == 1
    assert DatasetStore(s3_store).read("gemm").height == 0


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://", "names no bucket"),
        ("s3:///prefix", "names no bucket"),
        ("s3://Not_A_Bucket/x", "is not an S3 bucket name"),
        ("gs://bucket/x", "unsupported scheme 'gs://'"),
        ("ftp://host/x", "unsupported scheme 'ftp://'"),
    ],
)
def test_bad_store_uri_is_a_usage_error_naming_store(uri: str, message: str) -> None:
    for args in (("data", "list", "--store", uri), ("serve", "--store", uri), ("train", "gemm", "--store", uri),
                 ("collect", "gemm", "--sizes", "8", "--sweep", "grid", "--store", uri)):  # fmt: skip
        res = _hws(*args)
        assert res.exit_code == 2, (args, res.output)
        assert "--store" in res.output and message in res.output, (args, res.output)
    with pytest.raises(StoreError, match=f"--store.*{message}"):
        DatasetStore(uri)
    with pytest.raises(ValueError, match=f"^store: .*{message}"):
        ServiceConfig(store=uri, load_models=False)


def test_bad_store_in_the_environment_names_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWSURROGATE_STORE", "s3://")
    res = _hws("serve", "--port", "1")  # refused before uvicorn starts
    assert res.exit_code == 2 and "--store" in res.output and "$HWSURROGATE_STORE" in res.output
    res = _hws("data", "list")  # `hws` prints this StoreError as "error: ..."
    assert isinstance(res.exception, StoreError)
    assert str(res.exception).startswith("--store / $HWSURROGATE_STORE: 's3://' names no bucket")


def test_local_files_of_an_s3_store_go_to_the_local_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hwsurrogate.settings import local_root
    from hwsurrogate.surrogates.registry.adapted import AdaptedDeviceRegistry
    from hwsurrogate.surrogates.registry.cache import store_root

    monkeypatch.setenv("HWSURROGATE_LOCAL_DIR", str(tmp_path / "loc"))
    assert local_root("s3://hws/team/p") == store_root("s3://hws/team/p") == tmp_path / "loc"
    assert local_root(tmp_path / "st") == store_root(tmp_path / "st") == tmp_path / "st"  # a store directory
    registry = AdaptedDeviceRegistry("s3://hws/team/p")
    assert registry.records.folder == tmp_path / "loc" / "adapted" / "latency"
    assert registry.store == "s3://hws/team/p"  # device names are checked against the bucket's tables
    config = ServiceConfig(store="s3://hws/team/p/", load_models=False)
    assert (config.store, config.adapted_dir, config.store_name) == ("s3://hws/team/p", tmp_path / "loc", "p")
