"""Dataset endpoints: listing, schema, paging/downloads, validated idempotent uploads, auth."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest

from hwsurrogate.datasets.store import DatasetStore

from .conftest import TOKEN, gemm_rows, latency_store_frame, make_client


def _upload(client, rows, auth, kind="gemm", client_name="alice"):
    body = json.dumps({"rows": rows})  # allow_nan: NaN literals reach the server
    headers = {**auth, "content-type": "application/json"}
    return client.post(
        f"/v1/datasets/{kind}/rows", params={"client": client_name}, content=body, headers=headers
    )


def test_upload_adds_rows_with_forced_source_and_partition(client, auth, tmp_path: Path):
    rows = gemm_rows(5)
    rows[0]["source"] = "help"  # a client cannot pose as an importer
    r = _upload(client, rows, auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"kind": "gemm", "source": "upload:alice", "partition": "upload_alice", "received": 5,
                        "added": 5, "duplicates": 0}  # fmt: skip
    stored = DatasetStore(tmp_path / "store").read("gemm")
    assert stored.height == 5 and set(stored["source"]) == {"upload:alice"}
    assert sorted(stored["measurement_id"]) == sorted(f"r-{i}" for i in range(5))
    assert DatasetStore(tmp_path / "store").partitions("gemm") == ["upload_alice"]


def test_resending_same_measurement_ids_adds_nothing(client, auth, tmp_path: Path):
    assert _upload(client, gemm_rows(10), auth).json()["added"] == 10
    r = _upload(client, gemm_rows(12), auth)
    assert r.json()["added"] == 2 and r.json()["duplicates"] == 10
    assert DatasetStore(tmp_path / "store").read("gemm").height == 12


def test_upload_without_measurement_id_derives_it_from_natural_key(client, auth, tmp_path: Path):
    rows = [{k: v for k, v in r.items() if k != "measurement_id"} for r in gemm_rows(3)]
    assert _upload(client, rows, auth).json()["added"] == 3
    assert _upload(client, rows, auth).json()["added"] == 0
    assert DatasetStore(tmp_path / "store").read("gemm").height == 3


@pytest.mark.parametrize(
    ("patch", "column"),
    [
        ({"runtime_ms": -1.0}, "runtime_ms"),
        ({"m": 0}, "'m'"),
        ({"m": "eight"}, "'m'"),
        ({"dtype": "fp13"}, "dtype"),
        ({"power_w": float("nan")}, "power_w"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_row_is_422_naming_column_and_store_unchanged(client, auth, tmp_path: Path, patch, column):
    assert _upload(client, gemm_rows(2, prefix="ok"), auth).status_code == 200
    rows = gemm_rows(3)
    rows[1].update(patch)
    r = _upload(client, rows, auth)
    assert r.status_code == 422, r.text
    assert column in r.json()["detail"]
    assert DatasetStore(tmp_path / "store").read("gemm").height == 2


def test_missing_required_column_is_422_naming_it(client, auth):
    rows = [{k: v for k, v in r.items() if k != "runtime_ms"} for r in gemm_rows(2)]
    r = _upload(client, rows, auth)
    assert r.status_code == 422 and "'runtime_ms'" in r.json()["detail"]


def test_nan_literal_in_json_upload_is_422(client, auth):
    body = '{"rows": [{"device_id": "a/b", "op": "gemm", "m": 1, "n": 1, "k": 1, "batch": 1, "dtype": "fp32", "runtime_ms": NaN}]}'
    r = client.post(
        "/v1/datasets/gemm/rows", content=body, headers={**auth, "content-type": "application/json"}
    )
    assert r.status_code == 422 and "runtime_ms" in r.json()["detail"]


def test_parquet_upload_is_read_with_polars(client, auth, tmp_path: Path):
    buf = io.BytesIO()
    pl.DataFrame(gemm_rows(4)).write_parquet(buf)
    r = client.post("/v1/datasets/gemm/rows", params={"client": "bob"}, content=buf.getvalue(),
                    headers={**auth, "content-type": "application/vnd.apache.parquet"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["added"] == 4 and r.json()["source"] == "upload:bob"


def test_pickle_or_garbage_as_parquet_is_422(client, auth):
    import pickle

    payload = pickle.dumps({"x": 1})
    r = client.post("/v1/datasets/gemm/rows", content=payload,
                    headers={**auth, "content-type": "application/vnd.apache.parquet"})  # fmt: skip
    assert r.status_code == 422 and r.json()["field"] == "body"


def test_other_content_type_is_refused(client, auth):
    r = client.post(
        "/v1/datasets/gemm/rows", content=b"a,b\n1,2", headers={**auth, "content-type": "text/csv"}
    )
    assert r.status_code == 422 and r.json()["field"] == "content-type"


def test_upload_over_row_limit_is_413_naming_rows(tmp_path: Path, auth):
    c, _, _ = make_client(tmp_path, max_upload_rows=10)
    with c:
        r = _upload(c, gemm_rows(11), auth)
    assert r.status_code == 413 and r.json()["field"] == "rows"
    assert DatasetStore(tmp_path / "store").read("gemm").height == 0


@pytest.mark.parametrize("kind", ["gemmz", "..", "gemm%2F..%2F..", "store.lock"])
def test_unknown_or_traversal_kind_is_404_or_refused(client, auth, kind, tmp_path: Path):
    r = _upload(client, gemm_rows(1), auth, kind=kind)
    assert r.status_code in (404, 405)
    assert not any((tmp_path / "store").glob("**/*.parquet"))


def test_bad_client_name_is_422(client, auth):
    r = _upload(client, gemm_rows(1), auth, client_name="../../x")
    assert r.status_code == 422 and r.json()["field"] == "query.client"


def test_write_without_token_is_401(client):
    r = _upload(client, gemm_rows(1), {})
    assert r.status_code == 401 and "bearer" in r.json()["detail"].lower()


def test_write_with_wrong_token_is_401(client):
    r = _upload(client, gemm_rows(1), {"Authorization": "Bearer not-the-token"})
    assert r.status_code == 401 and r.json()["detail"] == "invalid bearer token"


def test_writes_refused_when_no_token_configured(tmp_path: Path):
    c, _, _ = make_client(tmp_path, token=None)
    with c:
        r = _upload(c, gemm_rows(1), {"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 403 and "HWSURROGATE_SERVICE_TOKEN" in r.json()["detail"]


def test_concurrent_uploaders_store_exactly_all_rows(client, auth, tmp_path: Path):
    def send(i: int) -> int:
        r = _upload(client, gemm_rows(1000, prefix=f"u{i}"), auth, client_name=f"c{i % 3}")
        assert r.status_code == 200, r.text
        return r.json()["added"]

    with ThreadPoolExecutor(8) as pool:
        added = list(pool.map(send, range(8)))
    assert added == [1000] * 8
    stored = DatasetStore(tmp_path / "store").read("gemm")
    assert stored.height == 8000 and stored["measurement_id"].n_unique() == 8000


# ------------------------------------------------------------------------------------- reading
@pytest.fixture
def filled(tmp_path: Path):
    store = DatasetStore(tmp_path / "store")
    store.append("latency", latency_store_frame(), partition="help")
    return store


def test_list_datasets_counts_rows_per_source(client, filled):
    body = client.get("/v1/datasets").json()["datasets"]
    lat = next(d for d in body if d["kind"] == "latency")
    assert lat == {"kind": "latency", "rows": 2, "sources": {"help": 2}, "n_devices": 1}


def test_dataset_detail_lists_schema_columns(client, filled):
    body = client.get("/v1/datasets/latency").json()
    names = [c["name"] for c in body["columns"]]
    assert names[:3] == ["device_id", "space", "arch_index"] and "measurement_id" in names
    space = next(c for c in body["columns"] if c["name"] == "space")
    assert space["allowed"] == ["custom", "fbnet", "nb201", "ofa"]
    assert body["devices"] == ["help/pixel2"]


def test_unknown_kind_detail_is_404_naming_kind(client):
    r = client.get("/v1/datasets/nope")
    assert r.status_code == 404 and r.json()["field"] == "kind"


def test_rows_paging_and_filters(client, filled):
    r = client.get("/v1/datasets/latency/rows", params={"limit": 1, "offset": 1, "device": "help/pixel2"})
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 2 and len(body["rows"]) == 1 and body["offset"] == 1
    assert body["rows"][0]["imported_at"].endswith("Z")
    assert client.get("/v1/datasets/latency/rows", params={"device": "help/other"}).json()["total"] == 0
    assert client.get("/v1/datasets/latency/rows", params={"space": "fbnet"}).json()["total"] == 0


def test_rows_download_csv_and_parquet_round_trip(client, filled):
    r = client.get("/v1/datasets/latency/rows", params={"format": "csv"})
    assert (
        r.headers["content-type"].startswith("text/csv") and "attachment" in r.headers["content-disposition"]
    )
    assert pl.read_csv(io.BytesIO(r.content)).height == 2
    r = client.get("/v1/datasets/latency/rows", params={"format": "parquet"})
    back = pl.read_parquet(io.BytesIO(r.content))
    assert back.sort("arch_index")["latency_ms"].to_list() == [12.5, 3.25]


def test_rows_filter_not_in_table_is_422(client):
    r = client.get("/v1/datasets/fpga/rows", params={"device": "x"})
    assert r.status_code == 422 and r.json()["field"] == "device"


def test_rows_bad_limit_is_422(client):
    r = client.get("/v1/datasets/gemm/rows", params={"limit": 0})
    assert r.status_code == 422 and r.json()["field"] == "query.limit"
