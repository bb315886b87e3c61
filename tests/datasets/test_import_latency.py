"""HELP and LatBench importers on the public data: counts from the READMEs, units, keys, flags."""

from __future__ import annotations

import io
import json
import lzma
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from hwsurrogate.datasets import archspaces
from hwsurrogate.datasets.importers import help as help_importer
from hwsurrogate.datasets.importers import latbench
from hwsurrogate.datasets.importers._pickle import read_pickle
from hwsurrogate.datasets.schemas import conform


@pytest.fixture(scope="module")
def help_frames(data_dir: Path) -> dict[str, pl.DataFrame]:
    return help_importer.load(data_dir / help_importer.SOURCE.subpath)


@pytest.fixture(scope="module")
def latbench_frames(data_dir: Path) -> dict[str, pl.DataFrame]:
    return latbench.load(data_dir / latbench.SOURCE.subpath)


def _read_xz_csv(path: Path) -> pl.DataFrame:
    return pl.read_csv(io.BytesIO(lzma.decompress(path.read_bytes())), infer_schema_length=None)


def test_help_rows_per_space_match_readme(help_frames: dict[str, pl.DataFrame]) -> None:
    lat = help_frames["latency"]
    per_space = lat.group_by("space").agg(
        pl.len().alias("rows"), pl.col("device_id").n_unique().alias("devices")
    )
    got = {r["space"]: (r["rows"], r["devices"]) for r in per_space.to_dicts()}
    assert got == {"nb201": (15625 * 27, 27), "fbnet": (5000 * 27, 27), "ofa": (5000 * 12, 12)}
    assert lat.height == 421_875 + 135_000 + 60_000
    assert help_frames["devices"].height == lat["device_id"].n_unique() == 38


@pytest.mark.parametrize(
    ("space", "csv_name", "index_col"),
    [
        ("nb201", "nasbench201_latency_ms.csv.xz", "nb201_index"),
        ("fbnet", "fbnet_latency_ms.csv.xz", "fbnet_index"),
        ("ofa", "ofa_latency_ms.csv.xz", "ofa_index"),
    ],
)
def test_help_pt_values_equal_derived_csv_exactly(
    help_frames: dict[str, pl.DataFrame], data_dir: Path, space: str, csv_name: str, index_col: str
) -> None:
    csv = _read_xz_csv(data_dir / "latency/help/derived" / csv_name)
    devices = [c for c in csv.columns if c not in {index_col, "arch_str", "op_idx_list", "is_hw_embedding_ref",
                                                   "ks", "e", "d", "r"}]  # fmt: skip
    long = csv.unpivot(index=index_col, on=devices, variable_name="stem", value_name="csv_ms").select(
        pl.concat_str([pl.lit("help/"), "stem"]).alias("device_id"),
        pl.col(index_col).alias("arch_index"),
        pl.col("csv_ms").cast(pl.Float64),
    )
    ours = (
        help_frames["latency"]
        .filter(pl.col("space") == space)
        .select("device_id", "arch_index", "latency_ms")
    )
    joined = ours.join(long, on=["device_id", "arch_index"], how="full", coalesce=True)
    assert joined.height == ours.height == long.height
    assert (joined["latency_ms"] == joined["csv_ms"]).all()


def test_help_nb201_arch_keys_equal_derived_csv_arch_str(
    help_frames: dict[str, pl.DataFrame], data_dir: Path
) -> None:
    csv = _read_xz_csv(data_dir / "latency/help/derived/nasbench201_latency_ms.csv.xz").select(
        "nb201_index", "arch_str"
    )
    ours = help_frames["latency"].filter(
        (pl.col("device_id") == "help/pixel2") & (pl.col("space") == "nb201")
    )
    ours = ours.select("arch_index", "arch_key")
    joined = ours.join(csv, left_on="arch_index", right_on="nb201_index")
    assert joined.height == 15625 and (joined["arch_key"] == joined["arch_str"]).all()


def test_help_hwnasbench_reference_values_at_arch_0(help_frames: dict[str, pl.DataFrame]) -> None:
    row0 = help_frames["latency"].filter((pl.col("space") == "nb201") & (pl.col("arch_index") == 0))
    got = dict(zip(row0["device_id"], row0["latency_ms"], strict=True))
    assert got["help/raspi4"] == 10.481976820010459
    assert got["help/pixel3"] == 3.6058499999999998
    assert got["help/eyeriss"] == 3.645620000000001
    assert got["help/fpga"] == 2.57296


