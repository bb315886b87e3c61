"""The local dataset store: one parquet file per (table kind, partition), written with polars.

Layout under the root directory::

    <root>/.lock                         file lock held by every writer
    <root>/.journal.json                 present only between a commit point and its end
    <root>/<kind>/<partition>.parquet    one partition per source (or collector / uploader)

Guarantees:

- Every frame is checked against the declared schema (:mod:`.schemas`) before anything is
  written; a row that does not fit raises :class:`SchemaMismatchError` naming the column.
- A commit writes every new partition to a temporary file in the target folder (fsynced),
  then writes the journal (the commit point), then renames the files into place and removes
  the journal. A writer killed before the commit point leaves the store exactly as it was
  (its temporary files are swept by the next writer); one killed after it is rolled forward
  by the next open, so a multi-table import is all or nothing.
- Writers serialise on a file lock, so concurrent processes never lose each other's rows.
- ``append`` drops rows whose ``measurement_id`` is already stored (idempotent uploads);
  ``replace`` swaps a whole partition (idempotent re-imports).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import polars as pl
from filelock import FileLock, Timeout

from hwsurrogate.datasets.schemas import KINDS, Kind, check_kind, conform, schema
from hwsurrogate.errors import StoreError
from hwsurrogate.settings import get_settings

WriteMode = Literal["append", "replace"]
_PARTITION_RE = re.compile(r"[^A-Za-z0-9_.-]+")
_JOURNAL = ".journal.json"
_LOCK_TIMEOUT_S = 600.0


def partition_name(name: str) -> str:
    """A file-system-safe partition name derived from a source name ('collector:gemm' -> 'collector_gemm')."""
    clean = _PARTITION_RE.sub("_", name).strip("._")
    if not clean:
        raise StoreError(f"partition name {name!r} has no usable characters")
    return clean


def _fault(point: str) -> None:
    """Test hook: ``HWSURROGATE_STORE_FAULT=<point>`` kills this process at that point of a commit."""
    if os.environ.get("HWSURROGATE_STORE_FAULT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class Write:
    """One partition write of a commit."""

    kind: Kind
    partition: str
    frame: pl.DataFrame
    mode: WriteMode = "append"


class DatasetStore:
    """Parquet tables of measurements, one declared schema per kind (see :mod:`.schemas`)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else Path(get_settings(fresh=True).store)

    # ------------------------------------------------------------------ paths and locking
    def _kind_dir(self, kind: str) -> Path:
        return self.root / check_kind(kind)

    def partition_path(self, kind: str, partition: str) -> Path:
        return self._kind_dir(kind) / f"{partition_name(partition)}.parquet"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / ".lock"))
        try:
            lock.acquire(timeout=_LOCK_TIMEOUT_S)
        except Timeout:
            raise StoreError(
                f"store {self.root} is locked by another writer for over {_LOCK_TIMEOUT_S:.0f} s"
            ) from None
        try:
            self._recover()
            yield
        finally:
            lock.release()

    def _recover(self) -> None:
        """Roll a committed journal forward and sweep temporary files of killed writers (lock held)."""
        journal = self.root / _JOURNAL
        if journal.exists():
            try:
                renames = json.loads(journal.read_text())["renames"]
            except (ValueError, KeyError):
                renames = []  # a torn journal was never a commit point: it is written atomically
            for tmp, final in renames:
                if Path(tmp).exists():
                    os.replace(tmp, final)
            journal.unlink()
            _fsync_dir(self.root)
        for kind in KINDS:
            d = self.root / kind
            if d.is_dir():
                for tmp in d.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------ reading
    def partitions(self, kind: str) -> list[str]:
        d = self._kind_dir(kind)
        return sorted(p.stem for p in d.glob("*.parquet")) if d.is_dir() else []

    def scan(
        self,
        kind: str,
        *,
        device: str | list[str] | None = None,
        space: str | None = None,
        source: str | list[str] | None = None,
    ) -> pl.LazyFrame:
        """A lazy view of one table, optionally filtered by device id(s), space and source(s)."""
        paths = [self.partition_path(kind, p) for p in self.partitions(kind)]
        lf = pl.scan_parquet(paths) if paths else pl.LazyFrame(schema=schema(kind))
        if device is not None:
            if "device_id" not in schema(kind):
                raise StoreError(f"table {kind!r} has no device_id column to filter on")
            lf = lf.filter(pl.col("device_id").is_in([device] if isinstance(device, str) else device))
        if space is not None:
            if "space" not in schema(kind):
                raise StoreError(f"table {kind!r} has no space column to filter on")
            lf = lf.filter(pl.col("space") == space)
        if source is not None:
            lf = lf.filter(pl.col("source").is_in([source] if isinstance(source, str) else source))
        return lf

    def read(self, kind: str, **filters: object) -> pl.DataFrame:
        """Eager version of :meth:`scan`."""
        return self.scan(kind, **filters).collect()  # type: ignore[arg-type]

    def summary(self) -> dict[str, dict[str, object]]:
        """Row counts per kind and per source, and the device ids present."""
        out: dict[str, dict[str, object]] = {}
        for kind in KINDS:
            lf = self.scan(kind)
            per_source = lf.group_by("source").agg(pl.len().alias("rows")).sort("source").collect()
            entry: dict[str, object] = {
                "rows": int(per_source["rows"].sum()) if per_source.height else 0,
                "sources": dict(
                    zip(per_source["source"].to_list(), per_source["rows"].to_list(), strict=True)
                ),
            }
            if "device_id" in schema(kind):
                entry["devices"] = (
                    lf.select(pl.col("device_id").unique().sort()).collect()["device_id"].to_list()
                )
            out[kind] = entry
        return out

    # ------------------------------------------------------------------ writing
    def append(self, kind: str, frame: pl.DataFrame, *, partition: str) -> int:
        """Add rows to a partition, dropping measurement ids already stored; returns rows added."""
        return self.commit([Write(check_kind(kind), partition, frame, "append")])[
            (kind, partition_name(partition))
        ]

    def replace(self, kind: str, frame: pl.DataFrame, *, partition: str) -> int:
        """Swap a whole partition for ``frame`` (re-imports are idempotent); returns its row count."""
        return self.commit([Write(check_kind(kind), partition, frame, "replace")])[
            (kind, partition_name(partition))
        ]

    def commit(
        self, writes: list[Write] | Mapping[tuple[str, str], pl.DataFrame], *, mode: WriteMode = "replace"
    ) -> dict[tuple[str, str], int]:
        """Write several partitions (possibly of several kinds) all or nothing.

        Returns the rows added (append) or written (replace) per (kind, partition).
        """
        if isinstance(writes, Mapping):
            writes = [Write(check_kind(k), p, f, mode) for (k, p), f in writes.items()]
        now = datetime.now(UTC)
        checked: list[Write] = []
        for w in writes:  # validate everything before touching the disk
            frame = w.frame
            if "imported_at" not in frame.columns:
                frame = frame.with_columns(pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias("imported_at"))
            frame = conform(w.kind, frame, context=f"partition {partition_name(w.partition)!r}")
            dup = frame["measurement_id"].is_duplicated()
            if w.mode == "replace" and dup.any():
                first = frame["measurement_id"].filter(dup)[0]
                raise StoreError(
                    f"{w.kind}: {int(dup.sum())} rows share a measurement_id (e.g. {first!r}); "
                    "an import must not contain the same measurement twice"
                )
            checked.append(Write(w.kind, partition_name(w.partition), frame, w.mode))

        counts: dict[tuple[str, str], int] = {}
        with self._locked():
            staged: list[tuple[str, str]] = []
            try:
                for w in checked:
                    final = self.partition_path(w.kind, w.partition)
                    frame = w.frame
                    if w.mode == "append":
                        frame = frame.unique("measurement_id", keep="first", maintain_order=True)
                        known = self.scan(w.kind).select("measurement_id").collect()["measurement_id"]
                        frame = frame.filter(~pl.col("measurement_id").is_in(known.implode()))
                        counts[(w.kind, w.partition)] = frame.height
                        if frame.height == 0:
                            continue
                        if final.exists():
                            frame = pl.concat([pl.read_parquet(final), frame], how="vertical")
                    else:
                        counts[(w.kind, w.partition)] = frame.height
                    if "device_id" in frame.columns:
                        frame = frame.sort("device_id", maintain_order=True)
                    final.parent.mkdir(parents=True, exist_ok=True)
                    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}.tmp"
                    frame.write_parquet(tmp, compression="zstd", statistics=True, row_group_size=65536)
                    with open(tmp, "rb+") as fh:
                        os.fsync(fh.fileno())
                    staged.append((str(tmp), str(final)))
                    _fault("after_temp")
                if not staged:
                    return counts
                journal = self.root / _JOURNAL
                jtmp = self.root / f".journal.{uuid.uuid4().hex}.tmp"
                jtmp.write_text(json.dumps({"renames": staged}))
                with open(jtmp, "rb+") as fh:
                    os.fsync(fh.fileno())
                os.replace(jtmp, journal)  # the commit point
                _fsync_dir(self.root)
            except BaseException:
                for tmp, _ in staged:
                    Path(tmp).unlink(missing_ok=True)
                raise
            _fault("after_journal")
            for i, (tmp, final) in enumerate(staged):
                os.replace(tmp, final)
                if i == 0:
                    _fault("mid_rename")
            for d in {Path(f).parent for _, f in staged}:
                _fsync_dir(d)
            (self.root / _JOURNAL).unlink()
            _fsync_dir(self.root)
        return counts
