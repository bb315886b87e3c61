"""``hws train fewshot`` and ``hws adapt`` end to end on a tiny synthetic store (MLflow in a temp DB)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from hwsurrogate.cli.adapt import adapt_latency
from hwsurrogate.cli.train import train_fewshot
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.surrogates.fewshot import MODEL_NAME
from hwsurrogate.surrogates.registry.adapted import AdaptedDeviceRegistry

from .test_fewshot import KEYS, TARGET_MIX, _latency, _support, _training_frame


def _store_rows(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        batch=pl.lit(1),
        precision=pl.lit("fp32"),
        measured=pl.lit(True),
        source=pl.lit("synth"),
        origin=pl.lit("tests"),
        measurement_id=pl.concat_str([pl.col("device_id"), pl.col("arch_key")], separator="|"),
    )


@pytest.fixture
def trained_store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    DatasetStore(root).append("latency", _store_rows(_training_frame()), partition="synth")
    result = CliRunner().invoke(
        train_fewshot,
        # --gnn none: the GNN encoder's meta-training has its own tests (test_fewshot_gnn.py)
        ["--spaces", "nb201", "--gnn", "none", "--splits", str(tmp_path / "none.json"), "--store", str(root)],
    )
    assert result.exit_code == 0, result.output
    return root


def test_train_registers_a_champion_and_exports_it_for_adapt(trained_store: Path) -> None:
    from mlflow import MlflowClient

    from hwsurrogate.surrogates.registry.tracking import configure_mlflow

    configure_mlflow()
    champ = MlflowClient().get_model_version_by_alias(MODEL_NAME, "champion")
    reg = AdaptedDeviceRegistry(trained_store)
    assert reg.champion_version() == str(champ.version)
    assert (reg.model_dir / f"{champ.version}.npz").is_file()


def test_adapt_cli_prints_a_summary_and_remembers_the_device(trained_store: Path, tmp_path: Path) -> None:
    keys, y = _support(20)
    csv = tmp_path / "m.csv"
    pl.DataFrame({"space": "nb201", "arch_key": keys, "latency_ms": y}).write_csv(csv)
    result = CliRunner().invoke(
        adapt_latency, ["--device", "board/x", "--measurements", str(csv), "--store", str(trained_store)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["device_id"] == "board/x" and summary["spaces"] == {"nb201": 20}
    reg = AdaptedDeviceRegistry(trained_store)
    pred = reg.predict_latency("board/x", "nb201", KEYS)
    truth = _latency(KEYS, TARGET_MIX, base=1.2)
    assert float(np.median(np.abs(pred - truth) / truth)) < 0.05


def test_adapt_cli_from_store_rows_and_bad_file_errors(trained_store: Path, tmp_path: Path) -> None:
    keys, y = _support(12)
    rows = _store_rows(
        pl.DataFrame({"device_id": "local/box-cpu", "space": "nb201", "arch_key": keys, "latency_ms": y})
    )
    DatasetStore(trained_store).append("latency", rows, partition="collector")
    ok = CliRunner().invoke(
        adapt_latency, ["--device", "local/box-cpu", "--measurements", "store", "--store", str(trained_store)]
    )
    assert ok.exit_code == 0, ok.output
    bad = tmp_path / "bad.csv"
    bad.write_text("space,arch_key\nnb201,x\n")
    res = CliRunner().invoke(
        adapt_latency, ["--device", "board/y", "--measurements", str(bad), "--store", str(trained_store)]
    )
    assert res.exit_code != 0 and "latency_ms" in res.output
    res = CliRunner().invoke(
        adapt_latency,
        ["--device", "board/y", "--measurements", str(tmp_path / "no.csv"), "--store", str(trained_store)],
    )
    assert res.exit_code != 0 and "does not exist" in res.output
    assert AdaptedDeviceRegistry(trained_store).list() == ["local/box-cpu"]


def test_registered_pyfunc_predicts_adapted_devices_like_the_registry(
    trained_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import pandas as pd

    from hwsurrogate.surrogates.registry.tracking import configure_mlflow

    keys, y = _support(20)
    reg = AdaptedDeviceRegistry(trained_store)
    reg.adapt("board/z", pl.DataFrame({"space": "nb201", "arch_key": keys, "latency_ms": y}))
    monkeypatch.setenv("HWSURROGATE_STORE", str(tmp_path / "elsewhere"))  # params must select the store
    configure_mlflow()
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    queries = pd.DataFrame({"device_id": "board/z", "space": "nb201", "arch_key": KEYS[:25]})
    out = model.predict(queries, params={"store": str(trained_store)})
    np.testing.assert_allclose(
        out["latency_ms"].to_numpy(), reg.predict_latency("board/z", "nb201", KEYS[:25])
    )


def test_registered_pyfunc_adapts_statelessly_on_measured_rows_like_adapt(trained_store: Path) -> None:
    """Rows with ``latency_ms`` adapt the model in the call (nothing stored) and every row of that
    device is predicted as ``hws adapt`` + predict would; the logged input example is such a call."""
    import mlflow
    import pandas as pd

    from hwsurrogate.surrogates.registry.tracking import configure_mlflow

    configure_mlflow()
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    example = model.input_example
    assert example["latency_ms"].notna().sum() >= 5 and example["latency_ms"].isna().sum() == 3
    assert np.isfinite(model.predict(example)["latency_ms"].to_numpy()).all()
    keys, y = _support(20)
    inline = pd.DataFrame({"device_id": "board/inline", "space": "nb201", "arch_key": [*keys, *KEYS[:5]],
                           "latency_ms": [*y, *[None] * 5]})  # fmt: skip
    out = model.predict(inline)["latency_ms"].to_numpy()
    reg = AdaptedDeviceRegistry(trained_store)
    reg.adapt("board/stored", pl.DataFrame({"space": "nb201", "arch_key": keys, "latency_ms": y}))
    np.testing.assert_allclose(out[-5:], reg.predict_latency("board/stored", "nb201", KEYS[:5]), rtol=1e-9)
    assert "board/inline" not in reg.list()  # nothing stored
    bad = inline.assign(latency_ms=[-1.0, *y[1:], *[None] * 5])
    with pytest.raises(Exception, match="latency_ms"):
        model.predict(bad)


def test_adapt_pins_the_base_model_version_and_records_it(trained_store: Path, tmp_path: Path) -> None:
    reg = AdaptedDeviceRegistry(trained_store)
    champion = reg.champion_version()
    model, _ = reg.load_model()
    reg.export_model(model, "77", champion=False)  # a second local version, not the champion
    keys, y = _support(12)
    csv = tmp_path / "m.csv"
    pl.DataFrame({"space": "nb201", "arch_key": keys, "latency_ms": y}).write_csv(csv)
    args = ["--device", "board/v", "--measurements", str(csv), "--store", str(trained_store)]
    res = CliRunner().invoke(adapt_latency, [*args, "--version", "77"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["model"] == f"{MODEL_NAME} v77"
    assert AdaptedDeviceRegistry(trained_store).get("board/v").model_version == "77"
    res = CliRunner().invoke(adapt_latency, ["--device", "board/w", *args[2:]])
    assert json.loads(res.output)["model"] == f"{MODEL_NAME} v{champion}"


def test_adapt_with_an_unknown_version_fails_cleanly_and_stores_nothing(
    trained_store: Path, tmp_path: Path
) -> None:
    keys, y = _support(12)
    csv = tmp_path / "m.csv"
    pl.DataFrame({"space": "nb201", "arch_key": keys, "latency_ms": y}).write_csv(csv)
    res = CliRunner().invoke(
        adapt_latency,
        [
            "--device",
            "board/q",
            "--measurements",
            str(csv),
            "--store",
            str(trained_store),
            "--version",
            "999",
        ],
    )
    assert res.exit_code != 0 and "999" in res.output and "Traceback" not in res.output
    assert AdaptedDeviceRegistry(trained_store).list() == []


def test_top_level_hws_adapt_passes_version_through(
    trained_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hwsurrogate.cli.adapt import adapt

    reg = AdaptedDeviceRegistry(trained_store)
    reg.export_model(reg.load_model()[0], "78", champion=False)
    keys, y = _support(12)
    csv = tmp_path / "m.csv"
    pl.DataFrame({"space": "nb201", "arch_key": keys, "latency_ms": y}).write_csv(csv)
    monkeypatch.setenv("HWSURROGATE_STORE", str(trained_store))
    res = CliRunner().invoke(adapt, ["--device", "board/t", "--measurements", str(csv), "--version", "78"])
    assert res.exit_code == 0, res.output
    assert AdaptedDeviceRegistry(trained_store).get("board/t").model_version == "78"
    res = CliRunner().invoke(
        adapt, ["--task", "gemm", "--device", "gpu/x", "--measurements", str(csv), "--version", "78"]
    )
    assert res.exit_code != 0 and "--version" in res.output


def test_promotion_metric_holds_out_validation_devices_and_averages_20_and_10_measurements(
    tmp_path: Path,
) -> None:
    from hwsurrogate.surrogates.fewshot import FewShotConfig, FewShotLatencyRegressor, evaluate_help_protocol
    from hwsurrogate.surrogates.training.fewshot import _sources_and_validation, _validation_score

    frame = _training_frame().with_columns(pl.col("arch_index").cast(pl.Int64))
    raw = {
        "help": {
            "nasbench201": {
                "meta_train": ["src0", "src1", "src2", "src3"], "meta_valid": ["src4"], "meta_test": ["x"],
                "num_meta_train_sample": 150,
            }
        }
    }  # fmt: skip
    frame = frame.with_columns(pl.col("device_id").str.replace("synth/", "help/"))
    (tmp_path / "s.json").write_text(json.dumps(raw))
    src, val = _sources_and_validation(frame, ["nb201"], str(tmp_path / "s.json"), "all")
    assert "help/src4" not in src["nb201"] and val["nb201"] == (["help/src4"], 150)
    cfg = FewShotConfig(meta_draws=1, meta_query=100, tau_grid=(0.01,), noise_grid=(0.1,), gnn=())
    model = FewShotLatencyRegressor(cfg).fit(frame, devices=src)
    score = _validation_score(model, frame, val, log=False)
    expected = [
        evaluate_help_protocol(model, frame, "nb201", ["help/src4"], n_pool=150, seeds=range(5),
                               n_random=r, use_references=True)["help/src4"]["spearman"]
        for r in (10, 0)
    ]  # fmt: skip
    assert score == pytest.approx(float(np.mean(expected)))
    # a model meta-trained on the validation device is not scored on it
    leaky = FewShotLatencyRegressor(cfg).fit(frame)
    assert _validation_score(leaky, frame, val, log=False) is None
