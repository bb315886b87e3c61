"""Dynamic batching: concurrent ``predict`` calls on one model are merged into one model call.

Under load, most of a single-query prediction is fixed per-call cost (a forest's per-tree
dispatch, pipeline indexing), not per-row work. :class:`CoalescingPredictor` puts each call on a
queue; one worker thread takes everything queued (up to ``max_rows``), predicts once and hands
each caller its rows. An idle model answers a lone call at once (no waiting window). If the merged
call fails, each call is retried alone so an error reaches only the request that caused it.

Small calls run with one OpenMP thread: for a few rows, waking and joining scikit-learn's OpenMP
team per tree costs more than the trees themselves, and its spinning workers take CPU from the
event loop on a small machine. Large batches keep every thread.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import polars as pl

#: calls with fewer rows than this run with a single OpenMP thread (see the module docstring)
SINGLE_THREAD_ROWS = 512


@dataclass
class _Job:
    queries: pl.DataFrame
    done: threading.Event = field(default_factory=threading.Event)
    result: pl.DataFrame | None = None
    error: BaseException | None = None


class CoalescingPredictor:
    """A :class:`~hwsurrogate.surrogates.api.Predictor` that batches concurrent calls to ``inner``."""

    def __init__(
        self, inner: Any, *, max_rows: int = 20_000, single_thread_rows: int = SINGLE_THREAD_ROWS
    ) -> None:
        self.inner = inner
        self.max_rows = max_rows
        self.single_thread_rows = single_thread_rows
        self._threadpools: Any = None  # threadpoolctl controller, made in the worker on first use
        self.n_model_calls = 0
        self.n_requests = 0
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._worker = threading.Thread(
            target=self._loop, name=f"batch-{getattr(inner, 'task', '?')}", daemon=True
        )
        self._worker.start()

    def __getattr__(self, name: str) -> Any:  # task, name, version, metrics, stage ...
        return getattr(self.inner, name)

    def predict(self, queries: pl.DataFrame) -> pl.DataFrame:
        job = _Job(queries)
        self.n_requests += 1
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _loop(self) -> None:
        while True:
            jobs = [self._queue.get()]
            rows = jobs[0].queries.height
            while rows < self.max_rows:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                jobs.append(job)
                rows += job.queries.height
            self._run(jobs)

    def _call(self, frame: pl.DataFrame) -> pl.DataFrame:
        self.n_model_calls += 1
        if frame.height >= self.single_thread_rows:
            return self.inner.predict(frame)
        if self._threadpools is None:
            from threadpoolctl import ThreadpoolController

            self._threadpools = ThreadpoolController()  # sees the libraries the loaded models use
        with self._threadpools.limit(limits=1, user_api="openmp"):
            return self.inner.predict(frame)

    def _run(self, jobs: list[_Job]) -> None:
        same_schema = all(j.queries.schema == jobs[0].queries.schema for j in jobs)
        if len(jobs) > 1 and same_schema:
            try:
                out = self._call(pl.concat([j.queries for j in jobs], how="vertical"))
                if out.height == sum(j.queries.height for j in jobs):
                    offset = 0
                    for j in jobs:
                        j.result = out.slice(offset, j.queries.height)
                        offset += j.queries.height
                        j.done.set()
                    return
            except Exception:
                pass  # retry one by one: the error belongs to one request, not the batch
        for j in jobs:
            try:
                j.result = self._call(j.queries)
            except BaseException as exc:  # handed to the waiting request thread
                j.error = exc
            j.done.set()
