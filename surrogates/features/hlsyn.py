"""HLSyn/HARP design features: pragma vectors per kernel plus kernel identity statistics.

:func:`hlsyn_features` turns a design's pragma values into aggregates that generalise across
kernels and positional per-placeholder values; :func:`program_graph_stats` summarises each
kernel's program graph (node/edge/opcode counts). The program graphs themselves (parsing, loop
features, GNN batches) live in :mod:`.program_graphs`.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl

HLSYN_QUERY_COLUMNS: tuple[str, ...] = ("kernel", "pragmas", "tool")
TOOL_CODES: dict[str, float] = {"vivado_hls": 0.0, "v18": 0.0, "vitis_hls": 1.0, "v20": 1.0, "v21": 2.0}
#: positional placeholders kept as individual features (``__PARA__L0`` ... ``__PIPE__L7``).
HLSYN_N_POSITIONS = 8
HLSYN_AGG_FEATURES: tuple[str, ...] = (
    "n_para",
    "n_pipe",
    "n_tile",
    "log2_para_sum",
    "log2_para_max",
    "log2_para_prod",
    "log2_tile_prod",
    "n_pipe_flatten",
    "n_pipe_off",
    "n_pipe_auto",
    "n_para_gt1",
    "log2_para_prod_pipelined",
)
HLSYN_POS_FEATURES: tuple[str, ...] = tuple(
    f"{kind}_L{i}" for kind in ("para", "pipe", "tile") for i in range(HLSYN_N_POSITIONS)
)
_PRAGMA_RE = r"^__(PARA|PIPE|TILE)__L(\d+)$"


def _pragma_long(queries: pl.DataFrame) -> pl.DataFrame:
    """One row per (query row, placeholder, value) from the ``pragmas`` JSON column."""
    pr = queries["pragmas"].cast(pl.String)
    if pr.is_null().any():
        raise ValueError(
            f"fpga-hlsyn queries: column 'pragmas' is null in row {int(pr.is_null().arg_true()[0])}"
        )
    keys: list[list[str]] = []
    vals: list[list[str]] = []
    for i, text in enumerate(pr.to_list()):  # json parsing is per string; the rest is columnar
        try:
            d = json.loads(text)
        except ValueError:
            raise ValueError(
                f"fpga-hlsyn queries: column 'pragmas' row {i} is not valid JSON: {text[:80]!r}"
            ) from None
        if not isinstance(d, dict):
            raise ValueError(f"fpga-hlsyn queries: column 'pragmas' row {i} must be a JSON object")
        keys.append(list(d))
        vals.append(["" if v is None else str(v) for v in d.values()])
    long = pl.DataFrame({"_row": np.arange(len(keys)), "key": keys, "value": vals}).explode(["key", "value"])
    parts = pl.col("key").str.extract_groups(_PRAGMA_RE)
    long = long.with_columns(
        parts.struct.field("1").str.to_lowercase().alias("kind"),
        parts.struct.field("2").cast(pl.Int64, strict=False).alias("pos"),
        pl.col("value").cast(pl.Float64, strict=False).alias("num"),
    )
    return long


def hlsyn_features(
    queries: pl.DataFrame, graph_stats: pl.DataFrame | None = None, graphs: dict | None = None
) -> pl.DataFrame:
    """Pragma-vector features of HLSyn/HARP designs, plus kernel graph statistics when given.

    ``graph_stats`` is one row per ``kernel`` with numeric columns (node/edge/type counts of the
    program graph); kernels missing from it get NaN (trees handle missing values).
    ``graphs`` (kernel -> :class:`.program_graphs.KernelGraph`) adds the analytical loop-nest
    features of :func:`.program_graphs.loop_features` (trip counts x parallel factors x body ops);
    a design of a kernel without a graph gets NaN there.
    """
    missing = [c for c in HLSYN_QUERY_COLUMNS if c not in queries.columns]
    if missing:
        raise ValueError(f"fpga-hlsyn queries miss column(s) {missing}")
    n = queries.height
    long = _pragma_long(queries)
    para = long.filter(pl.col("kind") == "para")
    pipe = long.filter(pl.col("kind") == "pipe")
    tile = long.filter(pl.col("kind") == "tile")
    base = pl.DataFrame({"_row": np.arange(n)})
    agg_para = para.group_by("_row").agg(
        pl.len().alias("n_para"),
        pl.col("num").sum().log(2).alias("log2_para_sum"),
        pl.col("num").max().log(2).alias("log2_para_max"),
        pl.col("num").log(2).sum().alias("log2_para_prod"),
        (pl.col("num") > 1).sum().alias("n_para_gt1"),
    )
    agg_pipe = pipe.group_by("_row").agg(
        pl.len().alias("n_pipe"),
        (pl.col("value") == "flatten").sum().alias("n_pipe_flatten"),
        (pl.col("value") == "off").sum().alias("n_pipe_off"),
        (pl.col("value") == "").sum().alias("n_pipe_auto"),
    )
    agg_tile = tile.group_by("_row").agg(
        pl.len().alias("n_tile"), pl.col("num").log(2).sum().alias("log2_tile_prod")
    )
    # parallel factors on loops that are also pipelined (same L index, pipe not 'off')
    piped = pipe.filter(pl.col("value") != "off").select("_row", "pos")
    pp = (
        para.join(piped, on=["_row", "pos"], how="inner")
        .group_by("_row")
        .agg(pl.col("num").log(2).sum().alias("log2_para_prod_pipelined"))
    )
    pipe_code = pipe.with_columns(
        pl.col("value").replace_strict({"off": 0.0, "": 1.0, "flatten": 2.0}, default=1.0).alias("num")
    )
    pos = (
        pl.concat([para, pipe_code, tile])
        .filter(pl.col("pos") < HLSYN_N_POSITIONS)
        .with_columns(
            pl.concat_str(pl.col("kind"), pl.lit("_L"), pl.col("pos").cast(pl.String)).alias("name"),
            pl.when(pl.col("kind") == "pipe").then(pl.col("num")).otherwise(pl.col("num").log(2)).alias("v"),
        )
        .select("_row", "name", "v")
        .unique(["_row", "name"], keep="first")
    )
    wide = pos.pivot(on="name", index="_row", values="v") if pos.height else pl.DataFrame({"_row": []})
    out = base
    for part in (agg_para, agg_pipe, agg_tile, pp, wide):
        out = out.join(part.with_columns(pl.col("_row").cast(pl.Int64)), on="_row", how="left")
    for c in HLSYN_AGG_FEATURES + HLSYN_POS_FEATURES:
        if c not in out.columns:
            out = out.with_columns(pl.lit(None, dtype=pl.Float64).alias(c))
    counts = ["n_para", "n_pipe", "n_tile", "n_pipe_flatten", "n_pipe_off", "n_pipe_auto", "n_para_gt1"]
    out = out.sort("_row").with_columns(
        *(pl.col(c).cast(pl.Float64).fill_null(0.0) for c in counts),
        *(pl.col(c).cast(pl.Float64).fill_null(0.0) for c in ("log2_para_prod", "log2_tile_prod",
                                                               "log2_para_prod_pipelined")),
        pl.lit(queries["tool"].cast(pl.String)).alias("_tool"),
    )  # fmt: skip
    out = out.with_columns(pl.col("_tool").replace_strict(TOOL_CODES, default=-1.0).alias("tool_code"))
    cols = [*HLSYN_AGG_FEATURES, *HLSYN_POS_FEATURES, "tool_code"]
    feats = out.select(pl.col(c).cast(pl.Float64) for c in cols)
    if graph_stats is not None and graph_stats.height:
        stat_cols = [c for c in graph_stats.columns if c != "kernel" and graph_stats[c].dtype.is_numeric()]
        g = graph_stats.select(
            pl.col("kernel").cast(pl.String), *(pl.col(c).cast(pl.Float64) for c in stat_cols)
        )
        joined = (
            pl.DataFrame({"kernel": queries["kernel"].cast(pl.String)})
            .with_row_index("_r")
            .join(g.unique("kernel"), on="kernel", how="left")
            .sort("_r")
        )
        feats = feats.hstack(joined.select((pl.col(c) + 1).log(2).alias(f"g_{c}") for c in stat_cols))
    if graphs is not None:
        feats = feats.hstack(_hlsyn_loop_frame(queries, graphs))
    return feats


def _hlsyn_loop_frame(queries: pl.DataFrame, graphs: dict) -> pl.DataFrame:
    """:func:`.program_graphs.loop_features` of every row, computed per kernel (NaN without a graph)."""
    from hwsurrogate.surrogates.features.program_graphs import LOOP_FEATURES, loop_features, pragma_values

    out = np.full((queries.height, len(LOOP_FEATURES)), np.nan)
    kernels = queries["kernel"].cast(pl.String)
    idx = pl.DataFrame({"kernel": kernels}).with_row_index("_r").group_by("kernel").agg("_r")
    for kernel, rows in idx.iter_rows():
        kg = graphs.get(kernel)
        if kg is None:
            continue
        r = np.asarray(rows, dtype=np.int64)
        out[r] = loop_features(kg, pragma_values(kg, queries["pragmas"].cast(pl.String).gather(r)))
    return pl.DataFrame(out, schema=list(LOOP_FEATURES), orient="row")


#: node opcodes whose counts describe a kernel's work (loops ~ icmp, memory, arithmetic).
GRAPH_OPCODES: tuple[str, ...] = (
    "icmp",
    "load",
    "store",
    "fmul",
    "fadd",
    "mul",
    "add",
    "br",
    "call",
    "getelementptr",
)


def program_graph_stats(graphs: pl.DataFrame) -> pl.DataFrame:
    """Kernel identity features from the ``program_graphs`` table, one row per ``kernel``.

    Node/edge/pragma counts, node-type and edge-flow counts and opcode counts (``icmp`` ~ loops);
    computed once at training and baked into the model.
    """
    if graphs.height == 0:
        return pl.DataFrame({"kernel": []}, schema={"kernel": pl.String})
    node_dtype = pl.List(pl.Struct({"type": pl.Int64, "text": pl.String}))
    nodes = (
        graphs.select("kernel", pl.col("nodes").str.json_decode(node_dtype).alias("node"))
        .explode("node")
        .unnest("node")
    )
    by_type = nodes.group_by("kernel").agg(
        *((pl.col("type") == t).sum().cast(pl.Float64).alias(f"n_type{t}") for t in range(4)),
        *((pl.col("text") == op).sum().cast(pl.Float64).alias(f"n_{op}") for op in GRAPH_OPCODES),
    )
    edges = graphs.select(
        "kernel", pl.col("edges").str.json_decode(pl.List(pl.List(pl.Int64))).alias("e")
    ).explode("e")
    by_flow = (
        edges.with_columns(pl.col("e").list.get(2, null_on_oob=True).alias("flow"))
        .group_by("kernel")
        .agg(*((pl.col("flow") == f).sum().cast(pl.Float64).alias(f"n_flow{f}") for f in range(4)))
    )
    base = graphs.select(
        "kernel",
        pl.col("n_nodes").cast(pl.Float64),
        pl.col("n_edges").cast(pl.Float64),
        pl.col("n_pragma_nodes").cast(pl.Float64),
    ).unique("kernel", keep="first")
    return base.join(by_type, on="kernel", how="left").join(by_flow, on="kernel", how="left").sort("kernel")
