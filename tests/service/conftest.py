"""Service test fixtures: fake predictors/adapter injected with dependency_overrides, a TestClient."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from hwsurrogate.client import HwsClient
from hwsurrogate.datasets.schemas import with_measurement_id
from hwsurrogate.errors import UnknownDeviceError
from hwsurrogate.service.adaptation import AdaptedInfo
from hwsurrogate.service.app import ServiceConfig, create_app
from hwsurrogate.service.deps import get_adapter, get_models
from hwsurrogate.service.served import ServedModels

TOKEN = "test-token-123"
NB201_A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
NB201_B = "|none~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"


class FakePredictor:
    """A Predictor whose outputs are closed-form functions of the inputs (the tests' oracle)."""

    def __init__(self, task: str, name: str, devices: set[str] | None = None) -> None:
        self.task = task
        self.name = name
        self.version = "7"
        self.metrics = {"test_mape": 4.2}
        self.devices = devices
        self.calls = 0

    def predict(self, queries: pl.DataFrame) -> pl.DataFrame:
        self.calls += 1
        if self.devices is not None and "device_id" in queries.columns:
            unknown = queries.filter(~pl.col("device_id").is_in(sorted(self.devices)))
            if unknown.height:
                raise UnknownDeviceError(unknown["device_id"][0], sorted(self.devices))
        if self.task == "gemm":
            flops = 2.0 * queries["m"] * queries["n"] * queries["k"] * queries["batch"]
            runtime = flops / 1e9
            return pl.DataFrame({"runtime_ms": runtime, "power_w": 100.0, "energy_j": runtime * 0.1})
        if self.task == "latency":
            return pl.DataFrame({"latency_ms": queries["arch_key"].str.len_chars().cast(pl.Float64) / 10})
        if self.task == "fpga-hls4ml":
            if (queries["part"] == "xcbogus-1").any():
                raise ValueError("part 'xcbogus-1' is not a part this model was trained on")
            n_layers = queries["model"].map_elements(
                lambda s: float(len(json.loads(s))), return_dtype=pl.Float64
            )
            return pl.DataFrame(
                {"lut": n_layers * 1000 / queries["reuse_factor"], "ff": n_layers * 10.0, "dsp": 4.0,
                 "bram": 1.0, "cycles": queries["reuse_factor"].cast(pl.Float64) * 3, "ii": 1.0}
            )  # fmt: skip
        if self.task == "fpga-hlsyn":
            n_pragmas = queries["pragmas"].map_elements(
                lambda s: float(len(json.loads(s))), return_dtype=pl.Float64
            )
            return pl.DataFrame(
                {
                    "cycles": 1000.0 + n_pragmas,
                    "lut": 5.0,
                    "ff": 6.0,
                    "dsp": 7.0,
                    "bram": 8.0,
                    "valid_prob": 0.9,
                }
            )
        raise AssertionError(self.task)


class FakeAdapter:
    """In-memory device adaptation: the adapted latency is the mean of the measurements."""

    available = True
    reason = ""

    def __init__(self) -> None:
        self.devices: dict[str, pl.DataFrame] = {}

    def adapt(self, device_id: str, measurements: pl.DataFrame) -> AdaptedInfo:
        self.devices[device_id] = measurements
        return self.get(device_id)  # type: ignore[return-value]

    def get(self, device_id: str) -> AdaptedInfo | None:
        m = self.devices.get(device_id)
        if m is None:
            return None
        return AdaptedInfo(device_id, m.height, sorted(set(m["space"])), "2026-01-01T00:00:00+00:00",
                           "hws-fewshot", "3")  # fmt: skip

    def list(self) -> list[AdaptedInfo]:
        return [self.get(d) for d in self.devices]  # type: ignore[misc]

    def predict_latency(self, device_id: str, queries: pl.DataFrame) -> pl.DataFrame:
        mean = float(self.devices[device_id]["latency_ms"].mean())  # type: ignore[arg-type]
        return pl.DataFrame({"latency_ms": [mean] * queries.height})


def fake_models() -> ServedModels:
    return ServedModels(
        predictors={
            "gemm": FakePredictor("gemm", "hws-gemm", {"gpperf/rtx4070", "local/box-cpu"}),
            "latency": FakePredictor("latency", "hws-latency", {"help/pixel2"}),
            "fpga-hls4ml": FakePredictor("fpga-hls4ml", "hws-fpga-hls4ml"),
            "fpga-hlsyn": FakePredictor("fpga-hlsyn", "hws-fpga-hlsyn"),
        }
    )


def gemm_rows(n: int, *, prefix: str = "r", device: str = "local/box-cpu") -> list[dict[str, object]]:
    return [
        {"device_id": device, "op": "gemm", "m": 8 + i, "n": 8, "k": 8, "batch": 1, "dtype": "fp32",
         "runtime_ms": 0.01 + i * 1e-4, "origin": "test", "measurement_id": f"{prefix}-{i}"}
        for i in range(n)
    ]  # fmt: skip


def latency_store_frame() -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "device_id": ["help/pixel2", "help/pixel2"],
            "space": ["nb201", "nb201"],
            "arch_index": [11, 42],
            "arch_key": [NB201_A, NB201_B],
            "batch": [1, 1],
            "precision": ["fp32", "fp32"],
            "latency_ms": [12.5, 3.25],
            "measured": [True, True],
            "source": ["help", "help"],
            "origin": ["test", "test"],
        }
    )
    return with_measurement_id(frame, "latency")


def make_client(tmp_path: Path, **config: object) -> tuple[TestClient, FakeAdapter, ServedModels]:
    app = create_app(
        ServiceConfig(store=tmp_path / "store", **{"token": TOKEN, "load_models": False, **config})
    )
    models, adapter = fake_models(), FakeAdapter()
    app.dependency_overrides[get_models] = lambda: models
    app.dependency_overrides[get_adapter] = lambda: adapter
    return TestClient(app), adapter, models


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    c, _, _ = make_client(tmp_path)
    with c:
        yield c


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (never 8000 unless the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server_process(cmd: list[str], port: int, env: Mapping[str, str]) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``cmd`` (a server binding 127.0.0.1:``port``); yield (base URL, process) once /healthz
    answers, terminate it after. A server that exits during start-up raises with its stderr."""
    proc = subprocess.Popen(cmd, env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                with HwsClient(url, timeout=1) as c:
                    c.health()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
