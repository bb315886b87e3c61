"""`hws predict gemm|fpga` argument handling (no model needed for these failure paths)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from hwsurrogate.cli.predict import predict_fpga, predict_gemm


def test_predict_gemm_without_queries_names_the_missing_flags() -> None:
    res = CliRunner().invoke(predict_gemm, ["--device", "x", "-m", "8"])
    assert res.exit_code == 2
    assert "missing -n, -k" in res.output


def test_predict_gemm_with_no_registered_model_says_how_to_train() -> None:
    res = CliRunner().invoke(
        predict_gemm, ["--device", "x", "-m", "8", "-n", "8", "-k", "8", "--version", "999"]
    )
    assert res.exit_code == 1
    assert "run `hws train gemm` first" in res.output


def test_predict_fpga_rejects_a_file_missing_input_columns(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text("kernel,pragmas\natax,{}\n")
    res = CliRunner().invoke(predict_fpga, ["--queries", str(path)])
    assert res.exit_code == 2
    assert "fpga-hlsyn queries miss column(s) ['tool']" in res.output


def test_predict_fpga_unreadable_file_is_named(tmp_path: Path) -> None:
    res = CliRunner().invoke(predict_fpga, ["--queries", str(tmp_path / "nope.csv")])
    assert res.exit_code == 2 and "does not exist" in res.output
