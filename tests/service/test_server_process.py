"""Against a real uvicorn process: the client round trip, and SIGKILL during uploads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest

from hwsurrogate.client import HwsClient, ServiceError
from hwsurrogate.datasets.store import DatasetStore

from .conftest import TOKEN, free_port, gemm_rows, server_process

pytestmark = pytest.mark.slow


@contextmanager
def running_server(store: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    proc_env = {**os.environ, "HWSURROGATE_STORE": str(store), "HWSURROGATE_SERVICE_TOKEN": TOKEN,
                "HWSURROGATE_SERVICE_LOAD_MODELS": "0", **env}  # fmt: skip
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "hwsurrogate.service.app:create_app_from_env",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    with server_process(cmd, port, proc_env) as (url, proc):
        yield url, proc


def _frame(batch: int, n: int = 200) -> pl.DataFrame:
    return pl.DataFrame(gemm_rows(n, prefix=f"b{batch}"))


def test_client_round_trip_against_real_server(tmp_path: Path):
    with running_server(tmp_path / "store") as (url, _), HwsClient(url, TOKEN, client_name="ci") as c:
        first = c.upload_rows("gemm", _frame(0, 50))
        again = c.upload_rows("gemm", _frame(0, 50))
        kinds = {d["kind"]: d for d in c.datasets()}
        page = c.read_rows("gemm", device="local/box-cpu", limit=10)
        devices = c.list_devices()
        with pytest.raises(ServiceError) as err:
            c.predict_gemm([{"device": "local/box-cpu", "m": -1, "n": 1, "k": 1}])
        with pytest.raises(ServiceError) as unauthorised:
            HwsClient(url, "wrong-token").upload_rows("gemm", _frame(1, 5))
    assert (first["added"], again["added"], again["duplicates"]) == (50, 0, 50)
    assert kinds["gemm"]["sources"] == {"upload:ci": 50}
    assert page.height == 10 and page.schema["imported_at"] == pl.Datetime("us", "UTC")
    assert [d["device_id"] for d in devices] == ["local/box-cpu"]
    assert err.value.status_code == 422 and err.value.field == "queries.0.m"
    assert unauthorised.value.status_code == 401


def _upload_until_killed(url: str, batches: range, done: list[int]) -> None:
    with HwsClient(url, TOKEN, timeout=30, client_name="killer") as c:
        for b in batches:
            try:
                c.upload_rows("gemm", _frame(b))
                done.append(b)
            except Exception:
                return


def test_sigkill_during_uploads_leaves_readable_store_without_partial_rows(tmp_path: Path):
    store_dir = tmp_path / "store"
    done: list[int] = []
    with running_server(store_dir) as (url, proc):
        threads = [
            threading.Thread(target=_upload_until_killed, args=(url, range(i, 60, 3), done)) for i in range(3)
        ]
        for t in threads:
            t.start()
        while len(done) < 6:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        for t in threads:
            t.join(30)
    stored = DatasetStore(store_dir).read("gemm")  # readable after the kill
    assert stored.height % 200 == 0, "a batch was partially stored"
    assert stored.height >= len(done) * 200
    assert stored["measurement_id"].n_unique() == stored.height
    per_batch = stored.group_by(pl.col("measurement_id").str.extract(r"^(b\d+)-")).len()
    assert set(per_batch["len"]) == {200}
    # restart: every batch re-sent, duplicates skipped, exactly all rows stored
    with running_server(store_dir) as (url, _), HwsClient(url, TOKEN, client_name="killer") as c:
        added = sum(c.upload_rows("gemm", _frame(b))["added"] for b in range(60))
    assert added == 60 * 200 - stored.height
    assert DatasetStore(store_dir).read("gemm").height == 60 * 200
    assert not list(store_dir.glob("gemm/.*.tmp")) and not (store_dir / ".journal.json").exists()


def test_kill_at_commit_point_rolls_forward_whole_batch(tmp_path: Path):
    store_dir = tmp_path / "store"
    with running_server(store_dir, HWSURROGATE_STORE_FAULT="mid_rename") as (url, proc):
        with pytest.raises(Exception), HwsClient(url, TOKEN, timeout=30, client_name="k") as c:  # noqa: B017
            c.upload_rows("gemm", _frame(0, 300))
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    with running_server(store_dir) as (url, _), HwsClient(url, TOKEN, client_name="k") as c:
        assert c.dataset("gemm")["rows"] in (0, 300)
        c.upload_rows("gemm", _frame(0, 300))  # a write recovers the journal first
        assert c.dataset("gemm")["rows"] == 300
