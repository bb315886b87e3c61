"""``hws tune TASK --ray ADDRESS``: a hyper-parameter search with Ray Tune, winner registered only if it beats the champion.

The search is :func:`hwsurrogate.surrogates.distributed.tune_task` over the task's
:func:`~hwsurrogate.surrogates.training.tuning.tune_setup`; this module parses the options and
prints the trials. Ray, MLflow and scikit-learn load inside the command.
"""

from __future__ import annotations

from pathlib import Path

import click

from hwsurrogate.cli.options import json_option, ray_option, store_option

__all__ = ["TASKS", "tune"]


#: the tunable tasks (tuning.TUNABLE's keys, which tests/surrogates/test_tuning.py checks; not
#: imported here so that `hws --help` loads no numpy)
TASKS = ("gemm", "latency", "fpga-hls4ml")


@click.command("tune")
@click.argument("task", type=click.Choice(TASKS))
@ray_option("The Ray cluster at ADDRESS runs the trials (HOST:PORT or auto; needs hwsurrogate[distributed]).")
@click.option("--space", default=None, metavar="JSON",
              help='Search space, parameter -> list of values; every combination is one trial. Defaults: gemm '
                   '{"max_iter": [100, 300], "learning_rate": [0.05, 0.1, 0.2]}; latency and fpga-hls4ml '
                   '{"max_iter": [150, 300], "learning_rate": [0.05, 0.1]}.')  # fmt: skip
@click.option("--source", "sources", multiple=True,
              help="gemm, fpga-hls4ml: train only on rows of this source (repeatable).")  # fmt: skip
@click.option("--device", "devices", multiple=True,
              help="gemm, latency: train only on rows of this device (repeatable).")  # fmt: skip
@click.option("--arch-space", type=click.Choice(["nb201", "fbnet", "ofa", "all"]), default="all", show_default=True,
              help="latency: the architecture space(s) to tune (as `hws train latency --space`).")  # fmt: skip
@click.option("--test-frac", default=None, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="gemm, fpga-hls4ml: fraction of shapes / models held out (default 0.2; the same split "
                   "`hws train` uses with this value and --seed). latency's split is fixed.")  # fmt: skip
@click.option("--seed", default=None, type=int, help="gemm, fpga-hls4ml: seed of the split and the trees (default 0).")
@click.option("--cpus-per-trial", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--no-register", is_flag=True, help="Search and log only; never register the winner.")
@store_option
@json_option
def tune(
    task: str, ray_address: str | None, space: str | None, sources: tuple[str, ...], devices: tuple[str, ...],
    arch_space: str, test_frac: float | None, seed: int | None, cpus_per_trial: float, no_register: bool,
    store_path: Path | str | None, as_json: bool,
) -> None:  # fmt: skip
    """Search TASK's hyper-parameters on a Ray cluster with Ray Tune.

    \b
    Every trial fits on the training split and is scored on the task's fixed held-out split in
    a Ray worker, by the score that decides promotion (gemm: runtime MAPE; latency: mean
    per-device Spearman; fpga-hls4ml: mean SMAPE of LUT, FF, DSP, BRAM, cycles, II); each is an
    MLflow run nested under one parent run (the task's experiment). The best configuration is
    trained and registered by `hws train TASK`'s code (and made champion) only when it beats the
    current champion on the rows held out from both; otherwise nothing is registered.

    \b
    Parameters a --space may name (a value out of range is refused, naming it):
      gemm         max_iter, learning_rate, max_train_rows (GemmTrainConfig)
      latency      max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization
                   (the per-device trees), max_train_archs; tree model only
      fpga-hls4ml  max_iter, learning_rate (FpgaTrainConfig)

    \b
      hws tune gemm --ray 127.0.0.1:6379
      hws tune gemm --ray auto --space '{"max_iter": [200, 400], "learning_rate": [0.05, 0.1]}'
      hws tune latency --ray auto --arch-space nb201 --space '{"max_leaf_nodes": [15, 31], "max_iter": [300]}'
      hws tune fpga-hls4ml --ray auto --space '{"max_iter": [150, 300, 600]}'
    """
    import json

    from hwsurrogate.cluster import connect
    from hwsurrogate.datasets.store import DatasetStore
    from hwsurrogate.surrogates.training.tuning import parse_space, tune_setup

    if not ray_address:
        raise click.UsageError("hws tune runs its trials on a Ray cluster: give --ray ADDRESS (e.g. auto)")
    try:
        grid = parse_space(task, space)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--space") from None
    try:
        setup = tune_setup(task, DatasetStore(store_path), sources=sources, devices=devices, arch_space=arch_space,
                           test_frac=test_frac, seed=seed)  # fmt: skip
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    connect(ray_address)
    from hwsurrogate.surrogates.distributed import tune_task

    res = tune_task(setup, grid, cpus_per_trial=cpus_per_trial, register=not no_register)
    if as_json:
        click.echo(json.dumps({
            "task": task, "parent_run_id": res.parent_run_id, "metric": res.metric, "trials": res.trials.to_dicts(),
            "best_config": res.best_config, "best_score": res.best_score, "champion_score": res.champion_score,
            "registered_version": res.version, "promoted": res.promoted, "reason": res.reason,
        }, indent=2, default=str))  # fmt: skip
        return
    click.echo(res.trials)
    click.echo(f"{res.trials.height} trial(s) under MLflow run {res.parent_run_id}; best {res.metric} "
               f"{res.best_score:.4g} with {res.best_config}; {res.reason}")  # fmt: skip
    if res.version is not None:
        from hwsurrogate.surrogates.api import MODEL_NAMES
        from hwsurrogate.surrogates.registry.tracking import promotion_reason

        how = "promoted to champion" if res.promoted else "not promoted"
        click.echo(
            f"registered version {res.version}, {how}: {promotion_reason(MODEL_NAMES[task], res.version)}"
        )
    elif no_register:
        click.echo("--no-register: nothing registered")
    else:
        click.echo("not registered: the best trial does not beat the champion on the rows held out from both")
