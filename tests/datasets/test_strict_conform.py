"""``conform`` is strict (issue 15, F1-F3): what it accepts unchanged, what it refuses, and where."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import polars as pl
import pytest

from hwsurrogate.datasets.schemas import conform, records_frame
from hwsurrogate.errors import SchemaMismatchError


def _gemm(n: int = 3, **columns: object) -> pl.DataFrame:
    base = {
        "device_id": ["local/box-cpu"] * n, "op": ["gemm"] * n, "m": list(range(1, n + 1)), "n": [8] * n,
        "k": [8] * n, "batch": [1] * n, "dtype": ["fp32"] * n, "runtime_ms": [0.5] * n, "source": ["t"] * n,
        "origin": ["t"] * n, "imported_at": [datetime(2024, 1, 1, tzinfo=UTC)] * n,
        "measurement_id": [f"id-{i}" for i in range(n)],
    }  # fmt: skip
    return pl.DataFrame({**base, **columns})


def _round_trip(frame: pl.DataFrame) -> pl.DataFrame:
    buf = io.BytesIO()
    frame.write_parquet(buf)
    buf.seek(0)
    return pl.read_parquet(buf)


def test_lossless_types_are_accepted_unchanged() -> None:
    out = conform(
        "gemm",
        _gemm(
            m=pl.Series([1.0, 2.0, 3.0]),  # integral floats are the same integers
            runtime_ms=pl.Series([1, 2, 3], dtype=pl.UInt8),  # integers into a float column
            collected_at=pl.Series([datetime(2024, 1, 1, 2)] * 3),  # naive timestamps are UTC
            power_trusted=pl.Series([True, None, False]),
            threads=pl.Series([None, None, None], dtype=pl.String),  # only nulls, of any type
        ),
    )
    assert out["threads"].dtype == pl.Int64 and out["threads"].null_count() == 3
    assert out["m"].to_list() == [1, 2, 3] and out["m"].dtype == pl.Int64
    assert out["runtime_ms"].to_list() == [1.0, 2.0, 3.0]
    assert out["collected_at"][0] == datetime(2024, 1, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("column", "values", "row", "message"),
    [
        ("m", [1.0, 1.5, 2.0], 1, "must be integers"),
        ("m", [1, 2, 2**40], 2, "must be <= 16777216"),
        ("m", [1.0, 2.0, 1e20], 2, "must be <= 16777216"),
        ("m", pl.Series([1, 2, 2**64 - 1], dtype=pl.UInt64), 2, "must be <= 16777216"),
        ("runtime_ms", [True, False, True], 0, "must be floats, not booleans"),
        ("power_trusted", [1, 0, 3], 0, "must be booleans, not integers"),
        ("collected_at", [5, 6, 7], 0, "must be timestamps, not integers"),
        ("collected_at", ["2024-01-01T00:00:00Z", "2024-13-01", None], 1, "ISO-8601"),
        ("kernel", ["ok", "x" * 2000, "ok"], 1, "at most 1024 characters"),
        ("kernel", ["ok", "ok", "tab\there"], 2, "control characters"),
        ("device_id", ["local/a", "../../etc/passwd", "local/b"], 1, "must match"),
        ("kernel", [[1], [2], [3]], 0, "not lists/objects"),
    ],
)
def test_refused_values_name_column_and_row(column: str, values: object, row: int, message: str) -> None:
    with pytest.raises(SchemaMismatchError, match=message) as info:
        conform("gemm", _gemm(**{column: values}))
    assert (info.value.column, info.value.row) == (column, row)
    assert f"first at row {row}" in str(info.value)


@pytest.mark.parametrize("value", ["a\x00b", "k" * 40 + "\n", "x\x7f"])
def test_control_characters_found_in_parquet_read_columns(value: str) -> None:
    """Long values read from parquet live in polars' data buffers beside the page's length prefixes."""
    kernels = ["kernel_" + "z" * 30] * 5000 + [value] + ["short"] * 10
    frame = _round_trip(_gemm(len(kernels), kernel=kernels))
    with pytest.raises(SchemaMismatchError, match="control characters") as info:
        conform("gemm", frame)
    assert info.value.row == 5000
    clean = _round_trip(_gemm(len(kernels), kernel=kernels[:5000] + ["ok"] * 11))
    assert conform("gemm", clean).height == 5011


def test_records_frame_refuses_what_polars_would_coerce() -> None:
    with pytest.raises(SchemaMismatchError, match="row 1") as info:
        records_frame("gemm", [{"m": 1}, {"m": True}])
    assert info.value.column == "m"
    with pytest.raises(SchemaMismatchError, match="a list or object"):
        records_frame("gemm", [{"kernel": "a"}, {"kernel": {"x": 1}}])
    with pytest.raises(SchemaMismatchError, match="unexpected column"):
        records_frame("gemm", [{"m": 1}, {"colour": "red"}])
    assert (
        records_frame("gemm", [{"m": 1}, {"m": 2.0}])["m"].dtype == pl.Float64
    )  # conform checks integrality
