"""Request batching: concurrent single queries answered in one dispatch call, each exactly as alone.

The oracle is the unbatched path: ``Dispatch.predict`` per part, and the same HTTP requests sent
one at a time to an app with batching off.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import httpx
import polars as pl
import pytest

from hwsurrogate.errors import UnknownDeviceError
from hwsurrogate.service.app import ServiceConfig, create_app
from hwsurrogate.service.batching import RequestBatcher
from hwsurrogate.service.deps import get_adapter, get_models
from hwsurrogate.service.routes._common import finite_or_null, json_predictions, json_response
from hwsurrogate.surrogates.api import INPUTS
from hwsurrogate.surrogates.domain import record_domain
from hwsurrogate.surrogates.predict import Answer, Dispatch

from .conftest import FakeAdapter, FakePredictor, fake_models

DEVICE = "local/box-cpu"
_TRAIN = pl.DataFrame({"device_id": [DEVICE] * 2, "op": ["gemm"] * 2, "m": [8, 64], "n": [8, 64], "k": [8, 64],
                       "batch": [1, 1], "dtype": ["fp32"] * 2, "layout": ["nn"] * 2})  # fmt: skip


class DomainFake(FakePredictor):
    """The fake GEMM model with a recorded training domain (m, n, k in 8..64 on one device)."""

    def __init__(self) -> None:
        super().__init__("gemm", "hws-gemm", {DEVICE})
        self.training_domain = record_domain("gemm", _TRAIN)
        self.sizes: list[int] = []

    def predict(self, queries: pl.DataFrame) -> pl.DataFrame:
        self.sizes.append(queries.height)
        return super().predict(queries)


def _part(*ms: int, device: str = DEVICE) -> pl.DataFrame:
    return pl.DataFrame({"device_id": [device] * len(ms), "op": "gemm", "m": list(ms), "n": 16, "k": 16,
                         "batch": 1, "dtype": "fp32", "layout": "nn"}).select(INPUTS["gemm"])  # fmt: skip


def _same(got: Answer | Exception, want: Answer | Exception) -> None:
    if isinstance(want, Exception):
        assert type(got) is type(want) and str(got) == str(want)
        return
    assert isinstance(got, Answer)
    assert got.outputs.equals(want.outputs)
    assert (got.predictor, got.models, got.warnings, got.in_domain) == (
        want.predictor, want.models, want.warnings, want.in_domain,
    )  # fmt: skip


def _alone(dispatch: Dispatch, part: pl.DataFrame, strict: bool) -> Answer | Exception:
    try:
        return dispatch.predict("gemm", part, strict=strict)
    except Exception as exc:  # noqa: BLE001 - compared with what predict_many hands back
        return exc


@pytest.mark.parametrize("strict", [False, True])
def test_predict_many_answers_each_part_as_predict_alone(strict):
    model = DomainFake()
    dispatch = Dispatch(lambda task: model, gemm_devices=lambda device: None)
    # inside; two rows with the second outside (m=500); outside in its first row; a 3-row part
    parts = [_part(8), _part(16, 500), _part(1000), _part(9, 10, 11), _part(64)]
    got = dispatch.predict_many("gemm", pl.concat(parts), [p.height for p in parts], strict=strict)
    merged_sizes = list(model.sizes)
    for part, answer in zip(parts, got, strict=True):
        _same(answer, _alone(dispatch, part, strict))
    # one model call for every part the domain check let through
    assert merged_sizes == [5 if strict else 8]
    if not strict:  # row numbers and counts are the part's own
        assert got[1].warnings == [  # type: ignore[union-attr]
            "1 of 2 queries lie outside the training domain of hws-gemm v7; query row 1: m=500 outside the trained range 8..64"
        ]
        assert got[1].in_domain == [True, False]  # type: ignore[union-attr]
    else:
        assert isinstance(got[1], ValueError) and "query row 1: m=500" in str(got[1])


def test_predict_many_model_error_reaches_only_its_part():
    model = FakePredictor("gemm", "hws-gemm", {DEVICE})  # no recorded domain: every part warns the same
    dispatch = Dispatch(lambda task: model)
    parts = [_part(8), _part(9, device="nope/gpu"), _part(10)]
    got = dispatch.predict_many("gemm", pl.concat(parts), [p.height for p in parts])
    assert model.calls == 1 + 3  # the merged call failed; then each part alone
    assert isinstance(got[1], UnknownDeviceError) and "nope/gpu" in str(got[1])
    for part, answer in zip(parts, got, strict=True):
        _same(answer, _alone(dispatch, part, False))


def test_batcher_merges_one_loop_turn_into_one_dispatch_call():
    model = DomainFake()
    dispatch = Dispatch(lambda task: model, gemm_devices=lambda device: None)
    batcher = RequestBatcher()
    parts = [_part(8 + i) for i in range(20)] + [_part(500)]

    async def go() -> list[object]:
        lone = await batcher.predict(dispatch, "gemm", _part(8))  # no concurrency: answered alone
        assert lone.outputs.height == 1
        calls = [batcher.predict(dispatch, "gemm", p, strict=i == 20) for i, p in enumerate(parts)]
        return await asyncio.gather(*calls)

    got = asyncio.run(go())
    assert model.sizes == [1, 20]  # the lone one, then the 20 non-strict parts in one model call
    assert batcher.n_requests == 22 and batcher.n_dispatch_calls == 3  # lone, non-strict group, strict group
    for i, (part, answer) in enumerate(zip(parts, got, strict=True)):
        _same(answer, _alone(dispatch, part, i == 20))  # type: ignore[arg-type]
    assert isinstance(got[20], ValueError)


def test_merged_calls_run_in_the_batchers_thread_not_behind_another_queue():
    """A served model wrapped for batching (``CoalescingPredictor``) called by the request batcher's
    worker runs there: the call is merged already, and a second hand-over would add thread switches."""
    import threading

    from hwsurrogate.service.batching import CoalescingPredictor

    class Where(DomainFake):
        def predict(self, queries: pl.DataFrame) -> pl.DataFrame:
            self.threads.append(threading.current_thread().name)
            return super().predict(queries)

    model = Where()
    model.threads = []
    wrapped = CoalescingPredictor(model)
    dispatch = Dispatch(lambda task: wrapped, gemm_devices=lambda device: None)
    batcher = RequestBatcher()

    async def go() -> list[object]:
        return await asyncio.gather(*[batcher.predict(dispatch, "gemm", _part(8 + i)) for i in range(5)])

    got = asyncio.run(go())
    assert model.threads == ["batch-requests"] and model.sizes == [5]
    assert wrapped.n_model_calls == 1 and wrapped.n_requests == 1  # counted as /v1/models shows them
    alone = Dispatch(lambda task: model, gemm_devices=lambda device: None)
    for i, answer in enumerate(got):
        _same(answer, _alone(alone, _part(8 + i), False))  # type: ignore[arg-type]
    # any other caller: through its worker
    assert wrapped.predict(_part(8)).height == 1 and model.threads[-1] == "batch-gemm"


def _app(tmp_path: Path, batching: bool):
    app = create_app(ServiceConfig(store=tmp_path / "store", load_models=False, batching=batching))
    models = fake_models()
    models.predictors["gemm"] = DomainFake()
    adapter = FakeAdapter()
    app.dependency_overrides[get_models] = lambda: models
    app.dependency_overrides[get_adapter] = lambda: adapter
    return app, models


def test_concurrent_http_requests_get_the_unbatched_responses(tmp_path: Path):
    bodies = [
        {"queries": [{"device": DEVICE, "op": "gemm", "m": 8 + i, "n": 16, "k": 16}]} for i in range(12)
    ]
    bodies[3]["queries"][0]["m"] = 900  # outside the domain: a warning for this request only
    bodies[5]["strict"] = True
    bodies[5]["queries"][0]["m"] = 901  # refused under strict: a 422 for this request only
    bodies[7]["queries"][0]["device"] = "nope/gpu"  # unknown device: a 404 for this request only
    bodies[9]["queries"].append({"device": DEVICE, "op": "gemm", "m": 10, "n": 16, "k": 16, "dtype": "fp16"})

    async def send(app, concurrent: bool) -> list[tuple[int, dict]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            calls = [c.post("/v1/predict/gemm", json=b) for b in bodies]
            if concurrent:
                rs = await asyncio.gather(*calls)
            else:
                rs = [await call for call in calls]
        return [(r.status_code, r.json()) for r in rs]

    batched_app, batched_models = _app(tmp_path / "a", batching=True)
    plain_app, _ = _app(tmp_path / "b", batching=False)
    got = asyncio.run(send(batched_app, concurrent=True))
    want = asyncio.run(send(plain_app, concurrent=False))
    assert got == want
    assert [s for s, _ in got].count(200) == 10 and got[5][0] == 422 and got[7][0] == 404
    assert got[3][1]["in_domain"] is False and got[3][1]["out_of_domain"] == [0]
    assert batched_app.state.request_batcher.n_requests == 12
    assert max(batched_models.predictors["gemm"].sizes) > 2  # some requests did share a model call


def test_json_predictions_equals_the_polars_encoding():
    frame = pl.DataFrame({"runtime_ms": [0.1, math.nan, 1e-7, None, 3.0], "power_w": [math.inf, 2.5, -math.inf, 4.0, 1e20],
                          "energy_j": pl.Series([1.5, 2.0, None, 0.1, 7.0], dtype=pl.Float32)})  # fmt: skip
    cols = ["runtime_ms", "power_w", "energy_j"]
    head = {"model": {"name": "m", "version": "1"}, "count": frame.height}
    all_f64 = frame.with_columns(pl.col("energy_j").cast(pl.Float64))  # the one-call path (rows())
    for part in (frame, frame.head(1), frame.clear(), all_f64, all_f64.head(1), all_f64.select(cols[::-1])):
        small = json.loads(json_predictions(head, "predictions", part, cols).body)
        polars = json.loads(json_response(head, "predictions", finite_or_null(part, cols)).body)
        assert small == polars


def test_the_gemm_routes_rows_become_the_dispatch_columns_in_order():
    from hwsurrogate.service.routes import gemm

    renamed = [gemm._COLUMNS.get(c, c) for c in gemm._SCHEMA]  # the batched path sends them unselected
    assert renamed == list(INPUTS["gemm"])


def test_batcher_survives_queries_that_make_no_frame():
    """A request whose queries cannot be merged or built gets its own error; the worker goes on."""
    model = DomainFake()
    dispatch = Dispatch(lambda task: model, gemm_devices=lambda device: None)
    batcher = RequestBatcher()
    odd = _part(8).with_columns(pl.col("m").cast(pl.String))  # does not stack with the others

    async def go() -> list[object]:
        return await asyncio.gather(
            *(batcher.predict(dispatch, "gemm", q) for q in (_part(8), odd, _part(9)))
        )

    got = asyncio.run(go())
    assert isinstance(got[0], Answer) and isinstance(got[2], Answer)
    _same(got[0], _alone(dispatch, _part(8), False))
    _same(got[1], _alone(dispatch, odd, False))  # answered alone, as the dispatch answers it
    later = asyncio.run(batcher.predict(dispatch, "gemm", _part(10)))  # the worker is still there
    _same(later, _alone(dispatch, _part(10), False))
