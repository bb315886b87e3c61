"""The one place the service talks to few-shot device adaptation (``surrogates.fewshot``).

Routes use the small :class:`DeviceAdapter` protocol; :func:`open_adapter` returns the real
implementation when the few-shot module is installed and an :class:`UnavailableAdapter` (every
write a 503 that says why) when it is not, so only this file changes if its API does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from .served import ModelUnavailableError, PredictionInputError

FEWSHOT_TASK = "fewshot"


@dataclass(frozen=True)
class AdaptedInfo:
    """What the service reports about one adapted device."""

    device_id: str
    n_measurements: int
    spaces: list[str]
    created_at: str | None = None
    model_name: str = "hws-fewshot"
    model_version: str = "adapted"
    details: dict[str, Any] = field(default_factory=dict)


class DeviceAdapter(Protocol):
    available: bool
    reason: str

    def adapt(self, device_id: str, measurements: pl.DataFrame) -> AdaptedInfo:
        """Fit a predictor for ``device_id`` from rows (space, arch_key, arch_index, latency_ms)."""
        ...

    def get(self, device_id: str) -> AdaptedInfo | None: ...

    def list(self) -> list[AdaptedInfo]: ...

    def predict_latency(self, device_id: str, queries: pl.DataFrame) -> pl.DataFrame:
        """``latency_ms`` per query row (columns device_id, space, arch_key)."""
        ...


class UnavailableAdapter:
    """Stand-in when few-shot adaptation is not installed: no adapted devices, writes are 503s."""

    available = False

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def adapt(self, device_id: str, measurements: pl.DataFrame) -> AdaptedInfo:
        raise ModelUnavailableError(FEWSHOT_TASK, self.reason)

    def get(self, device_id: str) -> AdaptedInfo | None:
        return None

    def list(self) -> list[AdaptedInfo]:
        return []

    def predict_latency(self, device_id: str, queries: pl.DataFrame) -> pl.DataFrame:
        raise ModelUnavailableError(FEWSHOT_TASK, self.reason)


def _info(obj: Any, device_id: str) -> AdaptedInfo:
    """Read an ``AdaptedDevice`` of the few-shot module defensively (its fields may grow)."""
    spaces = getattr(obj, "spaces", None) or []
    created = getattr(obj, "created_at", None)
    if isinstance(created, datetime):
        created = created.isoformat()
    n = getattr(obj, "n_measurements", None)
    if n is None:
        meas = getattr(obj, "measurements", None)
        n = len(meas) if meas is not None else 0
    return AdaptedInfo(
        device_id=str(getattr(obj, "device_id", device_id)),
        n_measurements=int(n),
        spaces=sorted(str(s) for s in spaces),
        created_at=str(created) if created is not None else None,
        model_name=str(getattr(obj, "model_name", "hws-fewshot")),
        model_version=str(getattr(obj, "model_version", "adapted")),
    )


class FewShotAdapter:
    """:class:`DeviceAdapter` over ``hwsurrogate.surrogates.fewshot.AdaptedDeviceRegistry``."""

    available = True
    reason = ""

    def __init__(self, registry: Any, predict: Any) -> None:
        self._registry = registry
        self._predict = predict

    def adapt(self, device_id: str, measurements: pl.DataFrame) -> AdaptedInfo:
        try:
            return _info(self._registry.adapt(device_id, measurements), device_id)
        except ValueError as exc:
            raise PredictionInputError(str(exc)) from None

    def get(self, device_id: str) -> AdaptedInfo | None:
        try:
            obj = self._registry.get(device_id)
        except (KeyError, LookupError):
            return None
        return _info(obj, device_id) if obj is not None else None

    def list(self) -> list[AdaptedInfo]:
        return [_info(obj, getattr(obj, "device_id", "?")) for obj in self._registry.list()]

    def predict_latency(self, device_id: str, queries: pl.DataFrame) -> pl.DataFrame:
        try:
            out = self._predict(self._registry, device_id, queries)
        except ValueError as exc:
            raise PredictionInputError(str(exc)) from None
        if isinstance(out, pl.DataFrame):
            return out.select("latency_ms")
        return pl.DataFrame({"latency_ms": pl.Series(list(out), dtype=pl.Float64)})


def open_adapter(root: Path) -> DeviceAdapter:
    """The few-shot adapter over ``root``, or an :class:`UnavailableAdapter` saying why not."""
    try:
        from hwsurrogate.surrogates import fewshot
    except ImportError as exc:
        return UnavailableAdapter(f"few-shot adaptation is not installed ({exc})")
    registry_cls = getattr(fewshot, "AdaptedDeviceRegistry", None)
    predict = getattr(fewshot, "predict_latency", None)
    if registry_cls is None or predict is None:
        return UnavailableAdapter(
            "hwsurrogate.surrogates.fewshot lacks AdaptedDeviceRegistry/predict_latency"
        )
    try:
        registry = registry_cls(root)
    except Exception as exc:  # e.g. no meta-trained model registered yet
        return UnavailableAdapter(f"few-shot registry at {root} could not open: {type(exc).__name__}: {exc}")

    def _call(reg: Any, device_id: str, queries: pl.DataFrame) -> Any:
        return predict(reg, device_id, queries)

    return FewShotAdapter(registry, _call)
