"""PowerGear power features (hand-computed), the log-space tree ensemble, the fpga-power bench, bad input."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from hwsurrogate.benchmarks.fpga import bench_power, repeatability_floor
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.surrogates.features import (
    POWERGEAR_ACTIVITY_FEATURES,
    POWERGEAR_HLS_FEATURES,
    POWERGEAR_ROUTE_FEATURES,
    powergear_features,
)
from hwsurrogate.surrogates.models.fpga import LogTreeEnsemble

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _pragmas(loops: dict[str, list[tuple[int, int]]]) -> str:
    return json.dumps({k: [{"pipeline": p, "unroll": u} for p, u in v] for k, v in loops.items()})


def _design(design_id: str, loops: dict[str, list[tuple[int, int]]], io: int = 2) -> dict:
    n_pipe = sum(p for v in loops.values() for p, _ in v)
    max_u = max(u for v in loops.values() for _, u in v)
    extra = {
        "io_buffer_partition": io,
        "buffer_partition_d1d2": 1,
        "n_pipelined_loops": n_pipe,
        "max_unroll": max_u,
    }
    return {"design_id": design_id, "pragmas": _pragmas(loops), "extra": json.dumps(extra)}


def _hls(
    design_id: str, lut: float, ff: float, dsp: float, bram: float, c_arith: int, rtl_arith: int
) -> dict:
    extra = {"c_num_arith": c_arith, "c_num_logic": 3, "rtl_num_arith": rtl_arith, "rtl_num_logic": 5,
             "clk_estimated_ns": 8.0, "data_input_port": "2x32", "data_output_port": "1x32"}  # fmt: skip
    return {
        "design_id": design_id,
        "lut": lut,
        "ff": ff,
        "dsp": dsp,
        "bram": bram,
        "extra": json.dumps(extra),
    }


def _route(design_id: str, lut: float, ff: float, dsp: float, bram: float, vivado_w: float) -> dict:
    extra = {"logic_luts": lut - 20, "lutrams": 10, "srls": 10, "freq_mhz": 100}
    return {"design_id": design_id, "lut": lut, "ff": ff, "dsp": dsp, "bram": bram,
            "power_dynamic_w": vivado_w, "extra": json.dumps(extra)}  # fmt: skip


def _frames() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    designs = pl.DataFrame(
        [
            _design("k/a", {"l1": [(1, 2), (0, 4)], "l3": [(0, 1), (1, 1)]}),
            _design("k/b", {"l1": [(0, 1), (0, 1)]}, io=1),
        ]
    )
    # report rows deliberately in another order than the designs
    hls = pl.DataFrame([_hls("k/b", 500, 300, 0, 2, 4, 4), _hls("k/a", 1000, 600, 5, 4, 4, 8)])
    route = pl.DataFrame([_route("k/b", 400, 250, 0, 2, 0.005), _route("k/a", 800, 500, 5, 4, 0.02)])
    return designs, hls, route


def test_powergear_features_match_hand_computed_values() -> None:
    designs, hls, route = _frames()
    f = powergear_features(designs, hls, route)
    assert f.columns == [*POWERGEAR_HLS_FEATURES, *POWERGEAR_ROUTE_FEATURES]
    a, b = f.row(0, named=True), f.row(1, named=True)
    assert a["n_loops"] == 4 and b["n_loops"] == 2
    assert a["log2_unroll_prod"] == pytest.approx(3.0)  # log2(2 * 4 * 1 * 1)
    assert a["log2_unroll_sum"] == pytest.approx(3.0)  # log2(2 + 4 + 1 + 1)
    assert (
        a["n_outer_pipelined"] == 1
    )  # l1's outer loop is pipelined (inner fully unrolled); l3's is innermost
    assert a["log2_pipelined_unroll"] == pytest.approx(1.0)  # pipelined loops unroll 2 and 1
    assert b["n_outer_pipelined"] == 0 and b["log2_pipelined_unroll"] == 0
    # nest speeds: l1 = log2(2*4) + 3 (pipelined) + 5 (one loop unrolled below) = 11; l3 = 0 + 3 = 3
    assert a["nest_speed_spread"] == pytest.approx(8.0)
    assert a["nest_activity"] == pytest.approx(2 / ((2**11 + 2**3) * (2**-11 + 2**-3)))
    assert a["slow_nest_time_share"] == pytest.approx(2**-3 / (2**-11 + 2**-3))
    assert (b["nest_speed_spread"], b["nest_activity"], b["slow_nest_time_share"]) == (0, 1, 1)
    assert a["io_buffer_partition"] == 2 and b["io_buffer_partition"] == 1
    assert a["log2_max_unroll"] == pytest.approx(2.0)
    assert a["in_port_bits"] == 64 and a["out_port_bits"] == 32
    assert a["hls_lut"] == 1000 and b["hls_lut"] == 500  # joined by design, not by row order
    assert a["log_hls_switched"] == pytest.approx(math.log(1000 + 0.5 * 600 + 10 * 5 + 20 * 4 + 1))
    assert a["arith_parallelism"] == pytest.approx(2.0) and a["dsp_per_c_op"] == pytest.approx(1.25)
    assert a["log_vivado_dynamic_mw"] == pytest.approx(math.log(20.0))
    assert b["log_vivado_dynamic_mw"] == pytest.approx(math.log(5.0))
    assert a["route_to_hls_ff"] == pytest.approx(500 / 600)
    assert a["route_lutram"] == 10 and a["route_freq_mhz"] == 100
    switched = math.log(800 + 0.5 * 500 + 10 * 5 + 20 * 4 + 1)
    assert a["log_vivado_per_switched"] == pytest.approx(math.log(20.0) - switched)


def test_powergear_activity_features_match_hand_computed_values() -> None:
    designs, hls, route = _frames()
    f = powergear_features(designs, hls, route, activity=True)
    assert f.columns == [*POWERGEAR_HLS_FEATURES, *POWERGEAR_ACTIVITY_FEATURES, *POWERGEAR_ROUTE_FEATURES]
    a, b = f.row(0, named=True), f.row(1, named=True)
    # a: nest l1 speed s = 11 (see above), pipelined so its operator copies r = 11 - 3 = 8 (2*4 unroll
    # x 32 for the loop unrolled below the pipeline); nest l3 s = 3, r = 0 (pipelining copies nothing)
    t1, t3 = 2**-11 / (2**-11 + 2**-3), 2**-3 / (2**-11 + 2**-3)  # run-time shares
    act = (2**8 * t1 + 2**0 * t3) / (2**8 + 2**0)
    assert a["replicated_activity"] == pytest.approx(act)
    assert a["log2_throughput"] == pytest.approx(-math.log2(2**-11 + 2**-3))
    assert a["word_bits"] == 32
    assert a["log_act_switched"] == pytest.approx(math.log((1000 + 0.5 * 600 + 10 * 5 + 20 * 4 + 1) * act))
    assert a["log_act_lut"] == pytest.approx(math.log(1000 * act + 1))
    assert a["log_act_dsp"] == pytest.approx(math.log(5 * act + 1))
    assert a["log_act_bram"] == pytest.approx(math.log(4 * act + 1))
    assert a["log_act_arith_bits"] == pytest.approx(math.log(8 * 32 * act + 1))  # 8 RTL arith ops
    assert a["log_act_logic_bits"] == pytest.approx(math.log(5 * 32 * act + 1))
    assert a["log_work_rate_bits"] == pytest.approx(-math.log(2**-11 + 2**-3) + math.log(4 * 32 + 1))
    # b: one nest without directives: every operator busy all the time, throughput 1
    assert (b["replicated_activity"], b["log2_throughput"]) == (1, 0)
    assert b["log_act_ff"] == pytest.approx(math.log(300 + 1))
    # without activity=True the columns are the HLS (+ route) ones, values unchanged
    plain = powergear_features(designs, hls, route)
    assert plain.columns == [*POWERGEAR_HLS_FEATURES, *POWERGEAR_ROUTE_FEATURES]
    assert plain.equals(f.select(plain.columns))


@pytest.mark.parametrize("port", ["data_input_port", "data_output_port"])
@pytest.mark.parametrize("value", ["32", "2x", "2 x 32", None])
def test_powergear_features_malformed_port_is_named(port: str, value: str | None) -> None:
    designs, hls, _ = _frames()
    extra = [json.loads(e) for e in hls["extra"]]
    extra[1][port] = value
    bad = hls.with_columns(pl.Series("extra", [json.dumps(e) for e in extra]))
    with pytest.raises(
        ValueError, match=rf"hls: 'extra\.{port}' must be '<ports>x<bits>', got .* design 'k/a'"
    ):
        powergear_features(designs, bad, activity=True)


def test_powergear_nests_with_identical_directives_stay_separate() -> None:
    designs, hls, _ = _frames()
    twin = designs.with_columns(
        pl.lit(_pragmas({"l1": [(0, 1), (1, 1)], "l3": [(0, 1), (1, 1)]})).alias("pragmas")
    )
    f = powergear_features(twin, hls).row(0, named=True)
    assert f["n_loops"] == 4 and f["n_outer_pipelined"] == 0  # levels counted per nest, not per text
    assert f["nest_activity"] == pytest.approx(0.5)  # two balanced nests: each busy half the time


def test_powergear_features_without_route_are_the_hls_stage_only() -> None:
    designs, hls, _ = _frames()
    f = powergear_features(designs, hls)
    assert f.columns == list(POWERGEAR_HLS_FEATURES)
    assert not any(c.startswith(("route_", "log_route", "log_vivado")) for c in f.columns)


@pytest.mark.parametrize(
    ("frame", "column"), [("designs", "pragmas"), ("hls", "extra"), ("route", "power_dynamic_w")]
)
def test_powergear_features_missing_column_is_named(frame: str, column: str) -> None:
    frames = dict(zip(("designs", "hls", "route"), _frames(), strict=True))
    frames[frame] = frames[frame].drop(column)
    with pytest.raises(ValueError, match=rf"{frame} frame misses column\(s\) \['{column}'\]"):
        powergear_features(frames["designs"], frames["hls"], frames["route"])


def test_powergear_features_design_without_report_names_the_design() -> None:
    designs, hls, route = _frames()
    with pytest.raises(ValueError, match=r"hls: no report row .* 'k/a'"):
        powergear_features(designs, hls.filter(pl.col("design_id") != "k/a"))
    with pytest.raises(ValueError, match=r"route: no report row .* 'k/b'"):
        powergear_features(designs, hls, route.filter(pl.col("design_id") != "k/b"))


def test_powergear_features_bad_loop_directive_is_named() -> None:
    designs, hls, _ = _frames()
    bad = designs.with_columns(pl.lit('{"l1":[{"pipeline":0,"unroll":0}]}').alias("pragmas"))
    with pytest.raises(ValueError, match="'unroll' factors must be >= 1"):
        powergear_features(bad, hls)
    bad = designs.with_columns(pl.lit('{"l1":[{"pipeline":0}]}').alias("pragmas"))
    with pytest.raises(ValueError, match="lacks 'pipeline' or 'unroll'"):
        powergear_features(bad, hls)


@pytest.mark.parametrize("bad", [np.nan, 0.0, -1.5])
def test_log_tree_ensemble_rejects_nan_or_nonpositive_power(bad: float) -> None:
    x = np.arange(20, dtype=float).reshape(10, 2)
    y = np.linspace(1, 2, 10)
    y[3] = bad
    with pytest.raises(ValueError, match=r"y must be finite and > 0 .* e\.g\. row 3"):
        LogTreeEnsemble(max_iter=5, n_estimators=3).fit(x, y)


def test_log_tree_ensemble_rejects_nan_features_and_wrong_width() -> None:
    x = np.ones((10, 3))
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="column 1"):
        LogTreeEnsemble(max_iter=5, n_estimators=3).fit(x, np.ones(10))
    m = LogTreeEnsemble(max_iter=5, n_estimators=3).fit(np.ones((10, 3)), np.ones(10))
    with pytest.raises(ValueError, match=r"expected \(n, 3\)"):
        m.predict(np.ones((2, 4)))


def test_log_tree_ensemble_fits_a_multiplicative_power_law() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 10, size=(400, 2))
    y = 3.0 * x[:, 0] * x[:, 1]  # power ~ resources x activity
    m = LogTreeEnsemble(max_iter=100, n_estimators=30, min_samples_leaf=2).fit(x, y)
    xt = rng.uniform(2, 9, size=(100, 2))
    rel = np.abs(m.predict(xt) / (3.0 * xt[:, 0] * xt[:, 1]) - 1)
    assert rel.mean() < 0.08  # a constant (geometric-mean) predictor is off by ~60%


def test_repeatability_floor_is_loo_error_within_identical_hls_reports() -> None:
    designs, hls, _ = _frames()
    x = powergear_features(designs[[0, 1, 1, 0]], hls)
    kernels = np.array(["k", "k", "k", "k"])
    # rows 0 and 3 are both k/a (same HLS report), measured 10 and 12; k/b rows 1, 2 measured 5 and 5
    floor, n = repeatability_floor(x, kernels, np.array([10.0, 5.0, 5.0, 12.0]))
    assert n == 4
    assert floor == pytest.approx((20.0 + 100 * 2 / 12 + 0 + 0) / 4)


def _store_rows(n_kernels: int = 3, n_designs: int = 16) -> pl.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for k in range(n_kernels):
        for i in range(n_designs):
            did = f"kern{k}/xczu9eg/d{i}"
            u = int(2 ** (i % 4))
            d = _design(did, {"l1": [(i % 2, u), (0, 1)], "l3": [(0, 1), ((i // 2) % 2, 1)]})
            lut, ff, dsp = 500.0 * u + 100 * k, 400.0 * u, 5.0 * u
            viv = 0.002 * u + 0.001 * (i % 3)
            common = {"domain": "hlsdataset", "kernel": f"kern{k}", "part": "xczu9eg",
                      "pragmas": d["pragmas"], "design_id": did}  # fmt: skip
            hls = _hls(did, lut, ff, dsp, 4.0, 4, 4 * u)
            rows.append({**common, **hls, "stage": "hls_estimate"})
            route = _route(did, 0.8 * lut, 0.9 * ff, dsp, 4.0, viv)
            rows.append({**common, **route, "stage": "post_route", "power_method": "vivado_estimate"})
            dyn = 0.45 * viv * (1 + 0.05 * rng.standard_normal())
            stat = 0.35 + 1e-6 * ff
            rows.append({**common, "stage": "on_board", "extra": d["extra"], "power_static_w": stat,
                         "power_dynamic_w": dyn, "power_total_w": stat + dyn,
                         "power_method": "board_measured"})  # fmt: skip
    return pl.DataFrame(rows).with_columns(
        pl.lit("test").alias("source"), pl.lit("tests").alias("origin"), pl.lit(NOW).alias("imported_at"),
        pl.format("{}|{}", "design_id", "stage").alias("measurement_id"), pl.lit("vivado").alias("tool"),
    )  # fmt: skip


def test_bench_power_runs_leave_one_kernel_out_and_writes_json(store: DatasetStore, tmp_path: Path) -> None:
    store.append("fpga", _store_rows(), partition="test")
    out = tmp_path / "p.json"
    res = CliRunner().invoke(
        bench_power,
        ["--json", str(out), "--calibrate", "2", "--max-iter", "10", "--n-estimators", "5"],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    rows = {(r["metric"], r["split"]): r for r in rep["rows"]}
    assert rep["data"]["held_out"] == ["kern0", "kern1", "kern2"]
    for stage in ("hls", "hls-activity", "route"):
        assert set(rep["details"][stage]["total"]) == {"kern0", "kern1", "kern2"}
        assert ("total power MAPE %", f"{stage}: held-out kern1") in rows
    head = [r for r in rep["rows"] if r["metric"] == "total power MAPE %" and r["anchor"] == 3.6]
    assert head and all(np.isfinite(r["ours"]) for r in head)
    # dynamic targets: issue 16's 10 % at the HLS stages, PowerGear's 8.81 % post-route
    dyn_head = {r["split"].split(":")[0]: r["target"] for r in rep["rows"]
                if r["metric"] == "dynamic power MAPE %" and r["anchor"] == 8.81}  # fmt: skip
    assert dyn_head == {"hls": 10.0, "hls-activity": 10.0, "route": 8.81}
    # dynamic = 0.45 x Vivado +-5%: the post-route model (predicting the ratio) must be near the noise
    assert rows[("dynamic power MAPE %", "route: mean over designs")]["ours"] < 15


def test_bench_power_unknown_test_kernel_and_empty_store_fail_clearly(store: DatasetStore) -> None:
    res = CliRunner().invoke(bench_power, ["--max-iter", "5"])
    assert res.exit_code != 0 and "hws data import hlsdataset" in str(res.exception)
    store.append("fpga", _store_rows(2, 6), partition="test")
    res = CliRunner().invoke(bench_power, ["--test-kernel", "gemm"])
    assert res.exit_code != 0 and "unknown kernel(s) ['gemm']" in res.output


def test_powergear_features_on_the_public_data_are_complete_and_match_the_csv(
    store: DatasetStore, data_dir: Path
) -> None:
    from hwsurrogate.benchmarks.fpga import powergear_rows
    from hwsurrogate.datasets.importers import import_source

    import_source("hlsdataset", data_dir / "fpga" / "hlsdataset_powergear", store=store)
    board, hls, route = powergear_rows(store)
    f = powergear_features(board, hls, route)
    assert f.shape == (4580, len(POWERGEAR_HLS_FEATURES) + len(POWERGEAR_ROUTE_FEATURES))
    assert not f.select(pl.all().is_null() | pl.all().is_nan()).to_numpy().any()
    # atax/xczu9eg io1_l1n1n1_l3n1n1 in derived/polybench_designs_joined.csv: HLS LUT 971, FF 653,
    # DSP 5, BRAM18 11; post-route LUT 512, FF 485, BRAM 2*4+3; Vivado 8.950 mW; no directives
    row = f.row(board["design_id"].to_list().index("atax/xczu9eg-ffvb1156-2-i/io1_l1n1n1_l3n1n1"), named=True)
    assert (row["hls_lut"], row["hls_ff"], row["hls_dsp"], row["hls_bram"]) == (971, 653, 5, 11)
    assert (row["route_lut"], row["route_ff"], row["route_bram"]) == (512, 485, 11)
    assert row["log_vivado_dynamic_mw"] == pytest.approx(math.log(8.950))
    assert (row["n_loops"], row["log2_unroll_prod"], row["nest_activity"]) == (4, 0, 0.5)
