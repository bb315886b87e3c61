"""Strict validation at the door (issue 15, F1-F4 and F6), reproduced as the requests that found them.

The type probe battery sends every probe value into every column of every table: no answer is
a 500, and every accepted value is stored exactly as sent (0 coerced rows).
"""

from __future__ import annotations

import io
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsurrogate.datasets import KINDS
from hwsurrogate.datasets.schemas import columns
from hwsurrogate.datasets.store import DatasetStore

from .conftest import TOKEN, gemm_rows, make_client

AUTH = {"Authorization": f"Bearer {TOKEN}"}

#: One valid row per table; a probe replaces one value of it.
BASE_ROWS: dict[str, dict[str, Any]] = {
    "gemm": {"device_id": "local/box-cpu", "op": "gemm", "m": 8, "n": 8, "k": 8, "batch": 1, "dtype": "fp32",
             "runtime_ms": 0.5},
    "latency": {"device_id": "local/box-cpu", "space": "custom", "arch_key": "a", "batch": 1, "precision": "fp32",
                "latency_ms": 1.0, "measured": True},
    "fpga": {"design_id": "d", "domain": "hls4ml", "kernel": "k", "part": "xc7z020", "tool": "vivado_hls",
             "stage": "hls_estimate"},
    "devices": {"device_id": "local/box-cpu", "kind": "cpu", "name": "box"},
    "program_graphs": {"graph_id": "g", "domain": "hlsyn", "kernel": "k", "n_nodes": 1, "n_edges": 0,
                       "n_pragma_nodes": 0, "nodes": "[]", "edges": "[]"},
    "ops": {"device_id": "local/box-cpu", "op_kind": "linear", "op": "linear", "phase": "forward", "dtype": "fp32",
            "latency_ms": 1.0},
    "model_latency": {"device_id": "local/box-cpu", "model": "bert", "mode": "inference", "batch": 1,
                      "dtype": "fp32", "latency_ms": 1.0},
}  # fmt: skip

PROBES: list[Any] = [
    1.5, True, 3, -1, "8", "2024-01-01T02:00:00+02:00", [1], {"a": 1}, None, 2**63 - 1, 1e300, "a\x00b",
    "x" * 2000,
]  # fmt: skip
#: Columns the server sets itself (their sent values are replaced, documented behaviour).
SERVER_SET = {"source", "imported_at"}


def _same(sent: Any, stored: Any) -> bool:
    """Stored exactly as sent: no type change that changes the value (True is not 1, 5 is not 1970)."""
    if sent is None or stored is None:
        return sent is None and stored is None
    if isinstance(sent, bool) or isinstance(stored, bool):
        return type(sent) is type(stored) and sent == stored
    if isinstance(stored, datetime):
        return isinstance(sent, str) and datetime.fromisoformat(sent) == stored
    if isinstance(sent, (int, float)) and isinstance(stored, (int, float)):
        return math.isclose(sent, stored, rel_tol=0, abs_tol=0) or sent == stored
    return type(sent) is type(stored) and sent == stored


def _post(client, kind: str, rows: list[dict[str, Any]], client_name: str = "probe"):
    return client.post(
        f"/v1/datasets/{kind}/rows",
        params={"client": client_name},
        content=json.dumps({"rows": rows}),
        headers={**AUTH, "content-type": "application/json"},
    )


@pytest.mark.slow  # ~13 probes x ~25 columns = ~330 requests per table, 3-8 s each
@pytest.mark.parametrize("kind", KINDS)
def test_type_probe_battery_no_500_and_nothing_coerced(tmp_path: Path, kind: str) -> None:
    client, _, _ = make_client(tmp_path)
    sent: dict[str, tuple[str, Any]] = {}
    statuses: dict[int, int] = {}
    with client:
        for col in columns(kind):
            for i, value in enumerate(PROBES):
                row = dict(BASE_ROWS[kind])
                mid = f"probe-{col.name}-{i}"
                row["measurement_id"] = mid
                row[col.name] = value
                r = _post(client, kind, [row])
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                assert r.status_code < 500, f"{kind}.{col.name} = {value!r}: {r.status_code} {r.text[:300]}"
                if r.status_code == 422:
                    body = r.json()
                    assert body["field"].startswith("rows"), body
                    if col.name not in SERVER_SET and col.name != "measurement_id":
                        assert col.name in body["field"], (col.name, value, body)
                elif (
                    r.status_code == 200
                    and col.name not in SERVER_SET
                    and (col.name, value) != ("origin", None)
                ):
                    if col.name == "measurement_id":
                        mid = value
                    sent[mid] = (col.name, value)
                else:
                    assert r.status_code in (200, 413, 422), r.text
    stored = DatasetStore(tmp_path / "store").read(kind)
    by_id = {r["measurement_id"]: r for r in stored.iter_rows(named=True)}
    coerced = [
        (col, value, by_id[mid][col])
        for mid, (col, value) in sent.items()
        if mid in by_id and not _same(value, by_id[mid][col])
    ]
    assert coerced == []
    assert statuses.get(200, 0) > 0 and statuses.get(422, 0) > 0


