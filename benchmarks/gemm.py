"""GEMM benchmarks against published results: GPPerf, NeuSight, aiconfigurator, few-shot GPUs.

Every command reads the store (``hws data import gpperf|neusight|aiconfigurator`` first),
prints our number beside the published anchor on the same protocol plus a leakage-free
variant, states its wall time and writes every metric with ``--json FILE``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import click
import numpy as np
import polars as pl

from hwsurrogate.benchmarks.report import BenchReport, json_option, log_bench
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import TrainingDataError
from hwsurrogate.progress import track
from hwsurrogate.surrogates.features import gemm_features
from hwsurrogate.surrogates.models.gemm import GemmRegressor, power_rows
from hwsurrogate.surrogates.training.metrics import ape, regression_metrics
from hwsurrogate.surrogates.training.splits import group_split, random_split

NEUSIGHT_TRAIN = (
    "neusight/Tesla_P4",
    "neusight/Tesla_P100-PCIE-16GB",
    "neusight/Tesla_T4",
    "neusight/Tesla_V100-PCIE-32GB",
    "neusight/NVIDIA_A100-PCIE-40GB",
)
NEUSIGHT_TEST = ("neusight/NVIDIA_H100_80GB_HBM3", "neusight/NVIDIA_L4", "neusight/NVIDIA_A100_80GB_PCIe")
NEUSIGHT_ANCHOR = {"bmm": 13.8, "linear": 13.9}


def short_device(device: str) -> str:
    return device.split("/", 1)[-1]


def _read(store: DatasetStore, source: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    frame = store.read("gemm", source=source)
    if frame.height == 0:
        raise TrainingDataError(
            f"the store has no gemm rows from {source!r}: run `hws data import {source}` first"
        )
    return frame, store.read("devices")


# --------------------------------------------------------------------------- GPPerf


@click.command("gemm-gpperf")
@json_option("gemm-gpperf")
@click.option(
    "--folds", default=5, show_default=True, help="GroupKFold folds over (m,n,k) for the shape split."
)
@click.option("--seed", default=42, show_default=True, help="Seed of the paper's random 80/20 split.")
@click.option("--max-iter", default=300, show_default=True)
def bench_gpperf(json_path: str | None, folds: int, seed: int, max_iter: int) -> None:
    """GPPerf RTX 4070 CUTLASS SGEMM: paper protocol (random 80/20 rows) and (m,n,k) shape split.

    Power is scored on the paper's rows (every non-N/A reading, most of them post-run idle
    reads) and on the trustworthy rows only (power_trusted=True).
    """
    report = BenchReport(
        "gemm-gpperf", "GPPerf (arXiv 2411.16954): random 80/20 rows (leaks) and GroupKFold by (m,n,k)"
    )
    frame, devices = _read(DatasetStore(), "gpperf")
    frame = frame.filter(pl.col("kernel").str.starts_with("cutlass"))
    report.data = {"rows": frame.height, "shapes": frame.select("m", "n", "k").unique().height}
    kw = {"devices": devices, "max_iter": max_iter, "learning_rate": 0.1}

    # paper protocol: random rows
    tr, te = random_split(frame, test_frac=0.2, seed=seed)
    m = GemmRegressor(**kw).fit(tr, tr["runtime_ms"])
    met = regression_metrics(te["runtime_ms"].to_numpy(), m.predict(te))
    report.add("runtime R2", "random 80/20 (paper)", met["r2"], anchor=0.98, target=0.99, direction=">=",
               anchor_source="GPPerf paper", n=te.height)  # fmt: skip
    report.add("runtime MAPE %", "random 80/20 (paper)", met["mape"], anchor=15.57, target=10.0,
               anchor_source="GPPerf paper", n=te.height)  # fmt: skip
    report.details["random_runtime"] = met

    # shape split: every (m,n,k) held out once
    shapes = frame.select("m", "n", "k").unique().sort("m", "n", "k")
    fold_of = shapes.with_columns((pl.int_range(pl.len()).shuffle(seed=seed) % folds).alias("fold"))
    f2 = frame.join(fold_of, on=["m", "n", "k"])
    pred = np.zeros(f2.height)
    for fold in track(range(folds), "gpperf shape folds"):
        is_te = (f2["fold"] == fold).to_numpy()
        trf = f2.filter(pl.Series(~is_te))
        mdl = GemmRegressor(**kw).fit(trf, trf["runtime_ms"])
        pred[is_te] = mdl.predict(f2.filter(pl.Series(is_te)))
    met = regression_metrics(f2["runtime_ms"].to_numpy(), pred)
    report.add("runtime R2", f"GroupKFold({folds}) by (m,n,k)", met["r2"], anchor=0.25, direction=">=",
               anchor_source="paper's RF re-run with GroupKFold (data README)", n=f2.height)  # fmt: skip
    report.add("runtime MAPE %", f"GroupKFold({folds}) by (m,n,k)", met["mape"], target=15.0, n=f2.height)
    report.details["shape_runtime"] = met

    # power: paper rows (every reading) with the paper split, then trusted rows only
    pw_all = frame.filter(pl.col("power_w").is_not_null())
    trp, tep = random_split(pw_all, test_frac=0.2, seed=seed)
    mp = GemmRegressor(target="log", **kw).fit(trp, trp["power_w"])
    met = regression_metrics(tep["power_w"].to_numpy(), mp.predict(tep))
    report.add("power R2", "all readings, random 80/20 (paper)", met["r2"], anchor=0.78, direction=">=",
               anchor_source="GPPerf paper", n=tep.height)  # fmt: skip
    report.add("power median APE %", "all readings, random 80/20 (paper)", met["median_ape"], anchor=5.42,
               anchor_source="GPPerf paper", n=tep.height)  # fmt: skip
    report.details["power_all_random"] = met
    trusted = power_rows(frame)
    report.data["power_rows_all"] = pw_all.height
    report.data["power_rows_trusted"] = trusted.height
    trt, tet = random_split(trusted, test_frac=0.2, seed=seed)
    mt = GemmRegressor(target="log", **kw).fit(trt, trt["power_w"])
    met = regression_metrics(tet["power_w"].to_numpy(), mt.predict(tet))
    report.add("power R2", "trusted rows, random 80/20", met["r2"], anchor=0.78, target=0.85, direction=">=",
               n=tet.height)  # fmt: skip
    report.add("power median APE %", "trusted rows, random 80/20", met["median_ape"], anchor=5.42, target=5.0,
               n=tet.height)  # fmt: skip
    report.details["power_trusted_random"] = met
    # noise ceilings of the leaky protocol: repeats of one (m,n,k,layout,alpha,beta) differ only in
    # labels that change nothing (data README), so a group's mean is the best any model can say
    groups = ["m", "n", "k", "layout", "alpha", "beta"]
    with_ab = frame.with_columns(
        pl.col("extra").str.json_path_match(f"$.{c}").cast(pl.Float64).fill_null(-1.0).alias(c)
        for c in ("alpha", "beta")
    )
    for label, part, col in (
        ("runtime", with_ab, "runtime_ms"),
        ("power (trusted)", power_rows(with_ab), "power_w"),
    ):
        a, b = random_split(part, test_frac=0.2, seed=seed)
        key = "MAPE %" if col == "runtime_ms" else "median APE %"
        for split, fit, note in (
            ("oracle: per-(shape, layout, alpha, beta) training mean, random 80/20", a,
             "the best estimate from the training rows"),
            ("ceiling: each test group's own mean, random 80/20", b,
             "no predictor of these inputs has a lower squared error"),
        ):  # fmt: skip
            mean = fit.group_by(groups).agg(pl.col(col).mean().alias("_p"))
            j = b.join(mean, on=groups, how="left").with_columns(pl.col("_p").fill_null(a[col].median()))
            met = regression_metrics(j[col].to_numpy(), j["_p"].to_numpy())
            report.add(f"{label} R2", split, met["r2"], direction=">=", n=j.height, note=note)
            report.add(f"{label} {key}", split, met["mape"] if col == "runtime_ms" else met["median_ape"],
                       n=j.height)  # fmt: skip
    # power on unseen shapes: GroupKFold over (m,n,k)
    tsh = trusted.select("m", "n", "k").unique().sort("m", "n", "k")
    tfold = trusted.join(tsh.with_columns((pl.int_range(pl.len()).shuffle(seed=seed) % folds).alias("fold")),
                         on=["m", "n", "k"])  # fmt: skip
    ppred = np.zeros(tfold.height)
    for fold in range(folds):
        is_te = (tfold["fold"] == fold).to_numpy()
        a = tfold.filter(pl.Series(~is_te))
        ppred[is_te] = (
            GemmRegressor(target="log", **kw).fit(a, a["power_w"]).predict(tfold.filter(pl.Series(is_te)))
        )
    met = regression_metrics(tfold["power_w"].to_numpy(), ppred)
    report.add("power R2", f"trusted rows, GroupKFold({folds}) by (m,n,k)", met["r2"], anchor=-0.14, direction=">=",
               anchor_source="paper's RF re-run with GroupKFold (data README)", n=tfold.height)  # fmt: skip
    report.add(
        "power median APE %",
        f"trusted rows, GroupKFold({folds}) by (m,n,k)",
        met["median_ape"],
        n=tfold.height,
    )
    report.details["power_trusted_shape"] = met
    log_bench(report)
    report.emit(json_path)


# --------------------------------------------------------------------------- NeuSight


def neusight_frames(
    store: DatasetStore, train_devices: Sequence[str], test_devices: Sequence[str]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Training rows (train files of the training GPUs), test rows (test GPUs) and devices."""
    frame, devices = _read(store, "neusight")
    split = pl.col("extra").str.json_path_match("$.split")
    present = set(frame["device_id"].unique().to_list())
    for d in (*train_devices, *test_devices):
        if d not in present:
            raise TrainingDataError(f"neusight: no rows for device {d!r}; known {sorted(present)}")
    train = frame.filter(pl.col("device_id").is_in(list(train_devices)) & (split != "test"))
    test = frame.filter(pl.col("device_id").is_in(list(test_devices)))
    return train, test, devices


