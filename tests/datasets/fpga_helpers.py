"""Helpers for the FPGA importer tests: run the CLI in-process and snapshot a store's bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsurrogate.cli import main


def run_hws(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``hws ARGS`` in-process; returns (exit code, stdout + stderr)."""
    code = 0
    try:
        main(args)
    except SystemExit as exc:  # main() exits non-zero on errors
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (the lock file included)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
