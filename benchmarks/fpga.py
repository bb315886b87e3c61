"""FPGA benchmarks: HLSyn (held-out kernels), PowerGear (leave-one-kernel-out), wa-hls4ml.

Each reads the store (``hws data import hlsyn|hlsdataset|wa-hls4ml|wa-hls4ml-dense``), prints
our number beside the published anchor, states its wall time and writes ``--json FILE``.
"""

from __future__ import annotations

import time

import click
import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, f1_score

from hwsurrogate.benchmarks.report import BenchReport, json_option, log_bench
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import TrainingDataError
from hwsurrogate.progress import track
from hwsurrogate.surrogates.features import hlsyn_features, powergear_features
from hwsurrogate.surrogates.models.fpga import (
    HLS4ML_TARGETS,
    HLSYN_TARGETS,
    HLSYN_TREE_PARAMS,
    FpgaRegressor,
    LogTreeEnsemble,
    hlsyn_reported_targets,
    hlsyn_targets,
)
from hwsurrogate.surrogates.training.fpga import hlsyn_frame, regression_rows
from hwsurrogate.surrogates.training.metrics import ape, regression_metrics, rmse
from hwsurrogate.surrogates.training.splits import HLSYN_TEST_KERNELS

HLSYN_FLOOR = {"v18": 3.735, "v20": 3.445}
#: wa-hls4ml paper Table 4 (synthetic test, "All", GNN) SMAPE % per target (different, 100k-design data).
WAHLS4ML_GNN_SMAPE = {"lut": 11.4, "ff": 11.6, "dsp": 15.1, "bram": 19.5, "cycles": 15.7, "ii": 13.4}


def rmse_known(y: np.ndarray, p: np.ndarray) -> float:
    """RMSE over rows whose target is known (zero FF etc. are imported as missing, not zero)."""
    ok = np.isfinite(y)
    return rmse(y[ok], p[ok])


def hlsyn_tree(gstats: pl.DataFrame, graphs: pl.DataFrame | None, max_iter: int) -> FpgaRegressor:
    """The benchmark's tree: loop-nest features + physics targets (chosen on training-kernel CV)."""
    physics = graphs is not None and graphs.height > 0
    return FpgaRegressor(kind="hlsyn", targets=HLSYN_TARGETS, log_target=False, graph_stats=gstats,
                         graphs=graphs if physics else None, physics=physics, max_iter=max_iter,
                         **HLSYN_TREE_PARAMS)  # fmt: skip


def _rmse_rows(report: BenchReport, split: str, y: np.ndarray, pred: np.ndarray, tool: str, model: str,
               n: int) -> dict[str, float]:  # fmt: skip
    per = {t: rmse_known(y[:, j], pred[:, j]) for j, t in enumerate(HLSYN_TARGETS)}
    label = "" if model == "tree" else f" ({model})"
    report.add(f"summed RMSE{label}", split, sum(per.values()), anchor=HLSYN_FLOOR[tool],
               target=HLSYN_FLOOR[tool] / 2, anchor_source="target = half the published floor", n=n)  # fmt: skip
    for t, v in per.items():
        report.add(f"RMSE {t}{label}", split, v, n=n)
    return per


@click.command("fpga-hlsyn")
@json_option("fpga-hlsyn")
@click.option("--tool", "tools", multiple=True, type=click.Choice(["v18", "v20"]), default=("v18", "v20"),
              show_default=True)  # fmt: skip
@click.option("--test-kernel", "test_kernels", multiple=True, help="Override HLSyn's held-out kernels.")
@click.option("--max-iter", default=150, show_default=True, help="Boosting iterations per target (trees).")
@click.option(
    "--gnn/--no-gnn", default=True, show_default=True, help="Also train and score the program-graph GNN."
)
@click.option("--gnn-seconds", default=150.0, show_default=True,
              help="Wall-clock cap on GNN training per tool (early stopping keeps the best epoch).")  # fmt: skip
@click.option("--gnn-designs-per-kernel", default=100, show_default=True,
              help="GNN trains on at most this many designs per training kernel (seeded subsample).")  # fmt: skip
