"""HLSyn program graphs with the design's pragma values on the pragma nodes: the ONE pipeline
that trees (loop features) and the GNN (graph batches) share, at training and at serving.

A kernel's ProGraML graph (``program_graphs`` table, written by the ``hlsyn`` importer from the
GEXF files) is parsed once into :class:`KernelGraph` arrays and cached. Within a kernel every
design has the same nodes and edges; only the values on the pragma nodes differ, so a batch of
designs is one array operation (:func:`design_batch`), never one ``Data`` built per design in
Python.

Node features (:data:`NODE_FEATURES`): one-hot node type (instruction/variable/constant/pragma),
an opcode/type-name vocabulary index (``op_index``, embedded by the GNN), one-hot pragma kind
(PIPELINE/PARALLEL/TILE), and the design's value: ``log2(factor)`` for PARALLEL/TILE, one-hot
``off``/auto(``""``)/``flatten`` for PIPELINE; loop-header (``icmp``) nodes carry ``log2`` of the
loop's trip count, so the graph knows how much each factor parallelises.
Edge attributes: one-hot ``flow`` (control, data, call, pragma).

Loop structure (for :func:`loop_features`): each pragma node points (flow 3) at its loop's
``icmp``; the trip count is the icmp's constant bound; the loop body is the block range between
the header's conditional-branch targets, which gives nesting and the operations inside each loop.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch
from torch_geometric.data import Batch, Data

__all__ = [
    "KernelGraph",
    "LoopNest",
    "kernel_graph",
    "kernel_graphs",
    "pragma_values",
    "loop_features",
    "unroll_regime_flags",
    "LOOP_FEATURES",
    "NODE_FEATURES",
    "design_batch",
    "design_graphs",
]

#: opcodes / type names with their own embedding row; everything else shares row 0 ("other").
OP_VOCAB: tuple[str, ...] = (
    "other", "icmp", "br", "load", "store", "alloca", "getelementptr", "add", "sub", "mul", "fadd",
    "fsub", "fmul", "fdiv", "sext", "zext", "phi", "call", "ret", "select", "fcmp", "and", "or", "shl",
    "ashr", "lshr", "sdiv", "srem", "trunc", "sitofp", "fptosi", "bitcast", "i32", "i64", "i1", "i8",
    "double", "float", "i32*", "double*", "float*", "double**", "PIPELINE", "PARALLEL", "TILE",
)  # fmt: skip
_OP_INDEX = {op: i for i, op in enumerate(OP_VOCAB)}
PRAGMA_KINDS: tuple[str, ...] = ("PIPE", "PARA", "TILE")
PIPE_CODES: dict[str, int] = {"off": 0, "": 1, "flatten": 2}
NODE_FEATURES: tuple[str, ...] = (
    "type_instruction", "type_variable", "type_constant", "type_pragma",
    "kind_pipe", "kind_para", "kind_tile",
    "log2_factor", "pipe_off", "pipe_auto", "pipe_flatten", "log2_trip",
)  # fmt: skip
N_EDGE_FLOWS = 4
_PLACEHOLDER_RE = re.compile(r"^__(PARA|PIPE|TILE)__L[\w]+$")
_BOUND_RE = re.compile(r"icmp \w+ \w+ [^,]+, (-?\d+)\s*$")
_MULS = ("fmul", "mul", "fdiv", "sdiv")
_ADDS = ("fadd", "fsub", "add", "sub")
_MEMS = ("load", "store")


@dataclass(frozen=True)
class KernelGraph:
    """Arrays of one kernel's program graph (shared by all its designs).

    ``placeholders`` are the pragma placeholders in column order of :func:`pragma_values`;
    ``pragma_node[j]`` is the node holding placeholder ``j``, ``pragma_loop[j]`` its loop index.
    Loops: ``loop_trip`` (trip count), ``loop_parent`` (enclosing annotated loop or -1),
    ``loop_ops`` (``(n_loops, 4)``: multiplies, adds, memory ops, all instructions directly in
    the loop body, sub-loops excluded).
    """

    kernel: str
    node_type: np.ndarray  # (N,) int
    op_index: np.ndarray  # (N,) int into OP_VOCAB
    edge_index: np.ndarray  # (2, E) int64
    edge_flow: np.ndarray  # (E,) int
    placeholders: tuple[str, ...]
    pragma_node: np.ndarray  # (P,) int
    pragma_kind: np.ndarray  # (P,) int into PRAGMA_KINDS
    pragma_loop: np.ndarray  # (P,) int into loops
    loop_node: np.ndarray  # (L,) icmp node ids
    loop_trip: np.ndarray  # (L,) float
    loop_parent: np.ndarray  # (L,) int
    loop_ops: np.ndarray  # (L, 4) float
    _col: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_nodes(self) -> int:
        return int(self.node_type.shape[0])


def kernel_graph(kernel: str, nodes: list[dict], edges: list[list[int]]) -> KernelGraph:
    """Build :class:`KernelGraph` from importer-style nodes (``id, type, text, full_text, block,
    pragma``) and edges (``[src, dst, flow, position]``); raises ``ValueError`` naming the field."""
    if not nodes:
        raise ValueError(f"program graph of kernel {kernel!r}: 'nodes' is empty")
    for i, n in enumerate(nodes):
        if n.get("id") != i or n.get("type") not in (0, 1, 2, 3):
            raise ValueError(
                f"program graph of kernel {kernel!r}: node {i} needs 'id' == {i} and 'type' in 0..3, "
                f"got id={n.get('id')!r} type={n.get('type')!r}"
            )
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 4) if edges else np.zeros((0, 4), np.int64)
    if e.size and (e[:, :2].min() < 0 or e[:, :2].max() >= len(nodes)):
        raise ValueError(
            f"program graph of kernel {kernel!r}: 'edges' refer to a node id outside 0..{len(nodes) - 1}"
        )
    if e.size and not np.isin(e[:, 2], np.arange(N_EDGE_FLOWS)).all():
        raise ValueError(f"program graph of kernel {kernel!r}: edge 'flow' must be 0..3")
    ntype = np.array([n["type"] for n in nodes], dtype=np.int64)
    text = [n.get("text") or "" for n in nodes]
    block = np.array(
        [n.get("block", -1) if n.get("block") is not None else -1 for n in nodes], dtype=np.int64
    )
    op_index = np.array([_OP_INDEX.get(t, 0) for t in text], dtype=np.int64)
    # pragma nodes -> their loop header (icmp) through flow-3 edges
    prag = [i for i, n in enumerate(nodes) if n["type"] == 3 and n.get("pragma")]
    names = [nodes[i]["pragma"] for i in prag]
    bad = [p for p in names if not _PLACEHOLDER_RE.match(p)]
    if bad:
        raise ValueError(
            f"program graph of kernel {kernel!r}: pragma placeholder {bad[0]!r} is not __PARA/PIPE/TILE__L*"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"program graph of kernel {kernel!r}: a pragma placeholder appears on two nodes")
    to_loop: dict[int, int] = {}
    pe = e[(e[:, 2] == 3)] if e.size else e
    for s, d in pe[:, :2]:
        if ntype[s] == 3 and ntype[d] != 3:
            to_loop.setdefault(int(s), int(d))
    headers = sorted({to_loop[i] for i in prag if i in to_loop})
    loop_of = {h: j for j, h in enumerate(headers)}
    order = sorted(range(len(prag)), key=lambda j: names[j])
    prag = [prag[j] for j in order]
    names = [names[j] for j in order]
    pragma_loop = np.array([loop_of.get(to_loop.get(i, -1), -1) for i in prag], dtype=np.int64)
    pragma_kind = np.array([PRAGMA_KINDS.index(p[2:6]) for p in names], dtype=np.int64)
    # loops: trip count from the icmp's constant bound, body = block range of its branch targets
    ctrl = e[e[:, 2] == 0] if e.size else e
    n_loops = len(headers)
    trip = np.full(n_loops, np.nan)
    lo = np.zeros(n_loops, np.int64)
    hi = np.zeros(n_loops, np.int64)
    for j, h in enumerate(headers):
        m = _BOUND_RE.search(nodes[h].get("full_text") or "")
        if m and int(m.group(1)) > 0:
            trip[j] = float(m.group(1))
        b = block[h]
        brs = np.flatnonzero((op_index == _OP_INDEX["br"]) & (block == b))
        tgt = block[ctrl[np.isin(ctrl[:, 0], brs), 1]] if brs.size else np.array([], np.int64)
        tgt = tgt[tgt > b]
        lo[j], hi[j] = (b + 1, tgt.max()) if tgt.size else (b, b + 1)
    known = trip[np.isfinite(trip)]
    trip[~np.isfinite(trip)] = float(np.median(known)) if known.size else 16.0  # e.g. triangular bounds
    parent = np.full(n_loops, -1, np.int64)
    for j in range(n_loops):  # innermost enclosing loop: the smallest range that contains this header
        enc = [k for k in range(n_loops) if k != j and lo[k] <= block[headers[j]] < hi[k]]
        if enc:
            parent[j] = min(enc, key=lambda k: hi[k] - lo[k])
    instr = ntype == 0
    loop_ops = np.zeros((n_loops, 4))
    for j in range(n_loops):
        inside = instr & (block >= lo[j]) & (block < hi[j])
        for k in range(n_loops):  # sub-loops' bodies are counted in their own row
            if parent[k] == j:
                inside &= ~((block >= block[headers[k]]) & (block < hi[k]))
        t = op_index[inside]
        loop_ops[j] = [
            np.isin(t, [_OP_INDEX[o] for o in _MULS]).sum(),
            np.isin(t, [_OP_INDEX[o] for o in _ADDS]).sum(),
            np.isin(t, [_OP_INDEX[o] for o in _MEMS]).sum(),
            inside.sum(),
        ]
    return KernelGraph(
        kernel=kernel, node_type=ntype, op_index=op_index, edge_index=np.ascontiguousarray(e[:, :2].T),
        edge_flow=e[:, 2].copy(), placeholders=tuple(names), pragma_node=np.array(prag, dtype=np.int64),
        pragma_kind=pragma_kind, pragma_loop=pragma_loop, loop_node=np.array(headers, dtype=np.int64),
        loop_trip=trip, loop_parent=parent, loop_ops=loop_ops, _col={p: j for j, p in enumerate(names)},
    )  # fmt: skip


@dataclass(frozen=True)
class LoopNest:
    """The part of a kernel's program graph that :func:`pragma_values` and :func:`loop_features`
    read: the pragma placeholders (kind, loop) and per loop the trip count, the enclosing loop and
    the instructions in its body. A few hundred bytes of JSON (:meth:`to_json`), so a record can
    carry a kernel's loop structure without its graph (``hws adapt --task fpga-hlsyn``)."""

    kernel: str
    placeholders: tuple[str, ...]
    pragma_kind: np.ndarray  # (P,) int into PRAGMA_KINDS
    pragma_loop: np.ndarray  # (P,) int into loops, -1: none
    loop_trip: np.ndarray  # (L,) float
    loop_parent: np.ndarray  # (L,) int, -1: outermost
    loop_ops: np.ndarray  # (L, 4) float
    _col: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, kg: KernelGraph) -> LoopNest:
        """The loop nest of a parsed kernel graph."""
        return cls(kg.kernel, kg.placeholders, kg.pragma_kind, kg.pragma_loop, kg.loop_trip, kg.loop_parent,
                   kg.loop_ops, dict(kg._col))  # fmt: skip

    def to_json(self) -> dict[str, object]:
        return {
            "kernel": self.kernel,
            "placeholders": list(self.placeholders),
            "pragma_loop": self.pragma_loop.tolist(),
            "loop_trip": self.loop_trip.tolist(),
            "loop_parent": self.loop_parent.tolist(),
            "loop_ops": self.loop_ops.tolist(),
        }

    @classmethod
    def from_json(cls, d: object) -> LoopNest:
        """Rebuild and check a :meth:`to_json` object; a ``ValueError`` names the bad field."""
        if not isinstance(d, dict):
            raise ValueError(f"loop nest: expected a JSON object, got {type(d).__name__}")
        missing = [k for k in ("kernel", "placeholders", "pragma_loop", "loop_trip", "loop_parent", "loop_ops")
                   if k not in d]  # fmt: skip
        if missing:
            raise ValueError(f"loop nest: missing field(s) {missing}")
        kernel = d["kernel"]
        where = f"loop nest of kernel {kernel!r}"
        if not isinstance(kernel, str):
            raise ValueError(f"loop nest: field 'kernel' must be a string, got {kernel!r}")
        names = d["placeholders"]
        if not isinstance(names, list) or not all(
            isinstance(p, str) and _PLACEHOLDER_RE.match(p) for p in names
        ):
            raise ValueError(f"{where}: field 'placeholders' must be a list of __PARA/PIPE/TILE__L* names")
        if len(set(names)) != len(names):
            raise ValueError(f"{where}: field 'placeholders' names a placeholder twice")

        def ints(key: str, n: int | None) -> np.ndarray:
            v = d[key]
            if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                raise ValueError(f"{where}: field {key!r} must be a list of integers")
            if n is not None and len(v) != n:
                raise ValueError(f"{where}: field {key!r} has {len(v)} entries; expected {n}")
            return np.array(v, dtype=np.int64)

        def floats(key: str, shape: tuple[int, ...]) -> np.ndarray:
            try:
                a = np.array(d[key], dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: field {key!r} must hold numbers") from None
            if a.size == 0:
                a = a.reshape(shape)
            if a.shape != shape or not np.isfinite(a).all() or (a < 0).any():
                raise ValueError(f"{where}: field {key!r} must be finite numbers >= 0 of shape {shape}")
            return a

        parent = ints("loop_parent", None)
        n_loops = len(parent)
        trip = floats("loop_trip", (n_loops,))
        if (trip <= 0).any():
            raise ValueError(f"{where}: field 'loop_trip' must be > 0")
        ops = floats("loop_ops", (n_loops, 4))
        loop = ints("pragma_loop", len(names))
        if ((loop < -1) | (loop >= n_loops)).any() or ((parent < -1) | (parent >= n_loops)).any():
            raise ValueError(
                f"{where}: fields 'pragma_loop'/'loop_parent' must be -1 or a loop index < {n_loops}"
            )
        for j in range(n_loops):  # every chain of parents ends at an outermost loop
            p, steps = parent[j], 0
            while p >= 0:
                p, steps = parent[p], steps + 1
                if steps > n_loops:
                    raise ValueError(f"{where}: field 'loop_parent' has a cycle through loop {j}")
        kind = np.array([PRAGMA_KINDS.index(p[2:6]) for p in names], dtype=np.int64)
        return cls(kernel, tuple(names), kind, loop, trip, parent, ops, {p: j for j, p in enumerate(names)})


_CACHE: dict[tuple[str, int], KernelGraph] = {}


def kernel_graphs(graphs: pl.DataFrame) -> dict[str, KernelGraph]:
    """:class:`KernelGraph` per ``kernel`` of a ``program_graphs`` frame (parsed once, cached)."""
    missing = [c for c in ("kernel", "nodes", "edges") if c not in graphs.columns]
    if missing:
        raise ValueError(f"program_graphs frame misses column(s) {missing}")
    out: dict[str, KernelGraph] = {}
    for kernel, nodes, edges in graphs.select("kernel", "nodes", "edges").iter_rows():
        key = (kernel, hash(nodes) ^ hash(edges))
        if key not in _CACHE:
            try:
                n, e = json.loads(nodes), json.loads(edges)
            except ValueError:
                raise ValueError(
                    f"program graph of kernel {kernel!r}: 'nodes'/'edges' are not JSON"
                ) from None
            _CACHE[key] = kernel_graph(kernel, n, e)
        out.setdefault(kernel, _CACHE[key])
    return out


def pragma_values(kg: KernelGraph | LoopNest, pragmas: Sequence[str] | pl.Series) -> np.ndarray:
    """``(n_designs, n_placeholders)`` float matrix of the designs' pragma values for one kernel.

    PARA/TILE hold the factor (absent or null -> 1); PIPE holds :data:`PIPE_CODES` (absent or
    null -> off). Parsed column-wise with polars; when anything is wrong, a row-by-row pass finds
    the first bad row and raises ``ValueError`` naming the key, the row and the kernel (a key the
    kernel's graph lacks, a non-numeric or < 1 factor, a bad PIPE value, a non-object JSON).
    """
    texts = pl.Series("pragmas", pragmas, dtype=pl.String) if not isinstance(pragmas, pl.Series) else pragmas
    texts = texts.cast(pl.String)
    default = np.where(kg.pragma_kind == PRAGMA_KINDS.index("PIPE"), 0.0, 1.0)
    out = np.tile(default, (len(texts), 1))
    if len(texts) == 0:
        return out
    if _fill_columnwise(kg, texts, out):
        return out
    _raise_first_bad_row(kg, texts)
    raise AssertionError(
        "unreachable: the column-wise parse failed but every row is valid"
    )  # pragma: no cover


def _fill_columnwise(kg: KernelGraph | LoopNest, texts: pl.Series, out: np.ndarray) -> bool:
    """Fill ``out`` from the JSON column in one polars pass; False if any row is not clean."""
    if texts.null_count():
        return False
    try:
        dec = texts.str.json_decode(infer_schema_length=None)
    except Exception:  # noqa: BLE001 - polars raises several types; the row pass names the problem
        return False
    if not isinstance(dec.dtype, pl.Struct):
        return False
    codes = {k: float(v) for k, v in PIPE_CODES.items()}
    for f in dec.dtype.fields:
        j = kg._col.get(f.name)
        if j is None:
            return False
        col = dec.struct.field(f.name)
        present = col.is_not_null().to_numpy()
        if kg.pragma_kind[j] == 0:
            if f.dtype != pl.String:
                return False
            val = col.str.to_lowercase().replace_strict(codes, default=None, return_dtype=pl.Float64)
        else:
            if isinstance(f.dtype, pl.Struct | pl.List):
                return False
            val = col.cast(pl.Float64, strict=False)
        v = val.to_numpy()
        if (present & ~np.isfinite(v)).any():
            return False
        if kg.pragma_kind[j] != 0 and (v[present] < 1).any():
            return False
        out[present, j] = v[present]
    return True


def _raise_first_bad_row(kg: KernelGraph | LoopNest, texts: pl.Series) -> None:
    """Row-by-row check (error path only): raises ``ValueError`` for the first bad row."""
    for i, t in enumerate(texts.to_list()):
        try:
            d = json.loads(t) if t is not None else None
        except ValueError:
            d = None
        if not isinstance(d, dict):
            raise ValueError(f"fpga-hlsyn: column 'pragmas' row {i} is not a JSON object: {str(t)[:80]!r}")
        for k, v in d.items():
            j = kg._col.get(k)
            if j is None:
                raise ValueError(
                    f"fpga-hlsyn: pragma key {k!r} (column 'pragmas', row {i}) is not a placeholder of "
                    f"kernel {kg.kernel!r}'s program graph; it has {list(kg.placeholders)}"
                )
            if v is None:
                continue
            if kg.pragma_kind[j] == 0:
                if not isinstance(v, str) or v.lower() not in PIPE_CODES:
                    raise ValueError(
                        f"fpga-hlsyn: pragma {k!r} (row {i}) must be one of {list(PIPE_CODES)}, got {v!r}"
                    )
                continue
            try:
                val = float(v)
            except (TypeError, ValueError):
                raise ValueError(
                    f"fpga-hlsyn: pragma {k!r} (row {i}) needs a numeric factor, got {v!r}"
                ) from None
            if not np.isfinite(val) or val < 1:
                raise ValueError(f"fpga-hlsyn: pragma {k!r} (row {i}) needs a numeric factor >= 1, got {v!r}")


LOOP_FEATURES: tuple[str, ...] = (
    "lp_log2_seq_iters", "lp_log2_seq_iters_piped", "lp_log2_par_mul", "lp_log2_par_add", "lp_log2_par_mem",
    "lp_log2_par_all", "lp_log2_max_unroll_path", "lp_log2_trip_total", "lp_n_loops", "lp_max_depth",
    "lp_log2_flatten_unroll", "lp_log2_piped_iters_max", "lp_log2_unrolled_mem_per_piped",
    "lp_log2_latency_model", "lp_log2_seq_work",
)  # fmt: skip


def loop_features(kg: KernelGraph | LoopNest, values: np.ndarray) -> np.ndarray:
    """Analytical per-design features from the loop nest and the pragma values, ``(n, len(LOOP_FEATURES))``.

    With ``P_eff`` = PARALLEL factor capped at the trip count (the full trip count under a
    ``flatten``-pipelined ancestor, which unrolls every sub-loop):
    sequential iterations ``sum over loop paths of prod ceil(T / P_eff)`` (and the same with a
    pipelined loop counting its own iterations only, II = 1), replicated operators
    ``sum over loops of ops_in_body * prod of P_eff on the path`` (multiplies -> DSP, adds,
    memory ports -> BRAM, all instructions -> LUT/FF), the deepest unroll product, and
    kernel-level trip-count totals. log2 throughout (work spans decades).
    """
    n = values.shape[0]
    n_loops = kg.loop_trip.shape[0]
    out = np.zeros((n, len(LOOP_FEATURES)))
    if n_loops == 0:
        return out
    para = np.ones((n, n_loops))
    pipe = np.zeros((n, n_loops))
    for j, (kind, lp) in enumerate(zip(kg.pragma_kind, kg.pragma_loop, strict=True)):
        if lp < 0:
            continue
        if kind == 1:
            para[:, lp] = values[:, j]
        elif kind == 0:
            pipe[:, lp] = values[:, j]
    trip = kg.loop_trip[None, :]
    order = _topological(kg.loop_parent)
    flat_anc = np.zeros((n, n_loops), bool)  # some ancestor is flatten-pipelined
    piped_anc = np.zeros((n, n_loops), bool)
    peff = np.minimum(para, trip)
    for j in order:
        p = kg.loop_parent[j]
        if p >= 0:
            flat_anc[:, j] = flat_anc[:, p] | (pipe[:, p] == 2)
            piped_anc[:, j] = piped_anc[:, p] | (pipe[:, p] > 0)
    peff = np.where(flat_anc, trip, peff)
    iters = np.ceil(trip / peff)
    path_iters = np.ones((n, n_loops))
    path_piped = np.ones((n, n_loops))
    path_unroll = np.ones((n, n_loops))
    depth = np.zeros(n_loops)
    for j in order:
        p = kg.loop_parent[j]
        base_it = path_iters[:, p] if p >= 0 else 1.0
        base_pp = path_piped[:, p] if p >= 0 else 1.0
        base_un = path_unroll[:, p] if p >= 0 else 1.0
        path_iters[:, j] = base_it * iters[:, j]
        path_piped[:, j] = base_pp * np.where(piped_anc[:, j], 1.0, iters[:, j])
        path_unroll[:, j] = base_un * peff[:, j]
        depth[j] = depth[p] + 1 if p >= 0 else 1
    leaves = np.array([j for j in range(n_loops) if not (kg.loop_parent == j).any()])
    ops = kg.loop_ops  # (L, 4)
    rep = path_unroll[:, :, None] * ops[None, :, :]  # (n, L, 4)
    piped_loops = pipe > 0
    piped_iters = np.where(piped_loops & ~piped_anc, path_iters, 0.0)
    flat_unroll = np.where(flat_anc, path_unroll, 1.0)
    mem_rep = np.where(piped_anc | piped_loops, rep[:, :, 2], 0.0)
    trip_total = np.zeros(n_loops)
    for j in order:
        p = kg.loop_parent[j]
        trip_total[j] = (trip_total[p] if p >= 0 else 1.0) * kg.loop_trip[j]
    # latency model: flatten -> the loop's own iterations (II = 1, sub-loops unrolled); PIPELINE
    # auto on a loop with sub-loops -> coarse-grained pipeline, iterations x slowest sub-loop;
    # innermost auto -> II = 1; off -> iterations x (sum of sub-loops + 1)
    lat = np.zeros((n, n_loops))
    for j in reversed(order):
        kids = np.flatnonzero(kg.loop_parent == j)
        child_sum = lat[:, kids].sum(1) if kids.size else np.zeros(n)
        child_max = lat[:, kids].max(1) if kids.size else np.zeros(n)
        it = iters[:, j]
        lat[:, j] = np.where(
            flat_anc[:, j],
            1.0,
            np.where(
                pipe[:, j] == 2,
                it + 8.0,
                np.where(pipe[:, j] == 1, np.where(kids.size > 0, it * (child_max + 1) + child_sum, it + 8.0),
                         it * (child_sum + 1)),
            ),
        )  # fmt: skip
    top = np.flatnonzero(kg.loop_parent < 0)
    cols = [
        np.log2(path_iters[:, leaves].sum(1)),
        np.log2(path_piped[:, leaves].sum(1)),
        np.log2(1 + rep[:, :, 0].sum(1)),
        np.log2(1 + rep[:, :, 1].sum(1)),
        np.log2(1 + rep[:, :, 2].sum(1)),
        np.log2(1 + rep[:, :, 3].sum(1)),
        np.log2(path_unroll.max(1)),
        np.full(n, np.log2(trip_total[leaves].sum())),
        np.full(n, float(n_loops)),
        np.full(n, depth.max()),
        np.log2(flat_unroll.max(1)),
        np.log2(1 + piped_iters.max(1)),
        np.log2(1 + mem_rep.sum(1)),
        np.log2(lat[:, top].sum(1)),
        np.log2((path_iters * (1.0 + ops[None, :, 3])).sum(1)),  # iterations x instructions per body
    ]
    return np.stack(cols, axis=1)


def unroll_regime_flags(kg: KernelGraph | LoopNest, values: np.ndarray) -> np.ndarray:
    """Per-design 0/1 flags of pragma regimes that the monotone :func:`loop_features` cannot see,
    ``(n, F)`` with F set by the kernel: per PARALLEL pragma on a loop, 1 when it unrolls the loop
    partially (``1 < factor < trip count``; e.g. a partly unrolled reduction loop, which the HLS
    tool schedules far worse than no or full unrolling); per TILE pragma on a loop, 1 when it tiles
    (factor > 1) a loop that is ``flatten``-pipelined; then, when any flag exists, their count.
    Used by the few-shot correction (:mod:`..fewshot.hlsyn`), whose models are per kernel."""
    n, n_loops = values.shape[0], kg.loop_trip.shape[0]
    pipe = np.zeros((n, n_loops))
    for j, (kind, lp) in enumerate(zip(kg.pragma_kind, kg.pragma_loop, strict=True)):
        if kind == 0 and lp >= 0:
            pipe[:, lp] = values[:, j]
    cols = [
        ((values[:, j] > 1) & (values[:, j] < kg.loop_trip[lp])).astype(np.float64)
        for j, (kind, lp) in enumerate(zip(kg.pragma_kind, kg.pragma_loop, strict=True))
        if kind == 1 and lp >= 0
    ]
    cols += [
        ((values[:, j] > 1) & (pipe[:, lp] == PIPE_CODES["flatten"])).astype(np.float64)
        for j, (kind, lp) in enumerate(zip(kg.pragma_kind, kg.pragma_loop, strict=True))
        if kind == 2 and lp >= 0
    ]
    if cols:
        cols.append(np.sum(cols, axis=0))
    return np.stack(cols, axis=1) if cols else np.zeros((n, 0))


def _topological(parent: np.ndarray) -> list[int]:
    """Loop indices with every parent before its children."""
    depth = np.zeros(parent.shape[0], np.int64)
    for j in range(parent.shape[0]):
        p, d = parent[j], 0
        while p >= 0 and d <= parent.shape[0]:
            p, d = parent[p], d + 1
        depth[j] = d
    return [int(j) for j in np.argsort(depth, kind="stable")]


def node_features(kg: KernelGraph, values: np.ndarray) -> np.ndarray:
    """``(n_designs, num_nodes, len(NODE_FEATURES))`` float32 node features (see module doc)."""
    n = values.shape[0]
    base = np.zeros((kg.num_nodes, len(NODE_FEATURES)), np.float32)
    base[np.arange(kg.num_nodes), kg.node_type] = 1.0
    base[kg.pragma_node, 4 + kg.pragma_kind] = 1.0
    base[kg.loop_node, 11] = np.log2(kg.loop_trip) / 8.0
    x = np.repeat(base[None], n, axis=0)
    is_pipe = kg.pragma_kind == 0
    fac = kg.pragma_node[~is_pipe]
    x[:, fac, 7] = np.log2(values[:, ~is_pipe]) / 8.0
    pnodes = kg.pragma_node[is_pipe]
    codes = values[:, is_pipe].astype(np.int64)
    for c in range(3):
        x[:, pnodes, 8 + c] = (codes == c).astype(np.float32)
    return x


def design_batch(kg: KernelGraph, values: np.ndarray) -> Batch:
    """All designs of one kernel as one disjoint-union :class:`~torch_geometric.data.Batch`:
    ``x`` (node features), ``op`` (vocabulary index), ``edge_index``, ``edge_attr`` (one-hot flow),
    ``batch`` (design index). Built by tiling the shared topology, no per-design loop."""
    n = values.shape[0]
    x = torch.from_numpy(node_features(kg, values)).reshape(n * kg.num_nodes, -1)
    ei = torch.from_numpy(kg.edge_index)
    e = ei.shape[1]
    offsets = (torch.arange(n) * kg.num_nodes).repeat_interleave(e)
    edge_index = ei.repeat(1, n) + offsets
    flow = torch.nn.functional.one_hot(torch.from_numpy(kg.edge_flow), N_EDGE_FLOWS).float()
    return Batch(
        x=x,
        op=torch.from_numpy(kg.op_index).repeat(n),
        edge_index=edge_index,
        edge_attr=flow.repeat(n, 1),
        batch=torch.arange(n).repeat_interleave(kg.num_nodes),
        ptr=torch.arange(n + 1) * kg.num_nodes,
    )


def design_graphs(kg: KernelGraph, pragmas: Sequence[str] | pl.Series) -> list[Data]:
    """One validated :class:`~torch_geometric.data.Data` per design (for inspection and tests)."""
    values = pragma_values(kg, pragmas)
    x = torch.from_numpy(node_features(kg, values))
    ei = torch.from_numpy(kg.edge_index)
    flow = torch.nn.functional.one_hot(torch.from_numpy(kg.edge_flow), N_EDGE_FLOWS).float()
    out = []
    for i in range(values.shape[0]):
        d = Data(x=x[i], op=torch.from_numpy(kg.op_index), edge_index=ei, edge_attr=flow)
        d.validate(raise_on_error=True)
        out.append(d)
    return out
