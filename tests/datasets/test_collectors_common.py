"""Environment capture, energy counters (RAPL files, a fake NVML) and adaptive timing logic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hwsurrogate.datasets.collectors import environment as envmod
from hwsurrogate.datasets.collectors.power import (
    NullMeter,
    NvmlMeter,
    RaplMeter,
    counter_delta,
    decode_throttle_reasons,
)
from hwsurrogate.datasets.collectors.timing import calibrate_number, keep_sampling, measure
from hwsurrogate.errors import CollectorError

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6226 CPU @ 2.70GHz
cpu MHz\t\t: 2700.000
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni
processor\t: 1
cpu MHz\t\t: 2900.000
physical id\t: 0
core id\t\t: 0
"""


# ------------------------------------------------------------------------------ environment
def test_local_device_id_uses_sanitised_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envmod.socket, "gethostname", lambda: "Build_Box.example.org")
    assert envmod.local_device_id("cpu") == "local/build_box-cpu"
    assert envmod.local_device_id("cuda") == "local/build_box-cuda0"
    assert envmod.local_device_id("cuda:2") == "local/build_box-cuda2"


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "gpu0", ""])
def test_unknown_device_is_rejected_by_name(bad: str) -> None:
    with pytest.raises(CollectorError, match="device"):
        envmod.parse_device(bad)


def test_cuda_without_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(CollectorError, match="no CUDA GPU"):
        envmod.require_cuda("cuda")


def test_parse_cpuinfo_reads_model_flags_cores_and_clock() -> None:
    info = envmod.parse_cpuinfo(CPUINFO)
    assert info["model"] == "Intel(R) Xeon(R) Gold 6226 CPU @ 2.70GHz"
    assert info["vendor"] == "GenuineIntel"
    assert {"avx512f", "avx512_vnni"} <= info["flags"]
    assert info["mhz"] == [2700.0, 2900.0]
    assert info["physical_cores"] == 1  # two hyper-threads of one core


def test_parse_size_units() -> None:
    assert envmod.parse_size("32768K") == 32 * 1024**2
    assert envmod.parse_size("1M") == 1024**2
    assert envmod.parse_size("512") == 512
    with pytest.raises(ValueError, match="cache size"):
        envmod.parse_size("lots")


def test_read_caches_from_sysfs_layout(tmp_path: Path) -> None:
    for i, (level, kind, size) in enumerate(
        [(1, "Data", "48K"), (1, "Instruction", "32K"), (3, "Unified", "32768K")]
    ):
        d = tmp_path / "cache" / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(kind)
        (d / "size").write_text(size)
        (d / "shared_cpu_list").write_text("0-3")
    caches = envmod.read_caches(tmp_path)
    cpu = envmod.CpuInfo("x", "y", 4, 4, None, caches)
    assert cpu.llc_bytes == 32 * 1024**2
    assert caches[2].shared_by_cpus == 4


