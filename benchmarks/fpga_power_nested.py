"""Nested leave-one-kernel-out check of a feature choice of `hws bench fpga-power`.

For each held-out kernel, the candidate feature sets are scored by leave-one-kernel-out on the
other eight kernels only (dynamic-power MAPE, mean over kernels); the winner is then trained on
all eight and scored on the held-out kernel. The printed outer score is therefore free of any
choice made with the held-out kernel. Candidates (``--choice``): ``nest``: the features with and
without the loop-nest duty-cycle features (``nest_speed_spread``, ``nest_activity``,
``slow_nest_time_share``); ``target`` (hls stage): dynamic power fitted raw or per unit of the
switched-resource proxy (``log_hls_switched``); ``activity``: without or with the
activity-weighted aggregates (``POWERGEAR_ACTIVITY_FEATURES``), the latter also with dynamic
power fitted per unit of the activity-weighted proxy (``log_act_switched``).
A histogram GBT alone is used (the bench's ensemble would take ~5x longer here).

``--diagnose`` prints, for the HLS-stage features with the activity aggregates, where the
dynamic-power error lies instead: leave-one-kernel-out MAPE, the same after an oracle per-kernel
scale (each held-out kernel's median log error removed) and a random 5-fold split over all
designs (every kernel seen in training; not PowerGear's protocol, a ceiling of the features).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/fpga_power_nested.py [--stage hls|route]
[--choice nest|target|activity] [--diagnose]``
(reads the store; run ``hws data import hlsdataset`` first). ~300 GBT fits per stage.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import KFold

from hwsurrogate.benchmarks.fpga import powergear_rows
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.surrogates.features import powergear_features
from hwsurrogate.surrogates.training.metrics import mape

NEST = ("nest_speed_spread", "nest_activity", "slow_nest_time_share")


def _loko(x: np.ndarray, base: np.ndarray, dyn: np.ndarray, kernels: np.ndarray, train: np.ndarray,
          test: list[str]) -> np.ndarray:  # fmt: skip
    pred = np.full(len(dyn), np.nan)
    for k in test:
        te = kernels == k
        tr = train & ~te
        m = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=0)
        pred[te] = np.exp(m.fit(x[tr], np.log(dyn[tr] / base[tr])).predict(x[te])) * base[te]
    return pred


def _kernel_mape(y: np.ndarray, p: np.ndarray, kernels: np.ndarray, ks: list[str], ok: np.ndarray) -> float:
    return float(
        np.mean([mape(y[m], p[m]) for m in (ok & (kernels == k) for k in ks)])
    )


def _diagnose(x: np.ndarray, base: np.ndarray, dyn: np.ndarray, kernels: np.ndarray, ok: np.ndarray,
              ks: list[str]) -> None:  # fmt: skip
    loko = _loko(x, base, dyn, kernels, ok, ks)
    scaled = loko.copy()
    for k in ks:
        m = ok & (kernels == k)
        scaled[m] *= np.exp(np.median(np.log(dyn[m] / loko[m])))
    rand = np.full(len(dyn), np.nan)
    idx = np.flatnonzero(ok)
    for tr, te in KFold(5, shuffle=True, random_state=0).split(idx):
        tr, te = idx[tr], idx[te]
        m = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=0)
        rand[te] = np.exp(m.fit(x[tr], np.log(dyn[tr] / base[tr])).predict(x[te])) * base[te]
    for name, p in (("leave-one-kernel-out", loko), ("+ oracle per-kernel scale", scaled),
                    ("random 5-fold (not the protocol)", rand)):  # fmt: skip
        per = {k: round(_kernel_mape(dyn, p, kernels, [k], ok), 1) for k in ks}
        print(f"hls-activity dynamic MAPE, {name}: {np.mean(list(per.values())):.2f} %; {per}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("hls", "route"), action="append")
    ap.add_argument("--choice", choices=("nest", "target", "activity"), default="nest")
    ap.add_argument("--diagnose", action="store_true", help="print where the error lies (see above) and stop")
    args = ap.parse_args()
    board, hls, route = powergear_rows(DatasetStore())
    kernels = board["kernel"].to_numpy()
    ks = sorted(set(kernels.tolist()))
    dyn = board["power_dynamic_w"].cast(pl.Float64).fill_null(np.nan).to_numpy() * 1e3
    ok = np.isfinite(dyn) & (dyn > 0)
    if args.diagnose:
        fa = powergear_features(board, hls, activity=True)
        _diagnose(fa.to_numpy(), np.exp(fa["log_hls_switched"].to_numpy()), dyn, kernels, ok, ks)
        return
    for stage in args.stage or ["hls", "route"]:
        t0 = time.perf_counter()
        f = powergear_features(board, hls, route if stage == "route" else None)
        base = np.exp(f["log_vivado_dynamic_mw"].to_numpy()) if stage == "route" else None
        if args.choice == "activity":
            fa = powergear_features(board, hls, route if stage == "route" else None, activity=True)
            b = base if base is not None else np.exp(f["log_hls_switched"].to_numpy())
            cands = {"without": (f.to_numpy(), b), "with activity": (fa.to_numpy(), b)}
            if base is None:
                cands["with activity, per active switched"] = (
                    fa.to_numpy(),
                    np.exp(fa["log_act_switched"].to_numpy()),
                )
        elif args.choice == "nest":
            b = base if base is not None else np.exp(f["log_hls_switched"].to_numpy())
            cands = {"with nest features": (f.to_numpy(), b), "without": (f.drop(NEST).to_numpy(), b)}
        else:
            cands = {"raw": (f.to_numpy(), np.ones(board.height)),
                     "per switched": (f.to_numpy(), np.exp(f["log_hls_switched"].to_numpy()))}  # fmt: skip
        outer, picks = [], []
        for k in ks:
            inner = [c for c in ks if c != k]
            scores = {n: _kernel_mape(dyn, _loko(x, b, dyn, kernels, ok & (kernels != k), inner), kernels, inner, ok)
                      for n, (x, b) in cands.items()}  # fmt: skip
            pick = min(scores, key=scores.__getitem__)
            p = _loko(*cands[pick], dyn=dyn, kernels=kernels, train=ok, test=[k])
            outer.append(_kernel_mape(dyn, p, kernels, [k], ok))
            picks.append(pick)
            print(f"{stage} {k:8s} inner {({n: round(v, 2) for n, v in scores.items()})} -> {pick}: {outer[-1]:.2f}",
                  flush=True)  # fmt: skip
        print(f"{stage}: nested dynamic MAPE (mean over kernels) {np.mean(outer):.2f} %; picks {picks}; "
              f"{time.perf_counter() - t0:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
