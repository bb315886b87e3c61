"""Property-based fuzz of the OpenAPI schema (schemathesis + hypothesis): no input gives a 5xx,
and every 4xx is a JSON body with a ``detail``. Bounded: 15 examples per operation (~180 in all)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis not installed (pip install schemathesis)"
)
from hypothesis import HealthCheck, settings  # noqa: E402

from hwsurrogate.datasets.store import DatasetStore  # noqa: E402
from hwsurrogate.service.app import ServiceConfig, create_app  # noqa: E402
from hwsurrogate.service.deps import get_adapter, get_arch_index, get_models, get_store  # noqa: E402
from hwsurrogate.service.lookup import ArchIndex  # noqa: E402

from .conftest import TOKEN, FakeAdapter, fake_models, latency_store_frame  # noqa: E402

_root = Path(tempfile.mkdtemp(prefix="hws-fuzz-"))
_store = DatasetStore(_root / "store")
_store.append("latency", latency_store_frame(), partition="help")
app = create_app(ServiceConfig(store=_root / "store", token=TOKEN, load_models=False, max_upload_rows=200))
_models, _adapter, _index = fake_models(), FakeAdapter(), ArchIndex(_store)
app.dependency_overrides[get_models] = lambda: _models
app.dependency_overrides[get_adapter] = lambda: _adapter
app.dependency_overrides[get_store] = lambda: _store
app.dependency_overrides[get_arch_index] = lambda: _index

schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_input_causes_a_server_error(case):
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}"
    )
    if 400 <= response.status_code < 500:
        assert "detail" in response.json()
