"""Importer: HLSyn: 41,596 Merlin/Vitis HLS designs over 42 kernels with ProGraML program graphs.

Read the source README under ``$HWSURROGATE_DATA_DIR/fpga/hlsyn`` for units, encodings and defects.

Row design (see ``docs/fpga-data.md``):

- ``fpga``: one ``stage=hls_estimate`` row per design point (``design_id = <v18|v20>/<kernel>/<design_key>``),
  read from ``derived/hlsyn_designs.csv.xz`` (a lossless flattening of ``data/designs/*/*.json``
  in the tar; a test checks a sample against the JSON). ``cycles`` = ``perf`` (0 = no result ->
  null); ``lut/ff/dsp/bram`` = ``total-*`` with ``bram_unit=bram18k``. A report with LUT = 0 is
  missing (all four resources null); FF = 0 next to LUT > 0 is missing too (FF null); DSP/BRAM
  zeros next to LUT > 0 are real zeros. ``pragmas`` = the design's placeholder -> value JSON;
  ``model`` = ``{"program_graph": <graph_id>, "graph_domain": "hlsyn"}``.
- ``program_graphs``: one row per GEXF file in ``raw/HLSyn_data.tar.gz`` (43 graphs), nodes and
  edges as JSON. :func:`read_program_graph` returns them as typed frames for the GNN.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from hwsurrogate.datasets.importers import Source
from hwsurrogate.datasets.importers._common import read_bytes, with_provenance
from hwsurrogate.datasets.importers._fpga import check_nonnegative, json_object, require_columns
from hwsurrogate.datasets.schemas import Kind, with_measurement_id
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import SourceFormatError, SourceNotFoundError, StoreError

SOURCE = Source(
    name="hlsyn",
    kinds=("fpga", "program_graphs"),
    subpath="fpga/hlsyn",
    url="https://github.com/ZongyueQin/HLSyn/blob/88ed5321811e5c9d838215f0a4f95f89b3ffcd02/data/HLSyn_data.tar.gz",
    license="CC-BY-SA-4.0",
    description="HLSyn: 41,596 Merlin/Vitis HLS designs over 42 kernels with ProGraML program graphs",
)

ORIGIN = "github.com/ZongyueQin/HLSyn@88ed5321811e5c9d838215f0a4f95f89b3ffcd02"
DOMAIN = "hlsyn"
#: Alveo U200: the capacities implied by total/util (LUT 1,182,240, BRAM_18K 4,320) are the U200's.
PART = "xcu200-fsgd2104-2-e"
#: tool tag -> (HLS engine under Merlin, version)
TOOLS: dict[str, tuple[str, str]] = {"v18": ("vivado_hls", "2018.3"), "v20": ("vitis_hls", "2020.2")}
#: design kernel -> graph id (file stem without ``_processed_result``), where they differ
GRAPH_OF_KERNEL: dict[str, str] = {"stencil": "stencil_stencil2d"}
KERNEL_OF_GRAPH: dict[str, str] = {g: k for k, g in GRAPH_OF_KERNEL.items()}

DESIGN_COLUMNS = ("tool", "kernel", "design_key", "valid", "perf_cycles", "total_LUT", "total_FF", "total_DSP",
                  "total_BRAM", "util_LUT", "util_FF", "util_DSP", "util_BRAM", "pragma_point")  # fmt: skip
_NUMERIC = (
    "perf_cycles",
    "total_LUT",
    "total_FF",
    "total_DSP",
    "total_BRAM",
    "util_LUT",
    "util_FF",
    "util_DSP",
    "util_BRAM",
)
_PLACEHOLDER = re.compile(r"auto\{(__[A-Za-z]+__\w+?)\}")
_GEXF_NS = "{http://www.gexf.net/1.2draft}"
_NODE_ATTRS = {"type": int, "text": str, "full_text": str, "block": int, "function": int}
_EDGE_ATTRS = {"flow": int, "position": int}
TAR_NAME = "HLSyn_data.tar.gz"


def graph_id_of(kernel: str) -> str:
    return GRAPH_OF_KERNEL.get(kernel, kernel)


# --------------------------------------------------------------------------- design rows
def designs_frame(
    df: pl.DataFrame,
    *,
    path: Path,
    domain: str,
    tools: dict[str, tuple[str, str]],
    extra_columns: tuple[str, ...] = (),
) -> pl.DataFrame:
    """fpga rows (without provenance) from the HLSyn/HARP flat design table (vectorised)."""
    require_columns(df, (*DESIGN_COLUMNS, *extra_columns), path)
    check_nonnegative(df, _NUMERIC, path, id_column="design_key")
    for col in ("tool", "kernel", "design_key", "pragma_point"):
        if df[col].null_count():
            i = int(df[col].is_null().arg_true()[0])
            raise SourceFormatError(f"{path}: column {col!r} is empty at data row {i}")
    unknown = sorted(set(df["tool"].unique().to_list()) - set(tools))
    if unknown:
        raise SourceFormatError(
            f"{path}: column 'tool' has unknown value(s) {unknown}; expected {sorted(tools)}"
        )
    valid = (
        df["valid"]
        .cast(pl.String)
        .str.to_lowercase()
        .replace_strict(
            {"1": True, "0": False, "true": True, "false": False}, default=None, return_dtype=pl.Boolean
        )
    )
    if valid.null_count():
        i = int(valid.is_null().arg_true()[0])
        raise SourceFormatError(f"{path}: column 'valid' must be 0/1; data row {i}: {df['valid'][i]!r}")
    bad_json = ~df["pragma_point"].str.starts_with("{") | ~df["pragma_point"].str.ends_with("}")
    if bad_json.any():
        i = int(bad_json.arg_true()[0])
        raise SourceFormatError(
            f"{path}: column 'pragma_point' is not a JSON object at data row {i}: {df['pragma_point'][i]!r}"
        )
    df = df.with_columns(valid.alias("valid"), pl.col(*_NUMERIC).cast(pl.Float64))
    dup = df.select(pl.struct("tool", "kernel", "design_key").is_duplicated()).to_series()
    if dup.any():
        r = df.filter(dup).row(0, named=True)
        raise SourceFormatError(f"{path}: design {r['tool']}/{r['kernel']}/{r['design_key']} appears twice")

    no_report = pl.col("total_LUT") == 0  # the whole resource report is missing
    tool_name = pl.col("tool").replace_strict({k: v[0] for k, v in tools.items()})
    tool_version = pl.col("tool").replace_strict({k: v[1] for k, v in tools.items()})
    graph = pl.col("kernel").replace(GRAPH_OF_KERNEL)
    extra = {"tool_tag": pl.col("tool")}
    extra |= {c: pl.col(c) for c in extra_columns}
    extra |= {c.lower(): pl.col(c) for c in ("util_LUT", "util_FF", "util_DSP", "util_BRAM")}
    return df.select(
        pl.format("{}/{}/{}", "tool", "kernel", "design_key").alias("design_id"),
        pl.lit(domain).alias("domain"),
        pl.col("kernel"),
        json_object({"program_graph": graph, "graph_domain": pl.lit(DOMAIN)}).alias("model"),
        pl.col("pragma_point").alias("pragmas"),
        pl.lit(PART).alias("part"),
        tool_name.alias("tool"),
        tool_version.alias("tool_version"),
        pl.lit("hls_estimate").alias("stage"),
        pl.col("valid"),
        pl.when(~no_report).then(pl.col("total_LUT")).alias("lut"),
        pl.when(~no_report & (pl.col("total_FF") > 0)).then(pl.col("total_FF")).alias("ff"),
        pl.when(~no_report).then(pl.col("total_DSP")).alias("dsp"),
        pl.when(~no_report).then(pl.col("total_BRAM")).alias("bram"),
        pl.when(~no_report).then(pl.lit("bram18k")).alias("bram_unit"),
        pl.when(pl.col("perf_cycles") > 0).then(pl.col("perf_cycles")).alias("cycles"),
        json_object(extra).alias("extra"),
    )


# --------------------------------------------------------------------------- program graphs
def parse_gexf(data: bytes, *, name: str) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """Nodes ``{id, type, text, full_text, block, function, pragma}`` and edges ``[src, dst, flow, position]``
    of a ProGraML GEXF 1.2 export; raises :class:`SourceFormatError` naming ``name`` and the element."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise SourceFormatError(f"{name}: not valid GEXF/XML ({exc})") from None
    graph = root.find(f"{_GEXF_NS}graph")
    if graph is None:
        raise SourceFormatError(f"{name}: no <graph> element (is this GEXF 1.2?)")
    titles: dict[str, dict[str, str]] = {"node": {}, "edge": {}}
    for attrs in graph.iterfind(f"{_GEXF_NS}attributes"):
        cls = attrs.get("class", "")
        for a in attrs.iterfind(f"{_GEXF_NS}attribute"):
            titles.setdefault(cls, {})[a.get("id", "")] = a.get("title", "")
    if "type" not in titles["node"].values():
        raise SourceFormatError(f"{name}: node attribute 'type' is not declared")
    nodes: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    for el in graph.iterfind(f"{_GEXF_NS}nodes/{_GEXF_NS}node"):
        gid = el.get("id")
        if gid is None or gid in index:
            raise SourceFormatError(f"{name}: node without id or duplicate id {gid!r}")
        node = {"id": len(nodes), **_attvalues(el, titles["node"], _NODE_ATTRS, name, f"node {gid}")}
        if node.get("type") is None:
            raise SourceFormatError(f"{name}: node {gid} has no 'type' attribute")
        node.setdefault("text", None)
        node.setdefault("full_text", None)
        m = _PLACEHOLDER.search(node["full_text"] or "") if node["type"] == 3 else None
        node["pragma"] = m.group(1) if m else None
        index[gid] = node["id"]
        nodes.append(node)
    if not nodes:
        raise SourceFormatError(f"{name}: the graph has no nodes")
    edges: list[list[int]] = []
    for el in graph.iterfind(f"{_GEXF_NS}edges/{_GEXF_NS}edge"):
        src, dst = el.get("source"), el.get("target")
        if src not in index or dst not in index:
            raise SourceFormatError(
                f"{name}: edge {el.get('id')!r} refers to unknown node {src!r} -> {dst!r}"
            )
        att = _attvalues(el, titles["edge"], _EDGE_ATTRS, name, f"edge {el.get('id')}")
        if att.get("flow") is None:
            raise SourceFormatError(f"{name}: edge {el.get('id')!r} has no 'flow' attribute")
        edges.append([index[src], index[dst], att["flow"], att.get("position", 0)])
    return nodes, edges


