"""Adapted devices, on disk: one store for the devices of every task, under the dataset store.

``<store>/adapted/<task>/<device>.json`` holds one device adapted from a handful of measurements
(``latency``: few-shot heads per NAS space; ``gemm``: the correction of the GEMM champion), with
the model version it was adapted from. :class:`AdaptedRecords` is the one reader/writer (atomic
writes, safe file names, the record's own ``device_id`` checked on read); the record types
(:class:`AdaptedDevice`, :class:`AdaptedGemmDevice`) say what a task stores. Prediction with an
adapted device goes through :mod:`hwsurrogate.surrogates.predict`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hwsurrogate.datasets import archspaces
from hwsurrogate.errors import UnknownDeviceError
from hwsurrogate.io import atomic_write_bytes, atomic_write_text, safe_name
from hwsurrogate.surrogates.features import DEVICE_DESCRIPTORS
from hwsurrogate.surrogates.fewshot import (
    MODEL_NAME,
    DeviceHead,
    FewShotError,
    FewShotLatencyRegressor,
    NotMetaTrainedError,
    check_device_name,
    check_measurements,
)
from hwsurrogate.surrogates.fewshot.gemm import GemmCorrection
from hwsurrogate.surrogates.fewshot.hlsyn import KernelCorrection
from hwsurrogate.surrogates.registry.cache import LocalModelCache, store_root
from hwsurrogate.surrogates.training.metrics import mape, spearman

__all__ = [
    "HELDOUT_FOLDS",
    "AdaptedDevice",
    "AdaptedDeviceRegistry",
    "AdaptedGemmDevice",
    "AdaptedHlsynKernel",
    "AdaptedRecords",
    "adapted_dir",
    "heldout_folds",
    "heldout_latency",
    "list_adapted",
    "load_adapted",
    "load_adapted_kernel",
    "predict_latency",
    "save_adapted",
    "save_adapted_kernel",
]


class AdaptedRecords:
    """The adapted devices of one task: ``<root>/adapted/<task>/<safe device id>.json``."""

    def __init__(self, root: str | os.PathLike[str] | None, task: str) -> None:
        self.folder = store_root(root) / "adapted" / task

    def path(self, device_id: str) -> Path:
        return self.folder / f"{safe_name(device_id)}.json"

    def save(self, device_id: str, record: dict[str, Any], *, indent: int = 2) -> Path:
        """Write one device's record atomically (a failed write leaves the old record byte-identical)."""
        return atomic_write_text(self.path(device_id), json.dumps(record, indent=indent))

    def load(self, device_id: str) -> dict[str, Any] | None:
        """The stored record of ``device_id``; None when absent or when the file is another id's."""
        path = self.path(device_id)
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        return record if record.get("device_id") == device_id else None

    def list(self) -> list[str]:
        """Ids of the stored devices (unreadable files skipped), sorted."""
        out = []
        for p in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            try:
                out.append(str(json.loads(p.read_text())["device_id"]))
            except (ValueError, KeyError):
                continue
        return sorted(out)


# --------------------------------------------------------------------------- adapted devices
@dataclass
class AdaptedDevice:
    """A device adapted from a handful of measurements, with the model version it came from."""

    device_id: str
    model_name: str
    model_version: str
    created_at: str
    heads: dict[str, DeviceHead]
    measurements: list[dict[str, Any]]
    support_mape: dict[str, float]  #: per space: the error on the measurements the heads were fitted on
    #: per space: MAPE (%) and Spearman of predictions for measurements left out of the fit
    #: (``heldout["method"]``: 5-fold, or leave-one-out up to 5); empty for records saved before it existed
    heldout: dict[str, Any] = field(default_factory=dict)

    @property
    def spaces(self) -> list[str]:
        return sorted(self.heads)

    @property
    def n_measurements(self) -> int:
        return len(self.measurements)

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "created_at": self.created_at,
            "n_measurements": self.n_measurements,
            "support_mape": self.support_mape,
            "heldout": self.heldout,
            "heads": {s: h.to_json() for s, h in self.heads.items()},
            "measurements": self.measurements,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AdaptedDevice:
        return cls(
            device_id=str(d["device_id"]),
            model_name=str(d["model_name"]),
            model_version=str(d["model_version"]),
            created_at=str(d["created_at"]),
            heads={s: DeviceHead.from_json(h) for s, h in d["heads"].items()},
            measurements=list(d["measurements"]),
            support_mape={k: float(v) for k, v in d.get("support_mape", {}).items()},
            heldout=dict(d.get("heldout", {})),
        )


