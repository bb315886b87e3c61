"""``hws train``: train a surrogate, log it to MLflow and register it.

Each command reads its options, calls the plain training function of
:mod:`hwsurrogate.surrogates.training` and prints the result. The training modules (polars,
scikit-learn, torch, MLflow) are imported inside the commands, so ``hws train --help`` stays fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hwsurrogate.cli.lazy import LazyGroup
from hwsurrogate.cli.options import data_version_option, store_option


@click.group(cls=LazyGroup)
def train() -> None:
    """Train a surrogate on the store, log it to MLflow and register it.

    The registry alias `champion` moves to the new version only when it beats the current
    champion on the same test split.
    """


def _store(data_version: str | None, store_path: Path | str | None = None) -> Any:
    """The ``--store`` (default: the configured one), pinned at ``--data-version`` when given (a bad spec is a usage error)."""
    from hwsurrogate.datasets.store import DatasetStore
    from hwsurrogate.errors import StoreError

    store = DatasetStore(store_path)
    if data_version is None:
        return store
    try:
        pinned = store.at(data_version)
    except StoreError as exc:
        raise click.BadParameter(str(exc), param_hint="--data-version") from None
    return pinned


def _registered(task: str, version: str | None, promoted: bool) -> None:
    """One line: the version registered, whether it became champion, and the recorded reason."""
    from hwsurrogate.surrogates.api import MODEL_NAMES
    from hwsurrogate.surrogates.registry.tracking import promotion_reason

    if version is not None:
        name = MODEL_NAMES.get(task, task)
        state = "promoted to @champion" if promoted else "not promoted"
        reason = promotion_reason(name, version)
        click.echo(f"registered {name} v{version}: {state}" + (f" ({reason})" if reason else ""))


# --------------------------------------------------------------------------- gemm


@train.command("gemm", short_help="GEMM runtime/power/energy trees on the gemm table.")
@click.option("--source", "sources", multiple=True, help="Only rows of this source (repeatable).")
@click.option("--device", "devices", multiple=True, help="Only this device_id (repeatable).")
@click.option(
    "--test-frac", default=0.2, show_default=True, help="Fraction of (m,n,k,batch) shapes held out."
)
@click.option(
    "--max-train-rows", default=150_000, show_default=True, help="Subsample training rows (0: all)."
)
@click.option("--max-iter", default=300, show_default=True, help="Boosting iterations.")
@click.option("--seed", default=0, show_default=True)
@click.option("--no-register", is_flag=True, help="Log the run but do not register the model.")
@data_version_option
@store_option
def gemm_cmd(
    sources: tuple[str, ...],
    devices: tuple[str, ...],
    test_frac: float,
    max_train_rows: int,
    max_iter: int,
    seed: int,
    no_register: bool,
    data_version: str | None,
    store_path: Path | str | None,
) -> None:
    """Train the GEMM runtime/power/energy surrogate on the store and register `hws-gemm`.

    Runtime is fitted as the log ratio to the roofline time from the devices table; power on
    rows whose power is trustworthy (power_trusted); energy = power x runtime. The held-out
    split is by (m, n, k, batch) shape, fixed by hashing, so champion comparisons are fair.
    """
    import numpy as np

    from hwsurrogate.surrogates.training.gemm import GemmTrainConfig, train_gemm_model

    config = GemmTrainConfig(
        sources=sources, devices=devices, test_frac=test_frac, seed=seed, max_train_rows=max_train_rows,
        max_iter=max_iter, register=not no_register,
    )  # fmt: skip
    t0 = time.perf_counter()
    res = train_gemm_model(store=_store(data_version, store_path), config=config)
    click.echo(f"run {res.run_id}  model {res.model_uri}")
    for k in ("test_runtime_ms_mape", "test_runtime_ms_r2", "test_power_w_median_ape", "test_power_w_r2"):
        if k in res.metrics and np.isfinite(res.metrics[k]):
            click.echo(f"  {k:28s} {res.metrics[k]:.4g}")
    _registered("gemm", res.version, res.promoted)
    click.echo(f"wall {time.perf_counter() - t0:.1f} s")


# --------------------------------------------------------------------------- fpga


def _fpga_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options both FPGA commands take."""
    for opt in reversed(
        [
            click.option("--source", "sources", multiple=True, help="Only rows of this source (repeatable)."),
            click.option(
                "--max-iter", default=300, show_default=True, help="Boosting iterations per target."
            ),
            click.option("--seed", default=0, show_default=True),
            click.option("--no-register", is_flag=True, help="Log the run but do not register the model."),
            data_version_option,
            store_option,
        ]
    ):
        f = opt(f)
    return f


