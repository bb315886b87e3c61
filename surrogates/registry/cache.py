"""Local copies of registered model versions, so short commands skip MLflow's model loading.

MLflow stays the source of truth (names, versions, aliases, artifacts); a :class:`LocalModelCache`
keeps one file per registered version of one model under a folder of the store, written
atomically, plus an optional local ``champion.json`` pointer. Two users:

- the few-shot latency model (``<store>/models/fewshot-latency/<version>.npz``, numpy only: the
  adaptation path never imports torch or MLflow), whose pointer moves when ``hws train fewshot``
  promotes a version;
- the served champion (or a pinned version) of every task for ``hws predict``
  (``<store>/models/served/<model name>/``, see :func:`load_served`), with one pointer per reference
  (``ref-champion.json``, ``ref-v3.json``) that is trusted only while :func:`tracking_stamp`
  says MLflow's database has not changed since the pointer was written;
- the GEMM champion that ``hws adapt --task gemm`` adapts (``<store>/adapted/gemm/.models/``),
  resolved through MLflow's public client (``get_model_version_by_alias``) on every call and
  cached by name, version and run id, so a moved alias is never answered with a stale model.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsurrogate.io import atomic_write_bytes, safe_name

__all__ = [
    "CachedChampion",
    "LocalModelCache",
    "ServedEntry",
    "cache_champion",
    "gemm_model_cache",
    "load_gemm_champion",
    "load_served",
    "load_served_copy",
    "served_key",
    "served_model_cache",
    "store_root",
    "tracking_stamp",
]

CHAMPION_FILE = "champion.json"
#: suffix of the scikit-learn-free form of a served copy (``<key>.frozen.pkl`` beside ``<key>.pkl``)
FROZEN_SUFFIX = ".frozen.pkl"


def store_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The local folder of model caches for store ``root`` (default ``HWSURROGATE_STORE``, else ``./store``).

    A store directory holds them itself; for an ``s3://`` store they go to
    ``$HWSURROGATE_LOCAL_DIR`` (:func:`hwsurrogate.settings.local_root`).
    """
    from hwsurrogate.settings import local_root

    return local_root(root)


class LocalModelCache:
    """One model's registered versions as local files: ``<folder>/<key><suffix>``.

    ``write(model, path)`` and ``read(path)`` (de)serialise one version; ``fetch(version, path)``
    (optional) brings a version that is not here yet from the registry. Loaded versions are kept
    in memory, so a long-lived process reads each file once.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        name: str,
        *,
        suffix: str,
        write: Callable[[Any, Path], None],
        read: Callable[[Path], Any],
        fetch: Callable[[str, Path], None] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.name = name
        self.suffix = suffix
        self._write = write
        self._read = read
        self._fetch = fetch
        self._loaded: dict[str, Any] = {}

    def path(self, key: str) -> Path:
        return self.folder / f"{safe_name(str(key))}{self.suffix}"

    def export(self, model: Any, key: str, *, champion: bool = False) -> Path:
        """Store ``model`` under ``key`` (a version, or a version-and-run key); optionally point the champion at it."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write(model, path)
        self._loaded[str(key)] = model
        if champion:
            self.set_champion(str(key))
        return path

    def set_champion(self, version: str) -> None:
        """Point the local ``champion.json`` at ``version`` (its file may be fetched on first use)."""
        payload = {"name": self.name, "version": str(version)}
        atomic_write_bytes(self.folder / CHAMPION_FILE, json.dumps(payload).encode())

    def champion_version(self) -> str | None:
        """The version the local champion pointer names, or None when there is none."""
        path = self.folder / CHAMPION_FILE
        if not path.is_file():
            return None
        return str(json.loads(path.read_text())["version"])

    def ref(self, name: str) -> dict[str, str] | None:
        """The pointer ``name`` (e.g. ``champion``, ``v3``) as written by :meth:`set_ref`, or None."""
        path = self.folder / f"ref-{safe_name(name)}.json"
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return payload if isinstance(payload, dict) and {"key", "stamp"} <= payload.keys() else None

    def set_ref(self, name: str, key: str, stamp: str) -> None:
        """Record that reference ``name`` resolved to ``key`` while the registry's stamp was ``stamp``."""
        payload = {"name": self.name, "ref": name, "key": str(key), "stamp": stamp}
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.folder / f"ref-{safe_name(name)}.json", json.dumps(payload).encode())

    def load(self, key: str) -> Any:
        """The model stored under ``key``, read once per process; fetched first when missing and fetchable."""
        key = str(key)
        if key not in self._loaded:
            path = self.path(key)
            if not path.is_file():
                if self._fetch is None:
                    raise FileNotFoundError(path)
                self._fetch(key, path)
            self._loaded[key] = self._read(path)
        return self._loaded[key]


