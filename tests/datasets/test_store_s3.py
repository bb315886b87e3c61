"""The store on an object store: the same tests against moto's S3 server (``s3_options`` in tests/conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from hwsurrogate.datasets.store import DatasetStore, Write

from .factories import gemm_frame, latency_frame


def _store(opts: dict[str, str], name: str) -> DatasetStore:
    return DatasetStore(f"s3://hws/{name}", storage_options=opts)


def test_s3_append_is_idempotent_and_replace_swaps(s3_options: dict[str, str]) -> None:
    st = _store(s3_options, "basic")
    assert st.is_remote and st.table_uri("gemm") == "s3://hws/basic/gemm"
    assert st.append("gemm", gemm_frame(4), partition="a") == 4
    assert st.append("gemm", gemm_frame(6), partition="b") == 2  # dedupes across partitions
    st.replace("gemm", gemm_frame(2, source="imp"), partition="imp")
    st.replace("gemm", gemm_frame(1, source="imp"), partition="imp")
    assert st.read("gemm").height == 7 and st.partitions("gemm") == ["a", "b", "imp"]


def test_s3_multi_table_commit_and_time_travel(s3_options: dict[str, str]) -> None:
    st = _store(s3_options, "txn")
    st.commit(
        [Write("gemm", "src", gemm_frame(3), "replace"), Write("latency", "src", latency_frame(2), "replace")]
    )
    pinned = st.versions()
    st.commit(
        [Write("gemm", "src", gemm_frame(5), "replace"), Write("latency", "src", latency_frame(4), "replace")]
    )
    assert (st.read("gemm").height, st.read("latency").height) == (5, 4)
    old = st.at(pinned)
    assert (old.read("gemm").height, old.read("latency").height) == (3, 2)


_WRITER = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {tests!r})
    from hwsurrogate.datasets.store import DatasetStore
    from datasets.factories import gemm_frame
    st = DatasetStore("s3://hws/concurrent", storage_options=json.loads({opts!r}))
    for batch in range(3):
        st.append("gemm", gemm_frame(10, device="w{worker}", start=batch * 10), partition="shared")
    """
)


def test_s3_concurrent_writers_lose_nothing(s3_options: dict[str, str]) -> None:
    tests = str(Path(__file__).parents[1])
    code = [_WRITER.format(tests=tests, opts=json.dumps(s3_options), worker=w) for w in range(3)]
    procs = [subprocess.Popen([sys.executable, "-c", c]) for c in code]
    assert [p.wait(180) for p in procs] == [0, 0, 0]
    df = _store(s3_options, "concurrent").read("gemm")
    assert df.height == 3 * 3 * 10 and df["measurement_id"].n_unique() == df.height
