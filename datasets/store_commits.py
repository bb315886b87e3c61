"""The commit protocol of the dataset store: transaction ids, the ``_commits`` table, visibility.

:class:`~hwsurrogate.datasets.store.DatasetStore` writes an import of several tables with its
rows tagged by a transaction id and makes them visible all at once with one row appended to the
``_commits`` table (the commit point; ``docs/store.md``, "Imports of several tables"). This
module holds that protocol, apart from the store's tables and writes:

- transaction ids: :func:`new_txn` makes one, :data:`TXN_RE` recognises one (the read side trusts
  only a file statistic of this form), :func:`txn_time` reads its creation time back;
- the rows of ``_commits`` (:data:`COMMITS_SCHEMA`, :func:`commit_row`) and the state they
  describe (:class:`CommitState`, :func:`read_commit_state`): which transactions reached their
  commit point, in which order, and which replaced partitions are not yet deleted;
- the visibility rule, as a polars filter for reads (:func:`visible_rows`) and as a Delta SQL
  predicate for deletes and merges (:func:`visible_predicate`, literals by :func:`sql_str`);
- a Delta commit that lost a race to a concurrent writer's, retried (:func:`retry_commit`).
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import polars as pl
import pyarrow as pa

from hwsurrogate.errors import StoreError

__all__ = [
    "COMMITS",
    "COMMITS_SCHEMA",
    "RETRIES",
    "TXN_RE",
    "CommitState",
    "commit_row",
    "is_conflict",
    "new_txn",
    "read_commit_state",
    "retry_commit",
    "sql_str",
    "txn_time",
    "visible_predicate",
    "visible_rows",
]

T = TypeVar("T")

#: the commit table (one row per multi-table import, and one per finished replace)
COMMITS = "_commits"
#: how often a write whose Delta commit conflicts with a concurrent one is retried
RETRIES = 60
#: the columns of ``_commits``
COMMITS_SCHEMA = pa.schema(
    [
        ("txn", pa.string()),
        ("event", pa.string()),  # "commit" (the commit point) or "applied" (replaced partitions deleted)
        ("at", pa.timestamp("us", tz="UTC")),
        ("replaces", pa.string()),  # JSON list of [kind, partition] swapped by this commit
        ("versions", pa.string()),  # JSON {kind: version} written by this commit
    ]
)
#: a transaction id as :func:`new_txn` makes it (epoch seconds, uuid4 hex)
TXN_RE = re.compile(r"[0-9]+-[0-9a-f]{32}")


def new_txn() -> str:
    """A fresh transaction id: ``<epoch seconds>-<uuid4 hex>`` (the time lets compaction age it)."""
    return f"{int(time.time())}-{uuid.uuid4().hex}"


def txn_time(txn: str) -> int:
    """The creation time (epoch s) a transaction id starts with; 0 when unreadable (treated as old)."""
    head = txn.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def sql_str(value: str) -> str:
    """A SQL string literal (quotes doubled); values are validated ids, this is defence in depth."""
    if "\x00" in value:
        raise StoreError("a value bound for a store predicate contains a NUL character")
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class CommitState:
    """What ``_commits`` says at one version of it."""

    committed: frozenset[str]  # txn ids that reached their commit point
    pending: dict[tuple[str, str], str]  # (kind, partition) -> txn whose replace is not yet applied
    order: tuple[str, ...] = ()  # committed txn ids, oldest commit point first


def read_commit_state(rows: pl.DataFrame) -> CommitState:
    """The :class:`CommitState` described by the rows of ``_commits`` (all of one version).

    A partition replaced by several commits is pending on the latest of them until that one's
    ``applied`` row exists."""
    commits = rows.filter(pl.col("event") == "commit").sort("at")
    applied = set(rows.filter(pl.col("event") == "applied")["txn"].to_list())
    latest: dict[tuple[str, str], str] = {}
    for txn, replaces in zip(commits["txn"].to_list(), commits["replaces"].to_list(), strict=True):
        for kind, part in json.loads(replaces or "[]"):
            latest[(kind, part)] = txn
    pending = {key: txn for key, txn in latest.items() if txn not in applied}
    order = tuple(commits["txn"].to_list())
    return CommitState(frozenset(order), pending, order)


def commit_row(
    txn: str, event: str, replaces: Iterable[tuple[str, str]], versions: Mapping[str, int]
) -> pa.Table:
    """The one-row table appended to ``_commits`` for ``event`` (``commit`` or ``applied``) of ``txn``."""
    return pa.Table.from_pylist(
        [
            {
                "txn": txn,
                "event": event,
                "at": datetime.now(UTC),
                "replaces": json.dumps([list(r) for r in replaces]),
                "versions": json.dumps(dict(versions)),
            }
        ],
        schema=COMMITS_SCHEMA,
    )


def visible_rows(
    kind: str, lf: pl.LazyFrame, state: CommitState, present: frozenset[str] | None = None
) -> pl.LazyFrame:
    """Only rows of committed writes; partitions of a pending replace show only its rows.

    ``present``: the transaction ids known to be in the scanned version (narrows the list).
    """
    committed = state.committed if present is None else state.committed & present
    ok = pl.col("_txn").is_null()
    if committed:
        ok = ok | pl.col("_txn").is_in(sorted(committed))
    for (k, part), txn in state.pending.items():
        if k == kind:
            ok = ok & ((pl.col("_partition") != part) | (pl.col("_txn") == txn).fill_null(False))
    return lf.filter(ok)


def visible_predicate(txns: Iterable[str], column: str = "_txn") -> str:
    """``<column> IS NULL OR <column> IN (...)``: rows of no import or of one of ``txns`` (a Delta
    predicate; the ``IN`` list in the order given, left out when ``txns`` is empty)."""
    listed = ", ".join(sql_str(t) for t in txns)
    return f"{column} IS NULL" + (f" OR {column} IN ({listed})" if listed else "")


def is_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is a Delta commit that lost to a concurrent one (or a table created meanwhile)."""
    from deltalake.exceptions import CommitFailedError

    if isinstance(exc, CommitFailedError):
        return True
    text = str(exc).lower()
    return any(s in text for s in ("conflict", "concurrent", "already exists", "version already"))


def retry_commit(op: Callable[[], T], kind: str, *, reload: Any | None = None) -> T:
    """Run one Delta commit, retrying with jittered back-off when a concurrent commit wins.

    ``reload``: a DeltaTable the op uses, brought up to date before each retry. Gives up with a
    :class:`StoreError` naming the table after :data:`RETRIES` conflicts; other errors pass."""
    for attempt in range(RETRIES):
        try:
            return op()
        except Exception as exc:
            if not is_conflict(exc) or attempt == RETRIES - 1:
                if is_conflict(exc):
                    raise StoreError(
                        f"table {kind!r}: gave up after {RETRIES} conflicting concurrent commits"
                    ) from exc
                raise
            time.sleep(min(0.5, 0.005 * 2 ** min(attempt, 7)) * (0.5 + random.random()))
            if reload is not None:
                reload.update_incremental()
    raise AssertionError("unreachable")
