"""Architecture encoders: exact node features, edges and vectors on hand-checked architectures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from hwsurrogate.surrogates.features import nas as G

# e0 pool(1<-0), e1 conv1x1(2<-0), e2 skip(2<-1), e3 conv1x1(3<-0), e4 skip(3<-1), e5 none(3<-2)
CELL = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|none~2|"
FB_KEY = " ".join(["k3_e1"] + ["skip"] * 20 + ["k5_e6"])
OFA_KEY = (
    "ks:3,5,7,3,5,7,3,5,7,3,5,7,3,5,7,3,5,7,3,5|e:3,4,6,3,4,6,3,4,6,3,4,6,3,4,6,3,4,6,3,4|d:2,3,4,2,3|r:128"
)


def test_nb201_graph_has_the_hand_checked_nodes_and_edges() -> None:
    g = G.nb201_graph(CELL)
    # columns: input, output, none, skip, conv1x1, conv3x3, avg_pool, live
    expected_x = [
        [1, 0, 0, 0, 0, 0, 0, 1],  # cell input
        [0, 0, 0, 0, 0, 0, 1, 1],  # e0 avg_pool 1<-0: live (node1 reaches output via e4)
        [0, 0, 0, 0, 1, 0, 0, 0],  # e1 conv1x1 2<-0: dead (node2 only feeds the none edge)
        [0, 0, 0, 1, 0, 0, 0, 0],  # e2 skip 2<-1: dead
        [0, 0, 0, 0, 1, 0, 0, 1],  # e3 conv1x1 3<-0: live
        [0, 0, 0, 1, 0, 0, 0, 1],  # e4 skip 3<-1: live
        [0, 0, 1, 0, 0, 0, 0, 0],  # e5 none 3<-2
        [0, 1, 0, 0, 0, 0, 0, 1],  # cell output
    ]
    assert g.x.tolist() == expected_x
    assert g.edge_index.tolist() == [[0, 0, 0, 1, 1, 2, 3, 4, 5, 6], [1, 2, 4, 3, 5, 6, 6, 7, 7, 7]]
    assert G.graph_spec("nb201").node_feature_names == (
        "input", "output", "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "live",
    )  # fmt: skip
    g.validate(raise_on_error=True)


def test_nb201_vector_has_the_hand_checked_counts_and_paths() -> None:
    v = dict(zip(G.vector_feature_names("nb201"), G.arch_vectors("nb201", [CELL])[0].tolist(), strict=True))
    assert v["e0_avg_pool_3x3"] == 1 and v["e0_none"] == 0 and v["e5_none"] == 1
    assert [v[f"n_{op}"] for op in ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")] == [
        1, 2, 2, 0, 1,
    ]  # fmt: skip
    assert [v[f"n_live_{op}"] for op in ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")] == [
        0, 1, 1, 0, 1,
    ]  # fmt: skip
    one_conv1x1 = 15 * 16 * 16 * 32 * 32 / 1e6  # 15 cells, C^2*H*W is the same in all three stages
    assert v["conv_mmacs"] == pytest.approx(2 * one_conv1x1)
    assert v["live_conv_mmacs"] == pytest.approx(one_conv1x1)
    # live paths: 0->3 (conv1x1) and 0->1->3 (pool, skip); 0->2->3 and 0->1->2->3 cross the none edge
    assert (v["longest_path_convs"], v["n_live_paths"], v["longest_path_len"], v["disconnected"]) == (
        1,
        2,
        2,
        0,
    )
    assert [v[f"e{j}_live"] for j in range(6)] == [1, 0, 0, 1, 1, 0]


def test_nb201_cell_without_input_output_path_is_flagged_disconnected() -> None:
    key = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    v = dict(zip(G.vector_feature_names("nb201"), G.arch_vectors("nb201", [key])[0].tolist(), strict=True))
    assert (v["disconnected"], v["n_live_paths"], v["live_conv_mmacs"]) == (1, 0, 0)
    assert v["conv_mmacs"] == pytest.approx(9 * 15 * 16 * 16 * 32 * 32 / 1e6)


def test_fbnet_first_layer_features_match_the_macro_architecture() -> None:
    x = G.node_features("fbnet", [FB_KEY])[0]
    names = G.graph_spec("fbnet").node_feature_names
    first = dict(zip(names, x[0].tolist(), strict=True))
    assert first["k3_e1"] == 1 and sum(first[op] for op in ("k3_e3", "k5_e6", "skip")) == 0
    assert first["stage0"] == 1 and first["stride2"] == 0 and first["position"] == 0
    # 16->16 ch at 32 px: expand 1x1 + depthwise 3x3 + project 1x1
    macs = (32 * 32 * 16 * 16 + 32 * 32 * 9 * 16 + 32 * 32 * 16 * 16) / 1e6
    assert first["log1p_mmacs"] == pytest.approx(math.log1p(macs), rel=1e-6)
    second = dict(zip(names, x[1].tolist(), strict=True))  # skip 16->24, stride 2: a 1x1 projection
    assert second["skip"] == 1 and second["stage1"] == 1 and second["stride2"] == 1
    assert second["log1p_mmacs"] == pytest.approx(math.log1p(16 * 16 * 16 * 24 / 1e6), rel=1e-6)
    assert G.graph_spec("fbnet").edge_index.tolist() == [list(range(21)), list(range(1, 22))]


def test_ofa_vectors_follow_help_encoding_with_inactive_slots_zeroed() -> None:
    v = G.arch_vectors("ofa", [OFA_KEY])[0]
    ks = v[:60].reshape(20, 3)
    e = v[60:120].reshape(20, 3)
    r = v[120:145]
    active = [1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0]  # d = 2,3,4,2,3
    assert ks.sum(axis=1).tolist() == active and e.sum(axis=1).tolist() == active
    assert ks[1].tolist() == [0, 1, 0] and e[2].tolist() == [0, 0, 0]  # slot 2 inactive
    assert r.tolist() == [1] + [0] * 24  # r=128 is the first of 128..224 step 4
    x = G.node_features("ofa", [OFA_KEY])[0]
    assert x[:, 6].tolist() == active
    assert (x[np.array(active) == 0, 14] == 0).all()  # no MACs in inactive slots


def test_arch_batch_equals_pyg_batching_of_single_graphs() -> None:
    keys = [CELL, "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"]
    fast = G.arch_batch("nb201", keys)
    slow = Batch.from_data_list(G.arch_graphs("nb201", keys))
    assert torch.equal(fast.x, slow.x) and torch.equal(fast.edge_index, slow.edge_index)
    assert torch.equal(fast.batch, slow.batch) and fast.num_graphs == 2


@pytest.mark.parametrize(
    ("space", "key", "message"),
    [
        ("nb201", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op"),
        ("nb201", "resnet50", "not a valid nb201 key"),
        ("fbnet", "k3_e1 skip", "needs 22"),
        ("fbnet", " ".join(["k7_e9"] * 22), "unknown op"),
        ("ofa", OFA_KEY.replace("r:128", "r:130"), "r must be"),
        ("ofa", OFA_KEY.replace("ks:3,", "ks:4,"), "ks values"),
    ],
)
def test_bad_arch_key_raises_naming_the_key(space: str, key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        G.arch_vectors(space, [key])
    assert repr(key)[:30] in str(err.value)


def test_unknown_space_and_bare_string_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown space 'darts'"):
        G.arch_vectors("darts", [CELL])
    with pytest.raises(ValueError, match="not one string"):
        G.arch_vectors("nb201", CELL)


@pytest.mark.shared_data
def test_every_imported_help_arch_key_encodes(data_dir, store) -> None:
    """All 15625 NB201, 5000 FBNet and 5000 OFA keys the HELP importer writes parse and encode."""
    import polars as pl

    from hwsurrogate.datasets.importers import import_source

    import_source("help", data_dir / "latency" / "help", store=store)
    keys = store.scan("latency").select("space", "arch_key").unique().collect()
    for space, n_archs, dim in (("nb201", 15625, 52), ("fbnet", 5000, 239), ("ofa", 5000, 180)):
        k = keys.filter(pl.col("space") == space)["arch_key"]
        assert k.len() == n_archs
        v = G.arch_vectors(space, k)
        assert v.shape == (n_archs, dim) and np.isfinite(v).all()
        assert G.node_features(space, k).shape[0] == n_archs
