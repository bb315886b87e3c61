"""GEMM collector on tiny shapes: rows, environment, validation errors, CLI, store, push."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from hwsurrogate.cli import cli
from hwsurrogate.datasets.collectors import gemm as gemm_mod
from hwsurrogate.datasets.collectors.gemm import collect_gemm, rotation_copies, sweep_shapes
from hwsurrogate.datasets.collectors.power import NullMeter
from hwsurrogate.datasets.schemas import schema
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import CollectorError

FAST = {
    "min_time_s": 0.0,
    "min_sample_s": 1e-4,
    "min_samples": 3,
    "warmup": 1,
    "threads": 1,
    "progress": False,
}


@pytest.fixture(autouse=True)
def _no_rapl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gemm_mod, "cpu_meter", lambda: NullMeter("no readable RAPL counter (test)"))


def test_collect_8x8x8_numpy_row_fits_schema_and_records_environment() -> None:
    df = collect_gemm([(8, 8, 8)], **FAST)
    assert df.schema == schema("gemm") and df.height == 1
    row = df.row(0, named=True)
    assert (row["m"], row["n"], row["k"], row["batch"], row["op"], row["layout"]) == (
        8,
        8,
        8,
        1,
        "gemm",
        "nn",
    )
    assert row["device_id"].startswith("local/") and row["device_id"].endswith("-cpu")
    assert row["source"] == "collector:gemm" and row["threads"] == 1
    assert row["runtime_ms"] > 0 and row["runtime_spread_ms"] >= 0 and row["repetitions"] >= 3
    assert row["framework"].startswith(f"numpy {np.__version__}")
    assert "numpy" in json.loads(row["software"])
    extra = json.loads(row["extra"])
    assert extra["cache"]["copies"] >= 1 and extra["gflops"] > 0 and extra["env"]["threads"] == 1
    assert extra["blas_threads"] == 1  # numpy's BLAS really was limited to the recorded thread count


def test_no_energy_counter_gives_null_power_with_reason() -> None:
    row = collect_gemm([(8, 8, 8)], **FAST).row(0, named=True)
    assert row["power_w"] is None and row["energy_j"] is None
    assert row["power_method"] == "unavailable: no readable RAPL counter (test)"


def test_batched_transposed_and_torch_bf16() -> None:
    df = collect_gemm([{"m": 8, "n": 4, "k": 16, "batch": 3, "dtype": "fp64", "layout": "tn"}], **FAST)
    assert df.select("op", "batch", "dtype", "layout").row(0) == ("bmm", 3, "fp64", "tn")
    t = collect_gemm([(8, 8, 8)], backend="torch", dtype="bf16", **FAST)
    assert t["dtype"][0] == "bf16" and t["framework"][0].startswith("torch ")


def test_same_shape_collected_twice_gives_two_measurements() -> None:
    a = collect_gemm([(8, 8, 8)], **FAST)
    b = collect_gemm([(8, 8, 8)], **FAST)
    assert a["measurement_id"][0] != b["measurement_id"][0]


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((0, 8, 8), r"shapes\[1\]: m=0 must be >= 1"),
        ((8, -1, 8), r"n=-1 must be >= 1"),
        ({"m": 8, "n": 8, "k": 8.5}, r"field 'k' must be an integer"),
        ({"m": 8, "n": 8, "k": 8, "dtype": "fp12"}, r"dtype 'fp12' is not supported"),
        ({"m": 8, "n": 8, "k": 8, "dtype": "bf16"}, r"dtype 'bf16' is not supported by backend 'numpy'"),
        ({"m": 8, "n": 8, "k": 8, "layout": "xx"}, r"layout 'xx'"),
        ((10**6, 10**6, 10**6), r"max_operand_bytes"),
        ({"n": 8, "k": 8}, r"field 'm' must be an integer"),
    ],
)
def test_bad_shapes_name_the_field(shape: object, match: str) -> None:
    with pytest.raises(CollectorError, match=match):
        collect_gemm([(8, 8, 8), shape], **FAST)  # the good first shape is never timed either


def test_bad_backend_device_and_frame_columns() -> None:
    with pytest.raises(CollectorError, match="backend 'cupy'"):
        collect_gemm([(8, 8, 8)], backend="cupy", **FAST)  # type: ignore[arg-type]
    with pytest.raises(CollectorError, match="device"):
        collect_gemm([(8, 8, 8)], device="tpu", **FAST)
    with pytest.raises(CollectorError, match=r"column\(s\) \['k'\] missing"):
        collect_gemm(pl.DataFrame({"m": [8], "n": [8]}), **FAST)
    with pytest.raises(CollectorError, match="no GEMM shapes"):
        collect_gemm([], **FAST)


def test_sweep_grid_and_random() -> None:
    grid = sweep_shapes("grid", sizes=(8, 16), dtypes=("fp32", "fp64"))
    assert grid.height == 2**3 * 2 and set(grid["dtype"]) == {"fp32", "fp64"}
    rnd = sweep_shapes("random", n_shapes=200, min_dim=16, max_dim=4096, seed=1)
    dims = rnd.select("m", "n", "k").to_numpy()
    assert dims.min() >= 16 and dims.max() <= 4096
    # log-uniform: about half the dims fall below the geometric midpoint (256)
    assert 0.4 < (dims < 256).mean() < 0.6
    assert rnd.equals(sweep_shapes("random", n_shapes=200, min_dim=16, max_dim=4096, seed=1))
    with pytest.raises(CollectorError, match="min_dim"):
        sweep_shapes("random", min_dim=64, max_dim=8)


def test_rotation_copies_exceed_the_cache_within_budget() -> None:
    mb = 1 << 20
    copies = rotation_copies(mb, 32 * mb)
    assert copies * mb > 2 * 32 * mb
    assert rotation_copies(100 * mb, 32 * mb) == 1  # one set already exceeds the cache
    assert rotation_copies(mb, 32 * mb, budget=8 * mb) == 8  # memory budget caps it
    assert rotation_copies(512, 32 * mb) == gemm_mod.MAX_COPIES
    assert rotation_copies(mb, None) == 1


# ------------------------------------------------------------------------------ CLI
def _invoke(args: list[str]) -> object:
    return CliRunner().invoke(cli, ["collect", "gemm", *args])


def test_cli_appends_rows_to_the_store(tmp_path: Path) -> None:
    store = tmp_path / "s"
    res = _invoke(["--sweep", "grid", "--sizes", "8", "--dtype", "fp32,fp64", "--min-time", "0", "--threads", "1",
                   "--store", str(store)])  # fmt: skip
    assert res.exit_code == 0, res.output
    df = DatasetStore(store).read("gemm")
    assert df.height == 2 and sorted(df["dtype"].to_list()) == ["fp32", "fp64"]


def test_cli_bad_dtype_leaves_store_unchanged(tmp_path: Path) -> None:
    store = tmp_path / "s"
    DatasetStore(store)  # empty store
    res = _invoke(
        ["--sweep", "grid", "--sizes", "8", "--dtype", "fp32,int3", "--min-time", "0", "--store", str(store)]
    )
    assert res.exit_code != 0
    assert isinstance(res.exception, CollectorError) and "int3" in str(res.exception)
    assert DatasetStore(store).read("gemm").height == 0


def test_cli_unreadable_shapes_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "shapes.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    res = _invoke(["--shapes-file", str(bad), "--store", str(tmp_path / "s")])
    assert res.exit_code != 0 and "shapes" in str(res.exception)
    assert DatasetStore(tmp_path / "s").read("gemm").height == 0


def test_cli_push_without_client_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hwsurrogate.client", None)  # import fails
    res = _invoke(["--sweep", "grid", "--sizes", "8", "--min-time", "0", "--push", "http://127.0.0.1:1",
                   "--store", str(tmp_path / "s")])  # fmt: skip
    assert res.exit_code != 0 and "hwsurrogate.client" in res.output
    assert DatasetStore(tmp_path / "s").read("gemm").height == 0


def test_cli_push_sends_rows_through_the_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, str | None, str, int]] = []

    class FakeClient:
        def __init__(self, base_url: str, token: str | None = None) -> None:
            self.base_url, self.token = base_url, token

        def upload_rows(self, kind: str, frame: pl.DataFrame) -> dict[str, int]:
            sent.append((self.base_url, self.token, kind, frame.height))
            return {"added": frame.height}

    monkeypatch.setitem(sys.modules, "hwsurrogate.client", types.SimpleNamespace(HwsClient=FakeClient))
    res = _invoke(["--sweep", "grid", "--sizes", "8", "--min-time", "0", "--push", "http://svc:8000",
                   "--token", "T", "--store", str(tmp_path / "s")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert sent == [("http://svc:8000", "T", "gemm", 1)]
    assert DatasetStore(tmp_path / "s").read("gemm").height == 0  # pushed, not stored locally


def test_thread_cpu_timer_needs_one_cpu_thread_and_is_recorded() -> None:
    args = {**FAST, "threads": 2}
    with pytest.raises(CollectorError, match="threads=1"):
        collect_gemm([(8, 8, 8)], timer="thread_cpu", **args)
    row = collect_gemm([(8, 8, 8)], timer="thread_cpu", **FAST).row(0, named=True)
    assert json.loads(row["extra"])["timer"] == "thread_cpu" and row["runtime_ms"] > 0
    with pytest.raises(CollectorError, match="timer 'cpu'"):
        collect_gemm([(8, 8, 8)], timer="cpu", **FAST)  # type: ignore[arg-type]


def test_cli_push_connection_failure_names_the_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class DownClient:
        def __init__(self, base_url: str, token: str | None = None) -> None:
            pass

        def upload_rows(self, kind: str, frame: pl.DataFrame) -> dict[str, int]:
            raise ConnectionRefusedError("connection refused")

    monkeypatch.setitem(sys.modules, "hwsurrogate.client", types.SimpleNamespace(HwsClient=DownClient))
    res = _invoke(["--sweep", "grid", "--sizes", "8", "--min-time", "0", "--push", "http://down:1",
                   "--store", str(tmp_path / "s")])  # fmt: skip
    assert res.exit_code == 1 and "--push http://down:1: upload of 1 gemm rows failed" in res.output
    assert DatasetStore(tmp_path / "s").read("gemm").height == 0
