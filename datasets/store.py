"""The dataset store: one Delta Lake table per kind, on a local directory or an object store.

Layout under the root (a directory, or an ``s3://bucket/prefix`` URI)::

    <root>/<kind>/_delta_log/...     one Delta table per kind, partitioned by ``_partition``
    <root>/_commits/_delta_log/...   the commit table: one row per multi-table import

Every table carries two hidden columns that :meth:`DatasetStore.scan` never shows:
``_partition`` (the source / collector / uploader a row came from: the old file name) and
``_txn`` (null, or the id of the multi-table import that wrote the row).

Modules: this one holds the tables, the writes, recovery and maintenance (:class:`DatasetStore`);
:mod:`.store_commits` the commit protocol they share (transaction ids, the rows of ``_commits``
and the state read from them, the visibility rule, the retry of a conflicting Delta commit);
:mod:`.store_reads` how one table version is read (snapshots, pages).

Guarantees, and the tests that hold them (``tests/datasets/test_store*.py``,
``tests/service/test_datasets.py``, ``tests/service/test_server_process.py``):

- Every frame is checked against the declared schema (:mod:`.schemas`) before anything is
  written; a row that does not fit raises :class:`SchemaMismatchError` naming the column.
- A write to one table is one Delta commit: readers see all of it or none of it, and a
  writer killed at any point leaves the table at its last commit (Delta's atomic log).
- ``append`` is a Delta MERGE on ``measurement_id`` that inserts only unseen ids, so uploads
  are idempotent. The merge reads only the files whose ``measurement_id`` statistics can hold
  the new ids (an ``IN`` list in the predicate), never the whole table. Concurrent writers
  (threads or processes, locally or on S3) are serialised by Delta's optimistic concurrency:
  a writer whose commit conflicts retries (:data:`RETRIES`), so none loses another's rows.
- ``replace`` swaps one partition (an overwrite with a ``_partition`` predicate).
- A commit of several tables (an import: GEMM rows *and* their devices) is all or nothing for
  readers, even after ``kill -9`` between the tables' commits: its rows are written tagged
  with a transaction id, invisible until one row naming that id is appended to ``_commits``
  (the commit point). Replaced partitions are then deleted; until that is done (or if the
  writer dies first) readers hide them by the same commit row, and the next writer finishes
  the job. Rows of an import that never reached its commit point stay invisible and are
  removed by :meth:`DatasetStore.compact`.
- Reads drop that visibility filter (so polars pushes slices, counts and predicates into the
  parquet reads) only while it changes nothing: every ``_txn`` in the version read is null or
  committed (told by the files' ``_txn`` statistics) and no replace of the table is pending.
  Each table version is opened once and shared by the threads reading it (``docs/store.md``).
- :meth:`DatasetStore.versions` names the version of every table; a store opened with
  ``versions=`` reads exactly those (Delta time travel), which is how a training run is
  reproduced (``hws train ... --data-version``).

Fault points for tests (``HWSURROGATE_STORE_FAULT=<point>`` kills the writer with SIGKILL):
``after_temp`` after the first table of a multi-table commit (before its commit point; for a
one-table write: before the write), ``after_journal`` right after the commit point,
``mid_rename`` after the first replaced partition was deleted (for a one-table write: after
its commit, before the caller hears of it).
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl
import pyarrow as pa

from hwsurrogate.datasets.schemas import KINDS, Kind, check_kind, conform, schema
from hwsurrogate.datasets.store_commits import (
    COMMITS,
    COMMITS_SCHEMA,
    RETRIES,
    CommitState,
    commit_row,
    is_conflict,
    new_txn,
    read_commit_state,
    retry_commit,
    sql_str,
    txn_time,
    visible_predicate,
    visible_rows,
)
from hwsurrogate.datasets.store_reads import Page, Snapshot, page_batches, table_files, table_txns
from hwsurrogate.errors import StoreError
from hwsurrogate.settings import check_store_location, get_settings, is_store_uri

__all__ = [
    "COMMITS",
    "RETRIES",
    "DatasetStore",
    "Page",
    "Write",
    "WriteMode",
    "format_versions",
    "parse_versions",
    "partition_name",
]

WriteMode = Literal["append", "replace"]
_PARTITION_RE = re.compile(r"[^A-Za-z0-9_.-]+")
#: row groups of 64k rows: a device's rows (writes are sorted by device) are read without the rest
_ROW_GROUP_ROWS = 65536
#: appends of at most this many rows name their ids in the MERGE predicate (file skipping)
_IN_LIST_MAX = 5000
_HIDDEN = ("_partition", "_txn")
#: a checkpoint every 10 commits keeps opening a table of many small uploads cheap
_CHECKPOINT_EVERY = "10"
#: a table kept open (to read only new log entries) is opened afresh, from its latest checkpoint,
#: once it has moved this many versions: delta-rs's updates and commits on an open table get
#: slower with every commit it has seen since it was opened (a writer's 10-row upload went from
#: ~50 to ~100 ms over 100 uploads; reopened every 10 versions it stays flat)
_REOPEN_AFTER = 10
#: per-file statistics only for the columns reads and merges filter on (fewer stats: cheaper small writes)
_STATS_COLUMNS = ("measurement_id", "_txn", "device_id", "source", "space", "kernel", "imported_at")


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


def format_versions(versions: Mapping[str, int]) -> str:
    """``{'gemm': 3, 'devices': 1}`` -> ``'devices=1,gemm=3'`` (the form ``--data-version`` takes)."""
    return ",".join(f"{k}={int(v)}" for k, v in sorted(versions.items()))


def parse_versions(text: str) -> dict[str, int]:
    """Parse ``'gemm=3,devices=1,_commits=2'`` (as recorded in MLflow) into a dict, naming a bad part."""
    out: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or (name != COMMITS and name not in KINDS) or not value.strip().isdigit():
            raise StoreError(
                f"--data-version part {part!r} is not TABLE=VERSION with TABLE one of "
                f"{[*KINDS, COMMITS]} and VERSION a whole number >= 0"
            )
        out[name] = int(value)
    if not out:
        raise StoreError("--data-version is empty; give TABLE=VERSION pairs, e.g. gemm=3,devices=1")
    return out


def _arrow(frame: pl.DataFrame) -> pa.Table:
    """A polars frame as an Arrow table with plain (not view) strings, which Delta stores."""
    table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())  # large strings: delta-rs writes them faster
    fields = [
        pa.field(f.name, pa.large_string() if pa.types.is_string_view(f.type) else f.type, f.nullable)
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def _writer_properties() -> Any:
    from deltalake import WriterProperties

    return WriterProperties(max_row_group_size=_ROW_GROUP_ROWS)


@dataclass(frozen=True)
class Write:
    """One partition write of a commit."""

    kind: Kind
    partition: str
    frame: pl.DataFrame
    mode: WriteMode = "append"


class DatasetStore:
    """Delta Lake tables of measurements, one declared schema per kind (see :mod:`.schemas`).

    ``root`` is a directory (the embedded default) or an object-store URI such as
    ``s3://bucket/prefix``; ``storage_options`` go to delta-rs (credentials, endpoint), else
    the ``AWS_*`` environment variables are used. ``versions`` pins the tables read (time
    travel, see :meth:`versions`); a pinned store refuses writes.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        storage_options: Mapping[str, str] | None = None,
        versions: Mapping[str, int] | None = None,
    ) -> None:
        raw = os.fspath(root) if root is not None else os.fspath(get_settings(fresh=True).store)
        try:
            raw = check_store_location(raw)
        except ValueError as exc:
            raise StoreError(f"--store / $HWSURROGATE_STORE: {exc}") from None
        self.is_remote = is_store_uri(raw)
        self.root: Path | str = str(raw).rstrip("/") if self.is_remote else Path(raw)
        self.storage_options: dict[str, str] | None = dict(storage_options) if storage_options else None
        if self.is_remote and str(raw).startswith("s3://"):
            opts = {"AWS_S3_ALLOW_UNSAFE_RENAME": "false", "conditional_put": "etag"}
            opts.update(self.storage_options or {})
            self.storage_options = opts
        self.pinned: dict[str, int] | None = dict(versions) if versions is not None else None
        self._commit_cache: tuple[int, CommitState] | None = None
        #: table -> the version this object last read (what a training run records)
        self.read_versions: dict[str, int] = {}
        self._local = threading.local()  # per thread: kind -> DeltaTable kept open (refreshed per use)
        #: kind -> the newest version read and its shared snapshot (see :meth:`_snapshot`)
        self._snapshots: dict[str, Snapshot] = {}
        self._snapshots_lock = threading.Lock()

    # ------------------------------------------------------------------ tables
    def table_uri(self, kind: str) -> str:
        """Where the Delta table of ``kind`` (or of ``_commits``) lives."""
        name = kind if kind == COMMITS else check_kind(kind)
        if self.is_remote:
            return f"{self.root}/{name}"
        return str(Path(self.root) / name)

    def _table(self, kind: str, version: int | None = None) -> Any | None:
        """The DeltaTable of ``kind`` (at ``version``), or None when it was never written."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        uri = self.table_uri(kind)
        if not self.is_remote and not (Path(uri) / "_delta_log").is_dir():
            if kind != COMMITS and any(Path(uri).glob("*.parquet")):
                raise StoreError(
                    f"{uri} holds parquet partitions of the store before Delta Lake; "
                    f"run `hws data migrate --store {self.root}` once to convert them"
                )
            return None
        try:
            return DeltaTable(uri, version=version, storage_options=self.storage_options)
        except TableNotFoundError:
            return None
        except Exception as exc:
            if version is not None and "version" in str(exc).lower():
                latest = DatasetStore(self.root, storage_options=self.storage_options)._table(kind)
                have = f"its latest is {latest.version()}" if latest is not None else "it does not exist"
                raise StoreError(f"table {kind!r} has no version {version} ({have})") from None
            raise

    def versions(self) -> dict[str, int]:
        """The version of every table that exists (the store's state a training run records)."""
        if self.pinned is not None:
            return dict(self.pinned)
        out: dict[str, int] = {}
        for name in (*KINDS, COMMITS):
            dt = self._table(name)
            if dt is not None:
                out[name] = int(dt.version())
        return out

    def at(self, versions: Mapping[str, int] | str) -> DatasetStore:
        """A read-only view of this store at ``versions`` (a dict, or ``'gemm=3,devices=1'``)."""
        pins = parse_versions(versions) if isinstance(versions, str) else dict(versions)
        view = DatasetStore(self.root, storage_options=self.storage_options, versions=pins)
        for name, version in pins.items():  # a version that does not exist is an error now, not at a read
            if view._table(name, version) is None:
                raise StoreError(f"table {name!r} has no version {version} (it does not exist)")
        return view

    def history(self, kind: str, *, limit: int | None = None) -> list[dict[str, object]]:
        """The commits of one table, newest first (version, timestamp, operation, metrics)."""
        dt = self._table(kind)
        return [] if dt is None else list(dt.history(limit))

    # ------------------------------------------------------------------ commit state
    def _commit_state(self) -> CommitState:
        """Committed transactions and replaces not yet applied, from the ``_commits`` table."""
        # a view pinned without a _commits version uses the latest: commits only ever get added
        pin = self.pinned.get(COMMITS) if self.pinned is not None else None
        dt = self._kept_open(COMMITS) if pin is None else None  # kept open: new log entries only
        if dt is None:
            dt = self._table(COMMITS, pin)
            if dt is None:
                return CommitState(frozenset(), {})
            if pin is None:
                self._keep(COMMITS, dt)
        version = int(dt.version())
        self.read_versions[COMMITS] = version
        if self._commit_cache is not None and self._commit_cache[0] == version:
            return self._commit_cache[1]
        state = read_commit_state(pl.scan_delta(dt).collect())
        self._commit_cache = (version, state)
        return state

    # ------------------------------------------------------------------ reading
    def partitions(self, kind: str) -> list[str]:
        """The partitions (sources, collectors, uploaders) that have visible rows in ``kind``."""
        visible = self._visible_scan(kind)
        if visible is None:
            return []
        return sorted(visible[0].select(pl.col("_partition").unique()).collect()["_partition"].to_list())

    def _snapshot(self, kind: str) -> Snapshot | None:
        """The table of ``kind`` at its latest (or pinned) version; None when it does not exist.

        The version check is cheap: this thread's open table reads only new log entries. A new
        version is opened once and shared (with its transaction ids) by every thread's reads.
        """
        pin = self.pinned.get(kind) if self.pinned is not None else None
        if self.pinned is not None and pin is None:
            return None  # the table did not exist at the pinned state
        with self._snapshots_lock:
            snap = self._snapshots.get(kind)
        dt = None
        if pin is not None:
            version = pin
        elif snap is None:  # the first read: the table opened for it is the snapshot (one open)
            dt = self._table(kind)
            if dt is None:
                return None
            version = int(dt.version())
        else:
            probe = self._kept_open(kind)
            if probe is None:
                probe = self._table(kind)
                if probe is None:
                    return None
                self._keep(kind, probe)
            version = int(probe.version())
        if snap is None or snap.version != version:
            dt = dt if dt is not None else self._table(kind, version)
            if dt is None:
                return None
            actions = pl.DataFrame(dt.get_add_actions(flatten=True))
            txns = table_txns(self.table_uri(kind), actions, self.storage_options)
            files = None if self.is_remote else table_files(dt, actions)  # per-file page reads: local stores
            snap = Snapshot(version, dt, txns, files)
            with self._snapshots_lock:
                held = self._snapshots.get(kind)
                if held is None or held.version < version:
                    self._snapshots[kind] = snap
        self.read_versions[kind] = version
        return snap

    def _visible_scan(self, kind: str) -> tuple[pl.LazyFrame, bool, Snapshot] | None:
        """Every visible row of ``kind``, hidden columns included, whether the scan is unfiltered
        (the fast path) and the snapshot read; None when the table does not exist.

        Fast path: when every ``_txn`` in the version read is null or committed and no replace of
        this table is pending (the normal state), the Delta scan is returned unfiltered, so polars
        pushes projections, predicates, counts and slices into the parquet reads. Otherwise the
        visibility filter of :func:`.store_commits.visible_rows` is applied. The commit state is read before the
        table: a version read later can only hold more committed work, never less.
        """
        state = self._commit_state()
        snap = self._snapshot(kind)
        if snap is None:
            return None
        lf = pl.scan_delta(snap.table)
        pending = any(k == kind for k, _ in state.pending)
        if snap.txns is not None and not pending and snap.txns <= state.committed:
            return lf, True, snap
        return visible_rows(kind, lf, state, snap.txns), False, snap

    def _scan(
        self,
        kind: str,
        *,
        device: str | list[str] | None = None,
        space: str | None = None,
        source: str | list[str] | None = None,
    ) -> tuple[pl.LazyFrame, bool, tuple[tuple[str, int], ...] | None]:
        """:meth:`scan`, whether it reads the table unfiltered by visibility (slices push down), and
        when it reads every row of the table as is, its data files with row counts (else None)."""
        kind = check_kind(kind)
        visible = self._visible_scan(kind)
        files = None
        if visible is None:
            lf, direct = pl.LazyFrame(schema=schema(kind)), True
        else:
            lf, direct = visible[0].select(list(schema(kind))), visible[1]
            if direct and device is None and space is None and source is None:
                files = visible[2].files
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
        return lf, direct, files

    def scan(
        self,
        kind: str,
        *,
        device: str | list[str] | None = None,
        space: str | None = None,
        source: str | list[str] | None = None,
    ) -> pl.LazyFrame:
        """A lazy view of one table, optionally filtered by device id(s), space and source(s)."""
        return self._scan(kind, device=device, space=space, source=source)[0]

    def page(
        self,
        kind: str,
        *,
        offset: int,
        limit: int,
        batch_rows: int = 5000,
        device: str | list[str] | None = None,
        space: str | None = None,
        source: str | list[str] | None = None,
    ) -> Page:
        """Rows ``offset`` .. ``offset + limit`` of :meth:`scan` (same filters), read batch by batch.

        The count and every batch come from one version of the table. On the fast path each
        batch is its own slice read (a download holds one batch in memory, not the page);
        otherwise the filtered page is read once and handed out in batches.
        """
        if offset < 0 or limit < 0 or batch_rows < 1:
            raise StoreError(
                f"page: offset {offset} and limit {limit} must be >= 0, batch_rows {batch_rows} >= 1"
            )
        lf, direct, files = self._scan(kind, device=device, space=space, source=source)
        total = int(lf.select(pl.len()).collect().item())
        if files is not None and sum(n for _, n in files) != total:
            files = None  # the log's row counts disagree with the files: read through the Delta scan
        n_rows = max(0, min(limit, total - offset))
        batches = page_batches(lf, offset, n_rows, batch_rows, direct, files)
        return Page(total, n_rows, lf.collect_schema(), batches)

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
        if self.pinned is not None:
            raise StoreError(
                f"this view of {self.root} is pinned at {format_versions(self.pinned)}; it is read-only"
            )
        if isinstance(writes, Mapping):
            writes = [Write(check_kind(k), p, f, mode) for (k, p), f in writes.items()]
        now = datetime.now(UTC)
        checked: list[Write] = []
        for w in writes:  # validate everything before touching the store
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
            if w.mode == "append":  # small batches: sorted ids give each file a narrow id range to skip by
                frame = frame.unique("measurement_id", keep="first", maintain_order=True).sort(
                    "measurement_id"
                )
            elif (
                "device_id" in frame.columns
            ):  # imports: ids start with source|device, so this groups them too
                frame = frame.sort("device_id", maintain_order=True)
            checked.append(Write(w.kind, partition_name(w.partition), frame, w.mode))
        if not self.is_remote:
            Path(self.root).mkdir(parents=True, exist_ok=True)
        state = self._recover()
        if len(checked) == 1:
            _fault("after_temp")
            w = checked[0]
            counts = {(w.kind, w.partition): self._write(w, txn=None, state=state)}
            _fault("mid_rename")
            return counts
        return self._commit_many(checked)

    def _commit_many(self, checked: list[Write]) -> dict[tuple[str, str], int]:
        txn = new_txn()
        counts: dict[tuple[str, str], int] = {}
        versions: dict[str, int] = {}
        for i, w in enumerate(checked):
            counts[(w.kind, w.partition)] = self._write(w, txn=txn)
            dt = self._table(w.kind)
            if dt is not None:
                versions[w.kind] = int(dt.version())
            if i == 0:
                _fault("after_temp")
        replaces = sorted({(w.kind, w.partition) for w in checked if w.mode == "replace"})
        self._log(txn, "commit", replaces, versions)  # the commit point
        _fault("after_journal")
        self._apply(txn, replaces)
        return counts

    def _log(
        self, txn: str, event: str, replaces: list[tuple[str, str]], versions: Mapping[str, int]
    ) -> None:
        from deltalake import write_deltalake

        row = commit_row(txn, event, replaces, versions)
        retry_commit(
            lambda: write_deltalake(
                self._writable(COMMITS), row, mode="append", storage_options=self.storage_options
            ),
            COMMITS,
        )

    def _apply(self, txn: str, replaces: list[tuple[str, str]]) -> None:
        """Delete the rows a committed replace superseded, then record that it is applied.

        Superseded: the partition's rows that were visible before ``txn``'s commit point (no txn,
        or a txn committed earlier). Rows of a later import of the same source are never touched,
        so two imports of one source racing each other leave the later one whole.
        """
        order = self._commit_state().order
        earlier = order[: order.index(txn)] if txn in order else ()
        visible_before = visible_predicate(earlier)
        for i, (kind, part) in enumerate(replaces):
            dt = self._table(kind)
            if dt is None:
                continue
            pred = f"_partition = {sql_str(part)} AND ({visible_before})"
            retry_commit(lambda dt=dt, pred=pred: dt.delete(pred), kind, reload=dt)
            if i == 0:
                _fault("mid_rename")
        if replaces:
            self._log(txn, "applied", replaces, {})

    def recover(self) -> None:
        """Finish replaces whose writer died after the commit point (any writer may run this)."""
        self._recover()

    def _recover(self) -> CommitState:
        """:meth:`recover`, returning the commit state after it (what a write then goes on with)."""
        state = self._commit_state()
        if not state.pending:
            return state
        for txn in sorted(set(state.pending.values())):
            self._apply(txn, sorted(k for k, t in state.pending.items() if t == txn))
        return self._commit_state()

    @property
    def _writers(self) -> dict[str, tuple[Any, int]]:
        """This thread's open tables and the versions they were opened at (a DeltaTable must not
        be shared between threads)."""
        tables = getattr(self._local, "tables", None)
        if tables is None:
            tables = self._local.tables = {}
        return tables

    def _keep(self, kind: str, dt: Any) -> None:
        """Keep ``dt`` open as this thread's table of ``kind``."""
        self._writers[kind] = (dt, int(dt.version()))

    def _kept_open(self, kind: str) -> Any | None:
        """This thread's open table of ``kind`` at the latest version (None: none is open); opened
        afresh once it has moved :data:`_REOPEN_AFTER` versions since it was opened."""
        kept = self._writers.get(kind)
        if kept is None:
            return None
        dt, opened = kept
        dt.update_incremental()
        if int(dt.version()) - opened >= _REOPEN_AFTER:
            fresh = self._table(kind)
            if fresh is not None:
                self._keep(kind, fresh)
                dt = fresh
        return dt

    def _writable(self, kind: str) -> Any:
        """The DeltaTable of ``kind`` for a write, created (with this store's table settings) if absent."""
        from deltalake import DeltaTable

        dt = self._kept_open(kind)
        if dt is not None:
            return dt
        dt = self._table(kind)
        if dt is None:
            if kind == COMMITS:
                arrow_schema = COMMITS_SCHEMA
                config = {"delta.checkpointInterval": _CHECKPOINT_EVERY}
                parts = None
            else:
                empty = pl.DataFrame(schema=schema(kind)).with_columns(
                    pl.lit(None, dtype=pl.String).alias("_partition"),
                    pl.lit(None, dtype=pl.String).alias("_txn"),
                )
                arrow_schema = _arrow(empty).schema
                stats = ",".join(c for c in _STATS_COLUMNS if c in empty.columns)
                config = {
                    "delta.checkpointInterval": _CHECKPOINT_EVERY,
                    "delta.dataSkippingStatsColumns": stats,
                }
                parts = ["_partition"]
            try:  # "ignore": a concurrent writer that created it first wins, harmlessly
                dt = DeltaTable.create(
                    self.table_uri(kind),
                    arrow_schema,
                    mode="ignore",
                    partition_by=parts,
                    configuration=config,
                    storage_options=self.storage_options,
                )
            except Exception as exc:
                if not is_conflict(exc):
                    raise
                dt = self._table(kind)
            dt = self._table(kind) if dt is None else dt
        self._keep(kind, dt)
        return dt

    def _write(self, w: Write, *, txn: str | None, state: CommitState | None = None) -> int:
        """One Delta commit for one partition write; returns rows added (append) or written (replace).

        ``state``: the commit state just read, used by the first attempt of an append's merge (a
        retry after a conflict reads it again)."""
        from deltalake import write_deltalake

        frame = w.frame.with_columns(
            pl.lit(w.partition, dtype=pl.String).alias("_partition"),
            pl.lit(txn, dtype=pl.String).alias("_txn"),
        )
        data = _arrow(frame)
        opts = self.storage_options
        if w.mode == "replace":
            # alone: overwrite the partition; in an import: add, the old rows go after the commit point
            how: dict[str, Any] = {"mode": "append"}
            if txn is None:
                how = {"mode": "overwrite", "predicate": f"_partition = {sql_str(w.partition)}"}
            retry_commit(
                lambda: write_deltalake(
                    self._writable(w.kind),
                    data,
                    partition_by=["_partition"],
                    storage_options=opts,
                    writer_properties=_writer_properties(),
                    **how,
                ),
                w.kind,
            )
            return frame.height
        if frame.height == 0:
            return 0
        fresh = [state]

        def merge() -> int:
            known, fresh[0] = fresh[0], None
            return self._merge(w.kind, data, frame, txn, known)

        return int(retry_commit(merge, w.kind))

    def _merge(
        self, kind: str, data: pa.Table, frame: pl.DataFrame, txn: str | None, state: CommitState | None
    ) -> int:
        dt = self._writable(kind)
        state = state if state is not None else self._commit_state()
        pred = "t.measurement_id = s.measurement_id"
        if frame.height <= _IN_LIST_MAX:  # lets delta-rs skip files by their id statistics
            ids = ", ".join(sql_str(i) for i in frame["measurement_id"].to_list())
            pred += f" AND t.measurement_id IN ({ids})"
        pred += f" AND ({visible_predicate(sorted(state.committed), 't._txn')})"
        result = (
            dt.merge(data, pred, source_alias="s", target_alias="t", streamed_exec=False)
            .when_not_matched_insert_all()
            .execute()
        )
        return int(result.get("num_target_rows_inserted", 0))

    # ------------------------------------------------------------------ maintenance
    def compact(self, *, orphan_age_s: float = 3600.0) -> dict[str, dict[str, object]]:
        """Remove rows of imports that died before their commit point, then bin-pack small files.

        Rows of a transaction younger than ``orphan_age_s`` are kept (its writer may be alive).
        Returns per table the rows removed and delta-rs's optimize metrics.
        """
        self._require_writable()
        self.recover()
        state = self._commit_state()
        out: dict[str, dict[str, object]] = {}
        cutoff = int(time.time() - orphan_age_s)
        for kind in KINDS:
            dt = self._table(kind)
            if dt is None:
                continue
            txns = pl.scan_delta(dt).select(pl.col("_txn").drop_nulls().unique()).collect()["_txn"].to_list()
            dead = [t for t in txns if t not in state.committed and txn_time(t) <= cutoff]
            removed = 0
            if dead:
                pred = "_txn IN (" + ", ".join(sql_str(t) for t in dead) + ")"
                metrics = retry_commit(lambda dt=dt, pred=pred: dt.delete(pred), kind, reload=dt)
                removed = int(metrics.get("num_deleted_rows", 0))
            dt.update_incremental()
            opt = retry_commit(lambda dt=dt: dt.optimize.compact(), kind, reload=dt)
            out[kind] = {"orphan_rows_removed": removed, **opt}
        return out

    def vacuum(self, *, retention_hours: int = 168, dry_run: bool = False) -> dict[str, list[str]]:
        """Delete data files no version newer than ``retention_hours`` needs (time travel ends there)."""
        self._require_writable()
        out: dict[str, list[str]] = {}
        for name in (*KINDS, COMMITS):
            dt = self._table(name)
            if dt is not None:
                out[name] = list(
                    dt.vacuum(
                        retention_hours=retention_hours, dry_run=dry_run, enforce_retention_duration=False
                    )
                )
        return out

    def _require_writable(self) -> None:
        if self.pinned is not None:
            raise StoreError(
                f"this view of {self.root} is pinned at {format_versions(self.pinned)}; it is read-only"
            )
