"""Bad input to the latency/GEMM importers: clear errors naming file and field, store untouched.

Every broken source is built in ``tmp_path`` (tiny synthetic copies with the real layout), so these
tests run without the public data, except the killed-import test, which imports real GPPerf data.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import lzma
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hwsurrogate.datasets import archspaces
from hwsurrogate.datasets.importers import import_source
from hwsurrogate.datasets.store import DatasetStore

from .factories import gemm_frame, latency_frame
from .importer_checks import run_hws, snapshot


@pytest.fixture
def filled_store(store: DatasetStore) -> DatasetStore:
    """A store that already holds rows, so 'unchanged' is a real check."""
    store.append("gemm", gemm_frame(3), partition="test")
    store.append("latency", latency_frame(3), partition="test")
    return store


def _import(
    source: str, folder: Path, store: DatasetStore, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    return run_hws(["data", "import", source, "--from", str(folder), "--store", str(store.root)], capsys)


def _assert_refused(
    source: str, folder: Path, store: DatasetStore, capsys: pytest.CaptureFixture[str], *needles: str
) -> str:
    before = snapshot(store.root)
    code, out = _import(source, folder, store, capsys)
    assert code != 0, out
    for needle in needles:
        assert needle in out, f"{needle!r} not in {out!r}"
    assert snapshot(store.root) == before
    return out


# ------------------------------------------------------------------------------ builders
def _torch_zip(path: Path, obj: object) -> None:
    """A file laid out like ``torch.save`` output (``archive/data.pkl`` inside a zip)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
        zf.writestr("archive/version", "3\n")


def build_help(root: Path, nb201_latency: list[float] | None = None) -> Path:
    """A full-size but synthetic HELP folder: one device per space."""
    nb_archs = [archspaces.format_nb201(ops) for ops in itertools.product(archspaces.NB201_OPS, repeat=6)]
    _torch_zip(root / "nasbench201/str_arch2idx.pt", {a: i for i, a in enumerate(nb_archs)})
    fb_codes = [[(i + j) % 9 for j in range(22)] for i in range(5000)]
    fb = [{"op_idx_list": c, "arch_str": archspaces.fbnet_from_codes(c).split()} for c in fb_codes]
    _torch_zip(root / "fbnet/metainfo.pt", {"dataset": "cifar100", "num_classes": 100, "arch": fb})
    ofa = [{"ks": [3] * 20, "e": [4] * 20, "d": [2] * 5, "r": 128 + 4 * (i % 25)} for i in range(5000)]
    _torch_zip(root / "ofa/ofa_archs.pt", {"dataset": "imagenet", "num_classes": 1000, "arch": ofa})
    for space in ("nasbench201", "fbnet", "ofa"):
        _torch_zip(root / space / "hardware_embedding_index.pt", list(range(10)))
    lat = nb201_latency if nb201_latency is not None else [1.0 + i / 1000 for i in range(15625)]
    _torch_zip(root / "nasbench201/latency/pixel2.pt", lat)
    _torch_zip(root / "fbnet/latency/titan_rtx_64.pt", [2.0] * 5000)
    _torch_zip(root / "ofa/latency/v100_32.pt", [3.0] * 5000)
    return root


_GPPERF_LINE = (
    "{ts},512,512,512,cutlass_simt_sgemm_128x128_8x2_nn_align1,nn,64,64,32,2,linear_combination,1,0,{rt},,"
    "{power}, 2760, 10251, 47, {util}, 0,NVIDIA GeForce RTX 4070, 8.9, 10501 MHz, 3105 MHz, 200.00 W, 47, "
    "Default, 12282 MiB, 11827 MiB, 176 MiB, 100 %, 0 %,kernel_name,cutlass_simt_sgemm_128x128_8x2_nn_align1\n"
    "arithmetic_intensity,85.33\nuses_shared_memory,0\ncomputation_pattern,GEMM\nproblem_size_m,512\n"
    "problem_size_n,512\nproblem_size_k,512,{energy},87902.151,6168.094\n"
)


def build_gpperf(
    root: Path, runtimes: tuple[str, ...] = ("0.04352", "0.0459776"), drop_line: bool = False
) -> Path:
    records = [
        _GPPERF_LINE.format(ts=1731372844 + i, rt=rt, power="70.17" if i == 0 else "[N/A]",
                            util=100 if i == 0 else 0, energy=".003" if i == 0 else "")
        for i, rt in enumerate(runtimes)
    ]  # fmt: skip
    text = "Energy_Joules,GFLOPS_per_Watt,TFLOPS" + "".join(records)
    if drop_line:
        text = "\n".join(text.split("\n")[:-3] + [""])
    root.mkdir(parents=True, exist_ok=True)
    (root / "cutlass_profiling_20241111_195357_results_raw.csv.gz").write_bytes(gzip.compress(text.encode()))
    return root


