"""HARP v21 and HLSDataset+PowerGear: row design, unit conversions, bad input and the shared files."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import polars as pl
import pytest

from hwsurrogate.datasets.importers import harp, hlsdataset, hlsyn, import_source
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import SourceFormatError

from .fpga_helpers import run_hws, snapshot

HARP_HEADER = (
    "kernel,suite,tool,design_key,ret_code,valid,perf_cycles,total_LUT,total_FF,total_DSP,total_BRAM,"
    "util_LUT,util_FF,util_DSP,util_BRAM,pragma_point"
)
HARP_ROWS = [
    'aes,machsuite,v21,__PIPE__L1-NA,PASS,1,0.0,64336.0,0,0.0,136.0,0.05,0,0.0,0.03,"{""__PIPE__L1"":""""}"',
    'atax,poly,v21,__PARA__L0-2,PASS,0,5000.0,9000.0,8000.0,10.0,4.0,0.01,0.01,0.01,0.01,"{""__PARA__L0"":2}"',
    'atax,poly,v21,__PARA__L0-4,TIMEOUT,0,0.0,0,0,0,0,0,0,0,0,"{""__PARA__L0"":4}"',
]


def write_harp(root: Path, rows: list[str] = HARP_ROWS) -> Path:
    (root / "derived").mkdir(parents=True, exist_ok=True)
    text = "\n".join([HARP_HEADER, *rows]) + "\n"
    (root / "derived" / "harp_v21_designs.csv.xz").write_bytes(lzma.compress(text.encode()))
    return root


def test_harp_rows_follow_the_hlsyn_design_with_ret_code(tmp_path: Path) -> None:
    df = harp.load(write_harp(tmp_path))["fpga"]
    rows = {r["design_id"]: r for r in df.iter_rows(named=True)}
    aes = rows["v21/aes/__PIPE__L1-NA"]
    assert (aes["domain"], aes["tool"], aes["tool_version"], aes["stage"]) == (
        "harp",
        "vitis_hls",
        "2021.1",
        "hls_estimate",
    )
    assert (aes["cycles"], aes["lut"], aes["ff"], aes["dsp"], aes["bram"]) == (None, 64336, None, 0, 136)
    assert json.loads(aes["extra"])["ret_code"] == "PASS" and json.loads(aes["extra"])["suite"] == "machsuite"
    assert json.loads(aes["model"]) == {"program_graph": "aes", "graph_domain": "hlsyn"}
    atax = rows["v21/atax/__PARA__L0-2"]
    assert (atax["valid"], atax["cycles"], atax["lut"], atax["ff"]) == (False, 5000, 9000, 8000)
    timeout = rows["v21/atax/__PARA__L0-4"]
    assert [timeout[c] for c in ("cycles", "lut", "ff", "dsp", "bram")] == [None] * 5


def test_harp_unknown_ret_code_is_rejected(tmp_path: Path) -> None:
    write_harp(tmp_path, rows=[HARP_ROWS[0].replace("PASS", "PASSED")])
    with pytest.raises(
        SourceFormatError, match=r"harp_v21_designs\.csv\.xz: column 'ret_code' .*\['PASSED'\]"
    ):
        harp.load(tmp_path)


SHARED_PATHS = {"wa-hls4ml": "wa-hls4ml", "wa-hls4ml-dense": "wa-hls4ml-search-dense1layer", "hlsyn": "hlsyn",
                "harp": "harp_v21", "hlsdataset": "hlsdataset_powergear"}  # fmt: skip


