"""The store's commit protocol on its own: the state ``_commits`` rows describe, the visibility rule."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from hwsurrogate.datasets.store_commits import (
    COMMITS_SCHEMA,
    TXN_RE,
    CommitState,
    commit_row,
    new_txn,
    read_commit_state,
    sql_str,
    txn_time,
    visible_predicate,
    visible_rows,
)
from hwsurrogate.errors import StoreError


def _rows(*events: tuple[str, str, list[tuple[str, str]]]) -> pl.DataFrame:
    """``_commits`` rows for (txn, event, replaces), one second apart in the order given."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    tables = []
    for i, (txn, event, replaces) in enumerate(events):
        row = pl.from_arrow(commit_row(txn, event, replaces, {"gemm": i}))
        tables.append(
            row.with_columns(pl.lit(start + timedelta(seconds=i)).dt.cast_time_unit("us").alias("at"))
        )
    return pl.concat(tables)


def test_commit_state_orders_commits_and_keeps_only_unapplied_latest_replaces() -> None:
    # t1 and t2 both replace gemm/src; t2 is the later commit, so only it can be pending there
    rows = _rows(
        ("t1", "commit", [("gemm", "src"), ("devices", "src")]),
        ("t2", "commit", [("gemm", "src")]),
        ("t1", "applied", [("gemm", "src"), ("devices", "src")]),
        ("t3", "commit", []),
    )
    state = read_commit_state(rows.reverse())  # the commit order comes from ``at``, not row order
    assert state.order == ("t1", "t2", "t3")
    assert state.committed == frozenset({"t1", "t2", "t3"})
    assert state.pending == {("gemm", "src"): "t2"}


def test_commit_row_has_the_commits_schema() -> None:
    row = commit_row("t", "commit", [("gemm", "a")], {"gemm": 3})
    assert row.schema == COMMITS_SCHEMA
    assert row.to_pylist()[0]["replaces"] == '[["gemm", "a"]]'


def test_visible_rows_hide_uncommitted_and_superseded_rows() -> None:
    lf = pl.LazyFrame(
        {
            "_partition": ["a", "a", "a", "b", "b"],
            "_txn": [None, "old", "new", None, "dead"],
            "v": [1, 2, 3, 4, 5],
        }
    )
    state = CommitState(frozenset({"old", "new"}), {("gemm", "a"): "new"}, ("old", "new"))
    assert sorted(visible_rows("gemm", lf, state).collect()["v"]) == [3, 4]
    # another table's pending replace does not hide this one's rows
    assert sorted(visible_rows("devices", lf, state).collect()["v"]) == [1, 2, 3, 4]


def test_visible_predicate_and_sql_literals() -> None:
    assert visible_predicate([]) == "_txn IS NULL"
    assert visible_predicate(["b", "a"], "t._txn") == "t._txn IS NULL OR t._txn IN ('b', 'a')"
    assert sql_str("it's") == "'it''s'"
    with pytest.raises(StoreError, match="NUL"):
        sql_str("a\x00b")


def test_transaction_ids_carry_their_time() -> None:
    txn = new_txn()
    assert TXN_RE.fullmatch(txn)
    assert abs(txn_time(txn) - time.time()) < 5
    assert txn_time("garbage") == 0
