"""Few-shot latency benchmarks: ``hws bench fewshot-help | fewshot-tasks`` and what the others share.

``fewshot-live`` is in :mod:`.fewshot_live`, the GNN ablations (``fewshot-gnn``) in :mod:`.fewshot_gnn`.

Every benchmark meta-trains its own model on the protocol's source devices only (never on the
targets), gives the model the target device's latencies of the support architectures only,
counts HELP's reference architectures as measurements, averages over several random support
draws and prints a table of our number beside the published anchors. ``--json FILE`` writes
``{"benchmark", "command", "wall_s", "rows": [{"metric", "split", "ours", "anchor", "target",
"met", ...}]}``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import numpy as np
import polars as pl

from hwsurrogate.benchmarks.report import store_option
from hwsurrogate.io import atomic_write_text
from hwsurrogate.surrogates.fewshot import (
    FewShotConfig,
    FewShotLatencyRegressor,
    evaluate_help_protocol,
    predict_head,
    read_splits,
    score_predictions,
)

#: ``--splits FILE``: the device splits (the same flag as ``hws train fewshot``; the benchmarks may
#: not import hwsurrogate.cli)
splits_option = click.option(
    "--splits",
    "splits_path",
    default=None,
    help="splits.json (default: $HWSURROGATE_DATA_DIR/latency/splits.json).",
)

# HELP (NeurIPS'21) Table: Spearman with 10 references + 10 support (20 measurements)
HELP_ANCHORS_NB201 = {
    "help/titan_rtx_256": 0.987,
    "help/gold_6226": 0.989,
    "help/pixel2": 0.802,
    "help/raspi4": 0.890,
    "help/eyeriss": 0.940,
    "help/fpga": 0.985,
}
HELP_MEAN = {"nb201": 0.932, "fbnet": 0.910}
NASFLAT_HELP_SPLIT = {"nb201": 0.959, "fbnet": 0.961}
TARGET_HELP = {("nb201", 20): 0.96, ("nb201", 10): 0.95, ("fbnet", 20): 0.96}
NASFLAT_TASKS = {
    "N1": 0.967, "N2": 0.857, "N3": 0.962, "N4": 0.959, "NA": 0.893,
    "F1": 0.809, "F2": 0.871, "F3": 0.814, "F4": 0.734, "FA": 0.577,
}  # fmt: skip
HELP_TASKS = {"N1": 0.604, "N2": 0.509, "N3": 0.729, "N4": 0.746, "NA": 0.410}
FLOOR_TASKS = {"N1": 0.44, "N2": 0.47, "N3": 0.30, "N4": 0.70, "NA": 0.54}
FLOOR_HELP_ND = 0.915
TRAIN_COLUMNS = ("device_id", "space", "arch_index", "arch_key", "latency_ms")


def bench_row(metric: str, split: str, ours: float, anchor: float | None = None, target: float | None = None,
         *, higher_is_better: bool = True, **extra: Any) -> dict[str, Any]:  # fmt: skip
    met = None
    if target is not None:
        met = bool(ours >= target) if higher_is_better else bool(ours <= target)
    return {"metric": metric, "split": split, "ours": round(float(ours), 4), "anchor": anchor,
            "target": target, "met": met, **extra}  # fmt: skip


def print_table(title: str, rows: list[dict[str, Any]], wall_s: float) -> None:
    click.echo(f"\n{title}")
    click.echo(f"{'split':<34} {'metric':<28} {'ours':>8} {'anchor':>8} {'target':>8}  met")
    for r in rows:
        a = "" if r["anchor"] is None else f"{r['anchor']:.3f}"
        t = "" if r["target"] is None else f"{r['target']:.3f}"
        m = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        click.echo(f"{r['split']:<34} {r['metric']:<28} {r['ours']:>8.3f} {a:>8} {t:>8}  {m}")
    click.echo(f"wall time: {wall_s:.1f} s")


def save_rows(
    path: str | None, name: str, rows: list[dict[str, Any]], wall_s: float, extra: dict[str, Any]
) -> None:
    command = "hws bench " + name + (" " + " ".join(sys.argv[3:]) if len(sys.argv) > 3 else "")
    out = {"benchmark": name, "command": command, "wall_s": round(wall_s, 1), "rows": rows, **extra}
    target = Path(path or f"bench-results/{name}.json")  # only the file asked for (default without --json)
    atomic_write_text(target, json.dumps(out, indent=1))


def read_latency_rows(store_root: str | None, space: str, devices: Sequence[str]) -> pl.DataFrame:
    """The store's ``space`` latency rows of ``devices`` (training columns); names the missing devices."""
    from hwsurrogate.datasets.store import DatasetStore

    frame = DatasetStore(store_root).read("latency", space=space, device=list(devices)).select(TRAIN_COLUMNS)
    found = set(frame["device_id"].unique().to_list())
    missing = [d for d in devices if d not in found]
    if missing:
        raise click.ClickException(
            f"{space}: device(s) {missing} have no rows in the store; run `hws data import help` "
            "and `hws data import latbench` first"
        )
    return frame


