"""The MLflow pyfunc wrapper of the few-shot latency model (imported only when logging/loading).

``predict`` takes a frame with ``device_id, space, arch_key`` (and optionally ``latency_ms``)
and returns ``latency_ms`` for every row:

- a (device, space) group with measured rows (``latency_ms`` set) is adapted on them in the call,
  statelessly, with this model (the same checks as ``hws adapt``: at least
  ``min_measurements`` distinct, positive, finite measurements), and every row of the group is
  predicted; nothing is stored. This is what the logged input example does (measurements of a
  device held out of meta-training, plus queries), so MLflow's serving check runs a real adaptation;
- a group without measurements must be a device adapted with
  :class:`~.adapted.AdaptedDeviceRegistry` (``params={"store": ROOT}`` selects the store root;
  default: ``HWSURROGATE_STORE``), answered with the model version it was adapted from.

The artifact ``fewshot`` is the model's ``.npz`` file (:meth:`~.fewshot.FewShotLatencyRegressor.save`).
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl

from hwsurrogate.datasets import archspaces
from hwsurrogate.surrogates.fewshot import FewShotLatencyRegressor
from hwsurrogate.surrogates.fewshot.measurements import check_measurements
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
        measured = frame["latency_ms"].notna() if "latency_ms" in frame.columns else pd.Series(False, frame.index)
        for (device, space), part in frame.groupby(["device_id", "space"], sort=False):
            keys = part["arch_key"].astype(str).tolist()
            support = part[measured[part.index]]
            if len(support):  # adapt on this call's measurements, store nothing
                m = check_measurements(
                    pl.DataFrame({"space": [str(space)] * len(support), "arch_key": support["arch_key"].astype(str).tolist(),
                                  "latency_ms": pd.to_numeric(support["latency_ms"], errors="coerce").to_numpy()}),
                    min_per_space=self.model.config.min_measurements,
                )  # fmt: skip
                head = self.model.adapt(str(space), m["arch_key"].to_list(), m["latency_ms"].to_numpy())
                canonical = [archspaces.check_arch_key(str(space), k) for k in keys]
                out[part.index.to_numpy()] = self.model.predict(head, canonical)
                continue
            # the device's own model version (it may differ from this one's)
            out[part.index.to_numpy()] = registry.predict_latency(str(device), str(space), keys)
        return pd.DataFrame({"latency_ms": out})
