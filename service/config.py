"""The service's configuration: one frozen object, built from flags or the environment."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from hwsurrogate.service.schemas import MAX_PREDICT_QUERIES
from hwsurrogate.settings import get_settings
from hwsurrogate.surrogates.api import MODEL_NAMES

#: Environment variable carrying ``--model-version`` pins to worker processes (JSON {task: version}).
MODEL_VERSIONS_ENV = "HWSURROGATE_SERVICE_MODEL_VERSIONS"


@dataclass(frozen=True)
class ServiceConfig:
    """What ``create_app`` needs; every field has a default that runs with no configuration."""

    store: Path = field(default_factory=lambda: Path(get_settings(fresh=True).store))
    token: str | None = None  # bearer token for writes; None refuses every write (403)
    model_versions: dict[str, str] = field(default_factory=dict)  # task -> pinned registry version
    load_models: bool = True  # False: start with no models (tests override the dependency)
    batching: bool = True  # merge concurrent predict calls into one model call (see batching.py)
    adapted_root: Path | None = None  # root of the few-shot registry; default: the store root
    max_body_bytes: int = 8 * 1024 * 1024
    max_predict_queries: int = MAX_PREDICT_QUERIES
    max_upload_rows: int = 50_000
    max_upload_decoded_bytes: int = 128 * 1024 * 1024  # a parquet upload's uncompressed size, per footer
    max_page_rows: int = 50_000

    def __post_init__(self) -> None:
        object.__setattr__(self, "store", Path(self.store))
        if self.adapted_root is not None:
            object.__setattr__(self, "adapted_root", Path(self.adapted_root))
        unknown = sorted(set(self.model_versions) - set(MODEL_NAMES))
        if unknown:
            raise ValueError(f"model_versions: unknown task(s) {unknown}; expected {sorted(MODEL_NAMES)}")
        if self.token is not None and len(self.token) < 8:
            raise ValueError("token: use at least 8 characters (hws serve prints a generated one if unset)")

    @property
    def adapted_dir(self) -> Path:
        return self.adapted_root if self.adapted_root is not None else self.store

    @classmethod
    def from_env(cls) -> ServiceConfig:
        """Build from ``HWSURROGATE_*`` variables (used by ``hws serve`` worker processes)."""
        settings = get_settings(fresh=True)
        pins = json.loads(os.environ.get(MODEL_VERSIONS_ENV) or "{}")
        load = os.environ.get("HWSURROGATE_SERVICE_LOAD_MODELS", "1") != "0"
        return cls(
            store=Path(settings.store),
            token=settings.service_token or None,
            model_versions=pins,
            load_models=load,
        )
