"""The service on an ``s3://`` store (moto's server on 127.0.0.1, ``s3_store`` in tests/conftest.py).

In process: uploads are stored in the bucket and served back (rows, datasets, devices), the
latency route resolves ``arch_index`` through the bucket's latency table, and nothing is written
to a local folder named after the URI. As processes: ``hws serve --store s3://...`` accepts an
upload and a second ``hws serve --read-only`` over the same URI sees each of the writer's commits.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from hwsurrogate.client import HwsClient, ServiceError
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.service.app import ServiceConfig, create_app
from hwsurrogate.service.deps import get_adapter, get_models

from .conftest import (
    NB201_A,
    NB201_B,
    TOKEN,
    FakeAdapter,
    fake_models,
    free_port,
    gemm_rows,
    latency_store_frame,
    server_process,
)

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _client(store: str) -> TestClient:
    app = create_app(ServiceConfig(store=store, token=TOKEN, load_models=False))
    models, adapter = fake_models(), FakeAdapter()
    app.dependency_overrides[get_models] = lambda: models
    app.dependency_overrides[get_adapter] = lambda: adapter
    return TestClient(app)


def test_s3_store_upload_is_served_back_with_devices_and_predictions(
    s3_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a URI taken for a path would leave an "s3:" folder here
    config = ServiceConfig(store=s3_store, token=TOKEN)
    assert config.store == s3_store and config.adapted_dir == tmp_path / "local"  # $HWSURROGATE_LOCAL_DIR
    DatasetStore(s3_store).append("latency", latency_store_frame(), partition="help")
    with _client(s3_store) as c:
        health = c.get("/healthz").json()
        assert health["store"] == s3_store.rsplit("/", 1)[1] and health["writes_enabled"] is True
        body = json.dumps({"rows": gemm_rows(5, device="me/box-gpu")})
        r = c.post("/v1/datasets/gemm/rows", params={"client": "alice"}, content=body,
                   headers={**AUTH, "content-type": "application/json"})  # fmt: skip
        assert r.status_code == 200, r.text
        assert (r.json()["added"], r.json()["duplicates"]) == (5, 0)
        again = c.post("/v1/datasets/gemm/rows", params={"client": "alice"}, content=body,
                       headers={**AUTH, "content-type": "application/json"})  # fmt: skip
        assert (again.json()["added"], again.json()["duplicates"]) == (0, 5)  # MERGE on S3 too
        rows = c.get("/v1/datasets/gemm/rows", params={"limit": 10}).json()
        assert rows["total"] == 5
        assert sorted(r["measurement_id"] for r in rows["rows"]) == [f"r-{i}" for i in range(5)]
        assert {r["source"] for r in rows["rows"]} == {"upload:alice"}
        listed = {d["kind"]: d["rows"] for d in c.get("/v1/datasets").json()["datasets"]}
        assert listed["gemm"] == 5 and listed["latency"] == 2
        devices = {d["device_id"]: d for d in c.get("/v1/devices").json()["devices"]}
        assert devices["me/box-gpu"]["tables"] == {"gemm": 5}
        assert devices["help/pixel2"]["tables"] == {"latency": 2}
        assert c.get("/v1/devices/me/box-gpu").json()["tables"] == {"gemm": 5}
        r = c.post("/v1/predict/latency", json={"device": "help/pixel2", "space": "nb201",
                                                "archs": [{"arch_index": 42}, {"arch_index": 11}]})  # fmt: skip
        assert r.status_code == 200, r.text  # arch_index -> arch_key read from the bucket's latency table
        assert [p["arch_key"] for p in r.json()["predictions"]] == [NB201_B, NB201_A]
    stored = DatasetStore(s3_store).read("gemm")
    assert stored.height == 5 and DatasetStore(s3_store).partitions("gemm") == ["upload_alice"]
    assert not (tmp_path / "s3:").exists()


@contextmanager
def _serve(*args: str, env: dict[str, str]) -> Iterator[str]:
    """``hws serve ARGS`` on a free loopback port (models not loaded); the base URL once /healthz answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "hwsurrogate.cli", "serve", "--port", str(port), "--log-level", "warning", *args]
    with server_process(cmd, port, env) as (url, _):
        yield url


@pytest.mark.slow  # two uvicorn processes
def test_read_only_server_sees_the_writers_commits_on_s3(s3_store: str, tmp_path: Path) -> None:
    env = {**os.environ, "HWSURROGATE_SERVICE_LOAD_MODELS": "0"}  # AWS_* and the local dir from the fixture
    with (
        _serve("--store", s3_store, "--token", TOKEN, env=env) as writer,
        _serve("--store", s3_store, "--read-only", env=env) as reader,
        HwsClient(writer, TOKEN) as w,
        HwsClient(reader) as r,
    ):
        assert r.health()["writes_enabled"] is False
        assert r.read_rows("gemm").height == 0
        for batch, n in ((0, 3), (1, 4)):
            assert w.upload_rows("gemm", pl.DataFrame(gemm_rows(n, prefix=f"b{batch}")))["added"] == n
            seen = r.read_rows("gemm", limit=100)  # the reader opens the version the writer committed
            assert {f"b{batch}-{i}" for i in range(n)} <= set(seen["measurement_id"])
        assert r.read_rows("gemm", limit=100).height == 7
        assert {d["device_id"] for d in r.list_devices()} == {"local/box-cpu"}
        with pytest.raises(ServiceError) as refused, HwsClient(reader, TOKEN) as r_with_token:
            r_with_token.upload_rows("gemm", pl.DataFrame(gemm_rows(1, prefix="x")))
        assert refused.value.status_code == 403
    assert DatasetStore(s3_store).read("gemm").height == 7
