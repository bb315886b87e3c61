"""MLflow plumbing shared by every surrogate: runs, datasets, logged metrics, plots, registry aliases.

Default tracking is the embedded SQLite store ``sqlite:///mlflow.db`` with artifacts under
``./mlruns`` (``HWSURROGATE_MLFLOW_ARTIFACTS`` overrides the artifact folder for new
experiments); any ``MLFLOW_TRACKING_URI`` (e.g. a tracking server) works too.

Training code follows one order so that bad input never leaves a half-created run:
``check_training_frame`` (raises before anything is logged) -> ``start_run`` -> fit ->
``log_regression_report`` -> log the model -> ``register_and_promote``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.errors import TrainingDataError
from hwsurrogate.settings import get_settings

CHAMPION = "champion"


def configure_mlflow() -> str:
    """Point MLflow at the configured tracking URI and return it."""
    import mlflow

    uri = get_settings(fresh=True).tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _experiment_id(name: str) -> str:
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifacts = os.environ.get("HWSURROGATE_MLFLOW_ARTIFACTS")
    location = Path(artifacts).resolve().as_uri() if artifacts else None
    return mlflow.create_experiment(name, artifact_location=location)


@contextlib.contextmanager
def start_run(experiment: str, run_name: str | None = None, **tags: str) -> Iterator[Any]:
    """``mlflow.start_run`` in experiment ``experiment`` (created on first use).

    Inside another active run (``hws tune``'s parent run) the new run is nested under it.
    """
    import mlflow

    configure_mlflow()
    with mlflow.start_run(
        experiment_id=_experiment_id(experiment),
        run_name=run_name,
        tags=tags or None,
        nested=mlflow.active_run() is not None,
    ) as run:
        yield run


def check_training_frame(
    frame: pl.DataFrame, targets: Sequence[str], *, what: str, min_rows: int = 2, required: Sequence[str] = ()
) -> None:
    """Raise :class:`TrainingDataError` naming the problem before any MLflow run is created."""
    if frame.height < min_rows:
        raise TrainingDataError(f"{what}: {frame.height} training rows; need at least {min_rows}")
    missing = [c for c in (*targets, *required) if c not in frame.columns]
    if missing:
        raise TrainingDataError(f"{what}: missing column(s) {missing}")
    for t in targets:
        s = frame[t]
        if s.dtype.is_numeric():
            bad = s.is_null() | (~s.cast(pl.Float64).is_finite())
            if bad.all():
                raise TrainingDataError(f"{what}: target {t!r} has no finite values")


def parity_figure(y_true: np.ndarray, y_pred: np.ndarray, *, label: str, log: bool = True) -> Any:
    """Parity (predicted vs measured) and relative-residual plots side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.5))
    ax1.scatter(y_true, y_pred, s=4, alpha=0.4)
    lo = float(np.nanmin([y_true.min(), y_pred.min()]))
    hi = float(np.nanmax([y_true.max(), y_pred.max()]))
    ax1.plot([lo, hi], [lo, hi], "k--", lw=1)
    if log and lo > 0:
        ax1.set_xscale("log")
        ax1.set_yscale("log")
    ax1.set_xlabel(f"measured {label}")
    ax1.set_ylabel(f"predicted {label}")
    ax1.set_title(f"parity: {label}")
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(y_true != 0, (y_pred - y_true) / y_true * 100, np.nan)
    ax2.scatter(y_true, rel, s=4, alpha=0.4)
    ax2.axhline(0, color="k", lw=1)
    if log and lo > 0:
        ax2.set_xscale("log")
    ax2.set_xlabel(f"measured {label}")
    ax2.set_ylabel("relative error %")
    ax2.set_title("residuals")
    fig.tight_layout()
    return fig


def log_regression_report(
    y_true: np.ndarray, y_pred: np.ndarray, *, split: str, target: str, log_scale: bool = True
) -> dict[str, float]:
    """Log ``<split>_<target>_<metric>`` metrics and a parity/residual PNG; return the metrics."""
    import matplotlib.pyplot as plt
    import mlflow

    from hwsurrogate.surrogates.training.metrics import regression_metrics

    metrics = regression_metrics(y_true, y_pred)
    mlflow.log_metrics({f"{split}_{target}_{k}": v for k, v in metrics.items() if np.isfinite(v)})
    fig = parity_figure(y_true, y_pred, label=target, log=log_scale)
    mlflow.log_figure(fig, f"plots/parity_{split}_{target}.png")
    plt.close(fig)
    return metrics


