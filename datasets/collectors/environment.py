"""What every collector records about the machine it measures on.

One place captures the environment (host, device id, library versions, CPU model, caches,
ISA flags, clocks, threads) so that rows from different machines are comparable. The GEMM,
latency, fingerprint and FPGA collectors all call :func:`capture_environment` and
:func:`provenance`; nothing here measures performance.

Device ids are source-qualified: ``local/<hostname>-cpu`` and ``local/<hostname>-cuda<i>``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import platform
import re
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import polars as pl

from hwsurrogate.cluster import node_id
from hwsurrogate.errors import CollectorError

DeviceName = Literal["cpu", "cuda"]

#: Libraries whose versions go into every row's ``software`` JSON (only those importable).
TRACKED_LIBRARIES: tuple[str, ...] = (
    "numpy",
    "torch",
    "polars",
    "onnxruntime",
    "threadpoolctl",
    "pynvml",
)

#: ISA flags that matter for ML kernels (the full flag list is long and mostly irrelevant).
ISA_FLAGS: tuple[str, ...] = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile", "neon", "asimd",
    "sve", "sve2",
)  # fmt: skip

_CPU_SYS = Path("/sys/devices/system/cpu")


def hostname() -> str:
    """This machine's short host name, lower-cased and safe for ids ('-' for odd characters)."""
    raw = socket.gethostname().split(".")[0].lower() or "localhost"
    return re.sub(r"[^a-z0-9_-]+", "-", raw)


def parse_device(device: str) -> tuple[DeviceName, int]:
    """``'cpu'`` -> ('cpu', 0); ``'cuda'`` / ``'cuda:1'`` -> ('cuda', 1); anything else is an error."""
    dev = device.strip().lower()
    if dev == "cpu":
        return "cpu", 0
    m = re.fullmatch(r"cuda(?::(\d+))?", dev)
    if not m:
        raise CollectorError(f"device {device!r} is not supported; use 'cpu', 'cuda' or 'cuda:<index>'")
    return "cuda", int(m.group(1) or 0)


def local_device_id(device: str) -> str:
    """The store's device id for a local device: ``local/<host>-cpu`` or ``local/<host>-cuda0``."""
    kind, index = parse_device(device)
    return f"local/{hostname()}-cpu" if kind == "cpu" else f"local/{hostname()}-cuda{index}"


def require_cuda(device: str) -> int:
    """The CUDA index of ``device`` after checking torch sees that GPU (CollectorError otherwise)."""
    kind, index = parse_device(device)
    if kind != "cuda":
        raise CollectorError(f"device {device!r} is not a CUDA device")
    import torch

    if not torch.cuda.is_available():
        if torch.version.cuda is None:  # the README's set-up installs the CPU wheel
            how = (
                f"torch {torch.__version__} sees no CUDA GPU: it is a CPU-only build. On a machine with an NVIDIA "
                "driver, install a CUDA build of torch (>=2.4,<2.14) from the CUDA index that matches the driver "
                "(https://pytorch.org/get-started/locally/) before `pip install -e .`"
            )
        else:
            how = f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA GPU: no driver or no visible device"
        raise CollectorError(f"device={device!r}: {how}; or use device='cpu'")
    if index >= torch.cuda.device_count():
        raise CollectorError(
            f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible"
        )
    return index


# ---------------------------------------------------------------------------------- software
def library_versions() -> dict[str, str]:
    """Versions of python and of the tracked libraries that are importable (not imported here)."""
    from importlib import metadata

    out = {"python": platform.python_version(), "hwsurrogate": _version("hwsurrogate")}
    for name in TRACKED_LIBRARIES:
        dist = {"pynvml": "nvidia-ml-py"}.get(name, name)
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    blas = blas_info()
    if blas:
        out["blas"] = blas
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if getattr(torch.version, "cuda", None):
            out["cuda"] = str(torch.version.cuda)
        with contextlib.suppress(Exception):
            if torch.backends.cudnn.is_available():
                out["cudnn"] = str(torch.backends.cudnn.version())
    return out


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


@lru_cache(maxsize=1)
def blas_info() -> str:
    """The BLAS behind numpy as 'openblas 0.3.x (Haswell, pthreads)', or '' when unknown."""
    try:
        import numpy  # noqa: F401  (loads its BLAS so threadpoolctl can see it)
        from threadpoolctl import threadpool_info

        for lib in threadpool_info():
            if lib.get("user_api") == "blas":
                arch = lib.get("architecture") or ""
                layer = lib.get("threading_layer") or ""
                return f"{lib.get('internal_api')} {lib.get('version')} ({arch}, {layer})".replace(
                    " (, )", ""
                )
    except Exception:  # threadpoolctl is optional; this is informational only
        return ""
    return ""


def blas_threads() -> int | None:
    """Threads numpy's BLAS uses right now (threadpoolctl), or None when unknown."""
    try:
        from threadpoolctl import threadpool_info

        return next(
            (int(lib["num_threads"]) for lib in threadpool_info() if lib.get("user_api") == "blas"), None
        )
    except Exception:  # threadpoolctl is optional
        return None


