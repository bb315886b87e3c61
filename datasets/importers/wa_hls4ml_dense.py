"""Importer: wa-hls4ml-search: single QDense layer sweep through hls4ml 0.8.1 + Vivado HLS 2020.1.

Read the source README under ``$HWSURROGATE_DATA_DIR/fpga/wa-hls4ml-search-dense1layer`` for units, encodings and defects.

Row design (see ``docs/fpga-data.md``): one ``stage=hls_estimate`` row per run (2,687 rows from
``results_latency.csv`` + ``results_resource.csv``). Successful runs have ``valid=True`` and
their HLS numbers; failed runs are kept with ``valid=False`` and null targets (their report
cells are empty: missing, never 0), so a failure classifier can learn from them.
``design_id = <strategy>/<model_name>/rf<rf>`` is unique per (strategy, d_in, d_out, p, rf).
The README says the latency strategy ignores ``rf`` so its rf=1/512/1024 rows are identical; the
files disagree (rf=512 and rf=1024 match for 16 of the 27 models, rf=1 matches rf=512 for only 2),
so all three are kept as separate designs with their own numbers.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from hwsurrogate.datasets.importers import Source
from hwsurrogate.datasets.importers._common import read_csv_checked, with_provenance
from hwsurrogate.datasets.importers._fpga import check_nonnegative, json_object
from hwsurrogate.datasets.schemas import Kind, with_measurement_id
from hwsurrogate.errors import SourceFormatError

SOURCE = Source(
    name="wa-hls4ml-dense",
    kinds=("fpga",),
    subpath="fpga/wa-hls4ml-search-dense1layer",
    url="https://github.com/ben-hawks/wa-hls4ml-search/tree/main/results",
    license="Apache-2.0",
    description="wa-hls4ml-search: single QDense layer sweep through hls4ml 0.8.1 + Vivado HLS 2020.1",
)

ORIGIN = "github.com/Dendendelen/wa-hls4ml-search@8e70542108dbf8b6c3cdcc16418c0d14990ee955 (fork of ben-hawks/wa-hls4ml-search)"
FILES = ("results_latency.csv", "results_resource.csv")
PART = "xcu250-figd2104-2L-e"
TOOL_VERSION = "2020.1"
CLOCK_NS = 5.0

_KEYS = ("model_name", "d_in", "d_out", "prec", "rf", "strategy", "hls_synth_success")
#: report column -> fpga column
_TARGETS = {
    "LUT_hls": "lut",
    "FF_hls": "ff",
    "DSP_hls": "dsp",
    "BRAM_18K_hls": "bram",
    "URAM_hls": "uram",
    "BestLatency_hls": "cycles",
    "WorstLatency_hls": "cycles_max",
    "IntervalMin_hls": "ii",
}
_AUX = ("IntervalMax_hls", "EstimatedClockPeriod_hls", "TargetClockPeriod_hls")
_SUCCESS = {"true": True, "false": False}


def _read(path: Path) -> pl.DataFrame:
    numeric = [*_TARGETS, *_AUX]
    df = read_csv_checked(
        path,
        [*_KEYS, "model_file", *numeric],
        schema_overrides={c: pl.String for c in ("hls_synth_success", *numeric)},
    )
    check_nonnegative(df, numeric, path, id_column="model_name")
    for col in ("d_in", "d_out", "prec", "rf"):
        s = df[col].cast(pl.Int64, strict=False)
        bad = s.is_null() | (s < 1).fill_null(True)
        if bad.any():
            i = int(bad.arg_true()[0])
            raise SourceFormatError(
                f"{path}: column {col!r} must be a positive integer; data row {i}: {df[col][i]!r}"
            )
    success = (
        df["hls_synth_success"]
        .str.to_lowercase()
        .replace_strict(_SUCCESS, default=None, return_dtype=pl.Boolean)
    )
    bad = success.is_null()
    if bad.any():
        i = int(bad.arg_true()[0])
        raise SourceFormatError(
            f"{path}: column 'hls_synth_success' must be True/False; data row {i}: {df['hls_synth_success'][i]!r}"
        )
    df = df.with_columns(
        pl.col("d_in", "d_out", "prec", "rf").cast(pl.Int64),
        pl.col(*numeric).cast(pl.Float64),
        success.alias("hls_synth_success"),
        pl.col("strategy").str.to_lowercase(),
    )
    expected = pl.format("dense_{}_{}_{}b", "d_in", "d_out", "prec")
    bad = (df.select(expected != pl.col("model_name")).to_series()).fill_null(True)
    if bad.any():
        i = int(bad.arg_true()[0])
        raise SourceFormatError(
            f"{path}: column 'model_name' {df['model_name'][i]!r} (data row {i}) does not match "
            f"d_in={df['d_in'][i]}, d_out={df['d_out'][i]}, prec={df['prec'][i]}"
        )
    ok = df["hls_synth_success"]
    missing = df.filter(ok).select(pl.any_horizontal(pl.col(*_TARGETS).is_null())).to_series()
    if missing.any():
        i = int(missing.arg_true()[0])
        row = df.filter(ok).row(i, named=True)
        empty = [c for c in _TARGETS if row[c] is None]
        raise SourceFormatError(
            f"{path}: successful run {row['model_name']} rf={row['rf']} has empty {empty}"
        )
    return df


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read both result CSVs under ``path`` (``raw/`` or the folder itself) into fpga rows."""
    root = path / "raw" if (path / "raw").is_dir() else path
    df = pl.concat([_read(root / name).with_columns(pl.lit(name).alias("_file")) for name in FILES])
    key = ["strategy", "model_name", "rf"]
    dup = df.select(pl.struct(key).is_duplicated()).to_series()
    if dup.any():
        row = df.filter(dup).row(0, named=True)
        raise SourceFormatError(
            f"{root}: run {row['model_name']} strategy={row['strategy']} rf={row['rf']} appears twice in {row['_file']}"
        )
    ok = pl.col("hls_synth_success")
    targets = [pl.when(ok).then(pl.col(src)).alias(dst) for src, dst in _TARGETS.items()]
    layer = json_object(
        {
            "class_name": pl.lit("QDense"),
            "d_in": pl.concat_list("d_in"),
            "d_out": pl.concat_list("d_out"),
            "neurons": pl.col("d_out"),
            "use_bias": pl.lit(True),
            "parameters": (pl.col("d_in") + 1) * pl.col("d_out"),
            "reuse_factor": pl.col("rf"),
            "weight_precision": pl.format("fixed<{},1>", "prec"),
            "weight_bits": pl.col("prec"),
            "weight_int_bits": pl.lit(1, dtype=pl.Int64),
        }
    )
    model = pl.concat_str(pl.lit("["), layer, pl.lit("]"))
    frame = df.select(
        pl.format("{}/{}/rf{}", "strategy", "model_name", "rf").alias("design_id"),
        pl.lit("hls4ml").alias("domain"),
        pl.col("model_name").alias("kernel"),
        model.alias("model"),
        json_object(
            {
                "strategy": pl.col("strategy"),
                "reuse_factor": pl.col("rf"),
                "io_type": pl.lit("io_parallel"),
                "clock_period_ns": pl.lit(CLOCK_NS),
                "kernel_quantizer": pl.format("quantized_bits({},0,alpha=1)", "prec"),
                "bias_quantizer": pl.format("quantized_bits({},0,alpha=1)", "prec"),
                "hls4ml_version": pl.lit("0.8.1"),
            }
        ).alias("config"),
        pl.col("rf").alias("reuse_factor"),
        pl.col("strategy"),
        pl.lit("io_parallel").alias("io_type"),
        pl.lit(PART).alias("part"),
        pl.lit("vivado_hls").alias("tool"),
        pl.lit(TOOL_VERSION).alias("tool_version"),
        pl.lit("hls_estimate").alias("stage"),
        ok.alias("valid"),
        *targets,
        pl.when(ok).then(pl.lit("bram18k")).alias("bram_unit"),
        pl.coalesce("TargetClockPeriod_hls", pl.lit(CLOCK_NS)).alias("clock_ns"),
        json_object(
            {
                "file": pl.col("_file"),
                "model_file": pl.col("model_file"),
                "weight_bits": pl.col("prec"),
                "ii_max": pl.when(ok).then(pl.col("IntervalMax_hls")),
                "estimated_clock_ns": pl.when(ok).then(pl.col("EstimatedClockPeriod_hls")),
            }
        ).alias("extra"),
    )
    frame = with_provenance(frame, source=SOURCE.name, origin=ORIGIN, license=SOURCE.license)
    return {"fpga": with_measurement_id(frame, "fpga")}