def dataset_source(store: Any, kind: str) -> str:
    """Store table ``kind`` as an MLflow dataset source: its URI (``s3://bucket/prefix/gemm``) or absolute folder.

    ``store``: a :class:`~hwsurrogate.datasets.store.DatasetStore`, a store location, or None
    (the configured store).
    """
    from hwsurrogate.datasets.store import DatasetStore

    st = store if isinstance(store, DatasetStore) else DatasetStore(store)
    uri = st.table_uri(kind)
    return uri if st.is_remote else str(Path(uri).resolve())


def log_training_dataset(
    frame: pl.DataFrame, *, name: str, source: str, targets: str | None = None, context: str = "training"
) -> None:
    """Log the training data as an MLflow dataset (digest + source) on the active run.

    The digest covers the rows *and* the source: MLflow reuses a logged dataset with the same name
    and digest, so identical rows read from another store would otherwise be recorded with the
    first store's source.
    """
    import hashlib

    import mlflow
    from mlflow.data.dataset_source_registry import get_registered_sources

    # MLflow registers its local-file source class twice, so resolving a path string warns that
    # it "can be interpreted in multiple ways"; name the class instead of letting it guess.
    local = next((s for s in get_registered_sources() if s.__name__ == "LocalArtifactDatasetSource"), None)
    resolved = local(source) if local is not None and "://" not in source else source
    rows = mlflow.data.from_polars(frame, source=resolved, name=name, targets=targets).digest
    digest = hashlib.sha256(f"{rows}\0{source}".encode()).hexdigest()[:16]
    ds = mlflow.data.from_polars(frame, source=resolved, name=name, targets=targets, digest=digest)
    mlflow.log_input(ds, context=context)


#: How much worse (relative to the champion's score) a wider-scope version may be on the shared
#: held-out rows and still replace a narrower champion.
WIDER_SCOPE_TOLERANCE = 0.10

#: Artifact (on a version's run) listing the keys of the rows it was scored on and never trained on.
HOLDOUT_ARTIFACT = "holdout_keys.json"


def scope_covers(wide: dict[str, list[str]] | None, narrow: dict[str, list[str]] | None) -> bool:
    """Whether a model of scope ``wide`` answers everything one of scope ``narrow`` does.

    A scope maps a facet (``devices``, ``spaces``, ``sources`` ...) to its values; an unknown scope
    (``None``, versions registered before scopes were recorded) is covered by anything.
    """
    if not narrow:
        return True
    if not wide:
        return False
    return all(set(values) <= set(wide.get(facet, ())) for facet, values in narrow.items())


def scope_alias(scope: dict[str, list[str]]) -> str:
    """The alias a narrower-scope version is registered under, e.g. ``scope-neusight-3f2a91c0``."""
    import hashlib
    import json
    import re

    canonical = json.dumps({k: sorted(v) for k, v in sorted(scope.items())}, sort_keys=True)
    digest = hashlib.sha1(canonical.encode()).hexdigest()[:8]
    label = "-".join(sorted(scope.get("sources", ()))[:3]) or "-".join(sorted(scope)[:2])
    label = re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-")[:40]
    return f"scope-{label}-{digest}" if label else f"scope-{digest}"


def _version_tag(version: Any, key: str) -> str | None:
    return (getattr(version, "tags", None) or {}).get(key)


def _holdout_keys_of(client: Any, version: Any) -> frozenset[str] | None:
    """The held-out keys recorded with ``version`` (None for versions that recorded none)."""
    import json
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(version.run_id, HOLDOUT_ARTIFACT, tmp)
            return frozenset(json.loads(Path(path).read_text())["keys"])
    except Exception:  # no such artifact (older versions) or an unreadable one
        return None


