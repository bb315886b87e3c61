"""Dense-layer RTL specs, yosys stat parsing, toolchain discovery and --push (no synthesis here)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from hwsurrogate.cli.collect import collect_fpga_cmd
from hwsurrogate.datasets.collectors import fpga_yosys
from hwsurrogate.datasets.collectors.fpga import (
    collect_fpga_reports,
    collect_fpga_sweep,
    dense_grid,
)
from hwsurrogate.datasets.collectors.fpga_rtl import (
    Conv1DLayerSpec,
    DenseLayerSpec,
    generate_dense_verilog,
    reference_output,
)
from hwsurrogate.datasets.collectors.fpga_rtl import (
    layer_precision as parse_precision,
)
from hwsurrogate.datasets.collectors.fpga_yosys import (
    counts_from_cells,
    find_yosys,
    parse_stat_json,
    parse_stat_text,
    parse_version,
)
from hwsurrogate.datasets.precision import FixedPoint
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import CollectorError, SourceFormatError

FIX = Path(__file__).parent / "fixtures" / "fpga"
P8 = FixedPoint(8, 3)


# ------------------------------------------------------------------ precision and layer specs
@pytest.mark.parametrize(
    ("text", "expected"),
    [("ap_fixed<16,6>", FixedPoint(16, 6)), ("fixed<8, 3>", FixedPoint(8, 3)), ("ap_int<6>", FixedPoint(6, 6)),
     ("4", FixedPoint(4, 4))],
)  # fmt: skip
def test_precision_formats(text: str, expected: FixedPoint) -> None:
    assert parse_precision(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("float32", "precision 'float32' is not understood"), ("ap_fixed<40,3>", "width 40 must be in"),
     ("ap_fixed<8,9>", "integer bits 9 must be in"), ("1", "width 1 must be in"), ("", "not understood")],
)  # fmt: skip
def test_unknown_precision_is_named(text: str, message: str) -> None:
    with pytest.raises(CollectorError, match=message):
        parse_precision(text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"d_in": 0}, "d_in must be >= 1, got 0"), ({"d_out": -3}, "d_out must be >= 1, got -3"),
     ({"d_in": 5000}, "d_in = 5000 is larger"), ({"d_in": 1024, "d_out": 1024}, "d_in\\*d_out = 1048576 products"),
     ({"reuse_factor": 0}, "reuse_factor must be in \\[1, d_in\\*d_out=32\\]"),
     ({"reuse_factor": 33}, "reuse_factor must be in"), ({"d_in": 2.5}, "d_in must be an integer"),
     ({"seed": -1}, "seed must be >= 0")],
)  # fmt: skip
def test_bad_layer_dimensions_are_named(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"d_in": 8, "d_out": 4, "precision": P8} | kwargs
    with pytest.raises(CollectorError, match=message):
        DenseLayerSpec(**args)  # type: ignore[arg-type]


def test_multipliers_and_schedule_follow_the_reuse_factor() -> None:
    for rf, n_mult in ((1, 32), (4, 8), (3, 11), (32, 1)):
        spec = DenseLayerSpec(8, 4, P8, rf)
        _, sched = generate_dense_verilog(spec)
        assert (spec.n_mult, sched.n_mult, sched.ii) == (n_mult, n_mult, rf)
        assert sched.cycles == rf + sched.tree_depth + 3
    # fully parallel 8 inputs: 8 products per output -> 3 tree levels
    assert generate_dense_verilog(DenseLayerSpec(8, 4, P8, 1))[1].tree_depth == 3


def test_weights_are_seeded_and_the_seed_is_in_the_design_id() -> None:
    a, b = DenseLayerSpec(8, 4, P8, seed=1), DenseLayerSpec(8, 4, P8, seed=2)
    assert (a.weights_and_bias()[0] == DenseLayerSpec(8, 4, P8, seed=1).weights_and_bias()[0]).all()
    assert (a.weights_and_bias()[0] != b.weights_and_bias()[0]).any()
    assert a.design_id.endswith("_s1") and a.design_id != b.design_id
    assert generate_dense_verilog(a)[0] != generate_dense_verilog(b)[0]


def test_grid_rejects_bad_values_before_any_work() -> None:
    with pytest.raises(CollectorError, match="precision 'fp8'"):
        dense_grid([4], [4], ["fp8"], [1])
    with pytest.raises(CollectorError, match="d_in must be >= 1, got 0"):
        dense_grid([4, 0], [4], ["8"], [1])
    assert len(dense_grid([4, 8], [2, 4], ["8", "ap_fixed<6,2>"], [1, 2])) == 16


# ------------------------------------------------------------------ yosys stat parsing
def test_stat_json_and_both_text_formats_agree() -> None:
    js = parse_stat_json((FIX / "yosys/stat_0.70.json").read_text())
    new = parse_stat_text((FIX / "yosys/stat_0.70.txt").read_text())
    old = parse_stat_text((FIX / "yosys/stat_old.txt").read_text())
    assert js == new == old
    # LUT2 14 + LUT3 1 + LUT4 1 + INV 15 (yosys' INV is a LUT1 in Vivado)
    assert (js.lut, js.lut_logic, js.ff, js.dsp, js.carry, js.bram36k) == (31, 31, 60, 0, 12, 0)


def test_cell_mapping_counts_srl_lutram_and_half_brams() -> None:
    c = counts_from_cells({"LUT6": 10, "SRL16E": 3, "RAM64M": 2, "FDRE": 5, "FDSE": 1, "RAMB18E1": 3,
                           "RAMB36E1": 1, "DSP48E1": 4, "CARRY4": 7, "BUFG": 1})  # fmt: skip
    assert (c.lut, c.lut_logic, c.lut_srl, c.lutram, c.ff, c.dsp, c.carry, c.bram36k) == (
        15, 10, 3, 2, 6, 4, 7, 2.5,
    )  # fmt: skip


def test_malformed_stat_output_names_the_file() -> None:
    with pytest.raises(SourceFormatError, match="stat.json: not valid JSON"):
        parse_stat_json('{"design": {"num_cells_by_type": {', source="stat.json")
    with pytest.raises(SourceFormatError, match="yosys.log: no 'Number of cells'"):
        parse_stat_text("ERROR: something", source="yosys.log")
    with pytest.raises(SourceFormatError, match="cell count of 'LUT2' is -1"):
        parse_stat_json('{"design": {"num_cells_by_type": {"LUT2": -1}}}')


def test_version_string() -> None:
    assert parse_version("Yosys 0.70 (git sha1 28ba3cb92, Release, Clang ...)") == "0.70 (git sha1 28ba3cb92)"
    assert parse_version("Yosys 0.9") == "0.9"
    with pytest.raises(CollectorError, match="cannot read a yosys version"):
        parse_version("bash: yosys: command not found")


# ------------------------------------------------------------------ missing toolchain
@pytest.fixture
def no_yosys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fpga_yosys.shutil, "which", lambda name: None)
    monkeypatch.setattr(fpga_yosys.importlib.util, "find_spec", lambda name: None)


@pytest.mark.usefixtures("no_yosys")
def test_missing_yosys_says_how_to_install_it() -> None:
    with pytest.raises(CollectorError, match=r"yosys not found.*pip install 'hwsurrogate\[fpga\]'"):
        find_yosys()
    with pytest.raises(CollectorError, match="--yosys /nonexistent/yosys: no such executable"):
        find_yosys("/nonexistent/yosys")


@pytest.mark.usefixtures("no_yosys")
def test_sweep_without_yosys_fails_cleanly_and_writes_nothing(store: DatasetStore) -> None:
    result = CliRunner().invoke(collect_fpga_cmd, ["sweep", "--d-in", "4", "--d-out", "2", "--rf", "1",
                                                   "--store", str(store.root)])  # fmt: skip
    assert result.exit_code != 0 and "yosys not found" in str(result.exception)
    assert store.read("fpga").height == 0


def test_sweep_rejects_bad_grid_values_on_the_command_line(store: DatasetStore) -> None:
    runner = CliRunner()
    bad_dim = runner.invoke(collect_fpga_cmd, ["sweep", "--d-in", "4,-8", "--store", str(store.root)])
    assert bad_dim.exit_code != 0 and "d_in must be >= 1, got -8" in str(bad_dim.exception)
    bad_int = runner.invoke(collect_fpga_cmd, ["sweep", "--d-in", "4,x"])
    assert bad_int.exit_code == 2 and "'x' is not an integer" in bad_int.output
    bad_prec = runner.invoke(collect_fpga_cmd, ["sweep", "--precision", "bfloat16"])
    assert "precision 'bfloat16' is not understood" in str(bad_prec.exception)
    assert store.read("fpga").height == 0


# ------------------------------------------------------------------ --push
def test_push_sends_the_checked_frame_to_the_client(
    monkeypatch: pytest.MonkeyPatch, store: DatasetStore
) -> None:
    calls: list[tuple[str, str | None, str, pl.DataFrame]] = []

    class FakeClient:
        def __init__(self, base_url: str, token: str | None) -> None:
            self.base_url, self.token = base_url, token

        def upload_rows(self, kind: str, frame: pl.DataFrame) -> dict[str, int]:
            calls.append((self.base_url, self.token, kind, frame))
            return {"added": frame.height}

    monkeypatch.setitem(sys.modules, "hwsurrogate.client", types.SimpleNamespace(HwsClient=FakeClient))
    result = CliRunner().invoke(
        collect_fpga_cmd,
        ["parse", str(FIX / "hls4ml_vivado"), "--push", "http://svc:8000", "--token", "t0k",
         "--store", str(store.root)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ((url, token, kind, frame),) = calls
    assert (url, token, kind, frame.height) == ("http://svc:8000", "t0k", "fpga", 2)
    local = collect_fpga_reports([FIX / "hls4ml_vivado"], progress=False).frame
    assert frame.columns == local.columns  # the schema'd frame, same as the store would get
    assert frame.select("measurement_id", "lut", "bram").equals(local.select("measurement_id", "lut", "bram"))
    assert store.read("fpga").height == 0  # pushed, not stored locally


def test_push_without_the_client_module_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hwsurrogate.client", None)  # import raises ImportError
    result = CliRunner().invoke(collect_fpga_cmd, ["parse", str(FIX / "hls4ml_vivado"), "--push", "http://x"])
    assert result.exit_code == 1
    assert "--push needs hwsurrogate.client.HwsClient" in result.output


# ------------------------------------------------------------------ sweep machinery with a stand-in yosys
FAKE_YOSYS = """
import json, pathlib, re, sys, time
if sys.argv[1:] == ["-V"]:
    print("Yosys 0.99 (git sha1 0a1b2c3d, stand-in)")
    sys.exit(0)