#: tree size for predicting GPUs outside the training set: smaller trees with larger leaves
#: than the in-distribution default (63 leaves, 10 rows) extrapolate better. Picked by
#: leave-one-training-GPU-out zero-shot MAPE on the 5 training GPUs (mean over GPU x op:
#: 63/10 -> 30.6 %, 31/40 -> 28.9 %, 15/100 -> 29.4 %, 31/200 -> 31.8 %); test GPUs took no part.
NEUSIGHT_TREE = {"max_leaf_nodes": 31, "min_samples_leaf": 40}


def fit_neusight_base(
    train: pl.DataFrame,
    devices: pl.DataFrame,
    *,
    max_rows: int,
    max_iter: int,
    device_features: bool,
    seed: int = 0,
) -> GemmRegressor:
    """The cross-GPU base model of the NeuSight and few-shot benchmarks (roofline-ratio trees)."""
    if max_rows and train.height > max_rows:
        train = train.sample(max_rows, seed=seed)
    return GemmRegressor(
        devices=devices,
        max_iter=max_iter,
        learning_rate=0.1,
        device_features=device_features,
        **NEUSIGHT_TREE,
    ).fit(train, train["runtime_ms"])


@click.command("gemm-neusight")
@json_option("gemm-neusight")
@click.option("--train-device", "train_devices", multiple=True, default=NEUSIGHT_TRAIN, show_default=True)
@click.option("--test-device", "test_devices", multiple=True, default=NEUSIGHT_TEST, show_default=True)
@click.option(
    "--max-train-rows", default=60_000, show_default=True, help="Subsample training rows for speed."
)
@click.option("--max-iter", default=300, show_default=True)
@click.option(
    "--device-features/--no-device-features",
    default=True,
    show_default=True,
    help="Give the trees absolute device descriptors besides the roofline-relative features.",
)
@click.option(
    "--baseline-rows", default=20_000, show_default=True, help="Rows of the raw-time baseline tree."
)
@click.option(
    "--baseline-iter", default=150, show_default=True, help="Iterations of the raw-time baseline tree."
)
def bench_neusight(
    json_path: str | None, train_devices: tuple[str, ...], test_devices: tuple[str, ...], max_train_rows: int,
    max_iter: int, device_features: bool, baseline_rows: int, baseline_iter: int,
) -> None:  # fmt: skip
    """NeuSight protocol: train on P4/P100/T4/V100/A100-40GB, test on unseen H100/L4/A100-80GB.

    Per-kernel (bmm, linear) MAPE on each unseen GPU from its spec sheet alone (zero-shot),
    for our roofline-ratio trees and for a plain raw-time tree (the paper's weak baseline).
    """
    report = BenchReport(
        "gemm-neusight",
        "NeuSight (ASPLOS'25): train 5 GPUs (their train files), test unseen H100, L4, A100-80GB "
        "from spec sheets alone; design choices (device descriptors on, tree size, working set "
        "over L2) were picked by leave-one-training-GPU-out MAPE, never on the test GPUs",
    )
    store = DatasetStore()
    train, test, devices = neusight_frames(store, train_devices, test_devices)
    report.data = {
        "rows_train": train.height,
        "rows_test": test.height,
        "max_train_rows": max_train_rows,
        "max_iter": max_iter,
        "device_features": device_features,
        "baseline_rows": baseline_rows,
        "baseline_iter": baseline_iter,
    }
    test_desc = devices.filter(pl.col("device_id").is_in(list(test_devices)))
    model = fit_neusight_base(
        train, devices, max_rows=max_train_rows, max_iter=max_iter, device_features=device_features
    )
    pred = model.predict(test, extra_devices=test_desc)
    # the weak baseline only has to show the gap, so it is fitted on fewer rows and iterations
    # (its size is in the report's data and notes) to keep the benchmark under 10 minutes
    sub = train.sample(min(train.height, baseline_rows), seed=0)
    plain = GemmRegressor(devices=devices, target="log", max_iter=baseline_iter, learning_rate=0.1).fit(
        sub, sub["runtime_ms"]
    )
    pred_plain = plain.predict(test, extra_devices=test_desc)
    y = test["runtime_ms"].to_numpy()
    res = test.select("device_id", "op").with_columns(
        pl.Series("ape", ape(y, pred)), pl.Series("ape_plain", ape(y, pred_plain))
    )
    per = (
        res.group_by("device_id", "op")
        .agg(pl.col("ape").mean(), pl.col("ape_plain").mean(), pl.len())
        .sort("device_id", "op")
    )
    for r in per.iter_rows(named=True):
        report.add("runtime MAPE %", f"{short_device(r['device_id'])} {r['op']} (zero-shot)", r["ape"],
                   anchor=NEUSIGHT_ANCHOR.get(r["op"]), target=15.0, anchor_source="NeuSight paper (avg over GPUs)",
                   n=r["len"])  # fmt: skip
    for r in per.iter_rows(named=True):
        report.add("runtime MAPE %", f"{short_device(r['device_id'])} {r['op']} (plain raw-time tree)", r["ape_plain"],
                   note=f"baseline: log(runtime) tree, absolute device descriptors ({baseline_rows} rows, "
                   f"{baseline_iter} iterations)", n=r["len"])  # fmt: skip
    report.details["per_device_op"] = per.to_dicts()
    log_bench(report)
    report.emit(json_path)


