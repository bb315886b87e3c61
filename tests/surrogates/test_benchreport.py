"""The common benchmark JSON shape and the BENCHMARKS.md generator."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from hwsurrogate.benchmarks.report import BenchReport

ROOT = Path(__file__).resolve().parents[2]


def _make_table():
    spec = importlib.util.spec_from_file_location("make_table", ROOT / "benchmarks" / "make_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_rows_decide_met_by_direction_and_nan_is_a_miss(tmp_path: Path) -> None:
    rep = BenchReport("toy", "protocol")
    lo = rep.add("MAPE %", "a", 7.0, anchor=13.8, target=8.0)
    hi = rep.add("R2", "a", 0.95, target=0.99, direction=">=")
    nan = rep.add("MAPE %", "b", float("nan"), target=8.0)
    rep.command = "hws bench toy"
    rep.emit(tmp_path / "toy.json")
    assert (lo.met, hi.met, nan.met) == (True, False, False)
    data = json.loads((tmp_path / "toy.json").read_text())
    assert data["rows"][2]["ours"] is None and data["benchmark"] == "toy" and data["wall_s"] >= 0


def test_make_table_renders_every_row_and_skips_malformed_files(tmp_path: Path) -> None:
    rep = BenchReport("toy", "p")
    rep.add("MAPE %", "H100 bmm", 12.5, anchor=13.8, target=15.0)
    rep.command = "hws bench toy --json x"
    rep.emit(tmp_path / "toy.json")
    (tmp_path / "broken.json").write_text('{"benchmark": "x"}')
    mt = _make_table()
    out = tmp_path / "B.md"
    assert mt.main(["--results", str(tmp_path), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| MAPE % | H100 bmm | 12.5 | 13.8 | <= 15 | yes |" in text
    assert "`hws bench toy --json x`" in text
    assert "broken.json: missing key(s) ['command', 'wall_s', 'rows']" in text
