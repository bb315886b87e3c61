"""The read side of the dataset store: one table version opened once, and what reading it costs.

:class:`~hwsurrogate.datasets.store.DatasetStore` decides *what* a reader sees (the visibility
rules of its commit table, :mod:`.store_commits`); this module holds how one Delta table version is read:

- :class:`Snapshot`: a table version opened once and shared by the threads reading it, with the
  transaction ids on its rows (:func:`table_txns`, mostly from file statistics, so a table whose
  every ``_txn`` is committed is read unfiltered) and its data files with row counts
  (:func:`table_files`);
- :class:`Page` and :func:`page_batches`: a page of rows handed out batch by batch, each batch
  read from the parquet file(s) holding it (:func:`file_batches`) rather than planning a scan of
  the whole table per batch.

Kept apart from the write side so each can be read on its own; ``docs/store.md`` measures both.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import polars as pl

from hwsurrogate.datasets.store_commits import TXN_RE
from hwsurrogate.errors import StoreError

__all__ = ["Page", "Snapshot", "file_batches", "page_batches", "table_files", "table_txns"]

#: data file URI -> the transaction ids on its rows; Delta never rewrites a data file in place, so
#: an entry stays true for as long as the file exists (shared by every store object of the process)
_FILE_TXNS: dict[str, frozenset[str]] = {}
_FILE_TXNS_LOCK = threading.Lock()
_FILE_TXNS_MAX = 200_000


@dataclass(frozen=True)
class Snapshot:
    """One table at one version, opened once and shared by the reads of that version.

    ``table`` is never updated after opening (a lazy scan may still hold it); ``txns`` are the
    transaction ids on its rows, None when they could not be told (then reads always filter).
    """

    version: int
    table: Any
    txns: frozenset[str] | None
    #: the data files in the order a Delta scan reads them, each with its row count (None: unknown)
    files: tuple[tuple[str, int], ...] | None = None


@dataclass(frozen=True)
class Page:
    """A page of rows (:meth:`DatasetStore.page`): the filtered table's row count, the page's."""

    total: int
    rows: int
    schema: pl.Schema
    batches: Iterator[pl.DataFrame]  # lazy: each batch is read when asked for


def page_batches(
    lf: pl.LazyFrame,
    offset: int,
    n_rows: int,
    size: int,
    direct: bool,
    files: tuple[tuple[str, int], ...] | None = None,
) -> Iterator[pl.DataFrame]:
    """Rows ``offset`` .. ``offset + n_rows`` of ``lf`` in frames of at most ``size`` rows.

    ``files`` (the unfiltered table's data files in scan order, with row counts): each batch is
    read from the file(s) holding its rows, without planning a scan of the whole table per batch.
    """
    if n_rows == 0:
        return
    if files is not None:
        yield from file_batches(files, lf.collect_schema(), offset, n_rows, size)
        return
    if direct:  # a slice of an unfiltered Delta scan reads only the row groups it needs
        for start in range(0, n_rows, size):
            yield lf.slice(offset + start, min(size, n_rows - start)).collect()
        return
    yield from lf.slice(offset, n_rows).collect_batches(chunk_size=size, lazy=True)


def file_batches(
    files: tuple[tuple[str, int], ...], columns: pl.Schema, offset: int, n_rows: int, size: int
) -> Iterator[pl.DataFrame]:
    """Rows ``offset`` .. ``offset + n_rows`` of the concatenation of ``files`` (local parquet files
    with their row counts, in a Delta scan's order), ``columns`` only, in frames of ``size`` rows.

    A slice of a Delta scan plans the scan of every file first (about 10 ms, whatever the slice);
    a slice of one parquet file costs its footer and the row groups it touches.
    """
    starts = list(itertools.accumulate((n for _, n in files), initial=0))
    pos, end = offset, offset + n_rows
    while pos < end:
        stop = min(pos + size, end)
        parts = []
        at = pos
        while at < stop:
            i = bisect.bisect_right(starts, at) - 1
            local = at - starts[i]
            take = min(stop - at, files[i][1] - local)
            part = (
                pl.scan_parquet(
                    files[i][0],
                    schema=columns,
                    missing_columns="insert",
                    extra_columns="ignore",
                    hive_partitioning=False,
                )
                .slice(local, take)
                .collect()
            )
            if part.height != take:
                raise StoreError(
                    f"{files[i][0]}: {part.height} rows at {local}, the Delta log promised {take}"
                )
            parts.append(part)
            at += take
        yield parts[0] if len(parts) == 1 else pl.concat(parts)
        pos = stop


def table_files(dt: Any, actions: pl.DataFrame) -> tuple[tuple[str, int], ...] | None:
    """The data files of ``dt`` in the order ``pl.scan_delta`` reads them (``file_uris``), each with
    its row count from the Delta log; None when a count is missing or the table uses a reader
    feature (deletion vectors, column mapping) a plain parquet read would not honour.
    ``actions``: ``dt``'s add actions (``get_add_actions(flatten=True)``)."""
    proto = dt.protocol()
    if proto.min_reader_version > 1 or proto.reader_features:
        return None
    if actions.height == 0:
        return ()
    if "num_records" not in actions.columns or actions["num_records"].null_count():
        return None
    # the log's paths are URI-encoded and relative to the table; file_uris() are decoded and absolute
    counts = {
        unquote(p): n
        for p, n in zip(actions["path"].to_list(), actions["num_records"].to_list(), strict=True)
    }
    root = dt.table_uri.removeprefix("file://").rstrip("/")
    out = []
    for uri in dt.file_uris():
        n = counts.get(uri.removeprefix(root).lstrip("/"))
        if n is None:
            return None
        out.append((uri, int(n)))
    return tuple(out)


def table_txns(
    uri: str, actions: pl.DataFrame, storage_options: Mapping[str, str] | None
) -> frozenset[str] | None:
    """The transaction ids on the rows of a table version (``actions``: its add actions, flattened),
    mostly from file statistics.

    A file whose ``_txn`` statistics say "all null" or "min == max == one full id" is not read
    (uploads and single imports); any other file (e.g. one bin-packed from several imports) has
    its ``_txn`` column read once per process (:data:`_FILE_TXNS`). None when a file could not
    be read: the caller then keeps the row filter.
    """

    def col(name: str) -> list[Any]:
        return actions[name].to_list() if name in actions.columns else [None] * actions.height

    out: set[str] = set()
    for path, rows, nulls, lo, hi in zip(
        col("path"), col("num_records"), col("null_count._txn"), col("min._txn"), col("max._txn"), strict=True
    ):
        if rows is not None and nulls is not None and nulls >= rows:
            continue  # every row of the file has _txn null
        # only a statistic of the form a transaction id has (:data:`.store_commits.TXN_RE`) is
        # trusted to name the one transaction of all of a file's non-null ``_txn`` values
        if lo is not None and lo == hi and TXN_RE.fullmatch(lo):
            out.add(lo)
            continue
        key = f"{uri}/{path}"
        with _FILE_TXNS_LOCK:
            known = _FILE_TXNS.get(key)
        if known is None:
            try:
                found = (
                    pl.scan_parquet(key, storage_options=dict(storage_options) if storage_options else None)
                    .select(pl.col("_txn").drop_nulls().unique())
                    .collect()["_txn"]
                    .to_list()
                )
            except Exception:
                return None
            known = frozenset(found)
            with _FILE_TXNS_LOCK:
                if len(_FILE_TXNS) >= _FILE_TXNS_MAX:
                    _FILE_TXNS.clear()
                _FILE_TXNS[key] = known
        out |= known
    return frozenset(out)
