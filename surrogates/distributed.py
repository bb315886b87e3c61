"""Surrogates on a Ray cluster: hyper-parameter search with Ray Tune, batch prediction with Ray Data.

``hws tune TASK --ray ADDRESS`` (:func:`tune_task`): the task's training rows are split once,
on the same fixed held-out split its ``train_*_model`` uses; every trial fits on the training
part and scores on the held-out part in a Ray worker. Each trial is an MLflow run (Ray's
``MLflowLoggerCallback``, logged by the driver) nested under one parent run. The best
configuration is then trained and registered by the task's own ``train_*_model`` **only when it
beats the champion on the same rows**: the rows held out from both (what
:func:`~hwsurrogate.surrogates.registry.tracking.register_and_promote` compares); otherwise
nothing is registered.

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
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import TrainingDataError
from hwsurrogate.surrogates.api import MODEL_NAMES
from hwsurrogate.surrogates.training.gemm import (
    EXPERIMENT,
    SHAPE_KEYS,
    GemmTrainConfig,
    evaluate_mape,
    fit_gemm,
    load_gemm_frame,
    train_gemm_model,
)
from hwsurrogate.surrogates.training.metrics import regression_metrics
from hwsurrogate.surrogates.training.splits import group_split

__all__ = [
    "DEFAULT_SPACES",
    "TUNABLE",
    "DispatchBatches",
    "TuneResult",
    "parse_space",
    "predict_on_ray",
    "tune_task",
]

#: tasks ``hws tune`` searches, with the parameters a search space may name (and their types)
TUNABLE: dict[str, dict[str, type]] = {
    "gemm": {"max_iter": int, "learning_rate": float, "max_train_rows": int}
}
#: the search space when ``--space`` is not given: every combination is one trial
DEFAULT_SPACES: dict[str, dict[str, list[Any]]] = {
    "gemm": {"max_iter": [100, 300], "learning_rate": [0.05, 0.1, 0.2]}
}
METRIC = {"gemm": "test_runtime_mape"}


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


def parse_space(task: str, text: str | None) -> dict[str, list[Any]]:
    """A search space from JSON (``{"max_iter": [100, 300]}``); every key and value is checked by name."""
    if task not in TUNABLE:
        raise ValueError(f"hws tune: task {task!r} cannot be tuned; tunable tasks: {sorted(TUNABLE)}")
    if text is None:
        return {k: list(v) for k, v in DEFAULT_SPACES[task].items()}
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"--space: not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(
            '--space: expected a JSON object of parameter -> list of values, e.g. {"max_iter": [100, 300]}'
        )
    allowed = TUNABLE[task]
    space: dict[str, list[Any]] = {}
    for key, values in raw.items():
        if key not in allowed:
            raise ValueError(f"--space: {task} has no parameter {key!r}; tunable: {sorted(allowed)}")
        if not isinstance(values, list) or not values:
            raise ValueError(f"--space: {key} must be a non-empty list of values, got {values!r}")
        kind = allowed[key]
        for v in values:
            ok = isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) and v > 0
            if not ok or (kind is int and not isinstance(v, int)):
                raise ValueError(f"--space: {key} values must be positive {kind.__name__}s, got {v!r}")
        space[key] = [kind(v) for v in values]
    return space


def _gemm_trial(
    config: dict[str, Any],
    *,
    train: pl.DataFrame,
    test: pl.DataFrame,
    shared: frozenset[str] | None,
    devices: pl.DataFrame,
    base: GemmTrainConfig,
) -> dict[str, float]:
    """One trial (in a Ray worker): fit on the training split; runtime MAPE on the held-out split and
    on the rows held out from the champion too (``shared``; what promotion compares)."""
    from ray import tune

    model = fit_gemm(train, devices, replace(base, **config))
    pred = model.predict_frame(test)["runtime_ms"].to_numpy()
    y = test["runtime_ms"].to_numpy()
    metrics = regression_metrics(y, pred)
    result = {"test_runtime_mape": float(metrics["mape"]), "test_runtime_smape": float(metrics["smape"])}
    if shared is not None:
        mask = test["measurement_id"].is_in(sorted(shared)).to_numpy()
        result["shared_runtime_mape"] = float(regression_metrics(y[mask], pred[mask])["mape"])
    tune.report(result)
    return result


def _champion_rows(task: str, test: pl.DataFrame) -> tuple[str | None, frozenset[str] | None]:
    """(champion version, the ``test`` rows it was never trained on either); (None, None) without a champion.

    The same rows :func:`~hwsurrogate.surrogates.registry.tracking.register_and_promote` compares
    a new version and the champion on; all of ``test`` when the champion recorded no held-out rows.
    """
    from hwsurrogate.surrogates.registry.tracking import champion_holdout

    champ = champion_holdout(MODEL_NAMES[task])
    if champ is None:
        return None, None
    version, keys = champ
    ours = frozenset(test["measurement_id"].to_list())
    return version, ours if keys is None else ours & keys


def tune_task(
    task: str,
    space: dict[str, list[Any]],
    *,
    store: DatasetStore | None = None,
    base: GemmTrainConfig | None = None,
    cpus_per_trial: float = 1.0,
    register: bool = True,
) -> TuneResult:
    """Grid-search ``space`` for ``task`` with Ray Tune (call after :func:`hwsurrogate.cluster.connect`).

    See the module docstring for the runs logged and when the winner is registered.
    """
    import mlflow
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    from hwsurrogate.surrogates.registry.tracking import configure_mlflow, start_run

    if task != "gemm":
        raise ValueError(f"hws tune: task {task!r} cannot be tuned; tunable tasks: {sorted(TUNABLE)}")
    store = store or DatasetStore()
    base = replace(base or GemmTrainConfig(), register=register)
    frame, devices = load_gemm_frame(store, base)  # raises before any run on bad data
    train, test = group_split(frame, SHAPE_KEYS, test_frac=base.test_frac, seed=base.seed)
    if train.height == 0 or test.height == 0:
        raise TrainingDataError(
            f"gemm: the shape split left {train.height} training and {test.height} test rows"
        )
    metric = METRIC[task]
    n_trials = int(np.prod([len(v) for v in space.values()]))
    uri = configure_mlflow()
    with start_run(EXPERIMENT, run_name=f"tune-{task}", task=task, kind="tune") as parent:
        mlflow.log_params({f"space.{k}": json.dumps(v) for k, v in space.items()})
        mlflow.log_params({"n_trials": n_trials, "n_train": train.height, "n_test": test.height,
                           "split": "shape(m,n,k,batch)"} | {f"base.{k}": str(v) for k, v in asdict(base).items()
                                                             if k not in space})  # fmt: skip
        callback = MLflowLoggerCallback(
            tracking_uri=uri, registry_uri=uri, experiment_name=EXPERIMENT,
            tags={"mlflow.parentRunId": parent.info.run_id, "hws.role": "tune-trial", "task": task},
        )  # fmt: skip
        champ_version, shared = _champion_rows(task, test)
        trainable = tune.with_resources(
            tune.with_parameters(
                _gemm_trial, train=train, test=test, shared=shared or None, devices=devices, base=base
            ),  # fmt: skip
            {"cpu": cpus_per_trial},
        )
        with tempfile.TemporaryDirectory(prefix="hws-tune-") as tmp:
            from ray.tune import RunConfig

            tuner = tune.Tuner(
                trainable,
                param_space={k: tune.grid_search(v) for k, v in space.items()},
                tune_config=tune.TuneConfig(metric=metric, mode="min", num_samples=1),
                run_config=RunConfig(storage_path=tmp, name=f"tune-{task}", callbacks=[callback], verbose=0),
            )
            grid = tuner.fit()
        rows = []
        for res in grid:
            if res.error is not None:
                raise TrainingDataError(f"hws tune {task}: a trial failed: {res.error}")
            scores = {m: float(res.metrics[m]) for m in (metric, "shared_runtime_mape") if m in res.metrics}
            rows.append({k: res.config[k] for k in space} | scores)
        trials = pl.DataFrame(rows).sort(metric)
        best = {k: trials[k][0] for k in space}
        best_score = float(trials[metric][0])
        runs = mlflow.search_runs(
            experiment_names=[EXPERIMENT], output_format="list",
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
            uri = f"models:/{MODEL_NAMES[task]}/{champ_version}"
            out.champion_score = float(evaluate_mape(test)(uri, shared))
            challenger = float(trials["shared_runtime_mape"][0])
            wins = bool(np.isfinite(challenger) and challenger < out.champion_score)
            out.reason = (f"{metric} on the {len(shared)} rows held out from both: best {challenger:.4g} vs "
                          f"champion v{champ_version} {out.champion_score:.4g}")  # fmt: skip
            mlflow.log_metrics({"best_shared_runtime_mape": challenger, "champion_shared_runtime_mape":
                                out.champion_score})  # fmt: skip
        mlflow.set_tags({"hws.winner_beats_champion": str(wins), "hws.gate": out.reason})
        if register and wins:
            res = train_gemm_model(store, replace(base, **best, register=True))
            out.version, out.promoted = res.version, res.promoted
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