class AdaptedDeviceRegistry:
    """Adapted devices under ``<root>/adapted/latency/`` and local exports of the meta-trained model.

    ``root`` is the dataset store (``HWSURROGATE_STORE`` by default); the files live in its local
    folder (:func:`~hwsurrogate.settings.local_root`: the store directory, or ``$HWSURROGATE_LOCAL_DIR``
    for an ``s3://`` store). ``store`` (default ``root``) is the store whose device names
    :meth:`adapt` must not reuse. Layout::

        <root>/models/fewshot-latency/<version>.npz   meta-trained model, one file per version
        <root>/models/fewshot-latency/champion.json   {"version": ...} of the champion export
        <root>/adapted/latency/<device>.json          one adapted device (``/`` -> ``__``)

    Every file is written atomically (temp file + ``os.replace``): a failed adaptation leaves
    the registered devices byte-identical.
    """

    def __init__(
        self, root: str | os.PathLike[str] | None = None, *, store: str | os.PathLike[str] | None = None
    ) -> None:
        self.root = store_root(root)
        self.store = store if store is not None else root  # None: the configured store
        self.records = AdaptedRecords(self.root, "latency")
        self.models = LocalModelCache(
            self.root / "models" / "fewshot-latency",
            MODEL_NAME,
            suffix=".npz",
            write=lambda model, path: model.save(path),
            read=FewShotLatencyRegressor.load,
            fetch=self._fetch_from_mlflow,
        )

    # ------------------------------------------------------------------ paths
    @property
    def model_dir(self) -> Path:
        return self.models.folder

    @property
    def device_dir(self) -> Path:
        return self.records.folder

    def device_path(self, device_id: str) -> Path:
        return self.records.path(check_device_name(device_id))

    # ------------------------------------------------------------------ models
    def export_model(self, model: FewShotLatencyRegressor, version: str, *, champion: bool) -> Path:
        """Store a registered model version locally (and point ``champion`` at it)."""
        return self.models.export(model, str(version), champion=champion)

    def set_champion(self, version: str) -> None:
        """Point the local ``champion.json`` at ``version`` (its file is fetched from MLflow on first use)."""
        self.models.set_champion(version)

    def champion_version(self) -> str:
        version = self.models.champion_version()
        if version is None:
            raise NotMetaTrainedError(
                f"no meta-trained few-shot model under {self.model_dir}; run `hws train fewshot` first"
            )
        return version

    def load_model(self, version: str | None = None) -> tuple[FewShotLatencyRegressor, str]:
        """The model of ``version`` (default: the champion), loaded once and cached."""
        version = str(version) if version is not None else self.champion_version()
        return self.models.load(version), version

    def _fetch_from_mlflow(self, version: str, path: Path) -> None:
        try:
            import mlflow

            from hwsurrogate.surrogates.registry.tracking import configure_mlflow

            configure_mlflow()
            local = mlflow.artifacts.download_artifacts(f"models:/{MODEL_NAME}/{version}")
            src = Path(local) / "artifacts" / "fewshot.npz"
            atomic_write_bytes(path, src.read_bytes())
        except Exception as exc:
            raise NotMetaTrainedError(
                f"few-shot model version {version} is neither exported under {self.model_dir} "
                f"nor downloadable from the MLflow registry ({exc})"
            ) from None

    # ------------------------------------------------------------------ devices
    def list(self) -> list[str]:
        """Ids of the adapted devices."""
        return self.records.list()

    def get(self, device_id: str) -> AdaptedDevice:
        record = self.records.load(check_device_name(device_id))
        if record is None:
            raise UnknownDeviceError(device_id, self.list())
        return AdaptedDevice.from_json(record)

    def known_devices(self) -> set[str]:
        """Device ids already in the store's latency/devices tables (names adapt must not reuse)."""
        from hwsurrogate.datasets.store import DatasetStore

        store = DatasetStore(self.store)
        known: set[str] = set()
        for kind in ("latency", "devices"):
            if store.partitions(kind):
                known |= set(
                    store.scan(kind).select(pl.col("device_id").unique()).collect()["device_id"].to_list()
                )
        return known

    def adapt(
        self,
        device_id: str,
        measurements: pl.DataFrame,
        *,
        version: str | None = None,
        allow_store_device: bool = False,
    ) -> AdaptedDevice:
        """Adapt the (champion) model to ``device_id`` and persist it; returns the adapted device.

        ``measurements`` has columns space, arch_key, latency_ms. The device id must not be a
        source device of the model, nor (unless ``allow_store_device``, used when the
        measurements come from the store itself) a device already in the store. Re-adapting an
        adapted device replaces it. On any error nothing on disk changes.
        """
        check_device_name(device_id)
        model, version = self.load_model(version)
        if device_id in model.source_devices:
            raise FewShotError(
                f"device {device_id!r} collides with a source device of few-shot model v{version}; "
                "choose a new name"
            )
        if not allow_store_device and device_id in self.known_devices():
            raise FewShotError(
                f"device {device_id!r} collides with a device already in the store; choose a new "
                "name, or adapt from its stored rows with measurements='store'"
            )
        m = check_measurements(measurements, min_per_space=model.config.min_measurements)
        heads: dict[str, DeviceHead] = {}
        support_mape: dict[str, float] = {}
        t0 = time.perf_counter()
        heldout: dict[str, Any] = {"per_space": {}}
        for (space,), part in m.group_by(["space"], maintain_order=True):
            space = str(space)
            keys = part["arch_key"].to_list()
            y = part["latency_ms"].to_numpy()
            head = model.adapt(space, keys, y)
            heads[space] = head
            fit = model.predict(head, keys)
            support_mape[space] = mape(y, fit)
            heldout["per_space"][space] = heldout_latency(model, space, keys, y)
        methods = {v["method"] for v in heldout["per_space"].values() if v.get("method")}
        heldout["method"] = methods.pop() if len(methods) == 1 else ", ".join(sorted(methods))
        heldout["seconds"] = round(time.perf_counter() - t0, 3)
        device = AdaptedDevice(
            device_id=device_id,
            model_name=MODEL_NAME,
            model_version=version,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            heads=heads,
            measurements=m.to_dicts(),
            support_mape=support_mape,
            heldout=heldout,
        )
        self.records.save(check_device_name(device_id), device.to_json(), indent=1)
        return device

    def predict_latency(self, device_id: str, space: str, arch_keys: Sequence[str]) -> np.ndarray:
        """Predicted latency (ms) of ``arch_keys`` (canonical keys of ``space``) on an adapted device."""
        device = self.get(device_id)
        if space not in device.heads:
            raise FewShotError(
                f"device {device_id!r} was adapted for space(s) {device.spaces}, not {space!r}; "
                f"add {space} measurements and adapt again"
            )
        model, _ = self.load_model(device.model_version)
        keys = [archspaces.check_arch_key(space, k) for k in arch_keys]
        return model.predict(device.heads[space], keys)