def split_csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


# --------------------------------------------------------------------------- fewshot-help
#: the default before latency transforms (log only, mixture prior, evidence tau x1..x100)
PREVIOUS_DEFAULT = replace(
    FewShotConfig(),
    prior="mixture",
    transforms=("log",),
    evidence_tau_factors=(1.0, 3.0, 10.0, 30.0, 100.0),
    gnn=(),
    span_component=(),
    no_flat=(),
)
#: mobile HELP meta-train devices left out one at a time in the validation protocol
VALIDATION_LOO = ("help/pixel3", "help/samsung_s7", "help/samsung_a50", "help/essential_ph_1")


def ablation_configs(space: str) -> dict[str, FewShotConfig]:
    """Named variants of the default configuration (each changes one design choice)."""
    base = FewShotConfig()
    return {
        "previous default (log only, mixture prior, tau x1-100)": PREVIOUS_DEFAULT,
        "no GNN embedding (Bayesian linear model only)": replace(base, gnn=()),
        "log transform only": replace(base, transforms=("log",)),
        "ms transform only": replace(base, transforms=("ms",)),
        "log + ms transforms (no sqrt)": replace(base, transforms=("log", "ms")),
        "ms source-latency features too": replace(base, source_transforms=("log", "ms")),
        "mixture prior": replace(base, prior="mixture"),
        "mixture + gaussian priors averaged": replace(base, prior="both"),
        "evidence tau x1-100 (narrower)": replace(base, evidence_tau_factors=(1.0, 3.0, 10.0, 30.0, 100.0)),
        "meta-selected tau/noise (no evidence)": replace(base, evidence_tau_factors=()),
        "source latencies only": replace(base, use_arch_features=False),
        "arch features only": replace(base, use_device_latencies=False),
        "no flat-ridge model averaging": replace(base, flat_component=False),
        "no op-count ridge component": replace(base, count_component=False),
        "no interaction features": replace(base, interaction_pcs=()),
        "8 interaction PCs": replace(base, interaction_pcs=((space, 8),)),
    } | (
        # NB201 only: FBNet's 22 x 9 layer one-hots would give ~19k pair columns
        {"op-at-edge pair features": replace(base, edge_pairs=(space,))} if space == "nb201" else {}
    )


def lookup_table_configs(space: str) -> dict[str, FewShotConfig]:
    """FBNet variants of the lookup-table family (docs/fewshot.md, "Lookup-table models")."""
    base = FewShotConfig()
    return {
        "+ lookup-table span component": replace(base, span_component=(space,)),
        "+ span component, prior-free ridges out (HELP-validation pick; off: task suite)": replace(
            base, span_component=(space,), no_flat=(space,)
        ),
        "+ cost-table component (source-table prior)": replace(
            base, table_component=(space,), table_cov_scales=(1.0, 10.0)
        ),
        "+ physical per-layer cost features": replace(base, physical_features=(space,)),
        "+ denoised source tables as features": replace(base, source_transforms=("log", "table")),
        "leave-one-out model weights": replace(base, weighting="loo"),
    }


