"""Canonical architecture keys of the NAS spaces, shared by importers, collectors and surrogates.

The ``latency`` table's ``arch_key`` column always holds one of these canonical strings:

- ``nb201``: the NAS-Bench-201 arch string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``; the six
  edge ops in order (node1<-0, node2<-0, node2<-1, node3<-0, node3<-1, node3<-2).
- ``fbnet``: the 22 layer op names separated by single spaces (``k5_e6 skip k3_e1_g2 ...``).
- ``ofa``: ``ks:7,5,...|e:6,4,...|d:2,2,2,2,3|r:204`` (20 kernel sizes, 20 expand ratios,
  5 stage depths, resolution); inactive slots are kept as given.

Every parser raises :class:`ValueError` naming the key and what is wrong with it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: (target node, source node) of each of the six NB201 edges, in arch-string order.
NB201_EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))

FBNET_OPS: tuple[str, ...] = (
    "k3_e1",
    "k3_e1_g2",
    "k3_e3",
    "k3_e6",
    "k5_e1",
    "k5_e1_g2",
    "k5_e3",
    "k5_e6",
    "skip",
)
FBNET_N_LAYERS = 22

OFA_KERNELS = (3, 5, 7)
OFA_EXPANDS = (3, 4, 6)
OFA_DEPTHS = (2, 3, 4)

#: HELP's hardware-embedding reference architectures: index -> canonical arch key, in HELP's order
#: (from ``hardware_embedding_index.pt``). The keys were derived once from HELP's derived CSVs
#: (``latency/help/derived/*_latency_ms.csv.xz``, rows with ``is_hw_embedding_ref``);
#: ``tests/datasets/test_collectors_fingerprint.py`` re-checks them against the data.
HELP_REFERENCE_ARCHS: dict[str, dict[int, str]] = {
    "nb201": {
        11982: "|avg_pool_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
        431: "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|",
        55: "|skip_connect~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|skip_connect~1|none~2|",
        9: "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
        14451: "|none~0|+|nor_conv_1x1~0|none~1|+|nor_conv_3x3~0|nor_conv_1x1~1|nor_conv_1x1~2|",
        8636: "|skip_connect~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|",
        9881: "|nor_conv_3x3~0|+|avg_pool_3x3~0|skip_connect~1|+|none~0|nor_conv_1x1~1|avg_pool_3x3~2|",
        13479: "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        6196: "|avg_pool_3x3~0|+|none~0|skip_connect~1|+|none~0|nor_conv_1x1~1|avg_pool_3x3~2|",
        1462: "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    },
    "fbnet": {
        3328: "k3_e1_g2 skip k5_e3 k5_e3 skip k3_e1 k3_e6 k5_e1 k3_e6 k5_e6 skip k5_e6 k5_e1 k3_e6 k3_e3 "
        "k5_e1_g2 k5_e6 k3_e6 k3_e1 k3_e1_g2 k3_e6 k5_e6",
        3790: "k5_e1_g2 k5_e1 skip k5_e1_g2 k3_e1_g2 k5_e3 skip k5_e1_g2 k3_e6 k3_e1 k5_e1 skip k3_e1 k3_e3 "
        "k5_e1 k5_e1_g2 k3_e1 k5_e3 k5_e3 k3_e1 k3_e1 k5_e1_g2",
        3313: "k5_e6 k3_e3 k5_e6 k5_e1_g2 k5_e1 k5_e3 skip k3_e1 k5_e3 k5_e3 k5_e1_g2 k3_e1_g2 k3_e3 k5_e1 "
        "k3_e1 k5_e6 k5_e1_g2 k5_e3 k3_e1 k3_e6 k3_e6 k3_e3",
        890: "skip k3_e1_g2 k5_e3 k3_e1_g2 k5_e3 k3_e3 k5_e6 k3_e1_g2 k5_e3 skip k5_e6 k5_e1_g2 k3_e3 k3_e1 "
        "k3_e1_g2 skip k3_e1 k3_e6 k3_e3 k3_e3 k5_e1_g2 k5_e1",
        3052: "k3_e1_g2 k5_e6 k3_e1 k5_e6 k5_e1 k3_e6 k5_e1 k5_e3 k5_e3 k3_e1_g2 k3_e1_g2 k3_e1 k5_e1_g2 "
        "k5_e3 k5_e6 k5_e6 k5_e3 k5_e6 k5_e3 k3_e6 k3_e1_g2 k3_e3",
        2538: "k3_e3 k3_e3 k5_e1 k5_e1_g2 k5_e6 k3_e3 k5_e1_g2 k5_e6 k3_e3 k3_e3 k3_e1_g2 k3_e3 k3_e6 "
        "k3_e1_g2 k5_e1 k5_e3 k3_e6 k5_e3 k3_e6 k3_e3 k3_e1 k3_e1_g2",
        1640: "k5_e1 k5_e1 k5_e1_g2 k5_e1_g2 k3_e6 k3_e1_g2 k3_e1_g2 k3_e1 k5_e1 k3_e3 k3_e3 k5_e1 k3_e3 "
        "k3_e1 k5_e1_g2 k3_e1 k5_e1_g2 k5_e3 k3_e3 k5_e1_g2 k3_e3 k5_e1_g2",
        2514: "skip skip k5_e1 k5_e1 k5_e3 skip k3_e1_g2 skip k3_e1 k3_e6 k3_e1_g2 k3_e3 skip skip k5_e1_g2 "
        "skip k3_e3 k3_e3 skip k3_e1_g2 k5_e1 skip",
        457: "k3_e1 k5_e6 k5_e3 k5_e6 k3_e6 k3_e6 k5_e3 k3_e1_g2 k5_e6 k5_e1 k3_e6 k5_e6 k5_e6 k3_e1 skip "
        "k5_e1 skip k5_e1_g2 k5_e3 skip k5_e1_g2 k3_e1_g2",
        2100: "k3_e1_g2 k3_e3 k5_e1 k3_e1 k5_e6 k3_e6 k3_e1 k5_e1_g2 k5_e3 k5_e1 k5_e1_g2 k5_e6 k3_e1 "
        "k3_e1_g2 k5_e1 k3_e6 k3_e3 k3_e6 k3_e6 k3_e6 k3_e1 k5_e3",
    },
}


#: HELP's hardware-embedding reference architecture indices per space, in HELP's order (OFA's
#: arch keys are not known here, only its indices).
HELP_REFERENCE_INDICES: dict[str, tuple[int, ...]] = {
    **{space: tuple(archs) for space, archs in HELP_REFERENCE_ARCHS.items()},
    "ofa": (1316, 1587, 1621, 1636, 1980, 2329, 2487, 3355, 3740, 4948),
}

_NB201_RE = re.compile(
    r"^\|([a-z0-9_]+)~0\|\+\|([a-z0-9_]+)~0\|([a-z0-9_]+)~1\|\+\|([a-z0-9_]+)~0\|([a-z0-9_]+)~1\|([a-z0-9_]+)~2\|$"
)


def parse_nb201(key: str) -> tuple[str, ...]:
    """The six edge ops of an NB201 arch string."""
    m = _NB201_RE.match(key.strip())
    if not m:
        raise ValueError(
            f"arch_key {key!r} is not a NAS-Bench-201 arch string like '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'"
        )
    ops = m.groups()
    for op in ops:
        if op not in NB201_OPS:
            raise ValueError(f"arch_key {key!r}: unknown NB201 op {op!r}; expected one of {NB201_OPS}")
    return ops


def format_nb201(ops: Sequence[str]) -> str:
    if len(ops) != 6 or any(op not in NB201_OPS for op in ops):
        raise ValueError(f"NB201 needs 6 ops from {NB201_OPS}, got {list(ops)}")
    a, b, c, d, e, f = ops
    return f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"


def nb201_from_codes(codes: Sequence[int]) -> str:
    """Arch string from LatBench op codes (0=none, 1=skip, 2=conv1x1, 3=conv3x3, 4=avgpool)."""
    if len(codes) != 6 or any(not 0 <= int(c) < len(NB201_OPS) for c in codes):
        raise ValueError(f"NB201 op codes must be 6 ints in 0..4, got {list(codes)}")
    return format_nb201([NB201_OPS[int(c)] for c in codes])


def parse_fbnet(key: str) -> tuple[str, ...]:
    ops = tuple(key.split())
    if len(ops) != FBNET_N_LAYERS:
        raise ValueError(
            f"arch_key {key!r}: FBNet needs {FBNET_N_LAYERS} space-separated ops, got {len(ops)}"
        )
    for op in ops:
        if op not in FBNET_OPS:
            raise ValueError(f"arch_key {key!r}: unknown FBNet op {op!r}; expected one of {FBNET_OPS}")
    return ops


def format_fbnet(ops: Sequence[str]) -> str:
    return " ".join(parse_fbnet(" ".join(ops)))


def fbnet_from_codes(codes: Sequence[int]) -> str:
    if len(codes) != FBNET_N_LAYERS or any(not 0 <= int(c) < len(FBNET_OPS) for c in codes):
        raise ValueError(f"FBNet op codes must be {FBNET_N_LAYERS} ints in 0..8, got {list(codes)}")
    return " ".join(FBNET_OPS[int(c)] for c in codes)


def format_ofa(ks: Sequence[int], e: Sequence[int], d: Sequence[int], r: int) -> str:
    ks, e, d = [int(x) for x in ks], [int(x) for x in e], [int(x) for x in d]
    if len(ks) != 20 or any(k not in OFA_KERNELS for k in ks):
        raise ValueError(f"OFA ks must be 20 values in {OFA_KERNELS}, got {ks}")
    if len(e) != 20 or any(x not in OFA_EXPANDS for x in e):
        raise ValueError(f"OFA e must be 20 values in {OFA_EXPANDS}, got {e}")
    if len(d) != 5 or any(x not in OFA_DEPTHS for x in d):
        raise ValueError(f"OFA d must be 5 values in {OFA_DEPTHS}, got {d}")
    if not 128 <= int(r) <= 224:
        raise ValueError(f"OFA r must be in 128..224, got {r}")
    return f"ks:{','.join(map(str, ks))}|e:{','.join(map(str, e))}|d:{','.join(map(str, d))}|r:{int(r)}"


def parse_ofa(key: str) -> tuple[list[int], list[int], list[int], int]:
    try:
        parts = dict(p.split(":", 1) for p in key.split("|"))
        ks = [int(x) for x in parts["ks"].split(",")]
        e = [int(x) for x in parts["e"].split(",")]
        d = [int(x) for x in parts["d"].split(",")]
        r = int(parts["r"])
    except (KeyError, ValueError):
        raise ValueError(
            f"arch_key {key!r} is not an OFA key like 'ks:3,...|e:4,...|d:2,...|r:224'"
        ) from None
    format_ofa(ks, e, d, r)  # validates ranges
    return ks, e, d, r


def check_arch_key(space: str, key: str) -> str:
    """Validate ``key`` for ``space`` and return it in canonical form."""
    if space == "nb201":
        return format_nb201(parse_nb201(key))
    if space == "fbnet":
        return " ".join(parse_fbnet(key))
    if space == "ofa":
        return format_ofa(*parse_ofa(key))
    if space == "custom":
        if not key:
            raise ValueError("arch_key of a custom model may not be empty")
        return key
    raise ValueError(f"unknown space {space!r}; expected nb201, fbnet, ofa or custom")