#: folds of the held-out estimates (latency per space, GEMM per device): leave-one-out up to this
#: many measurements, k-fold above. Each fold is one more adaptation (latency ``adapt_rows``: 0.1-0.4 s
#: on the shared 2-core CPU), so leave-one-out at 20 measurements cost 5 s; 5 folds cost 5 fits.
HELDOUT_FOLDS = 5


def heldout_folds(n: int, min_fit: int, *, max_folds: int, seed: int = 0) -> tuple[np.ndarray | None, str]:
    """Fold of each of ``n`` measurements: ``min(n, max_folds)`` folds (leave-one-out when that is
    ``n``), shuffled with ``seed``, so that every fit keeps >= ``min_fit``; (None, why) when impossible."""
    k = min(n, max_folds)
    if k < 2 or n - int(np.ceil(n / k)) < min_fit:
        return None, f"too few measurements to leave any out (need > {min_fit})"
    folds = np.random.default_rng(seed).permutation(n) % k
    return folds, "leave-one-out" if k == n else f"{k}-fold"


def heldout_latency(
    model: FewShotLatencyRegressor, space: str, keys: Sequence[str], y: np.ndarray
) -> dict[str, Any]:
    """MAPE (%) and Spearman of each measurement predicted by a head adapted without it (its fold:
    :data:`HELDOUT_FOLDS`-fold, leave-one-out up to that many measurements).

    The same fit as :meth:`FewShotLatencyRegressor.adapt` / ``predict`` (``adapt_rows`` and
    ``predict_head`` on the design rows of ``keys``, computed once: a row's features do not depend
    on the other rows), so a fold costs one ``adapt_rows``, not a feature pass.
    """
    from hwsurrogate.surrogates.fewshot import predict_head

    n = len(keys)
    folds, method = heldout_folds(n, model.config.min_measurements, max_folds=HELDOUT_FOLDS)
    if folds is None:
        return {"method": "", "mape": None, "spearman": None, "n": n, "note": method}
    F = model.features(space, list(keys))
    log_y = np.log(np.asarray(y, dtype=float))
    pred = np.full(n, np.nan)
    for f in np.unique(folds):
        out = folds == f
        head = model.adapt_rows(space, F[~out], log_y[~out])
        pred[out] = np.exp(predict_head(head, F[out]))
    rho = spearman(y, pred) if n >= 3 else float("nan")
    return {"method": method, "mape": mape(y, pred), "spearman": None if rho != rho else rho, "n": n}