design = pathlib.Path("design.v").read_text()
n_in = int(re.search(r"d_in=(\\d+)", design).group(1))
if n_in == 3:
    print("ERROR: stand-in failure", file=sys.stderr)
    sys.exit(1)
if n_in == 5:
    time.sleep(30)
cells = {"LUT2": 10 * n_in, "FDRE": 7 * n_in, "DSP48E1": n_in, "CARRY4": 2, "BUFG": 1}
pathlib.Path("stat.json").write_text(json.dumps({"design": {"num_cells_by_type": cells}}))
"""


@pytest.fixture
def fake_yosys(tmp_path: Path) -> fpga_yosys.YosysToolchain:
    script = tmp_path / "fake_yosys.py"
    script.write_text(FAKE_YOSYS)
    return fpga_yosys._probe((sys.executable, str(script)), "native")


@pytest.mark.slow  # a stand-in yosys is started 9 times and one run waits for its 4 s limit
def test_sweep_flushes_batches_and_reports_failures_and_timeouts(
    fake_yosys: fpga_yosys.YosysToolchain, store: DatasetStore
) -> None:
    specs = dense_grid([1, 2, 3, 4, 5, 6, 7], [2], ["8"], [1])
    batches: list[int] = []

    def deliver(frame: pl.DataFrame) -> None:
        batches.append(frame.height)
        store.append("fpga", frame, partition="collector:fpga")

    result = collect_fpga_sweep(specs, toolchain=fake_yosys, timeout_s=4, on_rows=deliver, flush_every=2, n_jobs=2,
                                progress=False)  # fmt: skip
    assert batches == [2, 2, 1] and result.delivered
    assert sorted(result.frame["lut"].to_list()) == [10.0, 20.0, 40.0, 60.0, 70.0]
    failures = dict(result.failures)
    assert set(failures) == {specs[2].design_id, specs[4].design_id}
    assert "stand-in failure" in failures[specs[2].design_id]
    assert failures[specs[4].design_id].startswith("timeout: yosys ran past the time limit of 4 s")
    assert store.read("fpga")["tool_version"].unique().to_list() == ["0.99 (git sha1 0a1b2c3d)"]
    # a re-run skips the five stored designs and retries only the two that failed
    again = collect_fpga_sweep(
        specs, toolchain=fake_yosys, timeout_s=4, n_jobs=2, skip_known_in=store, progress=False
    )
    assert len(again.skipped) == 5 and len(again.failures) == 2 and again.frame.height == 0


# ------------------------------------------------------------------ conv1d
def test_conv1d_matrix_is_a_direct_convolution() -> None:
    spec = Conv1DLayerSpec(
        width=6, channels=2, filters=3, kernel_size=3, precision=P8, seed=4, activation="linear"
    )
    w, mask, bias = spec.matrix()
    assert w.shape == (4 * 3, 6 * 2) and int(mask.sum()) == spec.n_products == 4 * 3 * 3 * 2
    x = np.random.default_rng(0).integers(-128, 128, size=(6, 2))  # (position, channel)
    kern, b = w[:3, :6].reshape(3, 3, 2), bias[:3]  # position 0 holds the whole kernel
    direct = np.array(
        [[(kern[f] * x[p : p + 3]).sum() + (int(b[f]) << P8.frac) for f in range(3)] for p in range(4)]
    ).reshape(-1)  # output order: position-major, then filter
    expected = (direct >> P8.frac) & 0xFF
    assert reference_output(spec, x.reshape(-1)).tolist() == expected.tolist()
    # weights are shared between positions: position 2's block equals position 0's, shifted by 2 inputs
    assert (w[6:9, 4:10] == w[0:3, 0:6]).all() and not mask[6:9, :4].any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"kernel_size": 9}, "kernel_size = 9 is larger than width = 8"), ({"channels": 0}, "channels must be >= 1"),
     ({"reuse_factor": 10_000}, r"reuse_factor must be in \[1, out_width\*filters\*kernel_size\*channels=72\]"),
     ({"width": 4096, "channels": 64}, "products is larger than the supported")],
)  # fmt: skip
def test_bad_conv1d_sizes_are_named(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "width": 8,
        "channels": 2,
        "filters": 2,
        "kernel_size": 3,
        "precision": P8,
    } | kwargs
    with pytest.raises(CollectorError, match=message):
        Conv1DLayerSpec(**args)  # type: ignore[arg-type]
