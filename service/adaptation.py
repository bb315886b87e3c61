"""The one place the service talks to few-shot device adaptation (``surrogates.fewshot``).

Routes use the small :class:`DeviceAdapter` protocol; :func:`open_adapter` returns the real
implementation when the few-shot module is installed and an :class:`UnavailableAdapter` (every
write a 503 that says why) when it is not, so only this file changes if its API does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from hwsurrogate.service.served import ModelUnavailableError, PredictionInputError

FEWSHOT_TASK = "fewshot"


@dataclass(frozen=True)
class AdaptedInfo:
    """What the service reports about one adapted device."""

    device_id: str
    n_measurements: int
    spaces: list[str]
    created_at: str | None = None
    model_name: str = "hws-fewshot-latency"
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


def _info(dev: Any) -> AdaptedInfo:
    """An ``AdaptedDevice`` of :mod:`hwsurrogate.surrogates.fewshot` as the service reports it."""
    return AdaptedInfo(
        device_id=str(dev.device_id),
        n_measurements=int(dev.n_measurements),
        spaces=[str(s) for s in dev.spaces],
        created_at=str(dev.created_at) if dev.created_at is not None else None,
        model_name=str(dev.model_name),
        model_version=str(dev.model_version),
        details={
            "support_mape": dict(getattr(dev, "support_mape", {}) or {}),  # on the fitted measurements
            "heldout": dict(getattr(dev, "heldout", {}) or {}),  # leave-one-out per space: what to expect
        },
    )


class FewShotAdapter:
    """:class:`DeviceAdapter` over ``hwsurrogate.surrogates.fewshot.AdaptedDeviceRegistry``.

    The registry (one per process, so the meta-trained model is loaded once) keeps adapted
    devices as JSON files under ``<store>/adapted/latency/``.
    """

    available = True
    reason = ""

    def __init__(self, registry: Any, fewshot: Any) -> None:
        self._registry = registry
        self._not_trained = fewshot.NotMetaTrainedError

    def adapt(self, device_id: str, measurements: pl.DataFrame) -> AdaptedInfo:
        try:
            dev = self._registry.adapt(device_id, measurements.select("space", "arch_key", "latency_ms"))
        except self._not_trained as exc:
            raise ModelUnavailableError(FEWSHOT_TASK, str(exc)) from None
        except ValueError as exc:  # FewShotError names the column / row / device
            raise PredictionInputError(str(exc)) from None
        return _info(dev)

    def get(self, device_id: str) -> AdaptedInfo | None:
        try:
            if not self._registry.device_path(device_id).is_file():  # cheap miss for store devices
                return None
            return _info(self._registry.get(device_id))
        except (ValueError, LookupError):  # unsafe name (FewShotError) or removed meanwhile
            return None

    def list(self) -> list[AdaptedInfo]:
        out = [self.get(d) for d in self._registry.list()]
        return [a for a in out if a is not None]

    def predict_latency(self, device_id: str, queries: pl.DataFrame) -> pl.DataFrame:
        spaces = queries["space"].unique().to_list()
        if len(spaces) != 1:
            raise PredictionInputError(f"one space per request, got {spaces}")
        try:
            ms = self._registry.predict_latency(device_id, spaces[0], queries["arch_key"].to_list())
        except self._not_trained as exc:
            raise ModelUnavailableError(FEWSHOT_TASK, str(exc)) from None
        except ValueError as exc:  # e.g. the device was adapted for another space
            raise PredictionInputError(str(exc)) from None
        return pl.DataFrame({"latency_ms": pl.Series(ms, dtype=pl.Float64)})


def open_adapter(root: Path, store: Path | str | None = None) -> DeviceAdapter:
    """The few-shot adapter with its files under ``root`` (refusing device names of ``store``, default
    ``root``), or an :class:`UnavailableAdapter` saying why not."""
    try:
        from hwsurrogate.surrogates import fewshot
        from hwsurrogate.surrogates.registry.adapted import AdaptedDeviceRegistry
    except ImportError as exc:
        return UnavailableAdapter(f"few-shot adaptation is not installed ({exc})")
    try:
        registry = AdaptedDeviceRegistry(root, store=store)
    except Exception as exc:  # noqa: BLE001 - a broken registry must not stop the service
        return UnavailableAdapter(f"few-shot registry at {root} could not open: {type(exc).__name__}: {exc}")
    return FewShotAdapter(registry, fewshot)