def _echo_fpga(res: Any, task: str, t0: float) -> None:
    click.echo(f"run {res.run_id}  model {res.model_uri}")
    for k, v in sorted(res.metrics.items()):
        if k.startswith("test_") and k.endswith(("_smape", "_r2")):
            click.echo(f"  {k:28s} {v:.4g}")
    _registered(task, res.version, res.promoted)
    click.echo(f"wall {time.perf_counter() - t0:.1f} s")


@train.command("fpga-hls4ml", short_help="hls4ml resource/latency model on the fpga table.")
@_fpga_options
@click.option(
    "--stage", type=click.Choice(["hls_estimate", "post_synth"]), default="hls_estimate", show_default=True
)
def fpga_hls4ml_cmd(
    sources: tuple[str, ...],
    max_iter: int,
    seed: int,
    no_register: bool,
    stage: str,
    data_version: str | None,
    store_path: Path | str | None,
) -> None:
    """Train the hls4ml resource/latency model (LUT, FF, DSP, BRAM, cycles, II) and register it.

    Inputs are the model's layer list (JSON) plus reuse factor, precision, strategy, io_type and
    part; 20 % of the models (by name) are held out. HLS estimates and post-synthesis numbers
    are different targets: pick one with --stage.
    """
    from hwsurrogate.surrogates.training.fpga import FpgaTrainConfig, train_hls4ml_model

    t0 = time.perf_counter()
    cfg = FpgaTrainConfig(
        sources=sources, stage=stage, max_iter=max_iter, seed=seed, register=not no_register
    )
    _echo_fpga(train_hls4ml_model(store=_store(data_version, store_path), config=cfg), "fpga-hls4ml", t0)


@train.command("fpga-hlsyn", short_help="HLSyn/HARP HLS-design model (cycles, resources, validity).")
@_fpga_options
@click.option("--model", type=click.Choice(["tree", "gnn"]), default="tree", show_default=True,
              help="tree: gradient boosting with loop-nest features; gnn: program-graph GNN (no validity output).")  # fmt: skip
@click.option("--gnn-seconds", default=200.0, show_default=True, help="GNN: wall-clock cap on training.")
def fpga_hlsyn_cmd(
    sources: tuple[str, ...],
    max_iter: int,
    seed: int,
    no_register: bool,
    model: str,
    gnn_seconds: float,
    data_version: str | None,
    store_path: Path | str | None,
) -> None:
    """Train the HLSyn/HARP design model (cycles, LUT/FF/DSP/BRAM, validity) and register it.

    Inputs: kernel name, pragma values (JSON) and tool; kernel identity comes from program-graph
    statistics of the `program_graphs` table, baked into the model. HLSyn's test kernels are held out.
    """
    from hwsurrogate.surrogates.training.fpga import FpgaTrainConfig, train_hlsyn_model

    t0 = time.perf_counter()
    cfg = FpgaTrainConfig(sources=sources, max_iter=max_iter, seed=seed, register=not no_register, model=model,
                          gnn_seconds=gnn_seconds)  # fmt: skip
    _echo_fpga(train_hlsyn_model(store=_store(data_version, store_path), config=cfg), "fpga-hlsyn", t0)


# --------------------------------------------------------------------------- latency


