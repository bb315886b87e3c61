"""Without ``--ray`` nothing changes: the command line and a normal prediction never import Ray."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # trains a tiny model in a fresh process (~10-30 s)


def test_without_ray_the_cli_and_a_normal_predict_never_import_ray(tmp_path: Path) -> None:
    """`import hwsurrogate.cli`, `hws --help` and a real `hws predict gemm` leave ray unimported."""
    script = f"""
import sys, polars as pl
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
import hwsurrogate.cli
assert "ray" not in sys.modules, "import hwsurrogate.cli imported ray"
from tests.surrogates.gemm_factories import devices_frame, gemm_rows
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.surrogates.training.gemm import GemmTrainConfig, train_gemm_model
store = DatasetStore({str(tmp_path / "store")!r})
store.replace("devices", devices_frame(), partition="t")
store.replace("gemm", gemm_rows("test/gpu-a", 80), partition="t")
train_gemm_model(store, GemmTrainConfig(max_iter=5))
try:
    hwsurrogate.cli.main(["predict", "gemm", "--device", "test/gpu-a", "-m", "64", "-n", "64", "-k", "64",
                          "--store", {str(tmp_path / "store")!r}, "--json"])
except SystemExit as exc:
    assert not exc.code, exc.code
assert "ray" not in sys.modules, "hws predict imported ray"
print("NO-RAY-OK")
"""
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240
    )
    assert "NO-RAY-OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
