"""Importer: GPPerf: CUTLASS SGEMM runtime (and post-run power) on an RTX 4070.

Read the source README under ``$HWSURROGATE_DATA_DIR/gemm/gpperf_rtx4070`` for units, encodings and defects.

The CUTLASS rows are parsed from the RAW ``results.csv`` (``cutlass_profiling_..._results_raw.csv.gz``):
each record spans 7 lines (the script pasted key,value files into the row) and the header is
truncated to ``Energy_Joules,GFLOPS_per_Watt,TFLOPS`` glued to the first record. The tidy CSV
next to it is only used by the tests, to check that this parse reproduces it on every row.

- ``power_w`` is nvidia-smi's first ``power.draw`` line *after* the run: ``[N/A]`` stays null;
  a reading taken at 0% GPU utilisation (idle, ~30 W) gets ``power_trusted=False``.
- The block-size/stage/layout *labels* passed to the profiler do not change the kernel that runs
  (the kernel name fixes it); they are kept in ``extra`` only. ``layout`` comes from the kernel
  name. ``alpha``/``beta`` are in ``extra``.
- The naive tiled-matmul CSVs become kernel ``tiled_naive_t<tile>`` rows (runtime = one cold launch,
  flagged in ``extra``; power = whole-process nvidia-smi mean, ``power_trusted=False``).
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
    require_file,
    with_provenance,
)
from hwsurrogate.datasets.schemas import Kind
from hwsurrogate.errors import SourceFormatError

SOURCE = Source(
    name="gpperf",
    kinds=("gemm", "devices"),
    subpath="gemm/gpperf_rtx4070",
    url="https://github.com/pavlyhalim/GPPerf/blob/55468e195c3f89120a56ddb17555683bdee79358/cutlass_profiling_20241111_195357.tar.gz",
    license="none stated (internal use only)",
    description="GPPerf: CUTLASS SGEMM runtime (and post-run power) on an RTX 4070",
)

#: Rows the README promises: 16,128 CUTLASS runs + 141 tiled-kernel runtime rows.
EXPECTED_ROWS: dict[str, int] = {"gemm": 16128 + 141, "devices": 1}
ORIGIN_CUTLASS = (
    "github.com/pavlyhalim/GPPerf@55468e195c3f89120a56ddb17555683bdee79358"
    ":cutlass_profiling_20241111_195357.tar.gz/results.csv"
)
ORIGIN_TILED = (
    "github.com/pavlyhalim/GPPerf@d9ff663d4b12fd9586f9d817d1b6db911570f342:tiled-matmul-analysis/profiling"
)
RAW_FILE = "cutlass_profiling_20241111_195357_results_raw.csv.gz"
TILED_TIME_FILE = "tiled_matmul_execution_times_all.csv"
TILED_POWER_FILE = "tiled_matmul_power_usage_results_all.csv"
DEVICE_ID = "gpperf/rtx4070"

_HEADER_TAIL = "Energy_Joules,GFLOPS_per_Watt,TFLOPS"
_LINES_PER_RECORD = 7
#: keys of record lines 1..5 (line 6 starts with problem_size_k)
_SUB_KEYS = (
    "arithmetic_intensity",
    "uses_shared_memory",
    "computation_pattern",
    "problem_size_m",
    "problem_size_n",
)
#: fields of a record's first line, in order (35 comma-separated values)
_MAIN_FIELDS = (
    "timestamp_unix", "M", "N", "K", "kernel", "layout_label", "block_m_label", "block_n_label",
    "block_k_label", "stages_label", "epilogue", "alpha", "beta", "runtime_ms", "_empty",
    "power_w_post", "sm_clock_mhz_post", "mem_clock_mhz_post", "temp_c_post", "gpu_util_pct_post",
    "mem_util_pct_post", "gpu_name", "compute_cap", "max_mem_clock_mhz", "max_graphics_clock_mhz",
    "power_limit_w", "temp_c_pre", "compute_mode", "mem_total_mib", "mem_free_mib_pre",
    "mem_used_mib_pre", "gpu_util_pct_pre", "mem_util_pct_pre", "_kernel_name_key", "kernel_name",
)  # fmt: skip
_LAST_FIELDS = ("_key", "K_check", "energy_j_raw_bc", "mflops_per_w_raw", "gflops_raw")
_INT_FIELDS = (
    "timestamp_unix",
    "M",
    "N",
    "K",
    "block_m_label",
    "block_n_label",
    "block_k_label",
    "stages_label",
)
_FLOAT_FIELDS = (
    "alpha", "beta", "runtime_ms", "sm_clock_mhz_post", "mem_clock_mhz_post", "temp_c_post",
    "gpu_util_pct_post", "mem_util_pct_post", "power_limit_w", "energy_j_raw_bc", "mflops_per_w_raw", "gflops_raw",
)  # fmt: skip

_EMPTY_WITHOUT_POWER = ("energy_j_raw_bc", "mflops_per_w_raw")

POWER_METHOD_CUTLASS = (
    "nvidia-smi power.draw, first line of a poll started after the profiler (and an empty ncu run) "
    "finished: a post-run read, not power during the kernel; untrusted when read at 0% utilisation"
)
POWER_METHOD_TILED = (
    "nvidia-smi power.draw polled every ~0.1 s over the whole process (allocation, host init, "
    "cuBLAS check), mean of 3 runs: not kernel power"
)

#: Public vendor figures for the RTX 4070 (AD104, 46 SMs, 5888 CUDA cores).
RTX4070_SPEC = {
    "cores": 46,
    "peak_fp32_gflops": 29150.0,  # 5888 cores x 2 FLOP x 2475 MHz boost
    "mem_bw_gbs": 504.2,  # 192-bit GDDR6X at 21 Gbps
    "memory_gb": 12.0,
    "clock_mhz": 2475.0,  # boost clock
    "l2_mb": 36.0,
}
RTX4070_SPEC_SOURCE = (
    "NVIDIA GeForce RTX 4070 family specifications, nvidia.com/en-us/geforce/graphics-cards/40-series/rtx-4070-family/ "
    "(CUDA cores, boost clock, 12 GB GDDR6X, 192-bit); NVIDIA Ada Lovelace architecture whitepaper v2.1 "
    "(46 SMs, 36 MB L2, 504.2 GB/s); FP16 tensor peak left null (GeForce FP32-accumulate rate not confirmed)"
)


def _fail(path: Path, record: int, what: str) -> SourceFormatError:
    line = record * _LINES_PER_RECORD + 1
    return SourceFormatError(f"{path}: record {record} (line {line}): {what}")


def parse_raw_results(path: Path) -> pl.DataFrame:
    """The raw multi-line ``results.csv`` as one row per profiler run (columns as in the tidy CSV)."""
    require_file(path)
    try:
        text = read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceFormatError(f"{path}: not UTF-8 text ({exc})") from None
    if text.startswith(_HEADER_TAIL):
        text = text[len(_HEADER_TAIL) :]
    lines = pl.Series("line", text.rstrip("\n").split("\n"))
    if lines.len() == 0 or lines.len() % _LINES_PER_RECORD:
        raise SourceFormatError(
            f"{path}: {lines.len()} lines is not a whole number of {_LINES_PER_RECORD}-line records; "
            "the file is truncated or not the GPPerf raw results"
        )
    by_pos = [lines.gather_every(_LINES_PER_RECORD, offset=i) for i in range(_LINES_PER_RECORD)]
    for pos, key in enumerate(_SUB_KEYS, start=1):
        bad = ~by_pos[pos].str.starts_with(key + ",")
        if bad.any():
            rec = int(bad.arg_true()[0])
            raise _fail(
                path, rec, f"line {pos + 1} of the record should start with {key!r}: {by_pos[pos][rec]!r}"
            )
    main = by_pos[0].str.split(",")
    last = by_pos[6].str.split(",")
    for series, fields, what in ((main, _MAIN_FIELDS, "first"), (last, _LAST_FIELDS, "last")):
        bad = series.list.len() != len(fields)
        if bad.any():
            rec = int(bad.arg_true()[0])
            raise _fail(path, rec, f"{what} line has {series[rec].len()} fields, expected {len(fields)}")
    cols = {f: main.list.get(i).str.strip_chars() for i, f in enumerate(_MAIN_FIELDS)}
    cols.update({f: last.list.get(i).str.strip_chars() for i, f in enumerate(_LAST_FIELDS)})
    df = pl.DataFrame(cols)
    # unit suffixes of the nvidia-smi pre-run fields ("200.00 W", "12282 MiB", "100 %", "10501 MHz")
    df = df.with_columns(
        pl.col(c).str.replace(r"\s*(W|MiB|%|MHz)$", "")
        for c in ("power_limit_w", "mem_total_mib", "mem_free_mib_pre", "mem_used_mib_pre",
                  "gpu_util_pct_pre", "mem_util_pct_pre", "max_mem_clock_mhz", "max_graphics_clock_mhz")
    )  # fmt: skip
    casts = [pl.col(c).cast(pl.Int64, strict=False) for c in _INT_FIELDS]
    casts += [pl.col(c).cast(pl.Float64, strict=False) for c in _FLOAT_FIELDS]
    typed = df.with_columns(casts)
    for c in (*_INT_FIELDS, *_FLOAT_FIELDS):
        bad = typed[c].is_null()
        if c in _EMPTY_WITHOUT_POWER:  # the script left these empty when power was [N/A]
            bad = bad & (df[c] != "")
        if bad.any():
            rec = int(bad.arg_true()[0])
            raise _fail(path, rec, f"field {c!r} is not a number: {df[c][rec]!r}")
    power = typed["power_w_post"]
    na = power == "[N/A]"
    typed = typed.with_columns(
        pl.when(na)
        .then(None)
        .otherwise(pl.col("power_w_post"))
        .cast(pl.Float64, strict=False)
        .alias("power_w_post")
    )
    bad = typed["power_w_post"].is_null() & ~na
    if bad.any():
        rec = int(bad.arg_true()[0])
        raise _fail(path, rec, f"field 'power_w_post' is neither a number nor [N/A]: {power[rec]!r}")
    k_check = typed["K_check"].cast(pl.Int64, strict=False)
    for col, check in (("M", by_pos[4]), ("N", by_pos[5]), ("K", k_check)):
        if isinstance(check, pl.Series) and check.dtype == pl.String:
            check = check.str.split(",").list.get(1).cast(pl.Int64, strict=False)
        bad = (check != typed[col]).fill_null(True)
        if bad.any():
            rec = int(bad.arg_true()[0])
            raise _fail(path, rec, f"problem_size_{col.lower()} disagrees with {col}={typed[col][rec]}")
    bad = typed["kernel"] != typed["kernel_name"]
    if bad.any():
        rec = int(bad.arg_true()[0])
        raise _fail(
            path, rec, f"kernel {typed['kernel'][rec]!r} != kernel_name {typed['kernel_name'][rec]!r}"
        )
    check_positive_finite(typed, "runtime_ms", path)
    return typed


def _cutlass_rows(path: Path) -> pl.DataFrame:
    raw = parse_raw_results(path / RAW_FILE)
    layout = raw["kernel"].str.extract(r"_(nn|nt|tn|tt)_align\d+$", 1)
    if layout.is_null().any():
        i = int(layout.is_null().arg_true()[0])
        raise SourceFormatError(f"{path / RAW_FILE}: kernel name {raw['kernel'][i]!r} has no layout suffix")
    extra = pl.struct(
        "timestamp_unix", "layout_label", "block_m_label", "block_n_label", "block_k_label", "stages_label",
        "epilogue", "alpha", "beta", "sm_clock_mhz_post", "mem_clock_mhz_post", "temp_c_post",
        "gpu_util_pct_post", "mem_util_pct_post", "energy_j_raw_bc", "gflops_raw",
        pl.lit(False).alias("labels_change_kernel"),
    ).struct.json_encode()  # fmt: skip
    power = pl.col("power_w_post")
    return raw.select(
        pl.lit(DEVICE_ID).alias("device_id"),
        pl.lit("gemm").alias("op"),
        pl.col("M").alias("m"),
        pl.col("N").alias("n"),
        pl.col("K").alias("k"),
        pl.lit(1, dtype=pl.Int64).alias("batch"),
        pl.lit("fp32").alias("dtype"),
        pl.lit(layout).alias("layout"),
        "kernel",
        "runtime_ms",
        pl.lit(10, dtype=pl.Int64).alias("repetitions"),
        power.alias("power_w"),
        (power * pl.col("runtime_ms") / 1000.0).alias("energy_j"),
        pl.when(power.is_not_null()).then(pl.lit(POWER_METHOD_CUTLASS)).otherwise(
            pl.lit("nvidia-smi post-run read returned [N/A]")
        ).alias("power_method"),
        pl.when(power.is_not_null()).then(pl.col("gpu_util_pct_post") > 0).alias("power_trusted"),
        "power_limit_w",
        pl.lit("CUTLASS profiler (3 warm-up, 10 profiling iterations, verification off)").alias("framework"),
        extra.alias("extra"),
        pl.from_epoch("timestamp_unix", time_unit="s").dt.replace_time_zone("UTC").alias("collected_at"),
        pl.lit(ORIGIN_CUTLASS).alias("origin"),
        pl.concat_str(
            [pl.lit("gpperf|cutlass"), pl.col("timestamp_unix").cast(pl.String), "kernel",
             pl.col("M").cast(pl.String), pl.col("N").cast(pl.String), pl.col("K").cast(pl.String)],
            separator="|",
        ).alias("measurement_id"),
    )  # fmt: skip


def _tiled_rows(path: Path) -> pl.DataFrame:
    keys = ["M", "N", "K", "Tile Size"]
    tpath, ppath = path / TILED_TIME_FILE, path / TILED_POWER_FILE
    times = read_csv_checked(tpath, [*keys, "Execution Time"], infer_schema_length=0)
    power = read_csv_checked(ppath, [*keys, "Average Power Usage (W)"], infer_schema_length=0)
    for frame, p, value in ((times, tpath, "Execution Time"), (power, ppath, "Average Power Usage (W)")):
        for c in [*keys, value]:
            s = frame[c].str.strip_chars().cast(pl.Float64, strict=False)
            if s.is_null().any():
                i = int(s.is_null().arg_true()[0])
                raise SourceFormatError(f"{p}: column {c!r} row {i} is not a number: {frame[c][i]!r}")
        check_positive_finite(frame.with_columns(pl.col(value).str.strip_chars()), value, p)
    times = times.select(
        *(pl.col(c).str.strip_chars().cast(pl.Int64) for c in keys),
        pl.col("Execution Time").str.strip_chars().cast(pl.Float64).alias("runtime_ms"),
    )
    power = power.select(
        *(pl.col(c).str.strip_chars().cast(pl.Int64) for c in keys),
        pl.col("Average Power Usage (W)").str.strip_chars().cast(pl.Float64).alias("power_w"),
    )
    for frame, p in ((times, tpath), (power, ppath)):
        if frame.select(keys).is_duplicated().any():
            raise SourceFormatError(f"{p}: a (M, N, K, Tile Size) appears twice")
    joined = times.join(power, on=keys, how="left")
    tile = pl.col("Tile Size")
    return joined.select(
        pl.lit(DEVICE_ID).alias("device_id"),
        pl.lit("gemm").alias("op"),
        pl.col("M").alias("m"),
        pl.col("N").alias("n"),
        pl.col("K").alias("k"),
        pl.lit(1, dtype=pl.Int64).alias("batch"),
        pl.lit("fp32").alias("dtype"),
        pl.format("tiled_naive_t{}", tile).alias("kernel"),
        "runtime_ms",
        pl.lit(1, dtype=pl.Int64).alias("repetitions"),
        "power_w",
        (pl.col("power_w") * pl.col("runtime_ms") / 1000.0).alias("energy_j"),
        pl.when(pl.col("power_w").is_not_null())
        .then(pl.lit(POWER_METHOD_TILED))
        .otherwise(pl.lit("no power row for this shape and tile"))
        .alias("power_method"),
        pl.when(pl.col("power_w").is_not_null()).then(False).alias("power_trusted"),
        pl.lit(200.0).alias("power_limit_w"),
        pl.lit("GPPerf naive shared-memory tiled CUDA kernel").alias("framework"),
        pl.struct(
            tile.alias("tile_size"),
            pl.lit(True).alias("cold_launch"),
            pl.lit("single launch, no warm-up").alias("runtime_note"),
        )
        .struct.json_encode()
        .alias("extra"),
        pl.lit(ORIGIN_TILED).alias("origin"),
        pl.format("gpperf|tiled|{}|{}|{}|{}", "M", "N", "K", tile).alias("measurement_id"),
    )


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read the source at ``path`` into schema-conforming frames (one per kind)."""
    parts = [_cutlass_rows(path)]
    if (path / TILED_TIME_FILE).exists():
        parts.append(_tiled_rows(path))
    gemm = pl.concat(parts, how="diagonal_relaxed")
    gemm = gemm.with_columns(pl.lit("gpperf").alias("source"), pl.lit(SOURCE.license).alias("license"))
    devices = with_provenance(
        pl.DataFrame(
            {
                "device_id": [DEVICE_ID],
                "kind": ["gpu"],
                "name": ["NVIDIA GeForce RTX 4070"],
                "vendor": ["NVIDIA"],
                **{k: [v] for k, v in RTX4070_SPEC.items()},
                "descriptors": [
                    json.dumps(
                        {
                            "spec_source": RTX4070_SPEC_SOURCE,
                            "compute_capability": "8.9",
                            "power_limit_w": 200.0,
                            "nvidia_smi_max_graphics_clock_mhz": 3105,
                            "nvidia_smi_max_mem_clock_mhz": 10501,
                        }
                    )
                ],
                "measurement_id": [f"gpperf|{DEVICE_ID}"],
            }
        ),
        source="gpperf",
        origin=ORIGIN_CUTLASS,
        license=SOURCE.license,
    )
    return {"gemm": gemm, "devices": devices}
