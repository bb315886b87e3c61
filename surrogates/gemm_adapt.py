"""Few-shot adaptation of the GEMM surrogate to an unseen GPU (``hws adapt --task gemm``).

Zero-shot, the GEMM model predicts a new GPU from its spec sheet alone (descriptors in the
``devices`` table: peak GFLOP/s, bandwidth, SMs): the trees predict the *utilisation* of the
roofline bound, the roofline comes from the specs. With a handful of measured shapes we fit a
per-device correction of that prediction in log space,

    log(runtime) = log(spec-only prediction) + w0 + w1*z_size + w2*z_intensity + w3*is_linear

by ridge regression that shrinks ``w`` toward zero (the zero-shot model): with 3-7 measurements
only the offset ``w0`` is fitted (a scale factor), with 8 or more the slopes too. The result
is stored as ``<store>/adapted/gemm/<device>.json`` (written atomically) together with the
model name and version it corrects, so predictions for the device are reproducible and a
newer champion does not silently reuse a correction fitted to another version.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import numpy as np
import polars as pl

from hwsurrogate.errors import HwSurrogateError
from hwsurrogate.settings import get_settings

from .features import DEVICE_DESCRIPTORS, gemm_features

#: log-space features of the correction (besides the offset), computed by features.gemm_features
CORRECTION_FEATURES: tuple[str, ...] = ("log2_roofline_ms", "log2_intensity_over_ridge", "is_linear")
MEASUREMENT_COLUMNS: tuple[str, ...] = ("op", "m", "n", "k", "runtime_ms")


class AdaptationError(HwSurrogateError, ValueError):
    """Measurements for adaptation are unusable (too few, NaN, negative, duplicated, name clash)."""


@dataclass(frozen=True)
class GemmAdaptConfig:
    min_measurements: int = 3  # fewer cannot be told from noise
    min_for_slopes: int = 8  # below this only the log-scale offset is fitted
    ridge_offset: float = 0.5  # shrinkage of the offset toward 0, in measurement units
    ridge_slope: float = 4.0  # shrinkage of the slopes toward 0


@dataclass
class GemmCorrection:
    """A fitted per-device correction; ``apply`` multiplies spec-only runtimes by it."""

    coef: list[float]
    center: list[float]
    scale: list[float]
    features: list[str] = field(default_factory=lambda: list(CORRECTION_FEATURES))

    def design(self, feats: pl.DataFrame) -> np.ndarray:
        z = _correction_inputs(feats, self.features)
        z = (z - np.asarray(self.center)) / np.asarray(self.scale)
        return np.column_stack([np.ones(len(z)), z])

    def log_factor(self, feats: pl.DataFrame) -> np.ndarray:
        return self.design(feats) @ np.asarray(self.coef)


def _correction_inputs(feats: pl.DataFrame, names: list[str]) -> np.ndarray:
    cols = []
    for name in names:
        if name == "is_linear":
            cols.append((feats["op_code"] == 2).cast(pl.Float64).to_numpy())
        else:
            cols.append(feats[name].to_numpy().astype(np.float64))
    return np.column_stack(cols) if cols else np.zeros((feats.height, 0))


def fit_correction(
    feats: pl.DataFrame, residual_log: np.ndarray, config: GemmAdaptConfig | None = None
) -> GemmCorrection:
    """Ridge fit of ``log(measured) - log(spec-only)`` on the correction features."""
    config = config or GemmAdaptConfig()
    n = len(residual_log)
    z = _correction_inputs(feats, list(CORRECTION_FEATURES))
    center = z.mean(axis=0)
    scale = z.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    zs = (z - center) / scale
    x = np.column_stack([np.ones(n), zs])
    penalty = np.full(x.shape[1], config.ridge_slope)
    penalty[0] = config.ridge_offset
    if n < config.min_for_slopes:
        penalty[1:] = 1e12  # offset only
    coef = np.linalg.solve(x.T @ x + np.diag(penalty), x.T @ residual_log)
    return GemmCorrection(coef.tolist(), center.tolist(), scale.tolist())


# --------------------------------------------------------------------------- persistence


def adapted_dir(store_root: str | os.PathLike[str] | None = None) -> Path:
    root = Path(store_root) if store_root is not None else Path(get_settings(fresh=True).store)
    return root / "adapted" / "gemm"


def _safe_name(device: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "__", device).strip(".") or "device"


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
    folder = adapted_dir(store_root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_safe_name(record.device_id)}.json"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".adapt.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record.to_json(), fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_adapted(device: str, store_root: str | os.PathLike[str] | None = None) -> AdaptedGemmDevice | None:
    path = adapted_dir(store_root) / f"{_safe_name(device)}.json"
    if not path.is_file():
        return None
    rec = AdaptedGemmDevice.from_json(json.loads(path.read_text()))
    return rec if rec.device_id == device else None


def list_adapted(store_root: str | os.PathLike[str] | None = None) -> list[str]:
    folder = adapted_dir(store_root)
    out = []
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(json.loads(p.read_text())["device_id"])
        except (ValueError, KeyError):
            continue
    return out


# --------------------------------------------------------------------------- adaptation


def check_measurements(frame: pl.DataFrame, *, min_rows: int = 3) -> pl.DataFrame:
    """Validate measurements (columns, NaN, non-positive, duplicate shapes); normalise defaults."""
    missing = [c for c in MEASUREMENT_COLUMNS if c not in frame.columns]
    if missing:
        raise AdaptationError(
            f"measurements miss column(s) {missing}; need {list(MEASUREMENT_COLUMNS)} (+ batch, dtype)"
        )
    f = frame
    if "batch" not in f.columns:
        f = f.with_columns(pl.lit(1).alias("batch"))
    if "dtype" not in f.columns:
        f = f.with_columns(pl.lit("fp32").alias("dtype"))
    if "layout" not in f.columns:
        f = f.with_columns(pl.lit(None, dtype=pl.String).alias("layout"))
    for col in ("m", "n", "k", "batch", "runtime_ms"):
        s = f[col].cast(pl.Float64, strict=False)
        bad = s.is_null() | s.is_nan() | ~s.is_finite()
        if bad.any():
            i = int(bad.arg_true()[0])
            raise AdaptationError(f"measurements: column {col!r} is NaN/missing/non-numeric in row {i}")
        if (s <= 0).any():
            i = int((s <= 0).arg_true()[0])
            raise AdaptationError(f"measurements: column {col!r} must be > 0; row {i} has {s[i]}")
    keys = ["op", "m", "n", "k", "batch", "dtype", "layout"]
    dup = f.select(keys).is_duplicated()
    if dup.any():
        i = int(dup.arg_true()[0])
        raise AdaptationError(
            f"measurements: duplicate shape in row {i} ({f.row(i, named=True)['op']} "
            f"m={f['m'][i]} n={f['n'][i]} k={f['k'][i]}); give one runtime per shape (e.g. the median)"
        )
    if f.height < min_rows:
        raise AdaptationError(f"measurements: {f.height} rows; need at least {min_rows} distinct shapes")
    return f


def read_measurements(path: str) -> pl.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise AdaptationError(f"measurements file {path!r} does not exist")
    try:
        if p.suffix == ".parquet":
            return pl.read_parquet(p)
        if p.suffix == ".json":
            return pl.read_json(p)
        return pl.read_csv(p)
    except Exception as exc:
        raise AdaptationError(f"measurements file {path!r} could not be read: {exc}") from None


def adapt_model(
    model: Any,
    device: str,
    measurements: pl.DataFrame,
    descriptors: pl.DataFrame,
    *,
    config: GemmAdaptConfig | None = None,
) -> tuple[GemmCorrection, np.ndarray, np.ndarray]:
    """Fit the correction for ``device`` on top of ``model`` (a GemmPyfunc); returns (corr, before, after)."""
    config = config or GemmAdaptConfig()
    meas = check_measurements(measurements, min_rows=config.min_measurements).with_columns(
        pl.lit(device).alias("device_id")
    )
    desc = descriptors.with_columns(pl.lit(device).alias("device_id"))
    base = model.runtime.predict(meas, extra_devices=desc)
    feats = gemm_features(meas, desc)
    y = meas["runtime_ms"].cast(pl.Float64).to_numpy()
    corr = fit_correction(feats, np.log(y) - np.log(base), config)
    after = base * np.exp(corr.log_factor(feats))
    return corr, base, after


def predict_adapted(model: Any, record: AdaptedGemmDevice, queries: pl.DataFrame) -> pl.DataFrame:
    """Runtime (and power when the model has one for the device: never for adapted ones) of queries."""
    q = queries.with_columns(pl.lit(record.device_id).alias("device_id"))
    desc = record.descriptor_frame()
    base = model.runtime.predict(q, extra_devices=desc)
    feats = gemm_features(q, desc)
    runtime = base * np.exp(record.correction.log_factor(feats))
    return pl.DataFrame(
        {"runtime_ms": runtime, "power_w": [None] * q.height, "energy_j": [None] * q.height},
        schema={"runtime_ms": pl.Float64, "power_w": pl.Float64, "energy_j": pl.Float64},
    )


def _descriptors_for(device: str, measurements: pl.DataFrame, store_root: Path) -> pl.DataFrame:
    """Descriptors from the measurements file (columns of the devices schema) or the store's devices table."""
    have = [c for c in DEVICE_DESCRIPTORS if c in measurements.columns]
    if "mem_bw_gbs" in have and ("peak_fp32_gflops" in have or "peak_fp16_gflops" in have):
        row = measurements.select(have).row(0, named=True)
        return pl.DataFrame([{"device_id": device, **row}])
    from hwsurrogate.datasets.store import DatasetStore

    devices = DatasetStore(store_root).read("devices")
    hit = devices.filter(pl.col("device_id") == device)
    if hit.height == 0:
        raise AdaptationError(
            f"no descriptors for device {device!r}: add it to the devices table or give columns "
            "peak_fp32_gflops (or peak_fp16_gflops), mem_bw_gbs, cores in the measurements file"
        )
    return hit