def test_f2_one_measurement_sent_as_1_15_true_is_one_row_or_a_422(client, auth, tmp_path: Path) -> None:
    base = {k: v for k, v in gemm_rows(1)[0].items() if k != "measurement_id"}
    answers = [_post(client, "gemm", [{**base, "m": m}]) for m in (1, 1.5, True, 1.0)]
    assert [a.status_code for a in answers] == [200, 422, 422, 200]
    assert answers[1].json()["field"] == "rows.0.m" and "row 0" in answers[1].json()["detail"]
    assert answers[3].json()["added"] == 0  # 1.0 is the same measurement as 1
    # the same measurement from another client is a duplicate, not a new row
    again = _post(client, "gemm", [{**base, "m": 1}], client_name="bob")
    assert again.status_code == 200 and again.json()["added"] == 0
    assert DatasetStore(tmp_path / "store").read("gemm").height == 1


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("power_trusted", 3),
        ("collected_at", 5),
        ("collected_at", "yesterday"),
        ("m", "8"),
        ("runtime_ms", True),
    ],
)
def test_f2_no_silent_coercion(client, column: str, value: Any) -> None:
    r = _post(client, "gemm", [gemm_rows(1)[0] | {column: value}])
    assert r.status_code == 422, r.text
    assert r.json()["field"] == f"rows.0.{column}"


def test_f1_iso8601_and_mixed_values_are_answered(client, tmp_path: Path) -> None:
    rows = gemm_rows(2)
    rows[0]["collected_at"] = "2024-01-01T00:00:00Z"
    rows[1]["collected_at"] = "2024-01-01T01:00:00+01:00"
    assert _post(client, "gemm", rows).status_code == 200
    stored = DatasetStore(tmp_path / "store").read("gemm")["collected_at"].to_list()
    assert {t.isoformat() for t in stored} == {"2024-01-01T00:00:00+00:00"}
    empty = _post(client, "gemm", [{}])  # found by the live schemathesis run: was a 500
    assert empty.status_code == 422 and empty.json()["field"] == "rows.0"
    mixed = gemm_rows(3, prefix="x")
    mixed[2]["kernel"] = ["a"]
    r = _post(client, "gemm", mixed)
    assert r.status_code == 422 and r.json()["field"] == "rows.2.kernel"
    mixed[2]["kernel"] = 7
    r = _post(client, "gemm", mixed[:1] + [{**mixed[1], "kernel": "k"}, mixed[2]])
    assert r.status_code == 422 and r.json()["field"] == "rows.2.kernel"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("device_id", "d" * (1 << 20)),
        ("kernel", "k" * (5 << 20)),
        ("device_id", "../../etc/passwd"),
        ("device_id", "a\x00b\n<script>"),
        ("framework", "torch\x1b[31m"),
        ("m", 2**63 - 1),
        ("m", (1 << 24) + 1),
        ("runtime_ms", 1e300),
    ],
)
def test_f3_bounds_and_patterns(tmp_path: Path, column: str, value: Any) -> None:
    client, _, _ = make_client(tmp_path, max_body_bytes=16 << 20)
    with client:
        r = _post(client, "gemm", [gemm_rows(1)[0] | {column: value}])
    assert r.status_code == 422, r.text[:300]
    assert r.json()["field"] == f"rows.0.{column}"
    assert len(r.text) < 4000  # the message quotes a short prefix of the value, not 5 MB of it
    assert DatasetStore(tmp_path / "store").read("gemm").height == 0


