"""The models a running service answers with, loaded once: at the first request that needs one.

The service starts without them (:meth:`ServedModels.lazy`); ``/healthz`` and the dataset routes
never need them. Loading them (:meth:`ServedModels.load`) never imports MLflow in the serving
process: a child process resolves every task's champion (or pinned version) through MLflow and
makes sure the store's local copy of it exists (:func:`~hwsurrogate.surrogates.registry.cache.served_key`,
the copy a one-off ``hws predict`` uses), then exits; the server loads the copies by key
(:func:`~hwsurrogate.surrogates.registry.cache.load_served_copy`): their frozen form (treelite
checkpoints, no scikit-learn, pandas, scipy or MLflow: :mod:`~hwsurrogate.surrogates.models.frozen`)
answers batches of up to 64 rows, and the full copy is loaded for a task the first time a larger
batch of it comes. Holding MLflow (~85 MB) and the scikit-learn models and their imports
(~265 MB) in the server took it over its memory target with 16 dataset readers (issue 15;
figures in docs/store.md). A task whose model has no local copy (not one of this project's
model classes, or a store the server cannot write) is loaded through MLflow in the server, as
before; so is every task when the child fails.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from hwsurrogate.errors import HwSurrogateError
from hwsurrogate.service.body import QueryRows
from hwsurrogate.surrogates.api import MODEL_NAMES, Predictor
from hwsurrogate.surrogates.predict import Answer, Dispatch

log = logging.getLogger("hwsurrogate.service")

#: What an FPGA task's numbers mean when its predictor does not say (``predictor.stage``).
#: Both FPGA surrogates train on HLS-report targets (the hls4ml one on the ``hls_estimate`` rows
#: of wa-hls4ml and its dense sweep; HLSyn/HARP targets are Merlin/HLS reports).
DEFAULT_STAGE: dict[str, str] = {"fpga-hls4ml": "hls_estimate", "fpga-hlsyn": "hls_estimate"}


class ModelUnavailableError(HwSurrogateError):
    """A task has no loaded model (not trained/registered yet, or failed to load): HTTP 503."""

    def __init__(self, task: str, reason: str) -> None:
        self.task = task
        self.reason = reason
        super().__init__(f"no {task} model is being served: {reason}")


class PredictionInputError(HwSurrogateError, ValueError):
    """A predictor refused a query (its ValueError): HTTP 422 with the predictor's message."""


#: The cyclic GC's young-generation threshold while the service runs (CPython's default: 700).
#: Requests leave no cyclic garbage, but 32 requests in flight hold ~1,000-2,000 young objects
#: that are not garbage: at 700, a young collection ran every ~12 single-GEMM requests and
#: scanned them all, and the older generations' collections that follow stalled every request in
#: flight (single-GEMM p99 62-89 ms at 32 closed-loop clients, against 15-17 ms at 20,000;
#: benchmarks/service_load.py, docs/service.md "Fewer young collections while serving").
SERVING_GC_THRESHOLD = 20_000


