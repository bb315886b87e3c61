"""GPPerf, NeuSight and aiconfigurator importers on the public data: counts, units, shape mapping, power flags."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_series_equal

from hwsurrogate.datasets.importers import aiconfigurator, gpperf, neusight
from hwsurrogate.datasets.schemas import GEMM_DTYPES

from .importer_checks import run_hws


@pytest.fixture(scope="module")
def gpperf_frames(data_dir: Path) -> dict[str, pl.DataFrame]:
    return gpperf.load(data_dir / gpperf.SOURCE.subpath)


@pytest.fixture(scope="module")
def neusight_frames(data_dir: Path) -> dict[str, pl.DataFrame]:
    return neusight.load(data_dir / neusight.SOURCE.subpath)


@pytest.fixture(scope="module")
def aic_frames(data_dir: Path) -> dict[str, pl.DataFrame]:
    return aiconfigurator.load(data_dir / aiconfigurator.SOURCE.subpath)


# ---------------------------------------------------------------------------------------- GPPerf
def test_gpperf_raw_parse_equals_tidy_csv_on_all_16128_rows(data_dir: Path) -> None:
    folder = data_dir / gpperf.SOURCE.subpath
    raw = gpperf.parse_raw_results(folder / gpperf.RAW_FILE)
    tidy = pl.read_csv(folder / "cutlass_sgemm_rtx4070_tidy.csv.gz", infer_schema_length=None)
    assert raw.height == tidy.height == 16128
    for col in ("timestamp_unix", "M", "N", "K", "kernel", "layout_label", "block_m_label", "block_n_label",
                "block_k_label", "stages_label", "epilogue", "alpha", "beta", "runtime_ms", "power_w_post",
                "sm_clock_mhz_post", "mem_clock_mhz_post", "temp_c_post", "gpu_util_pct_post",
                "mem_util_pct_post", "power_limit_w", "energy_j_raw_bc", "mflops_per_w_raw",
                "gflops_raw"):  # fmt: skip
        assert_series_equal(raw[col], tidy[col], check_dtypes=False, check_names=False)


def test_gpperf_power_missing_stays_null_and_idle_reads_are_untrusted(
    gpperf_frames: dict[str, pl.DataFrame],
) -> None:
    cut = gpperf_frames["gemm"].filter(pl.col("kernel").str.starts_with("cutlass"))
    assert cut.height == 16128
    assert cut["power_w"].null_count() == 13533  # README: [N/A] in 83.9% of rows
    with_power = cut.filter(pl.col("power_w").is_not_null())
    assert with_power.height == 2595
    assert (with_power["power_trusted"] == False).sum() == 1159  # noqa: E712  (read at 0% utilisation)
    assert cut.filter(pl.col("power_w").is_null())["power_trusted"].null_count() == 13533
    assert with_power["power_method"].str.contains("post-run").all()
    assert cut["energy_j"].null_count() == 13533


def test_gpperf_layout_from_kernel_name_and_labels_in_extra(gpperf_frames: dict[str, pl.DataFrame]) -> None:
    cut = gpperf_frames["gemm"].filter(pl.col("kernel").str.starts_with("cutlass"))
    assert (cut["kernel"].str.extract(r"_(\w\w)_align1$", 1) == cut["layout"]).all()
    labels = cut["extra"].str.json_decode()
    assert (labels.struct.field("layout_label") != cut["layout"]).sum() > 0  # labels differ, kernel decides
    first = json.loads(cut["extra"][0])
    assert {"alpha", "beta", "block_m_label", "stages_label"} <= set(first)
    assert first["labels_change_kernel"] is False
    assert set(cut["dtype"].unique()) == {"fp32"}


def test_gpperf_tiled_kernel_rows_are_cold_launches_with_untrusted_power(
    gpperf_frames: dict[str, pl.DataFrame],
) -> None:
    tiled = gpperf_frames["gemm"].filter(pl.col("kernel").str.starts_with("tiled_naive"))
    assert tiled.height == 141  # rows of tiled_matmul_execution_times_all.csv
    assert json.loads(tiled["extra"][0])["cold_launch"] is True
    assert (tiled["power_trusted"] == False).all()  # noqa: E712
    at = (pl.col("m") == 512) & (pl.col("n") == 512) & (pl.col("k") == 512)
    row = tiled.filter(at & (pl.col("kernel") == "tiled_naive_t8"))
    assert row["runtime_ms"].to_list() == [6.56141] and row["power_w"].to_list() == [32.157]


def test_gpperf_device_row_cites_spec_source(gpperf_frames: dict[str, pl.DataFrame]) -> None:
    dev = gpperf_frames["devices"].row(0, named=True)
    assert dev["device_id"] == "gpperf/rtx4070" and dev["cores"] == 46
    assert "spec_source" in json.loads(dev["descriptors"])


# -------------------------------------------------------------------------------------- NeuSight
def test_neusight_totals_and_test_file_counts_match_readme(neusight_frames: dict[str, pl.DataFrame]) -> None:
    g = neusight_frames["gemm"]
    assert g.height == 141_562
    split = g["extra"].str.json_path_match("$.split")
    test_bmm = g.filter((split == "test") & (pl.col("op") == "bmm")).group_by("device_id").len()
    got = {
        d.removeprefix("neusight/"): n for d, n in zip(test_bmm["device_id"], test_bmm["len"], strict=True)
    }
    assert got == {
        "NVIDIA_A100_80GB_PCIe": 2487, "NVIDIA_A100-PCIE-40GB": 2281, "NVIDIA_H100_80GB_HBM3": 2477,
        "NVIDIA_L4": 2092, "Tesla_P100-PCIE-16GB": 2004, "Tesla_T4": 1976, "Tesla_P4": 72,
        "Tesla_V100-PCIE-32GB": 72,
    }  # fmt: skip
    test_linear = g.filter((split == "test") & (pl.col("op") == "linear"))
    assert test_linear.height == 8254
    assert g["device_id"].n_unique() == 8


def test_neusight_shape_mapping_bmm_and_linear(neusight_frames: dict[str, pl.DataFrame]) -> None:
    g = neusight_frames["gemm"]
    src = g["extra"].str.json_decode()
    # (B, M, N) @ (B, N, K): batch=B, m=M, n=K (output columns), k=N (reduction)
    assert (g["batch"] == src.struct.field("B")).all()
    assert (g["m"] == src.struct.field("M")).all()
    assert (g["n"] == src.struct.field("K")).all()
    assert (g["k"] == src.struct.field("N")).all()
    assert set(g["op"].unique()) == {"bmm", "linear"}


def test_neusight_split_recorded_and_part_of_measurement_id(neusight_frames: dict[str, pl.DataFrame]) -> None:
    g = neusight_frames["gemm"].with_columns(split=pl.col("extra").str.json_path_match("$.split"))
    counts = g.group_by("split").len()
    assert dict(zip(counts["split"], counts["len"], strict=True)) == {"train": 87623 + 32224, "test": 21715}
    assert (g["measurement_id"].str.split("|").list.get(1) == g["split"]).all()
    assert g["measurement_id"].n_unique() == g.height
    # in this snapshot no (device, shape) is in both files; test_import_errors checks a built overlap
    key = ["device_id", "op", "m", "n", "k", "batch"]
    assert (
        g.group_by(key)
        .agg(pl.col("split").n_unique().alias("n_splits"))
        .filter(pl.col("n_splits") > 1)
        .height
        == 0
    )


def test_neusight_devices_from_spec_jsons(neusight_frames: dict[str, pl.DataFrame]) -> None:
    d = neusight_frames["devices"].filter(pl.col("device_id") == "neusight/NVIDIA_L4").row(0, named=True)
    assert (
        d["cores"],
        d["peak_fp32_gflops"],
        d["mem_bw_gbs"],
        d["memory_gb"],
        d["clock_mhz"],
        d["l2_mb"],
    ) == (58, 30290, 300, 24, 2040, 48)  # datasheet values (the JSON says 60 SMs, 31334 GFLOP/s)
    assert json.loads(d["descriptors"])["neusight_original"] == {"Num_Sm": 60, "SingleFLOPs": 31334}
    assert neusight_frames["devices"].height == 8  # specs without measurements are not imported


def test_neusight_devices_carry_their_datasheet_power_limit(neusight_frames: dict[str, pl.DataFrame]) -> None:
    from hwsurrogate.surrogates.features.ops import power_limits

    limits = power_limits(neusight_frames["devices"])
    assert {d.removeprefix("neusight/"): w for d, w in limits.items()} == {
        "Tesla_P4": 75.0, "Tesla_T4": 70.0, "NVIDIA_L4": 72.0, "Tesla_P100-PCIE-16GB": 250.0,
        "Tesla_V100-PCIE-32GB": 250.0, "NVIDIA_A100-PCIE-40GB": 250.0, "NVIDIA_A100_80GB_PCIe": 300.0,
        "NVIDIA_H100_80GB_HBM3": 700.0,
    }  # fmt: skip
    for desc in neusight_frames["devices"]["descriptors"]:
        assert "datasheet" in json.loads(desc)["power_limit_source"]


def test_neusight_p4_has_20_sms_of_128_cores_not_40_of_64(neusight_frames: dict[str, pl.DataFrame]) -> None:
    d = neusight_frames["devices"].filter(pl.col("device_id") == "neusight/Tesla_P4").row(0, named=True)
    desc = json.loads(d["descriptors"])
    assert (d["cores"], desc["core_per_sm"], d["peak_fp32_gflops"]) == (20, 128, 5699)
    assert desc["neusight_original"] == {"Num_Sm": 40, "Core_Per_SM": 64}
    t4 = neusight_frames["devices"].filter(pl.col("device_id") == "neusight/Tesla_T4").row(0, named=True)
    assert "neusight_original" not in json.loads(t4["descriptors"])  # uncorrected rows stay as published


def test_neusight_kernel_grid_block_kept(neusight_frames: dict[str, pl.DataFrame]) -> None:
    row = neusight_frames["gemm"].row(0, named=True)
    extra = json.loads(row["extra"])
    assert len(extra["grid"]) == 3 and len(extra["block"]) == 3 and extra["kernels"]
    assert row["kernel"].endswith(("_nn", "_tn", "_nt", "_tt")) or row["kernel"]


# --------------------------------------------------------------------------------- aiconfigurator
AIC_FILES = {
    "b200_sxm__trtllm__1.3.0rc15__gemm_perf.parquet": 55657,
    "b200_sxm__vllm__0.22.0__gemm_perf.parquet": 78834,
    "gb200__trtllm__1.3.0rc17__gemm_perf.parquet": 127655,
    "gb200__vllm__0.22.0__gemm_perf.parquet": 114576,
    "h200_sxm__vllm__0.22.0__gemm_perf.parquet": 65268,
    "a100_sxm__sglang__0.5.10__gemm_perf.parquet": 35742,
    "h100_sxm__trtllm__1.3.0rc20__gemm_perf.parquet": 100668,
    "l40s__trtllm__1.3.0rc20__gemm_perf.parquet": 100668,
    "b300_sxm__trtllm__1.3.0rc20__gemm_perf.parquet": 130156,
    "gb300__trtllm__1.3.0rc20__gemm_perf.parquet": 130156,
    "rtx_pro_6000_server__trtllm__1.3.0rc20__gemm_perf.parquet": 130156,
    "b60__vllm__0.20.0__gemm_perf.parquet": 22176,
}


def test_aiconfigurator_rows_per_file_match_readme(aic_frames: dict[str, pl.DataFrame]) -> None:
    files = aic_frames["gemm"]["extra"].str.json_path_match("$.file").str.split("/").list.last()
    counts = files.value_counts()
    assert dict(zip(counts[files.name], counts["count"], strict=True)) == AIC_FILES
    assert aic_frames["gemm"].height == sum(AIC_FILES.values()) == 1_091_712


def test_aiconfigurator_power_only_where_measured(aic_frames: dict[str, pl.DataFrame]) -> None:
    g = aic_frames["gemm"]
    powered = g.filter(pl.col("power_w").is_not_null())
    assert powered.height == 441_990  # README: 441,990 with power
    assert set(powered["device_id"].unique()) == {"aiconfigurator/b200_sxm", "aiconfigurator/gb200",
                                                  "aiconfigurator/h200_sxm"}  # fmt: skip
    limits = powered.group_by("device_id").agg(pl.col("power_limit_w").unique())
    assert {r["device_id"]: r["power_limit_w"] for r in limits.to_dicts()} == {
        "aiconfigurator/b200_sxm": [1000.0], "aiconfigurator/gb200": [1200.0], "aiconfigurator/h200_sxm": [700.0],
    }  # fmt: skip
    assert (powered["power_trusted"]).all()
    assert ((powered["energy_j"] - powered["power_w"] * powered["runtime_ms"] / 1000).abs() < 1e-12).all()


def test_aiconfigurator_dtypes_mapped_and_framework_kept(aic_frames: dict[str, pl.DataFrame]) -> None:
    g = aic_frames["gemm"]
    assert set(g["dtype"].unique()) == {"bf16", "fp8", "fp8_block", "nvfp4"}
    fw = set(g.filter(pl.col("device_id") == "aiconfigurator/b200_sxm")["framework"].unique())
    assert fw == {"TRTLLM 1.3.0rc15", "VLLM 0.22.0"}
    assert {"torch_flow", "deepgemm", "vllm_default", "sglang"} == set(g["kernel"].unique())
    assert g["measurement_id"].n_unique() == g.height


def test_aiconfigurator_dtype_map_only_targets_schema_dtypes() -> None:
    assert set(aiconfigurator.DTYPES.values()) <= GEMM_DTYPES


def test_aiconfigurator_devices_have_specs_or_nulls_with_source(aic_frames: dict[str, pl.DataFrame]) -> None:
    d = aic_frames["devices"]
    assert d.height == 10
    h100 = d.filter(pl.col("device_id") == "aiconfigurator/h100_sxm").row(0, named=True)
    assert (h100["cores"], h100["memory_gb"], h100["mem_bw_gbs"]) == (132, 80.0, 3350.0)
    b60 = d.filter(pl.col("device_id") == "aiconfigurator/b60").row(0, named=True)
    assert b60["vendor"] == "Intel" and b60["peak_fp32_gflops"] is None
    assert all("spec_source" in json.loads(s) for s in d["descriptors"])


# ------------------------------------------------------------------------------------------- CLI
def test_cli_import_then_list_shows_readme_counts(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(tmp_path / "cli-store")
    for source in ("gpperf", "latbench"):
        code, out = run_hws(["data", "import", source, "--store", root], capsys)
        assert code == 0, out
    code, out = run_hws(["data", "list", "--json", "--store", root], capsys)
    summary = json.loads(out)
    assert summary["gemm"]["sources"] == {"gpperf": gpperf.EXPECTED_ROWS["gemm"]}
    assert summary["latency"]["sources"] == {"latbench": 198_559}
    assert summary["devices"]["sources"] == {"gpperf": 1, "latbench": 13}
