"""wa-hls4ml JSON records: parsing, stages and BRAM units, streaming, bad input, and the shared sample."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from hwsurrogate.datasets.importers import import_source, load_source
from hwsurrogate.datasets.importers import wa_hls4ml as wa
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import SourceFormatError

from .fpga_helpers import run_hws, snapshot

DENSE_RECORD = {
    "meta_data": {
        "uuid": "u-dense",
        "model_name": "/out/raw_reports/dense_16_8_4b",
        "artifacts_file": "u-dense.tar.gz",
    },
    "model_config": [
        {
            "class_name": "InputLayer",
            "input_shape": [[None, 16]],
            "output_shape": [[None, 16]],
            "reuse_factor": 64,
        },
        {
            "class_name": "QDense",
            "input_shape": [None, 16],
            "output_shape": [None, 8],
            "neurons": 8,
            "parameters": 136,
            "use_bias": True,
            "reuse_factor": 32,
        },
        {
            "class_name": "QActivation",
            "input_shape": [None, 8],
            "output_shape": [None, 8],
            "activation": "quantized_relu(4,1)",
            "reuse_factor": 64,
        },
        {
            "class_name": "QDense",
            "input_shape": [None, 8],
            "output_shape": [None, 2],
            "neurons": 2,
            "reuse_factor": 16,
        },
    ],  # fmt: skip
    "hls_config": {
        "Model": {"Precision": {"default": "fixed<16,6>"}, "ReuseFactor": 64, "Strategy": "Resource"},
        "LayerName": {
            "q_dense_1": {"Precision": {"weight": "fixed<4,2,TRN,WRAP,0>", "result": "auto"}},
            "q_dense_1_linear": {"Precision": {"table": "fixed<18,8>"}},
            "q_dense_2": {"Precision": {"weight": "auto"}},
            "q_dense_2_alpha": {"Precision": "auto"},
        },
    },
    "resource_report": {"bram": "17.5", "dsp": "3", "ff": "2100", "lut": "5300", "uram": "0"},
    "hls_resource_report": {"bram": "35", "dsp": "4", "ff": "2500", "lut": "8100", "uram": "0"},
    "latency_report": {
        "cycles_min": "120",
        "cycles_max": "125",
        "interval_min": "64",
        "interval_max": "66",
        "target_clock": "5.00",
        "estimated_clock": "4.2",
    },  # fmt: skip
    "target_part": "xcu250-figd2104-2L-e",
    "vivado_version": "2023.2",
    "hls4ml_version": "0.8.1",
}

CONV_RECORD = {  # 2_20-style id, no hls_resource_report, empty post-synthesis report, residual Add
    "meta_data": {"model_id": "m-conv", "model_name": "conv_net"},
    "model_config": [
        {
            "class_name": "QConv1D",
            "input_shape": [None, 32, 3],
            "output_shape": [None, 30, 4],
            "filters": 4,
            "kernel_size": [3],
            "strides": [1],
            "padding": "valid",
            "reuse_factor": 12,
        },
        {"class_name": "Add", "input_shape": [[None, 30, 4], [None, 30, 4]], "output_shape": [None, 30, 4]},
    ],  # fmt: skip
    "hls_config": {"Model": {"Precision": "ap_fixed<8, 3>", "ReuseFactor": 12, "Strategy": "Latency"}},
    "resource_report": {},
    "latency_report": {"cycles_min": "900", "cycles_max": "900", "interval_min": "31", "interval_max": "31"},
    "target_part": "xcu200-fsgd2104-2-e",
    "backend_version": "2019.1",
}


def write_records(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1))
    return path


def rows_by_stage(frame: pl.DataFrame, design: str) -> dict[str, dict]:
    return {r["stage"]: r for r in frame.filter(pl.col("design_id") == design).iter_rows(named=True)}


@pytest.mark.parametrize(
    ("spec", "bits"),
    [
        ("fixed<16,6>", (16, 6)),
        ("ap_fixed<8, 3>", (8, 3)),
        ("fixed<4,2,TRN,WRAP,0>", (4, 2)),
        ("ufixed<8,1,RND_CONV,SAT,0>", (8, 1)),
        ({"default": "fixed<16,6>"}, (16, 6)),
        ("ap_int<8>", (8, 8)),
        ("auto", None),
        (None, None),
    ],
)
def test_parse_precision_reads_total_and_integer_bits(spec: object, bits: tuple[int, int] | None) -> None:
    assert wa.parse_precision(spec) == bits


def test_two_records_give_stages_bram_units_and_targets(tmp_path: Path) -> None:
    path = write_records(tmp_path / "raw" / "test" / "test_dense_merged.json", [DENSE_RECORD, CONV_RECORD])
    df = wa.load(tmp_path)["fpga"]
    assert df.height == 3  # dense: post_synth + hls_estimate; conv: hls_estimate only (empty resource_report)
    dense = rows_by_stage(df, "u-dense")
    post, hls = dense["post_synth"], dense["hls_estimate"]
    assert (post["lut"], post["ff"], post["dsp"], post["bram"], post["bram_unit"]) == (
        5300,
        2100,
        3,
        17.5,
        "bram36k",
    )
    assert (hls["lut"], hls["bram"], hls["bram_unit"]) == (8100, 35, "bram18k")
    assert (hls["cycles"], hls["cycles_max"], hls["ii"], hls["clock_ns"]) == (120, 125, 64, 5.0)
    assert post["cycles"] is None  # no post-synthesis latency exists
    assert (post["tool"], hls["tool"], hls["tool_version"]) == ("vivado", "vitis_hls", "2023.2")
    assert (hls["strategy"], hls["io_type"], hls["reuse_factor"], hls["precision"]) == (
        "resource", "io_parallel", 64, "fixed<16,6>",
    )  # fmt: skip
    assert hls["kernel"] == "dense_16_8_4b"
    assert json.loads(hls["extra"])["ii_max"] == 66
    assert json.loads(hls["config"])["hls_config"]["Model"]["ReuseFactor"] == 64
    layers = json.loads(hls["model"])
    assert [layer["class_name"] for layer in layers] == ["InputLayer", "QDense", "QActivation", "QDense"]
    assert layers[0]["d_in"] == [16] and layers[1]["d_out"] == [8]
    assert (layers[1]["weight_bits"], layers[1]["weight_int_bits"], layers[1]["reuse_factor"]) == (4, 2, 32)
    assert (layers[3]["weight_bits"], layers[3]["weight_int_bits"]) == (16, 6)  # 'auto' falls back to Model
    assert "weight_bits" not in layers[2]
    conv = rows_by_stage(df, "m-conv")
    assert set(conv) == {"hls_estimate"}
    row = conv["hls_estimate"]
    assert (row["io_type"], row["strategy"], row["tool"], row["lut"], row["bram_unit"]) == (
        "io_stream", "latency", "vivado_hls", None, None,
    )  # fmt: skip
    assert row["cycles"] == 900
    conv_layers = json.loads(row["model"])
    assert conv_layers[1]["d_in_all"] == [[30, 4], [30, 4]]
    assert conv_layers[0]["weight_bits"] == 8 and conv_layers[0]["kernel_size"] == [3]
    assert json.loads(row["extra"])["file"] == path.name


def test_streaming_reader_matches_json_load_across_chunk_boundaries(tmp_path: Path, monkeypatch) -> None:
    records = []
    for i in range(7):
        r = copy.deepcopy(DENSE_RECORD)
        r["meta_data"]["uuid"] = f"u{i}"
        records.append(r)
    path = write_records(tmp_path / "many.json", records)
    monkeypatch.setattr(wa, "_CHUNK", 97)  # records straddle many reads
    assert list(wa.iter_records(path)) == json.loads(path.read_text())
    whole = wa.read_records([path])
    monkeypatch.setattr(wa, "_BATCH_ROWS", 3)  # rows become frames a few at a time
    assert wa.read_records([path]).equals(whole) and whole.height == 14


def test_json_lines_and_gzip_give_the_same_rows_as_an_array(tmp_path: Path) -> None:
    array = write_records(tmp_path / "a" / "recs.json", [DENSE_RECORD, CONV_RECORD])
    lines = tmp_path / "b" / "recs.jsonl.gz"
    lines.parent.mkdir()
    with gzip.open(lines, "wt") as fh:
        fh.write("\n".join(json.dumps(r) for r in (DENSE_RECORD, CONV_RECORD)) + "\n")
    cols = ["design_id", "stage", "lut", "bram", "cycles", "model"]
    assert wa.load(array)["fpga"].select(cols).equals(wa.load(lines)["fpga"].select(cols))


def test_truncated_file_names_the_file_and_record(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    text = json.dumps([DENSE_RECORD, CONV_RECORD])
    path.write_text(text[: len(text) - 40])
    with pytest.raises(SourceFormatError, match=r"cut\.json: record 1 .*truncated"):
        wa.load(path)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.update(resources_report=r.pop("resource_report")), "resource_report"),
        (lambda r: r["meta_data"].pop("uuid"), "meta_data.uuid"),
        (lambda r: r["resource_report"].pop("lut"), "resource_report.lut"),
        (lambda r: r["resource_report"].update(lut="NaN"), "resource_report.lut"),
        (lambda r: r["hls_resource_report"].update(ff="-12"), "hls_resource_report.ff"),
        (lambda r: r["latency_report"].update(cycles_min="many"), "latency_report.cycles_min"),
        (lambda r: r.pop("target_part"), "target_part"),
    ],
)
def test_bad_record_raises_naming_file_record_and_field(tmp_path: Path, mutate, field: str) -> None:
    bad = copy.deepcopy(DENSE_RECORD)
    mutate(bad)
    path = write_records(tmp_path / "bad.json", [CONV_RECORD, bad])
    with pytest.raises(SourceFormatError, match=rf"bad\.json: record 1\b.*'{field}'"):
        wa.load(path)


def test_duplicate_design_id_is_rejected(tmp_path: Path) -> None:
    path = write_records(tmp_path / "dup.json", [DENSE_RECORD, DENSE_RECORD])
    with pytest.raises(SourceFormatError, match="design id 'u-dense' already seen"):
        wa.load(path)


def test_cli_bad_import_exits_nonzero_and_leaves_store_unchanged(tmp_path: Path, capsys) -> None:
    store_dir = tmp_path / "store"
    good = write_records(tmp_path / "good" / "recs.json", [DENSE_RECORD])
    code, _ = run_hws(
        ["data", "import", "wa-hls4ml", "--from", str(good.parent), "--store", str(store_dir)], capsys
    )
    assert code == 0
    before = snapshot(store_dir)
    bad = copy.deepcopy(DENSE_RECORD)
    bad["resource_report"]["dsp"] = "nan"
    bad_dir = tmp_path / "bad"
    write_records(bad_dir / "recs.json", [bad])
    code, out = run_hws(
        ["data", "import", "wa-hls4ml", "--from", str(bad_dir), "--store", str(store_dir)], capsys
    )
    assert code != 0
    assert "recs.json" in out and "resource_report.dsp" in out
    assert snapshot(store_dir) == before
    assert DatasetStore(store_dir).read("fpga").height == 2


# ---------------------------------------------------------------------------- the shared sample
def test_shared_sample_rows_per_stage(data_dir: Path) -> None:
    _, frames = load_source("wa-hls4ml", data_dir / "fpga" / "wa-hls4ml")
    df = frames["fpga"]
    counts = dict(df.group_by("stage").len().iter_rows())
    # 40 records; 4 have an empty resource_report (3 of them have no report at all)
    assert counts == {"post_synth": 36, "hls_estimate": 37}
    assert df["design_id"].n_unique() == 37
    assert (df.filter(pl.col("stage") == "post_synth")["bram_unit"] == "bram36k").all()
    conv1d_empty = rows_by_stage(df, "80725374-fb7e-4cc3-8891-90ca18c313b8")
    assert set(conv1d_empty) == {"hls_estimate"} and conv1d_empty["hls_estimate"]["lut"] == 51648


def test_shared_sample_targets_match_the_flat_csv(data_dir: Path) -> None:
    root = data_dir / "fpga" / "wa-hls4ml"
    df = wa.load(root)["fpga"]
    flat = pl.read_csv(root / "derived" / "samples_flat.csv", infer_schema_length=None)
    post = df.filter(pl.col("stage") == "post_synth").join(flat, left_on="design_id", right_on="sample_id")
    assert post.height == 36
    assert (post["lut"] == post["lut_right"]).all() and (post["bram"] == post["bram_right"]).all()
    hls = df.filter(pl.col("stage") == "hls_estimate").join(flat, left_on="design_id", right_on="sample_id")
    assert hls.select((pl.col("cycles") == pl.col("cycles_min")).all()).item()
    assert hls.select(pl.col("io_type").eq_missing(pl.col("io_type_right")).all()).item()
    assert hls.select(pl.col("lut").eq_missing(pl.col("hls_lut")).all()).item()


def test_shared_sample_layer_precision_matches_layers_flat(data_dir: Path) -> None:
    root = data_dir / "fpga" / "wa-hls4ml"
    flat = pl.read_csv(root / "derived" / "layers_flat.csv", infer_schema=False).select(
        "sample_id", pl.col("layer_idx").cast(pl.Int64), pl.col("weight_bits").cast(pl.Int64)
    )
    mine = []
    for path in wa._json_files(root):
        for i, rec in enumerate(wa.iter_records(path)):
            ctx = wa._Ctx(path, i)
            layers = wa._layers(rec, rec["hls_config"]["Model"].get("Precision"), ctx)
            did = rec["meta_data"].get("uuid") or rec["meta_data"]["model_id"]
            mine += [(did, j, layer.get("weight_bits")) for j, layer in enumerate(layers)]
    joined = flat.join(
        pl.DataFrame(mine, schema=["sample_id", "layer_idx", "mine"], orient="row"),
        on=["sample_id", "layer_idx"],
    )
    assert joined.height == 433
    known = joined.filter(pl.col("weight_bits").is_not_null())
    assert (known["weight_bits"] == known["mine"]).all()
    # where the flat file has no bits (2_20: no LayerName) the README's fallback is Model.Precision
    samples = pl.read_csv(root / "derived" / "samples_flat.csv", infer_schema_length=None)
    fallback = joined.filter(pl.col("weight_bits").is_null() & pl.col("mine").is_not_null()).join(
        samples.select("sample_id", "family", "model_precision_total_bits"), on="sample_id"
    )
    assert fallback.height == 58 and (fallback["family"] == "2_20").all()
    assert (fallback["mine"] == fallback["model_precision_total_bits"]).all()


def test_shared_sample_imports_into_the_store(data_dir: Path, store: DatasetStore) -> None:
    report = import_source("wa-hls4ml", data_dir / "fpga" / "wa-hls4ml", store=store)
    assert report.rows == {"fpga": 73}
    assert store.read("fpga", source="wa-hls4ml")["measurement_id"].n_unique() == 73
