"""Local copies of registered models, keyed by name and version, so short commands skip MLflow loads."""

from __future__ import annotations

import contextlib
import os
import pickle
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsurrogate.io import safe_name
from hwsurrogate.settings import get_settings
from hwsurrogate.surrogates.registry.adapted import adapted_dir

# --------------------------------------------------------------------------- loading the champion once


@dataclass
class _Champion:
    """The GEMM champion as ``adapt_gemm`` needs it (same attributes as a LoadedPredictor)."""

    model: Any
    name: str
    version: str


def _sqlite_champion(uri: str, name: str, alias: str = "champion") -> tuple[str, str] | None:
    """(version, run_id) behind ``name@alias`` read from a SQLite MLflow registry, else None.

    A read-only query of two registry tables (milliseconds, no MLflow import). Any surprise
    (another backend, an unexpected schema, no alias) returns None and the caller goes the
    MLflow way, so this can only be a shortcut, never a different answer.
    """
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
            row = con.execute(
                "SELECT a.version, v.run_id FROM registered_model_aliases a JOIN model_versions v "
                "ON v.name = a.name AND v.version = a.version WHERE a.name = ? AND a.alias = ?",
                (name, alias),
            ).fetchone()
    except sqlite3.Error:
        return None
    return (str(row[0]), str(row[1])) if row else None


def _champion_cache_path(
    name: str, version: str, run_id: str, store_root: str | os.PathLike[str] | None
) -> Path:
    return adapted_dir(store_root) / ".models" / f"{safe_name(name)}-v{version}-{safe_name(run_id)}.pkl"


def load_gemm_champion(store_root: str | os.PathLike[str] | None = None) -> _Champion:
    """The ``hws-gemm`` champion, loaded through MLflow once and then from a local cache.

    MLflow's import and registry client cost seconds per process, so the unwrapped model of
    each champion version is also pickled under ``<store>/adapted/gemm/.models/`` keyed by
    name, version and run id. Later calls resolve the alias with a read-only registry query
    and unpickle that file; a moved alias names a new key, so a stale model is never used.
    """
    from hwsurrogate.surrogates.api import MODEL_NAMES

    name = MODEL_NAMES["gemm"]
    hit = _sqlite_champion(get_settings(fresh=True).tracking_uri(), name)
    if hit is not None:
        cached = _champion_cache_path(name, *hit, store_root)
        if cached.is_file():
            with cached.open("rb") as fh:
                return _Champion(pickle.load(fh), name, hit[0])
    from hwsurrogate.surrogates.registry.loading import load_predictor, native_model

    predictor = load_predictor("gemm", check_requirements=False)
    model = native_model(predictor.model) or predictor.model
    hit = _sqlite_champion(get_settings(fresh=True).tracking_uri(), name)
    if hit is not None and hit[0] == str(predictor.version):
        cache_champion(model, name, hit[0], hit[1], store_root)
    return _Champion(model, predictor.name, str(predictor.version))


def cache_champion(
    model: Any, name: str, version: str, run_id: str, store_root: str | os.PathLike[str] | None = None
) -> Path | None:
    """Pickle the unwrapped champion where :func:`load_gemm_champion` looks for it first.

    ``hws train gemm`` calls this when it promotes a version, so even the first ``hws adapt
    --task gemm`` after training skips the MLflow load. Returns the file, or None when it could
    not be written (a missing cache only makes adaptation slower, never different).
    """
    target = _champion_cache_path(name, version, run_id, store_root)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".model.", suffix=".tmp")
    except OSError:
        return None
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, target)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        return None
    return target
