"""Finding things from the command line: full device lists, full URLs, uncut keys, cwd models, typo hints."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from hwsurrogate.cli import cli
from hwsurrogate.datasets.collectors.dnn_latency import collect_latency
from hwsurrogate.datasets.importers import sources
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import CollectorError

from .datasets.factories import latency_frame

FBNET_KEY = " ".join(["k5_e6"] * 11 + ["k3_e1_g2"] * 11)  # 142 characters: cut to 40 before


def _latency_rows(device: str, keys: list[str]) -> pl.DataFrame:
    return latency_frame(len(keys), device=device).with_columns(
        pl.lit("fbnet").alias("space"), pl.Series("arch_key", keys)
    )


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    s = DatasetStore(tmp_path / "store")
    s.append("latency", _latency_rows("help/a-very-long-device-name_256", [FBNET_KEY]), partition="t")
    s.append("latency", _latency_rows("latbench/board2", [FBNET_KEY.replace("k5_e6", "k3_e3")]), partition="t")
    return s


def test_data_list_shows_the_device_ids(store: DatasetStore) -> None:
    res = CliRunner().invoke(cli, ["data", "list", "--store", str(store.root)])
    assert res.exit_code == 0, res.output
    assert "latency devices (2):" in res.output
    assert "help/a-very-long-device-name_256" in res.output and "latbench/board2" in res.output


def test_data_show_never_cuts_keys(store: DatasetStore) -> None:
    res = CliRunner().invoke(cli, ["data", "show", "latency", "--store", str(store.root)])
    assert res.exit_code == 0, res.output
    assert FBNET_KEY in res.output  # whole, on one line: copyable into `hws predict`
    as_json = CliRunner().invoke(cli, ["data", "show", "latency", "--json", "--store", str(store.root)])
    rows = json.loads(as_json.output)  # a Delta table's scan order is not insertion order
    assert next(r for r in rows if r["device_id"].startswith("help/"))["arch_key"] == FBNET_KEY


def test_data_sources_prints_full_urls_and_json() -> None:
    res = CliRunner().invoke(cli, ["data", "sources"])
    assert res.exit_code == 0
    for s in sources():
        assert s.url in res.output  # before: "https://gith..." in a narrow rich table
    got = json.loads(CliRunner().invoke(cli, ["data", "sources", "--json"]).output)
    assert {g["source"]: g["download"] for g in got} == {s.name: s.url for s in sources()}


def test_module_callable_resolves_files_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mynet_here.py").write_text(
        "import torch\ndef build():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))\n"
    )
    monkeypatch.chdir(tmp_path)  # no PYTHONPATH: before, this needed PYTHONPATH=.
    df = collect_latency("custom", ["mynet_here:build"], input_shape=(3, 2, 2), repeats=2, warmup=0, threads=1,
                         progress=False)  # fmt: skip
    assert df["arch_key"][0] == "mynet_here:build" and df["latency_ms"][0] > 0
    with pytest.raises(CollectorError, match=r"nor nowhere_net\.py in the current directory"):
        collect_latency("custom", ["nowhere_net:build"], input_shape=(3, 2, 2), repeats=1, progress=False)
    with pytest.raises(CollectorError, match="its callables: build"):
        collect_latency("custom", ["mynet_here:biuld"], input_shape=(3, 2, 2), repeats=1, progress=False)


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [(["predcit"], "'predict'"), (["data", "lsit"], "'list'"), (["collect", "latenc"], "'latency'"),
     (["predict", "gem"], "'gemm'")],
)  # fmt: skip
def test_a_mistyped_command_gets_did_you_mean(argv: list[str], suggestion: str) -> None:
    res = CliRunner().invoke(cli, argv)
    assert res.exit_code == 2
    assert f"Did you mean {suggestion}" in res.output


def test_a_command_with_no_close_match_keeps_clicks_message() -> None:
    res = CliRunner().invoke(cli, ["xyzzy"])
    assert res.exit_code == 2 and "No such command 'xyzzy'" in res.output and "Did you mean" not in res.output
