"""Column-wise request bodies validate exactly like their pydantic model and fill its defaults."""

from __future__ import annotations

import asyncio
import json

import polars as pl
import pytest
from fastapi.exceptions import RequestValidationError

from hwsurrogate.service.body import _as_typed_dict, json_rows_body
from hwsurrogate.service.schemas import ArchQuery, GemmQueryBatch

SCHEMA = {"device": pl.String, "op": pl.String, "m": pl.Int64, "n": pl.Int64, "k": pl.Int64,
          "batch": pl.Int64, "dtype": pl.String, "layout": pl.String}  # fmt: skip


class _Req:
    def __init__(self, body: object) -> None:
        self._raw = json.dumps(body).encode()
        self.state = type("State", (), {})()

    async def body(self) -> bytes:
        return self._raw


def _parse(body: object) -> pl.DataFrame:
    return asyncio.run(json_rows_body(GemmQueryBatch, "queries", SCHEMA)(_Req(body)))  # type: ignore[arg-type]


def test_rows_become_a_frame_with_model_defaults() -> None:
    frame = _parse({"queries": [{"device": "a/x", "m": 2, "n": 3, "k": 4},
                                {"device": "a/y", "op": "bmm", "m": 5, "n": 6, "k": 7, "batch": 3, "layout": "nt"}]})  # fmt: skip
    assert frame.to_dicts() == [
        {"device": "a/x", "op": "gemm", "m": 2, "n": 3, "k": 4, "batch": 1, "dtype": "fp32", "layout": None},
        {"device": "a/y", "op": "bmm", "m": 5, "n": 6, "k": 7, "batch": 3, "dtype": "fp32", "layout": "nt"},
    ]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"queries": [{"device": "a/x", "m": 2, "n": 3, "k": 4}, {"device": "a/x", "m": -1, "n": 3, "k": 4}]},
         ("body", "queries", 1, "m")),
        ({"queries": [{"device": "a/x", "m": 2, "n": 3, "k": 4, "colour": "red"}]}, ("body", "queries", 0, "colour")),
        ({"queries": []}, ("body", "queries")),
        ({"queries": [{"device": "a/x", "m": 2, "n": 3}]}, ("body", "queries", 0, "k")),
        ({"rows": []}, ("body", "queries")),
        ({"queries": [{"device": "a/x", "m": 2, "n": 3, "k": 4}], "extra": 1}, ("body", "extra")),
    ],
)  # fmt: skip
def test_errors_name_the_field_like_the_model_would(body: object, loc: tuple) -> None:
    with pytest.raises(RequestValidationError) as exc:
        _parse(body)
    assert loc in [tuple(e["loc"]) for e in exc.value.errors()]


def test_models_with_validators_are_refused() -> None:
    with pytest.raises(TypeError, match="validators"):
        _as_typed_dict(ArchQuery)


def test_defaults_filled_in_python_and_in_polars_give_the_same_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small batches fill the model defaults in Python, large ones with a polars query: the same frame."""
    from hwsurrogate.service import body

    queries = [{"device": f"a/{i}", "m": i + 1, "n": 3, "k": 4} if i % 3 else
               {"device": f"a/{i}", "op": "bmm", "m": i + 1, "n": 3, "k": 4, "batch": 2, "dtype": "bf16", "layout": "tn"}
               for i in range(40)]  # fmt: skip
    in_python = _parse({"queries": queries})
    monkeypatch.setattr(body, "FILL_IN_PYTHON_ROWS", 0)
    in_polars = _parse({"queries": queries})
    assert in_python.equals(in_polars)
    assert in_python["dtype"].to_list()[:3] == ["bf16", "fp32", "fp32"]
    assert in_python["batch"].null_count() == 0 and in_python["layout"].null_count() == 26