#: lookup-table variants that also get a validation row (the choices the default rests on)
LOOKUP_VALIDATED = (
    "+ lookup-table span component",
    "+ span component, prior-free ridges out (HELP-validation pick; off: task suite)",
)
#: the FBNet lookup-table pair that won HELP's validation folds, scored on the task suite too
SPAN_NO_FLAT = {"span_component": ("fbnet",), "no_flat": ("fbnet",)}


def validation_folds(split: Any) -> list[tuple[list[str], list[str]]]:
    """(source devices, scored devices) of each validation fold (see :func:`validation_rows`)."""
    folds = [(list(split.train), list(split.valid))]
    folds += [([d for d in split.train if d != v], [v]) for v in VALIDATION_LOO if v in split.train]
    return folds


def validation_rows(
    frame: pl.DataFrame, space: str, split: Any, configs: dict[str, FewShotConfig], seeds: int
) -> list[dict[str, Any]]:
    """The protocol the design choices were made on (never the meta-test devices).

    Fold 0: meta-train on HELP's meta-train devices, score HELP's meta-valid devices. Folds
    1-4: leave one mobile meta-train device out of meta-training and score it. Support: 10
    reference + 10 random archs; the per-device Spearmans are averaged over all folds.
    """
    folds = validation_folds(split)
    rows = []
    for name, cfg in configs.items():
        per: dict[str, float] = {}
        for train, targets in folds:
            model = FewShotLatencyRegressor(cfg).fit(frame, devices={space: train}, spaces=[space])
            res = evaluate_help_protocol(
                model, frame, space, targets, n_pool=split.n_pool, seeds=range(seeds)
            )
            res.pop("_pooled")
            per |= {d: r["spearman"] for d, r in res.items()}
        rows.append(
            bench_row(
                "spearman_mean",
                f"validation {space}: {name}, 20 (10 ref + 10 random)",
                float(np.mean(list(per.values()))),
                n_measurements=20,
                per_device={d: round(v, 4) for d, v in per.items()},
                protocol="HELP meta-valid devices + leave-one-out mobile meta-train devices",
            )  # fmt: skip
        )
    return rows


def ceiling_rows(
    frame: pl.DataFrame, space: str, devices: Sequence[str], n_pool: int
) -> list[dict[str, Any]]:
    """Noise ceiling: Spearman of a gradient-boosted tree fitted on ALL of the device's other archs.

    HELP has one latency measurement per arch and device, so measurement noise caps any
    predictor; a model trained on ~14k archs of the device itself approximates that cap
    (for reference only: it sees the target's latencies, the few-shot models do not).
    """
    from sklearn.ensemble import HistGradientBoostingRegressor

    from hwsurrogate.surrogates.features.nas import arch_vectors, nb201_op_codes
    from hwsurrogate.surrogates.fewshot import help_protocol_rows
    from hwsurrogate.surrogates.training.noise_ceiling import NOISE_R2, nb201_noise_ceiling

    rows = []
    bounds: list[float] = []
    for dev in devices:
        d = frame.filter(pl.col("device_id") == dev).sort("arch_index")
        idx = d["arch_index"].to_numpy()
        y = np.log(d["latency_ms"].to_numpy().astype(float))
        X = arch_vectors(space, d["arch_key"].to_list())
        _, test = help_protocol_rows(idx, np.exp(y), n_pool=n_pool)
        train = np.setdiff1d(np.arange(len(y)), test)
        gbm = HistGradientBoostingRegressor(max_iter=300, random_state=0).fit(X[train], y[train])
        rho = score_predictions(np.exp(y[test]), np.exp(gbm.predict(X[test])))["spearman"]
        rows.append(bench_row("spearman_ceiling", f"{space} {dev}, GBM on {len(train)} of its own archs", rho,
                         n_train=int(len(train))))  # fmt: skip
        if space == "nb201":  # the measured noise ceiling (see surrogates/noise_ceiling.py)
            c = nb201_noise_ceiling(np.exp(y), nb201_op_codes(d["arch_key"]), test, dev)
            noise = c.position_cv_r2 is not None and c.position_cv_r2 < NOISE_R2
            bounds.append(c.spearman if noise else 1.0)
            rows.append(bench_row("spearman_ceiling", f"{space} {dev}, op-count class-mean oracle", c.spearman,
                             position_cv_r2=round(c.position_cv_r2 or 0.0, 3), noise_limited=noise))  # fmt: skip
    if bounds:
        rows.append(bench_row("spearman_mean_upper_bound", f"{space} HELP split, any predictor", float(np.mean(bounds)),
                         note="mean over targets of the oracle where op positions explain < 5% of the "
                              "within-class spread (noise-limited), else 1.0"))  # fmt: skip
    return rows


