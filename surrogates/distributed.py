"""Surrogates on a Ray cluster: hyper-parameter search with Ray Tune, batch prediction with Ray Data.

``hws tune TASK --ray ADDRESS`` (:func:`tune_task`): the task's training rows are split once,
on the same fixed held-out split its ``train_*_model`` uses
(:func:`~hwsurrogate.surrogates.training.tuning.tune_setup`); every trial fits on the training
part and is scored on the held-out part in a Ray worker, by the task's own promotion score.
Each trial is an MLflow run (Ray's ``MLflowLoggerCallback``, logged by the driver) nested under
one parent run. The best configuration is then trained and registered by the task's own
``train_*_model`` **only when it beats the champion on the same rows**: the rows held out from
both (what :func:`~hwsurrogate.surrogates.registry.tracking.register_and_promote` compares, with
the same :func:`~hwsurrogate.surrogates.registry.tracking.beats`); otherwise nothing is registered.

``hws predict ... --ray ADDRESS`` (:func:`predict_on_ray`): the queries become a Ray Dataset;
``map_batches`` with a callable class (:class:`DispatchBatches`) builds the dispatch once per
worker (one model load per worker, not per batch) and answers each batch through the same
:meth:`~hwsurrogate.surrogates.predict.Dispatch.predict` as ``hws predict``.

Ray is imported inside the functions; nothing here runs without ``--ray``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.errors import TrainingDataError
from hwsurrogate.surrogates.api import MODEL_NAMES
from hwsurrogate.surrogates.training.tuning import TuneSetup

__all__ = [
    "DispatchBatches",
    "TuneResult",
    "predict_on_ray",
    "tune_task",
]


@dataclass
class TuneResult:
    """What a search did: its parent run, one row per trial, the winner and whether it was registered."""

    task: str
    parent_run_id: str
    trials: pl.DataFrame  # the space's parameters and held-out scores, best first
    metric: str
    best_config: dict[str, Any]
    best_score: float
    champion_score: float | None  # the champion on the rows held out from both (None: no comparison)
    version: str | None = None  # registered version (None: nothing registered)
    promoted: bool = False
    reason: str = ""  # why the winner was or was not registered


def _trial(
    config: dict[str, Any],
    *,
    fit: Callable[[dict[str, Any]], Any],
    evaluate: Callable[[Any, frozenset[str] | None], float],
    metric: str,
    shared_metric: str,
    shared: frozenset[str] | None,
) -> dict[str, float]:
    """One trial (in a Ray worker): fit on the training split; the task's promotion score on the
    held-out split and on the rows held out from the champion too (``shared``; what promotion compares)."""
    from ray import tune

    model = fit(config)
    result = {metric: float(evaluate(model, None))}
    if shared is not None:
        result[shared_metric] = float(evaluate(model, shared))
    tune.report(result)
    return result


def _champion_rows(task: str, holdout: frozenset[str]) -> tuple[str | None, frozenset[str] | None]:
    """(champion version, the held-out rows it was never trained on either); (None, None) without a champion.

    The same rows :func:`~hwsurrogate.surrogates.registry.tracking.register_and_promote` compares
    a new version and the champion on; all of ``holdout`` when the champion recorded no held-out rows.
    """
    from hwsurrogate.surrogates.registry.tracking import champion_holdout

    champ = champion_holdout(MODEL_NAMES[task])
    if champ is None:
        return None, None
    version, keys = champ
    return version, holdout if keys is None else holdout & keys


def tune_task(
    setup: TuneSetup,
    space: dict[str, list[Any]],
    *,
    cpus_per_trial: float = 1.0,
    register: bool = True,
) -> TuneResult:
    """Grid-search ``space`` for ``setup.task`` with Ray Tune (call after :func:`hwsurrogate.cluster.connect`).

    ``setup``: :func:`~hwsurrogate.surrogates.training.tuning.tune_setup`; ``space`` checked by
    :func:`~hwsurrogate.surrogates.training.tuning.parse_space`. See the module docstring for the
    runs logged and when the winner is registered.
    """
    import mlflow
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    from hwsurrogate.surrogates.registry.tracking import beats, configure_mlflow, start_run

    task, metric, shared_metric = setup.task, setup.metric, setup.shared_metric
    n_trials = int(np.prod([len(v) for v in space.values()]))
    uri = configure_mlflow()
    with start_run(setup.experiment, run_name=f"tune-{task}", task=task, kind="tune") as parent:
        mlflow.log_params({f"space.{k}": json.dumps(v) for k, v in space.items()})
        mlflow.log_params({"n_trials": n_trials, "n_train": setup.n_train, "n_test": setup.n_test,
                           "split": setup.split} | {f"base.{k}": str(v) for k, v in setup.base.items()
                                                    if k not in space})  # fmt: skip
        callback = MLflowLoggerCallback(
            tracking_uri=uri, registry_uri=uri, experiment_name=setup.experiment,
            tags={"mlflow.parentRunId": parent.info.run_id, "hws.role": "tune-trial", "task": task},
        )  # fmt: skip
        champ_version, shared = _champion_rows(task, setup.holdout_keys)
        trainable = tune.with_resources(
            tune.with_parameters(_trial, fit=setup.fit, evaluate=setup.evaluate, metric=metric,
                                 shared_metric=shared_metric, shared=shared or None),  # fmt: skip
            {"cpu": cpus_per_trial},
        )
        with tempfile.TemporaryDirectory(prefix="hws-tune-") as tmp:
            from ray.tune import RunConfig

            tuner = tune.Tuner(
                trainable,
                param_space={k: tune.grid_search(v) for k, v in space.items()},
                tune_config=tune.TuneConfig(metric=metric, mode="max" if setup.higher_is_better else "min",
                                            num_samples=1),  # fmt: skip
                run_config=RunConfig(storage_path=tmp, name=f"tune-{task}", callbacks=[callback], verbose=0),
            )
            grid = tuner.fit()
        rows = []
        for res in grid:
            if res.error is not None:
                raise TrainingDataError(f"hws tune {task}: a trial failed: {res.error}")
            scores = {m: float(res.metrics[m]) for m in (metric, shared_metric) if m in res.metrics}
            rows.append({k: res.config[k] for k in space} | scores)
        trials = (
            pl.DataFrame(rows)
            .with_columns(pl.col(metric).fill_nan(None))  # a score that could not be computed ranks last
            .sort(metric, descending=setup.higher_is_better, nulls_last=True)
        )
        best = {k: trials[k][0] for k in space}
        best_score = float(trials[metric].fill_null(float("nan"))[0])
        runs = mlflow.search_runs(
            experiment_names=[setup.experiment], output_format="list",
            filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.`hws.role` = 'tune-trial'",
        )  # fmt: skip
        mlflow.log_metrics({f"best_{metric}": best_score, "n_trial_runs": len(runs)})
        mlflow.log_dict({"trials": trials.to_dicts(), "best": best}, "tune/trials.json")
        out = TuneResult(task, parent.info.run_id, trials, metric, best, best_score, None)
        if champ_version is None:
            wins, out.reason = True, "no champion yet"
        elif not shared:
            wins, out.reason = (
                False,
                f"no held-out row in common with champion v{champ_version}: not comparable",
            )
        else:
            out.champion_score = float(setup.evaluate(f"models:/{MODEL_NAMES[task]}/{champ_version}", shared))
            challenger = float(trials[shared_metric][0])
            wins = beats(challenger, out.champion_score, higher_is_better=setup.higher_is_better)
            out.reason = (f"{metric} on the {len(shared)} rows held out from both: best {challenger:.4g} vs "
                          f"champion v{champ_version} {out.champion_score:.4g}")  # fmt: skip
            mlflow.log_metrics({f"best_{shared_metric}": challenger, f"champion_{shared_metric}":
                                out.champion_score})  # fmt: skip
        mlflow.set_tags({"hws.winner_beats_champion": str(wins), "hws.gate": out.reason})
        if register and wins:
            out.version, out.promoted = setup.train_winner(best)
    return out


# ====================================================================================== batch prediction
class DispatchBatches:
    """``map_batches`` callable: one :class:`~hwsurrogate.surrogates.predict.Dispatch` per Ray worker.

    The dispatch (and so the served model) is built in ``__init__``, once per worker process;
    ``__call__`` answers one pyarrow batch of queries and returns it with the task's output columns
    and ``in_domain``.
    """

    def __init__(self, task: str, store_root: str | None, version: str | None, strict: bool) -> None:
        from hwsurrogate.surrogates.predict import local_dispatch

        self.task, self.strict = task, strict
        self.dispatch = local_dispatch(store_root, versions={task: version})
        self.worker = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # one per construction: one per model load

    def __call__(self, batch: Any) -> Any:
        queries = pl.from_arrow(batch)
        assert isinstance(queries, pl.DataFrame)
        answer = self.dispatch.predict(self.task, queries, strict=self.strict)
        outputs = answer.outputs.drop([c for c in answer.outputs.columns if c in queries.columns])
        frame = pl.concat([queries, outputs], how="horizontal").with_columns(
            pl.Series("in_domain", answer.in_domain or [None] * queries.height, dtype=pl.Boolean),
            pl.lit(self.worker).alias("ray_worker"),
        )
        return frame.to_arrow()


def predict_on_ray(
    task: str,
    queries: pl.DataFrame,
    *,
    store_root: str | os.PathLike[str] | None = None,
    version: str | None = None,
    strict: bool = False,
    workers: int = 2,
    batch_size: int = 4096,
) -> pl.DataFrame:
    """Answer ``queries`` with Ray Data on ``workers`` actors (call after :func:`hwsurrogate.cluster.connect`).

    Rows come back in query order with the output columns, ``in_domain`` and ``ray_worker``
    (which worker, and which model load, answered them).
    """
    import pyarrow as pa
    import ray

    if workers < 1 or batch_size < 1:
        raise ValueError(f"workers and batch_size must be >= 1, got {workers} and {batch_size}")
    from hwsurrogate.progress import progress_enabled

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress_enabled()
    # start every actor before the first batch is handed out, so the batches spread over all of them
    # (otherwise the first actor up may answer everything while the second is still loading the model)
    context.wait_for_min_actors_s = max(context.wait_for_min_actors_s, 600)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    batch_size = min(batch_size, max(1, -(-queries.height // workers)))  # every worker gets work
    table = queries.with_row_index("_query_row").to_arrow()
    blocks = [table.slice(i, batch_size) for i in range(0, table.num_rows, batch_size)] or [table]
    ds = ray.data.from_arrow(blocks)  # one block per batch, so every worker gets some
    root = str(store_root) if store_root is not None else None
    answered = ds.map_batches(
        DispatchBatches, fn_constructor_args=(task, root, version, strict), batch_size=batch_size,
        batch_format="pyarrow", num_cpus=1,
        compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
    )  # fmt: skip
    tables = [t for t in ray.get(answered.to_arrow_refs()) if t.num_rows]
    if not tables:
        return pl.DataFrame()
    frame = pl.from_arrow(pa.concat_tables(tables, promote_options="default"))
    assert isinstance(frame, pl.DataFrame)
    return frame.sort("_query_row").drop("_query_row")