@train.command("latency", short_help="Per-device architecture latency predictor (tree and GNN).")
@click.option(
    "--device", "devices", multiple=True, help="Device id to train for (repeat). Default: every device."
)
@click.option(
    "--space",
    type=click.Choice(["nb201", "fbnet", "ofa", "all"]),
    default="all",
    show_default=True,
    help="Architecture space(s) to train.",
)
@click.option(
    "--model",
    type=click.Choice(["tree", "gnn"]),
    default="tree",
    show_default=True,
    help="tree: boosted trees per device; gnn: one GNN per space with a head per device.",
)
@click.option(
    "--max-train-archs",
    type=int,
    default=4000,
    show_default=True,
    help="Cap on training architectures per space (lowest arch indices first).",
)
@click.option(
    "--gnn-seconds",
    type=float,
    default=240.0,
    show_default=True,
    help="Wall-clock cap on each space's GNN training.",
)
@click.option("--no-register", is_flag=True, help="Log the run but do not register/promote the model.")
@data_version_option
@store_option
def latency_cmd(
    devices: tuple[str, ...],
    space: str,
    model: str,
    max_train_archs: int,
    gnn_seconds: float,
    no_register: bool,
    data_version: str | None,
    store_path: Path | str | None,
) -> None:
    """Train the per-device latency model on the store and register it as `hws-latency`.

    \b
    The model answers device_id, space, arch_key -> latency_ms for every (device, space)
    it was trained on. Test split: HELP's test indices (fixed), so a new version becomes
    `champion` only if its mean per-device Spearman on that split beats the current one.
    Examples:
      hws train latency                                # every device, all spaces, trees
      hws train latency --space nb201 --device help/pixel2 --model gnn
    """
    from hwsurrogate.errors import TrainingDataError
    from hwsurrogate.surrogates.training.latency import latency_training_frame, train_latency_model

    try:
        store = _store(data_version, store_path)
        frame = latency_training_frame(store, space)
        result = train_latency_model(
            frame,
            model=model,  # type: ignore[arg-type]
            devices=list(devices) or None,
            max_train_archs=max_train_archs,
            gnn_seconds=gnn_seconds,
            register=not no_register,
            data_versions=dict(store.read_versions),
            store=store,
        )
    except TrainingDataError as exc:
        raise click.ClickException(str(exc)) from None
    for k, v in sorted(result.metrics.items()):
        click.echo(f"{k}: {v:.4f}")
    click.echo(f"run {result.run_id}; model {result.model_uri}")
    _registered("latency", result.version, result.promoted)


# --------------------------------------------------------------------------- hws train fewshot
# (few-shot latency; the logic is surrogates.training.fewshot.train_fewshot_model. Imports of the
# few-shot package stay inside the function: it loads numpy and polars, `hws train --help` must not)
@train.command("fewshot")
@click.option(
    "--spaces",
    default=None,
    help="Comma-separated NAS spaces to meta-train (each needs >= 2 source devices in the store). "
    "Default: every space the few-shot model supports.",
)
@click.option(
    "--sources",
    type=click.Choice(["all", "help-train"]),
    default="all",
    show_default=True,
    help="all: every store device except HELP's meta-valid devices (held out to pick the champion); "
    "help-train: HELP's meta-train devices only (the paper protocol).",
)
@click.option(
    "--prior",
    type=click.Choice(["gaussian", "mixture", "both"]),
    default="gaussian",
    show_default=True,
    help="Prior over a new device's weights: one Gaussian fitted to the source devices' weights, a "
    "mixture centred on the individual source devices, or both averaged by marginal likelihood.",
)
@click.option(
    "--no-device-latencies", is_flag=True, help="Ablation: drop source-device latencies as arch features."
)
@click.option(
    "--no-arch-features", is_flag=True, help="Ablation: drop features.nas.arch_vectors as arch features."
)
@click.option(
    "--gnn",
    "gnn_spaces",
    default=None,
    help="Comma-separated spaces whose features include the meta-trained device-conditioned GNN "
    "embedding (surrogates/fewshot/meta_gnn.py), or 'none'. Default: FewShotConfig.gnn (the spaces "
    "where it was validated).",
)
@click.option(
    "--splits",
    "splits_path",
    default=None,
    help="splits.json (default: $HWSURROGATE_DATA_DIR/latency/splits.json).",
)
@store_option
@data_version_option
@click.option(
    "--register/--no-register",
    default=True,
    show_default=True,
    help="Register in MLflow as hws-fewshot-latency.",
)
def train_fewshot(
    spaces: str | None,
    sources: str,
    prior: str,
    no_device_latencies: bool,
    no_arch_features: bool,
    gnn_spaces: str | None,
    splits_path: str | None,
    store_path: Path | str | None,
    data_version: str | None,
    register: bool,
) -> None:
    """Meta-train the device-adaptive latency predictor on the store's latency table.

    Learns, per NAS space, a prior over device weights from the source devices (leave-one-
    device-out episodes pick its strength), logs everything to MLflow (experiment
    `fewshot-latency`), registers `hws-fewshot-latency` and exports the model under
    <store>/models/fewshot-latency/ for `hws adapt`. The alias `champion` moves only when the
    new version scores a higher promotion metric: the fewshot-help benchmark's Spearman (HELP
    protocol, 20 and 10 measurements, 5 support draws, averaged per space) on validation
    devices held out of meta-training (HELP's meta-valid devices plus two LatBench
    Snapdragon 855 devices for NB201), never on HELP's meta-test devices.
    """
    from hwsurrogate.surrogates.fewshot import FEWSHOT_SPACES, MODEL_NAME, FewShotConfig
    from hwsurrogate.surrogates.training.fewshot import train_fewshot_model

    def space_list(text: str, option: str) -> tuple[str, ...]:
        names = tuple(s.strip() for s in text.split(",") if s.strip())
        if option == "--gnn":
            names = tuple(s for s in names if s != "none")
        if bad := [s for s in names if s not in FEWSHOT_SPACES]:
            raise click.BadParameter(
                f"unknown space(s) {bad}; choose from {list(FEWSHOT_SPACES)}", param_hint=option
            )
        return names

    config = FewShotConfig(
        prior=prior,  # type: ignore[arg-type]
        use_device_latencies=not no_device_latencies,
        use_arch_features=not no_arch_features,
        gnn=FewShotConfig().gnn if gnn_spaces is None else space_list(gnn_spaces, "--gnn"),
    )
    result = train_fewshot_model(
        FEWSHOT_SPACES if spaces is None else space_list(spaces, "--spaces"),
        config=config,
        sources=sources,  # type: ignore[arg-type]
        splits_path=splits_path,
        store_root=store_path,
        register=register,
        data_version=data_version,
    )
    model = result.model
    click.echo(f"meta-trained {sorted(model.spaces_)} in {result.fit_seconds:.1f} s (run {result.run_id})")
    for s, sm in model.spaces_.items():
        click.echo(
            f"  {s}: {len(sm.source_devices)} source devices, {len(sm.arch_keys)} archs, "
            f"{sm.n_features} features, leave-one-device-out Spearman "
            f"{sm.meta_scores['loo_spearman_mean']:.3f} (20 measurements)"
        )
    if result.validation_score is not None:
        held = {s: len(d) for s, d in result.validation_devices.items()}
        click.echo(
            f"  promotion metric (held-out validation devices {held}, HELP protocol, "
            f"20 and 10 measurements): mean Spearman {result.validation_score:.3f}"
        )
    if result.version is not None:
        _registered(MODEL_NAME, result.version, result.promoted)
        click.echo(f"exported to {result.export_dir}")


