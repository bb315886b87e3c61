"""Schemathesis against a live ``uvicorn`` process on 127.0.0.1 (started by the test) over the dataset
endpoints (issue 15): no input gives a 5xx, and every 4xx is JSON with a ``detail`` and a ``field``.

Unlike ``test_fuzz.py`` (in-process ASGI), the requests go through a real socket, uvicorn's HTTP
parsing, the body-size middleware and the store on disk. Bounded: 40 examples per operation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis not installed (pip install schemathesis)"
)
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from hwsurrogate.datasets import KINDS  # noqa: E402
from hwsurrogate.datasets.store import DatasetStore  # noqa: E402

from .conftest import TOKEN, gemm_rows, latency_store_frame  # noqa: E402
from .test_server_process import running_server  # noqa: E402

pytestmark = pytest.mark.slow  # one server start (~5 s) and ~150 requests


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store_dir: Path = tmp_path_factory.mktemp("live") / "store"
    store = DatasetStore(store_dir)
    store.append("latency", latency_store_frame(), partition="help")
    seed = pl.DataFrame(gemm_rows(20)).with_columns(source=pl.lit("upload:seed"))
    store.append("gemm", seed, partition="upload:seed")
    with running_server(store_dir) as (url, _):
        yield url


def _checker(operation: object, statuses: dict[int, int]) -> Callable[[], None]:
    """A hypothesis test of one operation: every generated request answered below 500, 4xx with a field."""

    @given(case=operation.as_strategy(), kind=st.sampled_from([*KINDS, "no-such-kind"]))  # type: ignore[attr-defined]
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
    )
    def check(case: Any, kind: str) -> None:
        if case.path_parameters and "kind" in case.path_parameters:
            case.path_parameters["kind"] = kind  # the schema says "string": aim most requests at real tables
        response = case.call(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} {case.query} {case.media_type} {str(case.body)[:300]}: "
            f"{response.status_code} {response.text[:300]}"
        )
        if 400 <= response.status_code < 500:
            body = response.json()
            assert body.get("detail") and body.get("field"), body

    return check


def test_dataset_endpoints_never_answer_5xx_live(live_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live_url}/openapi.json").include(path_regex="^/v1/datasets")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 4  # list, one kind, rows download, rows upload
    seen: dict[str, dict[int, int]] = {}
    for operation in operations:
        _checker(operation, seen.setdefault(operation.label, {}))()
    print(seen)
    assert all(seen.values()), seen
