"""Importer: HELP (NeurIPS'21): NAS-Bench-201, FBNet and OFA latencies on 27/27/12 devices, with hardware-embedding reference indices.

Read the source README under ``$HWSURROGATE_DATA_DIR/latency/help`` for units, encodings and defects.

What it reads (the original ``.pt`` files, not the derived CSVs; a test checks the two agree):

- ``<space>/latency/<device>.pt``: one latency (ms) per architecture of the space, in list order.
- ``nasbench201/str_arch2idx.pt``, ``fbnet/metainfo.pt``, ``ofa/ofa_archs.pt``: the architecture
  lists, turned into canonical ``arch_key`` strings (:mod:`hwsurrogate.datasets.archspaces`).
- ``<space>/hardware_embedding_index.pt``: the 10 reference architectures; their latencies on a
  device become that device's ``fingerprint`` in the ``devices`` table.

Device ids are ``help/<file stem>``; a ``_1/_32/_64/_256`` suffix is the batch size (the latency
is for the whole batch), devices without one run batch 1. ``eyeriss`` and ``fpga`` are simulated
(``measured=False``). Phones store whole-number ms (kept; ``extra`` says ``resolution_ms=1``).
A NaN, infinite, zero or negative latency stops the import with the file named (none are present
in the published files).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from hwsurrogate.datasets import archspaces
from hwsurrogate.datasets.importers import Source
from hwsurrogate.datasets.importers._common import check_positive_finite, require_file, with_provenance
from hwsurrogate.datasets.importers._pickle import read_torch_zip
from hwsurrogate.datasets.schemas import Kind
from hwsurrogate.errors import SourceFormatError

SOURCE = Source(
    name="help",
    kinds=("latency", "devices"),
    subpath="latency/help",
    url="https://github.com/HayeonLee/HELP/tree/45f70eb92d0d735970a33b608d1544ad3c52f285/data",
    license="MIT",
    description="HELP (NeurIPS'21): NAS-Bench-201, FBNet and OFA latencies on 27/27/12 devices, with hardware-embedding reference indices",
)

#: Rows the README promises (checked by ``benchmarks/import_all.py`` and the tests).
EXPECTED_ROWS: dict[str, int] = {"latency": 15625 * 27 + 5000 * 27 + 5000 * 12, "devices": 38}
ORIGIN = "github.com/HayeonLee/HELP@45f70eb92d0d735970a33b608d1544ad3c52f285"

#: our space name -> folder name in the HELP data
SPACE_DIRS: dict[str, str] = {"nb201": "nasbench201", "fbnet": "fbnet", "ofa": "ofa"}
#: architectures per space, and device files per space (README table)
N_ARCHS: dict[str, int] = {"nb201": 15625, "fbnet": 5000, "ofa": 5000}
N_DEVICES: dict[str, int] = {"nb201": 27, "fbnet": 27, "ofa": 12}

_BATCH_RE = re.compile(r"^(?P<base>.+?)_(?P<batch>1|32|64|256)$")
_SIMULATED = frozenset({"eyeriss", "fpga"})
_WHOLE_MS = frozenset({"pixel2", "samsung_a50", "samsung_s7", "essential_ph"})


@dataclass(frozen=True)
class _Hardware:
    kind: str
    name: str
    vendor: str | None
    precision: str  # what the latency was measured in; "unstated" when the source does not say


_FP32 = "fp32"  # HELP measured GPUs and Xeon CPUs with PyTorch defaults (fp32)
_HARDWARE: dict[str, _Hardware] = {
    "1080ti": _Hardware("gpu", "NVIDIA GeForce GTX 1080 Ti", "NVIDIA", _FP32),
    "2080ti": _Hardware("gpu", "NVIDIA GeForce RTX 2080 Ti", "NVIDIA", _FP32),
    "titan_rtx": _Hardware("gpu", "NVIDIA TITAN RTX", "NVIDIA", _FP32),
    "titanx": _Hardware("gpu", "NVIDIA TITAN X", "NVIDIA", _FP32),
    "titanxp": _Hardware("gpu", "NVIDIA TITAN Xp", "NVIDIA", _FP32),
    "titan_xp": _Hardware("gpu", "NVIDIA TITAN Xp", "NVIDIA", _FP32),
    "v100": _Hardware("gpu", "NVIDIA Tesla V100", "NVIDIA", _FP32),
    "gold_6226": _Hardware("cpu", "Intel Xeon Gold 6226", "Intel", _FP32),
    "gold_6240": _Hardware("cpu", "Intel Xeon Gold 6240", "Intel", _FP32),
    "silver_4114": _Hardware("cpu", "Intel Xeon Silver 4114", "Intel", _FP32),
    "silver_4210r": _Hardware("cpu", "Intel Xeon Silver 4210R", "Intel", _FP32),
    "pixel2": _Hardware("mobile", "Google Pixel 2", "Google", "unstated"),
    "pixel3": _Hardware("mobile", "Google Pixel 3", "Google", "unstated"),
    "samsung_a50": _Hardware("mobile", "Samsung Galaxy A50", "Samsung", "unstated"),
    "samsung_s7": _Hardware("mobile", "Samsung Galaxy S7", "Samsung", "unstated"),
    "essential_ph": _Hardware("mobile", "Essential PH-1", "Essential", "unstated"),
    "raspi4": _Hardware("cpu", "Raspberry Pi 4", "Raspberry Pi", "unstated"),
    "eyeriss": _Hardware("asic", "Eyeriss (simulated, HW-NAS-Bench)", None, "unstated"),
    "fpga": _Hardware("fpga", "FPGA (estimated, HW-NAS-Bench)", None, "unstated"),
}


def split_device(stem: str) -> tuple[str, int]:
    """``titan_rtx_256`` -> (``titan_rtx``, 256); a name without a batch suffix runs batch 1."""
    m = _BATCH_RE.match(stem)
    return (m["base"], int(m["batch"])) if m else (stem, 1)


def _hardware(stem: str, path: Path) -> _Hardware:
    base, _ = split_device(stem)
    hw = _HARDWARE.get(base) or _HARDWARE.get(stem)
    if hw is None:
        raise SourceFormatError(
            f"{path}: unknown HELP device {stem!r}; known device names: {', '.join(sorted(_HARDWARE))}"
        )
    return hw


def _arch_keys(space: str, folder: Path) -> list[str]:
    """Canonical arch keys of a space, position i = architecture i."""
    if space == "nb201":
        path = require_file(folder / "str_arch2idx.pt")
        mapping = read_torch_zip(path)
        if not isinstance(mapping, dict) or len(mapping) != N_ARCHS[space]:
            raise SourceFormatError(f"{path}: expected a dict of {N_ARCHS[space]} arch strings -> index")
        keys: list[str | None] = [None] * len(mapping)
        for arch, idx in mapping.items():
            if not isinstance(idx, int) or not 0 <= idx < len(keys) or keys[idx] is not None:
                raise SourceFormatError(f"{path}: index {idx!r} of {arch!r} is out of range or repeated")
            keys[idx] = archspaces.check_arch_key("nb201", arch)
        return keys  # type: ignore[return-value]
    path = require_file(folder / ("metainfo.pt" if space == "fbnet" else "ofa_archs.pt"))
    meta = read_torch_zip(path)
    archs = meta.get("arch") if isinstance(meta, dict) else None
    if not isinstance(archs, list) or len(archs) != N_ARCHS[space]:
        raise SourceFormatError(
            f"{path}: expected a dict with 'arch', a list of {N_ARCHS[space]} architectures"
        )
    try:
        if space == "fbnet":
            out = []
            for a in archs:
                key = archspaces.check_arch_key("fbnet", " ".join(a["arch_str"]))
                if key != archspaces.fbnet_from_codes(a["op_idx_list"]):
                    raise ValueError(f"arch_str {key!r} disagrees with op_idx_list {a['op_idx_list']}")
                out.append(key)
            return out
        return [archspaces.format_ofa(a["ks"], a["e"], a["d"], int(a["r"])) for a in archs]
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceFormatError(f"{path}: bad architecture entry ({exc})") from None


def _reference_indices(space: str, folder: Path) -> list[int]:
    path = require_file(folder / "hardware_embedding_index.pt")
    idx = read_torch_zip(path)
    if not isinstance(idx, list) or len(idx) != 10 or not all(isinstance(i, int) for i in idx):
        raise SourceFormatError(f"{path}: expected a list of 10 architecture indices, got {idx!r}")
    if any(not 0 <= i < N_ARCHS[space] for i in idx):
        raise SourceFormatError(f"{path}: reference index out of range 0..{N_ARCHS[space] - 1}: {idx}")
    return idx


def read_latency_file(path: Path, n_archs: int) -> pl.Series:
    """One device file as a Float64 series of ``n_archs`` latencies (ms); bad values name the file."""
    values = read_torch_zip(path)
    if not isinstance(values, list) or len(values) != n_archs:
        got = len(values) if isinstance(values, list) else type(values).__name__
        raise SourceFormatError(f"{path}: expected a list of {n_archs} latencies, got {got}")
    try:
        s = pl.Series("latency_ms", values, dtype=pl.Float64, strict=False)
    except (TypeError, pl.exceptions.PolarsError) as exc:
        raise SourceFormatError(f"{path}: latencies are not numbers ({exc})") from None
    check_positive_finite(s.to_frame(), "latency_ms", path)
    return s


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read the source at ``path`` into schema-conforming frames (one per kind)."""
    frames: list[pl.DataFrame] = []
    fingerprints: dict[str, dict[str, dict[str, float]]] = {}
    hardware: dict[str, _Hardware] = {}
    for space, dirname in SPACE_DIRS.items():
        folder = path / dirname
        files = sorted((folder / "latency").glob("*.pt"))
        if not files:
            raise SourceFormatError(f"{folder / 'latency'}: no <device>.pt latency files found")
        keys = pl.Series("arch_key", _arch_keys(space, folder), dtype=pl.String)
        refs = _reference_indices(space, folder)
        for file in files:
            stem = file.stem
            hw = _hardware(stem, file)
            _, batch = split_device(stem)
            lat = read_latency_file(file, N_ARCHS[space])
            device_id = f"help/{stem}"
            hardware[device_id] = hw
            fingerprints.setdefault(device_id, {})[space] = {str(i): float(lat[i]) for i in refs}
            base = split_device(stem)[0]
            extra = json.dumps({"resolution_ms": 1}) if base in _WHOLE_MS else None
            frames.append(
                pl.DataFrame(
                    {
                        "device_id": pl.Series([device_id] * len(lat), dtype=pl.String),
                        "space": space,
                        "arch_index": pl.int_range(len(lat), eager=True, dtype=pl.Int64),
                        "arch_key": keys,
                        "batch": batch,
                        "precision": hw.precision,
                        "latency_ms": lat,
                        "measured": base not in _SIMULATED,
                        "extra": pl.Series([extra] * len(lat), dtype=pl.String),
                    }
                )
            )
    latency = pl.concat(frames, how="vertical")
    latency = latency.with_columns(
        pl.concat_str(
            [pl.lit("help"), pl.col("device_id"), pl.col("space"), pl.col("arch_index").cast(pl.String)],
            separator="|",
        ).alias("measurement_id")
    )
    devices = pl.DataFrame(
        {
            "device_id": list(hardware),
            "kind": [h.kind for h in hardware.values()],
            "name": [h.name for h in hardware.values()],
            "vendor": [h.vendor for h in hardware.values()],
            "descriptors": [
                json.dumps(
                    {
                        "batch": split_device(d.removeprefix("help/"))[1],
                        "precision": h.precision,
                        "measured": split_device(d.removeprefix("help/"))[0] not in _SIMULATED,
                    }
                )
                for d, h in hardware.items()
            ],
            "fingerprint": [json.dumps(fingerprints[d]) for d in hardware],
        }
    ).with_columns(
        pl.concat_str([pl.lit("help"), pl.col("device_id")], separator="|").alias("measurement_id")
    )
    prov = {"source": "help", "origin": ORIGIN, "license": SOURCE.license}
    return {"latency": with_provenance(latency, **prov), "devices": with_provenance(devices, **prov)}
