"""Architecture features of the NAS spaces: the ONLY place they are computed.

Every function takes canonical ``arch_key`` strings (see :mod:`hwsurrogate.datasets.archspaces`)
and raises :class:`ValueError` naming the first bad key. Parsing is vectorised with polars, so
encoding all 15625 NB201 cells takes a few tens of milliseconds.

Two views of the same information:

**Graphs** (torch-geometric). Within a space every architecture has the same nodes and edges;
only the node features differ. :func:`graph_spec` gives the shared topology,
:func:`node_features` the ``(n_archs, n_nodes, n_features)`` array, :func:`arch_graphs` one
:class:`~torch_geometric.data.Data` per key and :func:`arch_batch` a ready
:class:`~torch_geometric.data.Batch` built without a Python loop.

- ``nb201``: HELP/BRP-NAS edge-as-node DAG, 8 nodes: 0 = cell input, 1..6 = the six edge ops
  in arch-string order (node1<-0, node2<-0, node2<-1, node3<-0, node3<-1, node3<-2), 7 = cell
  output. Edge ``a -> b`` when op ``a``'s target node is op ``b``'s source node (or ``b`` is the
  output and ``a`` targets node 3). Node features (8): one-hot
  ``[input, output, none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3]`` then
  ``live`` (1 when the op is not ``none`` and lies on an input->output path; 1 for input/output).
- ``fbnet``: the 22 searchable layers as a chain (``i -> i+1``). Node features (19): one-hot op
  (9, :data:`~hwsurrogate.datasets.archspaces.FBNET_OPS` order), one-hot stage (7), stride-2
  flag, position ``i/21``, ``log1p`` of the layer's MAC estimate in millions.
- ``ofa``: the 20 MobileNetV3 block slots as a chain. Node features (16): one-hot kernel
  (3: 3,5,7), one-hot expand (3: 3,4,6), active flag, one-hot stage (5), first-of-stage flag,
  resolution ``r/224``, ``log1p`` MAC estimate in millions (0 when inactive), position ``i/19``.
  Inactive slots (beyond a stage's depth) have zero kernel/expand/MAC features.

**Vectors** (:func:`arch_vectors`, for trees), ``float32``; :func:`vector_feature_names` names
the columns:

- ``nb201`` (52): one-hot 6 edges x 5 ops, op counts (5), live op counts (5), cell conv MACs
  (all / live, in millions for the whole 15-cell network), convs on the longest live path,
  live path count, longest live path length, output-disconnected flag, 6 live-edge flags.
- ``fbnet`` (239): one-hot 22 x 9, op counts (9), MACs per stage (7), total MACs, per-layer
  ``log1p`` MACs (22), summed kernel sizes and expand ratios.
- ``ofa`` (180): HELP's 145-dim encoding (kernel one-hot 20x3, expand one-hot 20x3, zero for
  inactive slots, resolution one-hot 25), stage depths (5), resolution, MACs per stage (5),
  total MACs, active-block count, summed kernels/expands, per-slot ``log1p`` MACs (20).

MAC estimates are cheap analytical proxies from the published macro-architectures (NB201:
C=16/32/64 at 32/16/8 px, 5 cells per stage; FBNet (HW-NAS-Bench CIFAR variant): stem 16 ch,
stages 16/24/32/64/112/184/352 ch x 1/4/4/4/4/4/1 layers, strides 1/2/2/2/1/2/1 on 32 px;
OFA MobileNetV3: widths 24/40/80/112/160, strides 2/2/2/1/2 after a stride-2 stem and a
16-ch first block). They are features, not claims about the exact FLOP count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl

from hwsurrogate.datasets.archspaces import (
    FBNET_N_LAYERS,
    FBNET_OPS,
    NB201_EDGES,
    NB201_OPS,
    OFA_DEPTHS,
    OFA_EXPANDS,
    OFA_KERNELS,
)

if TYPE_CHECKING:  # torch loads only where graphs are built: tree models and key checks stay light
    import torch
    from torch_geometric.data import Batch, Data

Space = Literal["nb201", "fbnet", "ofa"]
SPACES: tuple[Space, ...] = ("nb201", "fbnet", "ofa")

__all__ = [
    "SPACES",
    "GraphSpec",
    "arch_batch",
    "arch_graph",
    "arch_graphs",
    "arch_vectors",
    "check_space",
    "collate_fixed",
    "graph_spec",
    "nb201_graph",
    "nb201_op_codes",
    "fbnet_op_codes",
    "fbnet_physical_vectors",
    "ofa_arrays",
    "node_features",
    "vector_feature_names",
]


def check_space(space: str) -> Space:
    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}; architecture features exist for {', '.join(SPACES)}")
    return space  # type: ignore[return-value]


def _as_series(arch_keys: Sequence[str] | pl.Series | np.ndarray | str) -> pl.Series:
    if isinstance(arch_keys, str):
        raise ValueError("arch_keys must be a sequence of keys, not one string (wrap it in a list)")
    s = (
        arch_keys
        if isinstance(arch_keys, pl.Series)
        else pl.Series("arch_key", list(arch_keys), dtype=pl.String)
    )
    if s.dtype != pl.String:
        raise ValueError(f"arch_key values must be strings, got dtype {s.dtype}")
    if s.null_count():
        raise ValueError(f"arch_key may not be null (row {int(s.is_null().arg_true()[0])})")
    return s


def _raise_bad(keys: pl.Series, bad: pl.Series, space: str, what: str) -> None:
    if bad.any():
        i = int(bad.arg_true()[0])
        raise ValueError(f"arch_key {keys[i]!r} (row {i}) is not a valid {space} key: {what}")


# ----------------------------------------------------------------------------------- parsing
_NB201_PATTERN = r"^\|(\w+)~0\|\+\|(\w+)~0\|(\w+)~1\|\+\|(\w+)~0\|(\w+)~1\|(\w+)~2\|$"
_OP_CODE = {op: i for i, op in enumerate(NB201_OPS)}
_FB_CODE = {op: i for i, op in enumerate(FBNET_OPS)}


def nb201_op_codes(arch_keys: Sequence[str] | pl.Series) -> np.ndarray:
    """``(n, 6)`` int64 op codes (index into ``NB201_OPS``) of NB201 arch strings."""
    keys = _as_series(arch_keys)
    groups = keys.str.strip_chars().str.extract_groups(_NB201_PATTERN)
    cols = [groups.struct.field(str(i + 1)) for i in range(6)]
    shape_bad = cols[0].is_null() if keys.len() else pl.Series([], dtype=pl.Boolean)
    _raise_bad(keys, shape_bad, "nb201", "expected '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'")
    codes = np.empty((keys.len(), 6), dtype=np.int64)
    for j, c in enumerate(cols):
        mapped = c.replace_strict(_OP_CODE, default=None, return_dtype=pl.Int64)
        _raise_bad(keys, mapped.is_null(), "nb201", f"unknown op on edge {j}; expected one of {NB201_OPS}")
        codes[:, j] = mapped.to_numpy()
    return codes


def fbnet_op_codes(arch_keys: Sequence[str] | pl.Series) -> np.ndarray:
    """``(n, 22)`` int64 op codes (index into ``FBNET_OPS``) of FBNet keys."""
    keys = _as_series(arch_keys)
    parts = keys.str.strip_chars().str.split(" ")
    _raise_bad(
        keys, parts.list.len() != FBNET_N_LAYERS, "fbnet", f"needs {FBNET_N_LAYERS} space-separated ops"
    )
    flat = parts.explode().replace_strict(_FB_CODE, default=None, return_dtype=pl.Int64)
    if flat.null_count():
        row = int(flat.is_null().arg_true()[0]) // FBNET_N_LAYERS
        raise ValueError(
            f"arch_key {keys[row]!r} (row {row}) is not a valid fbnet key: unknown op; expected {FBNET_OPS}"
        )
    return flat.to_numpy().reshape(-1, FBNET_N_LAYERS).astype(np.int64)


_OFA_PATTERN = r"^ks:([\d,]+)\|e:([\d,]+)\|d:([\d,]+)\|r:(\d+)$"


@dataclass(frozen=True)
class OfaArrays:
    ks: np.ndarray  # (n, 20) kernel sizes as given (inactive slots kept)
    e: np.ndarray  # (n, 20) expand ratios
    d: np.ndarray  # (n, 5) stage depths
    r: np.ndarray  # (n,) resolution
    active: np.ndarray  # (n, 20) bool


def ofa_arrays(arch_keys: Sequence[str] | pl.Series) -> OfaArrays:
    """Parse OFA keys ``ks:..|e:..|d:..|r:..`` into arrays, validating every value."""
    keys = _as_series(arch_keys)
    g = keys.str.strip_chars().str.extract_groups(_OFA_PATTERN)
    fields = [g.struct.field(str(i + 1)) for i in range(4)]
    if keys.len():
        _raise_bad(keys, fields[0].is_null(), "ofa", "expected 'ks:3,...|e:4,...|d:2,...|r:224'")

    def ints(s: pl.Series, n: int, allowed: tuple[int, ...], name: str) -> np.ndarray:
        parts = s.str.split(",")
        _raise_bad(keys, parts.list.len() != n, "ofa", f"{name} needs {n} values")
        vals = parts.explode().cast(pl.Int64, strict=False)
        arr = vals.to_numpy().reshape(-1, n) if keys.len() else np.zeros((0, n), dtype=np.int64)
        bad = ~np.isin(arr, allowed).all(axis=1)
        _raise_bad(keys, pl.Series(bad), "ofa", f"{name} values must be in {allowed}")
        return arr.astype(np.int64)

    ks = ints(fields[0], 20, OFA_KERNELS, "ks")
    e = ints(fields[1], 20, OFA_EXPANDS, "e")
    d = ints(fields[2], 5, OFA_DEPTHS, "d")
    r = fields[3].cast(pl.Int64).to_numpy() if keys.len() else np.zeros(0, dtype=np.int64)
    _raise_bad(
        keys, pl.Series((r < 128) | (r > 224) | (r % 4 != 0)), "ofa", "r must be 128..224 in steps of 4"
    )
    active = np.arange(4)[None, None, :] < d[:, :, None]  # (n, 5, 4)
    return OfaArrays(ks=ks, e=e, d=d, r=r.astype(np.int64), active=active.reshape(-1, 20))


# ------------------------------------------------------------------------------ NB201 derived
_NONE = 0
_SKIP, _C1, _C3, _POOL = 1, 2, 3, 4
#: MACs (millions) of one conv3x3 / conv1x1 edge summed over the 15 cells: 5 cells x 3 stages,
#: C^2 * H * W = 16^2*32^2 = 32^2*16^2 = 64^2*8^2 = 262144 per cell.
_NB201_C1_MMACS = 5 * 3 * 262144 / 1e6
_NB201_C3_MMACS = 9 * _NB201_C1_MMACS


def _nb201_live(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Live-edge mask ``(n, 6)`` and output-reachable flag ``(n,)`` (vectorised)."""
    on = codes != _NONE
    # reachability from the input node
    r1 = on[:, 0]
    r2 = on[:, 1] | (r1 & on[:, 2])
    r3 = on[:, 3] | (r1 & on[:, 4]) | (r2 & on[:, 5])
    reach = np.stack([np.ones_like(r1), r1, r2, r3], axis=1)
    # reaching the output node (3)
    o2 = on[:, 5]
    o1 = on[:, 4] | (on[:, 2] & o2)
    o3 = np.ones_like(o1)
    out = np.stack([np.ones_like(o1), o1, o2, o3], axis=1)
    live = np.stack([on[:, k] & reach[:, s] & out[:, t] for k, (t, s) in enumerate(NB201_EDGES)], axis=1)
    return live, r3


