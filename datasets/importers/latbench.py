"""Importer: LatBench (BRP-NAS): NAS-Bench-201 latencies on 13 desktop, embedded and mobile devices.

Read the source README under ``$HWSURROGATE_DATA_DIR/latency/latbench-brpnas`` for units, encodings and defects.

Values come from the 13 original pickles (``{arch_vector: seconds}``), converted to ms (x1000).
The NAS-Bench-201 API index of each architecture comes from the derived CSV next to them
(``derived/latbench_nasbench201_latency_ms.csv.xz``, columns ``nb201_index, arch_str,
arch_vector``); the importer checks that its ``arch_str`` equals the string built from the
vector. Architectures missing from a pickle stay missing (no row). Device ids are
``latbench/<file stem with '-' -> '_'>``, the names of ``latency/splits.json``; precision is the
name's suffix; batch is 1. Every device's ``fingerprint`` holds its latencies of HELP's 10 NB201
reference architectures (those it has), so HELP and LatBench devices share one embedding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from hwsurrogate.datasets import archspaces
from hwsurrogate.datasets.importers import Source
from hwsurrogate.datasets.importers._common import check_positive_finite, read_csv_checked, with_provenance
from hwsurrogate.datasets.importers._pickle import read_pickle
from hwsurrogate.datasets.schemas import Kind
from hwsurrogate.errors import SourceFormatError

SOURCE = Source(
    name="latbench",
    kinds=("latency", "devices"),
    subpath="latency/latbench-brpnas",
    url="https://github.com/SamsungLabs/eagle (LatBench, Google Drive link in its README)",
    license="Apache-2.0",
    description="LatBench (BRP-NAS): NAS-Bench-201 latencies on 13 desktop, embedded and mobile devices",
)

#: Rows the README promises: 8 devices x 15284, 3 x 15261 (Snapdragon 675), 2 x 15252 (Snapdragon 450).
EXPECTED_ROWS: dict[str, int] = {"latency": 8 * 15284 + 3 * 15261 + 2 * 15252, "devices": 13}
ORIGIN = (
    "github.com/ZengYuXiang7/NAS-LLM-GNN@b844a3253589d6051741ae7c737949a36e2f82ad "
    "(re-upload of the SamsungLabs/eagle LatBench Google Drive files)"
)
INDEX_CSV = "derived/latbench_nasbench201_latency_ms.csv.xz"

#: file stem -> (kind, name, vendor, form factor); entries per README table
DEVICES: dict[str, tuple[str, str, str, str]] = {
    "desktop-cpu-core-i7-7820x-fp32": ("cpu", "Intel Core i7-7820X", "Intel", "desktop"),
    "desktop-gpu-gtx-1080ti-fp32": ("gpu", "NVIDIA GeForce GTX 1080 Ti", "NVIDIA", "desktop"),
    "embedded-gpu-jetson-nano-fp16": ("gpu", "NVIDIA Jetson Nano GPU", "NVIDIA", "embedded"),
    "embedded-gpu-jetson-nano-fp32": ("gpu", "NVIDIA Jetson Nano GPU", "NVIDIA", "embedded"),
    "embedded-tpu-edge-tpu-int8": ("tpu", "Google Edge TPU", "Google", "embedded"),
    "mobile-cpu-snapdragon-450-cortex-a53-int8": ("cpu", "Snapdragon 450 CPU (Cortex-A53)", "Qualcomm", "mobile"),
    "mobile-cpu-snapdragon-675-kryo-460-int8": ("cpu", "Snapdragon 675 CPU (Kryo 460)", "Qualcomm", "mobile"),
    "mobile-cpu-snapdragon-855-kryo-485-int8": ("cpu", "Snapdragon 855 CPU (Kryo 485)", "Qualcomm", "mobile"),
    "mobile-dsp-snapdragon-675-hexagon-685-int8": ("dsp", "Snapdragon 675 DSP (Hexagon 685)", "Qualcomm", "mobile"),
    "mobile-dsp-snapdragon-855-hexagon-690-int8": ("dsp", "Snapdragon 855 DSP (Hexagon 690)", "Qualcomm", "mobile"),
    "mobile-gpu-snapdragon-450-adreno-506-int8": ("gpu", "Snapdragon 450 GPU (Adreno 506)", "Qualcomm", "mobile"),
    "mobile-gpu-snapdragon-675-adreno-612-int8": ("gpu", "Snapdragon 675 GPU (Adreno 612)", "Qualcomm", "mobile"),
    "mobile-gpu-snapdragon-855-adreno-640-int8": ("gpu", "Snapdragon 855 GPU (Adreno 640)", "Qualcomm", "mobile"),
}  # fmt: skip

_RADIX = np.array([5**5, 5**4, 5**3, 5**2, 5, 1], dtype=np.int64)


def device_id(stem: str) -> str:
    return "latbench/" + stem.replace("-", "_")


def _nb201_key_expr() -> pl.Expr:
    """The canonical NB201 arch string from columns c0..c5 (op codes), vectorised."""
    ops = {i: op for i, op in enumerate(archspaces.NB201_OPS)}
    o = [pl.col(f"c{i}").replace_strict(ops, return_dtype=pl.String) for i in range(6)]
    return pl.format("|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|", *o)


def _index_table(path: Path) -> pl.DataFrame:
    """code (base-5 arch vector) -> nb201_index, arch_key, checked against the CSV's arch_str."""
    csv = path / INDEX_CSV
    df = read_csv_checked(csv, ["nb201_index", "arch_str", "arch_vector"], infer_schema_length=0,
                          columns=["nb201_index", "arch_str", "arch_vector"])  # fmt: skip
    parts = df["arch_vector"].str.split(" ")
    bad = parts.list.len() != 6
    if bad.any():
        i = int(bad.arg_true()[0])
        raise SourceFormatError(
            f"{csv}: column 'arch_vector' row {i} is not 6 op codes: {df['arch_vector'][i]!r}"
        )
    codes = df.select(
        [parts.list.get(i).cast(pl.Int64, strict=False).alias(f"c{i}") for i in range(6)]
        + [pl.col("nb201_index").cast(pl.Int64, strict=False), pl.col("arch_str")]
    )
    for c in ["nb201_index", *(f"c{i}" for i in range(6))]:
        nulls = codes[c].is_null() | ((codes[c] < 0) | (codes[c] > (15624 if c == "nb201_index" else 4)))
        if nulls.any():
            i = int(nulls.fill_null(True).arg_true()[0])
            raise SourceFormatError(f"{csv}: column {'arch_vector' if c != 'nb201_index' else c!r} "
                                    f"has a bad value at row {i}")  # fmt: skip
    codes = codes.with_columns(
        _nb201_key_expr().alias("arch_key"),
        sum(pl.col(f"c{i}") * int(_RADIX[i]) for i in range(6)).alias("code"),  # type: ignore[misc]
    )
    mismatch = codes["arch_key"] != codes["arch_str"]
    if mismatch.any():
        i = int(mismatch.arg_true()[0])
        raise SourceFormatError(
            f"{csv}: arch_str {codes['arch_str'][i]!r} does not match arch_vector (expected {codes['arch_key'][i]!r})"
        )
    if codes["code"].is_duplicated().any() or codes["nb201_index"].is_duplicated().any():
        raise SourceFormatError(f"{csv}: an architecture or nb201_index appears twice")
    return codes.select("code", pl.col("nb201_index").alias("arch_index"), "arch_key")