def test_thread_limit_sets_and_restores_torch_threads() -> None:
    before = torch.get_num_threads()
    with envmod.thread_limit(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(CollectorError, match="threads"):
        with envmod.thread_limit(0):
            pass


def test_environment_records_library_versions_and_cpu() -> None:
    env = envmod.capture_environment("cpu", threads=1)
    software = json.loads(env.software_json())
    assert {"python", "numpy", "torch", "polars"} <= set(software)
    assert software["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert env.device_id.endswith("-cpu") and env.threads == 1
    assert env.cpu.logical_cpus >= 1


def test_optional_module_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(CollectorError, match=r"pip install 'hwsurrogate\[onnx\]'"):
        envmod.optional_module("onnxruntime", extra="onnx", purpose="measuring x.onnx")


# ------------------------------------------------------------------------------ RAPL
def _rapl(root: Path, name: str, energy: int, max_range: int = 1000) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text("package-0")
    (d / "energy_uj").write_text(str(energy))
    (d / "max_energy_range_uj").write_text(str(max_range))
    return d


def test_counter_delta_handles_wraparound() -> None:
    assert counter_delta(100, 400, 1000) == 300
    assert counter_delta(900, 100, 1000) == 200


def test_rapl_meter_reads_package_delta_across_a_wrap(tmp_path: Path) -> None:
    pkg = _rapl(tmp_path, "intel-rapl:0", 900_000, max_range=1_000_000)
    _rapl(tmp_path, "intel-rapl:0:0", 5)  # a core sub-domain: must not be counted twice
    meter = RaplMeter(tmp_path)
    assert meter.available and [d.name for d in meter.domains] == ["package-0"]
    token = meter.start()
    (pkg / "energy_uj").write_text("400000")  # wrapped: 100000 to the top, 400000 after
    res = meter.stop(token, window_s=0.5)
    assert res.energy_j == pytest.approx(0.5)
    assert res.power_w == pytest.approx(1.0)
    assert res.method.startswith("rapl:package-0") and res.trusted is True


def test_rapl_meter_without_counters_gives_a_reason(tmp_path: Path) -> None:
    assert RaplMeter(tmp_path / "absent").reason.startswith("no readable RAPL counter")
    bad = tmp_path / "root"
    (bad / "intel-rapl:0" / "energy_uj").mkdir(parents=True)  # unreadable as a counter
    meter = RaplMeter(bad)
    assert not meter.available
    res = meter.stop((), 1.0)
    assert res.energy_j is None and res.power_w is None
    assert res.method.startswith("unavailable: no readable RAPL counter")


# ------------------------------------------------------------------------------ NVML (fake)
class FakeNvml:
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, energies: list[int] | None, throttle: int = 0x4 | 0x40) -> None:
        self.energies = energies
        self.throttle = throttle

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:  # noqa: N802 (NVML's names)
        return f"gpu{index}"

    def nvmlDeviceGetTotalEnergyConsumption(self, h: str) -> int:  # noqa: N802
        if self.energies is None:
            raise RuntimeError("NVMLError_NotSupported")
        return self.energies.pop(0) if len(self.energies) > 1 else self.energies[0]

    def nvmlDeviceGetPowerManagementLimit(self, h: str) -> int:  # noqa: N802
        return 300_000

    def nvmlDeviceGetClockInfo(self, h: str, which: int) -> int:  # noqa: N802
        return 1800 if which == self.NVML_CLOCK_SM else 9000

    def nvmlDeviceGetTemperature(self, h: str, which: int) -> int:  # noqa: N802
        return 61

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: str) -> int:  # noqa: N802
        return self.throttle


def test_nvml_meter_energy_delta_clocks_and_throttle_reasons() -> None:
    fake = FakeNvml([1_000, 1_000, 3_500])  # construction probe, start, stop (mJ)
    meter = NvmlMeter(0, nvml=fake)
    token = meter.start()
    res = meter.stop(token, window_s=1.25)
    assert res.energy_j == pytest.approx(2.5)
    assert res.power_w == pytest.approx(2.0)
    assert res.trusted is True
    after = res.details["nvml_after"]
    assert after["power_limit_w"] == 300.0 and after["sm_clock_mhz"] == 1800 and after["temperature_c"] == 61
    assert after["throttle_reasons"] == ["sw_power_cap", "hw_thermal_slowdown"]


def test_nvml_short_window_is_marked_untrusted() -> None:
    meter = NvmlMeter(0, nvml=FakeNvml([0, 0, 100]))
    assert meter.stop(meter.start(), window_s=0.2).trusted is False


def test_nvml_without_energy_counter_reports_unavailable() -> None:
    meter = NvmlMeter(0, nvml=FakeNvml(None))
    assert not meter.available
    res = meter.stop(meter.start(), window_s=2.0)
    assert res.energy_j is None and res.method.startswith(
        "unavailable: NVML total-energy counter not supported"
    )