@contextmanager
def serving_gc(young_threshold: int = SERVING_GC_THRESHOLD) -> Iterator[None]:
    """While the service runs: the heap alive now frozen (:func:`freeze_heap`) and the young
    generation collected after ``young_threshold`` net allocations; both undone on exit."""
    before = gc.get_threshold()
    freeze_heap()
    gc.set_threshold(max(young_threshold, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def freeze_heap() -> None:
    """Move every object alive now out of the cyclic GC's generations (``gc.freeze``).

    The modules, models and tables loaded at start-up (and with the models) live as long as the
    process; without this, a collection triggered by a big request body re-scans all of them
    (it tripled the parse time of a 10k-query batch).
    """
    gc.collect()
    gc.freeze()


@dataclass
class ServedModels:
    """Loaded predictors per task, and why the others are missing.

    An instance made by :meth:`lazy` holds nothing until :meth:`ensure_loaded` (called by
    :meth:`require`, :meth:`stage` and the routes that list models) loads them, once.
    """

    predictors: dict[str, Predictor] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    #: what :meth:`ensure_loaded` runs (None: loaded, or built loaded)
    loader: Callable[[], ServedModels] | None = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def lazy(
        cls, pins: dict[str, str] | None = None, *, batching: bool = True, store: Path | str | None = None
    ) -> ServedModels:
        """Models that :meth:`load` loads at their first use; nothing of MLflow is imported before."""
        return cls(loader=lambda: cls.load(pins, batching=batching, store=store))

    @property
    def loaded(self) -> bool:
        """Whether the models were loaded (or tried): ``predictors`` and ``unavailable`` are final."""
        return self.loader is None

    def ensure_loaded(self) -> ServedModels:
        """Load the models now if this instance is lazy and they are not loaded yet (thread-safe)."""
        if self.loader is not None:
            with self._lock:
                loader = self.loader
                if loader is not None:
                    models = loader()
                    self.predictors.update(models.predictors)
                    self.unavailable.update(models.unavailable)
                    for task, reason in self.unavailable.items():
                        log.warning("%s unavailable: %s", task, reason)
                    freeze_heap()  # the models and the modules they imported live as long as the process
                    self.loader = None
        return self

    @classmethod
    def load(
        cls, pins: dict[str, str] | None = None, *, batching: bool = True, store: Path | str | None = None
    ) -> ServedModels:
        """Load every task's champion (or pinned version); a missing model is recorded, not raised.

        Each task's local copy under ``store`` (default ``$HWSURROGATE_STORE``), named by a child
        process (:func:`resolve_in_child`); MLflow in this process only where there is no copy.
        With ``batching`` each model is wrapped in a :class:`~.batching.CoalescingPredictor`.
        """
        from hwsurrogate.service.batching import CoalescingPredictor

        pins = pins or {}
        resolved = resolve_in_child(pins, store)
        out = cls()
        for task in MODEL_NAMES:
            how = (resolved or {}).get(task, {})
            if "unavailable" in how:
                out.unavailable[task] = how["unavailable"]
                continue
            try:
                predictor = _load_one(task, pins.get(task), how.get("key"), store)
                out.predictors[task] = CoalescingPredictor(predictor) if batching else predictor
                log.info("serving %s: %s v%s", task, MODEL_NAMES[task], out.predictors[task].version)
            except Exception as exc:  # a broken artifact must not take the other tasks down
                out.unavailable[task] = _unavailable(task, exc)
                if not isinstance(exc, LookupError):
                    log.exception("loading %s failed", task)
        return out

    def require(self, task: str) -> Predictor:
        pred = self.ensure_loaded().predictors.get(task)
        if pred is None:
            raise ModelUnavailableError(task, self.unavailable.get(task, f"run `hws train {task}` first"))
        return pred

    def stage(self, task: str) -> str:
        pred = self.ensure_loaded().predictors.get(task)
        return str(getattr(pred, "stage", None) or DEFAULT_STAGE.get(task, "unknown"))


def _unavailable(task: str, exc: Exception) -> str:
    """Why ``task`` is not served: a missing model's own message, else what failed to load."""
    from hwsurrogate.surrogates.registry.loading import ModelNotFoundError

    if isinstance(exc, ModelNotFoundError):
        return str(exc)
    return f"failed to load {MODEL_NAMES[task]!r}: {type(exc).__name__}: {exc}"


def _load_one(task: str, version: str | None, key: str | None, store: Path | str | None) -> Predictor:
    """``task``'s local copy under ``key`` where one was named, else (or when it cannot be read) the
    model through MLflow in this process."""
    from hwsurrogate.surrogates.registry.cache import load_served_copy
    from hwsurrogate.surrogates.registry.loading import load_predictor

    if key is not None:
        try:
            return load_served_copy(task, key, store)
        except Exception:  # noqa: BLE001 - a copy removed or damaged since the child wrote it
            log.warning("the local copy %s of %s could not be read; loading it through MLflow", key, task)
    return load_predictor(task, version=version)


def resolve_served(pins: dict[str, str], store: Path | str | None = None) -> dict[str, dict[str, str]]:
    """Per task, how the server loads it: ``{"key": ...}`` (its local copy, made here where
    missing: :func:`~hwsurrogate.surrogates.registry.cache.served_key`), ``{"unavailable": why}``,
    or ``{}`` (no copy: load it through MLflow). Imports MLflow: :func:`resolve_in_child` runs it
    in a child process."""
    from hwsurrogate.surrogates.registry.cache import served_key

    out: dict[str, dict[str, str]] = {}
    for task in MODEL_NAMES:
        try:
            key = served_key(task, version=pins.get(task), store_root=store)
            out[task] = {} if key is None else {"key": key}
        except Exception as exc:  # noqa: BLE001 - reported per task, as ServedModels.load does
            out[task] = {"unavailable": _unavailable(task, exc)}
    return out


#: how long the child of :func:`resolve_in_child` may take (a first load through MLflow of every
#: champion and writing their copies: seconds to a minute on the public data)
RESOLVE_TIMEOUT_S = 900.0

_CHILD = (
    "import json, sys\n"
    "from hwsurrogate.service.served import resolve_served\n"
    "pins, store, out = json.loads(sys.argv[1])\n"
    "result = resolve_served(pins, store)\n"
    "open(out, 'w').write(json.dumps(result))\n"
)


def resolve_in_child(
    pins: dict[str, str], store: Path | str | None = None
) -> dict[str, dict[str, str]] | None:
    """:func:`resolve_served` in a child process (same interpreter and environment), so MLflow and
    the scikit-learn models it loads never enter this one; None when the child fails (logged)."""
    with tempfile.TemporaryDirectory(prefix="hws-served-") as tmp:
        out = Path(tmp) / "resolved.json"
        arg = json.dumps([pins, None if store is None else str(store), str(out)])
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _CHILD, arg], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, timeout=RESOLVE_TIMEOUT_S, env=os.environ.copy(),
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("resolving the models in a child process failed (%s); loading them here", exc)
            return None
        if proc.returncode != 0 or not out.is_file():
            tail = proc.stderr.decode(errors="replace")[-2000:]
            log.warning("resolving the models in a child process failed (status %s); loading them here: %s",
                        proc.returncode, tail)  # fmt: skip
            return None
        result = json.loads(out.read_text())
    return result if isinstance(result, dict) else None


def run_dispatch(dispatch: Dispatch, task: str, queries: pl.DataFrame, *, strict: bool = False) -> Answer:
    """The served-or-adapted ``dispatch`` for ``task``, its ValueErrors as 422s and its output checked.

    ``strict`` refuses queries outside the training domain (a 422 naming the row and field).
    """
    try:
        answer = dispatch.predict(task, queries, strict=strict)
    except Exception as exc:  # noqa: BLE001 - mapped (or raised again) by checked_answer
        return checked_answer(task, queries, exc)
    return checked_answer(task, queries, answer)


def checked_answer(task: str, queries: pl.DataFrame | QueryRows, answer: Answer | BaseException) -> Answer:
    """What :func:`run_dispatch` makes of a dispatch's answer or exception (also for answers
    from :meth:`Dispatch.predict_many <hwsurrogate.surrogates.predict.Dispatch.predict_many>`)."""
    if isinstance(answer, BaseException):
        if isinstance(answer, ValueError) and not isinstance(answer, HwSurrogateError):
            raise PredictionInputError(str(answer)) from None
        raise answer
    if answer.outputs.height != queries.height:
        raise RuntimeError(f"{task}: {answer.outputs.height} predictions for {queries.height} queries")
    return answer
