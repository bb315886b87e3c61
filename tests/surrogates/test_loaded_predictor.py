"""``LoadedPredictor.predict``: the model sees exactly the task's input columns in order, and the
answer has exactly the task's output columns (plus the per-row notes) in order, whatever the
caller's frame and the model's answer carry (the selects are skipped only when already so)."""

from __future__ import annotations

import polars as pl
import pytest

from hwsurrogate.surrogates.api import INPUTS, NOTE_COLUMN, OUTPUTS
from hwsurrogate.surrogates.registry.loading import LoadedPredictor


class Native:
    def __init__(self, answer_columns: list[str]) -> None:
        self.answer_columns = answer_columns
        self.seen: list[list[str]] = []

    def predict_frame(self, queries: pl.DataFrame) -> pl.DataFrame:
        self.seen.append(queries.columns)
        values = {"runtime_ms": 1.0, "power_w": 2.0, "energy_j": 0.002, NOTE_COLUMN: "n", "extra": 9}
        return pl.DataFrame({c: [values[c]] * queries.height for c in self.answer_columns})


QUERY = {"device_id": "a/x", "op": "gemm", "m": 8, "n": 8, "k": 8, "batch": 1, "dtype": "fp32", "layout": "nn"}


@pytest.mark.parametrize(
    ("query_columns", "answer_columns"),
    [
        (list(INPUTS["gemm"]), list(OUTPUTS["gemm"])),  # already so: no select either side
        (["layout", *INPUTS["gemm"][:-1], "comment"], ["energy_j", "extra", "runtime_ms", "power_w"]),
        (list(INPUTS["gemm"]), ["power_w", NOTE_COLUMN, "runtime_ms", "energy_j"]),
    ],
)
def test_inputs_and_outputs_are_the_task_columns_in_order(query_columns: list[str], answer_columns: list[str]) -> None:
    native = Native(answer_columns)
    pred = LoadedPredictor("gemm", "hws-gemm", "1", model=None, native=native)
    queries = pl.DataFrame({c: [QUERY.get(c, "x")] for c in query_columns})
    out = pred.predict(queries)
    assert native.seen == [list(INPUTS["gemm"])]
    notes = [NOTE_COLUMN] if NOTE_COLUMN in answer_columns else []
    assert out.columns == [*OUTPUTS["gemm"], *notes]
    assert out.row(0, named=True)["runtime_ms"] == 1.0 and out.row(0, named=True)["power_w"] == 2.0


def test_a_missing_input_column_is_named() -> None:
    pred = LoadedPredictor("gemm", "hws-gemm", "1", model=None, native=Native(list(OUTPUTS["gemm"])))
    with pytest.raises(ValueError, match="layout"):
        pred.predict(pl.DataFrame({c: [QUERY[c]] for c in INPUTS["gemm"] if c != "layout"}))
