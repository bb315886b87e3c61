"""Store look-ups the routes share: arch index -> canonical arch_key, and known devices."""

from __future__ import annotations

import threading

import polars as pl

from hwsurrogate.datasets.archspaces import check_arch_key
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.service.errors import InvalidFieldError, NotFoundError


class ArchIndex:
    """``arch_index -> arch_key`` per space, read from the store's latency table on first use.

    A miss re-reads the table once (uploads may have added architectures) before it is a 404.
    """

    def __init__(self, store: DatasetStore) -> None:
        self.store = store
        self._maps: dict[str, pl.DataFrame] = {}
        self._lock = threading.Lock()

    def _load(self, space: str) -> pl.DataFrame:
        return (
            self.store.scan("latency", space=space)
            .filter(pl.col("arch_index").is_not_null())
            .select("arch_index", "arch_key")
            .unique("arch_index", keep="first")
            .collect()
        )

    def resolve(self, space: str, indices: pl.Series, *, field: str) -> pl.Series:
        """Canonical keys of ``indices`` (same order); 404 naming the first unknown index."""
        with self._lock:
            table = self._maps.get(space)
            for attempt in range(2):
                if table is None or attempt == 1:
                    table = self._load(space)
                    self._maps[space] = table
                joined = pl.DataFrame({"arch_index": indices.cast(pl.Int64)}).join(
                    table, on="arch_index", how="left", maintain_order="left"
                )
                missing = joined["arch_key"].is_null()
                if not missing.any():
                    return joined["arch_key"]
        pos = int(missing.arg_true()[0])
        raise NotFoundError(
            f"{field}.{pos}.arch_index",
            f"{field}[{pos}].arch_index={int(indices[pos])}: no {space} architecture with this index in the "
            f"store ({table.height} indexed); send arch_key instead",
        )


def canonical_keys(space: str, keys: list[str | None], *, field: str) -> list[str | None]:
    """Validate and canonicalise arch keys (None kept); 422 naming the first bad one."""
    out: list[str | None] = []
    cache: dict[str, str] = {}
    for i, key in enumerate(keys):
        if key is None:
            out.append(None)
            continue
        if key not in cache:
            try:
                cache[key] = check_arch_key(space, key)
            except ValueError as exc:
                raise InvalidFieldError(f"{field}.{i}.arch_key", f"{field}[{i}].arch_key: {exc}") from None
        out.append(cache[key])
    return out


def store_devices(store: DatasetStore) -> dict[str, dict[str, object]]:
    """device_id -> {kind, name, descriptors, tables: {kind: rows}} over every table with devices."""
    out: dict[str, dict[str, object]] = {}
    for kind in ("gemm", "latency"):
        counts = store.scan(kind).group_by("device_id").agg(pl.len().alias("rows")).collect()
        for dev, rows in counts.iter_rows():
            out.setdefault(dev, {"tables": {}})["tables"][kind] = int(rows)  # type: ignore[index]
    devices = store.scan("devices").unique("device_id", keep="last").collect()
    for row in devices.iter_rows(named=True):
        entry = out.setdefault(row["device_id"], {"tables": {}})
        entry["tables"]["devices"] = 1  # type: ignore[index]
        entry["kind"] = row["kind"]
        entry["name"] = row["name"]
        entry["row"] = row
    return out