# --------------------------------------------------------------------------- served models


def served_model_cache(name: str, root: str | os.PathLike[str] | None = None) -> LocalModelCache:
    """The cache of registered model ``name``'s versions for short commands (``<store>/models/served/<name>/``)."""
    return LocalModelCache(
        store_root(root) / "models" / "served" / safe_name(name),
        name,
        suffix=".pkl",
        write=_write_pickle,
        read=_read_pickle,
    )


def tracking_stamp(uri: str) -> str | None:
    """A fingerprint of MLflow's embedded SQLite database that changes whenever it is written.

    The URI plus size and modification time (ns) of the database file and of its ``-wal`` file.
    Every MLflow write (a new version, a moved alias, a deleted model) changes it, so a pointer
    recorded with an equal stamp still names what MLflow would answer. None for anything else
    (a tracking server, a missing file): callers then ask MLflow itself.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    db = Path(uri[len(prefix) :].split("?", 1)[0])
    parts = []
    for path in (db, db.with_name(db.name + "-wal")):
        try:
            st = path.stat()
        except OSError:
            if path is db:
                return None
            parts.append("-")
            continue
        parts.append(f"{st.st_mtime_ns}:{st.st_size}")
    return "|".join([uri, *parts])


@dataclass
class ServedEntry:
    """What the local copy of one registered version holds (pickled; our own objects only)."""

    task: str
    name: str
    version: str
    run_id: str
    metrics: dict[str, float]
    model: Any  #: an object with ``predict_frame(polars) -> polars``

    def predictor(self) -> Any:
        """The entry as a :class:`~.loading.LoadedPredictor`."""
        from hwsurrogate.surrogates.registry.loading import LoadedPredictor

        return LoadedPredictor(self.task, self.name, self.version, self.model, dict(self.metrics), native=self.model)


def _entry(predictor: Any, run_id: str) -> ServedEntry | None:
    """The cacheable form of a loaded predictor, or None when its model is not one of ours."""
    from hwsurrogate.surrogates.registry.loading import LatencyModels

    native = predictor.native
    if native is None and predictor.task == "latency":
        try:
            from hwsurrogate.surrogates.registry.artifact_model import project_model

            inner = project_model(predictor.model)
            native = LatencyModels(dict(inner.models), str(getattr(inner, "kind", "tree")))
        except Exception:  # not our latency pyfunc
            native = None
    if native is None:
        return None
    return ServedEntry(predictor.task, predictor.name, predictor.version, run_id, predictor.metrics, native)


def load_served(
    task: str,
    *,
    version: str | int | None = None,
    alias: str = "champion",
    store_root: str | os.PathLike[str] | None = None,
) -> Any:
    """``task``'s champion (or pinned ``version``) for a short-lived command, from the local copy.

    Returns a :class:`~.loading.LoadedPredictor`.

    1. While MLflow's SQLite database is unchanged since the local pointer for this alias/version
       was written (:func:`~.cache.tracking_stamp`), the pointer's copy answers and MLflow is not
       imported.
    2. Otherwise MLflow's client resolves the alias (public API); a copy keyed by name, version
       and run id answers if present, else the version is loaded through MLflow
       (:func:`~.loading.load_predictor`) and copied. The pointer is then rewritten with the stamp taken
       before resolving, so any MLflow write in between sends the next call back to step 2.

    A missing or unwritable cache only makes the command slower, never different.
    """
    got, _ = _resolve_served(task, version=version, alias=alias, store_root=store_root)
    return got.predictor() if isinstance(got, ServedEntry) else got


def served_key(
    task: str,
    *,
    version: str | int | None = None,
    alias: str = "champion",
    store_root: str | os.PathLike[str] | None = None,
) -> str | None:
    """The key of the local copy :func:`load_served` answers ``task``'s alias (or ``version``) with,
    made first where missing (the frozen form beside it too); None when the model has no local copy
    (not one of ours, or the cache is unwritable). Raises :class:`~.loading.ModelNotFoundError`
    as :func:`load_served` does. :func:`load_served_copy` loads the copy by this key."""
    got, key = _resolve_served(task, version=version, alias=alias, store_root=store_root, load=False)
    return key if got is None or isinstance(got, ServedEntry) else None


def load_served_copy(task: str, key: str, store_root: str | os.PathLike[str] | None = None) -> Any:
    """The local copy under ``key`` (from :func:`served_key`) as a :class:`~.loading.LoadedPredictor`:
    its frozen form where there is one (the full copy loaded only when a call needs it). Imports
    neither MLflow nor, for a frozen form, scikit-learn; ``FileNotFoundError`` when there is no copy."""
    from hwsurrogate.surrogates.api import MODEL_NAMES

    return _served_copy(served_model_cache(MODEL_NAMES[task], store_root), key).predictor()


def _resolve_served(
    task: str,
    *,
    version: str | int | None,
    alias: str,
    store_root: str | os.PathLike[str] | None,
    load: bool = True,
) -> tuple[Any, str]:
    """(the :class:`ServedEntry` of the local copy, or the MLflow-loaded predictor where no copy
    could be made; the copy's key): the steps of :func:`load_served`. Without ``load``, a current
    pointer to a copy on disk returns (None, its key) without reading the copy."""
    from hwsurrogate.settings import get_settings
    from hwsurrogate.surrogates.api import MODEL_NAMES
    from hwsurrogate.surrogates.registry import loading

    if task not in MODEL_NAMES:
        raise loading.ModelNotFoundError(f"unknown task {task!r}; expected one of {sorted(MODEL_NAMES)}")
    cache = served_model_cache(MODEL_NAMES[task], store_root)
    ref = alias if version is None else f"v{version}"
    stamp = tracking_stamp(get_settings(fresh=True).tracking_uri())
    pointer = cache.ref(ref) if stamp is not None else None
    if pointer is not None and pointer["stamp"] == stamp:
        if not load and cache.path(pointer["key"]).is_file():
            return None, pointer["key"]
        try:
            return _served_copy(cache, pointer["key"]), pointer["key"]
        except (OSError, EOFError, AttributeError, ImportError, pickle.UnpicklingError):
            pass  # a damaged or outdated copy: resolve through MLflow below
    mv = loading.resolve_version(task, alias=alias, version=version)
    key = f"{mv.name}-v{mv.version}-{mv.run_id}"
    try:
        entry = _served_copy(cache, key)
    except (OSError, EOFError, AttributeError, ImportError, pickle.UnpicklingError):
        loaded = loading.load_predictor(task, version=mv.version)
        entry = _entry(loaded, str(mv.run_id))
        if entry is None:
            return loaded, key
        try:
            cache.export(entry, key)
        except OSError:
            return loaded, key
        _write_frozen(cache, key, entry)
    if stamp is not None:
        try:
            cache.set_ref(ref, key, stamp)
        except OSError:
            pass
    return entry, key


def frozen_path(cache: LocalModelCache, key: str) -> Path:
    """Where the scikit-learn-free form of the copy under ``key`` lives (beside it)."""
    path = cache.path(key)
    return path.with_name(path.name[: -len(cache.suffix)] + FROZEN_SUFFIX)


def _served_copy(cache: LocalModelCache, key: str) -> ServedEntry:
    """The copy under ``key``: its frozen form (:mod:`~..models.frozen`) when one is beside it,
    else the full copy, whose frozen form is then written for the next call.

    The frozen form is used only next to its full copy (which it loads for large batches); a
    missing, damaged or other-format frozen file is ignored (any error), never trusted.
    """
    if key in cache._loaded or not cache.path(key).is_file():
        return cache.load(key)  # in memory already, or fetched/refused as before
    try:
        entry = _read_pickle(frozen_path(cache, key))
        from hwsurrogate.surrogates.models.frozen import FROZEN_FORMAT, FrozenServed

        model = entry.model
        if isinstance(entry, ServedEntry) and isinstance(model, FrozenServed) and model.format == FROZEN_FORMAT:
            model.attach(lambda: cache.load(key).model)
            return entry
    except Exception:  # noqa: BLE001 - missing, damaged, other format: use the full copy, freeze it again
        pass
    entry = cache.load(key)
    _write_frozen(cache, key, entry)
    return entry


def _write_frozen(cache: LocalModelCache, key: str, entry: ServedEntry) -> None:
    """Write the frozen form of ``entry`` beside its copy (nothing when the model has none)."""
    from hwsurrogate.surrogates.models.frozen import freeze

    try:
        frozen = freeze(entry.task, entry.model)
        if frozen is not None:
            _write_pickle(
                ServedEntry(entry.task, entry.name, entry.version, entry.run_id, entry.metrics, frozen),
                frozen_path(cache, key),
            )
    except Exception:  # noqa: BLE001 - a frozen form only makes later calls faster, never different
        pass


# --------------------------------------------------------------------------- the GEMM champion


@dataclass
class CachedChampion:
    """The GEMM champion as ``adapt_gemm`` needs it (same attributes as a LoadedPredictor)."""

    model: Any
    name: str
    version: str


def _write_pickle(model: Any, path: Path) -> None:
    atomic_write_bytes(path, pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))


def _read_pickle(path: Path) -> Any:
    # our own file, written by cache_champion from a model this project trained and registered
    with path.open("rb") as fh:
        return pickle.load(fh)


def gemm_model_cache(root: str | os.PathLike[str] | None = None) -> LocalModelCache:
    """The cache of unwrapped ``hws-gemm`` versions under ``<store>/adapted/gemm/.models/``."""
    from hwsurrogate.surrogates.api import MODEL_NAMES

    return LocalModelCache(
        store_root(root) / "adapted" / "gemm" / ".models",
        MODEL_NAMES["gemm"],
        suffix=".pkl",
        write=_write_pickle,
        read=_read_pickle,
    )


def _gemm_key(name: str, version: str, run_id: str) -> str:
    return f"{name}-v{version}-{run_id}"


def load_gemm_champion(store_root: str | os.PathLike[str] | None = None) -> CachedChampion:
    """The ``hws-gemm`` champion: the alias resolved through MLflow's client, the model from the cache.

    The unwrapped model of each champion version is cached keyed by name, version and run id;
    a moved alias names a new key, so a stale model is never used. A miss loads the version
    through the registry (:func:`~hwsurrogate.surrogates.registry.loading.load_predictor`) and caches it.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from hwsurrogate.surrogates.registry import loading
    from hwsurrogate.surrogates.registry.tracking import CHAMPION, configure_mlflow

    cache = gemm_model_cache(store_root)
    configure_mlflow()
    try:
        mv = MlflowClient().get_model_version_by_alias(cache.name, CHAMPION)
    except MlflowException:
        mv = None  # not registered: load_predictor raises the error that says what to run
    if mv is not None:
        key = _gemm_key(cache.name, str(mv.version), str(mv.run_id))
        if cache.path(key).is_file():
            return CachedChampion(cache.load(key), cache.name, str(mv.version))
    predictor = loading.load_predictor("gemm", check_requirements=False)
    model = loading.native_model(predictor.model) or predictor.model
    if mv is not None and str(mv.version) == str(predictor.version):
        cache_champion(model, cache.name, str(mv.version), str(mv.run_id), store_root)
    return CachedChampion(model, predictor.name, str(predictor.version))


def cache_champion(
    model: Any, name: str, version: str, run_id: str, store_root: str | os.PathLike[str] | None = None
) -> Path | None:
    """Cache the unwrapped champion where :func:`load_gemm_champion` looks for it first.

    ``hws train gemm`` calls this when it promotes a version, so even the first ``hws adapt
    --task gemm`` after training skips the MLflow model load. Returns the file, or None when it
    could not be written (a missing cache only makes adaptation slower, never different).
    """
    try:
        return gemm_model_cache(store_root).export(model, _gemm_key(name, version, run_id))
    except OSError:
        return None