# ---------------------------------------------------------------------------------- CPU
@dataclass(frozen=True)
class CacheLevel:
    level: int
    kind: str  # Data | Instruction | Unified
    size_bytes: int
    shared_by_cpus: int | None = None


@dataclass(frozen=True)
class CpuInfo:
    model: str
    vendor: str
    logical_cpus: int
    physical_cores: int | None
    max_clock_mhz: float | None
    caches: tuple[CacheLevel, ...] = ()
    isa_flags: tuple[str, ...] = ()
    memory_gb: float | None = None

    @property
    def llc_bytes(self) -> int | None:
        """Size of the last-level cache (largest level, data/unified), if the kernel reports it."""
        data = [c for c in self.caches if c.kind != "Instruction"]
        if not data:
            return None
        top = max(c.level for c in data)
        return max(c.size_bytes for c in data if c.level == top)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "vendor": self.vendor,
            "logical_cpus": self.logical_cpus,
            "physical_cores": self.physical_cores,
            "max_clock_mhz": self.max_clock_mhz,
            "caches": [
                {
                    "level": c.level,
                    "type": c.kind,
                    "size_bytes": c.size_bytes,
                    "shared_by_cpus": c.shared_by_cpus,
                }
                for c in self.caches
            ],
            "llc_bytes": self.llc_bytes,
            "isa_flags": list(self.isa_flags),
            "memory_gb": self.memory_gb,
        }


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def parse_size(text: str) -> int:
    """'32768K' / '1M' / '48 KiB' / '512' -> bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", text, flags=re.IGNORECASE)
    if not m:
        raise ValueError(f"cache size {text!r} is not like '32768K'")
    scale = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2).upper()]
    return int(m.group(1)) * scale


def _cpulist_len(text: str) -> int:
    n = 0
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            n += int(b) - int(a) + 1
        elif part:
            n += 1
    return n


def read_caches(cpu_dir: Path = _CPU_SYS / "cpu0") -> tuple[CacheLevel, ...]:
    """The caches of one CPU from sysfs (empty when sysfs does not expose them)."""
    out: list[CacheLevel] = []
    for idx in sorted((cpu_dir / "cache").glob("index*")):
        level, kind, size = (_read(idx / f) for f in ("level", "type", "size"))
        if not (level and kind and size):
            continue
        shared = _read(idx / "shared_cpu_list")
        with contextlib.suppress(ValueError):
            out.append(
                CacheLevel(int(level), kind, parse_size(size), _cpulist_len(shared) if shared else None)
            )
    return tuple(out)


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Model name, vendor, flags, physical core count and current MHz from /proc/cpuinfo text."""
    model = vendor = ""
    flags: set[str] = set()
    mhz: list[float] = []
    cores: set[tuple[str, str]] = set()
    phys = core = ""
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, _, value = (s.strip() for s in line.partition(":"))
        if key in ("model name", "Model", "Hardware") and not model:
            model = value
        elif key in ("vendor_id", "CPU implementer") and not vendor:
            vendor = value
        elif key in ("flags", "Features"):
            flags.update(value.split())
        elif key == "cpu MHz":
            with contextlib.suppress(ValueError):
                mhz.append(float(value))
        elif key == "physical id":
            phys = value
        elif key == "core id":
            core = value
            cores.add((phys, core))
    return {
        "model": model,
        "vendor": vendor,
        "flags": flags,
        "mhz": mhz,
        "physical_cores": len(cores) or None,
    }


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """Static description of this machine's CPU (model, cores, caches, ISA flags, memory)."""
    parsed = parse_cpuinfo(_read(Path("/proc/cpuinfo")) or "")
    model = parsed["model"] or platform.processor() or platform.machine()
    max_khz = _read(_CPU_SYS / "cpu0" / "cpufreq" / "cpuinfo_max_freq")
    max_mhz = float(max_khz) / 1000 if max_khz else (max(parsed["mhz"]) if parsed["mhz"] else None)
    mem_gb = None
    meminfo = _read(Path("/proc/meminfo")) or ""
    m = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
    if m:
        mem_gb = int(m.group(1)) / 1024**2
    return CpuInfo(
        model=model,
        vendor=parsed["vendor"] or platform.machine(),
        logical_cpus=os.cpu_count() or 1,
        physical_cores=parsed["physical_cores"],
        max_clock_mhz=max_mhz,
        caches=read_caches(),
        isa_flags=tuple(f for f in ISA_FLAGS if f in parsed["flags"]),
        memory_gb=mem_gb,
    )


def cpu_clock_mhz() -> float | None:
    """Mean current core clock over all CPUs (scaling_cur_freq, else /proc/cpuinfo), or None."""
    vals: list[float] = []
    for f in _CPU_SYS.glob("cpu[0-9]*/cpufreq/scaling_cur_freq"):
        txt = _read(f)
        if txt and txt.isdigit():
            vals.append(int(txt) / 1000)
    if not vals:
        vals = parse_cpuinfo(_read(Path("/proc/cpuinfo")) or "")["mhz"]
    return sum(vals) / len(vals) if vals else None