def read_device_pickle(file: Path) -> pl.DataFrame:
    """``{arch_vector: seconds}`` as a frame of (code, latency_ms)."""
    data = read_pickle(file)
    if not isinstance(data, dict) or not data:
        raise SourceFormatError(f"{file}: expected a non-empty dict {{arch_vector: seconds}}")
    try:
        vectors = np.asarray(list(data.keys()), dtype=np.int64)
        seconds = np.asarray(list(data.values()), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SourceFormatError(
            f"{file}: keys must be 6-tuples of op codes and values numbers ({exc})"
        ) from None
    if vectors.ndim != 2 or vectors.shape[1] != 6 or vectors.min() < 0 or vectors.max() > 4:
        raise SourceFormatError(f"{file}: keys must be 6-tuples of op codes 0..4")
    frame = pl.DataFrame({"code": vectors @ _RADIX, "latency_ms": seconds * 1000.0})
    check_positive_finite(frame, "latency_ms", file)
    return frame


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read the source at ``path`` into schema-conforming frames (one per kind)."""
    index = _index_table(path)
    refs = list(archspaces.HELP_REFERENCE_INDICES["nb201"])
    frames: list[pl.DataFrame] = []
    device_rows: list[dict[str, object]] = []
    files = sorted(path.glob("*.pickle"))
    if not files:
        raise SourceFormatError(f"{path}: no <device>.pickle files found")
    for file in files:
        if file.stem not in DEVICES:
            raise SourceFormatError(f"{file}: unknown LatBench device; expected one of {sorted(DEVICES)}")
        kind, name, vendor, form = DEVICES[file.stem]
        precision = file.stem.rsplit("-", 1)[1]
        dev = device_id(file.stem)
        lat = read_device_pickle(file).join(index, on="code", how="left")
        unknown = lat["arch_index"].is_null()
        if unknown.any():
            raise SourceFormatError(f"{file}: {int(unknown.sum())} architecture(s) are not in {INDEX_CSV}")
        frame = lat.select(
            pl.lit(dev).alias("device_id"),
            pl.lit("nb201").alias("space"),
            "arch_index",
            "arch_key",
            pl.lit(1, dtype=pl.Int64).alias("batch"),
            pl.lit(precision).alias("precision"),
            "latency_ms",
            pl.lit(True).alias("measured"),
        ).sort("arch_index")
        frames.append(frame)
        ref = frame.filter(pl.col("arch_index").is_in(refs))
        fp = dict(zip(ref["arch_index"].to_list(), ref["latency_ms"].to_list(), strict=True))
        device_rows.append(
            {
                "device_id": dev,
                "kind": kind,
                "name": f"{name} ({precision})",
                "vendor": vendor,
                "descriptors": json.dumps(
                    {"form_factor": form, "precision": precision, "batch": 1, "n_archs": frame.height}
                ),
                "fingerprint": json.dumps({"nb201": {str(i): fp[i] for i in refs if i in fp}}),
            }
        )
    latency = pl.concat(frames).with_columns(
        pl.concat_str(
            [pl.lit("latbench"), pl.col("device_id"), pl.lit("nb201"), pl.col("arch_index").cast(pl.String)],
            separator="|",
        ).alias("measurement_id")
    )
    devices = pl.DataFrame(device_rows).with_columns(
        pl.concat_str([pl.lit("latbench"), pl.col("device_id")], separator="|").alias("measurement_id")
    )
    prov = {"source": "latbench", "origin": ORIGIN, "license": SOURCE.license}
    return {"latency": with_provenance(latency, **prov), "devices": with_provenance(devices, **prov)}
