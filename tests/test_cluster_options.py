"""``--ray`` / ``--on`` checks that need no cluster (and no Ray): bad values fail before any work."""

from __future__ import annotations

import pytest

from hwsurrogate.cli import main
from hwsurrogate.cluster import ClusterError, forwarded_env, resource_label


@pytest.mark.parametrize("label", ["gpu_type=H100", "fpga", "acc:mi300x", "site/rack-2=a_b.c"])
def test_a_resource_label_is_kept_as_given(label: str) -> None:
    assert resource_label(f" {label} ") == label


@pytest.mark.parametrize("label", ["", "a=b=c", "gpu type=H100", "x;rm -rf", '{"gpu": 1}'])
def test_a_bad_label_is_refused_naming_the_option(label: str) -> None:
    with pytest.raises(ClusterError, match="--on"):
        resource_label(label)


def test_only_project_and_mlflow_settings_are_forwarded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-forwarded")
    monkeypatch.setenv("HWSURROGATE_SERVICE_TOKEN", "driver-only")
    env = forwarded_env()
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and "HWSURROGATE_STORE" in env
    assert "AWS_SECRET_ACCESS_KEY" not in env and "HWSURROGATE_SERVICE_TOKEN" not in env


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["collect", "gemm", "--on", "gpu_type=H100"],
            "--on LABEL places tasks on Ray nodes: give --ray ADDRESS too",
        ),
        (["collect", "fpga", "sweep", "--on", "gpu_type=H100"], "give --ray ADDRESS too"),
        (["tune", "gemm"], "give --ray ADDRESS"),
        (
            ["tune", "gemm", "--ray", "x:1", "--space", '{"max_iter": [1.5]}'],
            "max_iter values must be positive ints",
        ),
    ],
)
def test_usage_errors_come_before_any_work(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_an_address_where_nothing_listens_fails_in_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'hwsurrogate[distributed]'")
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "predict",
                "gemm",
                "--device",
                "x",
                "-m",
                "1",
                "-n",
                "1",
                "-k",
                "1",
                "--ray",
                f"127.0.0.1:{port}",
            ]
        )
    assert exc.value.code == 2
    assert f"--ray 127.0.0.1:{port}: nothing answers at 127.0.0.1:{port}" in capsys.readouterr().err
