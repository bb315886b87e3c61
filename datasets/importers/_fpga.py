"""Helpers shared by the FPGA importers: checked numeric columns and JSON-encoded struct columns."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from hwsurrogate.errors import SourceFormatError


def check_nonnegative(
    frame: pl.DataFrame, columns: Sequence[str], path: Path, *, id_column: str | None = None
) -> None:
    """Raise naming file, column and first bad row when a present value is NaN, infinite or negative.

    Nulls (empty cells) pass: they are missing values, handled by the importer.
    """
    for col in columns:
        s = frame[col]
        if not s.dtype.is_numeric():
            cast = s.cast(pl.Float64, strict=False)
            unparsable = cast.is_null() & s.is_not_null()
            if unparsable.any():
                _raise(frame, unparsable, col, path, id_column, "is not a number")
            s = cast
        s = s.cast(pl.Float64)
        bad = (s.is_nan() | s.is_infinite() | (s < 0)).fill_null(False)
        if bad.any():
            _raise(frame, bad, col, path, id_column, "is NaN, infinite or negative")


def _raise(
    frame: pl.DataFrame, bad: pl.Series, col: str, path: Path, id_column: str | None, what: str
) -> None:
    i = int(bad.arg_true()[0])
    where = f" ({id_column}={frame[id_column][i]!r})" if id_column else ""
    raise SourceFormatError(
        f"{path}: column {col!r} {what} in {int(bad.sum())} row(s); first at data row {i}{where}: "
        f"{frame[col][i]!r}"
    )


def json_object(columns: dict[str, pl.Expr]) -> pl.Expr:
    """One JSON object string per row from named expressions (vectorised, keys in the given order)."""
    return pl.struct([e.alias(k) for k, e in columns.items()]).struct.json_encode()


def require_columns(frame: pl.DataFrame, required: Sequence[str], path: Path) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SourceFormatError(f"{path}: missing column(s) {missing}; found {frame.columns[:24]}")
