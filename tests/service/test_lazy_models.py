"""Issue 15: the service starts without its models and without MLflow; the first request that
needs a model loads them, once (``ServedModels.lazy``), and MLflow is imported only by the child
process that resolves them (``resolve_in_child``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from fastapi.testclient import TestClient

from hwsurrogate.service.app import ServiceConfig, create_app
from hwsurrogate.service.served import ServedModels

from .conftest import TOKEN, fake_models


def test_probe_and_dataset_routes_never_import_mlflow(tmp_path: Path) -> None:
    """A fresh interpreter: app start-up, /healthz and the dataset routes leave MLflow unimported;
    /v1/models then loads the models (none is registered here: a child process asked MLflow),
    still without importing it here."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from fastapi.testclient import TestClient
        from hwsurrogate.service.app import ServiceConfig, create_app
        app = create_app(ServiceConfig(store=Path({str(tmp_path / "store")!r}), token="t0ken-abc"))
        with TestClient(app) as c:
            r = c.post("/v1/datasets/gemm/rows", headers={{"Authorization": "Bearer t0ken-abc"}},
                       json={{"rows": [{{"device_id": "lab/gpu", "op": "gemm", "m": 8, "n": 8, "k": 8,
                                         "batch": 1, "dtype": "fp32", "runtime_ms": 0.1}}]}})
            assert r.status_code == 200, r.text
            assert c.get("/healthz").json()["models"] == {{t: False for t in ("gemm", "latency", "fpga-hls4ml", "fpga-hlsyn")}}
            for path in ("/v1/datasets", "/v1/datasets/gemm", "/v1/datasets/gemm/rows?format=csv"):
                assert c.get(path).status_code == 200, path
            print("before", "mlflow" in sys.modules, app.state.models.loaded)
            models = c.get("/v1/models").json()["models"]
            print("after", "mlflow" in sys.modules, app.state.models.loaded, any(m["available"] for m in models))
        """
    )
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "HWSURROGATE_NO_PROGRESS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, **env},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert "before False False" in lines, out.stdout
    assert "after False True False" in lines, out.stdout


def test_first_use_loads_once_even_from_many_threads() -> None:
    calls = []
    gate = threading.Event()

    def loader() -> ServedModels:
        calls.append(1)
        gate.wait(5)  # every thread asks while the load is under way
        return fake_models()

    models = ServedModels(loader=loader)
    assert not models.loaded and models.predictors == {}
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(models.require("gemm"))) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 1 and len(got) == 8 and len({id(g) for g in got}) == 1
    assert models.loaded and models.stage("fpga-hlsyn") == "hls_estimate" and len(calls) == 1


def test_healthz_shows_models_once_loaded(tmp_path: Path) -> None:
    app = create_app(ServiceConfig(store=tmp_path / "store", token=TOKEN))
    with TestClient(app) as c:
        models = app.state.models
        assert not models.loaded
        models.loader = fake_models  # the champions this test "registered"
        assert not any(c.get("/healthz").json()["models"].values())
        listed = {m["task"]: m for m in c.get("/v1/models").json()["models"]}
        assert listed["gemm"]["available"] and listed["gemm"]["version"] == "7"
        assert all(c.get("/healthz").json()["models"].values())


def test_preload_models_loads_them_during_start_up(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls: list[int] = []

    def loader() -> ServedModels:
        calls.append(1)
        return fake_models()

    monkeypatch.setattr(ServedModels, "lazy", classmethod(lambda cls, pins=None, **_: cls(loader=loader)))
    app = create_app(ServiceConfig(store=tmp_path / "store", token=TOKEN, preload_models=True))
    with TestClient(app) as c:
        assert calls == [1] and app.state.models.loaded  # before any request
        assert all(c.get("/healthz").json()["models"].values())
        c.get("/v1/models")
        assert calls == [1]


def test_serve_flags_reach_the_worker_config(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`hws serve --no-batching --preload-models` travel to uvicorn's workers through the environment."""
    from hwsurrogate.service.config import BATCHING_ENV, PRELOAD_ENV

    monkeypatch.setenv(BATCHING_ENV, "0")
    monkeypatch.setenv(PRELOAD_ENV, "1")
    config = ServiceConfig.from_env()
    assert config.batching is False and config.preload_models is True
    monkeypatch.delenv(BATCHING_ENV)
    monkeypatch.delenv(PRELOAD_ENV)
    config = ServiceConfig.from_env()
    assert config.batching is True and config.preload_models is False


def test_the_service_collects_young_objects_less_often_while_it_runs(tmp_path: Path) -> None:
    """The lifespan freezes the start-up heap and raises the young-generation threshold
    (``serving_gc``); shutting down puts back the threshold and the heap it found."""
    import gc

    from hwsurrogate.service.served import SERVING_GC_THRESHOLD

    before = gc.get_threshold()
    app = create_app(ServiceConfig(store=tmp_path / "store", token=TOKEN, load_models=False))
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        assert gc.get_threshold() == (max(SERVING_GC_THRESHOLD, before[0]), *before[1:])
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