@click.option("--seed", default=0, show_default=True, help="GNN seed (subsample, validation kernels, init).")
def bench_hlsyn(
    json_path: str | None, tools: tuple[str, ...], test_kernels: tuple[str, ...], max_iter: int, gnn: bool,
    gnn_seconds: float, gnn_designs_per_kernel: int, seed: int,
) -> None:  # fmt: skip
    """HLSyn protocol: HLSyn's held-out kernels, RMSE of normalised targets and validity F1.

    Main rows ("HLSyn protocol") follow HLSyn's code (ZongyueQin/HLSyn baselines/src/data.py and
    config.py): regression on every design with perf >= 100 cycles, valid or not (invalid designs
    can use several times the device), perf = log2(1e7 / cycles) / 2 and util_* = the tool-reported
    utilisation fractions (0 where the report is empty). Its train-mean floor reproduces the
    published 3.735 (v18) / 3.445 (v20). Two earlier variants are kept: valid designs only, and
    designs with a resource report (util = total / U200 capacity).

    Models: the tree (gradient boosting on pragma vectors, kernel graph statistics and analytical
    loop-nest features, perf fitted as a residual on the loop iteration count, utils in log2),
    the GNN (program graph with pragma values on pragma nodes, :mod:`.hlsyn_gnn`) and their mean.
    The GNN's early-stopping kernels (a fifth of the TRAINING kernels) also decide which of the
    three is "selected"; the held-out test kernels are never used for any choice.
    """
    import time

    from hwsurrogate.surrogates.features.program_graphs import kernel_graphs
    from hwsurrogate.surrogates.models.hlsyn_gnn import HlsynGNNConfig, HlsynGNNRegressor
    from hwsurrogate.surrogates.training.fpga import hlsyn_graph_rows, hlsyn_protocol_rows

    cpu0 = time.process_time()
    report = BenchReport("fpga-hlsyn", "HLSyn (NeurIPS'23 D&B): held-out kernels per tool version")
    store = DatasetStore()
    frame, gstats = hlsyn_frame(store)
    if frame.height == 0:
        raise TrainingDataError("the store has no hlsyn rows: run `hws data import hlsyn` first")
    graphs = hlsyn_graph_rows(store)
    kgraphs = kernel_graphs(graphs) if graphs.height else {}
    report.data = {"held_out_kernels": {t: list(test_kernels) or list(HLSYN_TEST_KERNELS[t]) for t in tools},
                   "gnn": {}}  # fmt: skip
    for tool in tools:
        part = frame.filter(pl.col("tool_tag") == tool)
        held = list(test_kernels) or list(HLSYN_TEST_KERNELS[tool])
        is_test = pl.col("kernel").is_in(held)
        # ---- HLSyn protocol: tree, GNN, mean
        rows = hlsyn_protocol_rows(part)
        tr, te = rows.filter(~is_test), rows.filter(is_test)
        if tr.height == 0 or te.height == 0:
            raise TrainingDataError(
                f"fpga-hlsyn {tool}: split left {tr.height} train / {te.height} test rows"
            )
        ytr, yte = hlsyn_reported_targets(tr).to_numpy(), hlsyn_reported_targets(te).to_numpy()
        split = f"{tool} HLSyn protocol: perf >= 100 cycles, invalid included ({te.height} test rows, {len(held)} kernels)"
        floor = sum(rmse_known(yte[:, j], np.full(len(yte), ytr[:, j].mean())) for j in range(len(HLSYN_TARGETS)))
        report.add("summed RMSE, train-mean floor", split, floor, anchor=HLSYN_FLOOR[tool],
                   anchor_source="HLSyn floor (brief); reproduced by this protocol", n=te.height)  # fmt: skip
        t_tree = time.perf_counter()
        p_tree = hlsyn_tree(gstats, graphs, max_iter).fit(tr, ytr).predict(te)
        details: dict = {"floor": floor, "n_train": tr.height, "n_test": te.height,
                         "tree_fit_predict_s": round(time.perf_counter() - t_tree, 1)}  # fmt: skip
        details["tree"] = _rmse_rows(report, split, yte, p_tree, tool, "tree", te.height)
        if gnn and kgraphs:
            t_gnn = time.perf_counter()
            cfg = HlsynGNNConfig(
                max_seconds=gnn_seconds, max_designs_per_kernel=gnn_designs_per_kernel, seed=seed
            )
            net = HlsynGNNRegressor(kgraphs, cfg).fit(tr, ytr)
            p_gnn = net.predict(te)
            details["gnn_fit_predict_s"] = round(time.perf_counter() - t_gnn, 1)
            details["gnn"] = _rmse_rows(report, split, yte, p_gnn, tool, "GNN", te.height)
            details["tree+GNN mean"] = _rmse_rows(report, split, yte, (p_tree + p_gnn) / 2, tool, "tree+GNN mean",
                                                  te.height)  # fmt: skip
            # validation on the GNN's early-stopping kernels (training kernels only) picks the model
            in_val = pl.col("kernel").is_in(net.val_kernels_)
            vtr, vva = tr.filter(~in_val), tr.filter(in_val)
            yv = hlsyn_reported_targets(vva).to_numpy()
            pv_tree = hlsyn_tree(gstats, graphs, max_iter).fit(vtr, hlsyn_reported_targets(vtr)).predict(vva)
            pv_gnn = net.predict(vva)
            val = {name: float(sum(rmse_known(yv[:, j], p[:, j]) for j in range(len(HLSYN_TARGETS))))
                   for name, p in (("tree", pv_tree), ("GNN", pv_gnn), ("tree+GNN mean", (pv_tree + pv_gnn) / 2))}  # fmt: skip
            chosen = min(val, key=val.get)
            details["validation"] = {"kernels": net.val_kernels_, "summed_rmse": val, "selected": chosen,
                                     "note": "GNN early-stopped on these kernels: its validation number is optimistic"}  # fmt: skip
            sel = {"tree": p_tree, "GNN": p_gnn, "tree+GNN mean": (p_tree + p_gnn) / 2}[chosen]
            total = sum(rmse_known(yte[:, j], sel[:, j]) for j in range(len(HLSYN_TARGETS)))
            report.add(f"summed RMSE, selected on validation kernels ({chosen})", split, total,
                       anchor=HLSYN_FLOOR[tool], target=HLSYN_FLOOR[tool] / 2,
                       anchor_source="target = half the published floor", n=te.height)  # fmt: skip
            report.data["gnn"][tool] = {"config": net.get_config(), "epochs": len(net.history_),
                                        "fit_seconds": round(net.fit_seconds_, 1),
                                        "val_kernels": net.val_kernels_}  # fmt: skip
        report.details[f"{tool}/HLSyn protocol"] = details
        # ---- earlier variants (tree only)
        for variant, vrows, target_fn in (
            ("valid designs", regression_rows(part).filter(pl.col("valid")), hlsyn_targets),
            ("all designs with results", regression_rows(part), hlsyn_targets),
        ):
            tr, te = vrows.filter(~is_test), vrows.filter(is_test)
            ytr, yte = target_fn(tr).to_numpy(), target_fn(te).to_numpy()
            floor = sum(
                rmse_known(yte[:, j], np.full(len(yte), np.nanmean(ytr[:, j]))) for j in range(len(HLSYN_TARGETS))
            )
            pred = hlsyn_tree(gstats, graphs, max_iter).fit(tr, ytr).predict(te)
            split = f"{tool} {variant} ({te.height} test rows, {len(held)} kernels)"
            report.add("summed RMSE, train-mean floor", split, floor, anchor=HLSYN_FLOOR[tool],
                       anchor_source="HLSyn floor (brief), different rows", n=te.height)  # fmt: skip
            per = _rmse_rows(report, split, yte, pred, tool, "tree", te.height)
            report.details[f"{tool}/{variant}"] = {"floor": floor, "rmse": per, "n_train": tr.height,
                                                   "n_test": te.height}  # fmt: skip
        cls = part.filter(pl.col("valid").is_not_null())
        ctr, cte = cls.filter(~is_test), cls.filter(is_test)
        # pragma vectors + graph statistics; the loop-nest features did not help validity on
        # training-kernel GroupKFold (v20 accuracy 0.66 -> 0.59), so the classifier leaves them out
        xtr, xte = hlsyn_features(ctr, gstats).to_numpy(), hlsyn_features(cte, gstats).to_numpy()
        empty = np.isnan(xtr).all(axis=0)  # e.g. positions no training kernel uses: a constant
        xtr[:, empty], xte[:, empty] = 0.0, 0.0
        clf = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.1, random_state=0)
        p = clf.fit(xtr, ctr["valid"].to_numpy().astype(int)).predict(xte)
        yv = cte["valid"].to_numpy().astype(int)
        report.add("validity accuracy", f"{tool} ({cte.height} test designs)", float(accuracy_score(yv, p)),
                   direction=">=", n=cte.height)  # fmt: skip
        report.add("validity F1", f"{tool} ({cte.height} test designs)", float(f1_score(yv, p)), direction=">=",
                   n=cte.height)  # fmt: skip
        report.add("validity accuracy, majority class", f"{tool}", float(max(yv.mean(), 1 - yv.mean())),
                   direction=">=", n=cte.height)  # fmt: skip
    report.data["cpu_s_main_process"] = round(time.process_time() - cpu0, 1)
    report.data["note"] = ("wall time measured on a 2-core machine shared by up to 5 sessions; "
                           "cpu_s_main_process is this process's CPU time")  # fmt: skip
    log_bench(report)
    report.emit(json_path)


