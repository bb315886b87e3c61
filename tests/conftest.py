"""Shared fixtures: an isolated store per test, and the public data when present."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hwsurrogate.datasets.store import DatasetStore


@pytest.fixture(scope="session")
def _mlflow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLflow database per test session (creating one costs seconds); experiments differ per test."""
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, _mlflow_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own store, a test MLflow store (never ./mlflow.db), no progress bars and
    no compiled trees."""
    monkeypatch.setenv("HWSURROGATE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("HWSURROGATE_NO_PROGRESS", "1")
    # no detached tl2cgen builds of every model a test fits; tests/surrogates/test_compiled_trees.py
    # turns them on for its tiny models
    monkeypatch.setenv("HWSURROGATE_COMPILED_TREES", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{_mlflow_dir / 'mlflow.db'}")
    monkeypatch.setenv("HWSURROGATE_MLFLOW_ARTIFACTS", str(_mlflow_dir / "mlruns"))


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return DatasetStore(tmp_path / "store")


def _data_dir() -> Path | None:
    raw = os.environ.get("HWSURROGATE_DATA_DIR")
    if raw and Path(raw).is_dir():
        return Path(raw)
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The public data folder; tests using it skip when HWSURROGATE_DATA_DIR is unset or absent."""
    path = _data_dir()
    if path is None:
        pytest.skip("public data not available: set HWSURROGATE_DATA_DIR to ../shared/data")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_options() -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1 with one bucket (``hws``), stopped when the session ends.

    The dict is what ``DatasetStore(..., storage_options=)`` takes, and with :func:`s3_store` the
    ``AWS_*`` environment of the test, which is how the CLI and the service find the endpoint.
    Tests skip when moto's server (the dev extra) is not installed.
    """
    pytest.importorskip(
        "moto.server", reason="moto[server] (the dev extra) runs the S3 server these tests use"
    )
    boto3 = pytest.importorskip("boto3", reason="boto3 (installed with moto) creates the test bucket")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        for _ in range(200):
            try:
                client.create_bucket(Bucket="hws")
                break
            except Exception:
                time.sleep(0.05)
        else:
            pytest.fail("moto's S3 server did not start in 10 s")
        yield {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def s3_store(s3_options: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh ``s3://hws/<random>`` store on the moto server, made the test's ``HWSURROGATE_STORE``.

    The ``AWS_*`` variables point at the server (as docs/store.md tells a user to set them), and
    local files (``HWSURROGATE_LOCAL_DIR``) go to the test's own folder.
    """
    for key, value in s3_options.items():
        monkeypatch.setenv(key, value)
    uri = f"s3://hws/{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("HWSURROGATE_STORE", uri)
    monkeypatch.setenv("HWSURROGATE_LOCAL_DIR", str(tmp_path / "local"))
    return uri
