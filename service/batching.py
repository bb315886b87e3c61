"""Dynamic batching: concurrent ``predict`` calls on one model are merged into one model call;
concurrent prediction requests into one dispatch call (:class:`RequestBatcher`).

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

import asyncio
import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import polars as pl

from hwsurrogate.service.body import QueryRows

#: calls with fewer rows than this run with a single OpenMP thread (see the module docstring)
SINGLE_THREAD_ROWS = 512


T = TypeVar("T")


def _take_queued(items: queue.SimpleQueue[T], rows_of: Callable[[T], int], max_rows: int) -> list[T]:
    """The next item of ``items`` (waiting for one) and whatever else is queued now, in order,
    until they hold ``max_rows`` rows (``rows_of`` counts an item's)."""
    taken = [items.get()]
    rows = rows_of(taken[0])
    while rows < max_rows:
        try:
            item = items.get_nowait()
        except queue.Empty:
            break
        taken.append(item)
        rows += rows_of(item)
    return taken


class _Merging(threading.local):
    active = False  #: True in the worker thread of a :class:`RequestBatcher`


_merging = _Merging()


@dataclass
class _Job:
    queries: pl.DataFrame
    done: threading.Event = field(default_factory=threading.Event)
    result: pl.DataFrame | None = None
    error: BaseException | None = None


class CoalescingPredictor:
    """A :class:`~hwsurrogate.surrogates.api.Predictor` that batches concurrent calls to ``inner``.

    A call from a :class:`RequestBatcher`'s worker is a merged call already: it runs in that
    thread (same OpenMP limit), without a second hand-over (in process ~5 us a single-GEMM
    request less, an ad-hoc timing; the merged rows stay in the cache of the thread that built them)."""

    def __init__(
        self, inner: Any, *, max_rows: int = 20_000, single_thread_rows: int = SINGLE_THREAD_ROWS
    ) -> None:
        self.inner = inner
        self.max_rows = max_rows
        self.single_thread_rows = single_thread_rows
        self._threadpools: tuple[Any, int] | None = None  # see :meth:`threadpools`
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
        self.n_requests += 1
        if _merging.active:  # the request batcher's worker: already one merged call, run here
            return self._call(queries)
        job = _Job(queries)
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _loop(self) -> None:
        while True:
            self._run(_take_queued(self._queue, lambda job: job.queries.height, self.max_rows))

    def _call(self, frame: pl.DataFrame) -> pl.DataFrame:
        self.n_model_calls += 1
        if frame.height >= self.single_thread_rows:
            return self.inner.predict(frame)
        with self.threadpools().limit(limits=1, user_api="openmp"):
            return self.inner.predict(frame)

    def threadpools(self) -> Any:
        """A ``threadpoolctl`` controller of the thread pools loaded now. A controller sees only the
        libraries loaded when it was made, and a model may load its own later (the frozen copy
        answers small batches without scikit-learn; the first larger one imports it and its
        OpenMP): so it is made again whenever modules were imported since (~3 ms, rare)."""
        made = self._threadpools
        if made is None or made[1] != len(sys.modules):
            from threadpoolctl import ThreadpoolController

            made = self._threadpools = (ThreadpoolController(), len(sys.modules))
        return made[0]

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


@dataclass
class _Request:
    dispatch: Any  # a :class:`~hwsurrogate.surrogates.predict.Dispatch`
    task: str
    queries: pl.DataFrame | QueryRows
    strict: bool
    future: asyncio.Future[Any]


def _settle(answered: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, result in answered:
        if not future.cancelled():  # cancelled: the client went away
            future.set_result(result)


def _merged(queries: list[pl.DataFrame | QueryRows]) -> pl.DataFrame:
    """The requests' queries one after another in one frame: validated rows of one schema are
    built as one frame (no frame per request); anything else is concatenated."""
    if all(isinstance(q, QueryRows) for q in queries):
        rows: list[QueryRows] = queries  # type: ignore[assignment]
        if all(q.schema is rows[0].schema and q.columns == rows[0].columns for q in rows):
            return QueryRows.frame_of(rows)
    return pl.concat([q.frame() if isinstance(q, QueryRows) else q for q in queries], how="vertical")


class RequestBatcher:
    """Concurrent prediction requests answered together: one dispatch call for a burst of them.

    A route awaits :meth:`predict` on the event loop (no thread-pool hop per request). The
    requests that reach it in one turn of the event loop (a burst: what the server read from
    its sockets in one go) are handed to one worker thread together at the start of the next
    turn; the worker also takes any bursts queued while it was busy (up to ``max_rows`` rows),
    groups the requests by dispatch, task and ``strict``, and answers each group with one
    :meth:`~hwsurrogate.surrogates.predict.Dispatch.predict_many` call: one domain check and one
    model call for all, each request still getting exactly its own answer, warnings and error.
    There is no time window: a lone request goes to the worker at once (the next loop turn,
    microseconds), so unloaded latency does not rise; handing over per turn instead of per
    request keeps the worker from taking the interpreter lock mid-burst for one-request calls.
    The answers go back to the loop in one callback per batch.
    """

    def __init__(self, *, max_rows: int = 20_000, max_request_rows: int = 64) -> None:
        self.max_rows = max_rows
        #: larger requests are not batched: their routes run them in the thread pool as before
        self.max_request_rows = max_request_rows
        self.n_requests = 0
        self.n_dispatch_calls = 0
        self._pending: dict[asyncio.AbstractEventLoop, list[_Request]] = {}
        self._queue: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, list[_Request]]] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None  # started by the first request
        self._start_lock = threading.Lock()

    async def predict(
        self, dispatch: Any, task: str, queries: pl.DataFrame | QueryRows, *, strict: bool = False
    ) -> Any:
        """``dispatch.predict(task, queries, strict=strict)``'s answer, or the exception it raised
        (returned, not raised: :func:`~hwsurrogate.service.served.checked_answer` maps it)."""
        if self._worker is None:
            with self._start_lock:
                if self._worker is None:
                    self._worker = threading.Thread(target=self._loop, name="batch-requests", daemon=True)
                    self._worker.start()
        loop = asyncio.get_running_loop()
        request = _Request(dispatch, task, queries, strict, loop.create_future())
        self.n_requests += 1
        burst = self._pending.setdefault(loop, [])
        burst.append(request)
        if len(burst) == 1:  # the first of this turn: hand the burst over at the next one
            loop.call_soon(self._hand_over, loop)
        return await request.future

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        self._queue.put((loop, self._pending.pop(loop)))

    def _loop(self) -> None:
        _merging.active = True
        while True:
            bursts = _take_queued(self._queue, lambda b: sum(r.queries.height for r in b[1]), self.max_rows)
            groups: dict[tuple[int, str, bool], list[_Request]] = {}
            for _, burst in bursts:
                for r in burst:
                    groups.setdefault((id(r.dispatch), r.task, r.strict), []).append(r)
            results: dict[int, Any] = {}
            for group in groups.values():
                results.update(zip(map(id, group), self._answer(group), strict=True))
            for loop, burst in bursts:
                try:
                    loop.call_soon_threadsafe(_settle, [(r.future, results[id(r)]) for r in burst])
                except RuntimeError:  # its event loop is closed: nobody waits for these answers
                    pass

    def _answer(self, group: list[_Request]) -> list[Any]:
        """One answer (or exception) per request of ``group``; never raises (the worker must live)."""
        first = group[0]
        try:
            merged = _merged([r.queries for r in group])
        except Exception as exc:  # noqa: BLE001 - frames that do not stack: answered one by one
            if len(group) > 1:
                return [a for r in group for a in self._answer([r])]
            return [exc]
        self.n_dispatch_calls += 1
        sizes = [r.queries.height for r in group]
        try:
            return first.dispatch.predict_many(first.task, merged, sizes, strict=first.strict)
        except BaseException as exc:  # noqa: BLE001 - predict_many answers per part; this is a bug: every caller sees it
            return [exc] * len(group)
