"""File helpers every sub-package shares: atomic writes and file-system-safe names.

An atomic write goes to a temporary file in the target's folder, is flushed and fsynced, then
renamed over the target (``os.replace``): a reader sees the old file or the new one, never half
of one, and a failed write leaves the old file byte-identical. The dataset store's multi-table
commit (journal + renames under a lock, :mod:`hwsurrogate.datasets.store`) builds on the same
idea but needs its own journal.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], payload: Any, *, indent: int = 2) -> Path:
    """``payload`` as JSON (NaN and infinities refused), written atomically with a final newline."""
    return atomic_write_text(path, json.dumps(payload, indent=indent, allow_nan=False) + "\n")


def safe_name(name: str) -> str:
    """A file name for an identifier such as a device id: ``/`` -> ``__``, other unsafe chars -> ``_``.

    ``help/pixel2`` -> ``help__pixel2``; leading dots are dropped so that no name is hidden or
    climbs a folder (``../x`` -> ``__x``). An identifier with no safe character is a ValueError.
    """
    out = _UNSAFE.sub("_", name.replace("/", "__")).lstrip(".")
    if not out.strip("_"):
        raise ValueError(f"{name!r} has no character usable in a file name")
    return out
