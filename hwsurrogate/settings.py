"""One typed settings object for the CLI, the collectors and the service.

Every field reads an environment variable with the prefix ``HWSURROGATE_`` (for example
``HWSURROGATE_STORE``, ``HWSURROGATE_DATA_DIR``); command-line flags override them.
MLflow follows its own ``MLFLOW_TRACKING_URI`` when set, else the embedded SQLite default.
"""

from __future__ import annotations

import os
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
    data_dir: Path | None = Field(
        default=None, description="Folder holding the public data (latency/, gemm/, fpga/)."
    )
    service_token: str | None = Field(default=None, description="Bearer token required for writes.")
    service_host: str = "127.0.0.1"
    service_port: int = 8000

    def tracking_uri(self) -> str:
        """MLflow tracking URI: ``MLFLOW_TRACKING_URI`` if set, else the embedded SQLite store."""
        return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


@lru_cache(maxsize=1)
def _cached() -> Settings:
    return Settings()


def get_settings(*, fresh: bool = False) -> Settings:
    """The process-wide settings; ``fresh=True`` re-reads the environment."""
    if fresh:
        _cached.cache_clear()
    return _cached()
