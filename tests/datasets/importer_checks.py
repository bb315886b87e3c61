"""Shared helpers of the importer tests: run the CLI in-process and fingerprint a store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hwsurrogate.cli import main


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file in the store except the lock and writers' temporary files."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock" and not p.name.endswith(".tmp")
    }


def run_hws(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``hws ARGS`` in-process: (exit code, stdout + stderr)."""
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err
