"""``hws train``: train a surrogate, log it to MLflow and register it."""

from __future__ import annotations

import click

from hwsurrogate.cli.lazy import LazyGroup

S = "hwsurrogate.surrogates"

TRAIN: dict[str, tuple[str, str]] = {
    "gemm": (f"{S}.training.gemm:train_gemm", "GEMM runtime/power/energy trees on the gemm table."),
    "fpga-hls4ml": (f"{S}.training.fpga:train_hls4ml", "hls4ml resource/latency model on the fpga table."),
    "fpga-hlsyn": (
        f"{S}.training.fpga:train_hlsyn",
        "HLSyn/HARP HLS-design model (cycles, resources, validity).",
    ),
    "latency": (
        f"{S}.training.latency:train_latency",
        "Per-device architecture latency predictor (tree and GNN).",
    ),
    "fewshot": ("hwsurrogate.cli.train:train_fewshot", "Meta-train the device-adaptive latency predictor."),
}


@click.group(cls=LazyGroup, lazy=TRAIN)
def train() -> None:
    """Train a surrogate on the store, log it to MLflow and register it.

    The registry alias `champion` moves to the new version only when it beats the current
    champion on the same test split.
    """


# --------------------------------------------------------------------------- hws train fewshot
# (few-shot latency; the logic is surrogates.training.fewshot.train_fewshot_model. Imports of the
# few-shot package stay inside the function: it loads numpy and polars, `hws train --help` must not)
@click.command("fewshot")
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
@click.option("--store", "store_root", default=None, help="Store root (default: $HWSURROGATE_STORE).")
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
    store_root: str | None,
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
        store_root=store_root,
        register=register,
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
        click.echo(
            f"registered {MODEL_NAME} v{result.version}"
            + (" (champion)" if result.promoted else " (champion unchanged)")
            + f"; exported to {result.export_dir}"
        )
