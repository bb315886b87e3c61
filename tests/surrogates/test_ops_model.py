"""OperatorLatencyModel on synthetic devices whose operator latencies are a known roofline function."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from hwsurrogate.datasets.optable import op_table
from hwsurrogate.surrogates.models.ops import OperatorLatencyModel, backward_gemms

from .gemm_factories import devices_frame, gemm_rows

LAUNCH_MS = 0.005


def _vector_latency(rows: np.ndarray, cols: np.ndarray, inputs: np.ndarray, bw: float) -> np.ndarray:
    """A memory-bound vector op: launch + (inputs + 1) fp32 tensors at 80 % of the bandwidth."""
    return LAUNCH_MS + (inputs + 1) * rows * cols * 4.0 / (bw * 1e6 * 0.8)


def _ops_rows(device: str, n: int = 300, seed: int = 0) -> pl.DataFrame:
    spec = devices_frame().filter(pl.col("device_id") == device).row(0, named=True)
    rng = np.random.default_rng(seed)
    rows, cols = 2 ** rng.integers(4, 14, n), 2 ** rng.integers(4, 12, n)
    inputs = rng.integers(1, 3, n)
    vec = pl.DataFrame({"device_id": device, "op_kind": "elementwise", "op": "add", "phase": "forward",
                        "dtype": "fp32", "rows": rows, "cols": cols, "inputs": inputs,
                        "latency_ms": _vector_latency(rows, cols, inputs, spec["mem_bw_gbs"]),
                        "model": None}, schema_overrides={"model": pl.String})  # fmt: skip
    other = pl.DataFrame({"device_id": device, "op_kind": "other", "op": ["view", "size", "view"],
                          "phase": "forward", "dtype": "fp32", "latency_ms": [0.008, 0.007, 0.010],
                          "model": "toy-inf-8-1"})  # fmt: skip
    return pl.concat([vec, other], how="diagonal_relaxed")


@pytest.fixture(scope="module")
def fitted() -> OperatorLatencyModel:
    ops = pl.concat(
        [_ops_rows("test/gpu-a", seed=1), _ops_rows("test/gpu-b", seed=2)], how="diagonal_relaxed"
    )
    gemm = pl.concat(
        [gemm_rows("test/gpu-a", 200, seed=3, power=False), gemm_rows("test/gpu-b", 200, seed=4, power=False)]
    )
    return OperatorLatencyModel(max_iter=40, min_samples_leaf=5).fit(ops, devices_frame(), gemm)


def _new_device() -> dict[str, object]:
    return devices_frame().filter(pl.col("device_id") == "test/gpu-new").row(0, named=True)


def test_unseen_device_vector_ops_follow_its_roofline(fitted: OperatorLatencyModel) -> None:
    rng = np.random.default_rng(9)
    rows, cols = 2 ** rng.integers(6, 13, 50), 2 ** rng.integers(6, 11, 50)
    table = op_table([{"name": f"add{i}", "op_kind": "elementwise", "op": "add", "dtype": "fp32", "rows": int(r), "cols": int(c),
                       "inputs": 2} for i, (r, c) in enumerate(zip(rows, cols, strict=True))])  # fmt: skip
    dev = _new_device()
    pred = fitted.predict_ops(table, dev)
    truth = _vector_latency(rows, cols, np.full(50, 2), float(dev["mem_bw_gbs"]))
    # gpu-new has twice gpu-b's bandwidth: a raw-ms model could not go below gpu-b's times
    assert np.median(np.abs(pred / truth - 1)) < 0.2


def test_other_ops_use_the_overhead_medians_and_unknown_ones_stay_nan(fitted: OperatorLatencyModel) -> None:
    table = op_table([{"name": "v", "op_kind": "other", "op": "view", "dtype": "fp32"},
                      {"name": "w", "op_kind": "other", "op": "weird", "dtype": "fp32"},
                      {"name": "c", "op_kind": "conv2d", "op": "conv2d", "dtype": "fp32", "batch": 1, "in_channels": 3,
                       "out_channels": 8, "kernel_size": 3, "input_size": 16, "stride": 1, "padding": 1}])  # fmt: skip
    pred = fitted.predict_ops(table, _new_device())
    assert pred[0] == pytest.approx(np.median([0.008, 0.010, 0.008, 0.010]))
    assert np.isnan(pred[1]) and np.isnan(pred[2])  # never seen / no conv2d data: unmodeled, not guessed
    # the empty-op time pools every host-only op of both devices (view, size, view each)
    assert fitted.empty_op_ms == pytest.approx(0.008)
    assert (
        "conv2d" not in fitted.covered_kinds
        and {"linear", "bmm", "elementwise", "other"} <= fitted.covered_kinds
    )


def test_context_scale_follows_the_training_devices_trace_rows() -> None:
    """Trace rows (``model`` set) of a kind running at half its micro-benchmark time set a ~0.5 factor."""
    parts = []
    for i, dev in enumerate(("test/gpu-a", "test/gpu-b")):
        micro = _ops_rows(dev, seed=10 + i)
        trace = micro.filter(pl.col("op_kind") == "elementwise").head(20)
        parts += [
            micro,
            trace.with_columns(pl.col("latency_ms") * 0.5, pl.lit(f"toy-inf-{i}-1").alias("model")),
        ]
    ops = pl.concat(parts, how="diagonal_relaxed")
    plain = OperatorLatencyModel(max_iter=40, min_samples_leaf=5, context_kinds=()).fit(ops, devices_frame())
    ctx = OperatorLatencyModel(max_iter=40, min_samples_leaf=5, context_kinds=("elementwise",)).fit(
        ops, devices_frame()
    )
    assert plain.context_scale_ == {}
    assert ctx.context_scale_[("elementwise", "forward")] == pytest.approx(0.5, rel=0.15)
    table = op_table([{"name": "a", "op_kind": "elementwise", "op": "add", "dtype": "fp32", "rows": 1024,
                       "cols": 1024, "inputs": 2}])  # fmt: skip
    ratio = ctx.predict_ops(table, _new_device()) / plain.predict_ops(table, _new_device())
    assert ratio[0] == pytest.approx(ctx.context_scale_[("elementwise", "forward")])


def _one_device_with_trace(small: float, large: float) -> pl.DataFrame:
    """gpu-a's micro-benchmarks plus trace rows at ``small`` x (< 1 MB moved) and ``large`` x (more)."""
    micro = _ops_rows("test/gpu-a", seed=11)
    trace = micro.filter(pl.col("op_kind") == "elementwise").head(60)
    size = (trace["inputs"] + 1) * trace["rows"] * trace["cols"] * 4
    trace = trace.with_columns(
        pl.col("latency_ms") * pl.when(pl.Series(size) < 2**20).then(small).otherwise(large),
        pl.lit("toy-inf-1-1").alias("model"),
    )
    return pl.concat([micro, trace], how="diagonal_relaxed")


