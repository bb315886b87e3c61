"""``hws bench fewshot-live``: this machine as the unseen device, measured live."""

from __future__ import annotations

import time

import click
import numpy as np
import polars as pl

from hwsurrogate.benchmarks.fewshot import (
    bench_row,
    print_table,
    read_latency_rows,
    save_rows,
)
from hwsurrogate.benchmarks.report import store_option
from hwsurrogate.surrogates.fewshot import (
    FewShotLatencyRegressor,
    score_predictions,
)


# --------------------------------------------------------------------------- fewshot-live
@click.command("fewshot-live")
@click.option("--json", "json_path", default=None, help="Also write the results to this JSON file.")
@click.option(
    "--n-support", default=10, show_default=True, help="Random support archs besides the 10 references."
)
@click.option(
    "--n-test", default=200, show_default=True, help="Other NB201 archs measured here to score against."
)
@click.option("--repeats", default=20, show_default=True, help="Timed repeats per architecture.")
@click.option("--batch", default=1, show_default=True, help="Batch size of the measured forward pass.")
@click.option("--threads", default=1, show_default=True, help="CPU threads of the measured forward pass.")
@click.option(
    "--timer",
    type=click.Choice(["thread_cpu", "wall"]),
    default="thread_cpu",
    show_default=True,
    help="thread_cpu counts only this thread's CPU time (robust on a shared machine; needs --threads 1).",
)
@click.option(
    "--rounds", default=3, show_default=True, help="Passes over the arch list the repeats are split into."
)
@click.option("--seed", default=0, show_default=True)
@store_option
def bench_fewshot_live(json_path: str | None, n_support: int, n_test: int, repeats: int, batch: int, threads: int,
                       timer: str, rounds: int, seed: int, store_root: str | None) -> None:  # fmt: skip
    """This machine as the unseen device: measure refs + support archs, adapt, score on others."""
    from hwsurrogate.datasets.archspaces import HELP_REFERENCE_INDICES
    from hwsurrogate.datasets.collectors.dnn_latency import collect_latency

    t0 = time.perf_counter()
    from hwsurrogate.datasets.store import DatasetStore

    store = DatasetStore(store_root)
    sources = sorted(
        store.scan("latency", space="nb201")
        .select(pl.col("device_id").unique())
        .collect()["device_id"]
        .to_list()
    )
    sources = [s for s in sources if s.startswith(("help/", "latbench/"))]
    frame = read_latency_rows(store_root, "nb201", sources)
    model = FewShotLatencyRegressor().fit(frame, devices={"nb201": sources}, spaces=["nb201"])
    fit_s = time.perf_counter() - t0
    keys = frame.filter(pl.col("device_id") == "help/1080ti_1").sort("arch_index")["arch_key"].to_list()
    rng = np.random.default_rng(seed)
    refs = list(HELP_REFERENCE_INDICES["nb201"])
    rest = np.setdiff1d(np.arange(len(keys)), refs)
    picked = rng.choice(rest, size=n_support + n_test, replace=False)
    sup_idx = refs + picked[:n_support].tolist()
    test_idx = picked[n_support:].tolist()
    all_keys = [keys[i] for i in sup_idx + test_idx]
    t1 = time.perf_counter()
    measured = collect_latency(
        "nb201",
        all_keys,
        device="cpu",
        batch=batch,
        repeats=repeats,
        threads=threads,
        timer=timer,  # type: ignore[arg-type]
        rounds=rounds,
    )
    measure_s = time.perf_counter() - t1
    lat = dict(zip(measured["arch_key"].to_list(), measured["latency_ms"].to_list(), strict=True))
    sup_keys = [keys[i] for i in sup_idx]
    test_keys = [keys[i] for i in test_idx]
    t2 = time.perf_counter()
    head = model.adapt("nb201", sup_keys, np.array([lat[k] for k in sup_keys]))
    pred = model.predict(head, test_keys)
    adapt_s = time.perf_counter() - t2
    s = score_predictions(np.array([lat[k] for k in test_keys]), pred)
    n = len(sup_keys)
    rows = [
        bench_row("spearman", f"this CPU, nb201, {n} measurements", s["spearman"], None, 0.95, n_measurements=n, n_test=n_test),
        bench_row("mape_pct", f"this CPU, nb201, {n} measurements", s["mape"], None, 10.0, higher_is_better=False, n_measurements=n),
        bench_row("within_10pct", f"this CPU, nb201, {n} measurements", s["within_10pct"], None, None, n_measurements=n),
    ]  # fmt: skip
    wall = time.perf_counter() - t0
    print_table(f"few-shot latency on this machine (meta-train {fit_s:.0f} s, measure {measure_s:.0f} s, adapt {adapt_s * 1000:.0f} ms)", rows, wall)  # fmt: skip
    save_rows(json_path, "fewshot-live", rows, wall,
          {"info": {"sources": len(sources), "measure_s": measure_s, "adapt_s": adapt_s, "batch": batch, "repeats": repeats,
                    "threads": threads, "timer": timer, "rounds": rounds,
                    "note": "shared, noisy 2-core machine; latencies are medians of the repeats"}})  # fmt: skip


