"""``hws bench fpga-hlsyn-fewshot``: HLSyn's adaptation protocol on its held-out kernels.

HLSyn (``ZongyueQin/HLSyn``, ``config.py``, inference block) adapts to each held-out kernel with
5, 10 or 20 designs of that kernel and tests on a 30 % holdout of the kernel's designs, 5
repeats. Here: the zero-shot tree of ``hws bench fpga-hlsyn`` (same rows, same features, trained
on the training kernels only) predicts every design of the held-out kernels once; per repeat and
kernel a seeded permutation puts 30 % of the kernel's designs in the test set and the first k of
the rest are the adaptation designs; :func:`~hwsurrogate.surrogates.fewshot.hlsyn.fit_kernel_correction`
fits the correction on them, as ``hws adapt --task fpga-hlsyn`` does (affine map + pragma residual
model with the kernel's loop-nest features and unroll-regime flags from its program graph, the
latter from 10 designs on; its choice is documented in :mod:`~hwsurrogate.surrogates.fewshot.hlsyn`).
Variants: the residual model without the unroll-regime flags (the third round's), without
loop-nest features (what a kernel without a program graph gets), the nearest-design residual (number of
neighbours chosen on validation kernels drawn from the training kernels), affine only, offset
only. The summed RMSE (5 targets) is over the pooled test designs of all held-out kernels of a
tool, the same test designs for zero-shot and every k, and is averaged over the 5 repeats. Validity F1 is the zero-shot classifier's on the same test designs
(the correction adapts the regression targets only). ``--selection-study`` adds the training-kernel
simulation that chose the method (affine, the previous round's model and the method; ``--study-all``
also every earlier candidate, which about doubles the study's time).
"""

from __future__ import annotations

import time

import click
import numpy as np
import polars as pl

from hwsurrogate.benchmarks.fpga import HLSYN_FLOOR, hlsyn_tree, rmse_known
from hwsurrogate.benchmarks.report import BenchReport, json_option, log_bench
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import TrainingDataError
from hwsurrogate.progress import track
from hwsurrogate.surrogates.features.program_graphs import LoopNest, kernel_graphs
from hwsurrogate.surrogates.fewshot.hlsyn import (
    FEW_DESIGN_NEIGHBOURS,
    HLSYN_SHOTS,
    MIN_RESIDUAL_DESIGNS,
    adaptation_splits,
    fit_kernel_correction,
)
from hwsurrogate.surrogates.models.fpga import HLSYN_TARGETS, fit_validity_classifier, hlsyn_reported_targets
from hwsurrogate.surrogates.training.fpga import hlsyn_frame, hlsyn_graph_rows, hlsyn_protocol_rows
from hwsurrogate.surrogates.training.splits import HLSYN_TEST_KERNELS

__all__ = ["bench_hlsyn_fewshot"]


#: candidate numbers of neighbouring designs whose residual is added back (0: affine only);
#: chosen per tool on validation kernels drawn from the TRAINING kernels, never on held-out ones
NEIGHBOUR_CHOICES = (0, 1, 3, 5)


def _adapted(p0: np.ndarray, y: np.ndarray, kernels: np.ndarray, pragmas: list[str], adapt: np.ndarray, *,
             prior: float, slope: bool, neighbours: int, pragma_model: bool = False,
             earlier: bool = False, nests: dict[str, LoopNest] | None = None,
             flags: bool = True, valid: np.ndarray | None = None,
             valid_targets: tuple[str, ...] = ()) -> np.ndarray:  # fmt: skip
    """``earlier``: the pragma residual model as first merged (no perf prediction column, affine only
    below 10 designs), kept for the selection study. ``nests``: the kernels' loop nests (their
    program graphs), whose loop-nest features (and, with ``flags``, unroll-regime flags) the pragma
    residual model then takes. ``valid``: every row's validity probability (the zero-shot classifier's),
    a column of the ``valid_targets`` models."""
    pred = p0.copy()
    for kernel in sorted(set(kernels.tolist())):
        m = kernels == kernel
        a = adapt & m
        if not a.any():
            continue
        pk = [pragmas[i] for i in np.flatnonzero(m)]
        pa = [pragmas[i] for i in np.flatnonzero(a)]
        corr = fit_kernel_correction(p0[a], y[a], HLSYN_TARGETS, prior_designs=prior, slope=slope, pragmas=pa,
                                     neighbours=neighbours, pragma_model=pragma_model, perf_prediction=not earlier,
                                     few_design_neighbours=0 if earlier else FEW_DESIGN_NEIGHBOURS,
                                     loop_nest=(nests or {}).get(kernel), unroll_flags=flags,
                                     valid_prob=None if valid is None else valid[a],
                                     valid_targets=valid_targets)  # fmt: skip
        pred[m] = corr.apply(p0[m], pk, None if valid is None else valid[m])
    return pred