def predict_with(model: str | Any, queries: pl.DataFrame) -> pl.DataFrame:
    """The answers of ``model`` to ``queries``, as polars: a model URI (loaded with MLflow), a
    loaded MLflow pyfunc, or a fitted task model (its ``predict_frame``).

    A task's promotion score takes any of them, so ``hws tune`` scores its trials in memory
    exactly as :func:`register_and_promote` scores registered versions.
    """
    if isinstance(model, str):
        import mlflow

        model = mlflow.pyfunc.load_model(model)
    predict = getattr(model, "predict_frame", None) or model.predict
    answer = predict(queries.to_pandas())
    return answer if isinstance(answer, pl.DataFrame) else pl.from_pandas(answer)


def beats(new_score: float, champion_score: float, *, higher_is_better: bool = False) -> bool:
    """Whether ``new_score`` is finite and strictly better than ``champion_score``: the comparison
    of :func:`register_and_promote` (and of ``hws tune``'s gate before it registers a winner)."""
    better = new_score > champion_score if higher_is_better else new_score < champion_score
    return bool(better and np.isfinite(new_score))


def register_and_promote(
    model_uri: str,
    model_name: str,
    *,
    evaluate: Callable[[str, frozenset[str] | None], float],
    holdout_keys: Sequence[str],
    scope: dict[str, list[str]],
    description: str,
    higher_is_better: bool = False,
    metric_name: str = "benchmark_metric",
) -> tuple[str, bool]:
    """Register ``model_uri`` as a new version; move alias ``champion`` only if it wins fairly.

    ``holdout_keys`` identify the rows the new model was scored on and never trained on (recorded
    as the run's ``holdout_keys.json``). ``evaluate(model_uri, keys)`` scores a model on the
    held-out rows whose key is in ``keys`` (``None``: all of the new model's held-out rows).
    The rule:

    - no champion yet: the new version becomes champion;
    - the new version's ``scope`` (devices, spaces, sources ...) does not cover the champion's:
      it is not promoted over the broader model but registered under its own scope alias
      (:func:`scope_alias`);
    - otherwise both are scored on the rows held out from **both** (the intersection of their
      recorded held-out keys); no shared row means no automatic promotion; a champion that
      recorded no keys is scored on the new version's held-out rows (and the record says so);
      a strictly wider scope wins unless worse by more than :data:`WIDER_SCOPE_TOLERANCE`, and
      the replaced champion keeps its own scope alias.

    Every version gets a description and a ``promotion`` tag (JSON: decision, reason, both
    scores, shared rows), so each alias move says why. Returns (new version, promoted?).
    """
    import json

    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure_mlflow()
    client = MlflowClient()
    mv = mlflow.register_model(model_uri, model_name)
    keys = frozenset(str(k) for k in holdout_keys)
    client.log_dict(mv.run_id, {"keys": sorted(keys)}, HOLDOUT_ARTIFACT)
    scope = {k: sorted(str(x) for x in v) for k, v in scope.items()}
    client.set_model_version_tag(model_name, mv.version, "scope", json.dumps(scope, sort_keys=True))
    client.update_model_version(model_name, mv.version, description=description)
    try:
        champ = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        champ = None
    record: dict[str, Any] = {"metric": metric_name, "higher_is_better": higher_is_better,
                              "challenger": {"version": str(mv.version)}}  # fmt: skip
    new_uri = f"models:/{model_name}/{mv.version}"
    if champ is None:
        new_score = float(evaluate(new_uri, None))
        record |= {"decision": "promoted", "reason": "first version", "shared_rows": len(keys)}
        record["challenger"]["score"] = new_score
        promote = True
    else:
        record["champion"] = {"version": str(champ.version)}
        champ_scope_tag = _version_tag(champ, "scope")
        champ_scope = json.loads(champ_scope_tag) if champ_scope_tag else None
        champ_keys = _holdout_keys_of(client, champ)
        shared = keys if champ_keys is None else keys & champ_keys
        record["shared_rows"] = len(shared)
        promote = False
        if not scope_covers(scope, champ_scope):
            alias = scope_alias(scope)
            client.set_registered_model_alias(model_name, alias, mv.version)
            record |= {"decision": "kept", "alias": alias,
                       "reason": f"its scope does not cover champion v{champ.version}'s; registered as {alias!r}"}  # fmt: skip
        elif not keys:  # the task recorded no held-out rows (e.g. no validation device left)
            new_score = float(evaluate(new_uri, None))
            champ_score = float(evaluate(f"models:/{model_name}/{champ.version}", None))
            record["challenger"]["score"], record["champion"]["score"] = new_score, champ_score
            promote = beats(new_score, champ_score, higher_is_better=higher_is_better)
            record |= {"decision": "promoted" if promote else "kept",
                       "reason": f"{metric_name} {new_score:.6g} vs champion's {champ_score:.6g} by the task's "
                                 "fallback score: the new version recorded no held-out rows"}  # fmt: skip
        elif not shared:
            record |= {"decision": "kept",
                       "reason": f"no held-out row in common with champion v{champ.version}: not comparable"}  # fmt: skip
        else:
            new_score = float(evaluate(new_uri, shared))
            champ_score = float(evaluate(f"models:/{model_name}/{champ.version}", shared))
            record["challenger"]["score"], record["champion"]["score"] = new_score, champ_score
            better = beats(new_score, champ_score, higher_is_better=higher_is_better)
            # a wider scope answers what the champion cannot: it wins unless clearly worse on the
            # shared rows (by more than WIDER_SCOPE_TOLERANCE of the champion's score)
            wider = champ_scope is not None and not scope_covers(champ_scope, scope)
            slack = WIDER_SCOPE_TOLERANCE * abs(champ_score)
            close = new_score >= champ_score - slack if higher_is_better else new_score <= champ_score + slack
            promote = better or bool(wider and close and np.isfinite(new_score))
            where = ("on the new version's held-out rows (the champion recorded none)" if champ_keys is None
                     else f"on the {len(shared)} rows held out from both")  # fmt: skip
            why = f"{metric_name} {new_score:.6g} vs champion's {champ_score:.6g} {where}"
            if wider:
                why += f"; wider scope (within {WIDER_SCOPE_TOLERANCE:.0%} wins)"
            record |= {"decision": "promoted" if promote else "kept", "reason": why, "wider_scope": wider}
            if promote and wider:  # the replaced narrower champion stays reachable under its scope
                record["champion"]["alias"] = scope_alias(champ_scope)
                client.set_registered_model_alias(model_name, record["champion"]["alias"], champ.version)
    if "score" in record["challenger"]:
        client.set_model_version_tag(
            model_name, mv.version, metric_name, f"{record['challenger']['score']:.6g}"
        )
    client.set_model_version_tag(model_name, mv.version, "promotion", json.dumps(record, sort_keys=True))
    if promote:
        client.set_registered_model_alias(model_name, CHAMPION, mv.version)
        if champ is not None:
            client.set_model_version_tag(model_name, champ.version, "replaced_by", str(mv.version))
    return str(mv.version), promote


