"""``hws tune TASK --ray ADDRESS``: a hyper-parameter search with Ray Tune, winner registered only if it beats the champion.

The search is :func:`hwsurrogate.surrogates.distributed.tune_task`; this module parses the
options and prints the trials. Ray, MLflow and scikit-learn load inside the command.
"""

from __future__ import annotations

from pathlib import Path

import click

from hwsurrogate.cli.options import json_option, ray_option, store_option

__all__ = ["tune"]


@click.command("tune")
@click.argument("task", type=click.Choice(["gemm"]))
@ray_option("The Ray cluster at ADDRESS runs the trials (HOST:PORT or auto; needs hwsurrogate[distributed]).")
@click.option("--space", default=None, metavar="JSON",
              help='Search space, parameter -> list of values; every combination is one trial. Default for '
                   'gemm: {"max_iter": [100, 300], "learning_rate": [0.05, 0.1, 0.2]}.')  # fmt: skip
@click.option("--source", "sources", multiple=True, help="Train only on rows of this source (repeatable).")
@click.option("--device", "devices", multiple=True, help="Train only on rows of this device (repeatable).")
@click.option("--test-frac", default=0.2, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Fraction of shapes held out (the same split `hws train` uses with this value and --seed).")  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--cpus-per-trial", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--no-register", is_flag=True, help="Search and log only; never register the winner.")
@store_option
@json_option
def tune(
    task: str, ray_address: str | None, space: str | None, sources: tuple[str, ...], devices: tuple[str, ...],
    test_frac: float, seed: int, cpus_per_trial: float, no_register: bool, store_path: Path | None, as_json: bool,
) -> None:  # fmt: skip
    """Search TASK's hyper-parameters on a Ray cluster with Ray Tune.

    \b
    Every trial fits on the training split and scores on the fixed held-out split in a Ray
    worker; each is an MLflow run nested under one parent run (experiment TASK). The best
    configuration is trained and registered (and made champion) only when it beats the
    current champion on the rows held out from both; otherwise nothing is registered.

    \b
      hws tune gemm --ray 127.0.0.1:6379
      hws tune gemm --ray auto --space '{"max_iter": [200, 400], "learning_rate": [0.05, 0.1]}'
    """
    import json

    from hwsurrogate.cluster import connect
    from hwsurrogate.datasets.store import DatasetStore
    from hwsurrogate.surrogates.distributed import parse_space, tune_task
    from hwsurrogate.surrogates.training.gemm import GemmTrainConfig

    if not ray_address:
        raise click.UsageError("hws tune runs its trials on a Ray cluster: give --ray ADDRESS (e.g. auto)")
    try:
        grid = parse_space(task, space)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--space") from None
    connect(ray_address)
    base = GemmTrainConfig(sources=sources, devices=devices, test_frac=test_frac, seed=seed)
    res = tune_task(task, grid, store=DatasetStore(store_path), base=base, cpus_per_trial=cpus_per_trial,
                    register=not no_register)  # fmt: skip
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