#: the corrections compared by ``--selection-study``: (slope, neighbours, pragma model, earlier model,
#: loop-nest features, unroll-regime flags)
STUDY_METHODS: dict[str, tuple[bool, int, bool, bool, bool, bool]] = {
    "offset": (False, 0, False, False, False, False),
    "affine": (True, 0, False, False, False, False),
    "affine +1 nearest": (True, 1, False, False, False, False),
    "affine +3 nearest": (True, 3, False, False, False, False),
    "affine +5 nearest": (True, 5, False, False, False, False),
    "affine + pragma residual model (earlier)": (True, 0, True, True, False, False),
    "affine + pragma residual model, no loop features": (True, 0, True, False, False, False),
    "affine + pragma residual model, no unroll flags": (True, 0, True, False, True, False),
    "affine + pragma residual model": (True, 0, True, False, True, True),
    "affine + pragma residual model + valid_prob column (perf)": (True, 0, True, False, True, True),
}
#: study methods whose residual models also take the validity classifier's probability (as served:
#: :func:`~hwsurrogate.surrogates.models.fpga.fit_validity_classifier` on the group's training
#: designs) as a column of these targets; tried in round 5, not kept (module docstring of
#: :mod:`~hwsurrogate.surrogates.fewshot.hlsyn`)
STUDY_VALID: dict[str, tuple[str, ...]] = {"affine + pragma residual model + valid_prob column (perf)": ("perf",)}
#: the methods ``--selection-study`` compares by default: the method, the previous round's and affine
#: alone; ``--study-all`` adds the earlier rounds' candidates (offset, nearest designs, the model as
#: first merged, the model without loop-nest features, the valid_prob column), whose numbers the module docstring of
#: :mod:`~hwsurrogate.surrogates.fewshot.hlsyn` records (they halve the study's adaptation time)
DEFAULT_STUDY: tuple[str, ...] = (
    "affine", "affine + pragma residual model, no unroll flags", "affine + pragma residual model",
)  # fmt: skip


def _selection_study(tr: pl.DataFrame, gstats: pl.DataFrame, graphs: pl.DataFrame, max_iter: int, repeats: int,
                     prior: float, methods: tuple[str, ...] = DEFAULT_STUDY,
                     cls: pl.DataFrame | None = None) -> dict[str, dict[int, float]]:  # fmt: skip
    """HLSyn's protocol simulated on the TRAINING kernels only: they are split into 3 seeded groups,
    a tree trained on the other two predicts each group, and every method of ``methods`` (names of
    :data:`STUDY_METHODS`) adapts with k designs; mean over the groups of the repeat-averaged summed
    RMSE. This is how the method of :mod:`~hwsurrogate.surrogates.fewshot.hlsyn` was chosen. ``cls``:
    the training kernels' designs with a validity label, for the methods of :data:`STUDY_VALID`."""
    if cls is None and any(m in STUDY_VALID for m in methods):
        raise ValueError("the valid_prob study methods need the designs with a validity label (cls)")
    names = sorted(set(tr["kernel"].to_list()))
    nests = {k: LoopNest.of(kg) for k, kg in kernel_graphs(graphs).items()}
    perm = np.random.default_rng(1).permutation(names)
    groups = [sorted(perm[i::3].tolist()) for i in range(3)]
    out: dict[str, dict[int, list[float]]] = {m: {k: [] for k in HLSYN_SHOTS} for m in methods}
    for group in groups:
        inside = pl.col("kernel").is_in(group)
        fit, val = tr.filter(~inside), tr.filter(inside)
        tree = hlsyn_tree(gstats, graphs, max_iter).fit(fit, hlsyn_reported_targets(fit).to_numpy())
        pv = tree.predict(val)
        vp = None
        if any(m in STUDY_VALID for m in methods):
            crow = cls.filter(~inside)  # type: ignore[union-attr]
            clf = fit_validity_classifier(tree, crow, crow["valid"].to_numpy())
            vp = clf.predict_proba(tree._features(val))[:, 1]
        yv, kv = hlsyn_reported_targets(val).to_numpy(), val["kernel"].to_numpy()
        prv = val["pragmas"].cast(pl.String).to_list()
        for k in HLSYN_SHOTS:
            for name in methods:
                use_slope, nb, pm, earlier, use_loop, flags = STUDY_METHODS[name]
                scores = []
                for r in range(repeats):
                    a, t = adaptation_splits(kv, repeat=r, shots=k)
                    pred = _adapted(pv, yv, kv, prv, a, prior=prior, slope=use_slope, neighbours=nb,
                                    pragma_model=pm, earlier=earlier, nests=nests if use_loop else None,
                                    flags=flags, valid=vp if name in STUDY_VALID else None,
                                    valid_targets=STUDY_VALID.get(name, ()))  # fmt: skip
                    scores.append(_summed(yv[t], pred[t])[0])
                out[name][k].append(float(np.mean(scores)))
    return {name: {k: round(float(np.mean(v)), 4) for k, v in by_k.items()} for name, by_k in out.items()}