def test_a_single_device_fit_takes_its_own_context_factor() -> None:
    """One device (this CPU's per-device fit) is enough: its own in-model ratio, as on several GPUs."""
    ops = _one_device_with_trace(2.0, 2.0)
    kw = {"max_iter": 40, "min_samples_leaf": 5, "context_kinds": ("elementwise",)}
    ctx = OperatorLatencyModel(**kw).fit(ops, devices_frame())
    assert ctx.devices_ == ["test/gpu-a"]
    # the trace rows also train the trees by default, so part of the 2x is learned there
    assert 1.0 < ctx.context_scale_[("elementwise", "forward")] < 2.0
    only = OperatorLatencyModel(**kw, trace_in_trees=False).fit(ops, devices_frame())
    assert only.context_scale_[("elementwise", "forward")] == pytest.approx(2.0, rel=0.15)
    # factors only: the trees and overhead medians are those of the micro-benchmarks alone
    micro = OperatorLatencyModel(max_iter=40, min_samples_leaf=5).fit(
        ops.filter(pl.col("model").is_null()), devices_frame()
    )
    table = op_table([{"name": "a", "op_kind": "elementwise", "op": "add", "dtype": "fp32", "rows": 1024,
                       "cols": 1024, "inputs": 2}])  # fmt: skip
    dev = devices_frame().filter(pl.col("device_id") == "test/gpu-a").row(0, named=True)
    assert only.predict_ops(table, dev)[0] == pytest.approx(2.0 * micro.predict_ops(table, dev)[0], rel=0.15)
    assert only.overhead_ms_ == micro.overhead_ms_ == {}