# --------------------------------------------------------------------------- aiconfigurator


def _add_dtype_mape(
    report: BenchReport, metric: str, short: str, test: pl.DataFrame, column: str, pred: np.ndarray, dev: str,
    *, target: float,
) -> None:  # fmt: skip
    """One row per dtype: MAPE of ``pred`` against ``test[column]``; the target applies to H200 bf16."""
    y = test[column].to_numpy()
    res = test.select("dtype").with_columns(pl.Series("ape", ape(y, pred)))
    for r in res.group_by("dtype").agg(pl.col("ape").mean(), pl.len()).sort("dtype").iter_rows(named=True):
        is_target = dev.endswith("h200_sxm") and r["dtype"] == "bf16"
        report.add(
            metric, f"{short} {r['dtype']}", r["ape"], target=target if is_target else None, n=r["len"]
        )


@click.command("gemm-aiconfigurator")
@json_option("gemm-aiconfigurator")
@click.option("--device", "devices_opt", multiple=True,
              help="Device ids (default: the GPUs with power: b200_sxm, gb200, h200_sxm).")  # fmt: skip
@click.option("--all-devices", is_flag=True, help="Every aiconfigurator GPU (slow: ~1M rows).")
@click.option("--test-frac", default=0.2, show_default=True, help="Fraction of (n,k) weight shapes held out.")
@click.option(
    "--max-train-rows", default=40_000, show_default=True, help="Subsample per table (0: all rows)."
)
@click.option("--max-iter", default=250, show_default=True)
def bench_aiconfigurator(
    json_path: str | None, devices_opt: tuple[str, ...], all_devices: bool, test_frac: float, max_train_rows: int,
    max_iter: int,
) -> None:  # fmt: skip
    """aiconfigurator GEMM tables: one model per (GPU, framework), (n,k) weight shapes held out.

    Latency MAPE per dtype and power MAPE (NVML mean over >=1 s loops) on unseen weight shapes.
    Target on H200 bf16: latency <= 2 %, power <= 3 %.
    """
    report = BenchReport(
        "gemm-aiconfigurator", f"per (GPU, framework) table; {test_frac:.0%} of (n,k) held out"
    )
    frame, devices = _read(DatasetStore(), "aiconfigurator")
    wanted = (
        sorted(frame["device_id"].unique().to_list())
        if all_devices
        else list(
            devices_opt or ("aiconfigurator/b200_sxm", "aiconfigurator/gb200", "aiconfigurator/h200_sxm")
        )
    )
    tables = (
        frame.filter(pl.col("device_id").is_in(wanted))
        .select("device_id", "framework")
        .unique()
        .sort("device_id", "framework")
    )
    if tables.height == 0:
        raise TrainingDataError(f"aiconfigurator: no rows for {wanted}")
    report.data = {"tables": tables.height, "max_train_rows": max_train_rows}
    from hwsurrogate.surrogates.features import device_table

    desc = device_table(devices)
    for dev, fw in track(tables.iter_rows(), "aiconfigurator tables", total=tables.height):
        part = frame.filter((pl.col("device_id") == dev) & (pl.col("framework") == fw))
        tr, te = group_split(part, ["n", "k"], test_frac=test_frac, seed=0)
        d = (
            desc.filter(pl.col("device_id") == dev).row(0, named=True)
            if dev in desc["device_id"].to_list()
            else {}
        )
        has_roof = (
            bool(d)
            and d["mem_bw_gbs"] is not None
            and (d["peak_fp16_gflops"] is not None or d["peak_fp32_gflops"] is not None)
        )
        kw = {"devices": devices, "max_iter": max_iter, "learning_rate": 0.1}
        sub = tr.sample(max_train_rows, seed=0) if 0 < max_train_rows < tr.height else tr
        m = GemmRegressor(target="roofline_ratio" if has_roof else "log", **kw).fit(sub, sub["runtime_ms"])
        p = m.predict(te)
        short = f"{short_device(dev)} [{fw.split()[0]}]"
        _add_dtype_mape(report, "latency MAPE %", short, te, "runtime_ms", p, dev, target=2.0)
        ptr, pte = power_rows(tr), power_rows(te)
        if ptr.height >= 100 and pte.height:
            psub = ptr.sample(max_train_rows, seed=0) if 0 < max_train_rows < ptr.height else ptr
            mp = GemmRegressor(target="log", **kw).fit(psub, psub["power_w"])
            _add_dtype_mape(report, "power MAPE %", short, pte, "power_w", mp.predict(pte), dev, target=3.0)
    log_bench(report)
    report.emit(json_path)


# --------------------------------------------------------------------------- feature speed


@click.command("gemm-features")
@json_option("gemm-features")
@click.option("--rows", default=100_000, show_default=True, help="Number of GEMM queries to featurise.")
@click.option("--repeats", default=5, show_default=True)
def bench_gemm_features(json_path: str | None, rows: int, repeats: int) -> None:
    """Speed of the shared GEMM feature pipeline: featurise N stored queries (best of R runs)."""
    report = BenchReport("gemm-features", f"gemm_features on {rows} NeuSight queries, best of {repeats}")
    frame, devices = _read(DatasetStore(), "neusight")
    q = frame.sample(rows, with_replacement=rows > frame.height, seed=0).select(
        "device_id", "op", "m", "n", "k", "batch", "dtype", "layout"
    )
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        gemm_features(q, devices)
        times.append(time.perf_counter() - t0)
    report.data = {"rows": rows, "all_runs_s": [round(t, 4) for t in times]}
    report.add("featurise seconds", f"{rows} queries (best of {repeats})", min(times), target=1.0, n=rows)
    report.add("featurise seconds", f"{rows} queries (median of {repeats})", float(np.median(times)), n=rows)
    report.emit(json_path)
