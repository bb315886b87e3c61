"""HLSyn: GEXF parsing, missing-value rules, program graphs in the store, bad input, the shared archive."""

from __future__ import annotations

import io
import json
import lzma
import random
import tarfile
from pathlib import Path

import polars as pl
import pytest

from hwsurrogate.datasets.importers import hlsyn, import_source
from hwsurrogate.datasets.schemas import KINDS, NATURAL_KEYS
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import SourceFormatError, StoreError

from .fpga_helpers import run_hws, snapshot

TINY_GEXF = """<?xml version='1.0' encoding='utf-8'?>
<gexf version="1.2" xmlns="http://www.gexf.net/1.2draft">
  <graph defaultedgetype="directed" mode="static" name="">
    <attributes class="edge" mode="static">
      <attribute id="5" title="flow" type="long" />
      <attribute id="6" title="position" type="long" />
    </attributes>
    <attributes class="node" mode="static">
      <attribute id="0" title="block" type="long" />
      <attribute id="1" title="function" type="long" />
      <attribute id="2" title="text" type="string" />
      <attribute id="3" title="type" type="long" />
      <attribute id="4" title="full_text" type="string" />
    </attributes>
    <nodes>
      <node id="0" label="0"><attvalues><attvalue for="0" value="0" /><attvalue for="1" value="0" />
        <attvalue for="2" value="[external]" /><attvalue for="3" value="0" /></attvalues></node>
      <node id="1" label="1"><attvalues><attvalue for="0" value="1" /><attvalue for="1" value="0" />
        <attvalue for="2" value="icmp" /><attvalue for="3" value="0" />
        <attvalue for="4" value="%cmp = icmp slt i32 %i, 64" /></attvalues></node>
      <node id="2" label="2"><attvalues><attvalue for="0" value="0" /><attvalue for="1" value="0" />
        <attvalue for="2" value="i32" /><attvalue for="3" value="1" /></attvalues></node>
      <node id="3" label="3"><attvalues><attvalue for="3" value="3" /><attvalue for="0" value="1" />
        <attvalue for="1" value="0" /><attvalue for="2" value="PARALLEL" />
        <attvalue for="4" value="#pragma ACCEL PARALLEL FACTOR=auto{__PARA__L0}" /></attvalues></node>
    </nodes>
    <edges>
      <edge id="0" source="0" target="1"><attvalues><attvalue for="5" value="0" /><attvalue for="6" value="0" /></attvalues></edge>
      <edge id="1" source="2" target="1"><attvalues><attvalue for="5" value="1" /><attvalue for="6" value="1" /></attvalues></edge>
      <edge id="2" source="3" target="1"><attvalues><attvalue for="5" value="3" /><attvalue for="6" value="0" /></attvalues></edge>
      <edge id="3" source="1" target="3"><attvalues><attvalue for="5" value="3" /><attvalue for="6" value="0" /></attvalues></edge>
    </edges>
  </graph>
</gexf>
"""

CSV_HEADER = "tool,kernel,design_key,valid,perf_cycles,total_LUT,total_FF,total_DSP,total_BRAM,util_LUT,util_FF,util_DSP,util_BRAM,pragma_point"
CSV_ROWS = [
    'v18,stencil,__PARA__L0-1,1,1200.0,5000,7000,0,4,0.01,0.01,0,0.01,"{""__PARA__L0"":1}"',
    'v18,stencil,__PARA__L0-2,0,900.0,0,0,0,0,0,0,0,0,"{""__PARA__L0"":2}"',  # perf but no resource report
    'v20,stencil,__PARA__L0-4,1,0.0,6000,0,3,8,0.01,0,0.01,0.01,"{""__PARA__L0"":4}"',  # no perf; FF missing
]