def _summed(y: np.ndarray, p: np.ndarray) -> tuple[float, list[float]]:
    per = [rmse_known(y[:, j], p[:, j]) for j in range(y.shape[1])]
    return float(sum(per)), per


@click.command("fpga-hlsyn-fewshot")
@json_option("fpga-hlsyn-fewshot")
@click.option("--tool", "tools", multiple=True, type=click.Choice(["v18", "v20"]), default=("v18", "v20"),
              show_default=True)  # fmt: skip
@click.option("--repeats", default=5, show_default=True, type=click.IntRange(1, 50), help="HLSyn uses 5.")
@click.option("--max-iter", default=150, show_default=True, help="Boosting iterations per target (trees).")
@click.option("--prior-designs", default=10.0, show_default=True,
              help="Pseudo-designs shrinking the fitted slope towards 1 (fixed a priori, not tuned).")  # fmt: skip
@click.option("--selection-study", is_flag=True,
              help="Also simulate the protocol on 3 groups of training kernels for every candidate correction "
                   "(how the method was chosen; 3 more tree fits per tool): the method, the previous "
                   "round's and affine alone.")  # fmt: skip
@click.option("--study-all", is_flag=True,
              help="With --selection-study, also the earlier rounds' candidates (offset, nearest designs, the "
                   "model as first merged, without loop-nest features, the valid_prob column): about twice "
                   "the study's time.")  # fmt: skip
