"""hws serve option checks (they fail before uvicorn starts) and ServiceConfig validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hwsurrogate.cli.serve import serve
from hwsurrogate.service.app import ServiceConfig


@pytest.mark.parametrize("pin", ["gemm", "gpu=3", "gemm=latest"])
def test_bad_model_version_pin_is_a_usage_error_naming_the_option(pin):
    result = CliRunner().invoke(serve, ["--model-version", pin])
    assert result.exit_code == 2 and "--model-version" in result.output


def test_short_token_is_refused():
    result = CliRunner().invoke(serve, ["--token", "abc"])
    assert result.exit_code == 2 and "--token" in result.output


def test_config_rejects_unknown_task_pin_and_short_token():
    with pytest.raises(ValueError, match="model_versions"):
        ServiceConfig(model_versions={"gpu": "1"})
    with pytest.raises(ValueError, match="token"):
        ServiceConfig(token="short")


def test_help_explains_token_and_docs():
    out = CliRunner().invoke(serve, ["--help"]).output
    assert "HWSURROGATE_SERVICE_TOKEN" in out and "/docs" in out and "--model-version" in out


def test_allocator_defaults_fill_in_only_what_the_user_did_not_set():
    from hwsurrogate.service.process_env import SERVER_ENV_DEFAULTS, server_environment

    assert server_environment({"PATH": "/bin"}) == SERVER_ENV_DEFAULTS
    assert server_environment({"MALLOC_ARENA_MAX": "8", "OMP_WAIT_POLICY": "ACTIVE"}) == {
        "_RJEM_MALLOC_CONF": SERVER_ENV_DEFAULTS["_RJEM_MALLOC_CONF"]
    }
    assert server_environment({"MALLOC_ARENA_MAX": "8", "_RJEM_MALLOC_CONF": "dirty_decay_ms:0"}) == {
        "OMP_WAIT_POLICY": "PASSIVE"
    }
    # what a parent process that imported polars passes on is polars' default, not the user's
    polars_default = "dirty_decay_ms:500,muzzy_decay_ms:1000"
    assert server_environment({"MALLOC_ARENA_MAX": "8", "_RJEM_MALLOC_CONF": polars_default, "OMP_WAIT_POLICY": ""}) == {
        "_RJEM_MALLOC_CONF": SERVER_ENV_DEFAULTS["_RJEM_MALLOC_CONF"]
    }


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc/<pid>/environ")
def test_hws_serve_starts_the_server_process_with_the_allocator_settings(tmp_path: Path):
    """The settings are read at process start: the process answering HTTP (hws serve exec'd into
    uvicorn, same pid) has them, and a value the user set is kept."""
    import os
    import sys

    from hwsurrogate.service.process_env import SERVER_ENV_DEFAULTS

    from .conftest import free_port, server_process

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV_DEFAULTS}
    env.update(MALLOC_ARENA_MAX="4", HWSURROGATE_SERVICE_LOAD_MODELS="0")
    env["_RJEM_MALLOC_CONF"] = "dirty_decay_ms:500,muzzy_decay_ms:1000"  # what polars leaves to a child
    cmd = [sys.executable, "-m", "hwsurrogate.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--store", str(tmp_path / "store"), "--read-only", "--log-level", "warning"]  # fmt: skip
    with server_process(cmd, port, env) as (_, proc):
        raw = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
    got = dict(item.decode().split("=", 1) for item in raw if b"=" in item)
    assert got["MALLOC_ARENA_MAX"] == "4"
    assert got["_RJEM_MALLOC_CONF"] == SERVER_ENV_DEFAULTS["_RJEM_MALLOC_CONF"]
    assert got["OMP_WAIT_POLICY"] == "PASSIVE"