def write_hlsyn(root: Path, rows: list[str] = CSV_ROWS, gexf: str = TINY_GEXF) -> Path:
    (root / "derived").mkdir(parents=True, exist_ok=True)
    (root / "raw").mkdir(parents=True, exist_ok=True)
    (root / "derived" / "hlsyn_designs.csv.xz").write_bytes(
        lzma.compress(("\n".join([CSV_HEADER, *rows]) + "\n").encode())
    )
    with tarfile.open(root / "raw" / hlsyn.TAR_NAME, "w:gz") as tar:
        for name, text in {
            "data/graphs/stencil_stencil2d_processed_result.gexf": gexf,
            "data/sources/stencil_stencil2d_kernel.c": "void stencil() {}\n",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return root


def test_parse_gexf_reads_nodes_edges_and_pragma_placeholders() -> None:
    nodes, edges = hlsyn.parse_gexf(TINY_GEXF.encode(), name="tiny.gexf")
    assert [n["type"] for n in nodes] == [0, 0, 1, 3]
    assert nodes[1] == {"id": 1, "block": 1, "function": 0, "text": "icmp", "type": 0,
                        "full_text": "%cmp = icmp slt i32 %i, 64", "pragma": None}  # fmt: skip
    assert nodes[3]["pragma"] == "__PARA__L0" and nodes[3]["text"] == "PARALLEL"
    assert nodes[0]["full_text"] is None
    assert edges == [[0, 1, 0, 0], [2, 1, 1, 1], [3, 1, 3, 0], [1, 3, 3, 0]]


@pytest.mark.parametrize(
    ("broken", "match"),
    [
        (
            TINY_GEXF.replace('source="2" target="1"', 'source="2" target="9"'),
            "edge '1' refers to unknown node",
        ),
        (
            TINY_GEXF.replace('<attvalue for="3" value="1" />', '<attvalue for="3" value="var" />'),
            "attribute 'type' is not a int",
        ),
        (TINY_GEXF.replace('title="type"', 'title="kind"'), "node attribute 'type' is not declared"),
        (TINY_GEXF[:900], "not valid GEXF/XML"),
    ],
)
def test_malformed_gexf_names_the_file_and_element(broken: str, match: str) -> None:
    with pytest.raises(SourceFormatError, match=match) as info:
        hlsyn.parse_gexf(broken.encode(), name="bad.gexf")
    assert str(info.value).startswith("bad.gexf")


def test_zero_perf_and_zero_resources_become_missing(tmp_path: Path) -> None:
    df = hlsyn.load(write_hlsyn(tmp_path))["fpga"].sort("design_id")
    rows = {r["design_id"]: r for r in df.iter_rows(named=True)}
    full = rows["v18/stencil/__PARA__L0-1"]
    assert (full["cycles"], full["lut"], full["ff"], full["dsp"], full["bram"], full["bram_unit"]) == (
        1200, 5000, 7000, 0, 4, "bram18k",
    )  # fmt: skip
    assert (full["valid"], full["tool"], full["tool_version"], full["part"]) == (
        True, "vivado_hls", "2018.3", "xcu200-fsgd2104-2-e",
    )  # fmt: skip
    assert json.loads(full["model"]) == {"program_graph": "stencil_stencil2d", "graph_domain": "hlsyn"}
    assert json.loads(full["pragmas"]) == {"__PARA__L0": 1}
    no_report = rows["v18/stencil/__PARA__L0-2"]
    assert no_report["cycles"] == 900 and no_report["valid"] is False
    assert [no_report[c] for c in ("lut", "ff", "dsp", "bram", "bram_unit")] == [None] * 5
    no_perf = rows["v20/stencil/__PARA__L0-4"]
    assert (no_perf["cycles"], no_perf["lut"], no_perf["ff"], no_perf["dsp"]) == (None, 6000, None, 3)
    assert (no_perf["tool"], no_perf["tool_version"]) == ("vitis_hls", "2020.2")
    assert json.loads(no_perf["extra"])["tool_tag"] == "v20"


def test_program_graphs_round_trip_through_the_store(tmp_path: Path, store: DatasetStore) -> None:
    assert "program_graphs" in KINDS and NATURAL_KEYS["program_graphs"] == ("domain", "graph_id")
    report = import_source("hlsyn", write_hlsyn(tmp_path / "hlsyn"), store=store)
    assert report.rows == {"fpga": 3, "program_graphs": 1}
    graph = hlsyn.read_program_graph(store, "stencil")
    assert (graph.graph_id, graph.kernel) == ("stencil_stencil2d", "stencil")
    assert graph.nodes.schema == hlsyn.NODE_SCHEMA and graph.edges.schema == hlsyn.EDGE_SCHEMA
    assert graph.nodes["id"].to_list() == [0, 1, 2, 3]
    assert graph.nodes["pragma"].to_list() == [None, None, None, "__PARA__L0"]
    assert graph.edges.rows() == [(0, 1, 0, 0), (2, 1, 1, 1), (3, 1, 3, 0), (1, 3, 3, 0)]
    row = store.read("program_graphs").row(0, named=True)
    assert (row["n_nodes"], row["n_edges"], row["n_pragma_nodes"], json.loads(row["pragma_placeholders"])) == (
        4, 4, 1, ["__PARA__L0"],
    )  # fmt: skip
    assert set(hlsyn.read_program_graphs(store)) == {"stencil"}
    with pytest.raises(
        StoreError, match="no program graph for kernel 'gemm' in domain 'hlsyn'; known kernels: stencil"
    ):
        hlsyn.read_program_graph(store, "gemm")


@pytest.mark.parametrize(
    ("row", "match"),
    [
        (CSV_ROWS[0].replace(",1,1200.0,", ",2,1200.0,"), "column 'valid' must be 0/1"),
        (CSV_ROWS[0].replace(",5000,", ",-5000,"), "column 'total_LUT' is NaN, infinite or negative"),
        (CSV_ROWS[0].replace("1200.0", "nan"), "column 'perf_cycles' is NaN"),
        (CSV_ROWS[0].replace("v18,", "v19,", 1), r"unknown value\(s\) \['v19'\]"),
        (CSV_ROWS[0].replace('"{""__PARA__L0"":1}"', "L0=1"), "'pragma_point' is not a JSON object"),
        (CSV_ROWS[0].replace("stencil", "gemm"), r"no program graph for design kernel\(s\) \['gemm'\]"),
    ],
)
def test_bad_design_rows_name_the_file_and_column(tmp_path: Path, row: str, match: str) -> None:
    write_hlsyn(tmp_path, rows=[row])
    with pytest.raises(SourceFormatError, match=match) as info:
        hlsyn.load(tmp_path)
    assert "hlsyn_designs.csv.xz" in str(info.value) or hlsyn.TAR_NAME in str(info.value)


def test_cli_corrupt_tarball_fails_and_store_is_unchanged(tmp_path: Path, capsys) -> None:
    store_dir = tmp_path / "store"
    good = write_hlsyn(tmp_path / "good")
    assert (
        run_hws(["data", "import", "hlsyn", "--from", str(good), "--store", str(store_dir)], capsys)[0] == 0
    )
    before = snapshot(store_dir)
    bad = write_hlsyn(tmp_path / "bad")
    tar = bad / "raw" / hlsyn.TAR_NAME
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    code, out = run_hws(["data", "import", "hlsyn", "--from", str(bad), "--store", str(store_dir)], capsys)
    assert code != 0 and hlsyn.TAR_NAME in out and "truncated or corrupt" in out
    assert snapshot(store_dir) == before


# ---------------------------------------------------------------------------- the shared archive
@pytest.fixture(scope="module")
def shared(data_dir: Path) -> dict[str, pl.DataFrame]:
    return hlsyn.load(data_dir / "fpga" / "hlsyn")


def test_shared_counts_match_the_readme_table(shared: dict[str, pl.DataFrame]) -> None:
    df = shared["fpga"]
    assert df.height == 41_596
    has_both = pl.col("cycles").is_not_null() & pl.col("lut").is_not_null()
    table = df.group_by("tool_version").agg(
        valid=(has_both & pl.col("valid")).sum(),
        invalid=(has_both & ~pl.col("valid")).sum(),
        perf_no_lut=(pl.col("cycles").is_not_null() & pl.col("lut").is_null() & pl.col("valid")).sum(),
        n=pl.len(),
    )
    assert {r[0]: r[1:] for r in table.iter_rows()} == {
        "2018.3": (7730, 1074, 529, 27_867),
        "2020.2": (4130, 753, 103, 13_729),
    }


def test_shared_graphs_match_the_graph_index(shared: dict[str, pl.DataFrame], data_dir: Path) -> None:
    graphs = shared["program_graphs"]
    assert graphs.height == 43
    index = pl.read_csv(data_dir / "fpga" / "hlsyn" / "derived" / "hlsyn_graph_index.csv").with_columns(
        pl.col("graph_file").str.replace("_processed_result.gexf", "").alias("graph_id")
    )
    joined = graphs.join(index, on="graph_id", suffix="_index")
    assert joined.height == 43
    assert (joined["n_nodes"] == joined["n_nodes_index"]).all() and (
        joined["n_edges"] == joined["n_edges_index"]
    ).all()
    for row in joined.iter_rows(named=True):
        types = pl.Series([n["type"] for n in json.loads(row["nodes"])]).value_counts()
        assert {str(t): c for t, c in types.iter_rows()} == json.loads(row["node_type_counts"])
        assert json.loads(row["pragma_placeholders"]) == sorted(
            (row["pragma_placeholders_index"] or "").split()
        )
    assert graphs.filter(pl.col("graph_id") == "stencil_stencil2d")["kernel"].item() == "stencil"
    # every design's placeholders exist in its kernel's graph
    keys = shared["fpga"].group_by("kernel").agg(pl.col("pragmas").first())
    by_kernel = {r["kernel"]: set(json.loads(r["pragma_placeholders"])) for r in graphs.iter_rows(named=True)}
    for kernel, pragmas in keys.iter_rows():
        assert set(json.loads(pragmas)) <= by_kernel[kernel], kernel


def test_shared_flat_csv_matches_the_json_in_the_tarball(
    shared: dict[str, pl.DataFrame], data_dir: Path
) -> None:
    root = data_dir / "fpga" / "hlsyn"
    truth = hlsyn.read_designs_tar(root / "raw" / hlsyn.TAR_NAME)
    assert truth.height == 41_596
    raw = pl.read_csv(
        io.BytesIO(lzma.decompress((root / "derived" / "hlsyn_designs.csv.xz").read_bytes())),
        infer_schema_length=None,
    )
    key = ["tool", "kernel", "design_key"]
    joined = raw.join(truth, on=key, how="full", coalesce=True, suffix="_json")
    assert joined.height == 41_596
    for col in ("valid", "perf_cycles", "total_LUT", "total_FF", "total_DSP", "total_BRAM"):
        assert (joined[col].cast(pl.Float64) == joined[f"{col}_json"].cast(pl.Float64)).all(), col
    sample = random.Random(0).sample(range(joined.height), 500)
    for i in sample:
        assert json.loads(joined["pragma_point"][i]) == json.loads(joined["pragma_point_json"][i])