#: The four input->output paths of the cell as edge indices.
_NB201_PATHS: tuple[tuple[int, ...], ...] = ((3,), (0, 4), (1, 5), (0, 2, 5))

_NB201_NODE_TYPES = ("input", "output", *NB201_OPS)
_NB201_EDGE_INDEX = ((0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 6), (3, 6), (4, 7), (5, 7), (6, 7))


def _nb201_nodes(codes: np.ndarray) -> np.ndarray:
    n = codes.shape[0]
    x = np.zeros((n, 8, 8), dtype=np.float32)
    x[:, 0, 0] = 1.0
    x[:, 7, 1] = 1.0
    rows = np.repeat(np.arange(n), 6)
    nodes = np.tile(np.arange(1, 7), n)
    x[rows, nodes, 2 + codes.reshape(-1)] = 1.0
    live, _ = _nb201_live(codes)
    x[:, 1:7, 7] = live
    x[:, 0, 7] = 1.0
    x[:, 7, 7] = 1.0
    return x


def _nb201_vectors(codes: np.ndarray) -> np.ndarray:
    n = codes.shape[0]
    onehot = np.zeros((n, 6, 5), dtype=np.float32)
    onehot[np.repeat(np.arange(n), 6), np.tile(np.arange(6), n), codes.reshape(-1)] = 1.0
    counts = onehot.sum(axis=1)
    live, connected = _nb201_live(codes)
    live_counts = (onehot * live[:, :, None]).sum(axis=1)
    macs = counts[:, _C1] * _NB201_C1_MMACS + counts[:, _C3] * _NB201_C3_MMACS
    live_macs = live_counts[:, _C1] * _NB201_C1_MMACS + live_counts[:, _C3] * _NB201_C3_MMACS
    is_conv = (codes == _C1) | (codes == _C3)
    on = codes != _NONE
    path_ok = np.stack([on[:, list(p)].all(axis=1) for p in _NB201_PATHS], axis=1)
    path_convs = np.stack([is_conv[:, list(p)].sum(axis=1) for p in _NB201_PATHS], axis=1)
    path_len = np.array([len(p) for p in _NB201_PATHS])[None, :]
    longest_convs = np.where(path_ok, path_convs, 0).max(axis=1)
    longest_len = np.where(path_ok, path_len, 0).max(axis=1)
    return np.concatenate(
        [
            onehot.reshape(n, 30),
            counts,
            live_counts,
            macs[:, None],
            live_macs[:, None],
            longest_convs[:, None],
            path_ok.sum(axis=1)[:, None],
            longest_len[:, None],
            (~connected)[:, None],
            live,
        ],
        axis=1,
    ).astype(np.float32)


