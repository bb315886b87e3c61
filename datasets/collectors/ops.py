"""``hws collect ops``: time the operator kinds of the operator table on this CPU; and whole models.

The command is in :mod:`hwsurrogate.cli.collect`; this module measures and returns rows.

:func:`sweep_ops` draws operator shapes (log-uniform, seeded) for every op kind of
:mod:`hwsurrogate.datasets.optable`: linear, bmm, conv2d (dense and depthwise), elementwise
(add, mul, batch_norm), activations, softmax, layer_norm, embedding, reductions (mean, pooling),
copies (transpose + contiguous, cat) and ``other`` (views: the framework's per-call cost).
:func:`collect_ops` runs each one with torch in eager mode under ``torch.inference_mode`` on
real tensors, timed by :mod:`.timing` (warm-up, calibrated calls per sample, median), and
returns ``ops`` rows and one ``devices`` row for the device.

Device id: ``local/<host>-cpu-t<threads>``: the thread count is part of the device, since one
core and all cores are different machines to a latency model. The device row's roofline
descriptors come from this collection itself: ``peak_fp32_gflops`` is the best GFLOP/s of the
linear rows, ``mem_bw_gbs`` the best GB/s of the large elementwise rows (recorded in
``descriptors`` as measured, not published).

:func:`collect_model_latency` times whole ``nn.Module`` forwards (``model_latency`` rows): the
ground truth a whole-model prediction is scored against. :func:`collect_inplace_ops` times each
operator *inside* such a forward (``ops`` rows with ``model`` and ``name`` set, as a trace's rows):
the model-context rows the operator model takes its context factors from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.datasets.collectors import environment as envmod
from hwsurrogate.datasets.collectors.environment import Environment, capture_environment, local_device_id
from hwsurrogate.datasets.collectors.timing import check_timing_options, cpu_sampler, host_clock, measure
from hwsurrogate.datasets.optable import op_table
from hwsurrogate.datasets.schemas import conform
from hwsurrogate.errors import CollectorError
from hwsurrogate.progress import track

__all__ = [
    "MODEL_SOURCE",
    "SOURCE",
    "ModelCase",
    "OpsCollection",
    "collect_inplace_ops",
    "collect_model_latency",
    "calibration_cases",
    "collect_ops",
    "inplace_op_times",
    "merge_collections",
    "ops_device_id",
    "sweep_ops",
]

SOURCE = "collector:ops"
MODEL_SOURCE = "collector:model_latency"

#: op kind -> default number of shapes drawn by :func:`sweep_ops`
#: (conv2d 90 -> 170, reduction 30 -> 45: on 90 conv shapes the operator model missed small CPU convs
#: by 3-8x; see docs/wholemodel.md, "model-live: where the error comes from")
DEFAULT_COUNTS: dict[str, int] = {
    "linear": 220, "bmm": 80, "conv2d": 170, "elementwise": 50, "activation": 36, "softmax": 16,
    "layernorm": 16, "embedding": 8, "reduction": 45, "copy": 20, "other": 14,
}  # fmt: skip
#: a sweep conv2d above this many FLOPs gets a smaller batch: bigger ones take seconds to time on one
#: core and are far beyond the CNNs this sweep is for
_CONV_MAX_FLOPS = 3e9
_ACTS = ("relu", "gelu", "silu", "sigmoid", "tanh", "hardswish", "relu6")
_VIEWS = ("view", "transpose", "reshape", "flatten", "permute", "unsqueeze", "getitem")


def ops_device_id(threads: int) -> str:
    """``local/<host>-cpu-t<threads>``: this CPU at a thread count (a different count, a different device)."""
    return f"{local_device_id('cpu')}-t{threads}"


def _logu(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(np.clip(round(math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))), lo, hi))


def sweep_ops(counts: dict[str, int] | None = None, *, seed: int = 0, scale: float = 1.0) -> pl.DataFrame:
    """Operator shapes to time: an operator table of forward rows (``counts`` per op kind).

    ``scale`` multiplies every count (0.25 for a quick smoke run). Shapes cover what small and
    mid-sized CNNs, MLPs and transformers run on a CPU (GEMM dims 1..4096, conv inputs 4..112 px,
    vector ops 64..4M elements). GEMMs get the most rows: they carry most of a model's time and
    their efficiency varies most with shape.
    """
    want = dict(DEFAULT_COUNTS)
    if counts:
        unknown = sorted(set(counts) - set(want))
        if unknown:
            raise CollectorError(f"counts: unknown op kind(s) {unknown}; expected {sorted(want)}")
        want.update(counts)
    if not (isinstance(scale, (int, float)) and scale > 0):
        raise CollectorError(f"scale must be > 0, got {scale!r}")
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []

    def n_of(kind: str) -> int:
        return max(1, round(want[kind] * scale)) if want[kind] > 0 else 0

    def vec(kind: str, op: str, inputs: int = 1, lo: int = 64, hi: int = 1 << 22) -> dict[str, Any]:
        numel = _logu(rng, lo, hi)
        cols = int(rng.choice([8, 16, 32, 49, 64, 128, 196, 256, 384, 512, 768, 1024, 3072]))
        return {"op_kind": kind, "op": op, "rows": max(1, numel // cols), "cols": cols, "inputs": inputs}

    for _ in range(n_of("linear")):
        rows.append({"op_kind": "linear", "op": "linear", "batch": 1, "m": _logu(rng, 1, 8192),
                     "n": _logu(rng, 8, 4096), "k": _logu(rng, 8, 4096)})  # fmt: skip
    for _ in range(n_of("bmm")):
        rows.append({"op_kind": "bmm", "op": "matmul", "batch": _logu(rng, 1, 64), "m": _logu(rng, 8, 512),
                     "n": _logu(rng, 8, 512), "k": _logu(rng, 8, 256)})  # fmt: skip
    for i in range(n_of("conv2d")):
        k = int(rng.choice([1, 3, 3, 5, 7]) if i % 3 else rng.choice([1, 3]))
        size = _logu(rng, max(4, k), 112)
        depthwise = i % 4 == 3
        c_out = _logu(rng, 8, 512)
        batch, stride = _logu(rng, 1, 16), int(rng.choice([1, 1, 2]))
        c_in = 1 if depthwise else _logu(rng, 3, 512)
        out = (size + 2 * (k // 2) - k) // stride + 1
        while batch > 1 and 2.0 * batch * out * out * c_out * c_in * k * k > _CONV_MAX_FLOPS:
            batch //= 2
        rows.append({"op_kind": "conv2d", "op": "depthwise_conv2d" if depthwise else "conv2d",
                     "batch": batch, "in_channels": c_in, "out_channels": c_out, "kernel_size": k,
                     "input_size": size, "stride": stride, "padding": k // 2})  # fmt: skip
    for i in range(n_of("elementwise")):
        op, inputs = [("add", 2), ("mul", 1), ("mul", 2), ("batch_norm", 1), ("add", 1)][i % 5]
        rows.append(vec("elementwise", op, inputs))
    for i in range(n_of("activation")):
        rows.append(vec("activation", _ACTS[i % len(_ACTS)]))
    for _ in range(n_of("softmax")):
        rows.append(vec("softmax", "softmax"))
    for _ in range(n_of("layernorm")):
        rows.append(vec("layernorm", "layer_norm"))
    for _ in range(n_of("embedding")):
        rows.append({"op_kind": "embedding", "op": "embedding", "rows": _logu(rng, 1, 8192),
                     "cols": int(rng.choice([64, 128, 256, 512, 768]))})  # fmt: skip
    for i in range(n_of("reduction")):
        op = ["mean", "max_pool2d", "adaptive_avg_pool2d", "max_pool2d", "sum", "amax"][i % 6]
        if op in ("adaptive_avg_pool2d", "max_pool2d"):
            h = _logu(rng, 4, 112)
            c = _logu(rng, 8, 512)
            rows.append({"op_kind": "reduction", "op": op, "rows": c * h, "cols": h, "inputs": 1})
        else:
            rows.append(vec("reduction", op))
    for i in range(n_of("copy")):
        rows.append(vec("copy", ["contiguous", "cat", "reshape"][i % 3]))
    for i in range(n_of("other")):
        rows.append({"op_kind": "other", "op": _VIEWS[i % len(_VIEWS)], "flops": 0.0, "bytes": 0.0})
    return op_table([dict(r, name=f"sweep_{i}", dtype="fp32") for i, r in enumerate(rows)])


# ------------------------------------------------------------------------------------ the ops
class _WeightPool:
    """Weights read from memory, as in a network: successive calls use different copies.

    A real forward pass reads each layer's weights once, after the other layers' weights and
    activations went through the cache; timing one layer over and over with the same weight
    tensor keeps it in cache instead. The pool is one random buffer of ``2.5 x`` the last-level
    cache; each call takes the next weight-sized slice of it (``copies`` of them), so a weight
    smaller than the cache is evicted before it is used again. Activations are not rotated: in a
    network the previous op has just written them.
    """

    def __init__(self, cache_bytes: int | None, gen: Any) -> None:
        import torch

        n = int(2.5 * cache_bytes / 4) if cache_bytes else 0
        self.buf = torch.randn(n, generator=gen) if n else None

    def weights(self, shape: tuple[int, ...], gen: Any) -> list[Any]:
        import torch

        numel = math.prod(shape)
        if self.buf is None or numel * 2 > self.buf.numel():
            return [torch.randn(*shape, generator=gen)]
        copies = min(1024, self.buf.numel() // numel)
        return [self.buf[i * numel : (i + 1) * numel].view(shape) for i in range(copies)]


def _rotating(fn: Callable[[Any], object], weights: list[Any]) -> Callable[[], object]:
    n, state = len(weights), [0]

    def call() -> object:
        w = weights[state[0] % n]
        state[0] += 1
        return fn(w)

    return call


def _op_callable(row: dict[str, Any], gen: Any, pool: _WeightPool | None = None) -> Callable[[], object]:
    """The torch call of one operator-table row on real CPU tensors (built once)."""
    import torch
    import torch.nn.functional as F

    kind, op = row["op_kind"], row["op"]
    pool = pool or _WeightPool(None, gen)

    def rand(*shape: int) -> Any:
        return torch.randn(*shape, generator=gen)

    if kind == "linear":
        x, b = rand(row["m"], row["k"]), rand(row["n"])
        return _rotating(lambda w: F.linear(x, w, b), pool.weights((row["n"], row["k"]), gen))
    if kind == "bmm":
        a, bb = rand(row["batch"], row["m"], row["k"]), rand(row["batch"], row["k"], row["n"])
        return lambda: torch.matmul(a, bb)
    if kind == "conv2d":
        s = row["input_size"]
        if op == "depthwise_conv2d":
            c = row["out_channels"]
            x, w, groups = rand(row["batch"], c, s, s), rand(c, 1, row["kernel_size"], row["kernel_size"]), c
        else:
            x = rand(row["batch"], row["in_channels"], s, s)
            w, groups = (
                rand(row["out_channels"], row["in_channels"], row["kernel_size"], row["kernel_size"]),
                1,
            )
        b = rand(row["out_channels"])
        return lambda: F.conv2d(x, w, b, stride=row["stride"], padding=row["padding"], groups=groups)
    if kind == "embedding":
        table = rand(30000, row["cols"])
        ids = torch.randint(0, 30000, (row["rows"],), generator=gen)
        return lambda: F.embedding(ids, table)
    if kind == "other":
        x = rand(4, 8, 16)
        views: dict[str, Callable[[], object]] = {
            "view": lambda: x.view(32, 16), "transpose": lambda: x.transpose(1, 2),
            "reshape": lambda: x.reshape(-1), "flatten": lambda: x.flatten(1), "permute": lambda: x.permute(0, 2, 1),
            "unsqueeze": lambda: x.unsqueeze(0), "getitem": lambda: x[:, 0],
        }  # fmt: skip
        return views[op]
    r, c = row["rows"], row["cols"]
    x = rand(r, c)
    if kind == "elementwise":
        if op == "batch_norm":
            x4 = x.view(1, r, c, 1)
            mean, var, w, b = rand(r), rand(r).abs() + 1, rand(r), rand(r)
            return lambda: F.batch_norm(x4, mean, var, w, b, training=False)
        y = rand(r, c)
        if op == "add":
            return (lambda: x + y) if row["inputs"] >= 2 else (lambda: x + 1.0)
        return (lambda: x * y) if row["inputs"] >= 2 else (lambda: x * 0.5)
    if kind == "activation":
        fn = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
              "hardswish": F.hardswish, "relu6": F.relu6}[op]  # fmt: skip
        return lambda: fn(x)
    if kind == "softmax":
        return lambda: torch.softmax(x, -1)
    if kind == "layernorm":
        w, b = rand(c), rand(c)
        return lambda: F.layer_norm(x, (c,), w, b)
    if kind == "reduction":
        if op in ("adaptive_avg_pool2d", "max_pool2d"):
            x4 = x.view(1, r // c, c, c)
            if op == "max_pool2d":  # the table has no kernel: 2 x 2, stride 2, the usual CNN downsampling
                return lambda: F.max_pool2d(x4, 2, 2)
            return lambda: F.adaptive_avg_pool2d(x4, 1)
        fn = {"mean": torch.mean, "sum": torch.sum, "amax": torch.amax}[op]
        return lambda: fn(x, -1)
    if kind == "copy":
        if op == "cat":
            half = rand(r, c)
            return lambda: torch.cat([x, half], 0)
        xt = rand(c, r).t()
        return lambda: xt.contiguous() if op == "contiguous" else xt.reshape(-1)
    raise CollectorError(f"op kind {kind!r} (op {op!r}) cannot be timed by this collector")


@dataclass(frozen=True)
class OpsCollection:
    """What :func:`collect_ops` measured: ``ops`` rows and the one ``devices`` row of this device."""

    ops: pl.DataFrame
    device: pl.DataFrame


def collect_ops(
    table: pl.DataFrame | Sequence[dict[str, Any]] | None = None,
    *,
    threads: int = 1,
    min_time_s: float = 0.05,
    warmup: int = 2,
    min_samples: int = 5,
    timer: str = "wall",
    seed: int = 0,
    scale: float = 1.0,
    rotate: bool = True,
    progress: bool = True,
    collected_at: datetime | None = None,
) -> OpsCollection:
    """Time every forward row of ``table`` (default :func:`sweep_ops`) on this CPU.

    ``threads`` (default 1: steady on a shared machine) is part of the device id. Rows the
    collector cannot run (``grouped_conv2d``, backward rows) are refused up front by name.
    ``rotate`` (default) reads linear and conv2d weights from memory as a network does
    (:class:`_WeightPool`); ``False`` keeps one weight tensor hot in cache.
    ``collected_at`` (default: now) is the collection's time stamp, part of every measurement id:
    the chunks of one collection run on several Ray tasks share the driver's, so their rows get
    the ids of the same collection run here.
    """
    import torch

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise CollectorError(f"threads must be an integer >= 1, got {threads!r}")
    check_timing_options("cpu", timer=timer, threads=threads, min_time_s=min_time_s)
    table = sweep_ops(seed=seed, scale=scale) if table is None else op_table(
        table if isinstance(table, pl.DataFrame) else list(table)
    )
    bad = table.filter((pl.col("phase") != "forward") | (pl.col("op") == "grouped_conv2d"))
    if bad.height:
        raise CollectorError(
            f"collect_ops times forward ops only; row {bad['name'][0]!r} is {bad['phase'][0]} {bad['op'][0]}"
        )
    records = table.to_dicts()
    gen = torch.Generator().manual_seed(seed)
    out: list[dict[str, Any]] = []
    with envmod.thread_limit(threads) as n_threads:
        env = capture_environment("cpu", threads=n_threads)
        if collected_at is not None:
            env = replace(env, collected_at=collected_at)
        pool = _WeightPool(env.cpu.llc_bytes if rotate else None, gen)
        device_id = ops_device_id(n_threads)
        items = track(records, f"ops on {device_id}") if progress else records
        with torch.inference_mode():
            for row in items:
                try:
                    call = _op_callable(row, gen, pool)
                except KeyError:
                    raise CollectorError(
                        f"op {row['name']!r}: op {row['op']!r} of kind {row['op_kind']!r} is not timed here"
                    ) from None
                t = measure(cpu_sampler(call, host_clock(timer)), warmup=warmup, min_time_s=min_time_s,
                            min_sample_s=2e-4, min_samples=min_samples)  # fmt: skip
                del call
                out.append(_ops_row(row, t, env=env, device_id=device_id, timer=timer,
                                   rotated=pool.buf is not None and row["op_kind"] in ("linear", "conv2d")))  # fmt: skip
    ops = pl.DataFrame(out, infer_schema_length=None)
    ops = envmod.provenance(ops, source=SOURCE, env=env, key=_ID_KEY)
    ops = conform("ops", ops, context=SOURCE)
    return OpsCollection(ops=ops, device=_device_frame(ops, env, device_id))


#: the columns that tell two operator rows of one device apart (with the collection time: the measurement id)
_ID_KEY = ("device_id", "op", "rows", "cols", "inputs", "m", "n", "k", "batch", "in_channels", "out_channels",
           "kernel_size", "input_size", "stride", "padding")  # fmt: skip


def merge_collections(parts: Sequence[OpsCollection]) -> OpsCollection:
    """One collection from parts measured apart (the Ray tasks of ``hws collect ops --ray``).

    The ``ops`` rows are concatenated in order; each device gets one ``devices`` row (the first
    part's description of it) whose roofline is measured over all of that device's rows, as
    :func:`collect_ops` does for one part.
    """
    if not parts:
        raise CollectorError("merge_collections: no collections to merge")
    ops = pl.concat([p.ops for p in parts], how="vertical_relaxed")
    rows = pl.concat([p.device for p in parts], how="vertical_relaxed").unique("device_id", keep="first",
                                                                               maintain_order=True)  # fmt: skip
    devices = []
    for row in rows.iter_rows(named=True):
        peak, bw = _roofline(ops.filter(pl.col("device_id") == row["device_id"]))
        devices.append(rows.filter(pl.col("device_id") == row["device_id"]).with_columns(
            pl.lit(peak, dtype=pl.Float64).alias("peak_fp32_gflops"), pl.lit(bw, dtype=pl.Float64).alias("mem_bw_gbs")
        ))  # fmt: skip
    return OpsCollection(ops=ops, device=conform("devices", pl.concat(devices), context=SOURCE))


def _ops_row(row: dict[str, Any], t: Any, *, env: Environment, device_id: str, timer: str,
            rotated: bool) -> dict[str, Any]:  # fmt: skip
    shape_cols = ("batch", "m", "n", "k", "rows", "cols", "inputs", "in_channels", "out_channels", "kernel_size",
                  "input_size", "stride", "padding")  # fmt: skip
    import torch

    return {
        "device_id": device_id,
        "op_kind": row["op_kind"],
        "op": row["op"],
        "phase": "forward",
        "dtype": row["dtype"],
        **{c: row[c] for c in shape_cols},
        "flops": row["flops"],
        "bytes": row["bytes"],
        "latency_ms": t.median_s * 1e3,
        "repetitions": t.calls,
        "threads": env.threads,
        "framework": f"torch {torch.__version__} eager (inference_mode)",
        "extra": json.dumps(
            {
                "timer": timer,
                "weights_rotated": rotated,
                "iqr_ms": t.iqr_s * 1e3,
                "min_ms": t.min_s * 1e3,
                "samples": t.n_samples,
                "env": env.summary(),
            }
        ),  # fmt: skip
        "collected_at": env.collected_at,
    }


def _roofline(ops: pl.DataFrame) -> tuple[float | None, float | None]:
    """(best linear GFLOP/s, best elementwise/activation/copy GB/s of rows >= 8 MB, else of all) of one device's rows."""
    gemm = ops.filter(pl.col("op_kind") == "linear")
    peak = float((gemm["flops"] / gemm["latency_ms"] / 1e6).max()) if gemm.height else None
    big = ops.filter(
        pl.col("op_kind").is_in(["elementwise", "activation", "copy"]) & (pl.col("bytes") >= 8e6)
    )
    if big.height == 0:
        big = ops.filter(pl.col("op_kind").is_in(["elementwise", "activation", "copy"]))
    bw = float((big["bytes"] / big["latency_ms"] / 1e6).max()) if big.height else None
    return peak, bw


def _device_frame(ops: pl.DataFrame, env: Environment, device_id: str) -> pl.DataFrame:
    """The ``devices`` row of this CPU at this thread count, roofline measured from ``ops``."""
    peak, bw = _roofline(ops)
    cpu = env.cpu
    llc = cpu.llc_bytes
    row = {
        "device_id": device_id,
        "kind": "cpu",
        "name": f"{cpu.model} ({env.threads} thread{'s' if env.threads > 1 else ''})",
        "vendor": cpu.vendor,
        "cores": env.threads,
        "peak_fp32_gflops": peak,
        "mem_bw_gbs": bw,
        "memory_gb": cpu.memory_gb,
        "clock_mhz": env.cpu_clock_mhz or cpu.max_clock_mhz,
        "l2_mb": llc / 2**20 if llc else None,
        "descriptors": json.dumps(
            {
                "measured_by": SOURCE,
                "peak_fp32_gflops": "best linear GFLOP/s of this collection",
                "mem_bw_gbs": "best elementwise/copy GB/s of this collection (>= 8 MB)",
                "threads": env.threads,
                "logical_cpus": cpu.logical_cpus,
                "env": env.summary(),
            }
        ),  # fmt: skip
    }
    frame = pl.DataFrame([row], infer_schema_length=None)
    frame = envmod.provenance(frame, source=SOURCE, env=env, key=("device_id",))
    frame = frame.with_columns(
        pl.concat_str([pl.lit(SOURCE), pl.col("device_id")], separator="|").alias("measurement_id")
    )
    return conform("devices", frame, context=SOURCE)


# ------------------------------------------------------------------------------ whole models
@dataclass(frozen=True)
class ModelCase:
    """One whole model to time: a built module (real weights), its input shape and its labels."""

    name: str
    module: Any
    input_shape: tuple[int, ...]
    batch: int
    seqlen: int | None = None
    input_dtype: str = "fp32"
    num_layer: int | None = None
    config: dict[str, Any] | None = None


def _eval_module(case: Any) -> Any:
    """A case's module in eval mode; a CollectorError naming the case when it is no ``nn.Module``."""
    import torch

    if not isinstance(case.module, torch.nn.Module):
        raise CollectorError(f"model {case.name!r}: module is {type(case.module).__name__}, not a torch.nn.Module")
    return case.module.eval()


@contextmanager
def _timing_models(
    cases: Sequence[ModelCase], what: str, *, threads: int, timer: str, min_time_s: float, progress: bool
) -> Iterator[tuple[Environment, str, Iterable[ModelCase]]]:
    """The set-up of a whole-model collector: ``cases`` must not be empty and the timing options
    must hold; for the block, torch runs on ``threads`` threads. Yields the environment captured,
    the device id (:func:`ops_device_id`) and the cases to time, behind a progress bar labelled
    ``"<what> on <device id>"`` when ``progress``."""
    if not cases:
        raise CollectorError("cases: no models to time")
    check_timing_options("cpu", timer=timer, threads=threads, min_time_s=min_time_s)
    with envmod.thread_limit(threads) as n_threads:
        env = capture_environment("cpu", threads=n_threads)
        device_id = ops_device_id(n_threads)
        yield env, device_id, track(list(cases), f"{what} on {device_id}") if progress else cases


def collect_model_latency(
    cases: Sequence[ModelCase],
    *,
    threads: int = 1,
    min_time_s: float = 0.5,
    warmup: int = 2,
    min_samples: int = 5,
    timer: str = "wall",
    progress: bool = True,
) -> pl.DataFrame:
    """Time each model's eager forward (``torch.inference_mode``, eval) on this CPU: ``model_latency`` rows.

    The latency is the median per-call time over samples (:mod:`.timing`); the device id is
    :func:`ops_device_id` at ``threads``, the same device as :func:`collect_ops`.
    """
    import torch

    rows = []
    with _timing_models(
        cases, "models", threads=threads, timer=timer, min_time_s=min_time_s, progress=progress
    ) as (env, device_id, items):
        for case in items:
            module = _eval_module(case)
            x = _model_input(case)
            with torch.inference_mode():
                try:
                    module(x)
                except Exception as exc:
                    raise CollectorError(
                        f"model {case.name!r}: the forward failed on {list(case.input_shape)} ({exc})"
                    ) from None
                t = measure(cpu_sampler(lambda m=module, x=x: m(x), host_clock(timer)), warmup=warmup,
                            min_time_s=min_time_s, min_sample_s=2e-3, min_samples=min_samples)  # fmt: skip
            rows.append({
                "device_id": device_id, "model": case.name, "mode": "inference", "batch": case.batch,
                "seqlen": case.seqlen, "input_shape": json.dumps(list(case.input_shape)), "num_layer": case.num_layer,
                "dtype": "fp32", "latency_ms": t.median_s * 1e3, "fw_latency_ms": t.median_s * 1e3,
                "threads": env.threads, "config": json.dumps(case.config) if case.config else None,
                "framework": f"torch {torch.__version__} eager (inference_mode)",
                "extra": json.dumps({"timer": timer, "iqr_ms": t.iqr_s * 1e3, "min_ms": t.min_s * 1e3,
                                     "samples": t.n_samples, "calls": t.calls}),
                "collected_at": env.collected_at,
            })  # fmt: skip
    frame = pl.DataFrame(rows, infer_schema_length=None)
    frame = envmod.provenance(
        frame, source=MODEL_SOURCE, env=env, key=("device_id", "model", "batch", "seqlen")
    )
    return conform("model_latency", frame, context=MODEL_SOURCE)


def inplace_op_times(
    module: Any, x: Any, repeats: int, *, timer: str = "thread_cpu"
) -> tuple[dict[str, float], float]:
    """Median ms of every fx node inside ``module(x)``, and the median end-to-end ms (eager).

    The node names are those of :func:`~hwsurrogate.datasets.frontends.torch_fx.trace_module`'s
    rows (the same ``symbolic_trace``). The clock (``timer``: ``thread_cpu`` or ``wall``) brackets
    each node's own call (module, function or method), not the interpreter's bookkeeping between
    nodes; two forwards warm up first.
    """
    from collections import defaultdict

    import torch
    import torch.fx as fx

    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise CollectorError(f"repeats must be an integer >= 1, got {repeats!r}")
    gm = fx.symbolic_trace(module)
    clock = host_clock(timer)
    samples: dict[str, list[float]] = defaultdict(list)

    class Timed(fx.Interpreter):  # the clock around the node's own call only, not the interpreter's
        def run_node(self, n: Any) -> Any:
            self.node = n
            return super().run_node(n)

        def _timed(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            out = fn(*args, **kwargs)
            samples[self.node.name].append((clock() - t0) / 1e6)
            return out

        def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
            return self._timed(target, *args, **kwargs)

        def call_method(self, target: Any, args: Any, kwargs: Any) -> Any:
            obj, *rest = args
            return self._timed(getattr(obj, target), *rest, **kwargs)

        def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
            return self._timed(self.fetch_attr(target), *args, **kwargs)

    interp = Timed(gm)
    with torch.inference_mode():
        for _ in range(2):
            interp.run(x)
        samples.clear()
        for _ in range(repeats):
            interp.run(x)
        e2e = []
        for _ in range(3):
            module(x)
        for _ in range(max(repeats, 10)):
            t0 = clock()
            module(x)
            e2e.append((clock() - t0) / 1e6)
    return {k: float(np.median(v)) for k, v in samples.items()}, float(np.median(e2e))


def _model_input(case: ModelCase) -> Any:
    import torch

    gen = torch.Generator().manual_seed(0)
    if case.input_dtype == "int64":
        return torch.randint(0, 100, case.input_shape, generator=gen)
    return torch.randn(*case.input_shape, generator=gen)


def collect_inplace_ops(
    cases: Sequence[ModelCase], *, threads: int = 1, repeats: int = 15, timer: str = "thread_cpu",
    progress: bool = True,
) -> pl.DataFrame:  # fmt: skip
    """Each operator of each model timed where it runs inside the model: ``ops`` rows of traces.

    Every row of the model's operator table (:func:`~hwsurrogate.datasets.frontends.torch_fx.trace_module`)
    gets the median per-call time of its fx node over ``repeats`` forwards
    (:func:`inplace_op_times`), with ``model`` (the case name) and ``name`` (the node) set, as the
    rows of an imported trace have: :class:`~hwsurrogate.surrogates.models.ops.OperatorLatencyModel`
    takes its model-context factors from such rows. Same device id as :func:`collect_ops`. The
    modules are traced after timing, on the meta device: a case's module is left there.
    """
    import torch

    from hwsurrogate.datasets.frontends.torch_fx import trace_module

    parts = []
    with _timing_models(
        cases, "ops in place", threads=threads, timer=timer, min_time_s=0.05, progress=progress
    ) as (env, device_id, items):
        for case in items:
            module = _eval_module(case)
            try:
                times, _ = inplace_op_times(module, _model_input(case), repeats, timer=timer)
            except Exception as exc:
                raise CollectorError(
                    f"model {case.name!r}: the forward failed on {list(case.input_shape)} ({exc})"
                ) from None
            table = trace_module(
                module, [case.input_shape], input_dtypes=[case.input_dtype], source=case.name
            )
            ms = [times.get(n.split(".")[0]) for n in table["name"]]
            table = table.with_columns(
                pl.Series("latency_ms", ms, dtype=pl.Float64), pl.lit(case.name).alias("model")
            )
            parts.append(table.filter(pl.col("latency_ms").is_not_null() & (pl.col("phase") == "forward")))
    rows = pl.concat(parts, how="vertical_relaxed")
    extra = json.dumps({"timer": timer, "context": "in place (fx node inside the model's forward)",
                        "samples": repeats, "env": env.summary()})  # fmt: skip
    shape_cols = ("batch", "m", "n", "k", "rows", "cols", "inputs", "in_channels", "out_channels", "kernel_size",
                  "input_size", "stride", "padding")  # fmt: skip
    frame = rows.select(
        pl.lit(device_id).alias("device_id"), "op_kind", "op", "phase", "dtype", *shape_cols, "flops", "bytes",
        "latency_ms", pl.lit(repeats).alias("repetitions"), pl.lit(env.threads).alias("threads"), "model", "name",
        pl.lit(f"torch {torch.__version__} eager (inference_mode)").alias("framework"), pl.lit(extra).alias("extra"),
        pl.lit(env.collected_at).alias("collected_at"),
    )  # fmt: skip
    frame = envmod.provenance(frame, source=SOURCE, env=env, key=("device_id", "model", "name"))
    return conform("ops", frame, context=SOURCE)


# ------------------------------------------------------------------------ calibration models
def calibration_cases(n: int = 16, *, seed: int = 1) -> list[ModelCase]:
    """``n`` random small networks (CNNs, MLPs, transformer blocks) to calibrate the composition.

    Their measured end-to-end latency against the sum of their operators' predictions fits the
    per-operator launch gap of a device (:func:`hwsurrogate.surrogates.wholemodel.fit_gap`).
    Widths, depths, resolutions and batch sizes are drawn from ``seed``; the architectures are
    plain stacks, so any benchmark model built elsewhere stays unseen.
    """
    import torch
    import torch.nn as nn

    from hwsurrogate.datasets.frontends.hf_config import CompactTransformer, TransformerConfig

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    cases: list[ModelCase] = []
    for i in range(n):
        family = ("cnn", "mlp", "transformer", "cnn")[i % 4]
        if family == "cnn":
            res, batch = int(rng.choice([24, 32, 48, 64])), int(rng.choice([1, 2, 4, 16]))
            layers: list[Any] = []
            cin, w = 3, int(rng.choice([8, 16, 32]))
            for stage in range(int(rng.integers(2, 5))):
                for _ in range(int(rng.integers(1, 3))):
                    if rng.random() < 0.3 and cin > 3:
                        layers += [nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
                                   nn.Conv2d(cin, w, 1, bias=False)]  # fmt: skip
                    else:
                        layers += [nn.Conv2d(cin, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
                    cin = w
                if stage < 3:
                    layers.append(nn.MaxPool2d(2) if rng.random() < 0.5 else nn.Conv2d(cin, cin, 3, 2, 1))
                w = min(256, w * 2)
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
            cases.append(ModelCase(f"calib-cnn-{i}", nn.Sequential(*layers), (batch, 3, res, res), batch))
        elif family == "mlp":
            dims = [int(rng.choice([64, 256, 512, 1024, 2048])) for _ in range(int(rng.integers(3, 6)))]
            batch = int(rng.choice([1, 8, 32, 128]))
            mlp: list[Any] = []
            for a, b in zip(dims[:-1], dims[1:], strict=False):
                mlp += [nn.Linear(a, b), nn.ReLU() if rng.random() < 0.5 else nn.GELU()]
            cases.append(ModelCase(f"calib-mlp-{i}", nn.Sequential(*mlp), (batch, dims[0]), batch))
        else:
            hidden = int(rng.choice([64, 128, 192, 256]))
            seqlen, batch = int(rng.choice([32, 64, 128, 192])), int(rng.choice([1, 2]))
            cfg = {"model_type": str(rng.choice(["bert", "gpt2"])), "hidden_size": hidden,
                   "num_hidden_layers": int(rng.integers(1, 3)), "num_attention_heads": hidden // 64 or 1,
                   "vocab_size": int(rng.choice([1000, 4000])), "max_position_embeddings": 256}  # fmt: skip
            module = CompactTransformer(TransformerConfig(cfg, f"calib-transformer-{i}"))
            cases.append(ModelCase(f"calib-transformer-{i}", module, (batch, seqlen), batch, seqlen, "int64",
                                   cfg["num_hidden_layers"], cfg))  # fmt: skip
    return cases