def extra_source_rows(
    frame: pl.DataFrame, space: str, split: Any, targets: Sequence[str], seeds: int
) -> list[dict[str, Any]]:
    """Ablation outside HELP's protocol: HELP's meta-valid devices as extra source devices.

    HELP's code meta-trains on the meta-train devices only (its episodes sample
    ``meta_train_devices``; the meta-valid devices pick the checkpoint), so the headline rows
    never use them; this row shows what they would add.
    """
    model = FewShotLatencyRegressor(FewShotConfig()).fit(
        frame, devices={space: [*split.train, *split.valid]}, spaces=[space]
    )
    res = evaluate_help_protocol(model, frame, space, targets, n_pool=split.n_pool, seeds=range(seeds))
    res.pop("_pooled")
    return [
        bench_row("spearman_mean", f"ablation {space}: + HELP meta-valid devices as sources (not HELP's protocol), "
             "20 (10 ref + 10 random)", float(np.mean([r["spearman"] for r in res.values()])), n_measurements=20,
             per_device={d: round(r["spearman"], 4) for d, r in res.items()})
    ]  # fmt: skip


#: the hardest NB201 meta-test devices, where the analysis rows below are computed
HARD_TARGETS = ("help/raspi4", "help/pixel2")
#: target measurements of the learning-curve rows (10 references + the rest random pool archs)
LEARNING_CURVE_K = (50, 100, 200, 900)


