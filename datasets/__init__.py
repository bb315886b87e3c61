"""Datasets: declared schemas, the parquet store, importers of public data and collectors.

Knows nothing of models or HTTP.
"""

from .schemas import KINDS, Kind, conform, schema
from .store import DatasetStore, Write

__all__ = ["KINDS", "DatasetStore", "Kind", "Write", "conform", "schema"]
