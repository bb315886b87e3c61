"""HLSyn program graphs: pragma values on pragma nodes, loop-nest features, the GNN, bad input."""

from __future__ import annotations

import json
import pickle
import re

import numpy as np
import polars as pl
import pytest
import torch

from hwsurrogate.datasets.importers.hlsyn import parse_gexf
from hwsurrogate.errors import SourceFormatError
from hwsurrogate.surrogates.features.program_graphs import (
    LOOP_FEATURES,
    NODE_FEATURES,
    design_batch,
    design_graphs,
    kernel_graph,
    kernel_graphs,
    loop_features,
    pragma_values,
)
from hwsurrogate.surrogates.models.fpga import HLSYN_TARGETS, FpgaRegressor
from hwsurrogate.surrogates.models.hlsyn_gnn import HlsynGNNConfig, HlsynGNNRegressor

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    """sklearn's OpenMP threads spin for seconds on the shared, oversubscribed CPU: use one."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


F = {n: i for i, n in enumerate(NODE_FEATURES)}
L = {n: i for i, n in enumerate(LOOP_FEATURES)}


def tiny_graph(outer: int = 64, inner: int = 8, n_mul: int = 1) -> tuple[list[dict], list[list[int]]]:
    """Two nested loops (outer in block 1, inner in block 2, body block 3) with 3 pragma nodes.

    Node ids: 0 entry br (block 0); 1 outer icmp, 2 outer br (block 1); 3 inner icmp, 4 inner br
    (block 2); body (block 3): loads, fmul x n_mul, fadd, store, br; then exits (blocks 4, 5);
    constants; pragma nodes __PIPE__L0, __PARA__L0 (outer) and __PARA__L1 (inner).
    """
    nodes: list[dict] = []

    def add(type_: int, text: str, block: int, full: str = "", pragma: str | None = None) -> int:
        nodes.append({"id": len(nodes), "type": type_, "text": text, "full_text": full, "block": block,
                      "function": 0, "pragma": pragma})  # fmt: skip
        return len(nodes) - 1

    entry = add(0, "br", 0)
    oc = add(0, "icmp", 1, f"%cmp = icmp slt i32 %0, {outer}")
    ob = add(0, "br", 1)
    ic = add(0, "icmp", 2, f"%cmp2 = icmp slt i32 %1, {inner}")
    ib = add(0, "br", 2)
    body = [
        add(0, "load", 3),
        *(add(0, "fmul", 3) for _ in range(n_mul)),
        add(0, "fadd", 3),
        add(0, "store", 3),
    ]
    bb = add(0, "br", 3)
    inner_exit = add(0, "br", 4)
    outer_exit = add(0, "ret", 5)
    c1 = add(2, "i32", -1, f"i32 {outer}")
    c2 = add(2, "i32", -1, f"i32 {inner}")
    p_pipe = add(3, "PIPELINE", 1, "#pragma ACCEL PIPELINE auto{__PIPE__L0}", "__PIPE__L0")
    p_par0 = add(3, "PARALLEL", 1, "#pragma ACCEL PARALLEL FACTOR=auto{__PARA__L0}", "__PARA__L0")
    p_par1 = add(3, "PARALLEL", 2, "#pragma ACCEL PARALLEL FACTOR=auto{__PARA__L1}", "__PARA__L1")
    edges = [
        [entry, oc, 0, 0], [oc, ob, 0, 0], [ob, ic, 0, 0], [ob, outer_exit, 0, 1], [ic, ib, 0, 0],
        [ib, body[0], 0, 0], [ib, inner_exit, 0, 1], [bb, ic, 0, 0], [inner_exit, oc, 0, 0],
        [c1, oc, 1, 1], [c2, ic, 1, 1], [body[0], body[1], 1, 0],
        [p_pipe, oc, 3, 0], [oc, p_pipe, 3, 0], [p_par0, oc, 3, 0], [oc, p_par0, 3, 0],
        [p_par1, ic, 3, 0], [ic, p_par1, 3, 0],
    ]  # fmt: skip
    edges += [[body[i], body[i + 1], 0, 0] for i in range(len(body) - 1)] + [[body[-1], bb, 0, 0]]
    return nodes, edges


def design(pipe: str = "off", par0: int = 1, par1: int = 1) -> str:
    return json.dumps({"__PIPE__L0": pipe, "__PARA__L0": par0, "__PARA__L1": par1})


def test_pragma_values_land_on_their_pragma_nodes() -> None:
    kg = kernel_graph("tiny", *tiny_graph())
    assert kg.placeholders == ("__PARA__L0", "__PARA__L1", "__PIPE__L0")
    (d,) = design_graphs(kg, [design("flatten", 4, 8)])
    nodes = tiny_graph()[0]
    by_name = {n["pragma"]: n["id"] for n in nodes if n["pragma"]}
    assert d.x.shape == (len(nodes), len(NODE_FEATURES))
    assert d.x[by_name["__PARA__L0"], F["log2_factor"]] == pytest.approx(np.log2(4) / 8)
    assert d.x[by_name["__PARA__L1"], F["log2_factor"]] == pytest.approx(np.log2(8) / 8)
    pipe = d.x[by_name["__PIPE__L0"]]
    assert (pipe[F["pipe_off"]], pipe[F["pipe_auto"]], pipe[F["pipe_flatten"]]) == (0, 0, 1)
    assert pipe[F["kind_pipe"]] == 1 and d.x[by_name["__PARA__L0"], F["kind_para"]] == 1
    non_pragma = [n["id"] for n in nodes if not n["pragma"]]
    assert torch.all(d.x[non_pragma, F["log2_factor"]] == 0)
    assert d.x[1, F["log2_trip"]] == pytest.approx(np.log2(64) / 8)  # outer icmp carries its trip count
    assert d.edge_attr.shape == (d.edge_index.shape[1], 4)


def test_design_batch_tiles_the_shared_topology_per_design() -> None:
    kg = kernel_graph("tiny", *tiny_graph())
    v = pragma_values(kg, [design(par0=2), design(par1=4), design("", 1, 1)])
    b = design_batch(kg, v)
    n = kg.num_nodes
    assert b.x.shape == (3 * n, len(NODE_FEATURES)) and b.num_graphs == 3
    assert torch.equal(
        b.edge_index[:, kg.edge_index.shape[1] :][:, :3], torch.from_numpy(kg.edge_index[:, :3]) + n
    )
    singles = design_graphs(kg, [design(par0=2), design(par1=4), design("", 1, 1)])
    assert torch.equal(b.x[n : 2 * n], singles[1].x)


def test_gexf_roundtrip_through_the_importer_parser() -> None:
    nodes, edges = tiny_graph()
    ns = "http://www.gexf.net/1.2draft"
    node_xml = "".join(
        f'<node id="n{n["id"]}"><attvalues><attvalue for="0" value="{n["type"]}"/><attvalue for="1" '
        f'value="{n["text"]}"/><attvalue for="2" value="{n["full_text"]}"/><attvalue for="3" value="{n["block"]}"/>'
        "</attvalues></node>"
        for n in nodes
    )
    edge_xml = "".join(
        f'<edge id="{i}" source="n{s}" target="n{t}"><attvalues><attvalue for="4" value="{f}"/>'
        f'<attvalue for="5" value="{p}"/></attvalues></edge>'
        for i, (s, t, f, p) in enumerate(edges)
    )
    gexf = (
        f'<gexf xmlns="{ns}" version="1.2"><graph defaultedgetype="directed" mode="static">'
        '<attributes class="node"><attribute id="0" title="type" type="long"/><attribute id="1" title="text" '
        'type="string"/><attribute id="2" title="full_text" type="string"/><attribute id="3" title="block" '
        'type="long"/></attributes><attributes class="edge"><attribute id="4" title="flow" type="long"/>'
        '<attribute id="5" title="position" type="long"/></attributes>'
        f"<nodes>{node_xml}</nodes><edges>{edge_xml}</edges></graph></gexf>"
    ).encode()
    pnodes, pedges = parse_gexf(gexf, name="tiny.gexf")
    kg = kernel_graph("tiny", pnodes, pedges)
    assert kg.placeholders == ("__PARA__L0", "__PARA__L1", "__PIPE__L0")
    assert kg.loop_trip.tolist() == [64.0, 8.0] and kg.loop_parent.tolist() == [-1, 0]
    with pytest.raises(SourceFormatError, match="bad.gexf"):
        parse_gexf(gexf[:-40], name="bad.gexf")


def test_loop_features_follow_trip_counts_and_factors() -> None:
    kg = kernel_graph("tiny", *tiny_graph(outer=64, inner=8, n_mul=2))
    assert kg.loop_ops[1, 0] == 2  # the two fmul sit in the inner loop's body
    v = pragma_values(kg, [design(), design(par1=8), design(par0=4, par1=8), design("flatten", 1, 1)])
    lf = loop_features(kg, v)
    assert lf[:, L["lp_log2_seq_iters"]].tolist() == pytest.approx([9.0, 6.0, 4.0, 6.0])
    # replicated multipliers: 2 * prod of factors on the path; flatten unrolls the inner loop fully
    assert lf[:, L["lp_log2_par_mul"]].tolist() == pytest.approx(
        np.log2(1 + np.array([2, 16, 64, 16])).tolist()
    )
    assert lf[0, L["lp_n_loops"]] == 2 and lf[0, L["lp_max_depth"]] == 2


def test_pragma_key_missing_from_the_graph_is_named() -> None:
    kg = kernel_graph("tiny", *tiny_graph())
    with pytest.raises(ValueError, match=r"__PARA__L7.*row 1.*'tiny'"):
        pragma_values(kg, [design(), json.dumps({"__PARA__L7": 2})])
    with pytest.raises(ValueError, match="__PIPE__L0.*must be one of"):
        pragma_values(kg, [json.dumps({"__PIPE__L0": "sometimes"})])
    with pytest.raises(ValueError, match="__PARA__L0.*factor"):
        pragma_values(kg, [json.dumps({"__PARA__L0": "many"})])
    with pytest.raises(ValueError, match="'pragmas' row 0 is not a JSON object"):
        pragma_values(kg, ["{oops"])


def test_malformed_graph_rows_are_named() -> None:
    nodes, edges = tiny_graph()
    with pytest.raises(ValueError, match="'edges' refer to a node id"):
        kernel_graph("tiny", nodes, [*edges, [0, 999, 0, 0]])
    with pytest.raises(ValueError, match="'nodes' is empty"):
        kernel_graph("tiny", [], [])
    with pytest.raises(ValueError, match="'nodes'/'edges' are not JSON"):
        kernel_graphs(pl.DataFrame({"kernel": ["broken"], "nodes": ["[{"], "edges": ["[]"]}))
    with pytest.raises(ValueError, match="misses column"):
        kernel_graphs(pl.DataFrame({"kernel": ["k"]}))


def _synthetic(n_per_kernel: int = 40, seed: int = 0) -> tuple[dict, pl.DataFrame, np.ndarray]:
    """Three kernels; perf and util follow the loop nest (what a good model must learn)."""
    rng = np.random.default_rng(seed)
    graphs = {
        "k1": kernel_graph("k1", *tiny_graph(64, 8, 1)),
        "k2": kernel_graph("k2", *tiny_graph(32, 16, 2)),
        "k3": kernel_graph("k3", *tiny_graph(128, 4, 3)),
    }
    rows, ys = [], []
    for k, kg in graphs.items():
        for _ in range(n_per_kernel):
            p0, p1 = int(rng.choice([1, 2, 4])), int(rng.choice([1, 2, 4, 8]))
            pipe = str(rng.choice(["off", "", "flatten"]))
            v = pragma_values(kg, [design(pipe, p0, p1)])
            lf = loop_features(kg, v)[0]
            rows.append({"kernel": k, "pragmas": design(pipe, p0, p1), "tool": "v18"})
            ys.append([-0.5 * lf[L["lp_log2_seq_iters"]] + 8 + 0.3 * (pipe == "flatten"),
                       0.01 * 2 ** lf[L["lp_log2_par_all"]] / 8, 0.02, 0.005 * 2 ** lf[L["lp_log2_par_mul"]], 0.01])  # fmt: skip
    return graphs, pl.DataFrame(rows), np.array(ys)


def test_gnn_learns_synthetic_designs_and_survives_a_pickle_round_trip() -> None:
    graphs, q, y = _synthetic()
    cfg = HlsynGNNConfig(hidden_channels=16, num_layers=2, epochs=25, batch_size=32, patience=25, lr=5e-3,
                         max_designs_per_kernel=40, max_seconds=20)  # fmt: skip
    m = HlsynGNNRegressor(graphs, cfg).fit(q, y)
    hist = [h["train"] for h in m.history_]
    assert hist[-1] < 0.5 * hist[0], hist
    pred = m.predict(q)
    mse_model = ((pred - y) ** 2).mean(0)
    mse_mean = ((y - y.mean(0)) ** 2).mean(0)
    assert mse_model[0] < 0.5 * mse_mean[0]  # perf beats the mean predictor
    again = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(again.predict(q), pred)


def test_gnn_rejects_unknown_kernels_inf_or_empty_targets_and_predicting_unfitted() -> None:
    graphs, q, y = _synthetic(n_per_kernel=4)
    m = HlsynGNNRegressor(graphs, HlsynGNNConfig(epochs=1))
    bad = y.copy()
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match="1 rows with infinite targets"):
        m.fit(q, bad)
    bad[:, 1] = np.nan
    with pytest.raises(ValueError, match="'util_lut' is NaN in every row"):
        m.fit(q, bad)
    some_missing = y.copy()
    some_missing[::2, 2] = np.nan  # e.g. FF absent from a report: masked, not fatal
    assert np.isfinite(
        HlsynGNNRegressor(graphs, HlsynGNNConfig(epochs=2)).fit(q, some_missing).predict(q)
    ).all()
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        m.predict(q)
    with pytest.raises(ValueError, match="column 'kernel'.*nope"):
        m.fit(q.with_columns(pl.lit("nope").alias("kernel")), y)


def test_physics_tree_uses_graphs_and_refuses_without_them() -> None:
    graphs, q, y = _synthetic(n_per_kernel=30)
    rows = [{"kernel": k, "nodes": json.dumps(tiny_graph(*a)[0]), "edges": json.dumps(tiny_graph(*a)[1])}
            for k, a in (("k1", (64, 8, 1)), ("k2", (32, 16, 2)), ("k3", (128, 4, 3)))]  # fmt: skip
    frame = pl.DataFrame(rows)
    reg = FpgaRegressor(kind="hlsyn", targets=HLSYN_TARGETS, log_target=False, graphs=frame, physics=True,
                        max_iter=30, min_samples_leaf=2)  # fmt: skip
    pred = reg.fit(q, y).predict(q)
    assert pred.shape == y.shape and (pred[:, 1:] >= 0).all()
    assert np.sqrt(((pred[:, 0] - y[:, 0]) ** 2).mean()) < 0.5 * y[:, 0].std()
    with pytest.raises(ValueError, match="physics=True needs"):
        FpgaRegressor(kind="hlsyn", targets=HLSYN_TARGETS, log_target=False, physics=True).fit(q, y)


def test_train_hlsyn_gnn_logs_registers_and_reloads_identically(store) -> None:  # noqa: ANN001
    from datetime import UTC, datetime

    import mlflow

    from hwsurrogate.surrogates.training.fpga import FpgaTrainConfig, train_hlsyn_model

    graphs, q, y = _synthetic(n_per_kernel=30)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    cycles = 1e7 / 2 ** (2 * y[:, 0])
    fpga = q.with_columns(
        pl.format("{}-{}", "kernel", pl.int_range(pl.len())).alias("design_id"),
        pl.lit("hlsyn").alias("domain"), pl.lit("vitis_hls").alias("tool"), pl.lit("xcu200").alias("part"),
        pl.lit("hls_estimate").alias("stage"), pl.lit(True).alias("valid"), pl.Series("cycles", cycles),
        pl.Series("lut", y[:, 1] * 1_182_240 + 1), pl.Series("ff", y[:, 2] * 2_364_480 + 1),
        pl.Series("dsp", y[:, 3] * 6840), pl.Series("bram", y[:, 4] * 4320), pl.lit('{"tool_tag":"v20"}').alias("extra"),
        pl.lit("test").alias("source"), pl.lit("tests").alias("origin"), pl.lit(now).alias("imported_at"),
    ).with_columns(pl.col("design_id").alias("measurement_id"))  # fmt: skip
    store.append("fpga", fpga, partition="test")
    rows = [{"graph_id": k, "domain": "hlsyn", "kernel": k, "n_nodes": len(tiny_graph(*a)[0]), "n_edges": 0,
             "n_pragma_nodes": 3, "nodes": json.dumps(tiny_graph(*a)[0]), "edges": json.dumps(tiny_graph(*a)[1]),
             "source": "test", "origin": "tests", "imported_at": now, "measurement_id": k}
            for k, a in (("k1", (64, 8, 1)), ("k2", (32, 16, 2)), ("k3", (128, 4, 3)))]  # fmt: skip
    store.append("program_graphs", pl.DataFrame(rows), partition="test")
    res = train_hlsyn_model(store, FpgaTrainConfig(model="gnn", gnn_seconds=3, test_frac=0.34))
    queries = res.test.select("kernel", "pragmas", "tool")
    loaded = mlflow.pyfunc.load_model(res.model_uri).predict(queries.to_pandas())
    assert list(loaded.columns) == ["cycles", "lut", "ff", "dsp", "bram", "valid_prob"]
    np.testing.assert_allclose(
        loaded["cycles"].to_numpy(), res.model.predict_frame(queries)["cycles"].to_numpy()
    )
    assert res.version is not None and "test_cycles_smape" in res.metrics
    with pytest.raises(ValueError, match="model must be 'tree' or 'gnn'"):
        train_hlsyn_model(store, FpgaTrainConfig(model="forest"))


def test_pragma_values_accept_numeric_strings_and_null_means_default() -> None:
    kg = kernel_graph("tiny", *tiny_graph())
    v = pragma_values(kg, [json.dumps({"__PARA__L0": "4", "__PIPE__L0": None}), design("", 2, 8), "{}"])
    assert v.tolist() == [
        [4.0, 1.0, 0.0],
        [2.0, 8.0, 1.0],
        [1.0, 1.0, 0.0],
    ]  # columns: PARA_L0, PARA_L1, PIPE_L0
    with pytest.raises(ValueError, match=r"__PARA__L1.*row 2.*>= 1"):
        pragma_values(kg, [design(), design(), json.dumps({"__PARA__L1": 0})])


def test_loop_nest_round_trips_through_json_and_refuses_bad_fields() -> None:
    from hwsurrogate.surrogates.features.program_graphs import LoopNest

    kg = kernel_graph("tiny", *tiny_graph())
    designs = [design("flatten", 4, 8), design("", 64, 2), design("off", 1, 1)]
    d = json.loads(json.dumps(LoopNest.of(kg).to_json()))
    nest = LoopNest.from_json(d)
    np.testing.assert_array_equal(pragma_values(nest, designs), pragma_values(kg, designs))
    np.testing.assert_array_equal(
        loop_features(nest, pragma_values(nest, designs)), loop_features(kg, pragma_values(kg, designs))
    )
    with pytest.raises(ValueError, match="not a placeholder of kernel 'tiny'"):
        pragma_values(nest, [json.dumps({"__PARA__L5": 2})])
    for bad, needle in [
        ({k: v for k, v in d.items() if k != "loop_ops"}, "missing field(s) ['loop_ops']"),
        ({**d, "placeholders": ["__PARA__L0", "x", "__PIPE__L0"]}, "field 'placeholders'"),
        ({**d, "loop_parent": [1, 0]}, "field 'loop_parent' has a cycle"),
        ({**d, "pragma_loop": [0, 5, 0]}, "fields 'pragma_loop'/'loop_parent'"),
        ({**d, "loop_ops": [[1, 2, 3]]}, "field 'loop_ops'"),
        ({**d, "loop_trip": [64.0, 0.0]}, "field 'loop_trip' must be > 0"),
    ]:
        with pytest.raises(ValueError, match=re.escape(needle)):
            LoopNest.from_json(bad)