def test_a_cpu_only_fit_defaults_to_the_cpu_context() -> None:
    """A fit on CPUs alone: factors for every vector kind, trace rows out of the trees."""
    from hwsurrogate.surrogates.models.ops import CONTEXT_KINDS, CPU_CONTEXT_BYTES_EDGES, CPU_CONTEXT_KINDS

    ops = _one_device_with_trace(2.0, 2.0)
    gpu = OperatorLatencyModel(max_iter=40, min_samples_leaf=5).fit(ops, devices_frame())
    assert (gpu.context_kinds_, gpu.context_bytes_edges_, gpu.trace_in_trees_) == (CONTEXT_KINDS, (), True)
    assert set(gpu.context_scale_) == {("elementwise", "forward")}
    cpus = devices_frame().with_columns(pl.lit("cpu").alias("kind"))
    cpu = OperatorLatencyModel(max_iter=40, min_samples_leaf=5).fit(ops, cpus)
    assert (cpu.context_kinds_, cpu.context_bytes_edges_, cpu.trace_in_trees_) == (
        CPU_CONTEXT_KINDS,
        CPU_CONTEXT_BYTES_EDGES,
        False,
    )
    assert set(cpu.context_scale_) == {("elementwise", "forward")} and "reduction" in cpu.context_kinds_
    assert cpu.context_scale_[("elementwise", "forward")] == pytest.approx(2.0, rel=0.15)  # factors only
    # stated parameters win over the device defaults
    plain = OperatorLatencyModel(max_iter=40, min_samples_leaf=5, context_kinds=(), trace_in_trees=True).fit(
        ops, cpus
    )
    assert plain.context_scale_ == {} and plain.overhead_ms_ != {}


def test_size_buckets_give_each_size_its_own_context_factor() -> None:
    ops = _one_device_with_trace(3.0, 1.2)
    model = OperatorLatencyModel(max_iter=40, min_samples_leaf=5, context_kinds=("elementwise",),
                                 context_bytes_edges=(2.0**20,), trace_in_trees=False).fit(ops, devices_frame())  # fmt: skip
    scale = model.context_scale_
    assert set(scale) == {("elementwise", "forward", 0), ("elementwise", "forward", 1)}
    assert scale[("elementwise", "forward", 0)] == pytest.approx(3.0, rel=0.15)
    assert scale[("elementwise", "forward", 1)] == pytest.approx(1.2, rel=0.15)
    plain = OperatorLatencyModel(max_iter=40, min_samples_leaf=5, context_kinds=()).fit(
        ops.filter(pl.col("model").is_null()), devices_frame()
    )
    table = op_table([{"name": "s", "op_kind": "elementwise", "op": "add", "dtype": "fp32", "rows": 64, "cols": 64,
                       "inputs": 1},
                      {"name": "l", "op_kind": "elementwise", "op": "add", "dtype": "fp32", "rows": 2048,
                       "cols": 1024, "inputs": 1}])  # fmt: skip
    ratio = model.predict_ops(table, _new_device()) / plain.predict_ops(table, _new_device())
    assert ratio == pytest.approx(
        [scale[("elementwise", "forward", 0)], scale[("elementwise", "forward", 1)]]
    )
    with pytest.raises(ValueError, match="strictly increasing"):
        OperatorLatencyModel(context_kinds=("elementwise",), context_bytes_edges=(4.0, 2.0)).fit(
            ops, devices_frame()
        )


