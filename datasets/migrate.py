"""``hws data migrate``: convert a store written before Delta Lake into the Delta tables of
:class:`~hwsurrogate.datasets.store.DatasetStore`, all or nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl

from hwsurrogate.datasets.schemas import KINDS, check_kind
from hwsurrogate.datasets.store import DatasetStore, Write
from hwsurrogate.errors import StoreError

__all__ = ["migrate_parquet_store"]


def migrate_parquet_store(root: str | os.PathLike[str]) -> dict[tuple[str, str], int]:
    """Convert a store written before Delta Lake (``<kind>/<partition>.parquet``) in place, all or nothing.

    A commit the old store left half done (``.journal.json``) is rolled forward first, as the
    old code did. Every partition file becomes the same ``_partition`` of its kind's Delta table
    in one multi-table commit; the old files are then moved to ``<root>/pre-delta/`` (delete
    that folder once satisfied). Returns the rows per (kind, partition); running it again on a
    migrated store does nothing.
    """
    base = Path(root)
    journal = base / ".journal.json"
    if journal.exists():
        try:
            renames = json.loads(journal.read_text())["renames"]
        except (ValueError, KeyError):
            renames = []  # a torn journal was never a commit point: it was written atomically
        for tmp, final in renames:
            if Path(tmp).exists():
                os.replace(tmp, final)
        journal.unlink()
    files = sorted(p for kind in KINDS for p in (base / kind).glob("*.parquet"))
    if not files:
        return {}
    writes = []
    for path in files:
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:
            raise StoreError(
                f"{path}: not a readable parquet partition ({exc}); nothing was migrated"
            ) from None
        writes.append(Write(check_kind(path.parent.name), path.stem, frame, "replace"))
    store = DatasetStore(base)
    # the legacy files sit where the Delta tables go: move them aside first, back again on failure
    backup = base / "pre-delta"
    moved: list[tuple[Path, Path]] = []
    for path in files:
        target = backup / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        moved.append((target, path))
    try:
        counts = store.commit(writes)
    except BaseException:
        for target, path in moved:
            os.replace(target, path)
        raise
    for stale in (".lock", ".journal.json"):
        (base / stale).unlink(missing_ok=True)
    for tmp in (p for kind in KINDS for p in (base / kind).glob(".*.tmp")):
        tmp.unlink(missing_ok=True)
    return counts
