"""`hws collect gemm --push`: the token is checked before measuring, and a failed push keeps the rows.

The service runs in this process (uvicorn in a thread), so the client talks real HTTP to it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest
import uvicorn
from click.testing import CliRunner

from hwsurrogate.cli.collect import collect_gemm_cmd
from hwsurrogate.datasets.collectors import gemm as gemm_collector
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.service.app import create_app
from hwsurrogate.service.config import ServiceConfig

from .conftest import TOKEN

ARGS = ["--sweep", "grid", "--sizes", "8", "--min-time", "0"]


@contextmanager
def service_in_thread(store: Path) -> Iterator[str]:
    """``hws serve`` (no models) on a free port in a thread of this process; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(ServiceConfig(store=store, token=TOKEN, load_models=False))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the in-process service did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_wrong_token_fails_fast_before_any_measurement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_measuring(*args: object, **kwargs: object) -> None:
        raise AssertionError("measured although the token is wrong")

    monkeypatch.setattr(gemm_collector, "collect_gemm", no_measuring)
    with service_in_thread(tmp_path / "served") as url:
        started = time.perf_counter()
        res = CliRunner().invoke(collect_gemm_cmd, [*ARGS, "--push", url, "--token", "wrong-token-123"])
        took = time.perf_counter() - started
    assert res.exit_code == 1, res.output
    assert "invalid bearer token" in res.output and "nothing was measured" in res.output
    assert took < 1.0, f"the token check took {took:.2f} s"


def test_missing_token_and_unreachable_service_fail_before_measuring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gemm_collector, "collect_gemm", lambda *a, **k: pytest.fail("measured"))
    monkeypatch.delenv("HWSURROGATE_SERVICE_TOKEN", raising=False)
    with service_in_thread(tmp_path / "served") as url:
        res = CliRunner().invoke(collect_gemm_cmd, [*ARGS, "--push", url])
    assert res.exit_code == 1 and "missing bearer token" in res.output
    res = CliRunner().invoke(collect_gemm_cmd, [*ARGS, "--push", url, "--token", TOKEN])  # stopped now
    assert res.exit_code == 1 and "cannot reach the service" in res.output


def test_right_token_pushes_the_rows_and_keeps_no_copy(tmp_path: Path) -> None:
    local = tmp_path / "local"
    with service_in_thread(tmp_path / "served") as url:
        res = CliRunner().invoke(collect_gemm_cmd, [*ARGS, "--push", url, "--token", TOKEN, "--store", str(local)])
    assert res.exit_code == 0, res.output
    assert DatasetStore(tmp_path / "served").read("gemm").height == 1
    assert not list((local / "unsent").glob("*.parquet"))


def test_a_failed_push_keeps_the_measurements_in_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The token is fine when checked, but the upload itself fails: the rows must survive."""
    from hwsurrogate import client as client_module

    def upload_fails(self: object, kind: str, frame: pl.DataFrame) -> None:
        raise client_module.ServiceError(503, "service went away")

    monkeypatch.setattr(client_module.HwsClient, "upload_rows", upload_fails)
    local = tmp_path / "local"
    with service_in_thread(tmp_path / "served") as url:
        res = CliRunner().invoke(collect_gemm_cmd, [*ARGS, "--push", url, "--token", TOKEN, "--store", str(local)])
    assert res.exit_code == 1
    kept = list((local / "unsent").glob("gemm-*.parquet"))
    assert len(kept) == 1 and str(kept[0]) in res.output.replace("\n", "")
    rows = pl.read_parquet(kept[0])
    assert rows.height == 1 and rows["runtime_ms"][0] > 0
