"""wa-hls4ml-search dense sweep: successful and failed runs, design ids, bad CSVs, the shared files."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from hwsurrogate.datasets.importers import wa_hls4ml_dense as dense
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import SourceFormatError

from .fpga_helpers import run_hws, snapshot

HEADER = (
    "model_name,d_in,d_out,prec,model_file,rf,strategy,hls_synth_success,TargetClockPeriod_hls,"
    "EstimatedClockPeriod_hls,BestLatency_hls,WorstLatency_hls,IntervalMin_hls,IntervalMax_hls,FF_hls,LUT_hls,"
    "BRAM_18K_hls,DSP_hls,URAM_hls,AvailableBRAM_18K_hls,AvailableDSP_hls,AvailableFF_hls,AvailableLUT_hls,"
    "AvailableURAM_hls"
)
AVAIL = "5376.0,12288.0,3456000.0,1728000.0,1280.0"
LATENCY_ROWS = [
    f"dense_32_32_2b,32,32,2,pregen_models/dense_32_32_2b.h5,1,latency,True,5.0,3.705,0.0,0.0,1.0,1.0,514.0,7147.0,0.0,0.0,0.0,{AVAIL}",
    f"dense_32_32_2b,32,32,2,pregen_models/dense_32_32_2b.h5,512,latency,True,5.0,3.705,0.0,0.0,1.0,1.0,514.0,7147.0,0.0,0.0,0.0,{AVAIL}",
    "dense_256_256_14b,256,256,14,pregen_models/dense_256_256_14b.h5,1,latency,False,,,,,,,,,,,,,,,,",
]
RESOURCE_ROWS = [
    f"dense_32_32_2b,32,32,2,pregen_models/dense_32_32_2b.h5,512,resource,True,5.0,3.344,513.0,514.0,512.0,512.0,641.0,6750.0,2.0,0.0,0.0,{AVAIL}",
]


def write_sweep(root: Path, latency: list[str] = LATENCY_ROWS, resource: list[str] = RESOURCE_ROWS) -> Path:
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "results_latency.csv").write_text("\n".join([HEADER, *latency]) + "\n")
    (raw / "results_resource.csv").write_text("\n".join([HEADER, *resource]) + "\n")
    return root


def test_tiny_sweep_keeps_failed_runs_with_null_targets(tmp_path: Path) -> None:
    df = dense.load(write_sweep(tmp_path))["fpga"]
    assert df.height == 4 and df["valid"].to_list() == [True, True, False, True]
    ok = df.filter(pl.col("design_id") == "resource/dense_32_32_2b/rf512").row(0, named=True)
    assert (ok["lut"], ok["ff"], ok["bram"], ok["bram_unit"], ok["cycles"], ok["cycles_max"], ok["ii"]) == (
        6750, 641, 2, "bram18k", 513, 514, 512,
    )  # fmt: skip
    assert (ok["part"], ok["tool"], ok["tool_version"], ok["clock_ns"], ok["stage"]) == (
        "xcu250-figd2104-2L-e", "vivado_hls", "2020.1", 5.0, "hls_estimate",
    )  # fmt: skip
    assert json.loads(ok["model"]) == [
        {"class_name": "QDense", "d_in": [32], "d_out": [32], "neurons": 32, "use_bias": True, "parameters": 1056,
         "reuse_factor": 512, "weight_precision": "fixed<2,1>", "weight_bits": 2, "weight_int_bits": 1}
    ]  # fmt: skip
    failed = df.filter(~pl.col("valid")).row(0, named=True)
    assert failed["design_id"] == "latency/dense_256_256_14b/rf1"
    assert all(failed[c] is None for c in ("lut", "ff", "dsp", "bram", "cycles", "ii", "bram_unit"))
    assert failed["clock_ns"] == 5.0
    lat = df.filter(pl.col("strategy") == "latency", pl.col("valid"))
    assert lat["design_id"].to_list() == ["latency/dense_32_32_2b/rf1", "latency/dense_32_32_2b/rf512"]
    assert json.loads(lat["extra"][0])["ii_max"] == 1.0


@pytest.mark.parametrize(
    ("row", "match"),
    [
        (LATENCY_ROWS[0].replace("7147.0", "nan"), "column 'LUT_hls' is NaN"),
        (LATENCY_ROWS[0].replace("514.0", "-514.0", 1), "column 'FF_hls' is NaN, infinite or negative"),
        (LATENCY_ROWS[0].replace("7147.0", "lots"), "column 'LUT_hls' is not a number"),
        (
            LATENCY_ROWS[0].replace(",7147.0,", ",,"),
            r"successful run dense_32_32_2b rf=1 has empty \['LUT_hls'\]",
        ),
        (LATENCY_ROWS[0].replace("latency,True", "latency,maybe"), "'hls_synth_success' must be True/False"),
        (
            LATENCY_ROWS[0].replace("dense_32_32_2b,32,32", "dense_32_32_2b,32,64"),
            "does not match d_in=32, d_out=64",
        ),
    ],
)
def test_bad_values_name_the_file_and_column(tmp_path: Path, row: str, match: str) -> None:
    write_sweep(tmp_path, latency=[row])
    with pytest.raises(SourceFormatError, match=match) as info:
        dense.load(tmp_path)
    assert "results_latency.csv" in str(info.value)


def test_renamed_column_and_duplicate_run_are_rejected(tmp_path: Path) -> None:
    raw = write_sweep(tmp_path) / "raw" / "results_resource.csv"
    raw.write_text(raw.read_text().replace("LUT_hls", "LUTs_hls", 1))
    with pytest.raises(SourceFormatError, match=r"results_resource\.csv: missing column\(s\) \['LUT_hls'\]"):
        dense.load(tmp_path)
    write_sweep(tmp_path, latency=[LATENCY_ROWS[0], LATENCY_ROWS[0]])
    with pytest.raises(SourceFormatError, match="dense_32_32_2b strategy=latency rf=1 appears twice"):
        dense.load(tmp_path)


def test_cli_truncated_csv_fails_and_store_is_unchanged(tmp_path: Path, capsys) -> None:
    store_dir = tmp_path / "store"
    good = write_sweep(tmp_path / "good")
    assert (
        run_hws(
            ["data", "import", "wa-hls4ml-dense", "--from", str(good), "--store", str(store_dir)], capsys
        )[0]
        == 0
    )
    before = snapshot(store_dir)
    bad = write_sweep(tmp_path / "bad")
    csv = bad / "raw" / "results_latency.csv"
    csv.write_bytes(csv.read_bytes()[:-60])  # cut inside the last row
    code, out = run_hws(
        ["data", "import", "wa-hls4ml-dense", "--from", str(bad), "--store", str(store_dir)], capsys
    )
    assert code != 0 and "results_latency.csv" in out
    assert snapshot(store_dir) == before
    assert DatasetStore(store_dir).read("fpga").height == 4


def test_shared_sweep_counts_match_the_readme(data_dir: Path) -> None:
    df = dense.load(data_dir / "fpga" / "wa-hls4ml-search-dense1layer")["fpga"]
    assert df.height == 2687 and int(df["valid"].sum()) == 987
    per_strategy = dict(df.group_by("strategy").agg(pl.col("valid").sum()).iter_rows())
    assert per_strategy == {"latency": 81, "resource": 906}
    assert df.filter(~pl.col("valid")).select(pl.col("lut", "cycles").null_count()).row(0) == (1700, 1700)
    assert df.filter(pl.col("valid"))["lut"].null_count() == 0
    # The README calls the latency strategy's rf=1/512/1024 rows identical; they are not, so each
    # is its own design: rf=512 and rf=1024 agree on every target for 16 of the 27 models, rf=1 and
    # rf=512 for 2.
    lat = df.filter(pl.col("strategy") == "latency", pl.col("valid"))
    cols = ["lut", "ff", "dsp", "bram", "cycles", "ii"]
    wide = lat.pivot(on="reuse_factor", index="kernel", values=cols)
    same = lambda a, b: pl.all_horizontal([pl.col(f"{c}_{a}") == pl.col(f"{c}_{b}") for c in cols])  # noqa: E731
    assert wide.height == 27
    assert wide.select(same(512, 1024).sum(), same(1, 512).sum()).row(0) == (16, 2)