def test_backward_gemm_is_the_two_gradient_gemms(fitted: OperatorLatencyModel) -> None:
    fw = op_table(
        [
            {
                "name": "fc",
                "op_kind": "linear",
                "op": "addmm",
                "dtype": "fp32",
                "batch": 1,
                "m": 512,
                "n": 256,
                "k": 1024,
            }
        ]
    )
    bw = fw.with_columns(pl.lit("backward").alias("phase"))
    d_in, d_w = backward_gemms(fw)
    assert d_in.select("m", "n", "k").row(0) == (512, 1024, 256) and d_w.select("m", "n", "k").row(0) == (
        1024,
        256,
        512,
    )
    dev = _new_device()
    as_fw = [
        fitted.predict_ops(
            op_table(f.with_columns(name=pl.lit("g"), op=pl.lit("mm"), dtype=pl.lit("fp32"))), dev
        )[0]
        for f in (d_in, d_w)
    ]
    assert fitted.predict_ops(bw, dev)[0] == pytest.approx(sum(as_fw))


def _backward_trace(device: str, ratios: dict[str, float], n: int = 12) -> pl.DataFrame:
    """Backward trace rows of ``device`` (``model`` set): each op at ``ratios[op]`` x its forward time."""
    spec = devices_frame().filter(pl.col("device_id") == device).row(0, named=True)
    rng = np.random.default_rng(5)
    parts = []
    for op, ratio in ratios.items():
        rows, cols = 2 ** rng.integers(8, 13, n), 2 ** rng.integers(6, 11, n)
        inputs = np.full(n, 2)
        parts.append(pl.DataFrame({
            "device_id": device, "op_kind": "elementwise", "op": op, "phase": "backward", "dtype": "fp32",
            "rows": rows, "cols": cols, "inputs": inputs, "model": "toy-train-8-1",
            "latency_ms": ratio * _vector_latency(rows, cols, inputs, spec["mem_bw_gbs"]),
        }))  # fmt: skip
    return pl.concat(parts, how="diagonal_relaxed")


def _backward_fit(mode: str, ratios: dict[str, float]) -> OperatorLatencyModel:
    ops = pl.concat(
        [_ops_rows("test/gpu-a", seed=21), _ops_rows("test/gpu-b", seed=22), _backward_trace("test/gpu-a", ratios)],
        how="diagonal_relaxed",
    )  # fmt: skip
    return OperatorLatencyModel(max_iter=40, min_samples_leaf=5, backward_vector=mode).fit(ops, devices_frame())


def test_backward_vector_rows_are_their_forward_prediction_times_a_fitted_ratio() -> None:
    """One device's backward trace rows (mul at 3x its forward time, add at 0.2x) set per-op ratios;
    an unseen device's backward row is its own forward prediction times that ratio."""
    model = _backward_fit("op_ratio", {"mul": 3.0, "add": 0.2})
    assert model.backward_ratio_[("elementwise", "mul")] == pytest.approx(3.0, rel=0.15)
    assert model.backward_ratio_[("elementwise", "add")] == pytest.approx(0.2, rel=0.15)
    # the kind's ratio pools both ops' rows (time-weighted), between the two
    assert 0.2 < model.backward_ratio_[("elementwise",)] < 3.0
    fw = op_table([{"name": f"{op}{i}", "op_kind": "elementwise", "op": op, "dtype": "fp32", "rows": 4096,
                    "cols": 512 * (i + 1), "inputs": 2} for op in ("mul", "add", "sub") for i in range(2)])  # fmt: skip
    bw = fw.with_columns(pl.lit("backward").alias("phase"))
    dev = _new_device()
    got, forward = model.predict_ops(bw, dev), model.predict_ops(fw, dev)
    expect = [model.backward_ratio_[("elementwise", "mul")]] * 2 + [model.backward_ratio_[("elementwise", "add")]] * 2
    # an op without backward rows (sub) takes its kind's ratio
    expect += [model.backward_ratio_[("elementwise",)]] * 2
    np.testing.assert_allclose(got, forward * np.array(expect), rtol=1e-9)
    # ... which follows the unseen device's roofline: 3x its memory-bound forward time
    truth = 3.0 * _vector_latency(np.full(2, 4096), np.array([512, 1024]), np.full(2, 2), float(dev["mem_bw_gbs"]))
    assert np.abs(got[:2] / truth - 1).max() < 0.25


