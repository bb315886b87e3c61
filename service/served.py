"""The models a running service answers with, loaded once: at the first request that needs one.

The service starts without them (:meth:`ServedModels.lazy`): resolving the champions imports
MLflow, pandas, scipy and SQLAlchemy (about 135 MB of the server's memory and a few seconds),
which ``/healthz`` and the dataset routes never need.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from hwsurrogate.errors import HwSurrogateError
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
    def lazy(cls, pins: dict[str, str] | None = None, *, batching: bool = True) -> ServedModels:
        """Models that :meth:`load` loads at their first use; nothing of MLflow is imported before."""
        return cls(loader=lambda: cls.load(pins, batching=batching))

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
                    freeze_heap()  # the models and MLflow's modules live as long as the process
                    self.loader = None
        return self

    @classmethod
    def load(cls, pins: dict[str, str] | None = None, *, batching: bool = True) -> ServedModels:
        """Load every task's champion (or pinned version); a missing model is recorded, not raised.

        With ``batching`` each model is wrapped in a :class:`~.batching.CoalescingPredictor`.
        """
        from hwsurrogate.service.batching import CoalescingPredictor
        from hwsurrogate.surrogates.registry.loading import ModelNotFoundError, load_predictor

        pins = pins or {}
        out = cls()
        for task in MODEL_NAMES:
            try:
                predictor = load_predictor(task, version=pins.get(task))
                out.predictors[task] = CoalescingPredictor(predictor) if batching else predictor
                log.info("serving %s: %s v%s", task, MODEL_NAMES[task], out.predictors[task].version)
            except ModelNotFoundError as exc:
                out.unavailable[task] = str(exc)
            except Exception as exc:  # a broken artifact must not take the other tasks down
                out.unavailable[task] = f"failed to load {MODEL_NAMES[task]!r}: {type(exc).__name__}: {exc}"
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


def run_dispatch(dispatch: Dispatch, task: str, queries: pl.DataFrame, *, strict: bool = False) -> Answer:
    """The served-or-adapted ``dispatch`` for ``task``, its ValueErrors as 422s and its output checked.

    ``strict`` refuses queries outside the training domain (a 422 naming the row and field).
    """
    try:
        answer = dispatch.predict(task, queries, strict=strict)
    except HwSurrogateError:
        raise
    except ValueError as exc:
        raise PredictionInputError(str(exc)) from None
    if answer.outputs.height != queries.height:
        raise RuntimeError(f"{task}: {answer.outputs.height} predictions for {queries.height} queries")
    return answer
