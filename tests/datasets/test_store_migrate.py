"""`hws data migrate` converts a parquet store of the old layout; `hws data history/compact/vacuum`."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from hwsurrogate.cli.data import data
from hwsurrogate.datasets.schemas import conform
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import StoreError

from .factories import gemm_frame, latency_frame


def _old_store(root: Path) -> dict[str, pl.DataFrame]:
    """The layout the store had before Delta Lake: <kind>/<partition>.parquet, plus a journal to roll forward."""
    stamp = (
        pl.lit("2024-01-01T00:00:00").str.to_datetime(time_unit="us", time_zone="UTC").alias("imported_at")
    )
    frames = {
        "gemm/neusight": conform("gemm", gemm_frame(5, source="neusight").with_columns(stamp)),
        "gemm/upload_alice": conform(
            "gemm", gemm_frame(2, source="upload:alice", start=9).with_columns(stamp)
        ),
        "latency/help": conform("latency", latency_frame(3).with_columns(stamp)),
    }
    for name in frames:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
    frames["gemm/neusight"].write_parquet(root / "gemm/neusight.parquet")
    frames["latency/help"].write_parquet(root / "latency/help.parquet")
    # a commit the old code had passed its commit point for but not finished
    tmp = root / "gemm/.upload_alice.parquet.abc.tmp"
    frames["gemm/upload_alice"].write_parquet(tmp)
    (root / ".journal.json").write_text(
        json.dumps({"renames": [[str(tmp), str(root / "gemm/upload_alice.parquet")]]})
    )
    (root / ".lock").write_text("")
    return frames


def test_migrate_converts_the_old_layout_whole(tmp_path: Path) -> None:
    root = tmp_path / "old"
    frames = _old_store(root)
    with pytest.raises(StoreError, match="hws data migrate"):
        DatasetStore(root).read("gemm")
    res = CliRunner().invoke(data, ["migrate", "--store", str(root)])
    assert res.exit_code == 0, res.output
    assert "gemm/upload_alice: 2 rows" in res.output
    store = DatasetStore(root)
    assert store.partitions("gemm") == ["neusight", "upload_alice"]
    for name, frame in frames.items():
        kind = name.split("/")[0]
        back = store.read(kind, source=frame["source"][0]).sort("measurement_id")
        assert back.equals(frame.sort("measurement_id")), name
    assert not (root / ".journal.json").exists() and (root / "pre-delta/gemm/neusight.parquet").exists()
    again = CliRunner().invoke(data, ["migrate", "--store", str(root)])
    assert again.exit_code == 0 and "nothing to migrate" in again.output


def test_migrate_refuses_a_corrupt_partition_and_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "old"
    _old_store(root)
    (root / "gemm/broken.parquet").write_bytes(b"PAR1 not really")
    res = CliRunner().invoke(data, ["migrate", "--store", str(root)])
    assert res.exit_code != 0 and "broken.parquet" in str(res.exception or res.output)
    assert (root / "gemm/neusight.parquet").exists() and not (root / "gemm/_delta_log").exists()


def test_history_compact_vacuum_commands(store: DatasetStore) -> None:
    for i in range(3):
        store.append("gemm", gemm_frame(2, start=2 * i), partition="a")
    root = str(store.root)
    hist = CliRunner().invoke(data, ["history", "--store", root])
    assert hist.exit_code == 0 and f"--data-version gemm={store.versions()['gemm']}" in hist.output
    table = CliRunner().invoke(data, ["history", "gemm", "--json", "--store", root])
    assert [e["version"] for e in json.loads(table.output)][:3] == [3, 2, 1]  # 0 created the table
    comp = CliRunner().invoke(data, ["compact", "--store", root])
    assert comp.exit_code == 0 and "gemm: 3 files -> 1" in comp.output
    vac = CliRunner().invoke(data, ["vacuum", "--retention-hours", "0", "--store", root])
    assert vac.exit_code == 0 and "gemm: deleted 3 file(s)" in vac.output
    assert store.read("gemm").height == 6