def own_data_reference_rows(
    model: FewShotLatencyRegressor, frame: pl.DataFrame, space: str, devices: Sequence[str], n_pool: int,
    *, seeds: int = 3, curve: Sequence[int] = LEARNING_CURVE_K,
) -> list[dict[str, Any]]:  # fmt: skip
    """Reference rows for the hard targets: what the device's OWN data buys (never a few-shot number).

    1. Models fitted on ALL of the target's archs outside HELP's test set (~14.8k NB201) on the
       few-shot model's own feature rows (source-device latencies z, arch features x,
       interaction PCs, GNN embedding): a gradient-boosted tree on log ms and a ridge on ms
       (alpha by efficient leave-one-out). They see the target's latencies (reference only).
    2. The few-shot model's learning curve: the same model given 10 references + k-10 random
       pool archs of the target (k up to the whole 900-arch pool), scored on the same test rows.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import RidgeCV

    from hwsurrogate.surrogates.fewshot import help_protocol_rows

    rows = []
    for dev in devices:
        d = frame.filter((pl.col("device_id") == dev) & (pl.col("space") == space)).sort("arch_index")
        if d.height == 0:
            continue
        y = d["latency_ms"].to_numpy().astype(float)
        F = model.features(space, d["arch_key"].to_list())
        pool, test = help_protocol_rows(d["arch_index"].to_numpy(), y, n_pool=n_pool)
        train = np.setdiff1d(np.arange(len(y)), test)
        note = "sees the target's latencies, reference only"
        gbm = HistGradientBoostingRegressor(max_iter=300, random_state=0).fit(F[train], np.log(y[train]))
        rho = score_predictions(y[test], np.exp(gbm.predict(F[test])))["spearman"]
        rows.append(bench_row("spearman_ceiling", f"{space} {dev}, GBM on {len(train)} own archs, few-shot features",
                         rho, n_train=int(len(train)), note=note + "; features = source latencies + arch "
                         "features + interaction PCs + GNN embedding"))  # fmt: skip
        ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(F[train], y[train])
        rho = score_predictions(y[test], np.maximum(ridge.predict(F[test]), 1e-6))["spearman"]
        rows.append(bench_row("spearman_ceiling", f"{space} {dev}, ridge (ms) on {len(train)} own archs, few-shot features",
                         rho, n_train=int(len(train)), note=note + "; the linear model class of the few-shot "
                         "head, fitted on all the device's data"))  # fmt: skip
        n_ref = len(np.intersect1d(d["arch_index"].to_numpy(), _help_refs(space)))
        n_cand = len(pool) - int(np.isin(d["arch_index"].to_numpy()[pool], _help_refs(space)).sum())
        for k in curve:
            n_random = min(k - n_ref, n_cand)
            res = evaluate_help_protocol(
                model, frame, space, [dev], n_pool=n_pool, seeds=range(seeds if n_random < n_cand else 1),
                n_random=n_random,
            )  # fmt: skip
            n_meas = int(res[dev]["n_measurements"])
            rows.append(bench_row("spearman_learning_curve", f"{space} {dev}, ours with {n_meas} measurements",
                             res[dev]["spearman"], n_measurements=n_meas, mape_pct=round(res[dev]["mape"], 2),
                             note="10 references + random pool archs; learning curve, not a few-shot setting"))  # fmt: skip
    return rows


def _help_refs(space: str) -> np.ndarray:
    from hwsurrogate.datasets.archspaces import HELP_REFERENCE_INDICES

    return np.asarray(HELP_REFERENCE_INDICES[space])


def bench_fewshot_help_rows(
    *,
    spaces: Sequence[str] = ("nb201", "fbnet"),
    targets: Sequence[str] | None = None,
    seeds: int = 5,
    splits_path: str | None = None,
    store_root: str | None = None,
    ablations: bool = True,
    validation: bool = True,
    ceiling: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    splits = read_splits(splits_path)
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {"seeds": list(range(seeds)), "spaces": {}}
    for space in spaces:
        split = splits[f"help-{space}"]
        tgts = [t if "/" in t else f"help/{t}" for t in targets] if targets else list(split.test)
        frame = read_latency_rows(store_root, space, [*split.train, *split.valid, *tgts])
        variants: dict[str, FewShotConfig] = {"ours": FewShotConfig()}
        if ablations:
            variants |= ablation_configs(space)
            if space == "fbnet":
                variants |= lookup_table_configs(space)
        for vname, cfg in variants.items():
            t0 = time.perf_counter()
            model = FewShotLatencyRegressor(cfg).fit(
                frame, devices={space: list(split.train)}, spaces=[space]
            )
            fit_s = time.perf_counter() - t0
            settings = [
                ("20 (10 ref + 10 random)", True, 10),
                ("10 (10 ref)", True, 0),
                ("10 (10 random)", False, 10),
            ]
            if vname != "ours":
                settings = settings[:1]
            for label, use_refs, n_random in settings:
                t1 = time.perf_counter()
                res = evaluate_help_protocol(
                    model, frame, space, tgts, n_pool=split.n_pool, seeds=range(seeds),
                    n_random=n_random, use_references=use_refs,
                )  # fmt: skip
                res.pop("_pooled")
                adapt_ms = (time.perf_counter() - t1) / (seeds * len(tgts)) * 1000
                n_meas = int(next(iter(res.values()))["n_measurements"])
                mean = {
                    k: float(np.mean([r[k] for r in res.values()]))
                    for k in ("spearman", "mape", "within_10pct")
                }
                tag = f"{space} HELP split, {label}"
                if vname == "ours":
                    target = TARGET_HELP.get((space, n_meas))
                    anchor = HELP_MEAN.get(space) if n_meas == 20 else None
                    rows.append(bench_row("spearman_mean", tag, mean["spearman"], anchor, target, n_measurements=n_meas,
                                     nasflat=NASFLAT_HELP_SPLIT.get(space), ridge_floor=FLOOR_HELP_ND if space == "nb201" else None,
                                     meta_train_s=round(fit_s, 1), adapt_ms=round(adapt_ms, 2)))  # fmt: skip
                    rows.append(bench_row("mape_pct", tag, mean["mape"], None, None, n_measurements=n_meas))
                    rows.append(
                        bench_row("within_10pct", tag, mean["within_10pct"], None, None, n_measurements=n_meas)
                    )
                    if n_meas == 20:
                        for dev, r in res.items():
                            rows.append(bench_row("spearman", f"{space} {dev}, {label}", r["spearman"],
                                             HELP_ANCHORS_NB201.get(dev) if space == "nb201" else None, None,
                                             spearman_std=round(r["spearman_std"], 4), mape_pct=round(r["mape"], 2),
                                             within_10pct=round(r["within_10pct"], 3), n_test=int(r["n_test"])))  # fmt: skip
                else:
                    rows.append(bench_row("spearman_mean", f"ablation {space}: {vname}, {label}", mean["spearman"],
                                     n_measurements=n_meas, mape_pct=round(mean["mape"], 2)))  # fmt: skip
            sm = model.spaces_[space]
            info["spaces"].setdefault(space, {})[vname] = {
                "sources": list(split.train), "targets": tgts, "tau": sm.tau, "noise": sm.noise,
                "loo_spearman": sm.meta_scores["loo_spearman_mean"], "meta_train_s": round(fit_s, 1),
            }  # fmt: skip
        if ablations and split.valid:
            rows += extra_source_rows(frame, space, split, tgts, seeds)
        if validation:
            rows += validation_rows(
                frame,
                space,
                split,
                {
                    "ours": FewShotConfig(),
                    "no GNN embedding": replace(FewShotConfig(), gnn=()),
                    "no op-count ridge": replace(FewShotConfig(), count_component=False),
                    "previous default": PREVIOUS_DEFAULT,
                }
                | ({k: lookup_table_configs(space)[k] for k in LOOKUP_VALIDATED} if space == "fbnet" else {}),
                seeds,
            )
        if ceiling:
            rows += ceiling_rows(frame, space, tgts, split.n_pool)
            hard = [t for t in tgts if t in HARD_TARGETS]
            if hard:
                ours = FewShotLatencyRegressor(FewShotConfig()).fit(
                    frame, devices={space: list(split.train)}, spaces=[space]
                )
                rows += own_data_reference_rows(ours, frame, space, hard, split.n_pool)
    return rows, info


@click.command("fewshot-help")
@click.option("--json", "json_path", default=None, help="Also write the results to this JSON file.")
@click.option("--spaces", default="nb201,fbnet", show_default=True, help="Spaces (HELP splits ND / FD).")
@click.option("--targets", default=None, help="Comma-separated target devices (default: HELP meta-test).")
@click.option("--seeds", default=5, show_default=True, help="Random support draws per device.")
@click.option("--no-ablations", is_flag=True, help="Skip the ablation variants.")
@click.option(
    "--no-validation", is_flag=True, help="Skip the validation-protocol rows (held-out source devices)."
)
@click.option(
    "--no-ceiling",
    is_flag=True,
    help="Skip the noise-ceiling and own-data reference rows (models on the target's own archs, "
    "learning curve of raspi4/pixel2).",
)
@splits_option
@store_option
def bench_fewshot_help(json_path: str | None, spaces: str, targets: str | None, seeds: int, no_ablations: bool,
                       no_validation: bool, no_ceiling: bool, splits_path: str | None, store_root: str | None) -> None:  # fmt: skip
    """HELP's protocol: meta-train on HELP meta-train devices, adapt to each meta-test device.

    Support: 10 reference archs + 10 random archs of the first 900 (NB201) / 4000 (FBNet)
    indices = 20 measurements; test: the next 1000 indices trimmed to the 10th-90th latency
    percentile (800 archs); metric Spearman, plus MAPE and within +-10 %. Also: ablations
    (one design choice changed each), the validation protocol the choices were made on (HELP
    meta-valid devices + leave-one-out mobile meta-train devices; never the meta-test devices)
    and a noise ceiling per target device (a GBM fitted on the device's own other archs); for
    raspi4/pixel2 also models on their own archs with the few-shot features and the few-shot
    model's learning curve (50-900 measurements), all reference only.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    rows, info = bench_fewshot_help_rows(spaces=split_csv(spaces) or [], targets=split_csv(targets), seeds=seeds,
                                         splits_path=splits_path, store_root=store_root, ablations=not no_ablations,
                                         validation=not no_validation, ceiling=not no_ceiling)  # fmt: skip
    wall = time.perf_counter() - t0
    print_table(f"few-shot latency, HELP protocol ({seeds} support draws per device)", rows, wall)
    click.echo(f"CPU time: {time.process_time() - c0:.1f} s")
    save_rows(json_path, "fewshot-help", rows, wall, {"info": info, "cpu_s": round(time.process_time() - c0, 1)})


