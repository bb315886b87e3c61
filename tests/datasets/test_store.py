"""The store: schema enforcement, idempotent writes, concurrency and crash safety."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hwsurrogate.datasets.schemas import schema
from hwsurrogate.datasets.store import DatasetStore, Write
from hwsurrogate.errors import SchemaMismatchError, StoreError

from .factories import gemm_frame, latency_frame


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file in the store except the lock file."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_round_trip_keeps_values_and_schema(store: DatasetStore) -> None:
    store.append("gemm", gemm_frame(), partition="test")
    back = store.read("gemm")
    assert back.schema == schema("gemm")
    assert_frame_equal(
        back.select("m", "runtime_ms"), gemm_frame().select("m", "runtime_ms"), check_row_order=False
    )
    assert back["power_w"].null_count() == back.height  # absent nullable columns are null, not 0


def test_append_is_idempotent_on_measurement_id(store: DatasetStore) -> None:
    assert store.append("gemm", gemm_frame(4), partition="test") == 4
    assert store.append("gemm", gemm_frame(4), partition="test") == 0
    assert store.append("gemm", gemm_frame(6), partition="test") == 2
    assert store.read("gemm").height == 6


def test_append_dedupes_across_partitions(store: DatasetStore) -> None:
    store.append("gemm", gemm_frame(3), partition="a")
    assert store.append("gemm", gemm_frame(3), partition="b") == 0


def test_replace_swaps_the_partition(store: DatasetStore) -> None:
    store.replace("gemm", gemm_frame(5), partition="src")
    store.replace("gemm", gemm_frame(2), partition="src")
    assert store.read("gemm").height == 2


def test_replace_rejects_duplicate_ids(store: DatasetStore) -> None:
    frame = pl.concat([gemm_frame(2), gemm_frame(2)])
    with pytest.raises(StoreError, match="share a measurement_id"):
        store.replace("gemm", frame, partition="src")


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("runtime_ms", float("nan"), "'runtime_ms' must be finite"),
        ("runtime_ms", -1.0, "'runtime_ms' must be > 0"),
        ("m", 0, "'m' must be >= 1"),
        ("dtype", "fp13", "'dtype' must be one of"),
        ("m", "big", "'m' must be integers, not text"),  # text is never parsed into numbers
    ],
)
def test_bad_value_names_the_column_and_leaves_store_unchanged(
    store: DatasetStore, column: str, value: object, message: str
) -> None:
    store.append("gemm", gemm_frame(2), partition="test")
    before = snapshot(store.root)
    bad = gemm_frame(3, start=5)
    values = bad[column].to_list()
    values[1] = value
    if isinstance(value, str):  # a string in a numeric column arrives as text, as from a CSV
        values = [str(v) for v in values]
    bad = bad.with_columns(pl.Series(column, values))
    with pytest.raises(SchemaMismatchError, match=message):
        store.append("gemm", bad, partition="test")
    assert snapshot(store.root) == before


def test_unknown_and_missing_columns_are_rejected(store: DatasetStore) -> None:
    with pytest.raises(SchemaMismatchError, match="unexpected column"):
        store.append("gemm", gemm_frame().with_columns(pl.lit(1).alias("runtme_ms")), partition="t")
    with pytest.raises(SchemaMismatchError, match="required column 'k'"):
        store.append("gemm", gemm_frame().drop("k"), partition="t")


def test_scan_filters_by_device(store: DatasetStore) -> None:
    store.append("latency", latency_frame(device="a/x"), partition="a")
    store.append("latency", latency_frame(device="b/y"), partition="b")
    assert store.scan("latency", device="b/y").collect()["device_id"].unique().to_list() == ["b/y"]
    assert store.scan("latency", space="nb201").collect().height == 6
    assert store.read("fpga").height == 0  # empty table still has its schema


def test_summary_counts_rows_per_source(store: DatasetStore) -> None:
    store.append("gemm", gemm_frame(3, source="s1"), partition="s1")
    store.append("gemm", gemm_frame(2, source="s2", device="test/gpu"), partition="s2")
    summary = store.summary()["gemm"]
    assert summary["rows"] == 5
    assert summary["sources"] == {"s1": 3, "s2": 2}
    assert summary["devices"] == ["test/cpu", "test/gpu"]


_WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from hwsurrogate.datasets.store import DatasetStore
    from datasets.factories import gemm_frame
    st = DatasetStore({root!r})
    for batch in range(5):
        st.append("gemm", gemm_frame(10, device="w{worker}", start=batch * 10), partition="shared")
    """
)


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "cstore"
    tests = str(Path(__file__).parents[1])
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER.format(tests=tests, root=str(root), worker=w)])
        for w in range(4)
    ]
    assert [p.wait(120) for p in procs] == [0, 0, 0, 0]
    df = DatasetStore(root).read("gemm")
    assert df.height == 4 * 5 * 10
    assert df["measurement_id"].n_unique() == df.height