def _attvalues(
    el: ET.Element, titles: dict[str, str], wanted: dict[str, type], name: str, what: str
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for av in el.iterfind(f"{_GEXF_NS}attvalues/{_GEXF_NS}attvalue"):
        title = titles.get(av.get("for", ""))
        if title in wanted:
            raw = av.get("value")
            try:
                out[title] = wanted[title](raw) if raw is not None else None
            except ValueError:
                raise SourceFormatError(
                    f"{name}: {what}: attribute {title!r} is not a {wanted[title].__name__}: {raw!r}"
                ) from None
    return out


def graph_row(
    graph_id: str, nodes: list[dict[str, Any]], edges: list[list[int]], *, extra: dict[str, Any]
) -> dict[str, Any]:
    placeholders = sorted({n["pragma"] for n in nodes if n["pragma"]})
    return {
        "graph_id": graph_id,
        "domain": DOMAIN,
        "kernel": KERNEL_OF_GRAPH.get(graph_id, graph_id),
        "n_nodes": len(nodes),
        "n_edges": len(edges),
        "n_pragma_nodes": sum(1 for n in nodes if n["type"] == 3),
        "pragma_placeholders": json.dumps(placeholders),
        "nodes": json.dumps(nodes, separators=(",", ":")),
        "edges": json.dumps(edges, separators=(",", ":")),
        "extra": json.dumps(extra, separators=(",", ":")),
    }


def read_graphs_tar(tar_path: Path) -> pl.DataFrame:
    """One program_graphs row per ``data/graphs/*_processed_result.gexf`` in the HLSyn tarball."""
    data = read_bytes(tar_path)
    rows: list[dict[str, Any]] = []
    sources: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            members = tar.getmembers()
            for m in members:
                if m.isfile() and m.name.startswith("data/sources/") and m.name.endswith("_kernel.c"):
                    sources[m.name.rsplit("/", 1)[1][: -len("_kernel.c")]] = m.name
            for m in members:
                if not (
                    m.isfile()
                    and m.name.startswith("data/graphs/")
                    and m.name.endswith("_processed_result.gexf")
                ):
                    continue
                graph_id = m.name.rsplit("/", 1)[1][: -len("_processed_result.gexf")]
                fh = tar.extractfile(m)
                if fh is None:
                    raise SourceFormatError(f"{tar_path}: cannot read member {m.name}")
                nodes, edges = parse_gexf(fh.read(), name=f"{tar_path}:{m.name}")
                extra = {"file": m.name, "source_file": sources.get(graph_id)}
                rows.append(graph_row(graph_id, nodes, edges, extra=extra))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise SourceFormatError(
            f"{tar_path}: not a readable tar.gz ({exc}); the file is truncated or corrupt"
        ) from None
    if not rows:
        raise SourceFormatError(f"{tar_path}: no data/graphs/*_processed_result.gexf members found")
    return pl.DataFrame(rows).sort("graph_id")


def read_designs_tar(tar_path: Path) -> pl.DataFrame:
    """The design points straight from ``data/designs/<tool>/<kernel>.json`` in the tarball, with the
    columns of ``derived/hlsyn_designs.csv.xz`` (used by tests to check the flat file)."""
    rows: list[dict[str, Any]] = []
    with tarfile.open(fileobj=io.BytesIO(read_bytes(tar_path)), mode="r:*") as tar:
        for m in tar.getmembers():
            parts = m.name.split("/")
            if not (m.isfile() and len(parts) == 4 and parts[1] == "designs" and parts[3].endswith(".json")):
                continue
            fh = tar.extractfile(m)
            assert fh is not None
            for key, d in json.load(fh).items():
                if not isinstance(d, dict) or "point" not in d:
                    continue  # metadata entries
                res = d.get("res_util", {})
                rows.append(
                    {
                        "tool": parts[2],
                        "kernel": parts[3][:-5],
                        "design_key": key,
                        "valid": int(bool(d["valid"])),
                        "perf_cycles": float(d["perf"]),
                        **{
                            f"total_{k}": float(res.get(f"total-{k}", 0))
                            for k in ("LUT", "FF", "DSP", "BRAM")
                        },
                        "pragma_point": json.dumps(d["point"]),
                    }  # fmt: skip
                )
    return pl.from_dicts(rows, infer_schema_length=None)


# --------------------------------------------------------------------------- load + accessors
def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Design rows from ``derived/hlsyn_designs.csv.xz`` and graphs from ``raw/HLSyn_data.tar.gz``."""
    csv = path / "derived" / "hlsyn_designs.csv.xz"
    tar = path / "raw" / TAR_NAME
    for p in (csv, tar):
        if not p.is_file():
            raise SourceNotFoundError(f"HLSyn file {p} is missing; download it from {SOURCE.url}")
    from hwsurrogate.datasets.importers._common import read_csv_checked

    raw = read_csv_checked(
        csv, DESIGN_COLUMNS, schema_overrides={"pragma_point": pl.String, "valid": pl.String}
    )
    designs = designs_frame(raw, path=csv, domain=DOMAIN, tools=TOOLS)
    graphs = read_graphs_tar(tar)
    missing = sorted(
        set(designs["model"].str.json_path_match("$.program_graph").unique()) - set(graphs["graph_id"])
    )
    if missing:
        raise SourceFormatError(f"{tar}: no program graph for design kernel(s) {missing}")
    prov = {"source": SOURCE.name, "origin": ORIGIN, "license": SOURCE.license}
    return {
        "fpga": with_measurement_id(with_provenance(designs, **prov), "fpga"),
        "program_graphs": with_measurement_id(with_provenance(graphs, **prov), "program_graphs"),
    }


class ProgramGraph(NamedTuple):
    """A kernel's program graph as frames ready for a PyG ``Data``.

    ``nodes``: ``id`` (0..n-1, the row position), ``type`` (0 instruction, 1 variable, 2 constant,
    3 pragma), ``text``, ``full_text``, ``block``, ``function``, ``pragma`` (placeholder such as
    ``__PARA__L0`` on pragma nodes, else null). ``edges``: ``src``, ``dst`` (node ids), ``flow``
    (0 control, 1 data, 2 call, 3 pragma), ``position``.
    """

    graph_id: str
    kernel: str
    nodes: pl.DataFrame
    edges: pl.DataFrame


NODE_SCHEMA = pl.Schema({"id": pl.Int64, "type": pl.Int64, "text": pl.String, "full_text": pl.String,
                         "block": pl.Int64, "function": pl.Int64, "pragma": pl.String})  # fmt: skip
EDGE_SCHEMA = pl.Schema({"src": pl.Int64, "dst": pl.Int64, "flow": pl.Int64, "position": pl.Int64})


def _to_graph(row: dict[str, Any]) -> ProgramGraph:
    nodes = pl.DataFrame(json.loads(row["nodes"]), schema=NODE_SCHEMA)
    edges = pl.DataFrame(json.loads(row["edges"]), schema=EDGE_SCHEMA, orient="row")
    return ProgramGraph(row["graph_id"], row["kernel"], nodes, edges)


def read_program_graphs(store: DatasetStore, *, domain: str = DOMAIN) -> dict[str, ProgramGraph]:
    """Every stored program graph of ``domain``, keyed by the design kernel name."""
    df = store.read("program_graphs").filter(pl.col("domain") == domain)
    return {r["kernel"]: _to_graph(r) for r in df.iter_rows(named=True)}


def read_program_graph(store: DatasetStore, kernel: str, *, domain: str = DOMAIN) -> ProgramGraph:
    """The program graph of one design kernel (HLSyn and HARP rows share the ``hlsyn`` graphs)."""
    df = (
        store.scan("program_graphs")
        .filter((pl.col("domain") == domain) & (pl.col("kernel") == kernel))
        .collect()
    )
    if df.height == 0:
        known = store.scan("program_graphs").filter(pl.col("domain") == domain).select("kernel").collect()
        hint = (
            f"known kernels: {', '.join(sorted(known['kernel'].to_list())[:12])}"
            if known.height
            else "run `hws data import hlsyn`"
        )
        raise StoreError(f"no program graph for kernel {kernel!r} in domain {domain!r}; {hint}")
    return _to_graph(df.row(0, named=True))
