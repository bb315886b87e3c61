"""The served ``latency`` model: device_id, space, arch_key -> latency_ms.

:class:`LatencyPyfunc` is the MLflow pyfunc logged by ``hws train latency``. It holds one fitted
multi-device predictor per space (:class:`.latency_trees.MultiDeviceLatencyTrees` or
:class:`.gnn.MultiDeviceLatencyGNN`); both compute their features with :mod:`.graphs` inside
``predict``, so the served model and training share one feature pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import pandas as pd

from hwsurrogate.surrogates.api import INPUTS

try:  # mlflow is a dependency; the base class only adds the pyfunc hooks
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover
    PythonModel = object  # type: ignore[misc,assignment]


class SpacePredictor(Protocol):
    space: str

    def predict(self, arch_keys: list[str], device_ids: list[str]) -> np.ndarray: ...


def predictor_devices(model: Any) -> list[str]:
    return list(model.devices)


class LatencyPyfunc(PythonModel):
    """pyfunc: a frame with ``device_id``, ``space``, ``arch_key`` -> frame with ``latency_ms``."""

    def __init__(self, models: Mapping[str, SpacePredictor], kind: str) -> None:
        self.models = dict(models)
        self.kind = kind

    @property
    def devices(self) -> dict[str, list[str]]:
        """Devices each space's model answers for."""
        return {space: predictor_devices(m) for space, m in self.models.items()}

    def predict_frame(self, queries: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in INPUTS["latency"] if c not in queries.columns]
        if missing:
            raise ValueError(f"latency queries miss column(s) {missing}; need {list(INPUTS['latency'])}")
        for col in INPUTS["latency"]:
            nulls = queries[col].isna()
            if nulls.any():
                raise ValueError(f"column {col!r} may not be null (row {int(np.flatnonzero(nulls)[0])})")
        spaces = queries["space"].astype(str).to_numpy()
        devices = queries["device_id"].astype(str).to_numpy()
        keys = queries["arch_key"].astype(str).to_numpy()
        out = np.full(len(queries), np.nan)
        for space in pd.unique(spaces):
            if space not in self.models:
                raise ValueError(f"unknown space {space!r}; this model answers for {sorted(self.models)}")
            rows = np.flatnonzero(spaces == space)
            known = set(predictor_devices(self.models[space]))
            for d in pd.unique(devices[rows]):
                if d not in known:
                    raise ValueError(
                        f"unknown device_id {d!r} for space {space!r}; known: {', '.join(sorted(known)[:8])}"
                        + (" ..." if len(known) > 8 else "")
                    )
            out[rows] = self.models[space].predict(keys[rows].tolist(), devices[rows].tolist())
        return pd.DataFrame({"latency_ms": out})

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return self.predict_frame(model_input)
