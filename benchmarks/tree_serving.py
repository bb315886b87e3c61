"""Tree serving: treelite's GTIL against scikit-learn on the served tree models, and the batch threshold.

Measures on this machine, with models fitted here on the public data ($HWSURROGATE_DATA_DIR):

1. per fitted tree model (GEMM runtime, GEMM power, one NB201 latency device, one hls4ml
   target): the cost of ``model.predict`` (scikit-learn), ``treelite.gtil.predict`` (one
   thread) and the model's tl2cgen-compiled library (``surrogates/models/compiled_trees.py``,
   built here before timing, or found in the cache by the model's hash) on batches of
   1 .. 1024 feature rows, and the crossovers: the largest batch size up to which GTIL
   (compiled) is faster than scikit-learn on one thread on every size. ``SMALL_BATCH_ROWS`` and
   ``COMPILED_BATCH_ROWS`` in ``surrogates/models/tree_serving.py`` are set from the GEMM
   models' crossovers. The one-thread candidates are timed in alternation (one call of each per
   round), so a burst of load from other jobs on the shared machine hits all of them alike.
2. in-process one-query cost per task through the model's own predict path (features included):
   as served now (compiled trees below the threshold), the same with compiled trees off (GTIL),
   through the frozen form a one-off ``hws predict`` unpickles (``surrogates/models/frozen.py``:
   treelite checkpoints, no scikit-learn), scikit-learn only (thresholds 0), and for GEMM the
   numpy packed-tree walker served before treelite (``fast_trees.py`` read from git at
   ``--before-rev``); for GEMM also where the one query's time goes, stage by stage.
3. GEMM batches of 10,000 and ``--big-rows`` rows (default 1,000,000) now and before.

Needs tl2cgen and a C compiler for the compiled columns (``pip install -e '.[compiled]'``);
without them those columns are left out and the run says so.

    python benchmarks/tree_serving.py                       # ~4 minutes on 2 cores
    python benchmarks/tree_serving.py --big-rows 200000     # reduced
The JSON goes to bench-results/tree-serving.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128, 256, 512, 1024)
BEFORE_REV = "284899c"  # the last commit serving GEMM through surrogates/models/fast_trees.py


def timed_ms(fn: Callable[[], object], *, budget_s: float = 0.4, min_runs: int = 5) -> float:
    """Median wall time of ``fn`` in ms over ``min_runs`` runs or ``budget_s`` seconds (after a warm-up)."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 2000:
            break
    return statistics.median(times) * 1e3


