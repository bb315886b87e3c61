"""Importer: NVIDIA aiconfigurator: GEMM latency on 11 accelerators, NVML power on B200/GB200/H200.

Read the source README under ``$HWSURROGATE_DATA_DIR/gemm/aiconfigurator_gemm`` for units, encodings and defects.

Reads every ``{with_power,latency_only}/<device>__<framework>__<version>__gemm_perf.parquet``
(12 tables). Shape: activation ``x`` is ``(m, k)``, weight ``(n, k)``, output ``(m, n)``, which is
our ``m, n, k`` as is (``batch=1``; ``layout`` left null: the operands are always x and a
row-major (n, k) weight). ``latency`` is ms per GEMM; ``power`` (W) is the mean NVML reading
during a >= 1 s loop (``power_trusted=True``), ``power_limit`` -> ``power_limit_w``, and
``energy_j`` = power x latency (includes launch gaps). ``kernel`` is the table's
``kernel_source`` (``torch_flow``, ``deepgemm``, ``vllm_default``, ``sglang``); ``framework``
is "<framework> <version>". ``gemm_dtype`` names map to ours (``bfloat16`` -> ``bf16``).
Device ids are ``aiconfigurator/<device prefix of the file name>`` (``aiconfigurator/b200_sxm``).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from hwsurrogate.datasets.importers import Source
from hwsurrogate.datasets.importers._common import check_positive_finite, require_file, with_provenance
from hwsurrogate.datasets.schemas import Kind
from hwsurrogate.errors import SourceFormatError

SOURCE = Source(
    name="aiconfigurator",
    kinds=("gemm", "devices"),
    subpath="gemm/aiconfigurator_gemm",
    url="https://github.com/ai-dynamo/aiconfigurator/tree/095f58a51c4ca8e61b66ec108d86f223f8d559ce/aic-core/src/aiconfigurator_core/systems/data",
    license="Apache-2.0",
    description="NVIDIA aiconfigurator: GEMM latency on 11 accelerators, NVML power on B200/GB200/H200",
)

#: Rows the README promises (sum of its per-file table; 441,990 of them with power).
EXPECTED_ROWS: dict[str, int] = {"gemm": 1_091_712, "devices": 10}
ORIGIN = (
    "github.com/ai-dynamo/aiconfigurator@095f58a51c4ca8e61b66ec108d86f223f8d559ce"
    ":aic-core/src/aiconfigurator_core/systems/data/{device}/gemm/{framework}/{version}/gemm_perf.parquet"
)
LICENSE = "Apache-2.0 (Copyright (c) 2026 NVIDIA CORPORATION & AFFILIATES)"
SUBDIRS = ("with_power", "latency_only")
REQUIRED = (
    "framework",
    "version",
    "device",
    "op_name",
    "kernel_source",
    "gemm_dtype",
    "m",
    "n",
    "k",
    "latency",
)

#: source dtype name -> ours (schemas.GEMM_DTYPES)
DTYPES: dict[str, str] = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "float32": "fp32",
    **{d: d for d in ("fp8", "fp8_block", "fp8_static", "nvfp4", "int4_wo", "int8_wo", "sq", "int8")},
}
POWER_METHOD = (
    "NVML nvmlDeviceGetPowerUsage sampled every 100 ms by a thread during the timed loop of CUDA-graph "
    "replays, loop lengthened to >= 1.0 s (0.3 s for kernels under 0.1 ms); on GA100+ each reading is a "
    "~1 s windowed average; energy_j = power_w x runtime_ms (includes launch gaps)"
)

_NV = "NVIDIA"
#: device prefix -> (name, vendor, spec columns, spec source). Only figures from public vendor
#: datasheets that we are confident of; the rest stay null.
DEVICE_SPECS: dict[str, tuple[str, str, dict[str, float], str]] = {
    "a100_sxm": ("NVIDIA A100-SXM4-80GB", _NV,
                 {"cores": 108, "peak_fp32_gflops": 19500.0, "peak_fp16_gflops": 312000.0, "mem_bw_gbs": 2039.0,
                  "memory_gb": 80.0, "clock_mhz": 1410.0, "l2_mb": 40.0},
                 "NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/a100/): A100 80GB SXM, "
                 "FP32 19.5 TFLOPS, BF16 tensor 312 TFLOPS dense, 2,039 GB/s; NVIDIA A100 architecture "
                 "whitepaper: 108 SMs, 40 MB L2, 1410 MHz boost"),
    "h100_sxm": ("NVIDIA H100 80GB HBM3 (SXM5)", _NV,
                 {"cores": 132, "peak_fp32_gflops": 67000.0, "peak_fp16_gflops": 989400.0, "mem_bw_gbs": 3350.0,
                  "memory_gb": 80.0, "clock_mhz": 1980.0, "l2_mb": 50.0},
                 "NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100/): H100 SXM, FP32 "
                 "67 TFLOPS, BF16 tensor 1,979 TFLOPS with sparsity (989.4 dense), 3.35 TB/s; NVIDIA H100 "
                 "(Hopper) architecture whitepaper: 132 SMs, 50 MB L2, 1980 MHz boost"),
    "h200_sxm": ("NVIDIA H200 (SXM)", _NV,
                 {"cores": 132, "peak_fp32_gflops": 67000.0, "peak_fp16_gflops": 989400.0, "mem_bw_gbs": 4800.0,
                  "memory_gb": 141.0, "l2_mb": 50.0},
                 "NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200/): H200 SXM, FP32 "
                 "67 TFLOPS, BF16 tensor 1,979 TFLOPS with sparsity (989.4 dense), 141 GB HBM3e, 4.8 TB/s; "
                 "same GH100 configuration as H100 SXM (132 SMs, 50 MB L2)"),
    "l40s": ("NVIDIA L40S", _NV,
             {"cores": 142, "peak_fp32_gflops": 91600.0, "peak_fp16_gflops": 362050.0, "mem_bw_gbs": 864.0,
              "memory_gb": 48.0, "clock_mhz": 2520.0},
             "NVIDIA L40S datasheet (nvidia.com/en-us/data-center/l40s/): 18,176 CUDA cores (142 SMs), FP32 "
             "91.6 TFLOPS, BF16 tensor 362.05 TFLOPS dense (733 with sparsity), 48 GB GDDR6, 864 GB/s"),
    "b200_sxm": ("NVIDIA B200", _NV,
                 {"peak_fp16_gflops": 2250000.0, "mem_bw_gbs": 8000.0, "memory_gb": 180.0},
                 "NVIDIA HGX B200 datasheet (nvidia.com/en-us/data-center/hgx/): 8 GPUs with 1.4 TB HBM3e, "
                 "64 TB/s and FP16/BF16 tensor 36 PFLOPS with sparsity, divided per GPU (18 PF dense / 8); "
                 "SMs, FP32 and clocks not stated there, left null"),
    "gb200": ("NVIDIA GB200 (Blackwell GPU of a Grace-Blackwell superchip)", _NV,
              {"peak_fp16_gflops": 2500000.0, "mem_bw_gbs": 8000.0, "memory_gb": 186.0},
              "NVIDIA GB200 NVL72 datasheet (nvidia.com/en-us/data-center/gb200-nvl72/): 72 GPUs with up to "
              "13.4 TB HBM3e, 576 TB/s and FP16/BF16 tensor 360 PFLOPS with sparsity, divided per GPU"),
    "b300_sxm": ("NVIDIA B300 SXM6 AC", _NV, {"mem_bw_gbs": 8000.0, "memory_gb": 288.0},
                 "NVIDIA HGX B300 / Blackwell Ultra product pages (nvidia.com/en-us/data-center/hgx/): 288 GB "
                 "HBM3e and 8 TB/s per GPU; compute figures left null"),
    "gb300": ("NVIDIA GB300 (Blackwell Ultra GPU of a Grace-Blackwell superchip)", _NV,
              {"mem_bw_gbs": 8000.0, "memory_gb": 288.0},
              "NVIDIA GB300 NVL72 datasheet (nvidia.com/en-us/data-center/gb300-nvl72/): 72 GPUs with up to "
              "20.7 TB HBM3e and 576 TB/s, divided per GPU; compute figures left null"),
    "rtx_pro_6000_server": ("NVIDIA RTX PRO 6000 Blackwell Server Edition", _NV,
                            {"cores": 188, "mem_bw_gbs": 1597.0, "memory_gb": 96.0},
                            "NVIDIA RTX PRO 6000 Blackwell Server Edition datasheet "
                            "(nvidia.com/en-us/data-center/rtx-pro-6000-blackwell-server-edition/): 24,064 CUDA "
                            "cores (188 SMs), 96 GB GDDR7, 1,597 GB/s; compute peaks left null"),
    "b60": ("Intel Arc Pro B60", "Intel", {"cores": 20, "mem_bw_gbs": 456.0, "memory_gb": 24.0},
            "Intel Arc Pro B60 product brief (intel.com, Arc Pro B-series): 20 Xe cores (cores = Xe cores), "
            "24 GB GDDR6, 456 GB/s; compute peaks left null"),
}  # fmt: skip
_POWER_NOTES = {"gb200": "NVML power on Grace-Blackwell may cover the whole module, not only the GPU"}


def parse_file_name(file: Path) -> tuple[str, str, str]:
    """``b200_sxm__vllm__0.22.0__gemm_perf.parquet`` -> (``b200_sxm``, ``vllm``, ``0.22.0``)."""
    parts = file.name.removesuffix(".parquet").split("__")
    if len(parts) != 4 or parts[3] != "gemm_perf":
        raise SourceFormatError(
            f"{file}: expected a name like '<device>__<framework>__<version>__gemm_perf.parquet'"
        )
    return parts[0], parts[1], parts[2]


def _read_table(file: Path) -> pl.DataFrame:
    require_file(file)
    try:
        df = pl.read_parquet(file)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise SourceFormatError(
            f"{file}: not a readable parquet file ({str(exc).splitlines()[0]}); truncated or corrupt"
        ) from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise SourceFormatError(f"{file}: missing column(s) {missing}; found {df.columns}")
    has_power = "power" in df.columns
    if has_power != ("power_limit" in df.columns):
        raise SourceFormatError(f"{file}: has one of 'power'/'power_limit' without the other")
    for c in ("m", "n", "k"):
        s = df[c].cast(pl.Int64, strict=False)
        bad = s.is_null() | (s < 1)
        if bad.any():
            i = int(bad.arg_true()[0])
            raise SourceFormatError(f"{file}: column {c!r} row {i} must be an integer >= 1, got {df[c][i]!r}")
    for c in ("latency", "power", "power_limit") if has_power else ("latency",):
        check_positive_finite(df, c, file)
    unknown = sorted(set(df["gemm_dtype"].unique().to_list()) - set(DTYPES))
    if unknown:
        raise SourceFormatError(
            f"{file}: column 'gemm_dtype' has unknown value(s) {unknown}; known {sorted(DTYPES)}"
        )
    bad = df["op_name"] != "gemm"
    if bad.any():
        raise SourceFormatError(
            f"{file}: column 'op_name' must be 'gemm', got {df['op_name'].filter(bad)[0]!r}"
        )
    return df


def _gemm_rows(file: Path) -> pl.DataFrame:
    device, framework, version = parse_file_name(file)
    df = _read_table(file)
    dev = f"aiconfigurator/{device}"
    has_power = "power" in df.columns
    extra = {"file": f"{file.parent.name}/{file.name}", "collection_provenance": "legacy"}
    if device in _POWER_NOTES and has_power:
        extra["power_note"] = _POWER_NOTES[device]
    power = pl.col("power").cast(pl.Float64) if has_power else pl.lit(None, dtype=pl.Float64)
    origin = ORIGIN.format(device=device, framework=framework, version=version)
    return df.select(
        pl.lit(dev).alias("device_id"),
        pl.lit("gemm").alias("op"),
        pl.col("m").cast(pl.Int64),
        pl.col("n").cast(pl.Int64),
        pl.col("k").cast(pl.Int64),
        pl.lit(1, dtype=pl.Int64).alias("batch"),
        pl.col("gemm_dtype").replace_strict(DTYPES, return_dtype=pl.String).alias("dtype"),
        pl.col("kernel_source").alias("kernel"),
        pl.col("latency").cast(pl.Float64).alias("runtime_ms"),
        power.alias("power_w"),
        (power * pl.col("latency") / 1000.0).alias("energy_j"),
        pl.lit(POWER_METHOD if has_power else "no power recorded (latency-only table)").alias("power_method"),
        pl.lit(True if has_power else None, dtype=pl.Boolean).alias("power_trusted"),
        (pl.col("power_limit").cast(pl.Float64) if has_power else pl.lit(None, dtype=pl.Float64)).alias(
            "power_limit_w"
        ),
        pl.concat_str([pl.col("framework"), pl.lit(" "), pl.col("version")]).alias("framework"),
        pl.lit(json.dumps(extra)).alias("extra"),
        pl.lit(origin).alias("origin"),
        pl.concat_str(
            [pl.lit("aiconfigurator"), pl.lit(device), pl.lit(framework), pl.col("version"), "kernel_source",
             "gemm_dtype", *(pl.col(c).cast(pl.String) for c in ("m", "n", "k"))],
            separator="|",
        ).alias("measurement_id"),
    )  # fmt: skip


def _devices(frames: dict[str, list[str]]) -> pl.DataFrame:
    rows: list[dict[str, object]] = []
    for device, tables in sorted(frames.items()):
        name, vendor, spec, spec_source = DEVICE_SPECS.get(device, (device, None, {}, None))
        rows.append(
            {
                "device_id": f"aiconfigurator/{device}",
                "kind": "gpu",
                "name": name,
                "vendor": vendor,
                **spec,
                "descriptors": json.dumps({"spec_source": spec_source, "tables": tables}),
                "measurement_id": f"aiconfigurator|aiconfigurator/{device}",
            }
        )
    return pl.DataFrame(rows, infer_schema_length=None)


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read the source at ``path`` into schema-conforming frames (one per kind)."""
    files = sorted(f for sub in SUBDIRS for f in (path / sub).glob("*__gemm_perf.parquet"))
    if not files:
        raise SourceFormatError(f"{path}: no <device>__<framework>__<version>__gemm_perf.parquet files found")
    frames = [_gemm_rows(f) for f in files]
    tables: dict[str, list[str]] = {}
    for f in files:
        tables.setdefault(parse_file_name(f)[0], []).append(f.name)
    gemm = pl.concat(frames, how="vertical").with_columns(
        pl.lit("aiconfigurator").alias("source"), pl.lit(LICENSE).alias("license")
    )
    devices = with_provenance(_devices(tables), source="aiconfigurator", origin=SOURCE.url, license=LICENSE)
    return {"gemm": gemm, "devices": devices}
