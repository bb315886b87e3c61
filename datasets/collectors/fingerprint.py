"""``hws collect fingerprint``: one ``devices`` row describing this machine, HELP-style.

The command is in :mod:`hwsurrogate.cli.collect`; this module measures and returns rows, writing nothing.

The row holds:

- static descriptors: CPU model, cores, clock, caches, ISA flags, memory; on CUDA the GPU
  name, SM count, memory, clocks and driver;
- micro-benchmarks (in ``descriptors``): achieved GEMM GFLOP/s per dtype measured with the
  GEMM collector, memory bandwidth from a STREAM-like triad, dispatch overhead of a tiny torch op;
- ``fingerprint``: latencies (ms, batch 1) of HELP's 10 NB201 + 10 FBNet reference
  architectures measured here, keyed ``{"nb201": {"11982": ms, ...}, "fbnet": {...}}`` exactly
  like the HELP importer writes them, so an unseen device can be embedded like the imported ones.

``peak_fp32_gflops``/``peak_fp16_gflops`` stay null: achieved GEMM throughput is not a peak.
``mem_bw_gbs`` is the measured triad bandwidth (STREAM convention: 3 arrays x 8 bytes per element).
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import numpy as np
import polars as pl

from hwsurrogate.datasets.archspaces import HELP_REFERENCE_ARCHS as REFERENCE_ARCHS
from hwsurrogate.datasets.collectors import environment as envmod
from hwsurrogate.datasets.collectors.environment import (
    Environment,
    capture_environment,
    local_device_id,
    parse_device,
)
from hwsurrogate.datasets.collectors.timing import cpu_sampler, cuda_sampler, measure
from hwsurrogate.datasets.schemas import conform
from hwsurrogate.errors import CollectorError

__all__ = ["REFERENCE_ARCHS", "SOURCE", "collect_fingerprint", "local_device_id"]

SOURCE = "collector:fingerprint"

def reference_keys(space: str) -> list[tuple[int, str]]:
    """(index, arch_key) of ``space``'s reference archs in HELP's order."""
    return list(REFERENCE_ARCHS[space].items())


# ------------------------------------------------------------------------------ micro-benchmarks
def stream_triad_gbs(
    *, n_elements: int = 1 << 24, chunk: int = 1 << 15, repeats: int = 5, scalar: float = 3.0
) -> dict[str, Any]:
    """STREAM-like triad ``a = b + s*c`` in numpy, best of ``repeats``; GB/s with STREAM's 24 B/element.

    numpy ufuncs make two passes, so the triad is applied in cache-sized chunks (the scaled chunk
    stays in L1/L2); main-memory traffic is then what STREAM counts. Single-threaded (numpy).
    """
    if n_elements < chunk or chunk < 1:
        raise CollectorError(f"n_elements ({n_elements}) must be >= chunk ({chunk}) >= 1")
    b = np.full(n_elements, 1.0)
    c = np.full(n_elements, 2.0)
    a = np.empty(n_elements)
    tmp = np.empty(chunk)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for start in range(0, n_elements, chunk):
            stop = min(start + chunk, n_elements)
            t = tmp[: stop - start]
            np.multiply(c[start:stop], scalar, out=t)
            np.add(b[start:stop], t, out=a[start:stop])
        best = min(best, (time.perf_counter_ns() - t0) / 1e9)
    if not np.allclose(a[:: n_elements // 7 or 1], 1.0 + scalar * 2.0):
        raise CollectorError("triad check failed: a != b + s*c")
    return {"triad_gbs": 24 * n_elements / best / 1e9, "array_mb": 8 * n_elements / 1e6, "threads": 1}


def dispatch_overhead_us(device: str = "cpu", *, n: int = 2000) -> float:
    """Median per-call time of a 1-element ``torch.add`` (framework dispatch/launch overhead), us."""
    import torch

    kind, index = parse_device(device)
    dev = f"cuda:{index}" if kind == "cuda" else "cpu"
    x = torch.ones(1, device=dev)
    y = torch.ones(1, device=dev)
    out = torch.empty(1, device=dev)

    def call() -> None:
        torch.add(x, y, out=out)

    sampler = cuda_sampler(call, index) if kind == "cuda" else cpu_sampler(call)
    with torch.inference_mode():
        t = measure(
            sampler, warmup=100, number=max(1, n // 20), min_time_s=0.0, min_samples=20, max_samples=20
        )
    return t.median_s * 1e6


def gemm_throughput(device: str, *, quick: bool) -> dict[str, float]:
    """Achieved GEMM GFLOP/s per dtype (square GEMMs, the collector's median), by backend."""
    from hwsurrogate.datasets.collectors.gemm import collect_gemm

    kind, _ = parse_device(device)
    if kind == "cuda":  # pragma: no cover - needs a GPU
        size, dtypes, backend = (2048 if quick else 8192), ("fp32", "tf32", "fp16", "bf16"), "torch"
    else:
        size, dtypes, backend = (512 if quick else 1024), ("fp32", "fp64"), "numpy"
    shapes = [{"m": size, "n": size, "k": size, "dtype": d} for d in dtypes]
    frame = collect_gemm(shapes, backend=backend, device=device, min_time_s=0.2 if quick else 0.5,
                         measure_energy=False, progress=False)  # type: ignore[arg-type]  # fmt: skip
    out = {
        f"{d}": 2 * size**3 / (ms / 1e3) / 1e9
        for d, ms in zip(frame["dtype"], frame["runtime_ms"], strict=True)
    }
    if kind == "cpu":
        bf = collect_gemm([{"m": size, "n": size, "k": size, "dtype": "bf16"}], backend="torch", device=device,
                          min_time_s=0.2 if quick else 0.5, measure_energy=False, progress=False)  # fmt: skip
        out["bf16_torch"] = 2 * size**3 / (bf["runtime_ms"][0] / 1e3) / 1e9
    out["size"] = float(size)
    return out


def gpu_triad_gbs(index: int, *, n_elements: int = 1 << 26) -> float:  # pragma: no cover - needs a GPU
    """Triad ``a = b + s*c`` with one fused torch kernel on the GPU, GB/s (24 B/element)."""
    import torch

    dev = f"cuda:{index}"
    b = torch.ones(n_elements, device=dev)
    c = torch.ones(n_elements, device=dev)
    a = torch.empty(n_elements, device=dev)
    t = measure(cuda_sampler(lambda: torch.add(b, c, alpha=3.0, out=a), index), warmup=3, number=10,
                min_time_s=0.2, min_samples=5, max_samples=200)  # fmt: skip
    return 3 * 4 * n_elements / t.min_s / 1e9


# ------------------------------------------------------------------------------ collect
def collect_fingerprint(
    *,
    device: str = "cpu",
    quick: bool = False,
    threads: int | None = None,
    repeats: int | None = None,
    timer: Literal["wall", "thread_cpu"] = "wall",
    progress: bool = True,
) -> pl.DataFrame:
    """Measure this device and return one row in the ``devices`` schema (nothing is written here).

    ``quick`` shrinks the micro-benchmarks and repeats (for smoke tests). The reference
    latencies are batch 1, fp32, single-stream: on a CPU one thread unless ``threads`` says
    otherwise (the setting of ``hws bench fewshot-live``; the micro-benchmarks use ``threads``
    or torch's default). Each reference arch is timed in ``rounds`` passes through the 20 archs
    (default 8, quick 2) with a freshly built model per pass; its latency is the median over
    passes of each pass's fastest run. Other load only ever adds time and one model instance's
    memory layout can bias an arch, so this estimator makes two runs agree on a busy machine
    (the plain median of all runs is kept in the latency rows' ``extra``).
    ``timer="thread_cpu"`` (with one thread) times the reference archs with the thread's CPU
    clock, for machines shared with other jobs (recorded in the descriptors).
    """
    from hwsurrogate.datasets.collectors.dnn_latency import collect_latency

    kind, index = parse_device(device)
    if kind == "cuda":
        envmod.require_cuda(device)
    n_rep = repeats if repeats is not None else (6 if quick else 48)
    if isinstance(n_rep, bool) or not isinstance(n_rep, int) or n_rep < 1:
        raise CollectorError(f"repeats must be an integer >= 1, got {repeats!r}")
    n_rounds = min(n_rep, 2 if quick else 8)
    ref_threads = threads if threads is not None or kind == "cuda" else 1
    t_start = time.perf_counter()
    with envmod.thread_limit(threads) as n_threads:
        env = capture_environment(device, threads=n_threads)
        # micro-benchmarks first: their seconds of full load bring the CPU to its sustained clocks,
        # so the reference latencies after them do not depend on how long the machine sat idle
        micro: dict[str, Any] = {"gemm_gflops": gemm_throughput(device, quick=quick)}
        if kind == "cuda":  # pragma: no cover - needs a GPU
            micro["triad_gbs"] = gpu_triad_gbs(index, n_elements=1 << (24 if quick else 27))
        else:
            micro["triad"] = stream_triad_gbs(
                n_elements=1 << (22 if quick else 24), repeats=3 if quick else 5
            )
            micro["triad_gbs"] = micro["triad"]["triad_gbs"]
        micro["dispatch_overhead_us"] = dispatch_overhead_us(device)
        fingerprint: dict[str, dict[str, float]] = {}
        for space in ("nb201", "fbnet"):
            refs = reference_keys(space)
            lat = collect_latency(space, [k for _, k in refs], device=device, threads=ref_threads,  # type: ignore[arg-type]
                                  repeats=n_rep, warmup=2 if quick else 3, arch_indices=[i for i, _ in refs],
                                  timer=timer, rounds=n_rounds, rebuild=n_rounds > 1,
                                  estimator="round_min_median", progress=progress)  # fmt: skip
            fingerprint[space] = {
                str(i): float(ms) for i, ms in zip(lat["arch_index"], lat["latency_ms"], strict=True)
            }
    protocol = {"repeats": n_rep, "rounds": n_rounds, "rebuild_each_round": n_rounds > 1,
                "reference_threads": ref_threads if ref_threads is not None else n_threads}  # fmt: skip
    row = _row(env, kind, fingerprint, micro, quick=quick, protocol=protocol, timer=timer,
               seconds=time.perf_counter() - t_start)  # fmt: skip
    frame = pl.DataFrame([row], infer_schema_length=None)
    frame = envmod.provenance(frame, source=SOURCE, env=env, key=("device_id",))
    # one row per device: the id does not carry the timestamp, re-collecting replaces the row
    frame = frame.with_columns(
        pl.concat_str([pl.lit(SOURCE), pl.col("device_id")], separator="|").alias("measurement_id")
    )
    return conform("devices", frame, context=SOURCE)


def _row(env: Environment, kind: str, fingerprint: dict[str, dict[str, float]], micro: dict[str, Any], *,
         quick: bool, protocol: dict[str, Any], timer: str, seconds: float) -> dict[str, Any]:  # fmt: skip
    cpu = env.cpu
    descriptors: dict[str, Any] = {
        "batch": 1,  # the same top-level keys as the HELP importer's devices
        "precision": "fp32",
        "measured": True,
        "cpu": cpu.as_dict(),
        "threads": env.threads,
        "software": env.software,
        "micro_benchmarks": micro,
        "fingerprint_protocol": {
            "batch": 1,
            "precision": "fp32",
            "statistic": "median over rounds of each round's fastest run",
            "input": "3x32x32",
            "quick": quick,
            "timer": timer,
            **protocol,
        },
        "collected_in_s": seconds,
    }
    if kind == "cuda":  # pragma: no cover - needs a GPU
        gpu = env.gpu or {}
        descriptors["gpu"] = gpu
        return {
            "device_id": env.device_id,
            "kind": "gpu",
            "name": gpu.get("name", "CUDA GPU"),
            "vendor": "NVIDIA",
            "cores": gpu.get("sm_count"),
            "mem_bw_gbs": micro.get("triad_gbs"),
            "memory_gb": gpu.get("memory_gb"),
            "clock_mhz": gpu.get("max_sm_clock_mhz"),
            "l2_mb": (gpu["l2_cache_bytes"] / 1024**2) if gpu.get("l2_cache_bytes") else None,
            "descriptors": json.dumps(descriptors, sort_keys=True, default=str),
            "fingerprint": json.dumps(fingerprint, sort_keys=True),
        }
    return {
        "device_id": env.device_id,
        "kind": "cpu",
        "name": cpu.model,
        "vendor": _vendor(cpu.vendor),
        "cores": cpu.physical_cores or cpu.logical_cpus,
        "mem_bw_gbs": micro.get("triad_gbs"),
        "memory_gb": cpu.memory_gb,
        "clock_mhz": cpu.max_clock_mhz,
        "l2_mb": cpu.llc_bytes / 1024**2 if cpu.llc_bytes else None,
        "descriptors": json.dumps(descriptors, sort_keys=True, default=str),
        "fingerprint": json.dumps(fingerprint, sort_keys=True),
    }


def _vendor(raw: str) -> str:
    return {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "0x41": "ARM"}.get(raw, raw)