def available_memory_bytes() -> int | None:
    m = re.search(r"MemAvailable:\s+(\d+) kB", _read(Path("/proc/meminfo")) or "")
    return int(m.group(1)) * 1024 if m else None


# ---------------------------------------------------------------------------------- GPU
def gpu_info(index: int) -> dict[str, Any]:
    """Static description of CUDA device ``index`` from torch and, when available, NVML."""
    import torch

    props = torch.cuda.get_device_properties(index)
    info: dict[str, Any] = {
        "name": props.name,
        "sm_count": props.multi_processor_count,
        "memory_gb": props.total_memory / 1024**3,
        "compute_capability": f"{props.major}.{props.minor}",
        "l2_cache_bytes": getattr(props, "L2_cache_size", None),
    }
    with contextlib.suppress(Exception):
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        info["driver"] = _text(pynvml.nvmlSystemGetDriverVersion())
        info["max_sm_clock_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
        info["max_mem_clock_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
        info["power_limit_w"] = pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000
        info["memory_bus_width_bits"] = pynvml.nvmlDeviceGetMemoryBusWidth(handle)
    return info


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------------------- threads
@contextlib.contextmanager
def thread_limit(threads: int | None) -> Iterator[int]:
    """Limit numpy's BLAS and torch to ``threads`` threads inside the block; yields the count in use.

    ``None`` keeps the current setting (torch's default: one per core).
    """
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise CollectorError(f"threads must be a positive integer or None, got {threads!r}")
    import torch

    before = torch.get_num_threads()
    if threads is None:
        yield before
        return
    limiter = contextlib.nullcontext()
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=threads)
    with limiter:
        torch.set_num_threads(threads)
        try:
            yield threads
        finally:
            torch.set_num_threads(before)


# ---------------------------------------------------------------------------------- environment
@dataclass(frozen=True)
class Environment:
    """Everything a row needs to be compared with rows from another machine."""

    host: str
    device_id: str
    device: str
    threads: int
    software: dict[str, str]
    cpu: CpuInfo
    gpu: dict[str, Any] | None = None
    cpu_clock_mhz: float | None = None
    collected_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    ray_node_id: str | None = None  # the Ray node that measured (``--ray``); None outside Ray

    def software_json(self) -> str:
        return json.dumps(self.software, sort_keys=True)

    def summary(self) -> dict[str, Any]:
        """Compact JSON-able context for a row's ``extra`` column."""
        out: dict[str, Any] = {
            "host": self.host,
            "cpu_model": self.cpu.model,
            "threads": self.threads,
            "cpu_clock_mhz": self.cpu_clock_mhz,
        }
        if self.gpu:
            out["gpu"] = self.gpu.get("name")
            out["driver"] = self.gpu.get("driver")
        if self.ray_node_id:
            out["ray_node_id"] = self.ray_node_id
        return out


def capture_environment(device: str = "cpu", *, threads: int | None = None) -> Environment:
    """Snapshot of host, device id, library versions, CPU/GPU description and current clocks."""
    kind, index = parse_device(device)
    gpu = None
    if kind == "cuda":
        gpu = gpu_info(require_cuda(device))
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    return Environment(
        host=hostname(),
        device_id=local_device_id(device),
        device=f"cuda:{index}" if kind == "cuda" else "cpu",
        threads=threads,
        software=library_versions(),
        cpu=cpu_info(),
        gpu=gpu,
        cpu_clock_mhz=cpu_clock_mhz(),
        ray_node_id=node_id(),
    )


def provenance(frame: pl.DataFrame, *, source: str, env: Environment, key: tuple[str, ...]) -> pl.DataFrame:
    """Add source/origin/license and a measurement_id unique to this collection run.

    ``imported_at`` is set to now (the frame is ready to store). The id joins the source, the row's natural ``key`` columns and the collection timestamp,
    so re-measuring the same shape later adds a row while re-uploading the same frame does not.
    """
    stamp = env.collected_at.isoformat()
    parts = [pl.lit(source)] + [pl.col(c).cast(pl.String).fill_null("") for c in key] + [pl.lit(stamp)]
    return frame.with_columns(
        pl.lit(source).alias("source"),
        pl.lit(env.host).alias("origin"),
        pl.lit(datetime.now(UTC), dtype=pl.Datetime("us", "UTC")).alias("imported_at"),
        pl.concat_str(parts, separator="|").alias("measurement_id"),
    )


def optional_module(name: str, *, extra: str, purpose: str) -> Any:
    """Import ``name`` or raise CollectorError saying how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise CollectorError(
            f"{purpose} needs the '{name}' package, which is not installed; "
            f"install it with `pip install 'hwsurrogate[{extra}]'` (or `pip install {name}`)"
        ) from None
