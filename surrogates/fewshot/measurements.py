"""Measurements for few-shot adaptation: the ONE reader of a measurement file and the ONE set of checks.

Each task passes its own columns and error class: the latency task (columns ``space``,
``arch_key``, ``latency_ms``; :func:`check_measurements` here, :class:`~.config.FewShotError`)
and the GEMM task (``op``, ``m``, ``n``, ``k``, ``runtime_ms``; :func:`.gemm.check_measurements`,
:class:`~.gemm.AdaptationError`). Every error names the column and the first bad row:

- ``measurements miss column(s) [...]; need [...]``
- ``measurements: column 'x' is NaN/missing/non-numeric/infinite in row i (n bad row(s))``
- ``measurements: column 'x' must be > 0; row i has v``
- ``measurements: duplicate <thing> in row i (...); n rows repeat a <thing>; <advice>``
- ``too few measurements: ...; need at least ...``
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from hwsurrogate.datasets import archspaces
from hwsurrogate.surrogates.fewshot.config import FEWSHOT_SPACES, FewShotError

#: columns of a latency measurement file (one row per measured architecture)
MEASUREMENT_COLUMNS: tuple[str, ...] = ("space", "arch_key", "latency_ms")
_DEVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-/]{0,127}$")


# --------------------------------------------------------------------------- shared by every task
def read_measurements(path: str | os.PathLike[str], *, error: type[Exception] = FewShotError) -> pl.DataFrame:
    """Read a CSV, parquet (``.parquet``/``.pq``) or JSON measurements file; ``error`` when unreadable."""
    p = Path(path)
    if not p.is_file():
        raise error(f"measurements file {str(p)!r} does not exist")
    try:
        suffix = p.suffix.lower()
        if suffix in {".parquet", ".pq"}:
            return pl.read_parquet(p)
        if suffix == ".json":
            return pl.read_json(p)
        return pl.read_csv(p, infer_schema_length=10000)
    except Exception as exc:  # polars raises several types for malformed files
        raise error(f"measurements file {str(p)!r} could not be read: {exc}") from None


def require_columns(
    frame: pl.DataFrame, columns: Sequence[str], *, error: type[Exception], hint: str = ""
) -> None:
    """``error`` naming the missing ones of ``columns`` (``hint`` follows the list of needed columns)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise error(f"measurements miss column(s) {missing}; need {list(columns)}{hint}")


def positive_numbers(
    frame: pl.DataFrame, columns: Sequence[str], *, error: type[Exception]
) -> dict[str, pl.Series]:
    """Each of ``columns`` as Float64, checked finite and > 0 (``error`` names column and first bad row)."""
    out: dict[str, pl.Series] = {}
    for col in columns:
        s = frame[col].cast(pl.Float64, strict=False)
        bad = s.is_null() | s.is_nan() | ~s.is_finite()
        if bad.any():
            i = int(bad.arg_true()[0])
            raise error(
                f"measurements: column {col!r} is NaN/missing/non-numeric/infinite in row {i} "
                f"({int(bad.sum())} bad row(s))"
            )
        if (s <= 0).any():
            i = int((s <= 0).arg_true()[0])
            raise error(f"measurements: column {col!r} must be > 0; row {i} has {s[i]}")
        out[col] = s
    return out


def check_unique(
    frame: pl.DataFrame,
    keys: Sequence[str],
    *,
    what: str,
    describe: Callable[[dict[str, Any]], str],
    advice: str,
    error: type[Exception],
) -> None:
    """``error`` at the first row whose ``keys`` repeat another row's (``what``: one row's thing)."""
    dup = frame.select(keys).is_duplicated()
    if dup.any():
        i = int(dup.arg_true()[0])
        article = "an" if what[:1] in "aeiou" else "a"
        raise error(
            f"measurements: duplicate {what} in row {i} ({describe(frame.row(i, named=True))}); "
            f"{int(dup.sum())} rows repeat {article} {what}; {advice}"
        )


def check_min_rows(
    frame: pl.DataFrame,
    min_rows: int,
    *,
    what: str,
    error: type[Exception],
    per: str | None = None,
    advice: str = "",
) -> None:
    """``error`` when ``frame`` has fewer than ``min_rows`` rows (in some group of column ``per``)."""
    if per is None:
        if frame.height < min_rows:
            raise error(f"too few measurements: {frame.height} rows; need at least {min_rows} {what}{advice}")
        return
    counts = frame.group_by(per).len()
    few = counts.filter(pl.col("len") < min_rows)
    if few.height:
        raise error(
            f"too few measurements: {dict(zip(few[per].to_list(), few['len'].to_list(), strict=True))} "
            f"per {per}; need at least {min_rows} per {per}{advice}"
        )


# --------------------------------------------------------------------------- the latency task
def check_device_name(device_id: str) -> str:
    """``device_id`` when usable as an adapted device's name (1-128 safe characters), else FewShotError."""
    if not isinstance(device_id, str) or not _DEVICE_RE.match(device_id) or ".." in device_id:
        raise FewShotError(
            f"device {device_id!r}: use 1-128 characters from letters, digits and _ . : - / "
            "(starting with a letter or digit, no '..')"
        )
    return device_id


def check_measurements(measurements: pl.DataFrame, *, min_per_space: int) -> pl.DataFrame:
    """Validate and canonicalize a latency measurements frame (space, arch_key, latency_ms).

    Raises :class:`FewShotError` naming the column and the first bad row for: missing columns,
    null/NaN/inf/non-numeric/non-positive latencies, unknown spaces, unparseable arch keys,
    duplicated (space, arch_key) and fewer than ``min_per_space`` rows in a space.
    """
    require_columns(measurements, MEASUREMENT_COLUMNS, error=FewShotError)
    m = measurements.select(MEASUREMENT_COLUMNS)
    if m.height == 0:
        raise FewShotError("measurements are empty; need at least a few measured architectures")
    lat = positive_numbers(m, ["latency_ms"], error=FewShotError)["latency_ms"]
    spaces = m["space"].cast(pl.String)
    keys: list[str] = []
    for i, (space, key) in enumerate(
        zip(spaces.to_list(), m["arch_key"].cast(pl.String).to_list(), strict=True)
    ):
        if space not in FEWSHOT_SPACES:
            raise FewShotError(
                f"measurements: column 'space' row {i}: {space!r} is not one of {list(FEWSHOT_SPACES)}"
            )
        try:
            keys.append(archspaces.check_arch_key(space, key or ""))
        except ValueError as exc:
            raise FewShotError(f"measurements: column 'arch_key' row {i}: {exc}") from None
    out = pl.DataFrame({"space": spaces, "arch_key": keys, "latency_ms": lat})
    check_unique(
        out,
        ["space", "arch_key"],
        what="architecture",
        describe=lambda r: f"{r['space']}, {r['arch_key']!r}",
        advice="give one latency per architecture",
        error=FewShotError,
    )
    check_min_rows(
        out,
        min_per_space,
        what="measured architectures",
        per="space",
        advice=" (10 HELP reference architectures plus 10 more is the recommended set)",
        error=FewShotError,
    )
    return out
