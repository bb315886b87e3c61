"""Importer: NeuSight: FP32 bmm/linear latency on 8 NVIDIA GPUs, with device spec JSONs.

Read the source README under ``$HWSURROGATE_DATA_DIR/gemm/neusight_gemm`` for units, encodings and defects.

Files: ``train/{bmm,linear}/<GPU>.csv.gz`` (5 training GPUs) and ``test/{bmm,linear}.csv.gz``
(held-out L4, A100-80GB, H100 plus the training GPUs). Every file is imported; a row's
``extra.split`` says which file it came from ("train"/"test") and its ``measurement_id``
includes the split, so a shape measured in both files of a training GPU stays twice,
distinguishable.

Shape mapping onto our ``(m, n, k, batch)`` (output is m x n, k is the reduction):

- bmm ``(B, M, N) @ (B, N, K)`` -> ``batch=B, m=M, n=K, k=N``.
- linear, input ``(B, M, N)``, weight ``N -> K`` -> ``batch=B, m=M, n=K, k=N``; torch runs it as
  one ``(B*M) x N`` by ``N x K`` GEMM plus bias.

The original ``B, M, N, K`` are kept in ``extra``. Device ids are ``neusight/<json stem>``
(``Device`` with spaces -> ``_``); devices rows come from ``device_configs/*.json``, with the
few values that disagree with the vendor's datasheet corrected (:data:`SPEC_CORRECTIONS`: Tesla P4
20 SMs of 128 cores, not 40 x 64; L4 58 SMs / 30.3 TFLOPS; H100 3.35 TB/s); the JSON's own values
stay in ``descriptors.neusight_original``. Each GPU's board power limit from its datasheet
(:data:`POWER_LIMITS_W`) is added as ``descriptors.power_limit_w``.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from hwsurrogate.datasets.importers import Source
from hwsurrogate.datasets.importers._common import (
    check_positive_finite,
    read_bytes,
    read_csv_checked,
    with_provenance,
)
from hwsurrogate.datasets.schemas import Kind
from hwsurrogate.errors import SourceFormatError

SOURCE = Source(
    name="neusight",
    kinds=("gemm", "devices"),
    subpath="gemm/neusight_gemm",
    url="https://github.com/sitar-lab/NeuSight/tree/6945927d9afcca2b9daf021f8395e53edc5b4eef/scripts/asplos/data",
    license="MIT",
    description="NeuSight: FP32 bmm/linear latency on 8 NVIDIA GPUs, with device spec JSONs",
)

#: Rows the README promises (141,562 latency rows; 8 measured GPUs).
EXPECTED_ROWS: dict[str, int] = {"gemm": 141_562, "devices": 8}
ORIGIN = "github.com/sitar-lab/NeuSight@6945927d9afcca2b9daf021f8395e53edc5b4eef:scripts/asplos/data"
OPS = ("bmm", "linear")
COLUMNS = (
    "OPName", "Latency", "Device", "Torch Version", "CUDNN Version", "Kernel Name", "Warps per SM",
    "Blocks per SM", "Grid x", "Grid y", "Grid z", "Block x", "Block y", "Block z", "CUDA Version",
    "Kernels", "B", "M", "N", "K",
)  # fmt: skip
_INTS = ("B", "M", "N", "K", "Grid x", "Grid y", "Grid z", "Block x", "Block y", "Block z")
_FLOATS = ("Latency", "Warps per SM", "Blocks per SM")
_SPEC_KEYS = ("Device", "Dev_Mem", "Mem_Bw", "Num_Sm", "Core_Per_SM", "Freq", "SingleFLOPs", "L2Cache")

#: Corrections of NeuSight's device JSONs where they disagree with the vendor's published specs.
#: Applied on import (the data folder stays untouched); the JSON's own values are kept in the
#: device's ``descriptors.neusight_original``. The clock convention stays NeuSight's (boost clock,
#: peak = cores x 2 x boost), the one every other row uses.
SPEC_CORRECTIONS: dict[str, tuple[dict[str, float], str]] = {
    # GP104 has 20 SMs of 128 FP32 cores (2560 cores); the JSON splits them as 40 x 64, which
    # halves the work per SM in the wave-quantisation features. Cores and peak are unchanged.
    "Tesla_P4": ({"Num_Sm": 20, "Core_Per_SM": 128}, "NVIDIA Tesla P4 datasheet: GP104, 20 SMs, 2560 CUDA cores"),
    # AD104 as shipped on L4 has 7424 CUDA cores = 58 SMs x 128; FP32 30.3 TFLOPS at the 2040 MHz
    # boost clock (the JSON's 60 SMs / 31334 GFLOP/s are the full AD104 die's 7680 cores)
    "NVIDIA_L4": ({"Num_Sm": 58, "SingleFLOPs": 30290},
                  "NVIDIA L4 datasheet: 7424 CUDA cores, FP32 30.3 TFLOPS, 300 GB/s, 48 MB L2"),
    # H100 SXM5 80 GB HBM3: 3.35 TB/s (the JSON's 3430 GB/s is not a published figure)
    "NVIDIA_H100_80GB_HBM3": ({"Mem_Bw": 3350}, "NVIDIA H100 datasheet (SXM5): 3.35 TB/s HBM3, 132 SMs, 67 TFLOPS FP32"),
}  # fmt: skip

#: Board power limit (TDP, W) of each GPU from the vendor's datasheet; NeuSight's JSONs do not
#: state it. Stored as ``descriptors.power_limit_w``: the operator model's GEMM utilisation
#: ceiling reads it (a 70-75 W card cannot hold its boost clock under FP32 GEMM load).
POWER_LIMITS_W: dict[str, tuple[float, str]] = {
    "Tesla_P4": (75.0, "NVIDIA Tesla P4 datasheet: 75 W max power"),
    "Tesla_T4": (70.0, "NVIDIA T4 datasheet: 70 W"),
    "Tesla_P100-PCIE-16GB": (250.0, "NVIDIA Tesla P100 PCIe datasheet: 250 W"),
    "Tesla_V100-PCIE-32GB": (250.0, "NVIDIA V100 PCIe datasheet: 250 W"),
    "NVIDIA_A100-PCIE-40GB": (250.0, "NVIDIA A100 40GB PCIe datasheet: 250 W"),
    "NVIDIA_A100_80GB_PCIe": (300.0, "NVIDIA A100 80GB PCIe datasheet: 300 W"),
    "NVIDIA_H100_80GB_HBM3": (700.0, "NVIDIA H100 SXM5 datasheet: up to 700 W"),
    "NVIDIA_L4": (72.0, "NVIDIA L4 datasheet: 72 W"),
}


def device_id(device: pl.Expr) -> pl.Expr:
    return pl.concat_str([pl.lit("neusight/"), device.str.replace_all(" ", "_")])


def _read(file: Path, op: str, split: str) -> pl.DataFrame:
    schema = {c: pl.String for c in COLUMNS}
    df = read_csv_checked(file, COLUMNS, schema_overrides=schema, infer_schema_length=0)
    typed = df.with_columns(
        *(pl.col(c).cast(pl.Int64, strict=False) for c in _INTS),
        *(pl.col(c).cast(pl.Float64, strict=False) for c in _FLOATS),
    )
    for c in (*_INTS, *_FLOATS):
        bad = typed[c].is_null()
        if bad.any():
            i = int(bad.arg_true()[0])
            raise SourceFormatError(f"{file}: column {c!r} row {i} is not a number: {df[c][i]!r}")
    check_positive_finite(typed, "Latency", file)
    for c in ("B", "M", "N", "K"):
        bad = typed[c] < 1
        if bad.any():
            i = int(bad.arg_true()[0])
            raise SourceFormatError(f"{file}: column {c!r} row {i} must be >= 1, got {typed[c][i]}")
    bad = typed["OPName"] != op
    if bad.any():
        i = int(bad.arg_true()[0])
        raise SourceFormatError(f"{file}: column 'OPName' row {i} is {typed['OPName'][i]!r}, expected {op!r}")
    return typed.with_columns(pl.lit(split).alias("split"), pl.lit(str(file.name)).alias("file"))


def _gemm_rows(frame: pl.DataFrame) -> pl.DataFrame:
    grid = pl.concat_list("Grid x", "Grid y", "Grid z")
    block = pl.concat_list("Block x", "Block y", "Block z")
    extra = pl.struct(
        "split",
        "file",
        "B",
        "M",
        "N",
        "K",
        grid.alias("grid"),
        block.alias("block"),
        pl.col("Warps per SM").alias("warps_per_sm"),
        pl.col("Blocks per SM").alias("blocks_per_sm"),
        pl.col("Kernels").str.strip_prefix(";").str.split(";").alias("kernels"),
        pl.lit("mean of the fastest 5 of 25 CUDA-event timings, launch overhead included").alias(
            "runtime_stat"
        ),
    ).struct.json_encode()
    software = pl.struct(
        pl.col("Torch Version").str.strip_prefix("p").alias("torch"),
        pl.col("CUDNN Version").alias("cudnn"),
        pl.col("CUDA Version").str.strip_prefix("cu").alias("cuda"),
    ).struct.json_encode()
    dev = device_id(pl.col("Device"))
    return frame.select(
        dev.alias("device_id"),
        pl.col("OPName").alias("op"),
        pl.col("M").alias("m"),
        pl.col("K").alias("n"),
        pl.col("N").alias("k"),
        pl.col("B").alias("batch"),
        pl.lit("fp32").alias("dtype"),
        pl.col("Kernel Name").alias("kernel"),
        pl.col("Latency").alias("runtime_ms"),
        pl.lit(25, dtype=pl.Int64).alias("repetitions"),
        pl.lit("no power recorded").alias("power_method"),
        pl.concat_str([pl.lit("PyTorch "), pl.col("Torch Version").str.strip_prefix("p")]).alias("framework"),
        software.alias("software"),
        extra.alias("extra"),
        pl.concat_str(
            [
                pl.lit("neusight"),
                "split",
                "OPName",
                dev,
                *(pl.col(c).cast(pl.String) for c in ("B", "M", "N", "K")),
            ],
            separator="|",
        ).alias("measurement_id"),
    )


def _device_specs(path: Path, wanted: set[str]) -> pl.DataFrame:
    folder = path / "device_configs"
    rows: list[dict[str, object]] = []
    for file in sorted(folder.glob("*.json")):
        dev = f"neusight/{file.stem}"
        if dev not in wanted:  # a spec without measurements (A100-SXM4, the 2-GPU H100 "_TP" config)
            continue
        try:
            spec = json.loads(read_bytes(file))
        except ValueError as exc:
            raise SourceFormatError(f"{file}: not valid JSON ({exc})") from None
        missing = [k for k in _SPEC_KEYS if k not in spec]
        if missing:
            raise SourceFormatError(f"{file}: missing key(s) {missing}")
        spec, original, fix_source = apply_spec_correction(file.stem, spec)
        rows.append(
            {
                "device_id": dev,
                "kind": "gpu",
                "name": str(spec["Device"]),
                "vendor": "NVIDIA",
                "cores": spec["Num_Sm"],
                "peak_fp32_gflops": spec["SingleFLOPs"],
                "mem_bw_gbs": spec["Mem_Bw"],
                "memory_gb": spec["Dev_Mem"],
                "clock_mhz": spec["Freq"],
                "l2_mb": spec["L2Cache"],
                "descriptors": json.dumps(
                    {
                        "core_per_sm": spec["Core_Per_SM"],
                        "spec_source": f"NeuSight device_configs/{file.name}"
                        + (f"; corrected from {fix_source}" if fix_source else ""),
                        **({"neusight_original": original} if original else {}),
                        **(
                            {
                                "power_limit_w": POWER_LIMITS_W[file.stem][0],
                                "power_limit_source": POWER_LIMITS_W[file.stem][1],
                            }
                            if file.stem in POWER_LIMITS_W
                            else {}
                        ),
                    }
                ),
            }
        )
    missing_specs = wanted - {r["device_id"] for r in rows}
    if missing_specs:
        raise SourceFormatError(f"{folder}: no spec JSON for measured device(s) {sorted(missing_specs)}")
    return pl.DataFrame(rows).with_columns(
        pl.concat_str([pl.lit("neusight"), pl.col("device_id")], separator="|").alias("measurement_id")
    )


def apply_spec_correction(
    stem: str, spec: dict[str, object]
) -> tuple[dict[str, object], dict[str, object], str | None]:
    """``spec`` with :data:`SPEC_CORRECTIONS` for ``stem`` applied, the replaced values, the source."""
    if stem not in SPEC_CORRECTIONS:
        return spec, {}, None
    fix, source = SPEC_CORRECTIONS[stem]
    original = {k: spec[k] for k in fix if k in spec and spec[k] != fix[k]}
    return {**spec, **fix}, original, source if original else None


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read the source at ``path`` into schema-conforming frames (one per kind)."""
    frames: list[pl.DataFrame] = []
    for op in OPS:
        train = sorted((path / "train" / op).glob("*.csv*"))
        if not train:
            raise SourceFormatError(f"{path / 'train' / op}: no training CSV files found")
        frames += [_read(f, op, "train") for f in train]
        test = sorted((path / "test").glob(f"{op}.csv*"))
        if not test:
            raise SourceFormatError(f"{path / 'test'}: {op}.csv.gz is missing")
        frames += [_read(f, op, "test") for f in test]
    gemm = _gemm_rows(pl.concat(frames, how="vertical"))
    devices = _device_specs(path, set(gemm["device_id"].unique().to_list()))
    prov = {"source": "neusight", "origin": ORIGIN, "license": SOURCE.license}
    return {"gemm": with_provenance(gemm, **prov), "devices": with_provenance(devices, **prov)}