def test_help_batch_from_suffix_and_simulated_devices_flagged(help_frames: dict[str, pl.DataFrame]) -> None:
    lat = help_frames["latency"]
    flags = lat.group_by("device_id").agg(pl.col("batch").first(), pl.col("measured").first())
    by_id = {r["device_id"]: (r["batch"], r["measured"]) for r in flags.to_dicts()}
    assert by_id["help/titan_rtx_256"] == (256, True)
    assert by_id["help/1080ti_64"] == (64, True)
    assert by_id["help/v100_32"] == (32, True)
    assert by_id["help/pixel2"] == (1, True)
    assert by_id["help/essential_ph_1"] == (1, True)
    assert by_id["help/eyeriss"] == (1, False) and by_id["help/fpga"] == (1, False)
    assert sum(not m for _, m in by_id.values()) == 2


def test_help_phones_keep_whole_ms_and_say_so(help_frames: dict[str, pl.DataFrame]) -> None:
    phone = help_frames["latency"].filter(pl.col("device_id") == "help/samsung_s7")
    assert (phone["latency_ms"] == phone["latency_ms"].round(0)).all()
    assert json.loads(phone["extra"][0]) == {"resolution_ms": 1}


def test_help_fingerprint_is_latency_of_the_10_reference_archs(help_frames: dict[str, pl.DataFrame]) -> None:
    dev = help_frames["devices"].filter(pl.col("device_id") == "help/titanx_1").row(0, named=True)
    fp = json.loads(dev["fingerprint"])
    assert set(fp) == {"nb201", "fbnet"}  # titanx has no OFA file
    refs = archspaces.HELP_REFERENCE_INDICES["nb201"]
    assert [int(i) for i in fp["nb201"]] == list(refs)
    lat = help_frames["latency"].filter(
        (pl.col("device_id") == "help/titanx_1") & (pl.col("space") == "nb201")
    )
    expected = lat.filter(pl.col("arch_index").is_in(list(refs))).sort("arch_index")
    assert sorted(fp["nb201"].values()) == sorted(expected["latency_ms"].to_list())
    assert dev["kind"] == "gpu" and dev["vendor"] == "NVIDIA"


def test_help_frames_fit_the_schema_with_canonical_keys(help_frames: dict[str, pl.DataFrame]) -> None:
    lat = help_frames["latency"]
    sample = lat.gather_every(5000)
    for space, key in zip(sample["space"], sample["arch_key"], strict=True):
        assert archspaces.check_arch_key(space, key) == key
    assert lat["measurement_id"].n_unique() == lat.height
    now = pl.lit(datetime.now(UTC), dtype=pl.Datetime("us", "UTC")).alias("imported_at")
    assert conform("latency", lat.with_columns(now)).height == lat.height
    kinds = help_frames["devices"]["kind"].value_counts().sort("kind")
    assert dict(zip(kinds["kind"], kinds["count"], strict=True)) == {
        "asic": 1, "cpu": 5, "fpga": 1, "gpu": 26, "mobile": 5,
    }  # fmt: skip


LATBENCH_COUNTS = {
    "desktop_cpu_core_i7_7820x_fp32": 15284,
    "desktop_gpu_gtx_1080ti_fp32": 15284,
    "embedded_gpu_jetson_nano_fp16": 15284,
    "embedded_gpu_jetson_nano_fp32": 15284,
    "embedded_tpu_edge_tpu_int8": 15284,
    "mobile_cpu_snapdragon_450_cortex_a53_int8": 15252,
    "mobile_cpu_snapdragon_675_kryo_460_int8": 15261,
    "mobile_cpu_snapdragon_855_kryo_485_int8": 15284,
    "mobile_dsp_snapdragon_675_hexagon_685_int8": 15261,
    "mobile_dsp_snapdragon_855_hexagon_690_int8": 15284,
    "mobile_gpu_snapdragon_450_adreno_506_int8": 15252,
    "mobile_gpu_snapdragon_675_adreno_612_int8": 15261,
    "mobile_gpu_snapdragon_855_adreno_640_int8": 15284,
}