_KILLED = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from hwsurrogate.datasets.store import DatasetStore, Write
    from datasets.factories import gemm_frame, latency_frame
    st = DatasetStore({root!r})
    st.commit([Write("gemm", "src", gemm_frame(7, start=10), "replace"),
               Write("latency", "src", latency_frame(5, device="new/dev"), "replace")])
    """
)


def _run_killed(root: Path, point: str) -> int:
    code = _KILLED.format(tests=str(Path(__file__).parents[1]), root=str(root))
    env = {**os.environ, "HWSURROGATE_STORE_FAULT": point}  # "none": run to the end
    return subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode


def _contents(store: DatasetStore) -> dict[str, pl.DataFrame]:
    """What a reader sees: every table, sorted, without the import time."""
    return {k: store.read(k).drop("imported_at").sort("measurement_id") for k in ("gemm", "latency")}


def _raw_rows(store: DatasetStore, kind: str) -> int:
    """Rows physically in the Delta table, visible or not."""
    return pl.scan_delta(store.table_uri(kind)).select(pl.len()).collect().item()


def test_import_killed_between_two_tables_is_invisible_then_compacted(store: DatasetStore) -> None:
    """F7: kill -9 after the gemm table's commit and before the latency table's: readers see the old store."""
    store.commit(
        [Write("gemm", "src", gemm_frame(3), "replace"), Write("latency", "src", latency_frame(2), "replace")]
    )
    before = _contents(store)
    assert _run_killed(store.root, "after_temp") == -9
    assert _raw_rows(store, "gemm") == 3 + 7  # the killed import's gemm rows are in the table ...
    fresh = DatasetStore(store.root)
    assert all(fresh.read(k).drop("imported_at").sort("measurement_id").equals(v) for k, v in before.items())
    assert fresh.partitions("gemm") == ["src"]  # ... and invisible to every reader
    DatasetStore(store.root).append(
        "gemm", gemm_frame(0), partition="noop"
    )  # the next writer changes nothing
    assert all(fresh.read(k).drop("imported_at").sort("measurement_id").equals(v) for k, v in before.items())
    assert store.compact(orphan_age_s=3600)["gemm"]["orphan_rows_removed"] == 0  # may still be alive
    assert store.compact(orphan_age_s=0)["gemm"]["orphan_rows_removed"] == 7
    assert _raw_rows(store, "gemm") == 3 and store.read("gemm").height == 3
    # the same import then succeeds whole
    assert _run_killed(store.root, "none") == 0
    assert store.read("gemm").height == 7 and store.read("latency")["device_id"].unique().to_list() == [
        "new/dev"
    ]


def _filters_rows(store: DatasetStore, kind: str) -> bool:
    """Whether a read of ``kind`` runs the visibility filter (else polars reads the table as is)."""
    return "_txn" in store.scan(kind).explain()


def test_reads_skip_the_visibility_filter_only_while_every_import_is_committed(store: DatasetStore) -> None:
    """The fast path: no filter while all rows are committed; the filter (and hidden rows) after kill -9."""
    store.commit(
        [Write("gemm", "src", gemm_frame(3), "replace"), Write("latency", "src", latency_frame(2), "replace")]
    )
    store.append("gemm", gemm_frame(4, device="up/dev", start=50), partition="upload_a")
    assert not _filters_rows(store, "gemm") and not _filters_rows(store, "latency")
    assert store.scan("gemm").slice(1, 5).collect().height == 5
    assert _run_killed(store.root, "after_temp") == -9
    fresh = DatasetStore(store.root)
    for reader in (store, fresh):  # an open store object notices the new version too
        assert _filters_rows(reader, "gemm")
        assert reader.read("gemm").height == 3 + 4
        assert reader.scan("gemm").select(pl.len()).collect().item() == 7
        assert not _filters_rows(reader, "latency")  # the killed import never reached latency
        page = reader.page("gemm", offset=1, limit=5, batch_rows=2)  # the filtered page, in batches
        frames = list(page.batches)
        assert (page.total, page.rows, [f.height for f in frames]) == (7, 5, [2, 2, 1])
        assert pl.concat(frames).equals(reader.read("gemm").slice(1, 5))
    assert _run_killed(store.root, "none") == 0  # the same import, whole
    # the killed rows are still there ...
    assert _filters_rows(store, "gemm") and store.read("gemm").height == 7 + 4
    store.compact(orphan_age_s=0)  # ... until compaction deletes them: every row is committed again
    assert not _filters_rows(store, "gemm") and store.read("gemm").height == 7 + 4
    page = store.page("gemm", offset=9, limit=5, batch_rows=1)  # unfiltered: each batch its own slice read
    assert (page.total, page.rows) == (11, 2)
    assert pl.concat(list(page.batches)).equals(store.read("gemm").slice(9, 2))


def test_unfiltered_pages_are_read_file_by_file_in_scan_order(store: DatasetStore) -> None:
    """Page batches come from the data files holding their rows (counts from the Delta log), across
    file boundaries, equal to the same slice of the Delta scan; filtered pages take the scan."""
    store.replace("gemm", gemm_frame(7), partition="src")
    for i in range(3):  # one small file per upload
        store.append("gemm", gemm_frame(4, device=f"up/dev{i}", start=100 + 10 * i), partition=f"upload_{i}")
    store.replace("gemm", gemm_frame(5, start=200), partition="other")
    files = store._snapshot("gemm").files
    assert files is not None and len(files) == 5 and sum(n for _, n in files) == 7 + 12 + 5
    whole = store.read("gemm")
    for offset, limit, batch in [(0, 24, 5), (5, 10, 3), (6, 1, 1), (10, 100, 4), (23, 5, 2), (24, 5, 2)]:
        page = store.page("gemm", offset=offset, limit=limit, batch_rows=batch)
        frames = list(page.batches)
        assert page.total == 24 and page.rows == max(0, min(limit, 24 - offset))
        assert all(f.height <= batch for f in frames)
        got = pl.concat(frames) if frames else pl.DataFrame(schema=page.schema)
        assert_frame_equal(got, whole.slice(offset, limit))
    filtered = store.page("gemm", offset=1, limit=3, batch_rows=2, device="up/dev1")
    assert_frame_equal(pl.concat(list(filtered.batches)), store.read("gemm", device="up/dev1").slice(1, 3))


def test_tables_kept_open_are_reopened_every_few_versions(store: DatasetStore) -> None:
    """A writer's open table is replaced by a fresh one (from the latest checkpoint) once it has
    moved ``_REOPEN_AFTER`` versions: delta-rs's work per commit on an open table grows with every
    commit it has seen. Every append still lands, and reads see them all."""
    from hwsurrogate.datasets.store import _REOPEN_AFTER

    opened = set()
    for i in range(3 * _REOPEN_AFTER):
        assert store.append("gemm", gemm_frame(2, device=f"up/d{i}", start=10 * i), partition="up") == 2
        dt, at = store._writers["gemm"]
        assert dt.version() - at <= _REOPEN_AFTER  # checked (and reopened) at the next use
        opened.add(id(dt))
    assert len(opened) >= 3  # reopened, not one table all along
    assert store.read("gemm").height == 2 * 3 * _REOPEN_AFTER


def test_bin_packed_file_of_a_committed_and_a_killed_import_still_hides_the_killed_rows(
    store: DatasetStore,
) -> None:
    """A file holding rows of several imports (compaction) has no single-id statistics: its ``_txn`` is read."""
    from deltalake import DeltaTable

    store.commit(
        [Write("gemm", "src", gemm_frame(3), "replace"), Write("latency", "src", latency_frame(2), "replace")]
    )
    before = _contents(store)
    assert _run_killed(store.root, "after_temp") == -9
    store.compact(orphan_age_s=3600)  # keeps the young orphan rows, bin-packs the partition's two files
    actions = pl.DataFrame(DeltaTable(store.table_uri("gemm")).get_add_actions(flatten=True))
    src = actions.filter(pl.col("partition._partition") == "src").to_dicts()
    assert len(src) == 1 and src[0]["min._txn"] != src[0]["max._txn"]
    assert _raw_rows(store, "gemm") == 3 + 7
    for reader in (store, DatasetStore(store.root)):
        assert _filters_rows(reader, "gemm")
        assert _contents(reader)["gemm"].equals(before["gemm"])


def test_threads_sharing_a_store_read_whole_commits_while_a_writer_appends(tmp_path: Path) -> None:
    """Reader threads share one store object (one snapshot per version): every read is a whole commit."""
    import threading

    reader_store = DatasetStore(tmp_path / "store")
    writer = DatasetStore(tmp_path / "store")
    writer.append("gemm", gemm_frame(10, device="w/dev"), partition="shared")
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                n = reader_store.scan("gemm").select(pl.len()).collect().item()
                page = reader_store.scan("gemm", device="w/dev").slice(0, 1000).collect()
                assert n % 10 == 0 and page.height % 10 == 0 and page.height >= n, (n, page.height)
                seen.append(n)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for batch in range(1, 8):
        writer.append("gemm", gemm_frame(10, device="w/dev", start=batch * 10), partition="shared")
    done.set()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    assert seen and max(seen) <= 80 and reader_store.read("gemm").height == 80


@pytest.mark.parametrize("point", ["after_journal", "mid_rename"])
def test_import_killed_after_commit_point_is_seen_whole(store: DatasetStore, point: str) -> None:
    store.commit(
        [Write("gemm", "src", gemm_frame(3), "replace"), Write("latency", "src", latency_frame(2), "replace")]
    )
    assert _run_killed(store.root, point) == -9
    # readers see the new import whole at once, before any writer finishes its replace
    assert DatasetStore(store.root).read("gemm").height == 7
    assert DatasetStore(store.root).read("latency")["device_id"].unique().to_list() == ["new/dev"]
    assert _raw_rows(store, "latency") == 2 + 5  # the replaced rows are still there, hidden
    store.append("gemm", gemm_frame(0), partition="noop")  # the next writer finishes the replace
    assert store.read("gemm").height == 7
    assert _raw_rows(store, "latency") == 5 and _raw_rows(store, "gemm") == 7


def test_versions_pin_a_read_only_view(store: DatasetStore) -> None:
    from hwsurrogate.datasets.store import format_versions, parse_versions

    store.append("gemm", gemm_frame(3), partition="a")
    pinned = store.versions()
    store.append("gemm", gemm_frame(5), partition="a")
    text = format_versions(pinned)
    assert parse_versions(text) == pinned
    assert store.at(text).read("gemm").height == 3 and store.read("gemm").height == 5
    assert store.at(text).read("latency").height == 0  # a table that did not exist then is empty
    with pytest.raises(StoreError, match="read-only"):
        store.at(pinned).append("gemm", gemm_frame(1), partition="a")
    with pytest.raises(StoreError, match="TABLE=VERSION"):
        parse_versions("gemm=three")
    latest = store.versions()["gemm"]
    with pytest.raises(StoreError, match=rf"no version 99 \(its latest is {latest}\)"):
        store.at({"gemm": 99})


def test_pinned_view_sees_imports_without_a_commits_version(store: DatasetStore) -> None:
    store.commit(
        [Write("gemm", "src", gemm_frame(3), "replace"), Write("latency", "src", latency_frame(2), "replace")]
    )
    pins = store.versions()
    store.commit(
        [Write("gemm", "src", gemm_frame(5), "replace"), Write("latency", "src", latency_frame(4), "replace")]
    )
    assert store.at(pins).read("gemm").height == 3
    assert store.at({"gemm": pins["gemm"]}).read("gemm").height == 3  # as typed by hand, without _commits


def test_ids_with_quotes_are_bound_literally(store: DatasetStore) -> None:
    frame = gemm_frame(2).with_columns(pl.Series("measurement_id", ["a') OR (1=1", "b''"]))
    assert store.append("gemm", frame, partition="q") == 2
    assert store.append("gemm", frame, partition="q") == 0
    assert sorted(store.read("gemm")["measurement_id"]) == ["a') OR (1=1", "b''"]


def test_history_compact_and_vacuum(store: DatasetStore) -> None:
    for i in range(4):
        store.append("gemm", gemm_frame(2, start=2 * i), partition="a")
    latest = store.versions()["gemm"]
    assert [h["version"] for h in store.history("gemm")][:2] == [latest, latest - 1]
    out = store.compact()
    assert out["gemm"]["numFilesRemoved"] == 4 and out["gemm"]["numFilesAdded"] == 1
    removed = store.vacuum(retention_hours=0)["gemm"]
    assert len(removed) == 4 and store.read("gemm").height == 8
