"""Issue 15: what a prediction server's models hold in memory, step by step, in one process.

    python benchmarks/served_memory.py [--store DIR] [--path frozen|mlflow] [--json FILE]

Loads the registry's champions of gemm, latency and fpga-hls4ml as the server does (``frozen``:
their local copies, :func:`~hwsurrogate.surrogates.registry.cache.load_served`; ``mlflow``: the
MLflow pyfunc, :func:`~hwsurrogate.surrogates.registry.loading.load_predictor`), then answers a
1-row GEMM query, a 1-architecture latency query on every (device, space) of the store's latency
table (one tree model each), and a 1,000-row batch of each, reading the process's resident
memory (``/proc/self/status`` VmRSS, after ``gc.collect()``) after each step. The queries come
from the store's own rows. Needs a registry with those champions (``MLFLOW_TRACKING_URI``) and
the store they were trained on (``--store`` or ``$HWSURROGATE_STORE``). Not a timed test: the
numbers are what ``docs/store.md`` quotes.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import click

from hwsurrogate.benchmarks.report import BenchReport, json_option

BENCHMARK = "served-memory"


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise click.ClickException("no VmRSS in /proc/self/status: this benchmark needs Linux")


def _queries(root: str) -> tuple[Any, Any, Any]:
    """One latency query per (device, space) of the store, 1,000 GEMM rows, 1,000 latency rows."""
    import polars as pl

    from hwsurrogate.datasets.store import DatasetStore

    store = DatasetStore(root)
    lat = (
        store.scan("latency").group_by("device_id", "space").agg(pl.col("arch_key").first())
        .sort("device_id", "space").collect()
    )  # fmt: skip
    gemm = store.scan("gemm").select("device_id", "op", "m", "n", "k", "batch", "dtype", "layout").head(1000)
    first = (pl.col("device_id") == lat["device_id"][0]) & (pl.col("space") == lat["space"][0])
    big_lat = store.scan("latency").filter(first).select("device_id", "space", "arch_key").head(1000)
    return lat, gemm.collect(), big_lat.collect()


@click.command(BENCHMARK)
@click.option("--store", "store_root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Store the champions were trained on (default: $HWSURROGATE_STORE).")  # fmt: skip
@click.option("--path", "load_path", type=click.Choice(["frozen", "mlflow"]), default="frozen", show_default=True,
              help="How the models are loaded: the server's local frozen copies, or MLflow's pyfunc.")  # fmt: skip
@json_option(BENCHMARK)
def bench_served_memory(store_root: Path | None, load_path: str, json_path: str | None) -> None:
    """Resident memory after loading the served models and after answering with them."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from hwsurrogate.datasets.store import DatasetStore

    store = DatasetStore(store_root)
    os.environ["HWSURROGATE_STORE"] = str(store.root)
    # the queries are read in a child process: scanning the store's tables here would leave
    # allocator memory that hides what the models take
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        lat, gemm, big_lat = pool.submit(_queries, str(store.root)).result()
    report = BenchReport(
        BENCHMARK,
        protocol=f"one process; models loaded through the {load_path} path; VmRSS after gc.collect() at each step; "
        f"queries from the store's rows ({lat.height} latency device/space models)",
    )
    report.data = {"store": str(store.root), "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    gc.collect()
    report.add("RSS MB", "start (polars, the store's query rows)", round(_rss_mb(), 1))
    if load_path == "frozen":
        from hwsurrogate.surrogates.registry.cache import load_served as load
    else:
        from hwsurrogate.surrogates.registry.loading import load_predictor as load
    models = {task: load(task) for task in ("gemm", "latency", "fpga-hls4ml")}
    gc.collect()
    report.add("RSS MB", "gemm, latency, fpga-hls4ml loaded", round(_rss_mb(), 1))
    models["gemm"].predict(gemm.head(1))
    for i in range(lat.height):
        models["latency"].predict(lat.slice(i, 1).select("device_id", "space", "arch_key"))
    gc.collect()
    report.add(
        "RSS MB", f"+ 1-row gemm and 1-row latency on each of {lat.height} models", round(_rss_mb(), 1)
    )
    models["gemm"].predict(gemm)
    models["latency"].predict(big_lat)
    gc.collect()
    report.add(
        "RSS MB", f"+ a {gemm.height}-row gemm and a {big_lat.height}-row latency batch", round(_rss_mb(), 1)
    )
    import sys

    report.details = {
        "imported": {m: m in sys.modules for m in ("mlflow", "sklearn", "pandas", "scipy", "treelite")}
    }
    report.emit(json_path)


if __name__ == "__main__":
    bench_served_memory()