def test_latbench_rows_per_device_match_readme(latbench_frames: dict[str, pl.DataFrame]) -> None:
    counts = latbench_frames["latency"].group_by("device_id").len()
    got = {d.removeprefix("latbench/"): n for d, n in zip(counts["device_id"], counts["len"], strict=True)}
    assert got == LATBENCH_COUNTS
    assert latbench_frames["devices"].height == 13


def test_latbench_device_ids_are_the_splits_json_names(
    latbench_frames: dict[str, pl.DataFrame], data_dir: Path
) -> None:
    splits = json.loads((data_dir / "latency/splits.json").read_text())
    named = {d for task in splits["nasflat"]["nb201"].values() for d in task["train"] + task["test"]}
    ours = {d.removeprefix("latbench/") for d in latbench_frames["devices"]["device_id"]}
    assert named & set(LATBENCH_COUNTS) <= ours and len(named & ours) >= 8


def test_latbench_seconds_become_ms_matching_derived_csv(
    latbench_frames: dict[str, pl.DataFrame], data_dir: Path
) -> None:
    csv = _read_xz_csv(data_dir / "latency/latbench-brpnas/derived/latbench_nasbench201_latency_ms.csv.xz")
    col = "mobile_gpu_snapdragon_450_adreno_506_int8_ms"
    ref = csv.select("nb201_index", pl.col(col).cast(pl.Float64)).drop_nulls()
    ours = latbench_frames["latency"].filter(
        pl.col("device_id") == "latbench/mobile_gpu_snapdragon_450_adreno_506_int8"
    )
    joined = ours.join(ref, left_on="arch_index", right_on="nb201_index", how="full", coalesce=True)
    assert joined.height == ours.height == ref.height == 15252
    rel = ((joined["latency_ms"] - joined[col]).abs() / joined[col]).max()
    assert rel < 1e-12
    # and the raw pickle holds seconds: the first entry x 1000
    raw = read_pickle(data_dir / "latency/latbench-brpnas/desktop-cpu-core-i7-7820x-fp32.pickle")
    vec, seconds = next(iter(raw.items()))
    key = archspaces.nb201_from_codes(vec)
    row = latbench_frames["latency"].filter(
        (pl.col("device_id") == "latbench/desktop_cpu_core_i7_7820x_fp32") & (pl.col("arch_key") == key)
    )
    assert row["latency_ms"].to_list() == [float(seconds) * 1000.0]


def test_latbench_precision_from_name_and_fingerprint_on_help_refs(
    latbench_frames: dict[str, pl.DataFrame],
) -> None:
    lat = latbench_frames["latency"]
    prec = lat.group_by("device_id").agg(pl.col("precision").first())
    got = dict(zip(prec["device_id"], prec["precision"], strict=True))
    assert got["latbench/embedded_gpu_jetson_nano_fp16"] == "fp16"
    assert got["latbench/embedded_tpu_edge_tpu_int8"] == "int8"
    assert got["latbench/desktop_gpu_gtx_1080ti_fp32"] == "fp32"
    dev = latbench_frames["devices"].filter(pl.col("device_id") == "latbench/desktop_gpu_gtx_1080ti_fp32")
    fp = json.loads(dev["fingerprint"][0])["nb201"]
    assert [int(i) for i in fp] == list(archspaces.HELP_REFERENCE_INDICES["nb201"])
    assert dev["kind"][0] == "gpu"
    kinds = dict(
        zip(latbench_frames["devices"]["device_id"], latbench_frames["devices"]["kind"], strict=True)
    )
    assert kinds["latbench/mobile_dsp_snapdragon_855_hexagon_690_int8"] == "dsp"
    assert kinds["latbench/embedded_tpu_edge_tpu_int8"] == "tpu"


def test_latbench_missing_archs_have_no_rows(latbench_frames: dict[str, pl.DataFrame]) -> None:
    lat = latbench_frames["latency"].filter(pl.col("device_id") == "latbench/desktop_cpu_core_i7_7820x_fp32")
    assert lat["latency_ms"].null_count() == 0
    assert lat["arch_index"].n_unique() == 15284  # 15625 - 341 disconnected cells
    # a disconnected cell: every edge into the output node is 'none'
    disconnected = archspaces.format_nb201(
        ["skip_connect", "skip_connect", "skip_connect", "none", "none", "none"]
    )
    assert lat.filter(pl.col("arch_key") == disconnected).height == 0
