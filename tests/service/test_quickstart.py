"""hws quickstart: steps are reported, missing pieces skipped, failures never stop the loop."""

from __future__ import annotations

import threading
from pathlib import Path

from click.testing import CliRunner

from hwsurrogate.cli.quickstart import Context, Skip, Step, quickstart, run_steps
from hwsurrogate.datasets.store import DatasetStore


def test_runner_reports_ok_skip_and_failure_and_carries_on(tmp_path: Path):
    ran = []

    def boom(ctx: Context) -> str:
        raise RuntimeError("disk on fire")

    def missing(ctx: Context) -> str:
        raise Skip("module x is not available in this build")

    def fine(ctx: Context) -> str:
        ran.append("fine")
        return "did it"

    ctx = Context(store=DatasetStore(tmp_path / "store"))
    out = run_steps(ctx, [Step("a", boom), Step("b", missing), Step("c", fine)])
    assert [s for _, s, _ in out] == ["failed", "skipped", "ok"]
    assert out[0][2] == "RuntimeError: disk on fire" and ran == ["fine"]


def test_quickstart_without_models_serves_and_skips_queries_cleanly(tmp_path: Path, monkeypatch):
    # an empty registry of its own: the session's shared MLflow DB may hold other tests' champions
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty-mlflow.db'}")
    result = CliRunner().invoke(
        quickstart, ["--store", str(tmp_path / "store"), "--skip-import", "--skip-collect", "--skip-train"]
    )
    assert result.exit_code == 0, result.output
    assert "start the service ..." in result.output and "serving at http://127.0.0.1:" in result.output
    assert "skipped" in result.output and "no gemm model is served" in result.output
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in result.output
    assert "failed" not in result.output
    # the server thread is joined before returning (left running, it crashed the interpreter's exit)
    assert not [t for t in threading.enumerate() if t.name == "hws-serve" and t.is_alive()]