def _nb201_vector_names() -> list[str]:
    names = [f"e{j}_{op}" for j in range(6) for op in NB201_OPS]
    names += [f"n_{op}" for op in NB201_OPS] + [f"n_live_{op}" for op in NB201_OPS]
    names += ["conv_mmacs", "live_conv_mmacs", "longest_path_convs", "n_live_paths", "longest_path_len"]
    names += ["disconnected"] + [f"e{j}_live" for j in range(6)]
    return names


# ------------------------------------------------------------------------------- FBNet derived
_FB_STAGE_CH = (16, 24, 32, 64, 112, 184, 352)
_FB_STAGE_N = (1, 4, 4, 4, 4, 4, 1)
_FB_STAGE_S = (1, 2, 2, 2, 1, 2, 1)
_FB_STEM_CH, _FB_RES = 16, 32
_FB_K = np.array([3, 3, 3, 3, 5, 5, 5, 5, 0])
_FB_E = np.array([1, 1, 3, 6, 1, 1, 3, 6, 0])
_FB_G = np.array([1, 2, 1, 1, 1, 2, 1, 1, 1])


@lru_cache(maxsize=1)
def _fbnet_layers() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per layer: stage, input channels, output channels, stride, input resolution."""
    stage, cin, cout, stride, res = [], [], [], [], []
    c, h = _FB_STEM_CH, _FB_RES
    for s, (ch, nl, st) in enumerate(zip(_FB_STAGE_CH, _FB_STAGE_N, _FB_STAGE_S, strict=True)):
        for i in range(nl):
            stride_i = st if i == 0 else 1
            stage.append(s)
            cin.append(c)
            cout.append(ch)
            stride.append(stride_i)
            res.append(h)
            c, h = ch, h // stride_i
    return tuple(np.array(a) for a in (stage, cin, cout, stride, res))  # type: ignore[return-value]


def _fbnet_mmacs(codes: np.ndarray) -> np.ndarray:
    """``(n, 22)`` MAC estimate (millions) of each layer."""
    _, cin, cout, stride, res = _fbnet_layers()
    k, e, g = _FB_K[codes], _FB_E[codes], _FB_G[codes]
    hout = (res // stride)[None, :]
    mid = cin[None, :] * e
    conv = (
        (res[None, :] ** 2) * cin[None, :] * mid / g
        + hout**2 * k**2 * mid
        + hout**2 * mid * cout[None, :] / g
    )
    needs_proj = (cin != cout) | (stride != 1)
    skip = np.where(needs_proj[None, :], hout**2 * cin[None, :] * cout[None, :], 0.0)
    return np.where(codes == len(FBNET_OPS) - 1, skip, conv).astype(np.float64) / 1e6


def _fbnet_nodes(codes: np.ndarray) -> np.ndarray:
    n, nl = codes.shape
    stage, _, _, stride, _ = _fbnet_layers()
    x = np.zeros((n, nl, 19), dtype=np.float32)
    x[np.repeat(np.arange(n), nl), np.tile(np.arange(nl), n), codes.reshape(-1)] = 1.0
    x[:, np.arange(nl), 9 + stage] = 1.0
    x[:, :, 16] = (stride == 2)[None, :]
    x[:, :, 17] = (np.arange(nl) / (nl - 1))[None, :]
    x[:, :, 18] = np.log1p(_fbnet_mmacs(codes))
    return x


def _fbnet_vectors(codes: np.ndarray) -> np.ndarray:
    n, nl = codes.shape
    stage = _fbnet_layers()[0]
    onehot = np.zeros((n, nl, len(FBNET_OPS)), dtype=np.float32)
    onehot[np.repeat(np.arange(n), nl), np.tile(np.arange(nl), n), codes.reshape(-1)] = 1.0
    macs = _fbnet_mmacs(codes)
    stage_macs = np.stack([macs[:, stage == s].sum(axis=1) for s in range(len(_FB_STAGE_CH))], axis=1)
    k, e = _FB_K[codes], _FB_E[codes]
    return np.concatenate(
        [
            onehot.reshape(n, -1),
            onehot.sum(axis=1),
            stage_macs,
            macs.sum(axis=1, keepdims=True),
            np.log1p(macs),
            (k * (codes != 8)).sum(axis=1, keepdims=True),
            e.sum(axis=1, keepdims=True),
        ],
        axis=1,
    ).astype(np.float32)


def _fbnet_vector_names() -> list[str]:
    names = [f"l{i}_{op}" for i in range(FBNET_N_LAYERS) for op in FBNET_OPS]
    names += [f"n_{op}" for op in FBNET_OPS] + [f"stage{s}_mmacs" for s in range(len(_FB_STAGE_CH))]
    names += ["total_mmacs"] + [f"l{i}_log1p_mmacs" for i in range(FBNET_N_LAYERS)]
    return names + ["sum_kernel", "sum_expand"]


# --------------------------------------------------------------------------------- OFA derived
_OFA_WIDTHS = (24, 40, 80, 112, 160)
_OFA_STRIDES = (2, 2, 2, 1, 2)
_OFA_FIRST_CH = 16
_OFA_RES_VALUES = np.arange(128, 225, 4)


def _ofa_mmacs(a: OfaArrays) -> np.ndarray:
    """``(n, 20)`` MAC estimate (millions) of each active block (0 when inactive)."""
    n = a.ks.shape[0]
    out = np.zeros((n, 20), dtype=np.float64)
    h = a.r.astype(np.float64) / 2  # after the stride-2 stem; first 16-ch block keeps it
    cin_stage = _OFA_FIRST_CH
    for s, (w, st) in enumerate(zip(_OFA_WIDTHS, _OFA_STRIDES, strict=True)):
        for j in range(4):
            slot = 4 * s + j
            cin = cin_stage if j == 0 else w
            stride = st if j == 0 else 1
            hin = h if j == 0 else np.ceil(h / st)
            hout = np.ceil(hin / stride)
            mid = cin * a.e[:, slot]
            macs = hin**2 * cin * mid + hout**2 * a.ks[:, slot] ** 2 * mid + hout**2 * mid * w
            out[:, slot] = np.where(a.active[:, slot], macs, 0.0)
        h = np.ceil(h / st)
        cin_stage = w
    return out / 1e6


def _ofa_nodes(a: OfaArrays) -> np.ndarray:
    n = a.ks.shape[0]
    x = np.zeros((n, 20, 16), dtype=np.float32)
    act = a.active.astype(np.float32)
    for i, k in enumerate(OFA_KERNELS):
        x[:, :, i] = (a.ks == k) * act
    for i, e in enumerate(OFA_EXPANDS):
        x[:, :, 3 + i] = (a.e == e) * act
    x[:, :, 6] = act
    slots = np.arange(20)
    x[:, slots, 7 + slots // 4] = 1.0
    x[:, :, 12] = (slots % 4 == 0)[None, :]
    x[:, :, 13] = (a.r / 224.0)[:, None]
    x[:, :, 14] = np.log1p(_ofa_mmacs(a))
    x[:, :, 15] = (slots / 19.0)[None, :]
    return x


def _ofa_vectors(a: OfaArrays) -> np.ndarray:
    n = a.ks.shape[0]
    act = a.active
    ks_oh = np.stack([(a.ks == k) & act for k in OFA_KERNELS], axis=2).reshape(n, 60)
    e_oh = np.stack([(a.e == e) & act for e in OFA_EXPANDS], axis=2).reshape(n, 60)
    r_oh = a.r[:, None] == _OFA_RES_VALUES[None, :]
    macs = _ofa_mmacs(a)
    stage_macs = macs.reshape(n, 5, 4).sum(axis=2)
    return np.concatenate(
        [
            ks_oh,
            e_oh,
            r_oh,
            a.d,
            a.r[:, None],
            stage_macs,
            macs.sum(axis=1, keepdims=True),
            act.sum(axis=1, keepdims=True),
            (a.ks * act).sum(axis=1, keepdims=True),
            (a.e * act).sum(axis=1, keepdims=True),
            np.log1p(macs),
        ],
        axis=1,
    ).astype(np.float32)


def _ofa_vector_names() -> list[str]:
    names = [f"s{i}_k{k}" for i in range(20) for k in OFA_KERNELS]
    names += [f"s{i}_e{e}" for i in range(20) for e in OFA_EXPANDS]
    names += [f"r{r}" for r in _OFA_RES_VALUES] + [f"d{s}" for s in range(5)] + ["resolution"]
    names += [f"stage{s}_mmacs" for s in range(5)] + ["total_mmacs", "n_active", "sum_kernel", "sum_expand"]
    return names + [f"s{i}_log1p_mmacs" for i in range(20)]


# ------------------------------------------------------------------------------- public API
@dataclass(frozen=True)
class GraphSpec:
    """Topology and node-feature names shared by every architecture of a space."""

    space: str
    num_nodes: int
    edge_index: torch.Tensor  # (2, num_edges) int64
    node_feature_names: tuple[str, ...]

    @property
    def num_node_features(self) -> int:
        return len(self.node_feature_names)


@cache
def graph_spec(space: str) -> GraphSpec:
    """The fixed topology and node-feature names of ``space``'s graphs."""
    space = check_space(space)
    if space == "nb201":
        edges = list(_NB201_EDGE_INDEX)
        names = (*_NB201_NODE_TYPES, "live")
        num_nodes = 8
    elif space == "fbnet":
        num_nodes = FBNET_N_LAYERS
        edges = [(i, i + 1) for i in range(num_nodes - 1)]
        names = (
            *FBNET_OPS,
            *(f"stage{s}" for s in range(len(_FB_STAGE_CH))),
            "stride2",
            "position",
            "log1p_mmacs",
        )
    else:
        num_nodes = 20
        edges = [(i, i + 1) for i in range(num_nodes - 1)]
        names = (
            *(f"k{k}" for k in OFA_KERNELS),
            *(f"e{e}" for e in OFA_EXPANDS),
            "active",
            *(f"stage{s}" for s in range(5)),
            "first_of_stage",
            "resolution",
            "log1p_mmacs",
            "position",
        )
    import torch

    edge_index = torch.tensor(edges, dtype=torch.long).t().contiguous()
    return GraphSpec(space=space, num_nodes=num_nodes, edge_index=edge_index, node_feature_names=tuple(names))