# --------------------------------------------------------------------------- fewshot-tasks
def task_scores(
    model: FewShotLatencyRegressor,
    frame: pl.DataFrame,
    space: str,
    target: str,
    *,
    seeds: Sequence[int],
    n_measurements: int = 20,
    use_references: bool = True,
) -> dict[str, float]:
    """Support: HELP refs the target has + random archs up to ``n_measurements``; test: every
    other architecture measured on the target (missing values are not test points)."""
    from hwsurrogate.datasets.archspaces import HELP_REFERENCE_INDICES

    d = frame.filter(pl.col("device_id") == target).sort("arch_index")
    idx = d["arch_index"].to_numpy()
    y = d["latency_ms"].to_numpy().astype(float)
    F = model.features(space, d["arch_key"].to_list())
    refs = (
        np.flatnonzero(np.isin(idx, HELP_REFERENCE_INDICES[space])) if use_references else np.array([], int)
    )
    others = np.setdiff1d(np.arange(len(idx)), refs)
    per = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        sup = np.r_[refs, rng.choice(others, size=n_measurements - len(refs), replace=False)].astype(int)
        test = np.setdiff1d(np.arange(len(idx)), sup)
        head = model.adapt_rows(space, F[sup], np.log(y[sup]))
        per.append(score_predictions(y[test], np.exp(predict_head(head, F[test]))))
    out = {k: float(np.mean([p[k] for p in per])) for k in per[0]}
    out["n_test"] = float(len(idx) - n_measurements)
    return out


