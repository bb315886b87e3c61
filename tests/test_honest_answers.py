"""Honest answers (issue 13): training domains, held-out adaptation errors, consistent FPGA outputs.

Bugs these guard against, from the issue's table:
- ``hws predict gemm`` for ``op=gemm, dtype=fp16`` on a device trained on bmm/linear fp32 only
  answered with no warning (now: in_domain false + a warning; ``--strict`` / ``"strict": true`` refuse);
- ``hws adapt --task gemm`` reported only the error on the shapes it fitted (now: a leave-one-out
  error too, and the latency adaptation a leave-one-out MAPE / Spearman per space);
- a Keras ``model.to_json()`` as the layer list, a NaN reuse factor and an unknown part were accepted;
  DSP/BRAM came out fractional and II above the latency.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import mlflow
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from hwsurrogate.cli.predict import predict_fpga, predict_gemm
from hwsurrogate.datasets import archspaces
from hwsurrogate.service.app import ServiceConfig, create_app
from hwsurrogate.service.deps import get_models
from hwsurrogate.service.served import ServedModels
from hwsurrogate.surrogates.adapt import adapt_gemm
from hwsurrogate.surrogates.domain import domain_issues, record_domain
from hwsurrogate.surrogates.features import hls4ml_features
from hwsurrogate.surrogates.fewshot import FewShotConfig, FewShotLatencyRegressor
from hwsurrogate.surrogates.fewshot.gemm import adapt_model, predict_with_correction
from hwsurrogate.surrogates.models.fpga import FpgaPyfunc, FpgaRegressor, physically_consistent
from hwsurrogate.surrogates.models.gemm import GemmPyfunc, GemmRegressor
from hwsurrogate.surrogates.predict import Dispatch
from hwsurrogate.surrogates.registry.adapted import AdaptedDeviceRegistry, heldout_folds
from hwsurrogate.surrogates.registry.pyfunc import log_gemm_model
from hwsurrogate.surrogates.registry.tracking import start_run
from hwsurrogate.surrogates.training.metrics import mape

from .surrogates.gemm_factories import devices_frame, gemm_rows

GEMM_COLS = ["device_id", "op", "m", "n", "k", "batch", "dtype", "layout"]


def _bmm_linear_fp32(n: int = 160) -> pl.DataFrame:
    """gpu-a rows with ops bmm/linear and dtype fp32 only (NeuSight-like)."""
    rows = gemm_rows("test/gpu-a", n, seed=3, power=False)
    return rows.with_columns(pl.Series("op", ["bmm", "linear"] * (n // 2)))


@pytest.fixture(scope="module")
def bmm_model() -> GemmPyfunc:
    train = _bmm_linear_fp32()
    return GemmPyfunc(GemmRegressor(devices=devices_frame(), max_iter=20).fit(train, train["runtime_ms"]))


class Served:
    """A served predictor around a native model (what ``load_predictor`` returns, minus MLflow)."""

    def __init__(self, task: str, native: object, name: str = "hws-gemm", version: str = "1") -> None:
        self.task, self.native, self.name, self.version, self.metrics = task, native, name, version, {}

    def predict(self, queries: pl.DataFrame) -> pl.DataFrame:
        return self.native.predict_frame(queries)  # type: ignore[attr-defined]


def _gemm_query(op: str, dtype: str, m: int = 256) -> pl.DataFrame:
    return pl.DataFrame(
        [{"device_id": "test/gpu-a", "op": op, "m": m, "n": 256, "k": 256, "batch": 1, "dtype": dtype, "layout": None}],
        schema={"device_id": pl.String, "op": pl.String, "m": pl.Int64, "n": pl.Int64, "k": pl.Int64,
                "batch": pl.Int64, "dtype": pl.String, "layout": pl.String},
    )  # fmt: skip


# ----------------------------------------------------------------------------- training domains
def test_gemm_model_records_its_training_domain_per_device(bmm_model: GemmPyfunc) -> None:
    region = bmm_model.training_domain["regions"]["test/gpu-a"]  # type: ignore[index]
    assert region["op"] == {"values": ["bmm", "linear"]} and region["dtype"] == {"values": ["fp32"]}
    assert region["m"]["min"] >= 16 and region["m"]["max"] <= 2048


def test_fp16_gemm_on_a_bmm_linear_fp32_model_warns_and_strict_refuses(bmm_model: GemmPyfunc) -> None:
    dispatch = Dispatch(lambda task: Served(task, bmm_model))  # type: ignore[arg-type,return-value]
    inside = dispatch.predict("gemm", _gemm_query("bmm", "fp32"))
    assert inside.in_domain == [True] and inside.warnings == []

    answer = dispatch.predict("gemm", _gemm_query("gemm", "fp16"))
    assert answer.in_domain == [False]
    assert answer.outputs["runtime_ms"][0] > 0  # still answered, with a warning
    assert len(answer.warnings) == 1
    assert "op='gemm'" in answer.warnings[0] and "dtype='fp16'" in answer.warnings[0]
    assert "trained on bmm, linear" in answer.warnings[0] and "trained on fp32" in answer.warnings[0]

    with pytest.raises(ValueError, match=r"outside the training domain.*op='gemm'"):
        dispatch.predict("gemm", _gemm_query("gemm", "fp16"), strict=True)
    with pytest.raises(ValueError, match=r"m=65536 outside the trained range 16\.\.2048"):
        dispatch.predict("gemm", _gemm_query("bmm", "fp32", m=65536), strict=True)


def test_a_model_saved_before_domains_is_unknown_not_checked(bmm_model: GemmPyfunc) -> None:
    old = pickle.loads(pickle.dumps(bmm_model))
    del old.runtime.training_domain_  # what a model pickled before this change looks like
    answer = Dispatch(lambda task: Served(task, old)).predict(
        "gemm", _gemm_query("gemm", "fp16"), strict=True
    )  # type: ignore[arg-type,return-value]
    assert answer.in_domain == [None] and "unknown" in answer.warnings[0]


def test_domain_rows_are_named_in_query_order_across_devices() -> None:
    frame = pl.concat(
        [_bmm_linear_fp32(), gemm_rows("test/gpu-b", 20, seed=1, power=False)], how="diagonal_relaxed"
    )
    domain = record_domain("gemm", frame)
    q = pl.concat([_gemm_query("gemm", "fp32"), _gemm_query("bmm", "fp32")]).with_columns(
        pl.Series("device_id", ["test/gpu-b", "test/gpu-c"])
    )
    issues = domain_issues(domain, q)
    assert issues[0] == [] and issues[1] == ["device_id='test/gpu-c' is not in the training data"]



def test_a_domain_edited_in_place_is_checked_against_its_new_ranges() -> None:
    """The check expressions are built once per region: an edited region must not reuse them."""
    domain = {"task": "gemm", "regions": {"*": {"m": {"min": 1, "max": 100}, "op": {"values": ["bmm"]}}}}
    q = pl.DataFrame({"m": [50, 500], "op": ["bmm", "linear"]})
    assert domain_issues(domain, q) == [[], ["m=500 outside the trained range 1..100", "op='linear' (trained on bmm)"]]
    domain["regions"]["*"]["m"]["max"] = 1000
    domain["regions"]["*"]["op"]["values"].append("linear")
    assert domain_issues(domain, q) == [[], []]
    domain["regions"]["*"]["m"]["max"] = 10
    assert domain_issues(domain, q) == [["m=50 outside the trained range 1..10"], ["m=500 outside the trained range 1..10"]]

@pytest.fixture
def bmm_champion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bmm/linear fp32 model registered as the hws-gemm champion in this test's own registry."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("HWSURROGATE_MLFLOW_ARTIFACTS", str(tmp_path / "mlruns"))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    train = _bmm_linear_fp32()
    model = GemmPyfunc(GemmRegressor(devices=devices_frame(), max_iter=20).fit(train, train["runtime_ms"]))
    with start_run("gemm", run_name="domain-test"):
        info = log_gemm_model(model, train.head(5))
    version = mlflow.register_model(info.model_uri, "hws-gemm").version
    MlflowClient().set_registered_model_alias("hws-gemm", "champion", version)
    return tmp_path


def test_hws_predict_gemm_warns_on_fp16_and_strict_refuses(bmm_champion: Path) -> None:
    args = ["--device", "test/gpu-a", "--op", "gemm", "--dtype", "fp16", "-m", "256", "-n", "256", "-k", "256",
            "--store", str(bmm_champion / "store"), "--json"]  # fmt: skip
    res = CliRunner().invoke(predict_gemm, args)
    assert res.exit_code == 0, res.output
    assert "warning:" in res.stderr and "dtype='fp16'" in res.stderr
    assert json.loads(res.stdout)["predictions"][0]["in_domain"] is False

    refused = CliRunner().invoke(predict_gemm, [*args, "--strict"])
    assert (
        refused.exit_code != 0
        and "op='gemm'" in refused.output
        and "outside the training domain" in refused.output
    )


def test_service_gemm_warns_and_strict_request_is_a_422(bmm_champion: Path) -> None:
    app = create_app(ServiceConfig(store=bmm_champion / "store", token="tok-12345678"))
    query = {"device": "test/gpu-a", "op": "gemm", "dtype": "fp16", "m": 256, "n": 256, "k": 256}
    with TestClient(app) as client:
        ok = client.post(
            "/v1/predict/gemm", json={"queries": [query, {**query, "op": "bmm", "dtype": "fp32"}]}
        )
        refused = client.post("/v1/predict/gemm", json={"queries": [query], "strict": True})
        typo = client.post("/v1/predict/gemm", json={"queries": [query], "strikt": True})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["in_domain"] is False and body["out_of_domain"] == [0]
    assert any("dtype='fp16'" in w for w in body["warnings"])
    assert refused.status_code == 422 and "op='gemm'" in refused.text
    assert typo.status_code == 422  # unknown top-level fields stay errors


# ----------------------------------------------------------------------------- FPGA: inputs
def _dense(d_in: int = 16, d_out: int = 8) -> str:
    return json.dumps([{"class_name": "Dense", "d_in": [d_in], "d_out": [d_out], "neurons": d_out}])


def _hls4ml_query(**overrides: object) -> pl.DataFrame:
    row = {"model": _dense(), "reuse_factor": 4.0, "precision": "ap_fixed<16,6>", "strategy": "latency",
           "io_type": "io_parallel", "part": "xcu250-figd2104-2L-e"}  # fmt: skip
    rows = [dict(row), {**row, **overrides}]
    return pl.DataFrame(rows, schema={"model": pl.String, "reuse_factor": pl.Float64, "precision": pl.String,
                                      "strategy": pl.String, "io_type": pl.String, "part": pl.String})  # fmt: skip


KERAS_TO_JSON = json.dumps(
    {"class_name": "Sequential", "keras_version": "2.13.1", "backend": "tensorflow",
     "config": {"name": "sequential", "layers": [
         {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 64], "name": "in"}},
         {"class_name": "Dense", "config": {"units": 50, "activation": "relu", "name": "d1"}}]}}
)  # fmt: skip


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("model", KERAS_TO_JSON, "is a Keras model.to_json()"),
        (
            "model",
            json.dumps([{"class_name": "MyCustomLayer", "d_in": [4]}]),
            "'MyCustomLayer', which hls4ml does not convert",
        ),
        (
            "model",
            json.dumps({"layers": [{"class_name": "Dense", "config": {"units": 8}}]}),
            "Keras layer config",
        ),
        ("precision", "float32", "'float32', not an hls4ml fixed-point type"),
        ("precision", "ap_fixed<16>", "not an hls4ml fixed-point type"),
        ("reuse_factor", float("nan"), "must be an integer >= 1"),
        ("reuse_factor", 2.5, "must be an integer >= 1"),
        ("part", "xcvu9p-flga2104-2L-e", "'xcvu9p-flga2104-2L-e', a part this model was not trained on"),
    ],
)
def test_hls4ml_inputs_hls4ml_could_not_build_are_refused_naming_column_and_row(
    column: str, value: object, message: str
) -> None:
    q = _hls4ml_query(**{column: value})
    with pytest.raises(ValueError, match=f"column '{column}' .*{_escape(message)}.*\\(row 1\\)"):
        hls4ml_features(q, parts=("xcu250-figd2104-2L-e",))


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_hls4ml_known_inputs_still_pass() -> None:
    q = _hls4ml_query(precision="fixed<8, 3>", model=json.dumps([{"class_name": "QDense", "d_in": [8], "neurons": 4},
                                                                {"class_name": "qactivation"}]))  # fmt: skip
    assert hls4ml_features(q, parts=("xcu250-figd2104-2L-e",)).height == 2


# ----------------------------------------------------------------------------- FPGA: outputs
def test_physically_consistent_rounds_counts_and_clips_ii() -> None:
    out, notes = physically_consistent(
        {"lut": np.array([10.4, 7.0]), "ff": np.array([3.6, 1.0]), "dsp": np.array([0.57, 2.2]),
         "bram": np.array([1.3, 0.7]), "cycles": np.array([1.55, 20.2]), "ii": np.array([3.66, 0.2])},
        "bram18k",
    )  # fmt: skip
    assert out["dsp"].tolist() == [1.0, 2.0] and out["bram"].tolist() == [1.0, 1.0]
    assert out["cycles"].tolist() == [2.0, 20.0] and out["ii"].tolist() == [3.0, 1.0]
    assert "clipped" in notes[0] and notes[1] == ""
    half, _ = physically_consistent({"bram": np.array([1.3, 0.2])}, "bram36k")
    assert half["bram"].tolist() == [1.5, 0.0]  # 36K reports count an 18K half as 0.5


def _hls4ml_training_rows() -> pl.DataFrame:
    rows = []
    for i in range(12):
        d_in, d_out = 16 * (1 + i % 4), 8 * (1 + i // 4)
        for rf in (1, 4, 16):
            mults = d_in * d_out
            rows.append({"model": _dense(d_in, d_out), "reuse_factor": rf, "precision": "ap_fixed<16,6>",
                         "strategy": "latency", "io_type": "io_parallel", "part": "xcu250-figd2104-2L-e",
                         "bram_unit": "bram18k", "lut": 30.0 * mults / rf, "ff": 20.0 * mults / rf,
                         "dsp": float(math.ceil(mults / rf)), "bram": mults / 700, "cycles": 0.3 * rf,
                         "ii": 0.3 * rf + 2.0})  # fmt: skip
    return pl.DataFrame(rows)


def test_fpga_dispatch_answers_whole_resources_ii_within_latency_and_domain() -> None:
    train = _hls4ml_training_rows()
    targets = ("lut", "ff", "dsp", "bram", "cycles", "ii")
    reg = FpgaRegressor(kind="hls4ml", targets=targets, max_iter=30, min_samples_leaf=2).fit(
        train, train.select(targets)
    )
    assert reg.training_domain_["regions"]["*"]["reuse_factor"] == {"min": 1.0, "max": 16.0}
    served = Served("fpga-hls4ml", FpgaPyfunc("fpga-hls4ml", reg), name="hws-fpga-hls4ml")
    dispatch = Dispatch(lambda task: served)  # type: ignore[arg-type,return-value]
    q = _hls4ml_query(reuse_factor=64.0, strategy="resource")
    answer = dispatch.predict("fpga-hls4ml", q)
    out = answer.outputs
    assert out.columns == ["lut", "ff", "dsp", "bram", "cycles", "ii"]
    for col in ("dsp", "bram", "cycles", "ii"):
        assert all(float(v).is_integer() for v in out[col].to_list()), col
    assert (out["ii"] <= out["cycles"] + 1).all()
    assert any(
        "clipped to cycles + 1" in w for w in answer.warnings
    )  # the training rows have ii > cycles + 1
    assert answer.in_domain == [True, False]
    assert any(
        "reuse_factor=64 outside the trained range 1..16" in w and "strategy='resource'" in w
        for w in answer.warnings
    )
    with pytest.raises(ValueError, match="part"):
        dispatch.predict("fpga-hls4ml", _hls4ml_query(part="xcvu9p-flga2104-2L-e"))


def test_hws_predict_fpga_refuses_a_keras_to_json_layer_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hwsurrogate.surrogates import predict as predict_module

    train = _hls4ml_training_rows()
    targets = ("lut", "ff", "dsp", "bram", "cycles", "ii")
    reg = FpgaRegressor(kind="hls4ml", targets=targets, max_iter=10).fit(train, train.select(targets))
    served = Served("fpga-hls4ml", FpgaPyfunc("fpga-hls4ml", reg), name="hws-fpga-hls4ml")
    monkeypatch.setattr(predict_module.RegistryModels, "__call__", lambda self, task: served)
    path = tmp_path / "designs.json"
    path.write_text(json.dumps(_hls4ml_query(model=KERAS_TO_JSON).to_dicts()))
    res = CliRunner().invoke(predict_fpga, ["--queries", str(path), "--store", str(tmp_path / "store")])
    assert (
        res.exit_code != 0
        and "column 'model' is a Keras model.to_json()" in res.output
        and "(row 1)" in res.output
    )


def test_service_fpga_and_latency_responses_carry_warnings_and_domain(tmp_path: Path) -> None:
    from tests.service.conftest import FakePredictor

    latency = FakePredictor("latency", "hws-latency")
    latency.training_domain = {
        "by": "device_id",
        "regions": {"help/pixel2": {"space": {"values": ["nb201"]}}},
    }  # type: ignore[attr-defined]
    fpga = FakePredictor("fpga-hls4ml", "hws-fpga-hls4ml")
    fpga.training_domain = record_domain("fpga-hls4ml", _hls4ml_training_rows())  # type: ignore[attr-defined]
    models = ServedModels({"latency": latency, "fpga-hls4ml": fpga})
    app = create_app(ServiceConfig(store=tmp_path / "store", token="tok-12345678", batching=False))
    app.dependency_overrides[get_models] = lambda: models
    key = archspaces.nb201_from_codes([1, 2, 3, 4, 1, 2])
    design = {"type": "hls4ml", "layers": [{"class_name": "Dense", "d_in": [16], "d_out": [8], "neurons": 8}],
              "config": {"reuse_factor": 64}}  # fmt: skip
    with TestClient(app) as client:
        lat = client.post(
            "/v1/predict/latency",
            json={"device": "help/pixel2", "space": "nb201", "archs": [{"arch_key": key}]},
        )
        fp = client.post("/v1/predict/fpga", json={"designs": [design]})
        strict = client.post("/v1/predict/fpga", json={"designs": [design], "strict": True})
    assert lat.status_code == 200, lat.text
    assert lat.json()["warnings"] == [] and lat.json()["in_domain"] is True
    assert fp.status_code == 200, fp.text
    assert fp.json()["in_domain"] is False and fp.json()["out_of_domain"] == [0]
    assert any("reuse_factor=64" in w for w in fp.json()["warnings"])
    assert strict.status_code == 422 and "reuse_factor=64" in strict.text


# ----------------------------------------------------------------------------- held-out adaptation
def test_gemm_adaptation_reports_a_held_out_error_beside_the_fit_error(
    bmm_model: GemmPyfunc, tmp_path: Path
) -> None:
    meas = gemm_rows("test/gpu-new", 10, seed=5, power=False).select(
        "op", "m", "n", "k", "batch", "dtype", pl.col("runtime_ms") * 1.5
    )
    desc = (
        devices_frame()
        .filter(pl.col("device_id") == "test/gpu-new")
        .select("peak_fp32_gflops", "peak_fp16_gflops", "mem_bw_gbs", "cores", "l2_mb", "clock_mhz")
    )
    meas = pl.concat([meas, pl.concat([desc] * meas.height)], how="horizontal")
    served = Served("gemm", bmm_model)
    served.model = bmm_model  # type: ignore[attr-defined]
    record, path = adapt_gemm("lab/gpu-x", meas, store_root=tmp_path, predictor=served)
    assert record.heldout_method == "5-fold" and record.heldout_mape is not None
    assert json.loads(path.read_text())["heldout_mape"] == record.heldout_mape

    # the same number by hand: re-adapt without each fold's shapes, predict them
    q = meas.with_columns(pl.lit("lab/gpu-x").alias("device_id"))
    folds, _ = heldout_folds(q.height, 3, max_folds=5)
    assert folds is not None and sorted(np.bincount(folds)) == [2] * 5
    y, pred = q["runtime_ms"].to_numpy(), np.zeros(q.height)
    for f in range(5):
        out = pl.Series(folds == f)
        corr, _, _ = adapt_model(bmm_model, "lab/gpu-x", q.filter(~out), q.head(1))
        pred[folds == f] = predict_with_correction(
            bmm_model.runtime, corr, q.filter(out), record.descriptor_frame()
        )
    assert record.heldout_mape == pytest.approx(mape(y, pred), rel=1e-9)
    assert record.heldout_mape > record.fit_mape_after  # the fit error flatters the adaptation
    assert record.domain is not None and record.domain["regions"]["lab/gpu-x"]["op"] == {"values": ["gemm"]}


def test_too_few_shapes_have_no_held_out_error_rather_than_a_fit_error(
    bmm_model: GemmPyfunc, tmp_path: Path
) -> None:
    meas = gemm_rows("test/gpu-new", 3, seed=5, power=False).select(
        "op", "m", "n", "k", "batch", "dtype", "runtime_ms"
    )
    desc = (
        devices_frame()
        .filter(pl.col("device_id") == "test/gpu-new")
        .select("peak_fp32_gflops", "mem_bw_gbs", "cores")
    )
    served = Served("gemm", bmm_model)
    served.model = bmm_model  # type: ignore[attr-defined]
    meas = pl.concat([meas, pl.concat([desc] * 3)], how="horizontal")
    record, _ = adapt_gemm("lab/gpu-y", meas, store_root=tmp_path, predictor=served)
    assert record.heldout_mape is None and "too few measurements" in record.heldout_method


COST = np.array([0.0, 0.05, 0.1, 0.3, 0.08])


def _nb201(n: int, base: float) -> tuple[list[str], np.ndarray]:
    codes = np.random.default_rng(0).integers(0, 5, size=(n * 2, 6))
    keys = list(dict.fromkeys(archspaces.nb201_from_codes(c) for c in codes))[:n]
    ops = [archspaces.parse_nb201(k) for k in keys]
    lat = np.exp(
        base + np.array([[COST[list(archspaces.NB201_OPS).index(o)] for o in row] for row in ops]).sum(1)
    )
    return keys, lat


def test_latency_adaptation_reports_held_out_mape_and_spearman_per_space(tmp_path: Path) -> None:
    keys, _ = _nb201(80, 0.0)
    frame = pl.concat(
        pl.DataFrame({"device_id": f"synth/src{i}", "space": "nb201", "arch_key": keys,
                      "latency_ms": _nb201(80, 0.5 + 0.4 * i)[1]})
        for i in range(4)
    )  # fmt: skip
    cfg = FewShotConfig(meta_draws=1, meta_query=40, meta_k=10, tau_grid=(0.01,), noise_grid=(0.1,), gnn=())
    registry = AdaptedDeviceRegistry(tmp_path)
    model = FewShotLatencyRegressor(cfg).fit(frame)
    registry.export_model(model, "1", champion=True)
    truth = _nb201(80, 1.1)[1] * np.exp(np.random.default_rng(1).normal(0, 0.05, 80))
    device = registry.adapt(
        "me/board", pl.DataFrame({"space": "nb201", "arch_key": keys[:12], "latency_ms": truth[:12]})
    )
    held = device.heldout["per_space"]["nb201"]
    assert device.heldout["method"] == "5-fold" and held["n"] == 12
    # by hand through the model's public adapt/predict
    folds, _ = heldout_folds(12, cfg.min_measurements, max_folds=5)
    assert folds is not None
    pred, y = np.zeros(12), truth[:12]
    for f in range(5):
        fit, out = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        head = model.adapt("nb201", [keys[i] for i in fit], y[fit])
        pred[out] = model.predict(head, [keys[i] for i in out])
    assert held["mape"] == pytest.approx(mape(y, pred), rel=1e-9)
    assert -1.0 <= held["spearman"] <= 1.0
    assert registry.get("me/board").heldout == device.heldout  # persisted