# --------------------------------------------------------------------------- ops


@train.command("ops", short_help="Operator latency surrogates (whole-model prediction) on the ops table.")
@click.option(
    "--device", "devices", multiple=True, help="Only this device_id (repeatable; default: every device)."
)
@click.option(
    "--trace-model",
    "trace_models",
    multiple=True,
    help="Only trace rows of this model (file stem before the first '-', e.g. bert_large; repeatable; "
    "default: every traced model).",
)
@click.option("--test-frac", default=0.2, show_default=True, help="Fraction of operator shapes held out.")
@click.option("--max-iter", default=300, show_default=True, help="Boosting iterations per tree group.")
@click.option("--seed", default=0, show_default=True)
@click.option("--no-register", is_flag=True, help="Log the run but do not register the model.")
@store_option
def ops_cmd(
    devices: tuple[str, ...],
    trace_models: tuple[str, ...],
    test_frac: float,
    max_iter: int,
    seed: int,
    no_register: bool,
    store_path: Path | str | None,
) -> None:
    """Train the operator latency surrogates on the store and register `hws-ops`.

    Fits on whatever `ops` rows (operator micro-benchmarks: `hws data import neusight_ops`,
    traces: `neusight_traces`, this machine: `hws collect ops`) and `gemm` rows the store holds
    for the chosen devices. Each op kind's latency is fitted as the ratio to the roofline of the
    device (peak FP32 GFLOP/s, memory bandwidth), so a device never trained on is predicted from
    its descriptors. `hws predict model` and the whole-model benchmarks use the result.
    """
    from hwsurrogate.datasets.store import DatasetStore
    from hwsurrogate.surrogates.training.ops import train_ops_model

    t0 = time.perf_counter()
    res = train_ops_model(
        DatasetStore(store_path),
        devices=list(devices) or None,
        trace_models=list(trace_models) or None,
        register=not no_register,
        test_frac=test_frac,
        seed=seed,
        max_iter=max_iter,
    )
    click.echo(f"run {res.run_id}  model {res.model_uri}")
    for k, v in sorted(res.metrics.items()):
        click.echo(f"  {k:28s} {v:.4g}")
    _registered("hws-ops", res.version, res.promoted)
    click.echo(f"wall {time.perf_counter() - t0:.1f} s")