def timed_together(
    fns: dict[str, Callable[[], object]], *, budget_s: float = 1.2, min_runs: int = 5
) -> dict[str, float]:
    """Median wall time in ms of each function, timed in alternation (one call of each per round,
    after a warm-up round) so that a burst of load from other jobs hits them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < min_runs or (time.perf_counter() - start < budget_s and rounds < 2000):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
        rounds += 1
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def before_predict_hgb(rev: str) -> Callable[..., np.ndarray] | None:
    """``predict_hgb`` of the removed numpy walker at ``rev`` (None where git or the rev is missing)."""
    try:
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:surrogates/models/fast_trees.py"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("fast_trees_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(src, f"{rev}:fast_trees.py", "exec"), module.__dict__)
    return module.predict_hgb


def compile_trees(model: Any) -> dict | None:
    """Build ``model``'s compiled library now (or find it cached by its hash): its build record,
    with ``cached`` true where it was already built; None where it cannot be built here."""
    from hwsurrogate.surrogates.models import compiled_trees
    from hwsurrogate.surrogates.models.tree_serving import TreeRunner, to_treelite

    if compiled_trees.missing_builder() is not None:
        return None
    runner = TreeRunner(to_treelite(model))
    cached = compiled_trees.load(runner.key) is not None
    lib = compiled_trees.build_in_subprocess(runner.checkpoint, runner.key) if not cached else None
    root = compiled_trees.cache_root() / runner.key
    meta = json.loads((root / "build.json").read_text()) | {"cached": cached}
    assert lib is None or lib.parent == root
    return meta


def compiled_of(model: Any) -> Any:
    """The loaded compiled library of ``model`` (None where not built)."""
    from hwsurrogate.surrogates.models import compiled_trees
    from hwsurrogate.surrogates.models.tree_serving import to_treelite

    return compiled_trees.ready(compiled_trees.model_key(to_treelite(model).serialize_bytes()))


def model_costs(name: str, model: Any, x: np.ndarray, before: Callable[..., np.ndarray] | None) -> dict:
    """scikit-learn vs treelite GTIL vs compiled (and the old walker) per batch size on one model."""
    import treelite.gtil

    from hwsurrogate.surrogates.models.tree_serving import to_treelite

    t0 = time.perf_counter()
    tl = to_treelite(model)
    import_ms = (time.perf_counter() - t0) * 1e3
    build = compile_trees(model)
    compiled = compiled_of(model) if build is not None else None
    worst_rel = worst_rel_compiled = 0.0
    rows = []
    for n in BATCHES:
        if n > len(x):
            break
        q = np.ascontiguousarray(x[:n])
        ref = model.predict(q)
        got = treelite.gtil.predict(tl, q, nthread=1).reshape(n)
        worst_rel = max(worst_rel, float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300))))
        row = {"rows": n, "sklearn_ms": round(timed_ms(lambda q=q: model.predict(q)), 4)}
        one_thread = {
            "treelite_ms": lambda q=q: treelite.gtil.predict(tl, q, nthread=1),
            "sklearn_1thread_ms": lambda q=q: model.predict(q),
        }
        if compiled is not None:
            got = compiled.predict(q)
            worst_rel_compiled = max(
                worst_rel_compiled, float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)))
            )
            one_thread["compiled_ms"] = lambda q=q: compiled.predict(q)
        with threadpool_limits(limits=1, user_api="openmp"):  # as the service runs small calls
            row |= {k: round(v, 4) for k, v in timed_together(one_thread).items()}
        if before is not None:
            row["numpy_walker_before_ms"] = round(timed_ms(lambda q=q: before(model, q)), 4)
        rows.append(row)
    crossover = {}
    for fast, key in (("treelite_ms", "sklearn_ms"), ("treelite_ms", "sklearn_1thread_ms"),
                      ("compiled_ms", "sklearn_1thread_ms")):  # fmt: skip
        crossover[fast, key] = 0
        for r in rows:
            if fast not in r or r[fast] >= r[key]:
                break
            crossover[fast, key] = r["rows"]
    n_trees = (
        sum(len(it) for it in model._predictors) if hasattr(model, "_predictors") else len(model.estimators_)
    )
    print(f"{name}: {n_trees} trees, one row sklearn {rows[0]['sklearn_1thread_ms']} ms, treelite "
          f"{rows[0]['treelite_ms']} ms, compiled {rows[0].get('compiled_ms')} ms; faster than sklearn "
          f"up to {list(crossover.values())} rows", flush=True)  # fmt: skip
    return {"model": name, "trees": n_trees, "treelite_import_ms": round(import_ms, 1),
            "max_relative_difference": worst_rel, "crossover_rows": crossover["treelite_ms", "sklearn_1thread_ms"],
            "crossover_rows_sklearn_all_threads": crossover["treelite_ms", "sklearn_ms"],
            "compiled": build, "max_relative_difference_compiled": worst_rel_compiled if compiled else None,
            "compiled_crossover_rows": crossover["compiled_ms", "sklearn_1thread_ms"] if compiled else None,
            "batches": rows}  # fmt: skip


class sklearn_only:  # noqa: N801 - a context manager, named as the others
    """Context: every tree model answers through scikit-learn (both thresholds set to 0)."""

    def __enter__(self) -> None:
        from hwsurrogate.surrogates.models import tree_serving

        self.patches = [
            mock.patch.object(tree_serving, name, 0) for name in ("SMALL_BATCH_ROWS", "COMPILED_BATCH_ROWS")
        ]
        for p in self.patches:
            p.start()

    def __exit__(self, *exc: object) -> None:
        for p in self.patches:
            p.stop()


def gtil_only(*holders: Any) -> Any:
    """Context: compiled trees off (``HWSURROGATE_COMPILED_TREES=0``), the holders' tree caches
    dropped on entry and on exit (so GTIL answers, then the compiled trees again)."""
    from contextlib import contextmanager

    from hwsurrogate.surrogates.models.tree_serving import CACHE_ATTR

    @contextmanager
    def ctx() -> Any:
        for h in holders:
            vars(h).pop(CACHE_ATTR, None)
        with mock.patch.dict(os.environ, {"HWSURROGATE_COMPILED_TREES": "0"}):
            yield
        for h in holders:
            vars(h).pop(CACHE_ATTR, None)

    return ctx()


def gemm_breakdown(gemm: Any, one: pl.DataFrame) -> dict[str, float]:
    """Where one GEMM query's time goes in ``GemmPyfunc.predict_frame`` (served path), stage by
    stage, each timed alone (so the stages sum to about the total, not exactly). The served path
    builds one feature matrix for both models and, with both compiled, calls both models' trees
    at once (``compiled_trees.predict_together``); each model's own call is timed too."""
    from hwsurrogate.surrogates.features.gemm import gemm_query_arrays
    from hwsurrogate.surrogates.models.compiled_trees import predict_together
    from hwsurrogate.surrogates.models.gemm_serving import as_polars, output_frame

    arrays = gemm_query_arrays(as_polars(one))
    ids = arrays["device_id"]
    cols = gemm.runtime._feature_columns(arrays)
    x, roof = gemm.runtime._features_of(cols, ids)
    runtime = gemm.runtime._values(x, roof)
    power = gemm.power._values(x, roof)
    libs = (gemm.runtime._compiled_for(1), gemm.power._compiled_for(1))
    out = {
        "query_checks_ms": one_query(lambda: gemm_query_arrays(as_polars(one))),
        "feature_columns_ms": one_query(lambda: gemm.runtime._feature_columns(arrays)),
        "feature_matrix_ms": one_query(lambda: gemm.runtime._features_of(cols, ids)),
        "runtime_trees_ms": one_query(lambda: gemm.runtime.predict_trees(gemm.runtime.model_, x)),
        "power_trees_ms": one_query(lambda: gemm.power.predict_trees(gemm.power.model_, x)),
        "exp_and_roofline_ms (x2)": one_query(lambda: np.exp(runtime) * roof),
        "output_frame_ms": one_query(lambda: output_frame(runtime, power)),
        "total_ms": one_query(lambda: gemm.predict_frame(one)),
    }  # fmt: skip
    if None not in libs:  # the call the served path makes (compiled trees of both models)
        out["runtime_and_power_trees_together_ms"] = one_query(lambda: predict_together(libs, x))
    return out


