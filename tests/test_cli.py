"""The ``hws`` command line as a whole: help stays light, every listed command resolves."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from hwsurrogate.cli import cli
from hwsurrogate.cli.bench import BENCHMARKS, bench

HEAVY = ("torch", "mlflow", "sklearn", "polars", "pandas", "scipy", "fastapi", "pydantic_settings")


@pytest.mark.parametrize("args", [[], ["collect"], ["bench"], ["data"], ["serve"], ["quickstart"], ["collect", "fpga"]])
def test_help_loads_no_heavy_library(args: list[str]) -> None:
    code = (
        "import json, sys\n"
        "from hwsurrogate.cli import main\n"
        "try:\n"
        f"    main({[*args, '--help']!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1]) == [], f"hws {' '.join(args)} --help imported heavy libraries"


def test_top_level_help_lists_the_verbs_in_workflow_order() -> None:
    out = CliRunner().invoke(cli, ["--help"]).output
    verbs = ["data", "collect", "train", "bench", "adapt", "predict", "serve", "quickstart"]
    positions = [out.index(f"\n  {v} ") for v in verbs]
    assert positions == sorted(positions)


def test_every_listed_benchmark_resolves_to_its_command() -> None:
    ctx = bench.make_context("bench", [], resilient_parsing=True)
    assert bench.list_commands(ctx) == list(BENCHMARKS)
    for name in BENCHMARKS:
        command = bench.get_command(ctx, name)
        assert command is not None and command.name == name
        assert "unavailable" not in (command.help or "")


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("train:\n  gemm: {max_iter: 3}\n", None),  # a valid key becomes the default
        ("trian:\n  gemm: {max_iter: 3}\n", "'hws' has no option or subcommand 'trian'; did you mean 'train'?"),
        ("train:\n  gemm: {max_iters: 3}\n", "'train gemm' has no option 'max_iters'; did you mean 'max_iter'?"),
        ("train:\n  gemm: 3\n", "'train gemm' must map option names to values"),
        ("- a list\n", "expected a mapping of command -> options"),
    ],
)
def test_cli_defaults_file_keys_are_checked_never_ignored(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    yaml_text: str, message: str | None,
) -> None:  # fmt: skip
    from hwsurrogate.cli import main

    path = tmp_path / "defaults.yml"  # type: ignore[operator]
    path.write_text(yaml_text)
    monkeypatch.setenv("HWSURROGATE_CLI_DEFAULTS", str(path))
    if message is None:
        main(["train", "gemm", "--help"])
        assert "Boosting iterations.  [default: 3]" in capsys.readouterr().out
        return
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "gemm", "--help"])
    assert exit_info.value.code == 1
    assert message in capsys.readouterr().err
