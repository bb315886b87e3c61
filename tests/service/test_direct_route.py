"""DirectRoute: the GEMM route's dependencies awaited without FastAPI's solver, same answers and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import fastapi.routing
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi.testclient import TestClient

from hwsurrogate.service.app import ServiceConfig, create_app
from hwsurrogate.service.deps import DirectRoute, get_config

from .conftest import FakeAdapter, fake_models

GEMM_Q = {"device": "gpperf/rtx4070", "op": "gemm", "m": 1024, "n": 512, "k": 256, "batch": 2, "dtype": "fp16"}

#: bodies covering the answer, the domain flags and each refusal (status, field) the route gives
BODIES: list[object] = [
    {"queries": [GEMM_Q, {**GEMM_Q, "m": 8, "n": 8, "k": 8, "batch": 1}]},
    {"queries": [{**GEMM_Q, "device": "local/box-cpu", "layout": "tn"}], "strict": False},
    {"queries": [{**GEMM_Q, "device": "nope/gpu"}]},
    {"queries": [{**GEMM_Q, "m": 0}]},
    {"queries": [{**GEMM_Q, "surprise": 1}]},
    {"queries": []},
    {"queries": [GEMM_Q] * 3},  # over max_predict_queries=2 below
    {"rows": [GEMM_Q]},
    [GEMM_Q],
]


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    app = create_app(ServiceConfig(store=tmp_path / "store", load_models=False, max_predict_queries=2))
    return app


def _answers(client: TestClient, app: FastAPI) -> list[tuple[int, object]]:
    app.state.models, app.state.adapter = fake_models(), FakeAdapter()  # no overrides: the direct path
    out = []
    for body in BODIES:
        r = client.post("/v1/predict/gemm", json=body)
        out.append((r.status_code, r.json()))
    out.append(((r := client.post("/v1/predict/gemm", content=b"{not json")).status_code, r.json()))
    return out


def test_direct_and_general_paths_answer_alike(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    solved: list[str] = []
    general = fastapi.routing.solve_dependencies

    async def counting(**kwargs: object) -> object:
        solved.append(kwargs["dependant"].call.__name__)  # type: ignore[attr-defined]
        return await general(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    with TestClient(app) as client:
        direct = _answers(client, app)
        assert "predict_gemm" not in solved  # FastAPI's solver never ran for the GEMM route
        app.dependency_overrides[get_config] = lambda: app.state.config  # any override: FastAPI's handler
        general_answers = _answers(client, app)
        assert "predict_gemm" in solved
    assert direct == general_answers
    statuses = [status for status, _ in direct]
    assert statuses == [200, 200, 404, 422, 422, 422, 413, 422, 422, 422]
    assert direct[0][1]["count"] == 2 and direct[0][1]["model"] == {"name": "hws-gemm", "version": "7"}
    assert direct[3][1]["field"].endswith("m")  # the refusal names the field


def sync_dep(request: Request) -> int:
    return 1


async def with_query(limit: int = 3) -> int:
    return limit


def test_direct_route_refuses_what_it_cannot_resolve() -> None:
    router = APIRouter(route_class=DirectRoute)

    with pytest.raises(TypeError, match="'sync_dep' is not an `async def`"):

        @router.post("/a")
        async def a(x: Annotated[int, Depends(sync_dep)]) -> Response:
            return Response()

    with pytest.raises(TypeError, match=r"'with_query' takes query params \(limit\)"):

        @router.post("/b")
        async def b(x: Annotated[int, Depends(with_query)]) -> Response:
            return Response()


CALLS: list[str] = []


async def counted(request: Request) -> int:
    CALLS.append("cached")
    return len(CALLS)


async def fresh(request: Request) -> int:
    CALLS.append("fresh")
    return len(CALLS)


async def uses_both(
    a: Annotated[int, Depends(counted)], b: Annotated[int, Depends(fresh, use_cache=False)]
) -> tuple[int, int]:
    return a, b


def _calls_per_request(app: FastAPI) -> list[str]:
    CALLS.clear()
    with TestClient(app) as client:
        assert client.post("/c").status_code == 200
    return sorted(CALLS)


def test_direct_route_caches_dependencies_as_fastapi_does() -> None:
    router = APIRouter(route_class=DirectRoute)

    @router.post("/c")
    async def c(
        x: Annotated[tuple[int, int], Depends(uses_both)],
        y: Annotated[int, Depends(counted)],
        z: Annotated[int, Depends(fresh, use_cache=False)],
    ) -> Response:
        return Response(f"{x} {y} {z}")

    app = FastAPI()
    app.include_router(router)
    direct = _calls_per_request(app)
    app.dependency_overrides[sync_dep] = sync_dep  # any override: FastAPI's own handler
    assert direct == _calls_per_request(app) == ["cached", "fresh", "fresh"]