def predict_latency(
    device_id: str, space: str, arch_keys: Sequence[str], *, root: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """Latency in ms of ``arch_keys`` on the adapted device ``device_id`` (store root from settings)."""
    return AdaptedDeviceRegistry(root).predict_latency(device_id, space, arch_keys)


# --------------------------------------------------------------------------- persistence


def adapted_dir(store_root: str | os.PathLike[str] | None = None) -> Path:
    """Folder of the adapted GEMM devices (``<store>/adapted/gemm``)."""
    return AdaptedRecords(store_root, "gemm").folder


@dataclass
class AdaptedGemmDevice:
    device_id: str
    model_name: str
    model_version: str
    descriptors: dict[str, Any]
    correction: GemmCorrection
    n_measurements: int
    fit_mape_before: float
    fit_mape_after: float
    created_at: str = ""
    load_seconds: float = 0.0  # loading the champion (0 when a loaded predictor was passed)
    fit_seconds: float = 0.0  # both adaptation steps, from descriptors to the fitted correction
    #: MAPE (%) on measurements left out of the fit (``heldout_method``: leave-one-out or k-fold);
    #: None when too few measurements to leave any out, or for records saved before it existed
    heldout_mape: float | None = None
    heldout_method: str = ""
    heldout_seconds: float = 0.0
    #: the measured shapes' domain (:mod:`hwsurrogate.surrogates.domain`); None: unknown (older records)
    domain: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AdaptedGemmDevice:
        d = dict(d)
        d["correction"] = GemmCorrection(**d["correction"])
        return cls(**d)

    def descriptor_frame(self) -> pl.DataFrame:
        row = {"device_id": self.device_id, **{c: self.descriptors.get(c) for c in DEVICE_DESCRIPTORS}}
        return pl.DataFrame(
            [row], schema={"device_id": pl.String, **dict.fromkeys(DEVICE_DESCRIPTORS, pl.Float64)}
        )


def save_adapted(record: AdaptedGemmDevice, store_root: str | os.PathLike[str] | None = None) -> Path:
    """Write the record atomically (temp file + fsync + rename); returns its path."""
    return AdaptedRecords(store_root, "gemm").save(record.device_id, record.to_json())


def load_adapted(device: str, store_root: str | os.PathLike[str] | None = None) -> AdaptedGemmDevice | None:
    """The adapted GEMM device ``device``, or None when it was never adapted."""
    record = AdaptedRecords(store_root, "gemm").load(device)
    return AdaptedGemmDevice.from_json(record) if record is not None else None


def list_adapted(store_root: str | os.PathLike[str] | None = None) -> list[str]:
    """Ids of the adapted GEMM devices."""
    return AdaptedRecords(store_root, "gemm").list()


# --------------------------------------------------------------------------- adapted HLS kernels
@dataclass
class AdaptedHlsynKernel:
    """An HLS kernel the served ``fpga-hlsyn`` model was adapted to (``hws adapt --task fpga-hlsyn``).

    Stored through :class:`AdaptedRecords` under ``<store>/adapted/fpga-hlsyn/<kernel>.json``;
    ``device_id`` is the kernel name (the key :class:`AdaptedRecords` files records under).
    """

    device_id: str
    model_name: str
    model_version: str
    correction: KernelCorrection
    n_designs: int
    #: summed RMSE of the 5 HLSyn targets on the measured designs before / after the correction
    fit_rmse_before: float
    fit_rmse_after: float
    #: the same on designs left out of the fit (``heldout_method``); None when too few designs
    heldout_rmse: float | None = None
    heldout_method: str = ""
    created_at: str = ""
    load_seconds: float = 0.0
    fit_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["correction"] = self.correction.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AdaptedHlsynKernel:
        d = dict(d)
        d["correction"] = KernelCorrection.from_json(d["correction"])
        return cls(**d)


def save_adapted_kernel(record: AdaptedHlsynKernel, store_root: str | os.PathLike[str] | None = None) -> Path:
    """Write a new kernel record atomically; an existing record is never overwritten (ValueError)."""
    records = AdaptedRecords(store_root, "fpga-hlsyn")
    if records.path(record.device_id).exists():
        raise ValueError(
            f"kernel {record.device_id!r} is already adapted ({records.path(record.device_id)}); nothing was "
            "overwritten: adapt under another kernel name, or remove that file first"
        )
    return records.save(record.device_id, record.to_json())


def load_adapted_kernel(
    kernel: str, store_root: str | os.PathLike[str] | None = None
) -> AdaptedHlsynKernel | None:
    """The adapted HLS kernel ``kernel``, or None when it was never adapted."""
    record = AdaptedRecords(store_root, "fpga-hlsyn").load(kernel)
    return AdaptedHlsynKernel.from_json(record) if record is not None else None