def test_backward_recipe_sums_the_forward_kernels_autograd_runs() -> None:
    """``recipe``: tanh backward = a 1-input mul + a 1-input add on the same shape; add backward =
    one gradient fill per input at the device's bandwidth; mul backward = one mul per input."""
    model = _backward_fit("recipe", {"mul": 3.0})
    dev = _new_device()
    shape = {"dtype": "fp32", "rows": 4096, "cols": 1024}
    bw = op_table([{"name": "t", "op_kind": "activation", "op": "tanh", "inputs": 1, "phase": "backward", **shape},
                   {"name": "a", "op_kind": "elementwise", "op": "add", "inputs": 2, "phase": "backward", **shape},
                   {"name": "m", "op_kind": "elementwise", "op": "mul", "inputs": 2, "phase": "backward", **shape}])  # fmt: skip
    fw = op_table([{"name": "m", "op_kind": "elementwise", "op": "mul", "inputs": 2, **shape},
                   {"name": "m1", "op_kind": "elementwise", "op": "mul", "inputs": 1, **shape},
                   {"name": "a1", "op_kind": "elementwise", "op": "add", "inputs": 1, **shape}])  # fmt: skip
    got, kernels = model.predict_ops(bw, dev), model.predict_ops(fw, dev)
    assert np.isfinite(kernels).all()
    assert got[0] == pytest.approx(kernels[1] + kernels[2])
    assert got[1] == pytest.approx(2 * 4096 * 1024 * 4.0 / (float(dev["mem_bw_gbs"]) * 1e6))
    assert got[2] == pytest.approx(2 * kernels[0])  # one mul per input, not the fitted 3x
    # the default (kind_ratio) takes the recipe where no training device has backward rows
    plain = OperatorLatencyModel(max_iter=40, min_samples_leaf=5).fit(
        pl.concat([_ops_rows("test/gpu-a", seed=21), _ops_rows("test/gpu-b", seed=22)]), devices_frame()
    )
    assert plain.backward_vector == "kind_ratio" and plain.backward_ratio_ == {}
    got, kernels = plain.predict_ops(bw, dev), plain.predict_ops(fw, dev)
    assert got[2] == pytest.approx(2 * kernels[0]) and got[0] == pytest.approx(kernels[1] + kernels[2])


def test_backward_vector_modes_kind_ratio_trees_and_a_bad_mode() -> None:
    kind = _backward_fit("kind_ratio", {"mul": 3.0, "add": 0.2})
    assert set(kind.backward_ratio_) == {("elementwise",)}
    trees = _backward_fit("trees", {"mul": 3.0})
    assert trees.backward_ratio_ == {}
    bw = op_table([{"name": "m", "op_kind": "elementwise", "op": "mul", "dtype": "fp32", "rows": 4096,
                    "cols": 512, "inputs": 2, "phase": "backward"}])  # fmt: skip
    assert np.isfinite(trees.predict_ops(bw, _new_device())).all()  # the trace trees, as before
    with pytest.raises(ValueError, match="backward_vector must be one of"):
        _backward_fit("bytes", {"mul": 3.0})


def test_device_without_bandwidth_is_refused_by_name(fitted: OperatorLatencyModel) -> None:
    table = op_table(
        [{"name": "a", "op_kind": "elementwise", "op": "add", "dtype": "fp32", "rows": 8, "cols": 8}]
    )
    with pytest.raises(ValueError, match="mem_bw_gbs"):
        fitted.predict_ops(table, {"device_id": "my/gpu", "peak_fp32_gflops": 1000.0})
    with pytest.raises(ValueError, match="not fitted"):
        OperatorLatencyModel().predict_ops(table, _new_device())


@pytest.mark.slow  # MLflow run + registration: ~15 s of CPU
def test_hws_train_ops_on_a_cpu_stores_its_context_factors_with_the_model(store) -> None:  # noqa: ANN001
    """The pipeline `hws predict model` uses: a CPU's in-place rows in the store give the fitted model its factors."""
    from hwsurrogate.surrogates.models.ops import CPU_CONTEXT_BYTES_EDGES
    from hwsurrogate.surrogates.training.ops import train_ops_model

    ops = _one_device_with_trace(3.0, 3.0).with_row_index("_i").with_columns(
        pl.lit("test").alias("source"), pl.lit("tests").alias("origin"),
        pl.concat_str([pl.col("device_id"), pl.col("_i").cast(pl.String)], separator="#").alias("measurement_id"),
    ).drop("_i")  # fmt: skip
    store.replace("ops", ops, partition="test")
    store.replace("devices", devices_frame().with_columns(pl.lit("cpu").alias("kind")), partition="test")
    res = train_ops_model(store, devices=["test/gpu-a"], register=False, test_frac=0.1, max_iter=30)
    model = res.model
    assert model.context_bytes_edges_ == CPU_CONTEXT_BYTES_EDGES and not model.trace_in_trees_
    assert {k[:2] for k in model.context_scale_} == {("elementwise", "forward")}
    assert all(v == pytest.approx(3.0, rel=0.3) for v in model.context_scale_.values())


