"""Adaptation-time variants of the NB201 few-shot model: validation and HELP-test Spearman.

Each variant changes only how a device head is adapted (the meta-trained models are shared),
so one meta-training per fold scores all of them. Folds: the validation protocol of
``hws bench fewshot-help`` (HELP meta-valid devices, then each mobile meta-train device left out)
and, reported only, the HELP meta-test devices. Support: 10 references + 10 random (also
10 references only / 10 random only for a few), 5 draws. The default is the row ``default``;
a variant replaces it only if its VALIDATION mean is higher by more than the seed noise
(~0.003); the test columns are reported, never used to choose.

Usage::

    HWSURROGATE_STORE=/work/benchstore HWSURROGATE_DATA_DIR=/work/shared/data \\
        python benchmarks/fewshot_nd_variants.py [--json bench-results/fewshot-nd-variants.json] [--latbench]

``--latbench`` adds the variant "13 LatBench devices as extra sources" (its own meta-training
per fold; not HELP's protocol).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.benchmarks.fewshot import read_latency_rows, validation_folds
from hwsurrogate.datasets.archspaces import HELP_REFERENCE_INDICES
from hwsurrogate.surrogates.fewshot import (
    DeviceHead,
    FewShotConfig,
    FewShotLatencyRegressor,
    help_protocol_rows,
    log_jacobian,
    posterior_head,
    predict_head,
    read_splits,
    score_predictions,
)
from hwsurrogate.surrogates.training.metrics import spearman

SPACE = "nb201"
Adapt = Callable[[FewShotLatencyRegressor, np.ndarray, np.ndarray], DeviceHead]


def _default(m: FewShotLatencyRegressor, F: np.ndarray, ly: np.ndarray) -> DeviceHead:
    return m.adapt_rows(SPACE, F, ly)


def _n_components(m: FewShotLatencyRegressor) -> int:
    cfg, sm = m.config, m.spaces_[SPACE]
    flat = (1 + cfg.compact_component + cfg.count_component) if cfg.flat_component else 0
    return (
        1 + flat + int(bool(sm.n_gnn and cfg.gnn_component)) + int(bool(sm.n_gnn and cfg.gnn_prior_component))
    )


def with_extra(extra: Callable[..., list[DeviceHead]]) -> Adapt:
    """The default adaptation with extra components joining each transform's model average."""

    def adapt(m: FewShotLatencyRegressor, F: np.ndarray, ly: np.ndarray) -> DeviceHead:
        sm, heads = m.spaces_[SPACE], []
        for t in m.config.transforms:
            h = m._adapt_transform(SPACE, F, ly, t)
            ex = extra(m, sm, F, ly, t)
            evs = np.array([h.evidence + np.log(_n_components(m))] + [e.evidence for e in ex])
            a = np.exp(evs - evs.max())
            a /= a.sum()
            h.weights = a[0] * h.weights + sum(ai * e.weights for ai, e in zip(a[1:], ex, strict=True))
            h.evidence = float(
                evs.max() + np.log(np.exp(evs - evs.max()).sum()) - np.log(len(evs) - 1 + _n_components(m))
            )
            heads.append(h)
        ev = np.array([h.evidence - len(ly) * np.log(h.y_std) + log_jacobian(h.transform, ly) for h in heads])
        w = np.exp(ev - ev.max())
        w /= w.sum()
        f = heads[0]
        return DeviceHead(SPACE, np.zeros(0), np.zeros(0), f.y_mean, f.y_std, len(ly), log_range=f.log_range,
                          transform="bma", components=heads, component_weights=[float(v) for v in w])  # fmt: skip

    return adapt


def _ridge(iso_of: Callable[[Any, np.ndarray], np.ndarray]) -> Callable[..., list[DeviceHead]]:
    def extra(m: FewShotLatencyRegressor, sm: Any, F: np.ndarray, ly: np.ndarray, t: str) -> list[DeviceHead]:
        p = F.shape[1]
        return [posterior_head(F, ly, np.zeros((1, p)), np.zeros((p, p)), tau=m.config.flat_taus,
                               noise=m.config.evidence_noises, iso=iso_of(sm, F), space=SPACE, transform=t)]  # fmt: skip

    return extra


def _nearest_sources(k: int) -> Callable[..., list[DeviceHead]]:
    """A Gaussian prior centred on the k source devices whose latencies rank the support best."""
    def extra(m: FewShotLatencyRegressor, sm: Any, F: np.ndarray, ly: np.ndarray, t: str) -> list[DeviceHead]:
        W, cov = sm.prior(t)
        sims = np.array([spearman(F[:, j], ly) for j in range(len(sm.source_devices))])
        sel = np.argsort(-sims)[:k]
        taus = [sm.tau * f for f in m.config.evidence_tau_factors]
        return [posterior_head(F, ly, W[sel].mean(axis=0, keepdims=True), cov, tau=taus,
                               noise=m.config.evidence_noises, space=SPACE, transform=t)]  # fmt: skip

    return extra


def _z_only(sm: Any, F: np.ndarray) -> np.ndarray:
    iso = np.zeros(F.shape[1])
    iso[: len(sm.source_devices)] = 1.0
    return iso