@click.command("fewshot-tasks")
@click.option("--json", "json_path", default=None, help="Also write the results to this JSON file.")
@click.option(
    "--tasks", default="N1,N2,N3,N4,NA,F1,F2,F3,F4,FA", show_default=True, help="NASFLAT task names."
)
@click.option("--seeds", default=3, show_default=True, help="Random support draws per device.")
@splits_option
@store_option
def bench_fewshot_tasks(json_path: str | None, tasks: str, seeds: int, splits_path: str | None, store_root: str | None) -> None:  # fmt: skip
    """NASFLAT/MultiPredict task suite: meta-train on each task's train devices, adapt to its
    test devices with 20 measurements (10 HELP reference archs + 10 random), Spearman over
    every other architecture measured on the device (NB201 tasks mix HELP and LatBench devices,
    joined on the arch key; LatBench's unmeasured archs are neither support nor test)."""
    t0, c0 = time.perf_counter(), time.process_time()
    splits = read_splits(splits_path)
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {"seeds": list(range(seeds))}
    for task in split_csv(tasks) or []:
        space = "nb201" if task.startswith("N") else "fbnet"
        split = splits.get(f"{space}-{task}")
        if split is None:
            raise click.BadParameter(f"unknown task {task!r}", param_hint="--tasks")
        frame = read_latency_rows(store_root, space, [*split.train, *split.test])
        t1 = time.perf_counter()
        model = FewShotLatencyRegressor().fit(frame, devices={space: list(split.train)}, spaces=[space])
        fit_s = time.perf_counter() - t1
        per = {t: task_scores(model, frame, space, t, seeds=range(seeds)) for t in split.test}
        mean = {k: float(np.mean([p[k] for p in per.values()])) for k in ("spearman", "mape", "within_10pct")}
        rows.append(bench_row("spearman_mean", f"{task} ({space}), 20 measurements", mean["spearman"], NASFLAT_TASKS.get(task),
                         NASFLAT_TASKS.get(task), help=HELP_TASKS.get(task), ridge_floor=FLOOR_TASKS.get(task),
                         mape_pct=round(mean["mape"], 2), within_10pct=round(mean["within_10pct"], 3),
                         meta_train_s=round(fit_s, 1)))  # fmt: skip
        info[task] = {"train": list(split.train), "per_device": per}
        if FewShotConfig().gnn:  # the same without the GNN embedding (ablation row)
            plain = FewShotLatencyRegressor(replace(FewShotConfig(), gnn=())).fit(
                frame, devices={space: list(split.train)}, spaces=[space]
            )
            rho = np.mean(
                [task_scores(plain, frame, space, t, seeds=range(seeds))["spearman"] for t in split.test]
            )
            rows.append(
                bench_row("spearman_mean_no_gnn", f"{task} ({space}), ablation: no GNN embedding", float(rho))
            )
        if space == "fbnet":  # the lookup-table pair HELP's validation folds picked (off by default)
            span = FewShotLatencyRegressor(replace(FewShotConfig(), **SPAN_NO_FLAT)).fit(
                frame, devices={space: list(split.train)}, spaces=[space]
            )
            rho = np.mean(
                [task_scores(span, frame, space, t, seeds=range(seeds))["spearman"] for t in split.test]
            )
            rows.append(
                bench_row(
                    "spearman_mean_span",
                    f"{task} ({space}), ablation: lookup-table span, prior-free ridges out",
                    float(rho),
                )  # fmt: skip
            )
        if FewShotConfig().count_component:  # ... and without the op-count ridge (adapt-time only)
            model.config = replace(model.config, count_component=False)
            rho = np.mean(
                [task_scores(model, frame, space, t, seeds=range(seeds))["spearman"] for t in split.test]
            )
            rows.append(
                bench_row("spearman_mean_no_counts", f"{task} ({space}), ablation: no op-count ridge", float(rho))
            )
    wall = time.perf_counter() - t0
    print_table(f"few-shot latency, NASFLAT task suite ({seeds} support draws per device)", rows, wall)
    click.echo(f"CPU time: {time.process_time() - c0:.1f} s")
    save_rows(json_path, "fewshot-tasks", rows, wall, {"info": info, "cpu_s": round(time.process_time() - c0, 1)})