def test_train_register_and_load_the_ops_model(store, capsys) -> None:  # noqa: ANN001 - pytest fixtures
    from hwsurrogate.cli import main
    from hwsurrogate.surrogates.registry.ops import load_ops_model

    ops = pl.concat(
        [_ops_rows("test/gpu-a", 200, seed=1), _ops_rows("test/gpu-b", 200, seed=2)], how="diagonal_relaxed"
    )
    ops = ops.with_row_index("_i").with_columns(
        pl.lit("test").alias("source"), pl.lit("tests").alias("origin"),
        pl.concat_str([pl.col("device_id"), pl.col("_i").cast(pl.String)], separator="#").alias("measurement_id"),
    ).drop("_i")  # fmt: skip
    store.replace("ops", ops, partition="test")
    store.replace("gemm", gemm_rows("test/gpu-a", 150, seed=3, power=False), partition="test")
    store.replace("devices", devices_frame(), partition="test")
    try:
        main(["train", "ops", "--store", str(store.root), "--max-iter", "30"])
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr()
    out = capsys.readouterr().out
    assert "registered hws-ops v1: promoted to @champion" in out and "test_mape_elementwise" in out
    model = load_ops_model()
    table = op_table(
        [
            {
                "name": "a",
                "op_kind": "elementwise",
                "op": "add",
                "dtype": "fp32",
                "rows": 512,
                "cols": 512,
                "inputs": 2,
            }
        ]
    )
    assert np.isfinite(model.predict_ops(table, _new_device())).all()
    assert {"elementwise", "linear", "other"} <= model.covered_kinds
    # through MLflow's own pyfunc (schema enforcement): the integer columns travel as doubles
    import mlflow

    from hwsurrogate.surrogates.registry.ops import predict_ops_frame

    pyfunc = mlflow.pyfunc.load_model("models:/hws-ops/1")
    example = pyfunc.input_example
    assert example["m"].dtype == np.float64 and example["m"].isna().any()  # null by op kind
    served = pyfunc.predict(example)["pred_ms"].to_numpy()
    assert np.isfinite(served).all()
    assert served.tolist() == predict_ops_frame(model, pl.from_pandas(example)).tolist()
    example.loc[example["m"].notna().idxmax(), "m"] = 2.5
    with pytest.raises(ValueError, match="operator column 'm' must hold whole numbers, got 2.5"):
        predict_ops_frame(model, pl.from_pandas(example))


def test_fewshot_scales_are_time_weighted_per_group(fitted: OperatorLatencyModel) -> None:
    from hwsurrogate.surrogates.models.ops import apply_scales, fewshot_scales

    table = op_table([
        {"name": "fc", "op_kind": "linear", "op": "addmm", "dtype": "fp32", "batch": 1, "m": 256, "n": 256, "k": 256},
        {"name": "a", "op_kind": "elementwise", "op": "add", "dtype": "fp32", "rows": 1024, "cols": 512, "inputs": 2},
        {"name": "b", "op_kind": "elementwise", "op": "add", "dtype": "fp32", "rows": 64, "cols": 64, "inputs": 2},
    ])  # fmt: skip
    dev = _new_device()
    pred = fitted.predict_ops(table, dev)
    measured = pred * np.array([2.0, 1.5, 1.5])  # this GPU is slower than its descriptors say
    scales = fewshot_scales(fitted, table, measured, dev, min_rows=1)
    assert scales["gemm"] == pytest.approx(2.0) and scales["vector"] == pytest.approx(1.5)
    assert apply_scales(table, pred, scales) == pytest.approx(measured)
    odd = fewshot_scales(
        fitted, table, pred * np.array([2.0, 1.5, 30.0]), dev, min_rows=1
    )  # one odd vector row
    assert odd["vector"] == pytest.approx(np.median([1.5, 30.0])) and odd["all"] == pytest.approx(2.0)
    assert "vector" not in fewshot_scales(fitted, table, measured, dev)  # 2 vector rows < min_rows=3
    assert apply_scales(table, pred, {"all": 3.0, "gemm": 2.0}) == pytest.approx(
        pred * np.array([2.0, 1.0, 1.0])
    )
    with pytest.raises(ValueError, match="finite and > 0"):
        fewshot_scales(fitted, table, np.array([1.0, -1.0, 1.0]), dev)
    with pytest.raises(ValueError, match="3 operator rows"):
        fewshot_scales(fitted, table, np.array([1.0]), dev)