@pytest.fixture(scope="module")
def full_store(
    data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[DatasetStore, dict[str, dict]]:
    """A store holding all five FPGA sources (imported once for this module) and the import reports."""
    store = DatasetStore(tmp_path_factory.mktemp("fpga") / "store")
    reports = {
        name: import_source(name, data_dir / "fpga" / sub, store=store).rows
        for name, sub in SHARED_PATHS.items()
    }
    return store, reports


def test_harp_shared_counts_and_graphs_resolve(full_store: tuple[DatasetStore, dict[str, dict]]) -> None:
    store, reports = full_store
    assert reports["harp"] == {"fpga": 3530}
    df = store.read("fpga", source="harp").with_columns(rc=pl.col("extra").str.json_path_match("$.ret_code"))
    usable = pl.col("cycles").is_not_null() & pl.col("lut").is_not_null()
    stats = df.group_by("rc").agg(
        usable.sum().alias("usable"), (usable & pl.col("valid")).sum().alias("valid")
    )
    assert {r[0]: r[1:] for r in stats.iter_rows()} == {
        "PASS": (2758, 2368), "DUPLICATED": (9, 9), "TIMEOUT": (0, 0), "UNAVAILABLE": (0, 0), "ANALYZE_ERROR": (0, 0),
    }  # fmt: skip
    graphs = hlsyn.read_program_graphs(store)
    assert set(df["kernel"].unique()) <= set(graphs)
    stored = store.read("program_graphs").filter(pl.col("graph_id") == "gemm-blocked")
    graph = hlsyn.read_program_graph(store, "gemm-blocked")
    assert (graph.nodes.height, graph.edges.height) == (stored["n_nodes"].item(), stored["n_edges"].item())


# ---------------------------------------------------------------------------- HLSDataset + PowerGear
PB_HEADER = (
    "kernel,part,prj,io_buffer_partition,buffer_partition_d1d2,n_pipelined_loops,max_unroll,directives,"
    "hls_clk_target_ns,hls_clk_estimated_ns,hls_bram18k,hls_dsp,hls_ff,hls_lut,c_num_arith,c_num_logic,"
    "rtl_num_arith,rtl_num_logic,data_input_port,data_output_port,impl_total_luts,impl_logic_luts,impl_lutrams,"
    "impl_srls,impl_ffs,impl_ramb36,impl_ramb18,impl_dsp,impl_freq_mhz,impl_vivado_dynamic_pwr_mw,"
    "board_total_pwr_uW,board_static_pwr_uW,board_dynamic_pwr_mW"
)
DIRECTIVES = '"{""l1"":[{""pipeline"":0,""unroll"":1}]}"'
PB_ROWS = [
    f"atax,xczu9eg-ffvb1156-2-i,io2_l1n1,2,0,0,1,{DIRECTIVES},10.0,8.4,11,5,653,971,14,7,12,7,2x32,1x32,"
    "512,512,0,0,485,4,3,5,100,8.950,319076.975,312923.05,6.153925",
    f"atax,xc7v585tffg1157-3,io2_l1n1,2,0,0,1,{DIRECTIVES},10.0,7.9,11,5,653,977,14,7,12,7,2x32,1x32,"
    "526,526,0,0,485,4,3,5,100,12.335,,,",
    f"bicg,xczu9eg-ffvb1156-2-i,io1_l1n1,1,0,0,1,{DIRECTIVES},10.0,8.4,6,5,600,900,14,7,12,7,2x32,1x32,"
    ",,,,,,,,,,,,",  # HLS only, no implementation
    f"gemm,xczu9eg-ffvb1156-2-i,io4_l1n1,4,1,0,1,{DIRECTIVES},10.0,8.4,6,5,600,900,14,7,12,7,2x32,1x32,"
    "500,500,0,0,400,1,2,5,100,9.0,300000.0,300001.5,-0.0015",  # static drift above total
]


def write_pb(root: Path, rows: list[str] = PB_ROWS) -> Path:
    (root / "derived").mkdir(parents=True, exist_ok=True)
    (root / "derived" / hlsdataset.JOINED).write_text("\n".join([PB_HEADER, *rows]) + "\n")
    return root


def test_hlsdataset_stages_units_and_bram_conversion(tmp_path: Path) -> None:
    df = hlsdataset.load(write_pb(tmp_path))["fpga"]
    assert dict(df.group_by("stage").len().iter_rows()) == {"hls_estimate": 4, "post_route": 3, "on_board": 2}
    get = {(r["design_id"], r["stage"]): r for r in df.iter_rows(named=True)}
    design = "atax/xczu9eg-ffvb1156-2-i/io2_l1n1"
    hls, route, board = (get[(design, s)] for s in ("hls_estimate", "post_route", "on_board"))
    assert (hls["lut"], hls["ff"], hls["dsp"], hls["bram"], hls["bram_unit"], hls["clock_ns"]) == (
        971,
        653,
        5,
        11,
        "bram18k",
        10.0,
    )
    assert (
        json.loads(hls["extra"])["c_num_arith"] == 14 and json.loads(hls["extra"])["io_buffer_partition"] == 2
    )
    assert (route["lut"], route["ff"], route["dsp"], route["bram"], route["bram_unit"]) == (
        512,
        485,
        5,
        2 * 4 + 3,
        "bram18k",
    )
    assert route["power_dynamic_w"] == pytest.approx(0.00895) and route["power_method"] == "vivado_estimate"
    assert board["power_total_w"] == pytest.approx(0.319076975)
    assert board["power_static_w"] == pytest.approx(0.31292305)
    assert board["power_dynamic_w"] == pytest.approx(0.006153925)
    assert board["power_method"] == "board_measured" and board["lut"] is None
    assert board["license"] == "MIT (PowerGear)" and "PowerGear" in board["origin"]
    assert json.loads(hls["config"])["directives"] == {"l1": [{"pipeline": 0, "unroll": 1}]}
    drift = get[("gemm/xczu9eg-ffvb1156-2-i/io4_l1n1", "on_board")]
    assert drift["power_dynamic_w"] is None and json.loads(drift["extra"])["board_dynamic_pwr_mw"] == -0.0015
    assert ("bicg/xczu9eg-ffvb1156-2-i/io1_l1n1", "post_route") not in get


@pytest.mark.parametrize(
    ("row", "match"),
    [
        (PB_ROWS[0].replace("319076.975", "319.076975"), "board power units are inconsistent"),
        (PB_ROWS[0].replace(",971,", ",nan,"), "column 'hls_lut' is NaN"),
        (PB_ROWS[0].replace(",485,", ",-485,"), "column 'impl_ffs' is NaN, infinite or negative"),
        (
            PB_ROWS[0].replace("io2_l1n1,2,", "io2_l1n1,8,"),
            "'io_buffer_partition' \\(8.0\\) does not match prj",
        ),
        (PB_ROWS[0].replace(",312923.05,", ",,"), "board power columns .* are partly empty"),
    ],
)
def test_hlsdataset_bad_values_name_the_file_and_column(tmp_path: Path, row: str, match: str) -> None:
    write_pb(tmp_path, rows=[row])
    with pytest.raises(SourceFormatError, match=match) as info:
        hlsdataset.load(tmp_path)
    assert hlsdataset.JOINED in str(info.value)


def test_hlsdataset_cli_renamed_column_fails_and_store_is_unchanged(tmp_path: Path, capsys) -> None:
    store_dir = tmp_path / "store"
    good = write_pb(tmp_path / "good")
    assert (
        run_hws(["data", "import", "hlsdataset", "--from", str(good), "--store", str(store_dir)], capsys)[0]
        == 0
    )
    before = snapshot(store_dir)
    bad = tmp_path / "bad"
    write_pb(bad)
    csv = bad / "derived" / hlsdataset.JOINED
    csv.write_text(csv.read_text().replace("board_static_pwr_uW", "board_static_pwr_mW"))
    code, out = run_hws(
        ["data", "import", "hlsdataset", "--from", str(bad), "--store", str(store_dir)], capsys
    )
    assert code != 0 and hlsdataset.JOINED in out and "board_static_pwr_uW" in out
    assert snapshot(store_dir) == before


def test_hlsdataset_shared_counts_and_raw_files_agree(data_dir: Path) -> None:
    root = data_dir / "fpga" / "hlsdataset_powergear"
    df = hlsdataset.load(root)["fpga"]
    assert dict(df.group_by("stage").len().iter_rows()) == {
        "hls_estimate": 9558,
        "post_route": 9557,
        "on_board": 4580,
    }
    assert df.select(pl.struct("design_id", "stage").n_unique()).item() == df.height
    board_rows = df.filter(pl.col("stage") == "on_board")
    assert board_rows["power_dynamic_w"].null_count() == 1  # the one negative (static drift) reading
    assert (
        board_rows["power_total_w"].null_count() == 0 and (board_rows["power_total_w"] < 10).all()
    )  # W, not uW
    part = "xczu9eg-ffvb1156-2-i"
    raw = root / "raw"
    impl = pl.read_csv(raw / "hlsdataset" / "polybench" / "atax" / part / "post_implementation_info.csv")
    power = pl.read_csv(raw / "powergear" / "atax" / "power_measurement.csv")
    mine = df.filter(pl.col("kernel") == "atax", pl.col("part") == part).with_columns(
        prj=pl.col("design_id").str.split("/").list.last()
    )
    route = mine.filter(pl.col("stage") == "post_route").join(impl, on="prj")
    assert route.height == impl.height
    assert (route["bram"] == 2 * route["RAMB36"] + route["RAMB18"]).all()
    assert (route["lut"] == route["Total LUTs"]).all() and (route["dsp"] == route["DSP48 Blocks"]).all()
    assert ((route["power_dynamic_w"] - route["vivado_dynamic_pwr(mW)"] / 1000).abs() < 1e-12).all()
    board = mine.filter(pl.col("stage") == "on_board").join(power, on="prj")
    assert board.height == power.height
    assert ((board["power_total_w"] - board["total_pwr(uW)"] / 1e6).abs() < 1e-12).all()
    assert ((board["power_static_w"] - board["static_pwr(uW)"] / 1e6).abs() < 1e-12).all()
    hls_raw = pl.read_csv(raw / "hlsdataset" / "polybench" / "atax" / part / "post_hls_info.csv")
    hls = mine.filter(pl.col("stage") == "hls_estimate").join(hls_raw, on="prj", suffix="_raw")
    assert (
        hls.height == hls_raw.height
        and (hls["lut"] == hls["lut_raw"]).all()
        and (hls["bram"] == hls["bram_raw"]).all()
    )


def test_all_five_fpga_sources_import_together(full_store: tuple[DatasetStore, dict[str, dict]]) -> None:
    store, reports = full_store
    assert reports["hlsyn"] == {"fpga": 41596, "program_graphs": 43}
    summary = store.summary()
    assert summary["fpga"]["sources"] == {
        "harp": 3530, "hlsdataset": 23695, "hlsyn": 41596, "wa-hls4ml": 73, "wa-hls4ml-dense": 2687,
    }  # fmt: skip
    assert summary["program_graphs"]["rows"] == 43
    fpga = store.read("fpga")
    assert fpga["measurement_id"].n_unique() == fpga.height
    assert fpga.group_by("domain", "design_id", "stage").len()["len"].max() == 1
