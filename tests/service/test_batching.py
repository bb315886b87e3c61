"""Dynamic batching: merged calls give each caller exactly its own rows and errors."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import pytest
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads  # loads OpenMP, as a model would
from threadpoolctl import threadpool_limits

from hwsurrogate.errors import UnknownDeviceError
from hwsurrogate.service.batching import CoalescingPredictor

from .conftest import FakePredictor


class SlowFake(FakePredictor):
    """Holds the first call until released, so later calls queue up behind it."""

    def __init__(self) -> None:
        super().__init__("gemm", "hws-gemm", {"a/x"})
        self.release = threading.Event()
        self.sizes: list[int] = []

    def predict(self, queries: pl.DataFrame) -> pl.DataFrame:
        # the test releases it; the bound only ends a broken test (a short one let the first call
        # go early on a loaded machine, and the rest never queued up behind it)
        self.release.wait(120)
        self.sizes.append(queries.height)
        return super().predict(queries)


def _q(m: int, device: str = "a/x") -> pl.DataFrame:
    return pl.DataFrame({"device_id": [device], "op": "gemm", "m": [m], "n": [2], "k": [3], "batch": [1],
                         "dtype": "fp32", "layout": "nn"})  # fmt: skip


def test_concurrent_calls_are_merged_and_each_gets_its_rows():
    inner = SlowFake()
    pred = CoalescingPredictor(inner)
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(pred.predict, _q(m)) for m in range(1, 17)]
        deadline = time.monotonic() + 60
        while sum(1 for f in futures if not f.done()) < 16 or pred._queue.qsize() < 15:
            assert time.monotonic() < deadline, f"{pred._queue.qsize()} calls queued after 60 s"
            threading.Event().wait(0.01)
        inner.release.set()
        results = [f.result(10) for f in futures]
    for m, out in zip(range(1, 17), results, strict=True):
        assert out["runtime_ms"].to_list() == [pytest.approx(2.0 * m * 6 / 1e9)]
    assert inner.sizes == [1, 15] and pred.n_model_calls == 2
    assert pred.version == "7" and pred.name == "hws-gemm"


def test_error_in_merged_call_reaches_only_its_request():
    inner = SlowFake()
    pred = CoalescingPredictor(inner)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(pred.predict, _q(1))
        while pred._queue.qsize() > 0:  # the worker has taken the first call and is held in it
            threading.Event().wait(0.01)
        good = pool.submit(pred.predict, _q(2))
        bad = pool.submit(pred.predict, _q(3, device="b/unknown"))
        while pred._queue.qsize() < 2:
            threading.Event().wait(0.01)
        inner.release.set()
        assert first.result(10)["runtime_ms"][0] == pytest.approx(12 / 1e9)
        assert good.result(10)["runtime_ms"][0] == pytest.approx(24 / 1e9)
        with pytest.raises(UnknownDeviceError, match="b/unknown"):
            bad.result(10)


class ThreadCounting(FakePredictor):
    """Records how many OpenMP threads scikit-learn would use inside each call."""

    def __init__(self) -> None:
        super().__init__("gemm", "hws-gemm", {"a/x"})
        self.threads: list[int] = []

    def predict(self, queries: pl.DataFrame) -> pl.DataFrame:
        self.threads.append(_openmp_effective_n_threads())
        return super().predict(queries)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2+ cores to tell 1 thread from all")
def test_small_calls_run_single_threaded_and_large_batches_keep_all_threads():
    if os.environ.get("OMP_NUM_THREADS", "").strip() == "1":
        pytest.skip("OMP_NUM_THREADS=1 asks for one thread everywhere: nothing to tell apart")
    # other tests (torch.set_num_threads) may have left OpenMP at 1 thread
    with threadpool_limits(limits=2, user_api="openmp"):
        inner = ThreadCounting()
        pred = CoalescingPredictor(inner, single_thread_rows=8)
        pred.predict(_q(1))
        pred.predict(pl.concat([_q(m) for m in range(1, 9)]))
    assert inner.threads[0] == 1
    assert inner.threads[1] > 1


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2+ cores to tell 1 thread from all")
def test_openmp_loaded_after_the_first_call_is_limited_too():
    """The frozen copy answers small batches without scikit-learn; when a later call loads it (and
    its OpenMP), the calls after that run on one thread too (a fresh interpreter: nothing loaded)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import sys
        import polars as pl
        from hwsurrogate.service.batching import CoalescingPredictor

        class LoadsOpenMPLater:
            task, name, version = "gemm", "hws-gemm", "1"
            def __init__(self):
                self.seen = []
            def predict(self, queries):
                if not self.seen:
                    self.seen.append("sklearn" in sys.modules)
                else:  # the second call loads scikit-learn and its OpenMP, as a full model would
                    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
                    self.seen.append(_openmp_effective_n_threads())
                return queries

        inner = LoadsOpenMPLater()
        pred = CoalescingPredictor(inner)
        for _ in range(3):
            pred.predict(pl.DataFrame({"m": [1]}))
        import json
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
        print(json.dumps([*inner.seen, _openmp_effective_n_threads()]))
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded_at_first, _, third_call, outside = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded_at_first is False  # the first call ran before OpenMP was loaded
    assert third_call == 1  # limited, though OpenMP was loaded after the controller was first made
    assert outside == 2  # and only inside the call