def _gemm_at(device: str, util: float, n: int, seed: int) -> pl.DataFrame:
    """GEMM rows of ``device`` whose compute-bound work runs at ``util`` of its FP32 peak."""
    from .gemm_factories import synthetic_runtime

    spec = devices_frame().filter(pl.col("device_id") == device).row(0, named=True)
    rng = np.random.default_rng(seed)
    m, n_, k = (2 ** rng.integers(6, 12, n) for _ in range(3))
    rt = synthetic_runtime(m, n_, k, 1, spec["peak_fp32_gflops"], spec["mem_bw_gbs"], util=util)
    return pl.DataFrame({"device_id": device, "op": "gemm", "m": m, "n": n_, "k": k, "batch": 1,
                         "dtype": "fp32", "runtime_ms": rt * np.exp(rng.normal(0, 0.02, n))})  # fmt: skip


def test_power_limits_read_the_column_or_the_descriptors_and_refuse_nonsense() -> None:
    from hwsurrogate.surrogates.features.ops import describe_device, power_limits

    devices = pl.DataFrame({"device_id": ["a", "b", "c"], "power_limit_w": [None, 300.0, None],
                            "descriptors": ['{"power_limit_w": 72}', '{"power_limit_w": 70}', None]})  # fmt: skip
    assert power_limits(devices) == {"a": 72.0, "b": 300.0, "c": pytest.approx(np.nan, nan_ok=True)}
    dev = {
        "device_id": "x",
        "peak_fp32_gflops": 1.0,
        "mem_bw_gbs": 1.0,
        "descriptors": '{"power_limit_w": 72}',
    }
    assert describe_device(dev)["power_limit_w"] == 72.0
    bare = {k: v for k, v in dev.items() if k != "descriptors"}
    assert np.isnan(describe_device({**bare, "power_limit_w": float("nan")})["power_limit_w"])
    # descriptors explicitly None (a devices row read back with a null column) states nothing
    assert describe_device({**bare, "descriptors": None})["peak_fp32_gflops"] == 1.0
    with pytest.raises(ValueError, match="'x'.*power_limit_w"):
        describe_device({**dev, "power_limit_w": -5.0})
    with pytest.raises(ValueError, match="'x'.*power_limit_w.*'lots'"):
        describe_device({**dev, "descriptors": '{"power_limit_w": "lots"}'})


def test_gemm_ceiling_is_monotone_in_the_power_limit_and_flat_outside_the_training_range() -> None:
    from hwsurrogate.surrogates.models.ops import GemmUtilisationCeiling

    devices = devices_frame().with_columns(
        pl.col("device_id").replace_strict({"test/gpu-a": 75.0, "test/gpu-b": 250.0}, default=None)
        .cast(pl.Float64).alias("power_limit_w")
    )  # fmt: skip
    g = pl.concat([_gemm_at("test/gpu-a", 0.3, 400, 1), _gemm_at("test/gpu-b", 0.8, 400, 2)])
    cap = GemmUtilisationCeiling(quantile=0.99).fit(g, devices)
    assert cap.device_utilisation_["test/gpu-a"] == pytest.approx(0.3, rel=0.1)
    assert cap.device_utilisation_["test/gpu-b"] == pytest.approx(0.8, rel=0.1)
    low, mid, high = cap.ceiling(40.0), cap.ceiling(120.0), cap.ceiling(700.0)
    assert low == pytest.approx(cap.ceiling(75.0)) and high == pytest.approx(cap.ceiling(250.0))
    assert low < mid < high
    assert np.isnan(cap.ceiling(float("nan")))
    # one power limit among the training devices: no curve, no ceiling
    one = GemmUtilisationCeiling().fit(g.filter(pl.col("device_id") == "test/gpu-b"), devices)
    assert np.isnan(one.ceiling(75.0))
    with pytest.raises(ValueError, match="quantile"):
        GemmUtilisationCeiling(quantile=0.0)


