"""Meta-training the few-shot latency model: :func:`train_fewshot_model` (``hws train fewshot``).

Reads the store's ``latency`` table, meta-trains :class:`~hwsurrogate.surrogates.fewshot.
FewShotLatencyRegressor` on the source devices, logs everything to MLflow (experiment
``fewshot-latency``), registers ``hws-fewshot-latency`` and exports the model under
``<store>/models/fewshot-latency/`` for ``hws adapt`` (which reads that export, never MLflow).

The alias ``champion`` moves only when the new version scores a higher promotion metric: the
fewshot-help benchmark's Spearman (HELP protocol, 20 and 10 measurements, 5 support draws,
averaged per space) on validation devices held out of meta-training (HELP's meta-valid devices
plus two LatBench Snapdragon 855 devices for NB201), never on HELP's meta-test devices.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from hwsurrogate.errors import TrainingDataError
from hwsurrogate.surrogates.fewshot import (
    FEWSHOT_SPACES,
    MODEL_NAME,
    FewShotConfig,
    FewShotError,
    FewShotLatencyRegressor,
    evaluate_help_protocol,
    read_splits,
)
from hwsurrogate.surrogates.registry.adapted import AdaptedDeviceRegistry

EXPERIMENT = "fewshot-latency"
TRAIN_COLUMNS = ("device_id", "space", "arch_index", "arch_key", "latency_ms")
#: validation devices held out of meta-training besides HELP's meta-valid devices, so that the
#: promotion metric also covers mobile CPUs/GPUs (HELP's NB201 meta-valid devices are desktop
#: GPUs and one Xeon). None of them is a HELP meta-test device.
EXTRA_VALIDATION: dict[str, tuple[str, ...]] = {
    "nb201": (
        "latbench/mobile_cpu_snapdragon_855_kryo_485_int8",
        "latbench/mobile_gpu_snapdragon_855_adreno_640_int8",
    ),
}
#: (label, use the 10 HELP reference archs, random archs): the fewshot-help benchmark's settings
VALIDATION_SETTINGS: tuple[tuple[str, bool, int], ...] = (("20", True, 10), ("10", True, 0))
VALIDATION_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
SourceChoice = Literal["all", "help-train"]


@dataclass
class FewShotTrainingResult:
    """What :func:`train_fewshot_model` did: the model, its MLflow run and its registration."""

    model: FewShotLatencyRegressor
    run_id: str
    fit_seconds: float
    #: the promotion metric on held-out validation devices (None: no space had one)
    validation_score: float | None
    #: validation devices per meta-trained space (HELP meta-valid + EXTRA_VALIDATION found in the store)
    validation_devices: dict[str, list[str]] = field(default_factory=dict)
    version: str | None = None  # registered version (None with register=False)
    promoted: bool = False  # the new version became the champion
    export_dir: Path | None = None  # where `hws adapt` reads the model from (register=True)


def train_fewshot_model(
    spaces: Sequence[str] = FEWSHOT_SPACES,
    *,
    config: FewShotConfig | None = None,
    sources: SourceChoice = "all",
    splits_path: str | os.PathLike[str] | None = None,
    store_root: str | os.PathLike[str] | None = None,
    register: bool = True,
    data_version: str | None = None,
) -> FewShotTrainingResult:
    """Meta-train the few-shot latency model on the store, log it to MLflow and register it.

    ``spaces``: NAS spaces to meta-train (each needs >= 2 source devices in the store).
    ``sources``: ``"all"`` (every store device except the validation devices, which pick the
    champion) or ``"help-train"`` (HELP's meta-train devices only, the paper protocol).
    ``splits_path``: HELP's ``splits.json`` (default ``$HWSURROGATE_DATA_DIR/latency/splits.json``;
    without one no device is held out and promotion uses the leave-one-device-out meta score).
    With ``register`` the run is registered as ``hws-fewshot-latency`` (champion only if it
    scores higher) and exported for ``hws adapt``. ``data_version`` (``'latency=3,_commits=1'``, as
    recorded in a run's ``data_versions`` param) reads the store as it was then.
    """
    from hwsurrogate.progress import make_progress
    from hwsurrogate.surrogates.registry.tracking import (
        check_training_frame,
        dataset_source,
        log_data_versions,
        log_training_dataset,
        start_run,
    )

    config = config or FewShotConfig()
    space_list = list(spaces)
    if bad := [s for s in space_list if s not in FEWSHOT_SPACES]:
        raise FewShotError(f"unknown space(s) {bad}; choose from {list(FEWSHOT_SPACES)}")
    frame, data_versions = _read_training_frame(store_root, space_list, data_version)
    check_training_frame(frame, ["latency_ms"], what="few-shot latency", min_rows=100, required=TRAIN_COLUMNS)
    src, val = _sources_and_validation(frame, space_list, splits_path, sources)
    src = {s: d for s, d in src.items() if len(d) >= 2}
    if not src:
        raise TrainingDataError(
            "no space has >= 2 source devices in the store; run `hws data import help` (and latbench) first"
        )
    t0 = time.perf_counter()
    with start_run(EXPERIMENT, run_name=f"fewshot-{sources}-{config.prior}", task="latency-fewshot") as run:
        import mlflow

        mlflow.log_params({f"cfg_{k}": v for k, v in asdict(config).items()})
        mlflow.log_params({"sources": sources, "spaces": ",".join(src)})
        log_data_versions(data_versions, store=store_root)
        mlflow.log_dict(asdict(config), "fewshot_config.json")
        mlflow.log_dict({s: d for s, d in src.items()}, "source_devices.json")
        pairs = pl.DataFrame(
            [(s, d) for s, devs in src.items() for d in devs], schema=["space", "device_id"], orient="row"
        )
        train_rows = frame.join(pairs, on=["space", "device_id"], how="semi")
        log_training_dataset(
            train_rows,
            name="latency-fewshot",
            source=dataset_source(store_root, "latency"),
            targets="latency_ms",
        )
        model = FewShotLatencyRegressor(config)
        with make_progress() as progress:
            task = progress.add_task("meta-training spaces", total=len(src))
            model.fit(frame, devices=src, spaces=list(src), progress=lambda: progress.advance(task))
        fit_s = time.perf_counter() - t0
        mlflow.log_metric("meta_train_s", fit_s)
        for s, sm in model.spaces_.items():
            mlflow.log_metrics({f"{s}_{k}": v for k, v in sm.meta_scores.items() if "/" not in k})
            mlflow.log_metrics(
                {f"{s}_tau": sm.tau, f"{s}_noise": sm.noise, f"{s}_n_sources": len(sm.source_devices)}
            )
        val_score = _validation_score(model, frame, val, log=True)
        if val_score is not None:
            mlflow.log_metric("valid_promotion_metric", val_score)
        with tempfile.TemporaryDirectory() as tmp:
            npz = Path(tmp) / "fewshot.npz"
            model.save(npz)
            from hwsurrogate.surrogates.registry.artifact_model import log_artifact_model
            from hwsurrogate.surrogates.registry.fewshot_pyfunc import FewShotPyfunc

            info = log_artifact_model(
                FewShotPyfunc(), artifacts={"fewshot": str(npz)}, signature=_pyfunc_signature(),
                input_example=_input_example(model, frame, src, val),
            )  # fmt: skip
    result = FewShotTrainingResult(
        model=model,
        run_id=run.info.run_id,
        fit_seconds=fit_s,
        validation_score=val_score,
        validation_devices={s: d for s, (d, _) in val.items() if s in model.spaces_},
    )
    if not register:
        return result
    from hwsurrogate.surrogates.registry.tracking import register_and_promote

    def evaluate(uri: str, keys: frozenset[str] | None) -> float:
        import mlflow

        from hwsurrogate.surrogates.registry.artifact_model import project_model

        other = project_model(mlflow.pyfunc.load_model(uri)).model
        part = val
        if keys is not None:  # keys: "space|device" of validation devices held out from both models
            part = {s: ([d for d in devs if f"{s}|{d}" in keys], n) for s, (devs, n) in val.items()}
            part = {s: v for s, v in part.items() if v[0]}
        score = _validation_score(other, frame, part, log=False) if part else None
        if score is None:
            return float(np.mean([sm.meta_scores["loo_spearman_mean"] for sm in other.spaces_.values()]))
        return score

    held_out = [f"{s}|{d}" for s, (devs, _) in val.items() if s in model.spaces_
                for d in devs if d not in set(model.spaces_[s].source_devices)]  # fmt: skip
    spaces = sorted(model.spaces_)
    version, promoted = register_and_promote(
        info.model_uri,
        MODEL_NAME,
        evaluate=evaluate,
        holdout_keys=held_out,
        scope={"spaces": spaces},
        description=(
            f"Few-shot latency predictor (meta-trained prior + closed-form adaptation) for "
            f"{', '.join(spaces)}. Promotion metric: mean Spearman on {len(held_out)} held-out "
            f"validation device(s) under HELP's protocol (score {val_score if val_score is not None else 'n/a'})."
        ),
        higher_is_better=True,
        metric_name="valid_promotion_metric",
    )
    registry = AdaptedDeviceRegistry(store_root)
    registry.export_model(model, version, champion=promoted)
    if not promoted:  # keep this store's champion pointer in step with the registry's alias
        from mlflow import MlflowClient

        from hwsurrogate.surrogates.registry.tracking import CHAMPION

        registry.set_champion(str(MlflowClient().get_model_version_by_alias(MODEL_NAME, CHAMPION).version))
    result.version, result.promoted, result.export_dir = str(version), promoted, registry.model_dir
    return result


def _read_training_frame(
    store_root: str | os.PathLike[str] | None, spaces: list[str], data_version: str | None = None
) -> tuple[pl.DataFrame, dict[str, int]]:
    """The latency rows of ``spaces`` (at ``data_version`` when given) and the table versions read."""
    from hwsurrogate.datasets.store import DatasetStore

    store = DatasetStore(store_root)
    if data_version is not None:
        store = store.at(data_version)
    frame = store.scan("latency").filter(pl.col("space").is_in(spaces)).select(TRAIN_COLUMNS).collect()
    return frame, dict(store.read_versions)


def _sources_and_validation(
    frame: pl.DataFrame, spaces: list[str], splits_path: str | os.PathLike[str] | None, sources: str
) -> tuple[dict[str, list[str]], dict[str, tuple[list[str], int]]]:
    """Source devices per space, and the held-out validation devices + pool size per space.

    Validation devices: HELP's meta-valid devices plus :data:`EXTRA_VALIDATION`, those present in
    the frame; they are never source devices. Without a HELP split the space has no validation
    devices (promotion then falls back to the leave-one-device-out meta score).
    """
    try:
        splits = read_splits(splits_path)
    except FileNotFoundError:
        splits = {}
    present = {s: sorted(frame.filter(pl.col("space") == s)["device_id"].unique().to_list()) for s in spaces}
    src: dict[str, list[str]] = {}
    val: dict[str, tuple[list[str], int]] = {}
    for s in spaces:
        split = splits.get(f"help-{s}")
        wanted = [*(split.valid if split else ()), *(EXTRA_VALIDATION.get(s, ()) if split else ())]
        valid = [d for d in wanted if d in present[s]]
        if sources == "help-train" and split is not None:
            src[s] = [d for d in split.train if d in present[s] and d not in valid]
        else:
            src[s] = [d for d in present[s] if d not in valid]
        if valid and split is not None:
            val[s] = (valid, split.n_pool)
    return src, val


def _pyfunc_signature() -> object:
    """Inputs device_id/space/arch_key and optional latency_ms (measurements to adapt on in the
    call), output latency_ms, optional param ``store`` (store root of adapted devices)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec("string", "device_id"), ColSpec("string", "space"), ColSpec("string", "arch_key"),
                     ColSpec("double", "latency_ms", required=False)])  # fmt: skip
    return ModelSignature(
        inputs=inputs, outputs=Schema([ColSpec("double", "latency_ms")]), params=ParamSchema([ParamSpec("store", "string", "")])
    )