def champion_holdout(model_name: str) -> tuple[str, frozenset[str] | None] | None:
    """The champion's version and its recorded held-out keys (None: no champion; keys None: none recorded).

    What a search (``hws tune``) needs to score its candidates on the same rows
    :func:`register_and_promote` will compare them on.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure_mlflow()
    client = MlflowClient()
    try:
        champ = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None
    return str(champ.version), _holdout_keys_of(client, champ)


def promotion_reason(model_name: str, version: str) -> str:
    """Why ``version`` was or was not made champion (its ``promotion`` record), for messages."""
    import json

    from mlflow import MlflowClient

    configure_mlflow()
    try:
        tag = MlflowClient().get_model_version(model_name, version).tags.get("promotion")
        return str(json.loads(tag)["reason"]) if tag else ""
    except Exception:  # an unreadable record must not fail a finished training run
        return ""


def log_data_versions(versions: dict[str, int], *, store: str | os.PathLike[str] | None = None) -> None:
    """Record the store table versions a run read (param ``data_versions``: what ``--data-version`` takes)."""
    import mlflow

    from hwsurrogate.datasets.store import format_versions

    if versions:
        mlflow.log_param("data_versions", format_versions(versions))
    if store is not None:
        mlflow.set_tag("data_store", str(store))