def _neusight_csv(rows: list[dict[str, object]]) -> bytes:
    base = {"OPName": "bmm", "Latency": 0.05, "Device": "Tesla T4", "Torch Version": "p2.1.0",
            "CUDNN Version": 8902, "Kernel Name": "volta_sgemm_32x128_nn", "Warps per SM": 1.0,
            "Blocks per SM": 0.125, "Grid x": 5, "Grid y": 1, "Grid z": 1, "Block x": 256, "Block y": 1,
            "Block z": 1, "CUDA Version": "cu121", "Kernels": ";volta_sgemm_32x128_nn",
            "B": 1, "M": 58, "N": 13, "K": 141}  # fmt: skip
    frame = pl.DataFrame([{**base, **r} for r in rows])
    buf = io.BytesIO()
    frame.write_csv(buf)
    return gzip.compress(buf.getvalue())


def build_neusight(root: Path, train_bmm: list[dict[str, object]] | None = None) -> Path:
    for sub in ("train/bmm", "train/linear", "test", "device_configs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "train/bmm/Tesla_T4.csv.gz").write_bytes(_neusight_csv(train_bmm or [{}, {"M": 64}]))
    (root / "train/linear/Tesla_T4.csv.gz").write_bytes(_neusight_csv([{"OPName": "linear"}]))
    (root / "test/bmm.csv.gz").write_bytes(_neusight_csv([{}]))  # the same shape as a train row
    (root / "test/linear.csv.gz").write_bytes(_neusight_csv([{"OPName": "linear", "M": 7}]))
    spec = {"Device": "Tesla T4", "Dev_Mem": 16, "Mem_Bw": 320, "Num_Sm": 40, "Core_Per_SM": 64,
            "Freq": 1590, "SingleFLOPs": 8141, "L2Cache": 4}  # fmt: skip
    (root / "device_configs/Tesla_T4.json").write_text(json.dumps(spec))
    return root


def build_aiconfigurator(root: Path, **overrides: list[object]) -> Path:
    cols: dict[str, list[object]] = {
        "framework": ["VLLM"] * 2, "version": ["0.22.0"] * 2, "device": ["NVIDIA H200"] * 2,
        "op_name": ["gemm"] * 2, "kernel_source": ["vllm_default"] * 2, "gemm_dtype": ["bfloat16", "fp8_block"],
        "m": [1, 8], "n": [4096, 4096], "k": [4096, 4096], "latency": [0.01, 0.02], "power": [300.0, 310.0],
        "power_limit": [700.0, 700.0],
    }  # fmt: skip
    cols.update(overrides)
    (root / "with_power").mkdir(parents=True, exist_ok=True)
    pl.DataFrame(cols).write_parquet(root / "with_power/h200_sxm__vllm__0.22.0__gemm_perf.parquet")
    return root


# ------------------------------------------------------------------------------ happy paths of the builders
def test_synthetic_sources_import_cleanly(store: DatasetStore, tmp_path: Path) -> None:
    assert import_source("help", build_help(tmp_path / "help"), store=store).rows == {
        "latency": 25625,
        "devices": 3,
    }
    assert import_source("gpperf", build_gpperf(tmp_path / "gp"), store=store).rows == {
        "gemm": 2,
        "devices": 1,
    }
    assert (
        import_source("aiconfigurator", build_aiconfigurator(tmp_path / "aic"), store=store).rows["gemm"] == 2
    )
    g = store.read("gemm", source="gpperf").sort("runtime_ms")
    assert g["power_w"].to_list() == [70.17, None] and g["power_trusted"].to_list() == [True, None]


def test_neusight_same_shape_in_train_and_test_is_kept_twice_with_distinct_ids(
    store: DatasetStore, tmp_path: Path
) -> None:
    report = import_source("neusight", build_neusight(tmp_path / "ns"), store=store)
    assert report.rows["gemm"] == 5
    g = store.read("gemm").filter((pl.col("op") == "bmm") & (pl.col("m") == 58))
    assert g.height == 2
    assert sorted(g["extra"].str.json_path_match("$.split").to_list()) == ["test", "train"]
    assert g["measurement_id"].n_unique() == 2
    assert (g["n"].to_list(), g["k"].to_list()) == ([141, 141], [13, 13])  # n = K, k = N


# ------------------------------------------------------------------------------ truncated / corrupt files
def test_truncated_pt_file_is_refused_naming_it(
    filled_store: DatasetStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = build_help(tmp_path / "help")
    pt = folder / "nasbench201/latency/pixel2.pt"
    pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    _assert_refused("help", folder, filled_store, capsys, str(pt), "truncated or corrupt")


def test_truncated_xz_csv_is_refused_naming_it(
    filled_store: DatasetStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "lb/derived/latbench_nasbench201_latency_ms.csv.xz"
    csv.parent.mkdir(parents=True)
    body = "nb201_index,arch_str,arch_vector\n" + "".join(
        f"{i},{archspaces.nb201_from_codes([i % 5, 1, 2, 3, 4, 0])},{i % 5} 1 2 3 4 0\n" for i in range(5)
    )
    data = lzma.compress(body.encode())
    csv.write_bytes(data[: len(data) - 20])
    _assert_refused("latbench", tmp_path / "lb", filled_store, capsys, str(csv), "cannot decompress")


def build_latbench(root: Path) -> Path:
    """Derived index CSV for 5 archs and one device pickle {arch_vector: seconds}."""
    vectors = [(i, 1, 2, 3, 4, 0) for i in range(5)]
    body = "nb201_index,arch_str,arch_vector\n" + "".join(
        f"{i},{archspaces.nb201_from_codes(v)},{' '.join(map(str, v))}\n" for i, v in enumerate(vectors)
    )
    (root / "derived").mkdir(parents=True, exist_ok=True)
    (root / "derived/latbench_nasbench201_latency_ms.csv.xz").write_bytes(lzma.compress(body.encode()))
    data = {v: np.float64(0.001 * (i + 1)) for i, v in enumerate(vectors)}
    (root / "embedded-tpu-edge-tpu-int8.pickle").write_bytes(pickle.dumps(data))
    return root


def test_latbench_synthetic_seconds_become_ms(store: DatasetStore, tmp_path: Path) -> None:
    import_source("latbench", build_latbench(tmp_path / "lb"), store=store)
    lat = store.read("latency").sort("arch_index")
    assert lat["latency_ms"].to_list() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert set(lat["device_id"]) == {"latbench/embedded_tpu_edge_tpu_int8"} and set(lat["precision"]) == {
        "int8"
    }


def test_truncated_pickle_is_refused_naming_it(
    filled_store: DatasetStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pk = build_latbench(tmp_path / "lb") / "embedded-tpu-edge-tpu-int8.pickle"
    pk.write_bytes(pk.read_bytes()[:40])
    _assert_refused("latbench", tmp_path / "lb", filled_store, capsys, str(pk), "not a readable pickle")


def test_truncated_gz_raw_results_is_refused_naming_it(
    filled_store: DatasetStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = build_gpperf(tmp_path / "gp") / "cutlass_profiling_20241111_195357_results_raw.csv.gz"
    raw.write_bytes(raw.read_bytes()[:-30])
    _assert_refused("gpperf", tmp_path / "gp", filled_store, capsys, str(raw), "truncated or corrupt")


def test_gpperf_record_missing_a_line_is_refused(
    filled_store: DatasetStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_gpperf(tmp_path / "gp", drop_line=True)
    _assert_refused("gpperf", tmp_path / "gp", filled_store, capsys, "7-line records")


def test_truncated_parquet_is_refused_naming_it(
    filled_store: DatasetStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pq = build_aiconfigurator(tmp_path / "aic") / "with_power/h200_sxm__vllm__0.22.0__gemm_perf.parquet"
    pq.write_bytes(pq.read_bytes()[:100])
    _assert_refused(
        "aiconfigurator", tmp_path / "aic", filled_store, capsys, str(pq), "not a readable parquet"
    )


def test_tampered_pickle_is_refused_not_executed(
    filled_store: DatasetStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = build_help(tmp_path / "help")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    pt = folder / "nasbench201/latency/pixel2.pt"
    with zipfile.ZipFile(pt, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(Evil()))
    _assert_refused("help", folder, filled_store, capsys, str(pt), "refusing")
    assert not marker.exists()


# ------------------------------------------------------------------------------ wrong columns / bad values
def test_neusight_csv_with_wrong_column_names_file_and_column(
    filled_store: DatasetStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = build_neusight(tmp_path / "ns")
    bad = folder / "train/bmm/Tesla_T4.csv.gz"
    text = gzip.decompress(bad.read_bytes()).decode().replace("Latency", "Latncy", 1)
    bad.write_bytes(gzip.compress(text.encode()))
    _assert_refused("neusight", folder, filled_store, capsys, str(bad), "'Latency'")


@pytest.mark.parametrize("value", [float("nan"), -0.5, 0.0])
def test_neusight_nan_or_non_positive_latency_is_refused(
    filled_store: DatasetStore, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: float
) -> None:
    folder = build_neusight(tmp_path / "ns", train_bmm=[{}, {"M": 9, "Latency": value}])
    _assert_refused("neusight", folder, filled_store, capsys, "Tesla_T4.csv.gz", "'Latency'", "row 1")


@pytest.mark.parametrize("value", [float("nan"), -1.0])
def test_help_nan_or_negative_latency_is_refused(
    filled_store: DatasetStore, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: float
) -> None:
    lat = [1.0] * 15625
    lat[123] = value
    folder = build_help(tmp_path / "help", nb201_latency=lat)
    _assert_refused("help", folder, filled_store, capsys, "pixel2.pt", "'latency_ms'", "row 123")


def test_help_latency_list_of_wrong_length_is_refused(
    filled_store: DatasetStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = build_help(tmp_path / "help", nb201_latency=[1.0] * 100)
    _assert_refused("help", folder, filled_store, capsys, "pixel2.pt", "15625 latencies")


def test_gpperf_nan_runtime_is_refused(
    filled_store: DatasetStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_gpperf(tmp_path / "gp", runtimes=("0.04", "nan"))
    _assert_refused("gpperf", tmp_path / "gp", filled_store, capsys, "'runtime_ms'", "results_raw.csv.gz")


def test_aiconfigurator_negative_power_and_unknown_dtype_are_refused(
    filled_store: DatasetStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_aiconfigurator(tmp_path / "a", power=[300.0, -2.0])
    _assert_refused("aiconfigurator", tmp_path / "a", filled_store, capsys, "'power'", "h200_sxm__vllm")
    build_aiconfigurator(tmp_path / "b", gemm_dtype=["bfloat16", "float4_e2m1"])
    _assert_refused("aiconfigurator", tmp_path / "b", filled_store, capsys, "'gemm_dtype'", "float4_e2m1")


# ------------------------------------------------------------------------------ idempotence and crashes
def test_reimporting_a_source_is_idempotent(store: DatasetStore, tmp_path: Path) -> None:
    folder = build_neusight(tmp_path / "ns")
    import_source("neusight", folder, store=store)
    first = store.read("gemm").sort("measurement_id").drop("imported_at")
    report = import_source("neusight", folder, store=store)
    again = store.read("gemm").sort("measurement_id").drop("imported_at")
    assert report.rows == {"gemm": 5, "devices": 1}
    assert again.equals(first)
    assert store.read("devices").height == 1


def test_import_killed_before_commit_leaves_store_unchanged_for_readers(
    filled_store: DatasetStore, data_dir: Path
) -> None:
    """Killed after its gemm rows were committed to their table, before its devices: readers see no change."""
    before = {k: filled_store.read(k) for k in ("gemm", "devices")}
    env = {**os.environ, "HWSURROGATE_STORE_FAULT": "after_temp", "HWSURROGATE_NO_PROGRESS": "1"}
    folder = data_dir / "gemm/gpperf_rtx4070"
    cmd = [sys.executable, "-P", "-m", "hwsurrogate.cli", "data", "import", "gpperf", "--from", str(folder),
           "--store", str(filled_store.root)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, check=False, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    fresh = DatasetStore(filled_store.root)
    assert all(fresh.read(k).equals(v) for k, v in before.items())
    assert filled_store.read("gemm").height == 3
    # the import then succeeds, and compaction removes the killed import's invisible rows
    assert import_source("gpperf", folder, store=filled_store).rows["gemm"] == 16269
    assert filled_store.compact(orphan_age_s=0)["gemm"]["orphan_rows_removed"] == 16269
    assert filled_store.read("gemm").height == 3 + 16269


def test_neusight_spec_correction_applies_to_named_json_only_and_keeps_original() -> None:
    from hwsurrogate.datasets.importers.neusight import apply_spec_correction

    p4 = {"Device": "Tesla P4", "Num_Sm": 40, "Core_Per_SM": 64, "SingleFLOPs": 5699}
    fixed, original, source = apply_spec_correction("Tesla_P4", p4)
    assert (fixed["Num_Sm"], fixed["Core_Per_SM"], fixed["SingleFLOPs"]) == (20, 128, 5699)
    assert original == {"Num_Sm": 40, "Core_Per_SM": 64} and source and "P4" in source
    assert p4["Num_Sm"] == 40  # the input dict is not modified
    same, none, no_source = apply_spec_correction("Tesla_T4", {"Num_Sm": 40})
    assert (same, none, no_source) == ({"Num_Sm": 40}, {}, None)
    # a JSON that already states the datasheet value records nothing as corrected
    _, nothing, src = apply_spec_correction("Tesla_P4", {"Num_Sm": 20, "Core_Per_SM": 128})
    assert (nothing, src) == ({}, None)
