"""``hws collect gemm``: time GEMM shapes on this machine, with power/energy when a counter exists.

The command is in :mod:`hwsurrogate.cli.collect`; this module measures and returns rows, writing nothing.

Backends: numpy (CPU BLAS) and torch (CPU, or CUDA when a GPU is present). For every shape:

- operands are allocated once as several rotated copies whose total size exceeds the last-level
  cache (LLC on a CPU, L2 on a GPU) when memory allows, so each call reads its operands from
  memory as a GEMM inside a real network would; the copy count, bytes and whether the rotation
  exceeded the cache are recorded in ``extra``;
- timing follows :mod:`.timing`: warm-up, a calibrated number of calls per sample, samples until
  the window is long enough (>= 1 s on a GPU when NVML energy is read), median and IQR;
- energy comes from counters only (:mod:`.power`): RAPL on the CPU, NVML on NVIDIA GPUs;
  otherwise power/energy are null and ``power_method`` says why.

Rows fit the ``gemm`` schema; ``op`` is ``gemm`` for batch 1 and ``bmm`` otherwise; ``layout``
is BLAS-style ``op(A)op(B)``: ``n`` = row-major as multiplied, ``t`` = stored transposed.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from hwsurrogate.datasets.collectors import environment as envmod
from hwsurrogate.datasets.collectors.environment import (
    Environment,
    capture_environment,
    local_device_id,
    parse_device,
)
from hwsurrogate.datasets.collectors.power import EnergyMeter, cpu_meter, cpu_temperature_c, cuda_meter
from hwsurrogate.datasets.collectors.timing import (
    Timing,
    check_timing_options,
    cpu_sampler,
    cuda_sampler,
    host_clock,
    measure,
)
from hwsurrogate.datasets.schemas import conform
from hwsurrogate.errors import CollectorError
from hwsurrogate.progress import track

__all__ = [
    "SOURCE",
    "GemmShape",
    "collect_gemm",
    "gflops",
    "local_device_id",
    "sweep_shapes",
]

Backend = Literal["numpy", "torch"]
LAYOUTS: tuple[str, ...] = ("nn", "nt", "tn", "tt")
SOURCE = "collector:gemm"

#: dtypes each (backend, device) can run, in the gemm schema's names.
SUPPORTED_DTYPES: dict[tuple[str, str], tuple[str, ...]] = {
    ("numpy", "cpu"): ("fp64", "fp32", "fp16"),
    ("torch", "cpu"): ("fp64", "fp32", "bf16", "fp16"),
    ("torch", "cuda"): ("fp64", "fp32", "tf32", "fp16", "bf16"),
}
_ITEMSIZE = {"fp64": 8, "fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2}
_NUMPY_DTYPES = {"fp64": np.float64, "fp32": np.float32, "fp16": np.float16}

#: Upper bound on the bytes the rotated operand copies may take (the single set may exceed it).
ROTATION_BUDGET_BYTES = 1 << 30
MAX_COPIES = 1024


@dataclass(frozen=True)
class GemmShape:
    """One GEMM to time: ``batch`` x (m x k) @ (k x n) in ``dtype`` with ``layout``."""

    m: int
    n: int
    k: int
    batch: int = 1
    dtype: str = "fp32"
    layout: str = "nn"

    @property
    def flops(self) -> int:
        return 2 * self.m * self.n * self.k * self.batch

    @property
    def op(self) -> str:
        return "gemm" if self.batch == 1 else "bmm"

    def operand_bytes(self) -> int:
        """Bytes of A, B and C for one call."""
        return self.batch * (self.m * self.k + self.k * self.n + self.m * self.n) * _ITEMSIZE[self.dtype]


# --------------------------------------------------------------------------------- shapes
def sweep_shapes(
    kind: Literal["grid", "random"] = "grid",
    *,
    sizes: Sequence[int] = (64, 128, 256, 512, 1024),
    n_shapes: int = 50,
    min_dim: int = 16,
    max_dim: int = 2048,
    batches: Sequence[int] = (1,),
    dtypes: Sequence[str] = ("fp32",),
    layouts: Sequence[str] = ("nn",),
    seed: int = 0,
) -> pl.DataFrame:
    """Shapes to time: the full ``sizes``^3 grid, or ``n_shapes`` log-uniform random (m, n, k).

    Every shape is crossed with ``batches`` x ``dtypes`` x ``layouts`` for ``grid``; ``random``
    draws those uniformly too. Returns columns m, n, k, batch, dtype, layout (Int64/String).
    """
    if kind == "grid":
        if not sizes:
            raise CollectorError("sizes: the grid needs at least one size")
        mnk = [(m, n, k) for m in sizes for n in sizes for k in sizes]
        rows = [(m, n, k, b, d, lay) for (m, n, k) in mnk for b in batches for d in dtypes for lay in layouts]
    elif kind == "random":
        if n_shapes < 1:
            raise CollectorError(f"n_shapes must be >= 1, got {n_shapes}")
        if not 1 <= min_dim <= max_dim:
            raise CollectorError(f"need 1 <= min_dim <= max_dim, got min_dim={min_dim}, max_dim={max_dim}")
        rng = np.random.default_rng(seed)
        dims = np.exp(rng.uniform(np.log(min_dim), np.log(max_dim + 1), size=(n_shapes, 3)))
        dims = np.clip(np.floor(dims).astype(np.int64), min_dim, max_dim)
        rows = [
            (
                int(m),
                int(n),
                int(k),
                int(rng.choice(batches)),
                str(rng.choice(dtypes)),
                str(rng.choice(layouts)),
            )
            for m, n, k in dims
        ]
    else:
        raise CollectorError(f"sweep kind {kind!r} is not 'grid' or 'random'")
    return pl.DataFrame(
        rows,
        schema={"m": pl.Int64, "n": pl.Int64, "k": pl.Int64, "batch": pl.Int64, "dtype": pl.String,
                "layout": pl.String},
        orient="row",
    )  # fmt: skip


def _as_shapes(shapes: pl.DataFrame | Sequence[Any], dtype: str) -> list[GemmShape]:
    if isinstance(shapes, pl.DataFrame):
        missing = [c for c in ("m", "n", "k") if c not in shapes.columns]
        if missing:
            raise CollectorError(f"shapes: required column(s) {missing} missing; got {shapes.columns}")
        records: list[Any] = shapes.to_dicts()
    else:
        records = list(shapes)
    out: list[GemmShape] = []
    for i, rec in enumerate(records):
        if isinstance(rec, GemmShape):
            out.append(rec)
            continue
        if isinstance(rec, dict):
            d = dict(rec)
        elif isinstance(rec, (tuple, list)) and 3 <= len(rec) <= 6:
            d = dict(zip(("m", "n", "k", "batch", "dtype", "layout"), rec, strict=False))
        else:
            raise CollectorError(
                f"shapes[{i}]: expected a dict, (m, n, k[, batch, dtype, layout]) or GemmShape, got {rec!r}"
            )
        for field in ("m", "n", "k", "batch"):
            value = d.get(field, 1 if field == "batch" else None)
            if value is None:
                value = 1 if field == "batch" else value
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise CollectorError(f"shapes[{i}]: field {field!r} must be an integer, got {value!r}")
            d[field] = int(value)
        out.append(
            GemmShape(d["m"], d["n"], d["k"], d["batch"], d.get("dtype") or dtype, d.get("layout") or "nn")
        )
    if not out:
        raise CollectorError("shapes: no GEMM shapes given")
    return out


def _max_operand_bytes(device: str) -> int:
    if parse_device(device)[0] == "cuda":  # pragma: no cover - needs a GPU
        import torch

        free, _ = torch.cuda.mem_get_info(parse_device(device)[1])
        return int(free * 0.8)
    avail = envmod.available_memory_bytes()
    return int(avail * 0.5) if avail else 8 << 30


def validate_shapes(
    shapes: Sequence[GemmShape], *, backend: str, device: str, max_operand_bytes: int | None = None
) -> None:
    """Raise CollectorError naming the shape index and field of the first unusable shape."""
    kind, _ = parse_device(device)
    allowed = SUPPORTED_DTYPES.get((backend, kind))
    if allowed is None:
        raise CollectorError(
            f"backend={backend!r} cannot run on device={device!r}; "
            f"supported: {', '.join(f'{b}/{d}' for b, d in SUPPORTED_DTYPES)}"
        )
    limit = max_operand_bytes if max_operand_bytes is not None else _max_operand_bytes(device)
    for i, s in enumerate(shapes):
        for field in ("m", "n", "k", "batch"):
            value = getattr(s, field)
            if value < 1:
                raise CollectorError(f"shapes[{i}]: {field}={value} must be >= 1")
        if s.dtype not in allowed:
            raise CollectorError(
                f"shapes[{i}]: dtype {s.dtype!r} is not supported by backend {backend!r} on {kind}; "
                f"choose from {list(allowed)}"
            )
        if s.layout not in LAYOUTS:
            raise CollectorError(f"shapes[{i}]: layout {s.layout!r} must be one of {list(LAYOUTS)}")
        need = s.operand_bytes()
        if need > limit:
            raise CollectorError(
                f"shapes[{i}]: m={s.m}, n={s.n}, k={s.k}, batch={s.batch} ({s.dtype}) needs "
                f"{need / 1e9:.3g} GB of operands, more than the {limit / 1e9:.3g} GB allowed on {device} "
                "(max_operand_bytes); use smaller dims"
            )


# --------------------------------------------------------------------------------- operands
def rotation_copies(set_bytes: int, cache_bytes: int | None, *, budget: int = ROTATION_BUDGET_BYTES,
                    max_copies: int = MAX_COPIES) -> int:  # fmt: skip
    """How many operand copies to rotate so their total exceeds twice the cache when affordable."""
    if not cache_bytes or set_bytes <= 0:
        return 1
    want = math.ceil(2 * cache_bytes / set_bytes) + (1 if set_bytes < 2 * cache_bytes else 0)
    affordable = max(1, budget // set_bytes)
    return max(1, min(want, affordable, max_copies))


def _numpy_operands(s: GemmShape, copies: int, rng: np.random.Generator) -> list[tuple[np.ndarray, ...]]:
    dt = _NUMPY_DTYPES[s.dtype]
    lead = (s.batch,) if s.batch > 1 else ()

    def make(rows: int, cols: int, trans: bool) -> np.ndarray:
        shape = (*lead, cols, rows) if trans else (*lead, rows, cols)
        x = rng.standard_normal(shape, dtype=np.float32).astype(dt, copy=False)
        return np.swapaxes(x, -1, -2) if trans else x

    out = []
    for _ in range(copies):
        a = make(s.m, s.k, s.layout[0] == "t")
        b = make(s.k, s.n, s.layout[1] == "t")
        c = np.empty((*lead, s.m, s.n), dtype=dt)
        out.append((a, b, c))
    return out


def _torch_operands(s: GemmShape, copies: int, device: str, seed: int) -> list[tuple[Any, ...]]:
    import torch

    dt = {"fp64": torch.float64, "fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16,
          "bf16": torch.bfloat16}[s.dtype]  # fmt: skip
    gen = torch.Generator(device=device).manual_seed(seed)
    lead = (s.batch,) if s.batch > 1 else ()

    def make(rows: int, cols: int, trans: bool) -> Any:
        shape = (*lead, cols, rows) if trans else (*lead, rows, cols)
        x = torch.randn(shape, generator=gen, device=device, dtype=torch.float32).to(dt)
        return x.transpose(-1, -2) if trans else x

    return [
        (make(s.m, s.k, s.layout[0] == "t"), make(s.k, s.n, s.layout[1] == "t"),
         torch.empty((*lead, s.m, s.n), device=device, dtype=dt))
        for _ in range(copies)
    ]  # fmt: skip


@contextlib.contextmanager
def _tf32(enabled: bool, is_cuda: bool) -> Iterator[None]:
    if not is_cuda:
        yield
        return
    import torch  # pragma: no cover - needs a GPU

    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def _rotating_call(backend: str, ops: list[tuple[Any, ...]]) -> Any:
    n = len(ops)
    state = [0]
    if backend == "numpy":
        matmul = np.matmul

        def call() -> None:
            a, b, c = ops[state[0] % n]
            state[0] += 1
            matmul(a, b, out=c)

    else:
        import torch

        tmm = torch.matmul

        def call() -> None:
            a, b, c = ops[state[0] % n]
            state[0] += 1
            tmm(a, b, out=c)

    return call


# --------------------------------------------------------------------------------- collect
def collect_gemm(
    shapes: pl.DataFrame | Sequence[Any],
    *,
    backend: Backend = "numpy",
    device: str = "cpu",
    dtype: str = "fp32",
    threads: int | None = None,
    min_time_s: float = 0.5,
    min_sample_s: float | None = None,
    timer: Literal["wall", "thread_cpu"] = "wall",
    warmup: int = 3,
    min_samples: int = 7,
    max_samples: int = 10_000,
    rotate: bool = True,
    measure_energy: bool = True,
    max_operand_bytes: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> pl.DataFrame:
    """Time every shape and return rows in the ``gemm`` schema (nothing is written here).

    ``shapes``: a frame with m, n, k (and optional batch, dtype, layout) columns, or a list
    of dicts / (m, n, k[, batch, dtype, layout]) tuples / :class:`GemmShape`. ``dtype`` is
    the default for shapes that do not name one. ``threads`` limits BLAS/torch threads (and is
    recorded). All shapes are validated before the first is timed.

    ``timer="wall"`` (default) times with ``perf_counter_ns``. On a machine shared with other
    jobs, ``timer="thread_cpu"`` (CPU only, ``threads=1``) times with the calling thread's CPU
    clock, which does not count time the scheduler gave to other processes; the timer used is
    recorded in ``extra``. ``min_sample_s`` (default 0.2 ms on the CPU, 1 ms on a GPU) keeps
    samples shorter than a scheduler time slice so the median is robust to preemption.
    """
    if backend not in ("numpy", "torch"):
        raise CollectorError(f"backend {backend!r} must be 'numpy' or 'torch'")
    kind, index = check_timing_options(device, timer=timer, threads=threads, min_time_s=min_time_s)
    if min_sample_s is None:
        min_sample_s = 1e-3 if kind == "cuda" else 2e-4
    items = _as_shapes(shapes, dtype)
    validate_shapes(items, backend=backend, device=device, max_operand_bytes=max_operand_bytes)

    rows: list[dict[str, Any]] = []
    with envmod.thread_limit(threads) as n_threads:
        env = capture_environment(device, threads=n_threads)
        meter: EnergyMeter = _meter(kind, index, measure_energy)
        if kind == "cuda":  # pragma: no cover - needs a GPU
            cache = env.gpu.get("l2_cache_bytes") if env.gpu else None
        else:
            cache = env.cpu.llc_bytes
        iterator = track(items, f"GEMM {backend}/{env.device}") if progress else iter(items)
        for i, s in enumerate(iterator):
            rows.append(_time_one(s, backend=backend, device=env.device, kind=kind, index=index, cache=cache,
                                  rotate=rotate, meter=meter, env=env, seed=seed + i, warmup=warmup, timer=timer,
                                  min_time_s=min_time_s, min_sample_s=min_sample_s, min_samples=min_samples,
                                  max_samples=max_samples))  # fmt: skip
    return finish_rows(rows, env)


def _meter(kind: str, index: int, measure_energy: bool) -> EnergyMeter:
    from hwsurrogate.datasets.collectors.power import NullMeter

    if not measure_energy:
        return NullMeter("energy measurement switched off (measure_energy=False)")
    return cuda_meter(index) if kind == "cuda" else cpu_meter()


def _time_one(
    s: GemmShape, *, backend: str, device: str, kind: str, index: int, cache: int | None, rotate: bool,
    meter: EnergyMeter, env: Environment, seed: int, warmup: int, timer: str, min_time_s: float, min_sample_s: float,
    min_samples: int, max_samples: int,
) -> dict[str, Any]:  # fmt: skip
    set_bytes = s.operand_bytes()
    copies = rotation_copies(set_bytes, cache) if rotate else 1
    if backend == "numpy":
        ops = _numpy_operands(s, copies, np.random.default_rng(seed))
    else:
        ops = _torch_operands(s, copies, device, seed)
    call = _rotating_call(backend, ops)
    if kind == "cuda":  # pragma: no cover - needs a GPU
        sampler = cuda_sampler(call, index)
    else:
        sampler = cpu_sampler(call, host_clock(timer))
    with _tf32(s.dtype == "tf32", kind == "cuda"):
        t = measure(sampler, warmup=warmup, min_time_s=min_time_s, min_sample_s=min_sample_s,
                    min_samples=min_samples, max_samples=max_samples, meter=meter)  # fmt: skip
    del ops, call
    return _row(s, t, backend=backend, kind=kind, env=env, copies=copies, set_bytes=set_bytes, cache=cache,
                meter=meter, timer="cuda_events" if kind == "cuda" else timer)  # fmt: skip


def _row(s: GemmShape, t: Timing, *, backend: str, kind: str, env: Environment, copies: int, set_bytes: int,
         cache: int | None, meter: EnergyMeter, timer: str) -> dict[str, Any]:  # fmt: skip
    e = t.energy
    nv_after = e.details.get("nvml_after") or {}
    rotated = copies * set_bytes
    extra = {
        "gflops": s.flops / t.median_s / 1e9,
        "best_gflops": s.flops / t.min_s / 1e9,
        "min_runtime_ms": t.min_s * 1e3,
        "calls_per_sample": t.number,
        "samples": t.n_samples,
        "window_s": t.window_s,
        "cache": {
            "cache_bytes": cache,
            "operand_bytes": set_bytes,
            "copies": copies,
            "rotated_bytes": rotated,
            "rotation_exceeds_cache": bool(cache) and rotated > cache,
        },
        "backend": backend,
        "blas_threads": envmod.blas_threads() if backend == "numpy" else None,
        "timer": timer,
        **{k: v for k, v in e.details.items() if k != "window_s"},
        "env": env.summary(),
    }
    if kind == "cpu":
        sm_clock = envmod.cpu_clock_mhz()
        mem_clock = None
        temperature = cpu_temperature_c()
        power_limit = getattr(meter, "power_limit_w", None)
    else:  # pragma: no cover - needs a GPU
        sm_clock = nv_after.get("sm_clock_mhz")
        mem_clock = nv_after.get("mem_clock_mhz")
        temperature = nv_after.get("temperature_c")
        power_limit = nv_after.get("power_limit_w")
    framework = (
        f"numpy {np.__version__} ({envmod.blas_info() or 'BLAS unknown'})"
        if backend == "numpy"
        else f"torch {env.software.get('torch', '?')}"
    )
    return {
        "device_id": env.device_id,
        "op": s.op,
        "m": s.m,
        "n": s.n,
        "k": s.k,
        "batch": s.batch,
        "dtype": s.dtype,
        "layout": s.layout,
        "kernel": None,
        "runtime_ms": t.median_s * 1e3,
        "runtime_spread_ms": t.iqr_s * 1e3,
        "repetitions": t.calls,
        "power_w": e.power_w,
        "energy_j": t.energy_per_call_j,
        "power_method": e.method,
        "power_trusted": e.trusted,
        "power_limit_w": power_limit,
        "sm_clock_mhz": sm_clock,
        "mem_clock_mhz": mem_clock,
        "temperature_c": temperature,
        "threads": env.threads,
        "framework": framework,
        "software": env.software_json(),
        "extra": json.dumps(extra, sort_keys=True, default=str),
        "collected_at": env.collected_at,
    }


def finish_rows(rows: list[dict[str, Any]], env: Environment) -> pl.DataFrame:
    """Rows -> a schema-conforming gemm frame with provenance and measurement ids."""
    frame = pl.DataFrame(rows, infer_schema_length=None)
    frame = envmod.provenance(
        frame,
        source=SOURCE,
        env=env,
        key=("device_id", "op", "m", "n", "k", "batch", "dtype", "layout", "threads"),
    )
    return conform("gemm", frame, context=SOURCE)


def gflops(frame: pl.DataFrame) -> pl.Series:
    """Achieved GFLOP/s of gemm rows (2*m*n*k*batch / runtime)."""
    return (
        2 * frame["m"] * frame["n"] * frame["k"] * frame["batch"] / (frame["runtime_ms"] / 1e3) / 1e9
    ).alias("gflops")