def gemm_models(data: Path, store_dir: Path) -> tuple[Any, pl.DataFrame]:
    from hwsurrogate.datasets.importers import import_source
    from hwsurrogate.datasets.store import DatasetStore
    from hwsurrogate.surrogates.training.gemm import GemmTrainConfig, fit_gemm, load_gemm_frame

    ds = DatasetStore(store_dir)
    import_source("gpperf", data / "gemm" / "gpperf_rtx4070", store=ds)
    config = GemmTrainConfig(register=False)
    frame, devices = load_gemm_frame(ds, config)
    return fit_gemm(frame, devices, config), frame


def gemm_queries(frame: pl.DataFrame, n: int, seed: int = 1) -> pl.DataFrame:
    """``n`` queries on the trained device, shapes drawn from the trained range."""
    rng = np.random.default_rng(seed)
    dims = (2 ** rng.uniform(9, 13, size=(n, 3))).astype(np.int64)
    return pl.DataFrame({
        "device_id": [str(frame["device_id"][0])] * n, "op": ["gemm"] * n,
        "m": dims[:, 0], "n": dims[:, 1], "k": dims[:, 2], "batch": np.ones(n, dtype=np.int64),
        "dtype": ["fp32"] * n, "layout": rng.choice(["nn", "nt", "tn", "tt"], n).tolist(),
    })  # fmt: skip


def latency_models(data: Path, store_dir: Path, n_devices: int = 3) -> tuple[Any, list[str], list[str]]:
    from hwsurrogate.datasets.importers import import_source
    from hwsurrogate.datasets.store import DatasetStore
    from hwsurrogate.surrogates.models.latency_trees import MultiDeviceLatencyTrees

    ds = DatasetStore(store_dir)
    import_source("help", data / "latency" / "help", store=ds)
    frame = ds.read("latency").filter(pl.col("space") == "nb201")
    devices = sorted(frame["device_id"].unique().to_list())[:n_devices]
    per_device = {}
    for d in devices:
        rows = frame.filter(pl.col("device_id") == d).sort("arch_key").head(4000)
        per_device[d] = (rows["arch_key"].to_list(), rows["latency_ms"].to_numpy())
    keys = frame.filter(pl.col("device_id") == devices[0])["arch_key"].to_list()[-300:]
    return MultiDeviceLatencyTrees("nb201").fit(per_device), devices, keys


