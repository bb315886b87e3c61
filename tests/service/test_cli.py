"""hws serve option checks (they fail before uvicorn starts) and ServiceConfig validation."""

from __future__ import annotations

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
