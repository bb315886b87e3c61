"""``hws bench fewshot-gnn``: ablations of the meta-trained GNN encoder on the validation devices."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import click
import numpy as np
import polars as pl

from hwsurrogate.benchmarks.fewshot import (
    bench_row,
    print_table,
    read_latency_rows,
    save_rows,
    split_csv,
    splits_option,
    validation_folds,
)
from hwsurrogate.benchmarks.report import store_option
from hwsurrogate.surrogates.fewshot import (
    FewShotConfig,
    FewShotLatencyRegressor,
    evaluate_help_protocol,
    read_splits,
    score_predictions,
)

# --------------------------------------------------------------------------- fewshot-gnn
GNN_EXPERIMENT = "fewshot-gnn-ablations"


def gnn_ablation_configs(space: str) -> dict[str, FewShotConfig | str]:
    """Variants of the GNN encoder study; the string value names the stand-alone GNN predictor."""
    base = FewShotConfig()
    # the first study's reference point: features + BMA ridge, HELP reference embedding on
    g = replace(base, gnn=(space,), gnn_use_references=True, gnn_prior_component=False)
    return {
        "no GNN (Bayesian linear model only)": replace(base, gnn=()),
        "default (GNN without reference embedding + source-prior model on the embedding)": replace(
            base, gnn=(space,)
        ),
        "GNN embedding: features + BMA ridge": g,
        "GNN embedding: BMA ridge component only": replace(g, gnn_features=False),
        "GNN embedding: features only": replace(g, gnn_component=False),
        "GNN + rank loss (weight 1)": replace(g, gnn_rank_loss=1.0),
        "GNN meta-trained without inner loop (HELP embedding only)": replace(g, gnn_inner="none"),
        "GNN without reference-latency device embedding": replace(g, gnn_use_references=False),
        "GNN meta-trained with a Meta-SGD inner loop (HELP's recipe)": replace(g, gnn_inner="metasgd"),
        "GNN ensemble of 2 encoders": replace(g, gnn_ensemble=2),
        "GNN + source-prior model on the embedding in the average": replace(g, gnn_prior_component=True),
        "GNN without reference embedding + source-prior model on the embedding": replace(
            g, gnn_use_references=False, gnn_prior_component=True
        ),
        "GNN cross-space transfer (encoder initialized from the other space's)": replace(
            g, gnn=("nb201", "fbnet"), gnn_transfer_from="fbnet" if space == "nb201" else "nb201"
        ),
        "GNN 1200 meta-steps": replace(g, gnn_steps=1200),
        "stand-alone GNN (device embedding prior + closed-form inner step)": "standalone",
        "stand-alone GNN, Meta-SGD inner loop (HELP-style baseline)": "standalone-metasgd",
        "stand-alone GNN without reference embedding": "standalone-norefs",
    }


def standalone_gnn_scores(
    frame: pl.DataFrame, space: str, sources: Sequence[str], targets: Sequence[str], *, n_pool: int,
    seeds: Sequence[int], config: FewShotConfig,
) -> dict[str, float]:  # fmt: skip
    """HELP-style predictor alone: e(a) of the meta-trained GNN, head = device-embedding prior
    (from the 10 reference latencies) + closed-form ridge on the support (HELP's protocol)."""
    from hwsurrogate.datasets.archspaces import HELP_REFERENCE_INDICES
    from hwsurrogate.surrogates.fewshot import (
        help_protocol_rows,
        latency_matrix,
        meta_train_gnn,
        reference_rows,
        standardize,
    )

    keys, logl = latency_matrix(frame, space, list(sources))
    z = standardize(logl)[0]
    gnn = meta_train_gnn(space, keys, z, reference_rows(frame, space, keys), config.gnn_config())
    out = {}
    for dev in targets:
        d = frame.filter((pl.col("device_id") == dev) & (pl.col("space") == space)).sort("arch_index")
        idx = d["arch_index"].to_numpy()
        y = d["latency_ms"].to_numpy().astype(float)
        E = gnn.embed(d["arch_key"].to_list())
        pool, test = help_protocol_rows(idx, y, n_pool=n_pool)
        pos = {a: i for i, a in enumerate(idx.tolist())}
        ref_rows = np.array([pos[r] for r in HELP_REFERENCE_INDICES[space] if r in pos], dtype=int)
        refs_ok = len(ref_rows) == len(HELP_REFERENCE_INDICES[space])
        cand = np.setdiff1d(pool, ref_rows)
        per = []
        for seed in seeds:
            sup = np.r_[ref_rows, np.random.default_rng(seed).choice(cand, size=10, replace=False)].astype(
                int
            )
            head = gnn.adapt(E[sup], np.log(y[sup]), np.log(y[ref_rows]) if refs_ok else None)
            per.append(score_predictions(y[test], np.exp(gnn.predict(head, E[test])))["spearman"])
        out[dev] = float(np.mean(per))
    return out


def gnn_ablation_rows(
    *,
    spaces: Sequence[str] = ("nb201", "fbnet"),
    variants: Sequence[str] | None = None,
    seeds: int = 5,
    splits_path: str | None = None,
    store_root: str | None = None,
    log_mlflow: bool = True,
) -> list[dict[str, Any]]:
    """The validation protocol of :func:`validation_rows` for each GNN variant; one MLflow run each."""
    splits = read_splits(splits_path)
    rows: list[dict[str, Any]] = []
    other_frames: dict[str, pl.DataFrame] = {}
    for space in spaces:
        split = splits[f"help-{space}"]
        frame = read_latency_rows(store_root, space, [*split.train, *split.valid])
        configs = gnn_ablation_configs(space)
        chosen = [v for v in configs if variants is None or any(v.startswith(p) for p in variants)]
        for name in chosen:
            cfg = configs[name]
            t0, c0 = time.perf_counter(), time.process_time()
            per: dict[str, float] = {}
            for train, targets in validation_folds(split):
                if isinstance(cfg, str):
                    inner = "metasgd" if cfg.endswith("metasgd") else "ridge"
                    base_cfg = replace(FewShotConfig(), gnn=(space,), gnn_inner=inner,
                                       gnn_use_references=not cfg.endswith("norefs"))  # fmt: skip
                    per |= standalone_gnn_scores(frame, space, train, targets, n_pool=split.n_pool,
                                                 seeds=range(seeds), config=base_cfg)  # fmt: skip
                    continue
                if cfg.gnn_transfer_from and cfg.gnn_transfer_from != space:
                    other = cfg.gnn_transfer_from
                    if other not in other_frames:
                        src = splits[f"help-{other}"]
                        other_frames[other] = read_latency_rows(store_root, other, [*src.train, *src.valid, *src.test])
                    of = other_frames[other]
                    # the other space's sources: this fold's sources measured there (never a target)
                    o_train = [d for d in train if d in set(of["device_id"].unique().to_list())]
                    model = FewShotLatencyRegressor(cfg).fit(
                        pl.concat([frame, of.filter(pl.col("device_id").is_in(o_train))]),
                        devices={space: train, other: o_train}, spaces=[space, other],
                    )  # fmt: skip
                else:
                    model = FewShotLatencyRegressor(cfg).fit(frame, devices={space: train}, spaces=[space])
                res = evaluate_help_protocol(
                    model, frame, space, targets, n_pool=split.n_pool, seeds=range(seeds)
                )
                res.pop("_pooled")
                per |= {d: r["spearman"] for d, r in res.items()}
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            mean = float(np.mean(list(per.values())))
            rows.append(bench_row("spearman_mean", f"validation {space}: {name}", mean, n_measurements=20,
                             per_device={d: round(v, 4) for d, v in per.items()}, wall_s=round(wall, 1),
                             cpu_s=round(cpu, 1)))  # fmt: skip
            if log_mlflow:
                import mlflow

                from hwsurrogate.surrogates.registry.tracking import start_run

                with start_run(
                    GNN_EXPERIMENT, run_name=f"{space}: {name}", space=space, protocol="validation"
                ):
                    params = {"variant": name}
                    if not isinstance(cfg, str):
                        params |= {f"cfg_{k}": str(v) for k, v in asdict(cfg).items() if k.startswith("gnn")}
                    mlflow.log_params(params)
                    mlflow.log_metrics({"valid_spearman_mean": mean, "wall_s": wall, "cpu_s": cpu} | {
                        f"valid_spearman_{d.replace('/', '_')}": v for d, v in per.items()})  # fmt: skip
    return rows


@click.command("fewshot-gnn")
@click.option("--json", "json_path", default=None, help="Also write the results to this JSON file.")
@click.option("--spaces", default="nb201,fbnet", show_default=True, help="Spaces (HELP splits ND / FD).")
@click.option("--variants", default=None, help="Comma-separated prefixes of variant names (default: all).")
@click.option("--seeds", default=5, show_default=True, help="Random support draws per device.")
@click.option("--no-mlflow", is_flag=True, help="Do not log a run per variant.")
@splits_option
@store_option
def bench_fewshot_gnn(json_path: str | None, spaces: str, variants: str | None, seeds: int, no_mlflow: bool,
                      splits_path: str | None, store_root: str | None) -> None:  # fmt: skip
    """Ablations of the meta-trained GNN encoder on the VALIDATION devices only.

    Folds as in `fewshot-help`'s validation rows: meta-train on HELP's meta-train devices and
    score the meta-valid devices, then leave each mobile meta-train device out and score it;
    20 measurements (10 references + 10 random). Each variant is an MLflow run in experiment
    `fewshot-gnn-ablations` (metric valid_spearman_mean, per-device Spearman, wall/CPU time).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    rows = gnn_ablation_rows(spaces=split_csv(spaces) or [], variants=split_csv(variants), seeds=seeds,
                             splits_path=splits_path, store_root=store_root, log_mlflow=not no_mlflow)  # fmt: skip
    wall = time.perf_counter() - t0
    print_table(f"few-shot GNN ablations, validation devices ({seeds} draws)", rows, wall)
    click.echo(f"CPU time: {time.process_time() - c0:.1f} s")
    save_rows(json_path, "fewshot-gnn", rows, wall, {"cpu_s": round(time.process_time() - c0, 1)})