def variants() -> dict[str, tuple[Adapt, FewShotConfig | None]]:
    b = FewShotConfig()
    return {
        "default": (_default, None),
        "+ prior-free ridge on all features (source latencies too)": (with_extra(_ridge(lambda sm, F: np.ones(F.shape[1]))), None),
        "+ prior-free ridge on the source latencies only": (with_extra(_ridge(_z_only)), None),
        "+ prior centred on the nearest source device": (with_extra(_nearest_sources(1)), None),
        "+ prior centred on the 3 nearest source devices": (with_extra(_nearest_sources(3)), None),
        "meta-selected tau/noise (no evidence)": (_default, replace(b, evidence_tau_factors=())),
        "evidence tau x0.3-3": (_default, replace(b, evidence_tau_factors=(0.3, 1.0, 3.0))),
        "evidence noise only (tau x1)": (_default, replace(b, evidence_tau_factors=(1.0,))),
        "wider noise grid (0.01-0.8)": (_default, replace(b, evidence_noises=(0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8))),
        "mixture + gaussian priors averaged": (_default, replace(b, prior="both")),
        "no flat-ridge components": (_default, replace(b, flat_component=False)),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default="bench-results/fewshot-nd-variants.json")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--latbench", action="store_true", help="also the LatBench extra-source variant")
    args = ap.parse_args()
    t0, c0 = time.perf_counter(), time.process_time()
    split = read_splits()["help-nb201"]
    frame = read_latency_rows(None, SPACE, [*split.train, *split.valid, *split.test])
    folds = [(*f, False) for f in validation_folds(split)] + [(list(split.train), list(split.test), True)]
    refs = np.asarray(HELP_REFERENCE_INDICES[SPACE])
    settings = {
        "20 (10 ref + 10 random)": (True, 10),
        "10 (10 ref)": (True, 0),
        "10 (10 random)": (False, 10),
    }

    def run(models: list[FewShotLatencyRegressor], fr: pl.DataFrame, adapt: Adapt, cfg: FewShotConfig | None,
            use_refs: bool, n_random: int) -> tuple[dict[str, float], dict[str, float]]:  # fmt: skip
        val: dict[str, float] = {}
        test: dict[str, float] = {}
        for m, (_, targets, is_test) in zip(models, folds, strict=True):
            old = m.config
            m.config = cfg or old
            for dev in targets:
                d = fr.filter(pl.col("device_id") == dev).sort("arch_index")
                idx, y = d["arch_index"].to_numpy(), d["latency_ms"].to_numpy().astype(float)
                F = m.features(SPACE, d["arch_key"].to_list())
                pool, tst = help_protocol_rows(idx, y, n_pool=split.n_pool)
                ref_rows = np.flatnonzero(np.isin(idx, refs)) if use_refs else np.zeros(0, int)
                cand = np.setdiff1d(pool, np.flatnonzero(np.isin(idx, refs)))
                per = []
                for s in range(args.seeds):
                    rnd = np.random.default_rng(s).choice(cand, size=n_random, replace=False)
                    sup = np.r_[ref_rows, rnd].astype(int)
                    h = adapt(m, F[sup], np.log(y[sup]))
                    per.append(score_predictions(y[tst], np.exp(predict_head(h, F[tst])))["spearman"])
                (test if is_test else val)[dev] = float(np.mean(per))
            m.config = old
        return val, test

    models = [FewShotLatencyRegressor().fit(frame, devices={SPACE: tr}, spaces=[SPACE]) for tr, _, _ in folds]
    rows = []

    def record(name: str, label: str, val: dict[str, float], test: dict[str, float]) -> None:
        for split, per in (("validation", val), ("HELP test", test)):
            rows.append({"metric": "spearman_mean", "split": f"{split} nb201: {name}, {label}",
                         "ours": round(float(np.mean(list(per.values()))), 4), "anchor": None, "target": None,
                         "met": None, "per_device": {k: round(v, 4) for k, v in per.items()},
                         "note": "chosen on validation; test reported only" if split != "validation" else ""})  # fmt: skip
        print(
            f"{name:58s} {label:24s} validation {rows[-2]['ours']:.4f}  test {rows[-1]['ours']:.4f}",
            flush=True,
        )

    for name, (adapt, cfg) in variants().items():
        labels = settings if name in ("default", "meta-selected tau/noise (no evidence)", "evidence tau x0.3-3",
                                      "evidence noise only (tau x1)") else {k: settings[k] for k in list(settings)[:1]}  # fmt: skip
        for label, (use_refs, n_random) in labels.items():
            record(name, label, *run(models, frame, adapt, cfg, use_refs, n_random))
    if args.latbench:
        from hwsurrogate.datasets.store import DatasetStore

        names = (
            DatasetStore()
            .scan("latency", space=SPACE)
            .select(pl.col("device_id").unique())
            .collect()["device_id"]
        )
        lb = sorted(d for d in names.to_list() if d.startswith("latbench/"))
        fr = pl.concat([frame, read_latency_rows(None, SPACE, lb)])
        lb_models = [
            FewShotLatencyRegressor().fit(fr, devices={SPACE: [*tr, *lb]}, spaces=[SPACE])
            for tr, _, _ in folds
        ]
        for label, (use_refs, n_random) in list(settings.items())[:2]:
            record(f"+ {len(lb)} LatBench devices as sources (not HELP's protocol)", label,
                   *run(lb_models, fr, _default, None, use_refs, n_random))  # fmt: skip
    out = {"benchmark": "fewshot-nd-variants", "command": "python benchmarks/fewshot_nd_variants.py"
           + (" --latbench" if args.latbench else ""), "wall_s": round(time.perf_counter() - t0, 1),
           "cpu_s": round(time.process_time() - c0, 1), "seeds": args.seeds, "rows": rows}  # fmt: skip
    with open(args.json, "w") as fh:
        json.dump(out, fh, indent=1)
    print(f"wall time: {out['wall_s']} s, CPU {out['cpu_s']} s")


if __name__ == "__main__":
    main()
