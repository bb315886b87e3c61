"""Fingerprint collector: the embedded reference-arch table, micro-benchmarks, the devices row."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import polars as pl
import pytest
import torch
from click.testing import CliRunner

from hwsurrogate.cli import cli
from hwsurrogate.datasets.archspaces import HELP_REFERENCE_INDICES, check_arch_key
from hwsurrogate.datasets.collectors import fingerprint as fp
from hwsurrogate.datasets.collectors.gemm import collect_gemm
from hwsurrogate.datasets.schemas import schema
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import CollectorError


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_reference_table_covers_help_indices_with_canonical_keys() -> None:
    for space in ("nb201", "fbnet"):
        assert set(fp.REFERENCE_ARCHS[space]) == set(HELP_REFERENCE_INDICES[space])
        for key in fp.REFERENCE_ARCHS[space].values():
            assert check_arch_key(space, key) == key
    assert [i for i, _ in fp.reference_keys("nb201")] == list(HELP_REFERENCE_INDICES["nb201"])


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("space", "file", "index_col"),
    [("nb201", "nasbench201", "nb201_index"), ("fbnet", "fbnet", "fbnet_index")],
)
def test_reference_table_matches_help_data(data_dir: Path, space: str, file: str, index_col: str) -> None:
    path = data_dir / "latency" / "help" / "derived" / f"{file}_latency_ms.csv.xz"
    with lzma.open(path) as fh:
        df = pl.read_csv(fh.read(), columns=[index_col, "arch_str", "is_hw_embedding_ref"])
    refs = df.filter(pl.col("is_hw_embedding_ref").cast(pl.String).is_in(["1", "true", "True"]))
    from_data = dict(zip(refs[index_col].to_list(), refs["arch_str"].to_list(), strict=True))
    assert from_data == fp.REFERENCE_ARCHS[space]


def test_stream_triad_reports_bandwidth() -> None:
    res = fp.stream_triad_gbs(n_elements=1 << 16, chunk=1 << 12, repeats=2)
    assert res["triad_gbs"] > 0 and res["threads"] == 1
    with pytest.raises(CollectorError, match="n_elements"):
        fp.stream_triad_gbs(n_elements=10, chunk=100)


def test_dispatch_overhead_is_positive_microseconds() -> None:
    assert 0 < fp.dispatch_overhead_us("cpu", n=200) < 10_000


@pytest.fixture
def small_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    """One reference arch per space and 16^3 GEMMs, so the whole row is built in a second or two."""
    monkeypatch.setattr(
        fp,
        "reference_keys",
        lambda space: [
            (i, fp.REFERENCE_ARCHS[space][i]) for i in (9, 2514) if i in fp.REFERENCE_ARCHS[space]
        ],
    )

    def gemm_small(device: str, *, quick: bool) -> dict[str, float]:
        df = collect_gemm([(16, 16, 16)], min_time_s=0.0, min_samples=3, progress=False, measure_energy=False)
        return {"fp32": 2 * 16**3 / (df["runtime_ms"][0] / 1e3) / 1e9, "size": 16.0}

    monkeypatch.setattr(fp, "gemm_throughput", gemm_small)
    monkeypatch.setattr(
        fp, "stream_triad_gbs", lambda **kw: {"triad_gbs": 1.5, "array_mb": 0.1, "threads": 1}
    )


def test_fingerprint_row_is_keyed_like_the_help_importer(small_fingerprint: None) -> None:
    df = fp.collect_fingerprint(quick=True, repeats=1, threads=1, progress=False)
    assert df.schema == schema("devices") and df.height == 1
    row = df.row(0, named=True)
    assert row["kind"] == "cpu" and row["device_id"].endswith("-cpu") and row["cores"] >= 1
    finger = json.loads(row["fingerprint"])
    assert set(finger) == {"nb201", "fbnet"}
    assert list(finger["nb201"]) == ["9"] and list(finger["fbnet"]) == ["2514"]
    assert all(v > 0 for lat in finger.values() for v in lat.values())
    desc = json.loads(row["descriptors"])
    assert desc["micro_benchmarks"]["gemm_gflops"]["fp32"] > 0
    assert desc["micro_benchmarks"]["dispatch_overhead_us"] > 0
    assert row["mem_bw_gbs"] == 1.5 and desc["threads"] == 1 and "torch" in desc["software"]
    assert row["peak_fp32_gflops"] is None  # achieved throughput is not reported as a peak


def test_fingerprint_protocol_defaults_to_one_thread_and_rebuilt_rounds(small_fingerprint: None) -> None:
    row = fp.collect_fingerprint(quick=True, progress=False).row(0, named=True)
    protocol = json.loads(row["descriptors"])["fingerprint_protocol"]
    assert protocol["reference_threads"] == 1 and protocol["rounds"] == 2 and protocol["repeats"] == 6
    assert protocol["rebuild_each_round"] is True and "fastest" in protocol["statistic"]


def test_fingerprint_bad_input() -> None:
    with pytest.raises(CollectorError, match="device 'tpu'"):
        fp.collect_fingerprint(device="tpu")
    with pytest.raises(CollectorError, match="repeats"):
        fp.collect_fingerprint(repeats=0)
    if not torch.cuda.is_available():
        with pytest.raises(CollectorError, match="no CUDA GPU"):
            fp.collect_fingerprint(device="cuda")


def test_cli_recollecting_replaces_the_device_row(small_fingerprint: None, tmp_path: Path) -> None:
    store = tmp_path / "s"
    runner = CliRunner()
    for _ in range(2):
        res = runner.invoke(cli, ["collect", "fingerprint", "--quick", "--repeats", "1", "--threads", "1",
                                  "--store", str(store)])  # fmt: skip
        assert res.exit_code == 0, res.output
    df = DatasetStore(store).read("devices")
    assert df.height == 1 and df["source"][0] == "collector:fingerprint"


def test_cli_bad_device_writes_nothing(tmp_path: Path) -> None:
    store = tmp_path / "s"
    res = CliRunner().invoke(cli, ["collect", "fingerprint", "--device", "npu", "--store", str(store)])
    assert res.exit_code != 0 and "device 'npu'" in str(res.exception)
    assert DatasetStore(store).read("devices").height == 0
