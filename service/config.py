"""The service's configuration: one frozen object, built from flags or the environment."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from hwsurrogate.service.schemas import MAX_PREDICT_QUERIES
from hwsurrogate.settings import check_store_location, get_settings, is_store_uri, local_root
from hwsurrogate.surrogates.api import MODEL_NAMES

#: Environment variable carrying ``--model-version`` pins to worker processes (JSON {task: version}).
MODEL_VERSIONS_ENV = "HWSURROGATE_SERVICE_MODEL_VERSIONS"
#: ``--no-batching`` for worker processes ("0" turns request batching off).
BATCHING_ENV = "HWSURROGATE_SERVICE_BATCHING"
#: ``--preload-models`` for worker processes ("1" loads the models during start-up).
PRELOAD_ENV = "HWSURROGATE_SERVICE_PRELOAD_MODELS"


@dataclass(frozen=True)
class ServiceConfig:
    """What ``create_app`` needs; every field has a default that runs with no configuration."""

    #: a directory (a Path) or an object-store URI (a str, ``s3://bucket/prefix``): see docs/store.md
    store: Path | str = field(default_factory=lambda: get_settings(fresh=True).store)
    token: str | None = None  # bearer token for writes; None refuses every write (403)
    model_versions: dict[str, str] = field(default_factory=dict)  # task -> pinned registry version
    load_models: bool = True  # False: start with no models (tests override the dependency)
    batching: bool = True  # merge concurrent predict calls into one model call (see batching.py)
    #: load the models during start-up (the server is ready only once they are) instead of at the
    #: first request that needs one; costs the models' memory (MLflow and its imports included) up front
    preload_models: bool = False
    adapted_root: Path | None = None  # root of the few-shot registry; default: local_root(store)
    max_body_bytes: int = 8 * 1024 * 1024
    max_predict_queries: int = MAX_PREDICT_QUERIES
    max_upload_rows: int = 50_000
    max_upload_decoded_bytes: int = 128 * 1024 * 1024  # a parquet upload's uncompressed size, per footer
    max_page_rows: int = 50_000

    def __post_init__(self) -> None:
        try:
            location = check_store_location(self.store)
        except ValueError as exc:
            raise ValueError(f"store: {exc}") from None
        object.__setattr__(self, "store", location if is_store_uri(location) else Path(location))
        if self.adapted_root is not None:
            object.__setattr__(self, "adapted_root", Path(self.adapted_root))
        unknown = sorted(set(self.model_versions) - set(MODEL_NAMES))
        if unknown:
            raise ValueError(f"model_versions: unknown task(s) {unknown}; expected {sorted(MODEL_NAMES)}")
        if self.token is not None and len(self.token) < 8:
            raise ValueError("token: use at least 8 characters (hws serve prints a generated one if unset)")

    @cached_property
    def adapted_dir(self) -> Path:
        """The few-shot registry's local folder: ``adapted_root``, else the store directory, else (an
        ``s3://`` store) ``$HWSURROGATE_LOCAL_DIR`` (:func:`~hwsurrogate.settings.local_root`).

        Resolved once per config: the dispatch asks for it on every prediction, and re-reading the
        settings from the environment cost ~0.3 ms a request."""
        return self.adapted_root if self.adapted_root is not None else local_root(self.store)

    @property
    def store_name(self) -> str:
        """The store's last path component (``/srv/store`` -> ``store``, ``s3://b/team/hws`` -> ``hws``)."""
        if isinstance(self.store, Path):
            return self.store.name
        return self.store.partition("://")[2].rstrip("/").rsplit("/", 1)[-1]

    @classmethod
    def from_env(cls) -> ServiceConfig:
        """Build from ``HWSURROGATE_*`` variables (used by ``hws serve`` worker processes)."""
        settings = get_settings(fresh=True)
        pins = json.loads(os.environ.get(MODEL_VERSIONS_ENV) or "{}")
        load = os.environ.get("HWSURROGATE_SERVICE_LOAD_MODELS", "1") != "0"
        return cls(
            store=settings.store,
            token=settings.service_token or None,
            model_versions=pins,
            load_models=load,
            batching=os.environ.get(BATCHING_ENV, "1") != "0",
            preload_models=os.environ.get(PRELOAD_ENV, "0") == "1",
        )