def adapt_gemm(
    device: str,
    measurements: pl.DataFrame,
    *,
    store_root: str | os.PathLike[str] | None = None,
    predictor: Any = None,
    config: GemmAdaptConfig | None = None,
) -> tuple[AdaptedGemmDevice, Path]:
    """Adapt the champion ``hws-gemm`` (or ``predictor``) to ``device`` and persist the record."""
    root = Path(store_root) if store_root is not None else Path(get_settings(fresh=True).store)
    check_measurements(
        measurements, min_rows=(config or GemmAdaptConfig()).min_measurements
    )  # before any loading
    if predictor is None:
        from .registry import load_predictor

        predictor = load_predictor("gemm")
    model = (
        predictor.model.unwrap_python_model().model
        if hasattr(predictor.model, "unwrap_python_model")
        else predictor.model
    )
    if device in model.devices:
        raise AdaptationError(
            f"device {device!r} is already known to {predictor.name} v{predictor.version} (trained on it); "
            "choose a new name for an unseen device"
        )
    desc = _descriptors_for(device, measurements, root)
    corr, before, after = adapt_model(model, device, measurements, desc, config=config)
    y = check_measurements(measurements, min_rows=1)["runtime_ms"].cast(pl.Float64).to_numpy()
    table = desc.row(0, named=True)
    record = AdaptedGemmDevice(
        device_id=device,
        model_name=predictor.name,
        model_version=str(predictor.version),
        descriptors={c: table.get(c) for c in DEVICE_DESCRIPTORS},
        correction=corr,
        n_measurements=len(y),
        fit_mape_before=float(np.mean(np.abs(before - y) / y) * 100),
        fit_mape_after=float(np.mean(np.abs(after - y) / y) * 100),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return record, save_adapted(record, root)


@click.command("adapt-gemm")
@click.option("--device", required=True, help="Name of the unseen GPU (must not be a training device).")
@click.option(
    "--measurements",
    required=True,
    help="CSV/parquet/JSON with op, m, n, k, runtime_ms (+ batch, dtype), or 'store' for the device's stored rows.",
)
def adapt_gemm_cli(device: str, measurements: str) -> None:
    """Adapt the GEMM surrogate to an unseen GPU from a few measured shapes (persisted in the store)."""
    t0 = time.perf_counter()
    if measurements == "store":
        from hwsurrogate.datasets.store import DatasetStore

        frame = DatasetStore().read("gemm", device=device)
        if frame.height == 0:
            raise AdaptationError(f"the store has no gemm rows for device {device!r}")
    else:
        frame = read_measurements(measurements)
    record, path = adapt_gemm(device, frame)
    click.echo(
        f"adapted {device} from {record.n_measurements} measurements on {record.model_name} v{record.model_version}: "
        f"fit MAPE {record.fit_mape_before:.1f}% (spec-only) -> {record.fit_mape_after:.1f}%"
    )
    click.echo(f"saved {path}  ({time.perf_counter() - t0:.2f} s)")
