"""Energy counters read around a timed window: RAPL on CPUs, NVML on NVIDIA GPUs.

Only counters are read, before and after the window; nothing is estimated. When no counter
is readable the meter says why (``EnergyResult.method`` starts with ``unavailable:``) and
power/energy stay null.

- :class:`RaplMeter` reads ``/sys/class/powercap/<intel-rapl:N>/energy_uj`` of every
  top-level (package) domain and handles wraparound with ``max_energy_range_uj``. The package
  counter includes every process on that package, so the method string says so.
- :class:`NvmlMeter` reads ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load) and
  records power limit, SM/memory clocks, temperature and throttle reasons before and after.
  Windows must last at least :attr:`NvmlMeter.min_window_s` (1 s): the counter updates at a
  few tens of Hz, so shorter windows are dominated by its resolution.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

POWERCAP_ROOT = Path("/sys/class/powercap")
_TOP_DOMAIN = re.compile(r"^[a-z-]*rapl:\d+$")  # intel-rapl:0 (package), not intel-rapl:0:0 (core)

#: NVML clock-throttle / clock-event reason bits (nvml.h) and their names.
THROTTLE_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def decode_throttle_reasons(mask: int | None) -> list[str]:
    """Names of the bits set in an NVML throttle-reason mask (unknown bits as hex)."""
    if mask is None:
        return []
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    rest = mask & ~sum(THROTTLE_REASONS)
    if rest:
        names.append(hex(rest))
    return names


@dataclass(frozen=True)
class EnergyResult:
    """Energy over one timed window; ``energy_j``/``power_w`` are None when nothing was readable."""

    energy_j: float | None
    power_w: float | None
    method: str
    trusted: bool | None
    details: dict[str, Any] = field(default_factory=dict)


class EnergyMeter(Protocol):
    min_window_s: float

    @property
    def available(self) -> bool: ...

    def start(self) -> Any: ...

    def stop(self, token: Any, window_s: float) -> EnergyResult: ...


class NullMeter:
    """No counter: every result is null power with the reason."""

    min_window_s = 0.0

    def __init__(self, reason: str) -> None:
        self.reason = reason

    @property
    def available(self) -> bool:
        return False

    def start(self) -> None:
        return None

    def stop(self, token: Any, window_s: float) -> EnergyResult:
        return EnergyResult(None, None, f"unavailable: {self.reason}", None)


# ------------------------------------------------------------------------------------ RAPL
@dataclass(frozen=True)
class RaplDomain:
    name: str
    energy_path: Path
    max_range_uj: int


def counter_delta(before: int, after: int, max_range: int) -> int:
    """Increase of a counter that wraps to 0 after ``max_range`` (at most one wrap per window)."""
    if after >= before:
        return after - before
    return after + max_range - before


class RaplMeter:
    """Package energy from the Linux powercap RAPL interface (Intel, and AMD on recent kernels)."""

    min_window_s = 0.1  # RAPL updates about every ms; shorter windows are mostly quantisation

    def __init__(self, root: Path = POWERCAP_ROOT) -> None:
        self.root = Path(root)
        self.domains: list[RaplDomain] = []
        self.reason = ""
        self.power_limit_w: float | None = None
        self._discover()

    def _discover(self) -> None:
        if not self.root.is_dir():
            self.reason = f"no readable RAPL counter ({self.root} does not exist)"
            return
        candidates = sorted(p for p in self.root.iterdir() if _TOP_DOMAIN.match(p.name))
        if not candidates:
            self.reason = f"no readable RAPL counter (no package domain under {self.root})"
            return
        problems: list[str] = []
        limits: list[float] = []
        for d in candidates:
            try:
                int((d / "energy_uj").read_text())
                max_range = int((d / "max_energy_range_uj").read_text())
            except PermissionError:
                problems.append(f"{d.name}/energy_uj: permission denied (root or a udev rule needed)")
                continue
            except (OSError, ValueError) as exc:
                problems.append(f"{d.name}/energy_uj: {type(exc).__name__}")
                continue
            name = (d / "name").read_text().strip() if (d / "name").exists() else d.name
            self.domains.append(RaplDomain(name, d / "energy_uj", max_range))
            with contextlib.suppress(OSError, ValueError):
                limits.append(int((d / "constraint_0_power_limit_uw").read_text()) / 1e6)
        if not self.domains:
            self.reason = "no readable RAPL counter (" + "; ".join(problems) + ")"
        elif limits and all(x > 0 for x in limits):
            self.power_limit_w = sum(limits)

    @property
    def available(self) -> bool:
        return bool(self.domains)

    def start(self) -> tuple[int, ...]:
        return tuple(int(d.energy_path.read_text()) for d in self.domains)

    def stop(self, token: tuple[int, ...], window_s: float) -> EnergyResult:
        if not self.available:
            return EnergyResult(None, None, f"unavailable: {self.reason}", None)
        after = self.start()
        uj = sum(
            counter_delta(b, a, d.max_range_uj) for b, a, d in zip(token, after, self.domains, strict=True)
        )
        energy = uj / 1e6
        names = ",".join(d.name for d in self.domains)
        return EnergyResult(
            energy_j=energy,
            power_w=energy / window_s if window_s > 0 and energy > 0 else None,
            method=f"rapl:{names} counter delta over {window_s:.2f} s (whole package, includes other processes)",
            trusted=window_s >= self.min_window_s,
            details={"rapl_domains": names, "window_s": window_s, "rapl_power_limit_w": self.power_limit_w},
        )


# ------------------------------------------------------------------------------------ NVML
@dataclass(frozen=True)
class NvmlSnapshot:
    energy_mj: int | None
    power_limit_w: float | None
    sm_clock_mhz: float | None
    mem_clock_mhz: float | None
    temperature_c: float | None
    throttle_mask: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "power_limit_w": self.power_limit_w,
            "sm_clock_mhz": self.sm_clock_mhz,
            "mem_clock_mhz": self.mem_clock_mhz,
            "temperature_c": self.temperature_c,
            "throttle_reasons": decode_throttle_reasons(self.throttle_mask),
        }


def _try(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # NVMLError_NotSupported and friends: the field stays unknown
        return None


class NvmlMeter:
    """Total-energy counter and clocks of one NVIDIA GPU via NVML (nvidia-ml-py).

    ``nvml`` is the ``pynvml`` module; tests pass a fake with the same functions.
    """

    min_window_s = 1.0

    def __init__(self, index: int = 0, nvml: Any | None = None, *, pci_bus_id: str | None = None) -> None:
        if nvml is None:
            import pynvml as nvml  # nvidia-ml-py

            nvml.nvmlInit()
        self.nvml = nvml
        # CUDA and NVML number GPUs differently under CUDA_VISIBLE_DEVICES: prefer the PCI bus id
        handle = _try(getattr(nvml, "nvmlDeviceGetHandleByPciBusId_v2", None) or (lambda _: None), pci_bus_id) \
            if pci_bus_id else None  # fmt: skip
        self.handle = handle if handle is not None else nvml.nvmlDeviceGetHandleByIndex(index)
        self.reason = ""
        if _try(nvml.nvmlDeviceGetTotalEnergyConsumption, self.handle) is None:
            self.reason = "NVML total-energy counter not supported on this GPU (needs Volta or newer)"

    @property
    def available(self) -> bool:
        return not self.reason

    def snapshot(self) -> NvmlSnapshot:
        n, h = self.nvml, self.handle
        limit = _try(n.nvmlDeviceGetPowerManagementLimit, h)
        reasons_fn = getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            n, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        return NvmlSnapshot(
            energy_mj=_try(n.nvmlDeviceGetTotalEnergyConsumption, h),
            power_limit_w=limit / 1000 if limit else None,
            sm_clock_mhz=_try(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_SM),
            mem_clock_mhz=_try(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_MEM),
            temperature_c=_try(n.nvmlDeviceGetTemperature, h, n.NVML_TEMPERATURE_GPU),
            throttle_mask=_try(reasons_fn, h) if reasons_fn else None,
        )

    def start(self) -> NvmlSnapshot:
        return self.snapshot()

    def stop(self, token: NvmlSnapshot, window_s: float) -> EnergyResult:
        after = self.snapshot()
        details = {"nvml_before": token.as_dict(), "nvml_after": after.as_dict(), "window_s": window_s}
        if token.energy_mj is None or after.energy_mj is None:
            reason = self.reason or "NVML energy counter could not be read"
            return EnergyResult(None, None, f"unavailable: {reason}", None, details)
        energy = (after.energy_mj - token.energy_mj) / 1000
        if energy < 0:  # driver reloaded mid-window: the counter restarted
            return EnergyResult(None, None, "unavailable: NVML energy counter went backwards", None, details)
        return EnergyResult(
            energy_j=energy,
            power_w=energy / window_s if window_s > 0 and energy > 0 else None,
            method=f"nvml:total_energy_consumption delta over {window_s:.2f} s",
            trusted=window_s >= self.min_window_s,
            details=details,
        )


def cpu_meter() -> EnergyMeter:
    """The RAPL meter when a package counter is readable, else a NullMeter carrying the reason."""
    meter = RaplMeter()
    return meter if meter.available else NullMeter(meter.reason)


def cuda_meter(index: int) -> EnergyMeter:
    """The NVML meter of GPU ``index``, or a NullMeter saying why it is unavailable."""
    try:
        meter = NvmlMeter(index, pci_bus_id=_pci_bus_id(index))
    except Exception as exc:  # no driver, nvidia-ml-py missing, no permission
        return NullMeter(f"NVML not usable ({type(exc).__name__}: {exc})")
    return meter if meter.available else NullMeter(meter.reason)


def _pci_bus_id(index: int) -> str | None:  # pragma: no cover - needs a GPU
    """'0000:3b:00.0' of CUDA device ``index`` (torch's properties), or None when unknown."""
    with contextlib.suppress(Exception):
        import torch

        p = torch.cuda.get_device_properties(index)
        return f"{p.pci_domain_id:04x}:{p.pci_bus_id:02x}:{p.pci_device_id:02x}.0"
    return None


def cpu_temperature_c() -> float | None:
    """Package temperature from hwmon (coretemp / k10temp / zenpower), or None."""
    for hw in sorted(Path("/sys/class/hwmon").glob("hwmon*")):
        with contextlib.suppress(OSError, ValueError):
            if (hw / "name").read_text().strip() in ("coretemp", "k10temp", "zenpower", "cpu_thermal"):
                return int((hw / "temp1_input").read_text()) / 1000
    return None
