"""Helpers shared by the importers: checked file reading and provenance columns."""

from __future__ import annotations

import gzip
import io
import lzma
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from hwsurrogate.errors import SourceFormatError, SourceNotFoundError


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise SourceNotFoundError(f"expected file {path} is missing")
    return path


def read_bytes(path: Path) -> bytes:
    """File contents, transparently decompressing ``.xz`` / ``.gz``; corrupt archives name the file."""
    require_file(path)
    try:
        if path.suffix == ".xz":
            return lzma.decompress(path.read_bytes())
        if path.suffix == ".gz":
            return gzip.decompress(path.read_bytes())
        return path.read_bytes()
    except (lzma.LZMAError, EOFError, OSError) as exc:
        raise SourceFormatError(
            f"{path}: cannot decompress ({exc}); the file is truncated or corrupt"
        ) from None


def read_csv_checked(
    path: Path,
    required: Sequence[str],
    *,
    schema_overrides: dict[str, pl.DataType | type[pl.DataType]] | None = None,
    infer_schema_length: int | None = 10000,
    **kwargs: object,
) -> pl.DataFrame:
    """Read a (possibly compressed) CSV and check that ``required`` columns are present."""
    data = read_bytes(path)
    try:
        df = pl.read_csv(
            io.BytesIO(data),
            schema_overrides=schema_overrides,
            infer_schema_length=infer_schema_length,
            **kwargs,  # type: ignore[arg-type]
        )
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        raise SourceFormatError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise SourceFormatError(f"{path}: missing column(s) {missing}; found {df.columns[:20]}")
    return df


def with_provenance(frame: pl.DataFrame, *, source: str, origin: str, license: str) -> pl.DataFrame:
    """Add the constant provenance columns (``imported_at`` is set by the store)."""
    return frame.with_columns(
        pl.lit(source).alias("source"), pl.lit(origin).alias("origin"), pl.lit(license).alias("license")
    )


def check_positive_finite(frame: pl.DataFrame, column: str, path: Path) -> None:
    """Raise naming file and column when a measured value is NaN, infinite, zero or negative."""
    s = frame[column].cast(pl.Float64, strict=False)
    bad = s.is_null() | ~s.is_finite() | (s <= 0)
    if bad.any():
        i = int(bad.arg_true()[0])
        raise SourceFormatError(
            f"{path}: column {column!r} has {int(bad.sum())} NaN/inf/non-positive value(s), "
            f"first at row {i}: {frame[column][i]!r}"
        )