def bench_hlsyn_fewshot(
    json_path: str | None,
    tools: tuple[str, ...],
    repeats: int,
    max_iter: int,
    prior_designs: float,
    selection_study: bool = False,
    study_all: bool = False,
) -> None:
    """HLSyn protocol with adaptation: 5/10/20 designs per held-out kernel, 30 % holdout, repeats.

    Rows: zero-shot (the tree of `hws bench fpga-hlsyn`) and adapted summed RMSE on the same test
    designs, against the target half the published train-mean floor; validity F1 of the zero-shot
    classifier on the same designs.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import f1_score

    from hwsurrogate.surrogates.features import hlsyn_features

    cpu0 = time.process_time()
    report = BenchReport("fpga-hlsyn-fewshot", "HLSyn adaptation protocol: k designs per held-out kernel")
    store = DatasetStore()
    frame, gstats = hlsyn_frame(store)
    if frame.height == 0:
        raise TrainingDataError("the store has no hlsyn rows: run `hws data import hlsyn` first")
    graphs = hlsyn_graph_rows(store)
    nests = {k: LoopNest.of(kg) for k, kg in kernel_graphs(graphs).items()}  # the kernels' loop nests
    report.data = {
        "repeats": repeats,
        "test_frac": 0.3,
        "shots": list(HLSYN_SHOTS),
        "prior_designs": prior_designs,
    }
    for tool in tools:
        part = frame.filter(pl.col("tool_tag") == tool)
        held = list(HLSYN_TEST_KERNELS[tool])
        is_test = pl.col("kernel").is_in(held)
        rows = hlsyn_protocol_rows(part)
        tr, te = rows.filter(~is_test), rows.filter(is_test)
        if tr.height == 0 or te.height == 0:
            raise TrainingDataError(f"fpga-hlsyn-fewshot {tool}: {tr.height} train / {te.height} test rows")
        ytr, yte = hlsyn_reported_targets(tr).to_numpy(), hlsyn_reported_targets(te).to_numpy()
        t0 = time.perf_counter()
        p0 = hlsyn_tree(gstats, graphs, max_iter).fit(tr, ytr).predict(te)
        fit_s = time.perf_counter() - t0
        kernels = te["kernel"].to_numpy()
        pragmas = te["pragmas"].cast(pl.String).to_list()
        # choose the number of neighbours on 6 validation kernels drawn from the training kernels
        train_kernels = sorted(set(tr["kernel"].to_list()))
        val = sorted(np.random.default_rng(0).choice(train_kernels, size=6, replace=False).tolist())
        in_val = pl.col("kernel").is_in(val)
        vtr, vva = tr.filter(~in_val), tr.filter(in_val)
        pv = (
            hlsyn_tree(gstats, graphs, max_iter).fit(vtr, hlsyn_reported_targets(vtr).to_numpy()).predict(vva)
        )
        yv, kv, prv = (
            hlsyn_reported_targets(vva).to_numpy(),
            vva["kernel"].to_numpy(),
            vva["pragmas"].to_list(),
        )
        val_rmse = {}
        for nb in NEIGHBOUR_CHOICES:
            scores = []
            for r in range(repeats):
                a, t = adaptation_splits(kv, repeat=r, shots=max(HLSYN_SHOTS))
                pred = _adapted(pv, yv, kv, prv, a, prior=prior_designs, slope=True, neighbours=nb)
                scores.append(_summed(yv[t], pred[t])[0])
            val_rmse[nb] = float(np.mean(scores))
        chosen = min(val_rmse, key=val_rmse.get)
        scores = []  # the main method on the same validation kernels, for the record (not a choice)
        for r in range(repeats):
            a, t = adaptation_splits(kv, repeat=r, shots=max(HLSYN_SHOTS))
            pred = _adapted(
                pv, yv, kv, prv, a, prior=prior_designs, slope=True, neighbours=0, pragma_model=True, nests=nests
            )
            scores.append(_summed(yv[t], pred[t])[0])
        val_pragma = float(np.mean(scores))
        # validity: the zero-shot classifier of `hws bench fpga-hlsyn`, scored on the test designs below
        cls = part.filter(pl.col("valid").is_not_null())
        ctr, cte = cls.filter(~is_test), cls.filter(is_test)
        xtr, xte = hlsyn_features(ctr, gstats).to_numpy(), hlsyn_features(cte, gstats).to_numpy()
        empty = np.isnan(xtr).all(axis=0)
        xtr[:, empty], xte[:, empty] = 0.0, 0.0
        clf = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.1, random_state=0)
        vpred = clf.fit(xtr, ctr["valid"].to_numpy().astype(int)).predict(xte)
        vtrue = cte["valid"].to_numpy().astype(int)
        ckernels = cte["kernel"].to_numpy()
        res: dict[str, list[float]] = {"zero-shot": []}
        per_target: dict[str, list[list[float]]] = {"zero-shot": []}
        f1s: list[float] = []
        adapt_s: list[float] = []
        for r in track(range(repeats), f"{tool} repeats"):
            _, test = adaptation_splits(kernels, repeat=r, shots=0)
            total, per = _summed(yte[test], p0[test])
            res["zero-shot"].append(total)
            per_target["zero-shot"].append(per)
            _, ctest = adaptation_splits(ckernels, repeat=r, shots=0)
            f1s.append(float(f1_score(vtrue[ctest], vpred[ctest])))
            for k in HLSYN_SHOTS:
                adapt, test_k = adaptation_splits(kernels, repeat=r, shots=k)
                assert (test_k == test).all()
                variants = [(f"{k} designs", True, 0, True, False, True, True),
                            (f"{k} designs, +{chosen} nearest (no pragma model)", True, chosen, False, False, False,
                             False),
                            (f"{k} designs, affine only (no neighbours)", True, 0, False, False, False, False),
                            (f"{k} designs, offset only", False, 0, False, False, False, False)]  # fmt: skip
                if k >= MIN_RESIDUAL_DESIGNS:
                    variants += [
                        (f"{k} designs, pragma residual model without unroll-regime flags (third round)", True, 0,
                         True, False, True, False),
                        (f"{k} designs, pragma residual model without loop features (no graph)", True, 0, True,
                         False, False, False),
                        (f"{k} designs, pragma residual model as first merged", True, 0, True, True, False, False),
                    ]  # fmt: skip
                for name, use_slope, nb, pm, earlier, use_loop, flags in variants:
                    if nb == 0 and "nearest" in name:
                        continue  # the validation kernels chose no neighbours: that is the affine row
                    t1 = time.perf_counter()
                    pred = _adapted(p0, yte, kernels, pragmas, adapt, prior=prior_designs, slope=use_slope,
                                    neighbours=nb, pragma_model=pm, earlier=earlier,
                                    nests=nests if use_loop else None, flags=flags)  # fmt: skip
                    if pm and use_loop and flags:
                        adapt_s.append(time.perf_counter() - t1)
                    total, per = _summed(yte[test], pred[test])
                    res.setdefault(name, []).append(total)
                    per_target.setdefault(name, []).append(per)
        n_test = int(adaptation_splits(kernels, repeat=0, shots=0)[1].sum())
        split = (
            f"{tool}, {len(held)} held-out kernels, 30% holdout ({n_test} test designs), {repeats} repeats"
        )
        for name, totals in res.items():
            main = name == "zero-shot" or "," not in name
            k = int(name.split()[0]) if name != "zero-shot" else 0
            how = (
                "affine + pragma residual model with loop-nest features and unroll-regime flags"
                if k >= MIN_RESIDUAL_DESIGNS
                else f"affine + {FEW_DESIGN_NEIGHBOURS} nearest; pragma model from {MIN_RESIDUAL_DESIGNS}"
            )
            label = name if name == "zero-shot" or not main else f"{name} ({how})"
            report.add(f"summed RMSE, {label}" + ("" if name == "zero-shot" else " per kernel"), split,
                       float(np.mean(totals)), anchor=HLSYN_FLOOR[tool],
                       target=HLSYN_FLOOR[tool] / 2 if main else None,
                       anchor_source="target = half the published train-mean floor", n=n_test,
                       note=f"std over repeats {np.std(totals):.3f}" + ("" if main else "; variant, no target"))  # fmt: skip
        report.add("validity F1 (zero-shot classifier)", split, float(np.mean(f1s)), direction=">=",
                   n=int(adaptation_splits(ckernels, repeat=0, shots=0)[1].sum()))  # fmt: skip
        report.details[tool] = {
            "held_out_kernels": held,
            "selection": {
                "validation_kernels": val,
                "summed_rmse_20_designs_by_neighbours": val_rmse,
                "chosen_neighbours": chosen,
                "summed_rmse_20_designs_pragma_model": val_pragma,
            },  # fmt: skip
            "per_target_rmse_mean": {
                name: dict(zip(HLSYN_TARGETS, np.mean(v, axis=0).round(4).tolist(), strict=True))
                for name, v in per_target.items()
            },
            "summed_rmse_per_repeat": {name: [round(x, 4) for x in v] for name, v in res.items()},
            "validity_f1_per_repeat": [round(x, 4) for x in f1s],
            "tree_fit_predict_s": round(fit_s, 1),
            "adapt_all_kernels_ms_median": round(1000 * float(np.median(adapt_s)), 2),  # main method
        }
        if selection_study:
            methods = tuple(STUDY_METHODS) if study_all else DEFAULT_STUDY
            study = _selection_study(tr, gstats, graphs, max_iter, repeats, prior_designs, methods,
                                     cls.filter(~is_test) if study_all else None)  # fmt: skip
            report.details[tool]["selection_study_training_kernels"] = study
            click.echo(
                f"selection study, {tool} (training kernels, 3 groups; summed RMSE at k = {HLSYN_SHOTS}):"
            )
            for name, by_k in study.items():
                click.echo(f"  {name:32s} " + "  ".join(f"{v:.3f}" for v in by_k.values()))
    report.data["cpu_s"] = round(time.process_time() - cpu0, 1)
    log_bench(report)
    report.emit(json_path)