def test_decode_throttle_reasons_keeps_unknown_bits() -> None:
    assert decode_throttle_reasons(0x1 | 0x10000) == ["gpu_idle", "0x10000"]
    assert decode_throttle_reasons(None) == []


# ------------------------------------------------------------------------------ timing
class FakeClock:
    """A clock that only advances when the fake operation 'runs'."""

    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def _fake_sampler(clock: FakeClock, per_call_s: float):
    calls: list[int] = []

    def run(number: int) -> float:
        calls.append(number)
        clock.ns += int(number * per_call_s * 1e9)
        return number * per_call_s

    return run, calls


def test_calibrate_number_reaches_min_sample_time() -> None:
    clock = FakeClock()
    run, _ = _fake_sampler(clock, 1e-5)
    number = calibrate_number(run, min_sample_s=1e-3)
    assert number * 1e-5 >= 1e-3 and number <= 400


def test_keep_sampling_rules() -> None:
    assert keep_sampling(3, 10.0, min_time_s=1.0, min_samples=5, max_samples=100)  # too few samples
    assert keep_sampling(10, 0.5, min_time_s=1.0, min_samples=5, max_samples=100)  # window too short
    assert not keep_sampling(10, 1.0, min_time_s=1.0, min_samples=5, max_samples=100)
    assert not keep_sampling(100, 0.1, min_time_s=1.0, min_samples=5, max_samples=100)  # cap


def test_measure_adapts_repetitions_until_the_window_is_long_enough() -> None:
    clock = FakeClock()
    run, calls = _fake_sampler(clock, 1e-3)
    t = measure(run, warmup=2, min_time_s=1.0, min_sample_s=1e-2, min_samples=5, clock=clock)
    assert t.number == 10  # 10 calls of 1 ms make a 10 ms sample
    assert t.n_samples == 100 and t.window_s == pytest.approx(1.0)
    assert t.median_s == pytest.approx(1e-3) and t.iqr_s == pytest.approx(0.0)
    assert calls[0] == 2  # the warm-up ran first, untimed


def test_measure_stretches_the_window_for_an_energy_meter() -> None:
    clock = FakeClock()
    run, _ = _fake_sampler(clock, 1e-3)
    fake = FakeNvml([0, 0, 2_000])
    meter = NvmlMeter(0, nvml=fake)  # needs >= 1 s windows
    t = measure(run, warmup=0, min_time_s=0.1, number=10, min_samples=3, meter=meter, clock=clock)
    assert t.window_s >= 1.0 and t.n_samples == 100
    assert t.energy.energy_j == pytest.approx(2.0)
    assert t.energy_per_call_j == pytest.approx(2.0 / 1000)


def test_measure_without_meter_reports_unavailable_energy() -> None:
    clock = FakeClock()
    run, _ = _fake_sampler(clock, 1e-3)
    t = measure(run, warmup=0, number=1, min_time_s=0, min_samples=3, max_samples=3, clock=clock,
                meter=NullMeter("test"))  # fmt: skip
    assert t.n_samples == 3 and t.energy_per_call_j is None and t.energy.method == "unavailable: test"


def test_nvml_meter_prefers_the_pci_bus_id_over_the_cuda_index() -> None:
    class PciNvml(FakeNvml):
        def nvmlDeviceGetHandleByPciBusId_v2(self, bus: str) -> str:  # noqa: N802
            return f"pci:{bus}"

    meter = NvmlMeter(0, nvml=PciNvml([0]), pci_bus_id="0000:3b:00.0")
    assert meter.handle == "pci:0000:3b:00.0"
    assert NvmlMeter(1, nvml=PciNvml([0])).handle == "gpu1"  # no bus id: NVML index


def test_cuda_on_a_cpu_only_torch_says_how_to_get_a_cuda_build() -> None:
    if torch.version.cuda is not None:
        pytest.skip("this torch is a CUDA build")
    with pytest.raises(CollectorError, match="CPU-only build.*CUDA build of torch"):
        envmod.require_cuda("cuda")
