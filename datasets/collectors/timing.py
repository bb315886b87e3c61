"""Adaptive repeated timing shared by the GEMM and latency collectors.

A *sample* runs the operation ``number`` times back to back and returns the elapsed seconds
(perf_counter_ns on the CPU, CUDA events with synchronisation on a GPU). :func:`measure`:

1. runs ``warmup`` calls that are not timed;
2. calibrates ``number`` so one sample lasts at least ``min_sample_s`` (timer resolution and
   loop overhead then stay far below the signal), unless ``number`` is fixed;
3. takes samples until the window lasts ``min_time_s`` *and* holds ``min_samples`` samples, or
   ``max_samples`` is reached; the energy meter (if any) is read around exactly this window,
   whose minimum length is raised to the meter's ``min_window_s`` when it can read energy;
4. reports the median per-call time, the interquartile range and the window.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hwsurrogate.datasets.collectors.power import EnergyMeter, EnergyResult, NullMeter
from hwsurrogate.errors import CollectorError

RunSample = Callable[[int], float]  # number of calls -> elapsed seconds
TIMERS = ("wall", "thread_cpu")


def check_timing_options(
    device: str, *, timer: str, threads: int | None, min_time_s: float
) -> tuple[str, int]:
    """Validate the options every collector shares; returns (device kind, device index).

    ``thread_cpu`` reads the calling thread's CPU clock, which ignores time the scheduler gave
    to other processes; it only equals the op's time when the op runs on that one thread.
    """
    from hwsurrogate.datasets.collectors.environment import parse_device, require_cuda

    if not (isinstance(min_time_s, (int, float)) and math.isfinite(min_time_s) and min_time_s >= 0):
        raise CollectorError(f"min_time_s must be a finite number >= 0, got {min_time_s!r}")
    kind, index = parse_device(device)
    if kind == "cuda":
        require_cuda(device)
    if timer not in TIMERS:
        raise CollectorError(f"timer {timer!r} must be 'wall' or 'thread_cpu'")
    if timer == "thread_cpu" and (kind != "cpu" or threads != 1):
        raise CollectorError(
            "timer='thread_cpu' counts only the calling thread's CPU time: use it on the CPU with threads=1"
        )
    return kind, index


def host_clock(timer: str) -> Callable[[], int]:
    """The nanosecond clock of a CPU timer name."""
    return time.thread_time_ns if timer == "thread_cpu" else time.perf_counter_ns


@dataclass(frozen=True)
class Timing:
    """Result of :func:`measure`: per-call seconds of every sample and the energy of the window."""

    per_call_s: np.ndarray
    number: int
    window_s: float
    energy: EnergyResult

    @property
    def n_samples(self) -> int:
        return len(self.per_call_s)

    @property
    def calls(self) -> int:
        return self.number * self.n_samples

    @property
    def median_s(self) -> float:
        return float(np.median(self.per_call_s))

    @property
    def iqr_s(self) -> float:
        q1, q3 = np.percentile(self.per_call_s, [25, 75])
        return float(q3 - q1)

    @property
    def min_s(self) -> float:
        return float(np.min(self.per_call_s))

    @property
    def energy_per_call_j(self) -> float | None:
        e = self.energy.energy_j
        return e / self.calls if e is not None and self.calls else None


def calibrate_number(run_sample: RunSample, *, min_sample_s: float, max_number: int = 1 << 20) -> int:
    """Smallest power-of-two-ish call count whose sample lasts at least ``min_sample_s``."""
    number = 1
    while number < max_number:
        elapsed = run_sample(number)
        if elapsed >= min_sample_s:
            return number
        # jump towards the target, at most x10 per step (first calls can be slow outliers)
        scale = min_sample_s / elapsed if elapsed > 0 else 10.0
        number = min(max_number, max(number * 2, math.ceil(number * min(scale * 1.2, 10.0))))
    return max_number


def keep_sampling(
    n_samples: int, elapsed_s: float, *, min_time_s: float, min_samples: int, max_samples: int
) -> bool:
    """Whether the window needs another sample (pure: tested with a fake clock)."""
    if n_samples >= max_samples:
        return False
    return n_samples < min_samples or elapsed_s < min_time_s


def measure(
    run_sample: RunSample,
    *,
    warmup: int = 3,
    min_time_s: float = 0.5,
    min_sample_s: float = 1e-3,
    min_samples: int = 7,
    max_samples: int = 10_000,
    number: int | None = None,
    meter: EnergyMeter | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> Timing:
    """Time ``run_sample`` adaptively (see module doc). ``number`` fixes the calls per sample."""
    if min_samples < 1 or max_samples < min_samples:
        raise ValueError(f"need 1 <= min_samples <= max_samples, got {min_samples}, {max_samples}")
    meter = meter or NullMeter("no energy meter requested")
    if warmup > 0:
        run_sample(warmup)
    if number is None:
        number = calibrate_number(run_sample, min_sample_s=min_sample_s)
    window_target = max(min_time_s, meter.min_window_s if meter.available else 0.0)
    samples: list[float] = []
    token = meter.start()
    t0 = clock()
    elapsed = 0.0
    while keep_sampling(len(samples), elapsed, min_time_s=window_target, min_samples=min_samples,
                        max_samples=max_samples):  # fmt: skip
        samples.append(run_sample(number) / number)
        elapsed = (clock() - t0) / 1e9
    energy = meter.stop(token, elapsed)
    return Timing(np.asarray(samples, dtype=np.float64), number, elapsed, energy)


def cpu_sampler(fn: Callable[[], object], clock: Callable[[], int] = time.perf_counter_ns) -> RunSample:
    """A sample runner for host code: ``fn`` called ``number`` times, timed with perf_counter_ns."""

    def run(number: int) -> float:
        t0 = clock()
        for _ in range(number):
            fn()
        return (clock() - t0) / 1e9

    return run


def cuda_sampler(fn: Callable[[], object], device_index: int) -> RunSample:  # pragma: no cover - needs a GPU
    """A sample runner for GPU work: CUDA events around ``number`` launches, then synchronise.

    The events are recorded on the current stream, so the measured time is device time of the
    queued kernels, not host launch time; ``end.synchronize()`` bounds each sample.
    """
    import torch

    def run(number: int) -> float:
        with torch.cuda.device(device_index):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(number):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3

    return run
