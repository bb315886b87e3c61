"""`hws collect fpga parse`: HLS / Vivado report fixtures (real formats, small invented numbers)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from hwsurrogate.cli.collect import collect_fpga_cmd
from hwsurrogate.datasets.collectors.fpga import (
    SOURCE,
    collect_fpga_reports,
    find_project_files,
)
from hwsurrogate.datasets.collectors.fpga_reports import (
    hls4ml_model_layers,
    parse_csynth_rpt,
    parse_csynth_xml,
    parse_parameters_h,
    parse_vivado_utilization,
    read_hls4ml_config,
)
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import SourceFormatError

FIX = Path(__file__).parent / "fixtures" / "fpga"
VIVADO_PRJ = FIX / "hls4ml_vivado"
VITIS_PRJ = FIX / "vitis_us"
REPORTS = VIVADO_PRJ / "myproject_prj" / "solution1" / "syn" / "report"


def copy_project(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------ single reports
def test_csynth_xml_reads_estimates_latency_and_clock() -> None:
    est = parse_csynth_xml(REPORTS / "myproject_csynth.xml")
    assert (est.top, est.part, est.tool, est.tool_version) == (
        "myproject", "xc7z020-clg400-1", "vivado_hls", "2020.1",
    )  # fmt: skip
    assert (est.lut, est.ff, est.dsp, est.bram18k, est.uram) == (2310, 1843, 20, 2, 0)
    assert (est.cycles, est.cycles_max, est.ii, est.ii_max) == (9, 11, 4, 5)
    assert (est.clock_ns, est.estimated_clock_ns) == (5.0, 4.308)
    assert est.available["DSP48E"] == 220


def test_csynth_rpt_gives_the_same_numbers_as_the_xml() -> None:
    xml = parse_csynth_xml(REPORTS / "myproject_csynth.xml")
    rpt = parse_csynth_rpt(REPORTS / "myproject_csynth.rpt")
    for name in ("top", "part", "tool", "tool_version", "clock_ns", "estimated_clock_ns", "cycles",
                 "cycles_max", "ii", "ii_max", "lut", "ff", "dsp", "bram18k", "uram"):  # fmt: skip
        assert getattr(rpt, name) == getattr(xml, name), name


def test_vitis_rpt_reads_dsp_column_and_vitis_tool() -> None:
    est = parse_csynth_rpt(VITIS_PRJ / "myproject_prj/solution1/syn/report/myproject_csynth.rpt")
    assert (est.tool, est.tool_version, est.part) == ("vitis_hls", "2022.2", "xcvu13p-flga2577-2-e")
    assert (est.lut, est.ff, est.dsp, est.bram18k, est.uram) == (6401, 4575, 96, 0, 0)
    assert (est.cycles, est.ii, est.clock_ns) == (14, 9, 4.0)


def test_vivado_7series_utilization_uses_slice_names_and_36k_tiles() -> None:
    u = parse_vivado_utilization(VIVADO_PRJ / "vivado_synth.rpt")
    assert (u.stage, u.tool_version, u.device, u.design) == (
        "post_synth",
        "2020.1",
        "7z020clg400-1",
        "myproject",
    )
    assert (u.lut, u.ff, u.dsp, u.bram36k, u.carry) == (1187, 1502, 20, 0.5, 141)
    assert u.uram is None  # 7-series reports have no URAM row: unknown, not zero


def test_vivado_ultrascale_utilization_uses_clb_names_and_uram() -> None:
    u = parse_vivado_utilization(VITIS_PRJ / "vivado_synth.rpt")
    assert (u.lut, u.ff, u.dsp, u.bram36k, u.uram, u.carry) == (3874, 3921, 96, 0, 0, 118)
    assert u.available["CLB LUTs"] == 1728000


def test_parameters_h_resolves_macros_and_lists_layers() -> None:
    layers = parse_parameters_h(VIVADO_PRJ / "firmware/parameters.h", VIVADO_PRJ / "firmware/defines.h")
    assert [(la["kind"], la.get("name")) for la in layers] == [("dense", "fc1"), ("activ", "relu1")]
    dense = layers[0]
    assert (dense["n_in"], dense["n_out"], dense["reuse_factor"], dense["strategy"]) == (16, 5, 4, "resource")


def test_hls4ml_config_tolerates_custom_yaml_tags() -> None:
    cfg = read_hls4ml_config(VIVADO_PRJ / "hls4ml_config.yml")
    assert cfg["KerasModel"] == "model_1/hls4ml_prj/keras_model.h5"
    assert cfg["HLSConfig"]["Model"]["ReuseFactor"] == 4


# ------------------------------------------------------------------ projects -> rows
def test_project_picks_the_top_report_not_a_per_function_one() -> None:
    files = find_project_files(VIVADO_PRJ)
    assert files.csynth is not None and files.csynth.name == "myproject_csynth.xml"


def test_hls4ml_project_gives_two_stages_with_their_own_bram_units() -> None:
    frame = collect_fpga_reports([VIVADO_PRJ], progress=False).frame
    assert frame.height == 2
    by_stage = {r["stage"]: r for r in frame.iter_rows(named=True)}
    hls, syn = by_stage["hls_estimate"], by_stage["post_synth"]
    assert (hls["tool"], hls["bram"], hls["bram_unit"], hls["lut"], hls["cycles"], hls["ii"]) == (
        "vivado_hls", 2.0, "bram18k", 2310.0, 9.0, 4.0,
    )  # fmt: skip
    assert (syn["tool"], syn["bram"], syn["bram_unit"], syn["lut"], syn["carry"]) == (
        "vivado", 0.5, "bram36k", 1187.0, 141.0,
    )  # fmt: skip
    assert hls["design_id"] == syn["design_id"]  # one design, two stages
    assert syn["cycles"] is None  # post-synthesis reports carry no latency
    for row in (hls, syn):
        assert (row["domain"], row["kernel"], row["part"], row["source"]) == (
            "hls4ml", "myproject", "xc7z020-clg400-1", SOURCE,
        )  # fmt: skip
        assert (row["precision"], row["reuse_factor"], row["strategy"], row["io_type"]) == (
            "ap_fixed<16,6>", 4, "resource", "io_parallel",
        )  # fmt: skip
        dense, relu = json.loads(row["model"])
        assert (dense["class_name"], dense["d_in"], dense["d_out"], dense["reuse_factor"], dense["name"]) == (
            "Dense", [16], [5], 4, "fc1",
        )  # fmt: skip
        assert (dense["weight_bits"], dense["weight_int_bits"]) == (16, 6)
        assert (relu["class_name"], relu["activation"], relu["d_in"]) == ("Activation", "relu", [5])
        env = json.loads(row["extra"])["env"]
        assert env["host"] == row["origin"] and "python" in env
    assert set(frame["measurement_id"].to_list()) == {
        f"{SOURCE}|hls4ml|{hls['design_id']}|hls_estimate|vivado_hls|2020.1",
        f"{SOURCE}|hls4ml|{hls['design_id']}|post_synth|vivado|2020.1",
    }


def test_vitis_project_falls_back_to_rpt_and_normalizes_precision() -> None:
    frame = collect_fpga_reports([VITIS_PRJ], progress=False).frame
    hls = frame.filter(pl.col("stage") == "hls_estimate").row(0, named=True)
    assert (hls["tool"], hls["dsp"], hls["precision"], hls["io_type"], hls["strategy"], hls["reuse_factor"]) == (
        "vitis_hls", 96.0, "ap_fixed<8,3>", "io_stream", "latency", 2,
    )  # fmt: skip
    syn = frame.filter(pl.col("stage") == "post_synth").row(0, named=True)
    assert (syn["uram"], syn["tool_version"], syn["bram_unit"]) == (0.0, "2022.2", "bram36k")


def test_cli_parse_writes_rows_once(store: DatasetStore) -> None:
    runner = CliRunner()
    args = ["parse", str(VIVADO_PRJ), str(VITIS_PRJ), "--store", str(store.root)]
    first = runner.invoke(collect_fpga_cmd, args)
    assert first.exit_code == 0, first.output
    assert "added 4 of 4" in first.output
    again = runner.invoke(collect_fpga_cmd, args)
    assert again.exit_code == 0 and "added 0 of 4" in again.output
    stored = store.read("fpga")
    assert stored.height == 4 and set(stored["source"]) == {SOURCE}


def test_recursive_parse_finds_every_project(tmp_path: Path) -> None:
    copy_project(VIVADO_PRJ, tmp_path / "runs")
    copy_project(VITIS_PRJ, tmp_path / "runs")
    frame = collect_fpga_reports([tmp_path / "runs"], recursive=True, progress=False).frame
    assert sorted(frame["tool"].to_list()) == ["vitis_hls", "vivado", "vivado", "vivado_hls"]


# ------------------------------------------------------------------ bad input: named errors, store untouched
def _assert_store_empty(store: DatasetStore) -> None:
    assert store.read("fpga").height == 0
    assert not (store.root / "fpga").exists() or not any((store.root / "fpga").iterdir())


def test_truncated_csynth_xml_names_the_file_and_writes_nothing(tmp_path: Path, store: DatasetStore) -> None:
    prj = copy_project(VIVADO_PRJ, tmp_path)
    xml = prj / "myproject_prj/solution1/syn/report/myproject_csynth.xml"
    xml.write_text(xml.read_text()[:700])
    with pytest.raises(SourceFormatError, match="myproject_csynth.xml.*not well-formed XML"):
        collect_fpga_reports([prj], progress=False)
    result = CliRunner().invoke(collect_fpga_cmd, ["parse", str(prj), "--store", str(store.root)])
    assert result.exit_code != 0 and isinstance(result.exception, SourceFormatError)
    _assert_store_empty(store)


def test_csynth_xml_without_lut_names_the_field(tmp_path: Path) -> None:
    xml = tmp_path / "top_csynth.xml"
    xml.write_text((REPORTS / "myproject_csynth.xml").read_text().replace("<LUT>2310</LUT>\n", ""))
    with pytest.raises(SourceFormatError, match=r"top_csynth.xml: missing <LUT>"):
        parse_csynth_xml(xml)


def test_non_numeric_resource_names_the_field(tmp_path: Path) -> None:
    xml = tmp_path / "top_csynth.xml"
    xml.write_text((REPORTS / "myproject_csynth.xml").read_text().replace("<FF>1843</FF>", "<FF>lots</FF>"))
    with pytest.raises(SourceFormatError, match=r"field 'FF' is 'lots'"):
        parse_csynth_xml(xml)


def test_truncated_vivado_report_names_the_missing_row(tmp_path: Path, store: DatasetStore) -> None:
    prj = copy_project(VIVADO_PRJ, tmp_path)
    rpt = prj / "vivado_synth.rpt"
    text = rpt.read_text()
    rpt.write_text(text[: text.index("3. DSP\n---")])
    with pytest.raises(SourceFormatError, match=r"vivado_synth.rpt: no dsp row \('DSPs'\)"):
        parse_vivado_utilization(rpt)
    result = CliRunner().invoke(collect_fpga_cmd, ["parse", str(prj), "--store", str(store.root)])
    assert result.exit_code != 0
    _assert_store_empty(store)  # the good HLS row of the same project is not half-written either


def test_truncated_csynth_rpt_names_the_missing_section(tmp_path: Path) -> None:
    rpt = tmp_path / "myproject_csynth.rpt"
    text = (REPORTS / "myproject_csynth.rpt").read_text()
    rpt.write_text(text[: text.index("== Utilization Estimates")])
    with pytest.raises(SourceFormatError, match=r"myproject_csynth.rpt: missing section '== Utilization"):
        parse_csynth_rpt(rpt)


def test_placed_only_report_is_not_given_a_stage(tmp_path: Path) -> None:
    rpt = tmp_path / "util_placed.rpt"
    rpt.write_text((VIVADO_PRJ / "vivado_synth.rpt").read_text().replace("Synthesized", "Fully Placed"))
    with pytest.raises(SourceFormatError, match=r"'Design State' is 'Fully Placed'"):
        parse_vivado_utilization(rpt)


def test_not_a_report_and_missing_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(SourceFormatError, match="nope: no such file or folder"):
        collect_fpga_reports([tmp_path / "nope"], progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceFormatError, match="no C-synthesis report"):
        collect_fpga_reports([tmp_path / "empty"], progress=False)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(SourceFormatError, match="notes.txt: not a csynth.xml"):
        collect_fpga_reports([notes], progress=False)


def test_several_reports_without_a_known_top_is_an_error(tmp_path: Path) -> None:
    prj = copy_project(VIVADO_PRJ, tmp_path)
    (prj / "build_prj.tcl").unlink()
    (prj / "hls4ml_config.yml").unlink()
    with pytest.raises(SourceFormatError, match="2 C-synthesis reports"):
        find_project_files(prj)


def test_skip_bad_stores_the_good_projects_and_exits_nonzero(tmp_path: Path, store: DatasetStore) -> None:
    bad = copy_project(VIVADO_PRJ, tmp_path)
    (bad / "myproject_prj/solution1/syn/report/myproject_csynth.xml").write_text("<profile>")
    result = CliRunner().invoke(
        collect_fpga_cmd, ["parse", str(bad), str(VITIS_PRJ), "--skip-bad", "--store", str(store.root)]
    )
    assert result.exit_code == 3
    assert "failed:" in result.output and "myproject_csynth.xml" in result.output
    assert sorted(store.read("fpga")["tool"].to_list()) == ["vitis_hls", "vivado"]


def test_conv_structs_map_to_the_model_vocabulary_and_mult_configs_are_folded(tmp_path: Path) -> None:
    params = tmp_path / "parameters.h"
    params.write_text(
        "// conv1d_1\nstruct config2_mult : nnet::dense_config {\n    static const unsigned n_in = 9;\n"
        "    static const unsigned n_out = 4;\n    static const unsigned reuse_factor = 3;\n};\n\n"
        "// conv1d_1\nstruct config2 : nnet::conv1d_config {\n    static const unsigned in_width = 16;\n"
        "    static const unsigned n_chan = 3;\n    static const unsigned filt_width = 3;\n"
        "    static const unsigned n_filt = 4;\n    static const unsigned stride_width = 1;\n"
        "    static const unsigned out_width = 14;\n    static const unsigned reuse_factor = 3;\n"
        "    static const unsigned strategy = nnet::resource;\n};\n"
    )
    (layer,) = hls4ml_model_layers(parse_parameters_h(params))
    assert (layer["class_name"], layer["d_in"], layer["d_out"], layer["kernel_size"], layer["filters"]) == (
        "Conv1D", [16, 3], [14, 4], [3], 4,
    )  # fmt: skip
    assert (layer["strides"], layer["reuse_factor"], layer["strategy"], layer["name"]) == (
        [1],
        3,
        "resource",
        "conv1d_1",
    )
