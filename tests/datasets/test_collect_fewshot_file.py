"""The few-shot story's first step: `hws collect latency --references --random K --out m.csv`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from hwsurrogate.cli import cli
from hwsurrogate.cli.collect import MEASUREMENT_COLUMNS
from hwsurrogate.datasets.archspaces import HELP_REFERENCE_ARCHS
from hwsurrogate.datasets.collectors import dnn_latency
from hwsurrogate.datasets.store import DatasetStore

QUICK = ["--repeats", "2", "--warmup", "0"]


def _seed(output: str) -> int:
    found = re.search(r"seed (\d+)", output)
    assert found, output
    return int(found.group(1))


def test_references_plus_random_go_to_the_file_adapt_reads(tmp_path: Path) -> None:
    out, store = tmp_path / "m.csv", tmp_path / "s"
    res = CliRunner().invoke(
        cli, ["collect", "latency", "--references", "--random", "2", *QUICK, "--out", str(out), "--store", str(store)]
    )
    assert res.exit_code == 0, res.output
    m = pl.read_csv(out)
    assert tuple(m.columns) == MEASUREMENT_COLUMNS
    refs = HELP_REFERENCE_ARCHS["nb201"]
    assert m["arch_key"].to_list()[:10] == list(refs.values())
    assert m["arch_index"].to_list()[:10] == list(refs)  # adapt finds the fingerprint by index
    assert m.height == 12 and m["arch_key"].n_unique() == 12 and (m["latency_ms"] > 0).all()
    assert (m["space"] == "nb201").all()
    assert "hws adapt --device NAME --measurements" in res.output
    assert DatasetStore(store).read("latency").height == 0  # the file, not the store


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """collect_latency replaced by a recorder (no networks are built)."""
    seen: list[dict[str, Any]] = []

    def fake(space: str, keys: list[str], **kw: Any) -> pl.DataFrame:
        seen.append({"space": space, "keys": list(keys), **kw})
        n = len(keys)
        return pl.DataFrame({"device_id": ["local/x-cpu"] * n, "space": [space] * n, "arch_key": keys,
                             "arch_index": [None] * n, "batch": [1] * n, "latency_ms": [1.0] * n})  # fmt: skip

    monkeypatch.setattr(dnn_latency, "collect_latency", fake)
    return seen


def test_random_uses_a_fresh_printed_seed_and_seed_repeats_a_draw(tmp_path: Path, calls: list) -> None:
    """Before: --random defaulted to seed 0, so every user re-measured quickstart's networks."""
    args = ["collect", "latency", "--random", "5", "--out", str(tmp_path / "m.csv")]
    first, second = CliRunner().invoke(cli, args), CliRunner().invoke(cli, args)
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    assert _seed(first.output) != _seed(second.output)
    assert calls[0]["keys"] != calls[1]["keys"]
    again = CliRunner().invoke(cli, [*args, "--seed", str(_seed(first.output))])
    assert again.exit_code == 0 and calls[2]["keys"] == calls[0]["keys"]


def test_random_archs_are_never_the_references_and_timing_uses_one_thread(tmp_path: Path, calls: list) -> None:
    res = CliRunner().invoke(
        cli, ["collect", "latency", "--references", "--random", "50", "--out", str(tmp_path / "m.csv")]
    )
    assert res.exit_code == 0, res.output
    keys = calls[0]["keys"]
    assert len(keys) == 60 == len(set(keys))
    assert calls[0]["threads"] == 1  # before: torch's default (every core), noisy on a shared machine


def test_out_and_push_are_exclusive(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        cli, ["collect", "latency", "--references", "--out", str(tmp_path / "m.csv"), "--push", "http://x:1"]
    )
    assert res.exit_code == 2 and "not both" in res.output


def test_reference_keys_exist_for_nb201_and_fbnet_only() -> None:
    assert len(dnn_latency.reference_arch_keys("fbnet")) == 10
    with pytest.raises(Exception, match="reference archs exist"):
        dnn_latency.reference_arch_keys("ofa")