def hls4ml_model(data: Path, store_dir: Path) -> tuple[Any, pl.DataFrame]:
    from hwsurrogate.datasets.importers import import_source
    from hwsurrogate.datasets.store import DatasetStore
    from hwsurrogate.surrogates.models.fpga import HLS4ML_TARGETS, FpgaPyfunc, FpgaRegressor

    ds = DatasetStore(store_dir)
    import_source("wa-hls4ml", data / "fpga" / "wa-hls4ml", store=ds)
    frame = ds.read("fpga").filter((pl.col("domain") == "hls4ml") & pl.col("lut").is_not_null())
    reg = FpgaRegressor(kind="hls4ml", targets=HLS4ML_TARGETS, max_iter=300).fit(
        frame, frame.select(HLS4ML_TARGETS)
    )
    return FpgaPyfunc("fpga-hls4ml", reg), frame


def one_query(fn: Callable[[], object]) -> float:
    return round(timed_ms(fn, budget_s=1.0, min_runs=20), 4)


def frozen_one_query(task: str, model: Any, call: Callable[[Any], object]) -> float:
    """:func:`one_query` of ``call`` on the frozen form of ``model`` (pickled and read back, as served)."""
    import pickle

    from hwsurrogate.surrogates.models.frozen import freeze

    frozen = pickle.loads(pickle.dumps(freeze(task, model))).frozen
    return one_query(lambda: call(frozen))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--big-rows", type=int, default=1_000_000, help="rows of the large GEMM batch")
    ap.add_argument("--before-rev", default=BEFORE_REV, help="git revision holding fast_trees.py")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "tree-serving.json")
    args = ap.parse_args()
    data = Path(os.environ.get("HWSURROGATE_DATA_DIR", ROOT.parent / "shared" / "data"))
    t_start = time.perf_counter()
    load_before = os.getloadavg()
    from hwsurrogate.surrogates.models.gemm import GemmRegressor
    from hwsurrogate.surrogates.models.tree_serving import COMPILED_BATCH_ROWS, SMALL_BATCH_ROWS

    before = before_predict_hgb(args.before_rev)
    # the old walker answers every batch: the trees' call and no compiled trees for the pair call
    walker = mock.patch.multiple(
        GemmRegressor, predict_trees=lambda self, m, x: before(m, x), _compiled_for=lambda self, rows: None
    )
    per_model, per_task, batches = [], [], []
    with tempfile.TemporaryDirectory(prefix="hws-bench-trees-") as tmp:
        gemm, frame = gemm_models(data, Path(tmp) / "gemm")
        q = gemm_queries(frame, 1024)
        x, _ = gemm.runtime._features(q)
        per_model.append(model_costs("gemm runtime (HistGradientBoosting)", gemm.runtime.model_, x, before))
        per_model.append(model_costs("gemm power (HistGradientBoosting)", gemm.power.model_, x, before))
        one = q.head(1)
        task = {"task": "gemm", "what": "GemmPyfunc.predict_frame, 1 query: features + runtime + power trees"}
        with gtil_only(gemm.runtime, gemm.power):
            task["served_gtil_ms"] = one_query(lambda: gemm.predict_frame(one))
            task["frozen_gtil_ms"] = frozen_one_query("gemm", gemm, lambda m: m.predict_frame(one))
        task["served_ms"] = one_query(lambda: gemm.predict_frame(one))
        task["frozen_ms"] = frozen_one_query("gemm", gemm, lambda m: m.predict_frame(one))
        task["compiled"] = (
            compiled_of(gemm.runtime.model_) is not None and compiled_of(gemm.power.model_) is not None
        )
        breakdown = gemm_breakdown(gemm, one)
        print(json.dumps(breakdown), flush=True)
        with sklearn_only():
            task["sklearn_only_ms"] = one_query(lambda: gemm.predict_frame(one))
        if before is not None:
            with walker:
                task["before_numpy_walker_ms"] = one_query(lambda: gemm.predict_frame(one))
        per_task.append(task)
        print(json.dumps(task), flush=True)
        for n, repeats in ((10_000, 5), (args.big_rows, 2)):
            big = gemm_queries(frame, n, seed=5)
            gemm.predict_frame(big.head(1000))  # warm
            served, old = [], []
            for _ in range(repeats):  # alternated: the shared machine's load hits both alike
                t0 = time.perf_counter()
                gemm.predict_frame(big)
                served.append((time.perf_counter() - t0) * 1e3)
                if before is not None:
                    with walker:
                        t0 = time.perf_counter()
                        gemm.predict_frame(big)
                        old.append((time.perf_counter() - t0) * 1e3)
            row = {"rows": n, "repeats": repeats, "served_ms": round(min(served), 1),
                   "served_ms_median": round(statistics.median(served), 1)}  # fmt: skip
            if old:
                row |= {"before_ms": round(min(old), 1), "before_ms_median": round(statistics.median(old), 1)}
            batches.append(row)
            print(json.dumps(row), flush=True)

        latency, devices, keys = latency_models(data, Path(tmp) / "latency")
        lat_model = latency.models_[devices[0]]
        from hwsurrogate.surrogates.features import nas
        from hwsurrogate.surrogates.registry.loading import LatencyModels

        xl = nas.arch_vectors("nb201", keys)
        xl = np.resize(xl, (max(BATCHES), xl.shape[1]))  # rows repeat
        per_model.append(
            model_costs(f"latency nb201 {devices[0]} (HistGradientBoosting)", lat_model.regressor_, xl, None)
        )
        task = {
            "task": "latency (trees)",
            "what": "MultiDeviceLatencyTrees.predict, 1 NB201 arch on 1 device",
        }
        frozen_latency = LatencyModels({"nb201": latency})
        with gtil_only(*latency.models_.values()):
            task["served_gtil_ms"] = one_query(lambda: latency.predict(keys[:1], devices[:1]))
            task["frozen_gtil_ms"] = frozen_one_query("latency", frozen_latency,
                                                      lambda m: m.models["nb201"].predict(keys[:1], devices[:1]))  # fmt: skip
        for m in latency.models_.values():
            compile_trees(m.regressor_)
        task["served_ms"] = one_query(lambda: latency.predict(keys[:1], devices[:1]))
        task["frozen_ms"] = frozen_one_query("latency", frozen_latency,
                                             lambda m: m.models["nb201"].predict(keys[:1], devices[:1]))  # fmt: skip
        task["compiled"] = compiled_of(lat_model.regressor_) is not None
        with sklearn_only():
            task["sklearn_only_ms"] = one_query(lambda: latency.predict(keys[:1], devices[:1]))
        per_task.append(task)
        print(json.dumps(task), flush=True)

        fpga, fframe = hls4ml_model(data, Path(tmp) / "fpga")
        xf = np.resize(
            fpga.regressor._features(fframe), (max(BATCHES), fpga.regressor.n_features_in_)
        )  # rows repeat
        per_model.append(
            model_costs("fpga-hls4ml lut (HistGradientBoosting)", fpga.regressor.models_["lut"], xf, None)
        )
        fone = fframe.head(1)
        task = {
            "task": "fpga-hls4ml",
            "what": "FpgaPyfunc.predict_frame, 1 design: features + 6 target trees",
        }
        with gtil_only(fpga.regressor):
            task["served_gtil_ms"] = one_query(lambda: fpga.predict_frame(fone))
            task["frozen_gtil_ms"] = frozen_one_query("fpga-hls4ml", fpga, lambda m: m.predict_frame(fone))
        for m in fpga.regressor.models_.values():
            if m is not None:
                compile_trees(m)
        task["served_ms"] = one_query(lambda: fpga.predict_frame(fone))
        task["frozen_ms"] = frozen_one_query("fpga-hls4ml", fpga, lambda m: m.predict_frame(fone))
        task["compiled"] = all(
            compiled_of(m) is not None for m in fpga.regressor.models_.values() if m is not None
        )
        with sklearn_only():
            task["sklearn_only_ms"] = one_query(lambda: fpga.predict_frame(fone))
        per_task.append(task)
        print(json.dumps(task), flush=True)

    gemm_models_ = per_model[:2]
    trees_gtil = sum(m["batches"][0]["treelite_ms"] for m in gemm_models_)
    trees_sklearn = sum(m["batches"][0]["sklearn_1thread_ms"] for m in gemm_models_)
    compiled_ok = all("compiled_ms" in m["batches"][0] for m in gemm_models_)
    trees_compiled = sum(m["batches"][0]["compiled_ms"] for m in gemm_models_) if compiled_ok else None
    gemm_crossover = min(m["crossover_rows"] for m in gemm_models_)
    compiled_crossover = min(m["compiled_crossover_rows"] for m in gemm_models_) if compiled_ok else None
    result: dict[str, Any] = {
        "benchmark": "tree_serving",
        "command": "python benchmarks/tree_serving.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": [round(v, 2) for v in load_before],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        },  # fmt: skip
        "small_batch_rows_in_code": SMALL_BATCH_ROWS,
        "compiled_batch_rows_in_code": COMPILED_BATCH_ROWS,
        "gemm_crossover_rows": gemm_crossover,
        "gemm_compiled_crossover_rows": compiled_crossover,
        "gemm_one_query_breakdown": breakdown,
        "per_model": per_model,
        "per_task_one_query": per_task,
        "gemm_batches": batches,
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    g = per_task[0]
    result["rows"] = [
        {"metric": "GEMM one query in-process ms (served)", "split": "features + runtime + power, compiled trees",
         "ours": g["served_ms"], "anchor": g["served_gtil_ms"], "target": 0.1, "direction": "<=",
         "met": g["served_ms"] <= 0.1, "note": "anchor: the same with compiled trees off (GTIL)"},
        {"metric": "GEMM one query in-process ms (frozen copy)", "split": "features + runtime + power, no scikit-learn",
         "ours": g["frozen_ms"], "anchor": g["frozen_gtil_ms"], "target": 0.1, "direction": "<=",
         "met": g["frozen_ms"] <= 0.1, "note": "anchor: the same with compiled trees off (GTIL)"},
        {"metric": "GEMM one query, runtime + power trees ms (compiled)", "split": "1 row, trees only",
         "ours": trees_compiled, "anchor": round(trees_gtil, 4), "target": 0.1, "direction": "<=",
         "met": None if trees_compiled is None else trees_compiled <= 0.1, "note": "anchor: treelite GTIL, 1 thread"},
        {"metric": "GEMM one query, runtime + power trees ms (scikit-learn)", "split": "1 row, trees only, 1 thread",
         "ours": round(trees_sklearn, 4), "anchor": None, "target": None, "direction": "<=", "met": None,
         "note": "scikit-learn's own one-row cost on the same models"},
        *({"metric": f"GEMM one query breakdown: {stage}", "split": "served path, each stage timed alone",
           "ours": ms, "anchor": None, "target": None, "direction": "<=", "met": None}
          for stage, ms in breakdown.items() if stage != "total_ms"),
        {"metric": "GEMM one query in-process ms (sklearn only)", "split": "features + runtime + power",
         "ours": g["sklearn_only_ms"], "anchor": g.get("before_numpy_walker_ms"), "target": None, "direction": "<=",
         "met": None, "note": "anchor: the numpy tree walker served before treelite"},
        *({"metric": f"{t['task']} one query in-process ms (served)", "split": t["what"], "ours": t["served_ms"],
           "anchor": t["served_gtil_ms"], "target": None, "direction": "<=", "met": None,
           "note": f"anchor: compiled trees off (GTIL); scikit-learn only: {t['sklearn_only_ms']}"}
          for t in per_task[1:]),
        *({"metric": f"{t['task']} one query in-process ms (frozen copy)", "split": t["what"], "ours": t["frozen_ms"],
           "anchor": t["frozen_gtil_ms"], "target": None, "direction": "<=", "met": None,
           "note": "anchor: compiled trees off (GTIL)"} for t in per_task[1:]),
        {"metric": "treelite GTIL faster than scikit-learn up to rows", "split": "GEMM runtime and power, sklearn 1 thread",
         "ours": gemm_crossover, "anchor": None, "target": None, "direction": ">=", "met": None,
         "note": f"SMALL_BATCH_ROWS in the code during this run: {SMALL_BATCH_ROWS}"},
        {"metric": "compiled trees faster than scikit-learn up to rows", "split": "GEMM runtime and power, sklearn 1 thread",
         "ours": compiled_crossover, "anchor": None, "target": None, "direction": ">=", "met": None,
         "note": f"COMPILED_BATCH_ROWS in the code during this run: {COMPILED_BATCH_ROWS}"},
        *({"metric": f"GEMM {b['rows']:,}-row batch ms", "split": f"predict_frame, best of {b['repeats']}, served vs before",
           "ours": b["served_ms"], "anchor": b.get("before_ms"), "target": b.get("before_ms"), "direction": "<=",
           "met": None if "before_ms" not in b else b["served_ms"] <= 1.1 * b["before_ms"],
           "note": "met: within 10% of before (same scikit-learn path; the rest is noise)"} for b in batches),
    ]  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for r in result["rows"]:
        print(f"{r['metric']:<58}{r['ours']!s:>10}  anchor {r['anchor']!s:>10}")
    print(f"wall {result['wall_s']} s; wrote {args.out}")


if __name__ == "__main__":
    main()
