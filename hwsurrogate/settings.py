"""One typed settings object for the CLI, the collectors and the service.

Every field reads an environment variable with the prefix ``HWSURROGATE_`` (for example
``HWSURROGATE_STORE``, ``HWSURROGATE_DATA_DIR``); command-line flags override them.
MLflow follows its own ``MLFLOW_TRACKING_URI`` when set, else the embedded SQLite default.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HWSURROGATE_", extra="ignore")

    store: str = Field(
        default="store", description="The dataset store: a directory, or an s3://bucket/prefix URI."
    )
    local_dir: Path = Field(
        default=Path("hws-local"),
        description="Local folder for model caches (models/), the few-shot registry (adapted/) and collector "
        "batches awaiting --push (unsent/) when the store is an s3:// URI; a store directory holds them itself.",
    )
    data_dir: Path | None = Field(
        default=None, description="Folder holding the public data (latency/, gemm/, fpga/)."
    )
    service_token: str | None = Field(default=None, description="Bearer token required for writes.")
    service_host: str = "127.0.0.1"
    service_port: int = 8000

    def tracking_uri(self) -> str:
        """MLflow tracking URI: ``MLFLOW_TRACKING_URI`` if set, else the embedded SQLite store."""
        return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


#: an S3 bucket name (3-63 lowercase letters, digits, dots and hyphens, starting and ending alphanumeric)
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def is_store_uri(location: str | os.PathLike[str]) -> bool:
    """Whether a store location is an object-store URI (``s3://...``) rather than a directory."""
    return "://" in os.fspath(location)


def check_store_location(location: str | os.PathLike[str]) -> str:
    """The store location checked: a directory, or ``s3://bucket[/prefix]`` (trailing ``/`` dropped).

    Raises :class:`ValueError` saying what is wrong (callers name their flag or variable): an
    empty location, a scheme other than ``s3`` (the only object store the store is tested on),
    or an ``s3://`` URI without a valid bucket name.
    """
    text = os.fspath(location)
    if not text.strip():
        raise ValueError("the store location is empty; give a directory or an s3://bucket/prefix URI")
    if not is_store_uri(text):
        return text
    scheme, _, rest = text.partition("://")
    if scheme != "s3":
        raise ValueError(
            f"{text!r}: unsupported scheme {scheme + '://'!r}; give a directory or an s3://bucket/prefix URI"
        )
    bucket = rest.split("/", 1)[0]
    if not bucket:
        raise ValueError(f"{text!r} names no bucket; expected s3://bucket/prefix")
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ValueError(
            f"{text!r}: {bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, '.' and '-')"
        )
    return text.rstrip("/")


def local_root(store: str | os.PathLike[str] | None = None) -> Path:
    """The local folder beside a store: model caches, the few-shot registry, unsent collector batches.

    A store directory is its own local root (``<store>/models``, ``<store>/adapted``, ...); an
    object store (``s3://...``) cannot hold these files, so they go to ``$HWSURROGATE_LOCAL_DIR``
    (default ``./hws-local``). ``store`` defaults to ``$HWSURROGATE_STORE``.
    """
    settings = get_settings(fresh=True)
    raw = os.fspath(store) if store is not None else settings.store
    return Path(settings.local_dir) if is_store_uri(raw) else Path(raw)


@lru_cache(maxsize=1)
def _cached() -> Settings:
    return Settings()


def get_settings(*, fresh: bool = False) -> Settings:
    """The process-wide settings; ``fresh=True`` re-reads the environment."""
    if fresh:
        _cached.cache_clear()
    return _cached()