def _input_example(
    model: FewShotLatencyRegressor, frame: pl.DataFrame, src: dict[str, list[str]], val: dict[str, tuple[list[str], int]]
) -> Any:
    """A stateless adaptation for MLflow's input example: the measured (median) latencies of 10
    architectures on a device held out of meta-training (a source device where a space has none),
    plus 3 queries (``latency_ms`` null) on the same device."""
    import pandas as pd

    space = next(iter(model.spaces_))
    device = (val.get(space, ([], 0))[0] or src[space])[0]
    n = max(10, model.config.min_measurements)
    rows = (
        frame.filter((pl.col("space") == space) & (pl.col("device_id") == device))
        .group_by("arch_key").agg(pl.col("latency_ms").median()).sort("arch_key").head(n + 3)
    )  # fmt: skip
    example = rows.select(
        pl.lit(device).alias("device_id"), pl.lit(space).alias("space"), "arch_key",
        pl.when(pl.int_range(pl.len()) < n).then(pl.col("latency_ms")).alias("latency_ms"),
    )  # fmt: skip
    return pd.DataFrame(example.to_dict(as_series=False))


def _validation_score(
    model: FewShotLatencyRegressor,
    frame: pl.DataFrame,
    val: dict[str, tuple[list[str], int]],
    *,
    log: bool,
) -> float | None:
    """The promotion metric: the fewshot-help benchmark's metric on held-out validation devices.

    Per space: the mean Spearman over its validation devices under HELP's protocol (test set:
    the 1000 archs after the support pool, trimmed to the 10th-90th latency percentile), for
    each of :data:`VALIDATION_SETTINGS` (20 = 10 reference + 10 random archs, 10 = the
    reference archs), averaged over :data:`VALIDATION_SEEDS` support draws; the settings are
    averaged, then the spaces (each space weighs the same, whatever its device count).
    Validation devices the model was meta-trained on are skipped (they would score it on its
    own training data); ``None`` when no space has a validation device left.
    """
    per_space: list[float] = []
    for space, (devices, n_pool) in val.items():
        if space not in model.spaces_:
            continue
        held_out = [d for d in devices if d not in set(model.spaces_[space].source_devices)]
        if not held_out:
            continue
        setting_scores = []
        for label, use_refs, n_random in VALIDATION_SETTINGS:
            res = evaluate_help_protocol(
                model,
                frame,
                space,
                held_out,
                n_pool=n_pool,
                seeds=VALIDATION_SEEDS,
                n_random=n_random,
                use_references=use_refs,
            )
            pooled = res.pop("_pooled")
            setting_scores.append(float(np.mean([r["spearman"] for r in res.values()])))
            if log:
                import mlflow

                for dev, r in res.items():
                    name = f"valid_{space}_{label}_{dev.replace('/', '_')}"
                    mlflow.log_metrics({f"{name}_{k}": v for k, v in r.items()})
                mlflow.log_metric(f"valid_{space}_{label}_spearman_mean", setting_scores[-1])
                if label == VALIDATION_SETTINGS[0][0]:
                    from hwsurrogate.surrogates.registry.tracking import log_regression_report

                    log_regression_report(
                        np.asarray(pooled["y"]),
                        np.asarray(pooled["pred"]),
                        split=f"valid_{space}",
                        target="latency_ms",
                    )
        per_space.append(float(np.mean(setting_scores)))
    return float(np.mean(per_space)) if per_space else None