#: PowerGear (DATE'22) leave-one-kernel-out MAPE % (mean over held-out kernels).
POWERGEAR_ANCHOR: dict[str, float] = {"total": 3.60, "dynamic": 8.81}
#: Issue 16's targets at the HLS stage: PowerGear's total, and dynamic 10 % (repeatable-twin
#: measurements put any HLS-stage model's floor near 8 %, so 8.81 is within noise of it).
HLS_STAGE_TARGET: dict[str, float] = {"total": 3.60, "dynamic": 10.0}
POWER_STAGES: dict[str, str] = {
    "hls": "HLS stage (directives + Vivado HLS report; PowerGear's stage)",
    "hls-activity": "HLS stage + activity-weighted aggregates (duty-cycle activity x resources/operator bits)",
    "route": "post-route (+ implementation report and Vivado's vectorless power estimate)",
}


def powergear_rows(store: DatasetStore) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Board-measured designs (sorted by ``design_id``) and their HLS and post-route report rows."""
    f = store.read("fpga").filter(pl.col("domain") == "hlsdataset")
    board = f.filter(pl.col("power_total_w").is_not_null() & (pl.col("stage") == "on_board")).sort(
        "design_id"
    )
    if board.height == 0:
        raise TrainingDataError(
            "the store has no on-board power rows: run `hws data import hlsdataset` first"
        )
    return board, f.filter(pl.col("stage") == "hls_estimate"), f.filter(pl.col("stage") == "post_route")


def _kernel_means(errors: np.ndarray, kernels: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    return {str(k): float(errors[mask & (kernels == k)].mean()) for k in np.unique(kernels[mask])}


def repeatability_floor(hls_x: pl.DataFrame, kernels: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """MAPE % of predicting a design by the mean of the *other* designs with an identical HLS report.

    Such designs (same kernel, same HLS resources/operators/clock) are the same hardware measured
    twice, so this is the board's measurement repeatability: a model that knew each design's
    true mean power would still score about this / sqrt(2) on single measurements.
    """
    key = [
        "kernel",
        "hls_lut",
        "hls_ff",
        "hls_dsp",
        "hls_bram",
        "rtl_num_arith",
        "rtl_num_logic",
        "clk_estimated_ns",
    ]
    d = hls_x.with_columns(pl.Series("kernel", kernels), pl.Series("y", y)).filter(pl.col("y") > 0)
    g = d.with_columns(pl.len().over(key).alias("n"), pl.col("y").sum().over(key).alias("s")).filter(
        pl.col("n") > 1
    )
    if g.height == 0:
        return float("nan"), 0
    loo = (g["s"] - g["y"]) / (g["n"] - 1)
    return float(ape(g["y"].to_numpy(), loo.to_numpy()).mean()), g.height


@click.command("fpga-power")
@json_option("fpga-power")
@click.option("--stage", "stages", multiple=True, type=click.Choice(sorted(POWER_STAGES)),
              default=("hls", "hls-activity", "route"),
              show_default=True, help="Which design information the model may use (repeatable).")  # fmt: skip
@click.option("--test-kernel", "test_kernels", multiple=True,
              help="Held-out kernels to score (each trained on all other kernels); default: all 9.")  # fmt: skip
@click.option("--calibrate", default=5, show_default=True, type=click.IntRange(min=0),
              help="Few-shot variant: measured designs of the held-out kernel used to calibrate its static "
                   "power (0 = skip). Those designs are not scored.")  # fmt: skip
@click.option("--max-iter", default=300, show_default=True, type=click.IntRange(min=1),
              help="Boosting iterations of the GBT half.")  # fmt: skip
@click.option("--n-estimators", default=150, show_default=True, type=click.IntRange(min=1),
              help="Trees of the extra-trees half.")  # fmt: skip
def bench_power(
    json_path: str | None,
    stages: tuple[str, ...],
    test_kernels: tuple[str, ...],
    calibrate: int,
    max_iter: int,
    n_estimators: int,
) -> None:
    """PowerGear on-board power (ZCU102, 9 PolyBench kernels): leave-one-kernel-out MAPE.

    For each held-out kernel, models train on the designs of the other eight. No setting is
    chosen by a test-kernel score: the choices below were fixed on physics grounds, and the two
    added after looking at residuals (loop-nest duty-cycle features, the per-resource dynamic
    target) were confirmed by nested leave-one-kernel-out (``benchmarks/fpga_power_nested.py``). Model: the mean in
    log space of a histogram-GBT and an extra-trees forest (``LogTreeEnsemble``). Dynamic power
    is fitted per unit of a physics baseline: the switched-resource proxy
    LUT + 0.5 FF + 10 DSP + 20 BRAM18 of the HLS report (hls stage) or Vivado's vectorless
    estimate (route stage), so the trees learn an activity factor;
    static power (which here moves with the design's clocked resources) is fitted apart, and
    total = static + dynamic. Scored like PowerGear's ``get_result.py``: MAPE per held-out
    kernel, then the mean over kernels (the mean over designs is printed too). The one design
    with negative measured dynamic power is left out of the dynamic rows only. The
    ``hls-activity`` stage adds the activity-weighted aggregates (``POWERGEAR_ACTIVITY_FEATURES``)
    to the hls features; their inclusion won the nested check (``--choice activity``) in 8 of 9
    outer kernels.
    """
    report = BenchReport(
        "fpga-power", "PowerGear (DATE'22): leave-one-kernel-out, board-measured power (ZCU102)"
    )
    cpu0 = time.process_time()
    store = DatasetStore()
    board, hls, route = powergear_rows(store)
    kernels = board["kernel"].to_numpy()
    held = list(test_kernels) or sorted(set(kernels.tolist()))
    unknown = sorted(set(held) - set(kernels.tolist()))
    if unknown:
        raise click.BadParameter(f"unknown kernel(s) {unknown}; known: {sorted(set(kernels.tolist()))}",
                                 param_hint="--test-kernel")  # fmt: skip
    total = board["power_total_w"].to_numpy() * 1e3
    static = board["power_static_w"].to_numpy() * 1e3
    dyn = board["power_dynamic_w"].cast(pl.Float64).fill_null(np.nan).to_numpy() * 1e3
    dyn_ok = np.isfinite(dyn) & (dyn > 0)
    rng = np.random.default_rng(0)
    cal = np.zeros(len(kernels), bool)
    for k in held:
        idx = np.flatnonzero((kernels == k) & dyn_ok)
        cal[rng.choice(idx, min(calibrate, len(idx)), replace=False)] = True
    report.data = {
        "designs": board.height,
        "kernels": int(len(np.unique(kernels))),
        "held_out": held,
        "dynamic_rows_dropped_nonpositive": int((~dyn_ok).sum()),
        "units": "mW (board: Power Advantage Tool; static = idle power of the configured design)",
    }
    params = {"max_iter": max_iter, "n_estimators": n_estimators}
    for stage in stages:
        x_frame = powergear_features(
            board, hls, route if stage == "route" else None, activity=stage.endswith("-activity")
        )
        x = x_frame.to_numpy()
        # physics baseline of dynamic power: Vivado's vectorless estimate (route) or the switched-
        # resource proxy (hls); the trees learn the activity factor measured / baseline
        base = np.exp(x_frame["log_vivado_dynamic_mw" if stage == "route" else "log_hls_switched"].to_numpy())
        pred = {t: np.full(len(x), np.nan) for t in ("dynamic", "static")}
        for k in track(held, f"LOKO {stage}"):
            te = kernels == k
            m = LogTreeEnsemble(**params).fit(x[~te & dyn_ok], dyn[~te & dyn_ok] / base[~te & dyn_ok])
            pred["dynamic"][te] = m.predict(x[te]) * base[te]
            pred["static"][te] = LogTreeEnsemble(**params).fit(x[~te], static[~te]).predict(x[te])
        pred["total"] = pred["static"] + pred["dynamic"]
        scored = np.isin(kernels, held)
        split = f"{stage}: {POWER_STAGES[stage]}"
        det: dict[str, object] = {}
        for t, y, ok in (
            ("total", total, scored),
            ("dynamic", dyn, scored & dyn_ok),
            ("static", static, scored),
        ):
            errors = ape(y, pred[t])
            per = _kernel_means(errors, kernels, ok)
            anchor = POWERGEAR_ANCHOR.get(t)
            target = (HLS_STAGE_TARGET if stage.startswith("hls") else POWERGEAR_ANCHOR).get(t)
            src = "PowerGear (DATE'22), mean over held-out kernels" if anchor else ""
            report.add(f"{t} power MAPE %", f"{split}; mean over kernels", float(np.mean(list(per.values()))),
                       anchor=anchor, target=target, anchor_source=src, n=len(per))  # fmt: skip
            report.add(
                f"{t} power MAPE %", f"{stage}: mean over designs", float(errors[ok].mean()), n=int(ok.sum())
            )
            if t != "static":
                for k, v in per.items():
                    report.add(
                        f"{t} power MAPE %", f"{stage}: held-out {k}", v, n=int((ok & (kernels == k)).sum())
                    )
            det[t] = per
        if calibrate > 0:
            # few-shot: N measured designs of the new kernel fix its static offset (campaign / temperature)
            st_cal = pred["static"].copy()
            for k in held:
                m_k, c_k = kernels == k, (kernels == k) & cal
                st_cal[m_k] *= np.exp(np.mean(np.log(static[c_k] / pred["static"][c_k])))
            ok = scored & ~cal
            per = _kernel_means(ape(total, st_cal + pred["dynamic"]), kernels, ok)
            report.add("total power MAPE %",
                       f"{stage}: few-shot, static calibrated on {calibrate} measured designs of the held-out kernel; "
                       "mean over kernels", float(np.mean(list(per.values()))), anchor=POWERGEAR_ANCHOR["total"],
                       anchor_source="PowerGear is zero-shot: not the same protocol", n=len(per))  # fmt: skip
            det["total_calibrated"] = per
        report.details[stage] = det
    hx = powergear_features(board, hls)
    for t, y in (("total", total), ("dynamic", dyn)):
        floor, n = repeatability_floor(hx, kernels, y)
        report.add(f"{t} power MAPE %", "repeatability: design vs its identical-HLS-report twins (measurement noise)",
                   floor, n=n)  # fmt: skip
    report.data["cpu_s"] = round(time.process_time() - cpu0, 1)  # wall time is inflated on a shared machine
    log_bench(report)
    report.emit(json_path)


def _smape_rows(report: BenchReport, y: pl.DataFrame, pred: np.ndarray, split: str, anchor: bool) -> dict:
    out = {}
    for j, t in enumerate(HLS4ML_TARGETS):
        yt = y[t].cast(pl.Float64).to_numpy()
        ok = np.isfinite(yt) & np.isfinite(pred[:, j])
        if ok.sum() < 2:
            continue
        s = regression_metrics(yt[ok], np.clip(pred[ok, j], 0, None))["smape"]
        out[t] = s
        report.add(f"SMAPE % {t}", split, s, anchor=WAHLS4ML_GNN_SMAPE[t] if anchor else None,
                   anchor_source="wa-hls4ml paper Table 4, GNN, All (100k designs)" if anchor else "",
                   n=int(ok.sum()))  # fmt: skip
    return out


@click.command("fpga-hls4ml")
@json_option("fpga-hls4ml")
@click.option("--folds", default=5, show_default=True, help="GroupKFold folds over model names.")
@click.option("--max-iter", default=300, show_default=True)
def bench_hls4ml(json_path: str | None, folds: int, max_iter: int) -> None:
    """hls4ml resources/latency (HLS estimates): dense sweep GroupKFold by model, and wa-hls4ml records.

    The data here is small: the dense single-layer sweep (987 successful syntheses of 1 layer)
    and 37 wa-hls4ml records (the full 680k-design dataset is not available offline).
    """
    report = BenchReport("fpga-hls4ml", "wa-hls4ml records + dense sweep (HLS estimates), SMAPE per target")
    f = (
        DatasetStore()
        .read("fpga")
        .filter(
            (pl.col("domain") == "hls4ml") & (pl.col("stage") == "hls_estimate") & pl.col("lut").is_not_null()
        )
    )
    dense = f.filter(pl.col("source") == "wa-hls4ml-dense")
    wa = f.filter(pl.col("source") == "wa-hls4ml")
    if dense.height == 0:
        raise TrainingDataError(
            "the store has no hls4ml rows: run `hws data import wa-hls4ml-dense wa-hls4ml` first"
        )
    report.data = {"dense_sweep_rows": dense.height, "wa_hls4ml_records": wa.height}
    names = (
        dense.select("kernel")
        .unique()
        .sort("kernel")
        .with_columns((pl.int_range(pl.len()).shuffle(seed=0) % folds).alias("fold"))
    )
    d2 = dense.join(names, on="kernel")
    pred = np.full((d2.height, len(HLS4ML_TARGETS)), np.nan)
    for fold in track(range(folds), "dense sweep folds"):
        te = (d2["fold"] == fold).to_numpy()
        tr = d2.filter(pl.Series(~te))
        reg = FpgaRegressor(kind="hls4ml", max_iter=max_iter).fit(tr, tr.select(HLS4ML_TARGETS))
        pred[te] = reg.predict(d2.filter(pl.Series(te)))
    report.details["dense_groupkfold"] = _smape_rows(report, d2, pred, f"dense sweep, GroupKFold({folds}) by model",
                                                     anchor=True)  # fmt: skip
    if wa.height:
        reg = FpgaRegressor(kind="hls4ml", max_iter=max_iter).fit(dense, dense.select(HLS4ML_TARGETS))
        report.details["wa_transfer"] = _smape_rows(
            report,
            wa,
            reg.predict(wa),
            f"train dense sweep -> test {wa.height} wa-hls4ml records",
            anchor=False,
        )
        fam = wa.with_columns(pl.col("extra").str.json_path_match("$.family").alias("family"))[
            "family"
        ].to_list()
        wpred = np.full((wa.height, len(HLS4ML_TARGETS)), np.nan)
        for fam_name in sorted(set(fam)):
            te = np.array([x == fam_name for x in fam])
            tr = pl.concat([dense, wa.filter(pl.Series(~te))], how="diagonal_relaxed")
            r = FpgaRegressor(kind="hls4ml", max_iter=max_iter).fit(tr, tr.select(HLS4ML_TARGETS))
            wpred[te] = r.predict(wa.filter(pl.Series(te)))
        report.details["wa_leave_family_out"] = _smape_rows(
            report, wa, wpred, "dense + other wa families -> held-out wa family", anchor=False
        )
        report.data["wa_families"] = sorted(set(fam))
    log_bench(report)
    report.emit(json_path)
