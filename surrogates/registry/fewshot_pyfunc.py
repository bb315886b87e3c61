"""The MLflow pyfunc wrapper of the few-shot latency model (imported only when logging/loading).

``predict`` takes a frame with ``device_id, space, arch_key`` and returns ``latency_ms`` for
devices adapted with :class:`~.fewshot.AdaptedDeviceRegistry` (``params={"store": ROOT}``
selects the store root; default: ``HWSURROGATE_STORE``), each with the model version it was
adapted from. The artifact ``fewshot`` is the model's ``.npz`` file
(:meth:`~.fewshot.FewShotLatencyRegressor.save`).
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from hwsurrogate.surrogates.fewshot import FewShotLatencyRegressor
from hwsurrogate.surrogates.registry.adapted import AdaptedDeviceRegistry


class FewShotPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.model = FewShotLatencyRegressor.load(context.artifacts["fewshot"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        missing = [c for c in ("device_id", "space", "arch_key") if c not in model_input.columns]
        if missing:
            raise ValueError(f"few-shot latency queries miss column(s) {missing}")
        registry = AdaptedDeviceRegistry((params or {}).get("store") or None)
        out = np.full(len(model_input), np.nan)
        frame = model_input.reset_index(drop=True)
        for (device, space), part in frame.groupby(["device_id", "space"], sort=False):
            keys = part["arch_key"].astype(str).tolist()
            # the device's own model version (it may differ from this one's)
            out[part.index.to_numpy()] = registry.predict_latency(str(device), str(space), keys)
        return pd.DataFrame({"latency_ms": out})
