"""The one served-or-adapted dispatch, through both front doors: ``hws predict`` and the service.

Two bugs this guards against (the CLI and the service used to decide on their own and disagreed):
``hws predict latency`` ignored adapted devices, and ``POST /v1/predict/gemm`` ignored adapted GEMM
devices. Both now go through :mod:`hwsurrogate.surrogates.predict`.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from hwsurrogate.cli.predict import predict_gemm, predict_latency
from hwsurrogate.datasets import archspaces
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.service.app import ServiceConfig, create_app
from hwsurrogate.surrogates.adapt import adapt_gemm, predict_adapted
from hwsurrogate.surrogates.fewshot import FewShotConfig, FewShotLatencyRegressor
from hwsurrogate.surrogates.models.gemm import GemmPyfunc, GemmRegressor
from hwsurrogate.surrogates.predict import Dispatch, StoredLatencyDevices
from hwsurrogate.surrogates.registry.adapted import AdaptedDeviceRegistry
from hwsurrogate.surrogates.registry.loading import load_predictor
from hwsurrogate.surrogates.registry.pyfunc import log_gemm_model
from hwsurrogate.surrogates.registry.tracking import start_run

from .surrogates.gemm_factories import devices_frame, gemm_rows

COST = np.array([0.0, 0.05, 0.1, 0.3, 0.08])  # per-op log-latency cost: none, skip, 1x1, 3x3, pool
OPS = list(archspaces.NB201_OPS)


def _keys(n: int) -> list[str]:
    codes = np.random.default_rng(0).integers(0, 5, size=(n * 2, 6))
    return list(dict.fromkeys(archspaces.nb201_from_codes(c) for c in codes))[:n]


KEYS = _keys(120)


def _latency(keys: list[str], base: float) -> np.ndarray:
    ops = [archspaces.parse_nb201(k) for k in keys]
    return np.exp(base + np.array([[COST[OPS.index(o)] for o in row] for row in ops]).sum(1))


def _adapted_board(store: Path) -> AdaptedDeviceRegistry:
    """A store with a tiny meta-trained few-shot model (4 synthetic source devices) and ``me/board``
    adapted from 12 of its NB201 latencies."""
    frame = pl.concat(
        pl.DataFrame({"device_id": f"synth/src{i}", "space": "nb201", "arch_key": KEYS,
                      "latency_ms": _latency(KEYS, 0.5 + 0.4 * i)})
        for i in range(4)
    )  # fmt: skip
    cfg = FewShotConfig(meta_draws=1, meta_query=50, meta_k=10, tau_grid=(0.01,), noise_grid=(0.1,), gnn=())
    registry = AdaptedDeviceRegistry(store)
    registry.export_model(FewShotLatencyRegressor(cfg).fit(frame), "1", champion=True)
    registry.adapt("me/board", pl.DataFrame({"space": "nb201", "arch_key": KEYS[:12], "latency_ms": _latency(KEYS[:12], 1.1)}))
    return registry


@pytest.fixture
def own_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty registry of this test's own: no hws-latency / hws-gemm unless the test registers one."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("HWSURROGATE_MLFLOW_ARTIFACTS", str(tmp_path / "mlruns"))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


def test_hws_predict_latency_answers_an_adapted_device_with_its_adapted_model(
    own_mlflow: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    registry = _adapted_board(store)
    expected = registry.predict_latency("me/board", "nb201", KEYS[20:23])

    args = ["--device", "me/board", "--store", str(store), "--json"]
    for key in KEYS[20:23]:
        args += ["--arch-key", key]
    res = CliRunner().invoke(predict_latency, args)

    # no hws-latency is registered in this registry: only the adapted model can have answered
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    assert payload["predictor"] == "adapted"
    assert (payload["model_name"], payload["model_version"]) == ("hws-fewshot-latency", "1")
    got = [row["latency_ms"] for row in payload["predictions"]]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # a device that is neither adapted nor served still gets the served model's message
    res = CliRunner().invoke(predict_latency, ["--device", "nope/x", "--arch-key", KEYS[0], "--store", str(store)])
    assert res.exit_code != 0 and "hws-latency" in res.output


def test_dispatch_keeps_query_order_across_adapted_and_served_devices(tmp_path: Path) -> None:
    class Served:
        name, version = "hws-latency", "3"

        def predict(self, queries: pl.DataFrame) -> pl.DataFrame:
            return pl.DataFrame({"latency_ms": queries["arch_key"].str.len_chars().cast(pl.Float64)})

    registry = _adapted_board(tmp_path)
    devices = ["me/board", "help/x", "me/board", "help/x", "me/board"]
    queries = pl.DataFrame({"device_id": devices, "space": "nb201", "arch_key": KEYS[30:35]})

    answer = Dispatch(lambda task: Served(), latency_devices=StoredLatencyDevices(tmp_path)).predict("latency", queries)

    assert answer.predictor == "mixed"
    assert [(m.name, m.version) for m in answer.models] == [("hws-fewshot-latency", "1"), ("hws-latency", "3")]
    adapted = registry.predict_latency("me/board", "nb201", [KEYS[30], KEYS[32], KEYS[34]])
    got = answer.outputs["latency_ms"].to_numpy()
    np.testing.assert_allclose(got[[0, 2, 4]], adapted, rtol=1e-12)
    np.testing.assert_array_equal(got[[1, 3]], [len(KEYS[31]), len(KEYS[33])])


@pytest.fixture
def gemm_champion(own_mlflow: Path) -> str:
    """A tiny GemmRegressor on two training GPUs, registered as the hws-gemm champion; returns its version."""
    train = pl.concat([gemm_rows("test/gpu-a", 200, seed=1), gemm_rows("test/gpu-b", 200, seed=2)])
    model = GemmPyfunc(GemmRegressor(devices=devices_frame(), max_iter=30).fit(train, train["runtime_ms"]))
    with start_run("gemm", run_name="dispatch-test"):
        info = log_gemm_model(model, gemm_rows("test/gpu-a", 5, seed=1, power=False))
    version = mlflow.register_model(info.model_uri, "hws-gemm").version
    MlflowClient().set_registered_model_alias("hws-gemm", "champion", version)
    return str(version)


def test_service_and_cli_answer_an_adapted_gemm_device_alike(gemm_champion: str, tmp_path: Path) -> None:
    root = tmp_path / "store"
    DatasetStore(root).append("devices", devices_frame(), partition="test")
    champion = load_predictor("gemm")
    meas = gemm_rows("test/gpu-new", 10, seed=5, power=False).select(
        "op", "m", "n", "k", "batch", "dtype", pl.col("runtime_ms") * 1.5
    )
    record, _ = adapt_gemm("test/gpu-new", meas, store_root=root, predictor=champion)
    queries = gemm_rows("test/gpu-new", 6, seed=9, power=False).select("device_id", "op", "m", "n", "k", "batch", "dtype")
    queries = queries.with_columns(pl.lit(None, dtype=pl.String).alias("layout"))
    expected = predict_adapted(champion.native, record, queries)["runtime_ms"].to_numpy()

    app = create_app(ServiceConfig(store=root, token="tok-12345678"))
    with TestClient(app) as client:
        r = client.post("/v1/predict/gemm", json={"queries": queries.rename({"device_id": "device"}).to_dicts()})
        mixed = client.post("/v1/predict/gemm", json={"queries": [
            {"device": "test/gpu-a", "op": "gemm", "m": 256, "n": 256, "k": 256},
            {"device": "test/gpu-new", "op": "gemm", "m": 256, "n": 256, "k": 256},
            {"device": "test/nowhere", "op": "gemm", "m": 256, "n": 256, "k": 256}]})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictor"] == "adapted" and body["model"] == {"name": "hws-gemm", "version": gemm_champion}
    np.testing.assert_allclose([p["runtime_ms"] for p in body["predictions"]], expected, rtol=1e-9)
    assert all(p["power_w"] is None for p in body["predictions"])  # adapted devices have no power model
    # an unknown device in a batch is still refused by name, adapted or not
    assert mixed.status_code == 404 and "test/nowhere" in mixed.text

    path = tmp_path / "q.csv"
    queries.write_csv(path)
    res = CliRunner().invoke(predict_gemm, ["--queries", str(path), "--store", str(root), "--out", str(tmp_path / "o.csv")])
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(pl.read_csv(tmp_path / "o.csv")["runtime_ms"].to_numpy(), expected, rtol=1e-9)


def test_devices_of_a_few_rows_are_polars_unique_in_order() -> None:
    """The dispatch lists a few rows' devices in Python (polars' unique costs ~30 us on one row):
    the same distinct values in first-seen order as polars' unique, nulls and categoricals too."""
    from hwsurrogate.surrogates import predict

    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 7, predict.FEW_ROWS, predict.FEW_ROWS + 1, 500):
        ids = rng.choice(["a", "b", "c", None], n).tolist()
        for dtype in (pl.String, pl.Categorical):
            frame = pl.DataFrame({"device_id": pl.Series(ids, dtype=dtype), "m": list(range(n))})
            want = frame["device_id"].cast(pl.String).unique(maintain_order=True).to_list()
            assert predict._devices_of(frame) == want
