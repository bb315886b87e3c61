"""Datasets: declared schemas, the parquet store, importers of public data and collectors.

Knows nothing of models or HTTP.
"""

from hwsurrogate.datasets.schemas import KINDS, Kind, conform, schema
from hwsurrogate.datasets.store import DatasetStore, Write

__all__ = ["KINDS", "DatasetStore", "Kind", "Write", "conform", "schema"]