def _parquet(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf, compression="zstd")
    return buf.getvalue()


def _post_parquet(client, body: bytes, kind: str = "gemm"):
    headers = {**AUTH, "content-type": "application/vnd.apache.parquet"}
    return client.post(f"/v1/datasets/{kind}/rows", params={"client": "pq"}, content=body, headers=headers)


def test_f4_parquet_rows_refused_from_footer_before_decoding(tmp_path: Path, monkeypatch) -> None:
    import pyarrow.parquet as pq

    def no_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("the upload was decoded before its footer was checked")

    bomb = _parquet(pl.DataFrame(gemm_rows(1)).select(pl.all().repeat_by(2_000_000).explode()))
    assert len(bomb) < 200_000  # a few hundred KB that would decode to 2M rows
    client, _, _ = make_client(tmp_path, max_upload_rows=1000)
    monkeypatch.setattr(pq.ParquetFile, "read", no_decode)
    with client:
        r = _post_parquet(client, bomb)
    assert r.status_code == 413 and r.json()["field"] == "rows"


def test_f4_parquet_decoded_size_and_columns_checked_from_footer(tmp_path: Path) -> None:
    client, _, _ = make_client(tmp_path, max_upload_decoded_bytes=1 << 20)
    rows = gemm_rows(20)
    for i, r in enumerate(rows):
        r["extra"] = json.dumps({"pad": "p" * 60_000, "i": i})
    with client:
        big = _post_parquet(client, _parquet(pl.DataFrame(rows)))
        assert big.status_code == 413 and big.json()["field"] == "body", big.text
        nested = _post_parquet(
            client, _parquet(pl.DataFrame(gemm_rows(2)).with_columns(kernel=pl.lit([1, 2])))
        )
        assert nested.status_code == 422 and nested.json()["field"] == "rows.kernel", nested.text
        unknown = _post_parquet(
            client, _parquet(pl.DataFrame(gemm_rows(2)).with_columns(colour=pl.lit("red")))
        )
        assert unknown.status_code == 422 and unknown.json()["field"] == "rows.colour"
        ok = _post_parquet(client, _parquet(pl.DataFrame(gemm_rows(3))))
        assert ok.status_code == 200 and ok.json()["added"] == 3


def test_f6_uploads_cannot_use_an_importers_device_namespace(client, tmp_path: Path) -> None:
    evil = {"device_id": "neusight/Tesla_T4", "kind": "gpu", "name": "EVIL", "peak_fp32_gflops": 0.001}
    r = _post(client, "devices", [evil])
    assert r.status_code == 422 and r.json()["field"] == "rows.0.device_id"
    r = _post(client, "gemm", gemm_rows(2, device="gpperf/rtx4070"))
    assert r.status_code == 422 and "namespace" in r.json()["detail"]
    assert _post(client, "devices", [{**evil, "device_id": "team/Tesla_T4"}]).status_code == 200
    assert DatasetStore(tmp_path / "store").read("devices")["device_id"].to_list() == ["team/Tesla_T4"]


@pytest.fixture(scope="module")
def parquet_fuzz_client(tmp_path_factory: pytest.TempPathFactory):
    client, _, _ = make_client(tmp_path_factory.mktemp("pqfuzz"))
    with client:
        yield client, tmp_path_factory.getbasetemp()


_GOOD_PARQUET = _parquet(pl.DataFrame(gemm_rows(50)))


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_GOOD_PARQUET) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ),
    cut=st.none() | st.integers(0, len(_GOOD_PARQUET)),
)
def test_fuzz_corrupted_parquet_uploads_never_500_nor_poison_the_store(
    parquet_fuzz_client, edits, cut
) -> None:
    """Found by this fuzz: invalid UTF-8 decoded by pyarrow was stored (every later read failed),
    and invalid bytes in the file's schema metadata made polars panic (a 500)."""
    client, _ = parquet_fuzz_client
    body = bytearray(_GOOD_PARQUET)
    for pos, byte in edits:
        body[pos] = byte
    r = _post_parquet(client, bytes(body[:cut] if cut is not None else body))
    assert r.status_code in (200, 413, 422), r.text[:300]
    assert (
        client.get("/v1/datasets/gemm/rows", params={"limit": 1}).status_code == 200
    )  # store still readable