def node_features(space: str, arch_keys: Sequence[str] | pl.Series) -> np.ndarray:
    """``(n_archs, num_nodes, num_node_features)`` float32 node features (see module doc)."""
    space = check_space(space)
    if space == "nb201":
        return _nb201_nodes(nb201_op_codes(arch_keys))
    if space == "fbnet":
        return _fbnet_nodes(fbnet_op_codes(arch_keys))
    return _ofa_nodes(ofa_arrays(arch_keys))


def arch_vectors(space: str, arch_keys: Sequence[str] | pl.Series) -> np.ndarray:
    """``(n_archs, n_features)`` float32 flat features for tree models (see module doc)."""
    space = check_space(space)
    if space == "nb201":
        return _nb201_vectors(nb201_op_codes(arch_keys))
    if space == "fbnet":
        return _fbnet_vectors(fbnet_op_codes(arch_keys))
    return _ofa_vectors(ofa_arrays(arch_keys))


def vector_feature_names(space: str) -> list[str]:
    """Column names of :func:`arch_vectors` for ``space``."""
    space = check_space(space)
    return {"nb201": _nb201_vector_names, "fbnet": _fbnet_vector_names, "ofa": _ofa_vector_names}[space]()


def collate_fixed(
    x_nodes: torch.Tensor, edge_index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack ``(B, N, F)`` node features of same-topology graphs into one disjoint graph.

    Returns ``(x (B*N, F), edge_index (2, B*E), batch (B*N,))``, the tensors a PyG ``Batch``
    would hold, without building B ``Data`` objects.
    """
    import torch

    b, n, f = x_nodes.shape
    offsets = (torch.arange(b, device=x_nodes.device) * n).repeat_interleave(edge_index.size(1))
    ei = edge_index.to(x_nodes.device).repeat(1, b) + offsets
    batch = torch.arange(b, device=x_nodes.device).repeat_interleave(n)
    return x_nodes.reshape(b * n, f), ei, batch


def arch_batch(space: str, arch_keys: Sequence[str] | pl.Series) -> Batch:
    """One :class:`~torch_geometric.data.Batch` of all ``arch_keys`` (no per-graph loop)."""
    import torch
    from torch_geometric.data import Batch

    spec = graph_spec(space)
    x = torch.from_numpy(node_features(space, arch_keys))
    flat, ei, batch = collate_fixed(x, spec.edge_index)
    n = x.shape[0]
    ptr = torch.arange(n + 1) * spec.num_nodes
    return Batch(x=flat, edge_index=ei, batch=batch, ptr=ptr)


def arch_graphs(space: str, arch_keys: Sequence[str] | pl.Series) -> list[Data]:
    """One :class:`~torch_geometric.data.Data` (``x``, ``edge_index``) per key."""
    import torch
    from torch_geometric.data import Data

    spec = graph_spec(space)
    x = torch.from_numpy(node_features(space, arch_keys))
    return [Data(x=xi, edge_index=spec.edge_index) for xi in x]


def arch_graph(space: str, arch_key: str) -> Data:
    """The graph of one architecture of ``space``."""
    return arch_graphs(space, [arch_key])[0]


def nb201_graph(arch_key: str) -> Data:
    """The 8-node edge-as-node DAG of one NB201 cell (see module doc for node order and features)."""
    return arch_graph("nb201", arch_key)


# ------------------------------------------------------------------------------- FBNet physical terms
def fbnet_physical_vectors(arch_keys: Sequence[str] | pl.Series) -> np.ndarray:
    """``(n, k)`` physical cost terms of each FBNet architecture, summed over its 22 layers.

    Per layer and op: a conv indicator, MACs of the 1x1 expand, the depthwise and the 1x1 project
    convolutions, input / hidden / output activation sizes, parameters, a skip's projection MACs
    and a projecting-skip indicator, 5x5-kernel, grouped and stride-2 indicators, and a conv
    indicator per stage: the terms a per-op latency lookup table is made of (the few-shot
    model's ``FewShotConfig.physical_features``). Columns 1 + 2 + 3 + 9 add up to the layer MACs.
    """
    stage, cin, cout, stride, res = (a[:, None] for a in _fbnet_layers())
    ops = np.arange(len(FBNET_OPS))
    k, e, g = _FB_K[ops][None], _FB_E[ops][None], _FB_G[ops][None]
    hout, mid = res // stride, cin * e
    conv = (ops != len(ops) - 1)[None] * np.ones_like(cin)
    proj = (1 - conv) * ((cin != cout) | (stride != 1))
    terms = [
        conv,
        conv * res**2 * cin * mid / g,
        conv * hout**2 * k**2 * mid,
        conv * hout**2 * mid * cout / g,
        conv * res**2 * cin,
        conv * res**2 * mid,
        conv * hout**2 * mid,
        conv * hout**2 * cout,
        conv * (cin * mid / g + k**2 * mid + mid * cout / g),
        proj * hout**2 * cin * cout,
        proj,
        conv * (k == 5),
        conv * (g == 2),
        conv * (stride == 2),
    ] + [conv * (stage == s) for s in range(int(stage.max()) + 1)]
    table = np.stack([np.broadcast_to(t, conv.shape).astype(np.float64) for t in terms], axis=-1)
    codes = fbnet_op_codes(list(arch_keys))
    return table[np.arange(codes.shape[1])[None, :], codes].sum(axis=1)
