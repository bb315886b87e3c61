"""Importer: HLSDataset + PowerGear: PolyBench HLS and post-route resources, Vivado and board-measured power.

Read the source README under ``$HWSURROGATE_DATA_DIR/fpga/hlsdataset_powergear`` for units, encodings and defects.

Row design (see ``docs/fpga-data.md``): one design per (kernel, part, prj),
``design_id = <kernel>/<part>/<prj>``, read from ``derived/polybench_designs_joined.csv``, with up to
three rows:

- ``stage=hls_estimate`` (9,558): Vivado HLS ``lut/ff/dsp`` and ``bram`` (BRAM_18K, ``bram18k``);
  HLS operator counts and port widths in ``extra``.
- ``stage=post_route`` (9,557; one syr2k design has no implementation): ``Total LUTs``, ``FFs``,
  ``DSP48 Blocks``, ``bram = 2*RAMB36 + RAMB18`` in ``bram18k`` units; Vivado's power report
  ``vivado_dynamic_pwr(mW)`` -> ``power_dynamic_w`` with ``power_method=vivado_estimate``.
- ``stage=on_board`` (4,580, ZCU102 only): PowerGear's board measurement, ``total_pwr(uW)`` and
  ``static_pwr(uW)`` (microwatts) and ``dynamic_pwr(mW)`` (milliwatts), all converted to W,
  ``power_method=board_measured``. Dynamic power below zero (static drift) is null; the raw value
  stays in ``extra.board_dynamic_pwr_mw``.

Decoded directives are in ``pragmas`` (and ``config``); the directive summary columns that
trees use (``n_pipelined_loops``, ``max_unroll``, ``io_buffer_partition``,
``buffer_partition_d1d2``) are in ``extra`` on every row. The MachSuite/CHStone/Rosetta
``post_hls_info.csv`` files are not imported: their directives were never published, and their
``prj`` ids repeat within a file (e.g. rosetta/face-detection), so a row has neither features nor a
stable design id.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from hwsurrogate.datasets.importers import Source
from hwsurrogate.datasets.importers._common import read_csv_checked
from hwsurrogate.datasets.importers._fpga import check_nonnegative, json_object
from hwsurrogate.datasets.schemas import Kind, with_measurement_id
from hwsurrogate.errors import SourceFormatError

SOURCE = Source(
    name="hlsdataset",
    kinds=("fpga",),
    subpath="fpga/hlsdataset_powergear",
    url="https://github.com/UT-LCA/ML4Accel-Dataset/tree/e05bebec02ab3b80648e45377ffc91702ea8d2dd/fpga_ml_dataset/HLS_dataset and https://github.com/zlinaf/PowerGear",
    license="HLSDataset: none stated (internal use only); PowerGear: MIT",
    description="HLSDataset + PowerGear: PolyBench HLS and post-route resources, Vivado and board-measured power",
)

ORIGIN_HLS = "github.com/UT-LCA/ML4Accel-Dataset@e05bebec02ab3b80648e45377ffc91702ea8d2dd"
ORIGIN_POWER = "github.com/zlinaf/PowerGear@29b98b61592e116a08665ad1b3ffe8ed70b270b5"
LICENSE_HLS = "none stated (HLSDataset; research/internal use only)"
LICENSE_POWER = "MIT (PowerGear)"
DOMAIN = "hlsdataset"
VIVADO_VERSION = "2018.2"
JOINED = "polybench_designs_joined.csv"

_KEYS = ("kernel", "part", "prj", "directives")
_FEATURES = ("io_buffer_partition", "buffer_partition_d1d2", "n_pipelined_loops", "max_unroll")
_HLS = ("hls_clk_target_ns", "hls_clk_estimated_ns", "hls_bram18k", "hls_dsp", "hls_ff", "hls_lut",
        "c_num_arith", "c_num_logic", "rtl_num_arith", "rtl_num_logic")  # fmt: skip
_IMPL = ("impl_total_luts", "impl_logic_luts", "impl_lutrams", "impl_srls", "impl_ffs", "impl_ramb36",
         "impl_ramb18", "impl_dsp", "impl_freq_mhz", "impl_vivado_dynamic_pwr_mw")  # fmt: skip
_BOARD = ("board_total_pwr_uW", "board_static_pwr_uW", "board_dynamic_pwr_mW")
_PORTS = ("data_input_port", "data_output_port")
#: |dynamic_mW - (total_uW - static_uW)/1000| above this means the unit convention changed
_UNIT_TOLERANCE_MW = 1e-3


def _read(path: Path) -> pl.DataFrame:
    numeric = (*_FEATURES, *_HLS, *_IMPL, *_BOARD)
    df = read_csv_checked(
        path,
        (*_KEYS, *numeric, *_PORTS),
        schema_overrides={c: pl.Float64 for c in numeric} | {c: pl.String for c in (*_KEYS, *_PORTS)},
    )
    check_nonnegative(df, [c for c in numeric if c != "board_dynamic_pwr_mW"], path, id_column="prj")
    dyn = df["board_dynamic_pwr_mW"]
    bad = (dyn.is_nan() | dyn.is_infinite()).fill_null(False)
    if bad.any():
        i = int(bad.arg_true()[0])
        raise SourceFormatError(
            f"{path}: column 'board_dynamic_pwr_mW' is NaN/infinite at data row {i} (prj={df['prj'][i]!r})"
        )
    for col in (*_KEYS, *_FEATURES, *_HLS):
        if df[col].null_count():
            i = int(df[col].is_null().arg_true()[0])
            raise SourceFormatError(f"{path}: column {col!r} is empty at data row {i} (prj={df['prj'][i]!r})")
    dup = df.select(pl.struct("kernel", "part", "prj").is_duplicated()).to_series()
    if dup.any():
        r = df.filter(dup).row(0, named=True)
        raise SourceFormatError(f"{path}: design {r['kernel']}/{r['part']}/{r['prj']} appears twice")
    io = df["prj"].str.extract(r"^io(\d+)_", 1).cast(pl.Float64, strict=False)
    bad = (io != df["io_buffer_partition"]).fill_null(True)
    if bad.any():
        i = int(bad.arg_true()[0])
        raise SourceFormatError(
            f"{path}: column 'io_buffer_partition' ({df['io_buffer_partition'][i]}) does not match prj {df['prj'][i]!r}"
        )
    bad = ~df["directives"].str.starts_with("{")
    if bad.any():
        i = int(bad.arg_true()[0])
        raise SourceFormatError(
            f"{path}: column 'directives' is not a JSON object at data row {i}: {df['directives'][i]!r}"
        )
    board = df.select(
        pl.all_horizontal(pl.col(*_BOARD).is_not_null()).alias("b"),
        pl.any_horizontal(pl.col(*_BOARD).is_not_null()).alias("a"),
    )
    partial = board["a"] & ~board["b"]
    if partial.any():
        i = int(partial.arg_true()[0])
        raise SourceFormatError(
            f"{path}: board power columns {list(_BOARD)} are partly empty at data row {i} (prj={df['prj'][i]!r})"
        )
    mismatch = (
        df.select(
            (
                (pl.col("board_total_pwr_uW") - pl.col("board_static_pwr_uW")) / 1000
                - pl.col("board_dynamic_pwr_mW")
            ).abs()
            > _UNIT_TOLERANCE_MW
        )
        .to_series()
        .fill_null(False)
    )
    if mismatch.any():
        i = int(mismatch.arg_true()[0])
        raise SourceFormatError(
            f"{path}: board power units are inconsistent at data row {i} (prj={df['prj'][i]!r}): expected "
            "dynamic_pwr(mW) = (total_pwr(uW) - static_pwr(uW)) / 1000"
        )
    return df


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """HLS-estimate, post-route and on-board rows of the PolyBench designs under ``path``."""
    csv = path if path.is_file() else path / "derived" / JOINED
    df = _read(csv)
    features = {c: pl.col(c).cast(pl.Int64) for c in _FEATURES}
    common = [
        pl.format("{}/{}/{}", "kernel", "part", "prj").alias("design_id"),
        pl.lit(DOMAIN).alias("domain"),
        pl.col("kernel"),
        pl.concat_str(
            pl.lit('{"prj":"'), pl.col("prj"),
            pl.lit('","io_buffer_partition":'), pl.col("io_buffer_partition").cast(pl.Int64).cast(pl.String),
            pl.lit(',"buffer_partition_d1d2":'), pl.col("buffer_partition_d1d2").cast(pl.Int64).cast(pl.String),
            pl.lit(',"directives":'), pl.col("directives"), pl.lit("}"),
        ).alias("config"),
        pl.col("directives").alias("pragmas"),
        pl.col("part"),
    ]  # fmt: skip
    hls = df.select(
        *common,
        pl.lit("vivado_hls").alias("tool"),
        pl.lit(VIVADO_VERSION).alias("tool_version"),
        pl.lit("hls_estimate").alias("stage"),
        pl.col("hls_lut").alias("lut"),
        pl.col("hls_ff").alias("ff"),
        pl.col("hls_dsp").alias("dsp"),
        pl.col("hls_bram18k").alias("bram"),
        pl.lit("bram18k").alias("bram_unit"),
        pl.col("hls_clk_target_ns").alias("clock_ns"),
        json_object(
            {
                **features,
                "clk_estimated_ns": pl.col("hls_clk_estimated_ns"),
                **{
                    c: pl.col(c).cast(pl.Int64)
                    for c in ("c_num_arith", "c_num_logic", "rtl_num_arith", "rtl_num_logic")
                },
                **{c: pl.col(c) for c in _PORTS},
            }
        ).alias("extra"),
        pl.lit(ORIGIN_HLS).alias("origin"),
        pl.lit(LICENSE_HLS).alias("license"),
    )
    impl = df.filter(pl.col("impl_total_luts").is_not_null())
    route = impl.select(
        *common,
        pl.lit("vivado").alias("tool"),
        pl.lit(VIVADO_VERSION).alias("tool_version"),
        pl.lit("post_route").alias("stage"),
        pl.col("impl_total_luts").alias("lut"),
        pl.col("impl_ffs").alias("ff"),
        pl.col("impl_dsp").alias("dsp"),
        (2 * pl.col("impl_ramb36") + pl.col("impl_ramb18")).alias("bram"),
        pl.lit("bram18k").alias("bram_unit"),
        (1000.0 / pl.col("impl_freq_mhz")).alias("clock_ns"),
        (pl.col("impl_vivado_dynamic_pwr_mw") / 1000.0).alias("power_dynamic_w"),
        pl.lit("vivado_estimate").alias("power_method"),
        json_object(
            {
                **features,
                **{c.removeprefix("impl_"): pl.col(c).cast(pl.Int64) for c in ("impl_logic_luts", "impl_lutrams", "impl_srls", "impl_ramb36", "impl_ramb18", "impl_freq_mhz")},
            }
        ).alias("extra"),
        pl.lit(ORIGIN_HLS).alias("origin"),
        pl.lit(LICENSE_HLS).alias("license"),
    )  # fmt: skip
    measured = impl.filter(pl.col("board_total_pwr_uW").is_not_null())
    dyn_mw = pl.col("board_dynamic_pwr_mW")
    board = measured.select(
        *common,
        pl.lit("power_advantage_tool").alias("tool"),
        pl.lit("2018.1").alias("tool_version"),
        pl.lit("on_board").alias("stage"),
        (1000.0 / pl.col("impl_freq_mhz")).alias("clock_ns"),
        (pl.col("board_total_pwr_uW") / 1e6).alias("power_total_w"),
        (pl.col("board_static_pwr_uW") / 1e6).alias("power_static_w"),
        pl.when(dyn_mw >= 0).then(dyn_mw / 1000.0).alias("power_dynamic_w"),
        pl.lit("board_measured").alias("power_method"),
        json_object({**features, "board": pl.lit("zcu102"), "board_dynamic_pwr_mw": dyn_mw}).alias("extra"),
        pl.lit(f"{ORIGIN_POWER} + {ORIGIN_HLS}").alias("origin"),
        pl.lit(LICENSE_POWER).alias("license"),
    )
    frame = pl.concat([hls, route, board], how="diagonal_relaxed").with_columns(
        pl.lit(SOURCE.name).alias("source")
    )
    return {"fpga": with_measurement_id(frame, "fpga")}
