"""Issue 15, F9: every 4xx names a field, auth before body, no store path in /healthz, CSV export
safe to open in a spreadsheet, row downloads streamed in chunks."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import polars as pl
import pytest

from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.service.routes import datasets as datasets_route

from .conftest import gemm_rows


def _upload(client, rows, auth):
    headers = {**auth, "content-type": "application/json"}
    return client.post("/v1/datasets/gemm/rows", params={"client": "t"}, content=json.dumps({"rows": rows}),
                       headers=headers)  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "field"),
    [
        ("post", "/v1/datasets/gemm/rows", {}, 401, "authorization"),
        ("post", "/v1/datasets/gemm/rows", {"Authorization": "Bearer wrong-token"}, 401, "authorization"),
        ("get", "/v1/no-such-route", {}, 404, "path"),
        ("delete", "/healthz", {}, 405, "method"),
    ],
)
def test_http_errors_carry_a_field(client, method, path, headers, status, field) -> None:
    r = client.request(method, path, headers={**headers, "content-type": "application/json"}, content=b"{}")
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and r.json()["detail"]
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"


def test_unauthenticated_device_registration_is_401_before_the_body_is_read(client) -> None:
    for body in (b"{not json", b'{"device_id": 5}'):
        r = client.post("/v1/devices", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 401 and r.json()["field"] == "authorization", r.text


def test_authenticated_malformed_device_registration_is_still_a_422(client, auth) -> None:
    r = client.post("/v1/devices", content=b"{not json", headers={**auth, "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"]


def test_healthz_does_not_show_the_store_path(client, tmp_path: Path) -> None:
    body = client.get("/healthz").json()
    assert str(tmp_path) not in json.dumps(body) and body["store"] == "store"


def test_csv_export_neutralises_formula_cells(client, auth) -> None:
    rows = gemm_rows(5)
    for row, kernel in zip(rows, ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "plain"], strict=True):
        row["kernel"] = kernel
    assert _upload(client, rows, auth).status_code == 200
    r = client.get("/v1/datasets/gemm/rows", params={"format": "csv"})
    assert r.status_code == 200
    kernels = sorted(row["kernel"] for row in csv.DictReader(io.StringIO(r.text)))
    assert kernels == sorted(['\'=HYPERLINK("http://x")', "'+1+1", "'-2", "'@SUM(A1)", "plain"])
    assert all(
        float(row["runtime_ms"]) > 0 for row in csv.DictReader(io.StringIO(r.text))
    )  # numbers untouched


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_downloads_are_streamed_in_chunks_with_the_same_rows(
    client, auth, tmp_path: Path, monkeypatch, fmt
) -> None:
    assert _upload(client, gemm_rows(23), auth).status_code == 200
    monkeypatch.setattr(datasets_route, "STREAM_CHUNK_ROWS", 4)
    with client.stream(
        "GET", "/v1/datasets/gemm/rows", params={"format": fmt, "offset": 2, "limit": 17}
    ) as r:
        assert r.status_code == 200 and r.headers["x-total-count"] == "23"
        assert "content-length" not in r.headers  # chunked: never the whole page in one buffer
        body = b"".join(r.iter_bytes())
    want = DatasetStore(tmp_path / "store").read("gemm").slice(2, 17)["measurement_id"].to_list()
    if fmt == "json":
        got = json.loads(body)
        assert (got["total"], got["offset"], got["limit"]) == (23, 2, 17)
        assert [row["measurement_id"] for row in got["rows"]] == want
    else:
        assert pl.read_csv(io.BytesIO(body))["measurement_id"].to_list() == want


def test_empty_download_is_valid_json_and_csv(client) -> None:
    assert client.get("/v1/datasets/ops/rows").json()["rows"] == []
    header = client.get("/v1/datasets/ops/rows", params={"format": "csv"}).text.splitlines()
    assert header and header[0].startswith("device_id,")