def test_power_limited_device_gets_no_more_than_its_ceiling_on_gemms() -> None:
    devices = devices_frame().with_columns(
        pl.col("device_id").replace_strict({"test/gpu-a": 75.0, "test/gpu-b": 250.0}, default=None)
        .cast(pl.Float64).alias("power_limit_w")
    )  # fmt: skip
    ops = pl.concat(
        [_ops_rows("test/gpu-a", seed=1), _ops_rows("test/gpu-b", seed=2)], how="diagonal_relaxed"
    )
    g = pl.concat([_gemm_at("test/gpu-a", 0.3, 400, 1), _gemm_at("test/gpu-b", 0.8, 400, 2)])
    kw = {"max_iter": 40, "min_samples_leaf": 5}
    capped = OperatorLatencyModel(**kw).fit(ops, devices, g)
    plain = OperatorLatencyModel(gemm_power_ceiling=None, **kw).fit(ops, devices, g)
    table = op_table([{"name": "fc", "op_kind": "linear", "op": "addmm", "dtype": "fp32", "batch": 1,
                       "m": 2048, "n": 2048, "k": 2048}])  # fmt: skip
    new = _new_device()
    compute_ms = 2.0 * 2048**3 / (float(new["peak_fp32_gflops"]) * 1e6)
    # a 70 W card with gpu-new's peak: held to the low-power ceiling (gpu-a's 0.3 of peak)
    limited = capped.predict_ops(table, {**new, "power_limit_w": 70.0})[0]
    assert compute_ms / limited == pytest.approx(0.3, rel=0.15)
    assert plain.predict_ops(table, new)[0] < 0.6 * limited
    # the pyfunc path (descriptor columns beside the operator rows) carries the power limit too
    from hwsurrogate.surrogates.registry.ops import predict_ops_frame

    described = {c: new[c] for c in ("cores", "peak_fp32_gflops", "mem_bw_gbs", "l2_mb", "clock_mhz")}
    frame = table.with_columns(device_id=pl.lit("test/gpu-new"), power_limit_w=pl.lit(70.0), **described)
    assert predict_ops_frame(capped, frame)[0] == pytest.approx(limited)
    # no stated limit, or a large one: the trees' prediction stands (up to the 250 W ceiling)
    assert capped.predict_ops(table, new)[0] == pytest.approx(plain.predict_ops(table, new)[0])
    assert compute_ms / capped.predict_ops(table, {**new, "power_limit_w": 700.0})[0] <= 0.8 * 1.1
    # a training device: its own rows set its GEMM speed, the ceiling is for unseen devices only
    b = devices.filter(pl.col("device_id") == "test/gpu-b").row(0, named=True)
    assert capped.predict_ops(table, {**b, "power_limit_w": 70.0})[0] == pytest.approx(
        plain.predict_ops(table, b)[0]
    )


def test_pools_and_depthwise_have_op_codes_of_their_own_and_old_codes_stay() -> None:
    from hwsurrogate.surrogates.features.ops import op_code

    old = op_code(pl.Series(["add", "conv2d", "embedding", "warp"]))
    assert old.tolist() == [0.0, 42.0, 41.0, -1.0]  # the v1 codes (NeuSight's rows keep their features)
    new = op_code(
        pl.Series(["max_pool2d", "adaptive_avg_pool2d", "avg_pool2d", "batch_norm", "depthwise_conv2d"])
    )
    assert (new >= 0).all() and len(set(new.tolist())) == 5 and not set(new.tolist()) & set(old.tolist())
