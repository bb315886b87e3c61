"""PowerGear power features of HLS designs (HLSDataset): directives, HLS report, post-route report.

:func:`powergear_features` gives the HLS-stage features (:data:`POWERGEAR_HLS_FEATURES`) and,
with the post-route report, :data:`POWERGEAR_ROUTE_FEATURES`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import polars as pl

#: HLS-stage power features (directives + Vivado HLS report): PowerGear's information stage.
POWERGEAR_HLS_FEATURES: tuple[str, ...] = (
    "io_buffer_partition", "buffer_partition_d1d2", "n_pipelined_loops", "log2_max_unroll", "n_loops",
    "log2_unroll_prod", "log2_unroll_sum", "n_outer_pipelined", "log2_pipelined_unroll", "hls_lut", "hls_ff",
    "hls_dsp", "hls_bram", "c_num_arith", "c_num_logic", "rtl_num_arith", "rtl_num_logic", "clk_estimated_ns",
    "in_port_bits", "out_port_bits", "log_hls_lut", "log_hls_ff", "log_hls_dsp", "log_hls_bram",
    "log_hls_switched", "arith_parallelism", "dsp_per_c_op", "nest_speed_spread", "nest_activity",
    "slow_nest_time_share",
)  # fmt: skip
#: Post-route features (Vivado implementation report, incl. Vivado's own dynamic-power estimate).
POWERGEAR_ROUTE_FEATURES: tuple[str, ...] = (
    "route_lut", "route_logic_lut", "route_lutram", "route_srl", "route_ff", "route_dsp", "route_bram",
    "route_freq_mhz", "log_route_lut", "log_route_ff", "log_route_dsp", "log_route_bram",
    "log_route_switched", "log_vivado_dynamic_mw", "route_to_hls_ff", "route_to_hls_lut",
    "log_vivado_per_switched",
)  # fmt: skip
#: Vivado-report-style dynamic-power weights per resource (mW per unit at 100 MHz, 12.5% toggle);
#: only the *relative* sizes matter (the feature is a log-sum): a DSP48 ~ 10 LUTs, a BRAM18 ~ 20.
_SWITCHED_WEIGHTS: dict[str, float] = {"lut": 1.0, "ff": 0.5, "dsp": 10.0, "bram": 20.0}
POWERGEAR_FEATURES: tuple[str, ...] = POWERGEAR_HLS_FEATURES
#: Activity-weighted aggregates (opt-in, ``activity=True``): the HLS-stage stand-in for
#: PowerGear's switching-activity-weighted graph features, with the activity of each loop nest's
#: hardware taken from the duty-cycle model (no simulation traces exist in this data set).
POWERGEAR_ACTIVITY_FEATURES: tuple[str, ...] = (
    "log2_throughput", "replicated_activity", "word_bits", "log_act_switched", "log_act_lut", "log_act_ff",
    "log_act_dsp", "log_act_bram", "log_act_arith_bits", "log_act_logic_bits", "log_work_rate_bits",
)  # fmt: skip


def _require(frame: pl.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} frame misses column(s) {missing}")


def _switched(lut: pl.Expr, ff: pl.Expr, dsp: pl.Expr, bram: pl.Expr) -> pl.Expr:
    """log of the resource-weighted 'switched capacitance' proxy sum(w_r * count_r)."""
    w = _SWITCHED_WEIGHTS
    return (w["lut"] * lut + w["ff"] * ff + w["dsp"] * dsp + w["bram"] * bram + 1.0).log()


#: a-priori log2 speed-ups of a loop nest (no trip counts or latencies in the data): pipelining
#: a float loop body (~8-cycle latency -> II 1) ~ 2**3; each loop fully unrolled below a
#: pipelined one (PolyBench trip counts of ~32) ~ 2**5.
NEST_PIPELINE_LOG2_SPEEDUP = 3.0
NEST_FULL_UNROLL_LOG2_SPEEDUP = 5.0


def _loop_features(pragmas: pl.DataFrame) -> pl.DataFrame:
    """Per-design aggregates of the loop directives (``_r``-indexed ``pragmas`` JSON).

    ``{"l1": [{"pipeline":0,"unroll":1}, ...], ...}``: one list per loop nest, outer loop first.
    Vivado HLS fully unrolls every loop inside a pipelined one, so a pipelined loop that is not
    the innermost of its nest (``n_outer_pipelined``) multiplies the hardware by the inner trip
    counts; ``log2_pipelined_unroll`` sums log2(unroll) over the pipelined loops.

    Activity (duty cycle): the nests of a PolyBench kernel run one after another, each on its
    own hardware, so a nest's hardware switches only while that nest runs. With a nest's
    log2 speed ``s`` = sum log2(unroll) + 3 if pipelined + 5 per loop unrolled below the
    pipelined one, its time ~ 2**-s and its hardware ~ 2**s: ``nest_activity`` =
    N / (sum 2**s * sum 2**-s) is the time-averaged fraction of the parallel hardware that is
    busy (1/N for balanced nests, -> 0 when a slow nest idles fast ones); ``nest_speed_spread``
    = max s - min s and ``slow_nest_time_share`` = the slowest nest's share of the run time.

    Activity weights (used by :data:`POWERGEAR_ACTIVITY_FEATURES`): pipelining speeds a nest up
    without copying its operators, unrolling copies them, so a nest's operator copies are
    ``2**r`` with ``r = s - 3`` if pipelined (else ``r = s``). ``replicated_activity`` =
    sum(2**r * t) / sum(2**r), with ``t = 2**-s / sum 2**-s`` the nest's share of the run time,
    is the busy fraction of the operator copies; ``log2_throughput`` = -log2(sum 2**-s) is the
    log2 rate at which the kernel's (fixed) operations fire, relative to a design without
    directives (equal work per nest assumed).
    """
    obj = pl.Struct({"pipeline": pl.Int64, "unroll": pl.Int64})
    nests = (
        pragmas.with_columns(pl.col("pragmas").str.extract_all(r"\[[^\[\]]*\]").alias("nest"))
        .explode("nest")
        .with_columns(pl.int_range(pl.len()).over("_r").alias("nest_idx"))
        .with_columns(pl.col("nest").str.extract_all(r"\{[^{}]*\}").alias("loop"))
        .with_columns(pl.col("loop").list.len().alias("depth"))
        .explode("loop")
        .with_columns(
            (pl.int_range(pl.len()).over("_r", "nest_idx") + 1).alias("level"),
            pl.col("loop").str.json_decode(obj).alias("l"),
        )
        .unnest("l")
    )
    if nests["unroll"].is_null().any() or nests["pipeline"].is_null().any():
        bad = nests.filter(pl.col("unroll").is_null() | pl.col("pipeline").is_null()).row(0, named=True)
        raise ValueError(f"pragmas: loop entry {bad['loop']!r} lacks 'pipeline' or 'unroll'")
    if (nests["unroll"] < 1).any():
        raise ValueError("pragmas: loop 'unroll' factors must be >= 1")
    u = pl.col("unroll").cast(pl.Float64)
    piped = pl.col("pipeline") > 0
    first_pipe = pl.col("level").filter(piped).min()
    speed = (
        nests.group_by("_r", "nest_idx")
        .agg(
            u.log(2).sum().alias("s_unroll"),
            first_pipe.alias("pipe_level"),
            pl.col("depth").first(),
        )
        .with_columns(
            (
                pl.col("s_unroll")
                + pl.when(pl.col("pipe_level").is_not_null())
                .then(NEST_PIPELINE_LOG2_SPEEDUP + NEST_FULL_UNROLL_LOG2_SPEEDUP * (pl.col("depth") - pl.col("pipe_level")))
                .otherwise(0.0)
            ).alias("s")
        )
        .with_columns(
            (pl.col("s") - pl.when(pl.col("pipe_level").is_not_null()).then(NEST_PIPELINE_LOG2_SPEEDUP).otherwise(0.0))
            .alias("r")
        )
        .group_by("_r")
        .agg(
            (pl.col("s").max() - pl.col("s").min()).alias("nest_speed_spread"),
            (pl.len() / ((2.0 ** pl.col("s")).sum() * (2.0 ** -pl.col("s")).sum())).alias("nest_activity"),
            ((2.0 ** -pl.col("s")).max() / (2.0 ** -pl.col("s")).sum()).alias("slow_nest_time_share"),
            (-(2.0 ** -pl.col("s")).sum().log(2)).alias("log2_throughput"),
            ((2.0 ** (pl.col("r") - pl.col("s"))).sum() / ((2.0 ** -pl.col("s")).sum() * (2.0 ** pl.col("r")).sum()))
            .alias("replicated_activity"),
        )
    )  # fmt: skip
    loops = nests.group_by("_r").agg(
        pl.len().cast(pl.Float64).alias("n_loops"),
        u.log(2).sum().alias("log2_unroll_prod"),
        u.sum().log(2).alias("log2_unroll_sum"),
        (piped & (pl.col("level") < pl.col("depth"))).sum().cast(pl.Float64).alias("n_outer_pipelined"),
        u.log(2).filter(piped).sum().alias("log2_pipelined_unroll"),
    )
    return loops.join(speed, on="_r", how="left")


def _join_all(out: pl.DataFrame, rows: pl.DataFrame, name: str) -> pl.DataFrame:
    """Left-join a per-design report; every design must have one (else the features are wrong)."""
    joined = out.join(rows.with_columns(pl.lit(True).alias("_hit")), on="design_id", how="left")
    if joined["_hit"].null_count():
        miss = joined.filter(pl.col("_hit").is_null())["design_id"]
        raise ValueError(f"{name}: no report row for {miss.len()} design(s), e.g. design_id {miss[0]!r}")
    return joined.drop("_hit")


def _port_bits(col: str) -> pl.Expr:
    """``"2x32"`` (ports x bits) -> total bits."""
    parts = pl.col(col).str.extract_groups(r"^(\d+)x(\d+)$")
    return (parts.struct.field("1").cast(pl.Float64) * parts.struct.field("2").cast(pl.Float64)).alias(col)


def powergear_features(
    designs: pl.DataFrame, hls: pl.DataFrame, route: pl.DataFrame | None = None, *, activity: bool = False
) -> pl.DataFrame:
    """Power features of HLSDataset/PowerGear designs (one row per design, in ``designs`` order).

    ``designs`` holds one row per design (``design_id``, ``pragmas`` JSON of loop nests with
    pipeline/unroll, ``extra`` with the partition factors). ``hls`` holds the Vivado HLS report
    rows of the same designs (``lut/ff/dsp/bram`` estimates; operator counts, ports and the
    estimated clock in ``extra``): :data:`POWERGEAR_HLS_FEATURES`, PowerGear's early stage.
    With ``route`` (post-route rows: ``lut/ff/dsp/bram``, ``power_dynamic_w`` = Vivado's
    vectorless estimate, LUTRAM/SRL/frequency in ``extra``) the
    :data:`POWERGEAR_ROUTE_FEATURES` are appended; those exist only after implementation.
    With ``activity=True`` the :data:`POWERGEAR_ACTIVITY_FEATURES` follow the HLS-stage ones:
    resources and RTL operator bits of the HLS report weighted by the busy fraction of the
    operator copies (``replicated_activity``, see :func:`_loop_features`), and the rate at which
    the kernel's C operations fire times their word width (``log_work_rate_bits``); the word
    width is the bits of one data input port. A design absent from ``hls`` (or ``route``) is an
    error naming it.
    """
    _require(designs, ("design_id", "pragmas", "extra"), "designs")
    _require(hls, ("design_id", "lut", "ff", "dsp", "bram", "extra"), "hls")
    d = designs.select("design_id", "pragmas", "extra").with_row_index("_r")
    if d["pragmas"].null_count():
        i = int(d["pragmas"].is_null().arg_true()[0])
        raise ValueError(f"designs: 'pragmas' is empty for design {d['design_id'][i]!r}")
    ex = pl.col("extra")
    base = d.with_columns(
        ex.str.json_path_match("$.io_buffer_partition").cast(pl.Float64).alias("io_buffer_partition"),
        ex.str.json_path_match("$.buffer_partition_d1d2").cast(pl.Float64).alias("buffer_partition_d1d2"),
        ex.str.json_path_match("$.n_pipelined_loops").cast(pl.Float64).alias("n_pipelined_loops"),
        ex.str.json_path_match("$.max_unroll").cast(pl.Float64).log(2).alias("log2_max_unroll"),
    )
    h = (
        hls.select(
            pl.col("design_id"),
            *(pl.col(r).cast(pl.Float64).alias(f"hls_{r}") for r in ("lut", "ff", "dsp", "bram")),
            *(ex.str.json_path_match(f"$.{c}").cast(pl.Float64).alias(c) for c in
              ("c_num_arith", "c_num_logic", "rtl_num_arith", "rtl_num_logic", "clk_estimated_ns")),
            ex.str.json_path_match("$.data_input_port").alias("data_input_port"),
            ex.str.json_path_match("$.data_output_port").alias("data_output_port"),
        )
        .unique("design_id", keep="first")
        .with_columns(
            _port_bits("data_input_port").alias("in_port_bits"),
            _port_bits("data_output_port").alias("out_port_bits"),
            *((pl.col(f"hls_{r}") + 1).log().alias(f"log_hls_{r}") for r in ("lut", "ff", "dsp", "bram")),
            _switched(*(pl.col(f"hls_{r}") for r in ("lut", "ff", "dsp", "bram"))).alias("log_hls_switched"),
            # operators HLS instantiated per operator in the C source: the directives' parallelism
            (pl.col("rtl_num_arith") / pl.col("c_num_arith").clip(1)).alias("arith_parallelism"),
            (pl.col("hls_dsp") / pl.col("c_num_arith").clip(1)).alias("dsp_per_c_op"),
        )
    )  # fmt: skip
    for port in ("data_input_port", "data_output_port"):
        bad = h.filter(pl.col(port).is_null() | pl.col(port).str.contains(r"^\d+x\d+$").not_())
        if bad.height:
            raise ValueError(
                f"hls: 'extra.{port}' must be '<ports>x<bits>', got {bad[port][0]!r} for design {bad['design_id'][0]!r}"
            )
    out = base.join(_loop_features(d.select("_r", "pragmas")), on="_r", how="left")
    out = _join_all(out, h, "hls")
    cols = list(POWERGEAR_HLS_FEATURES)
    if activity:
        act = pl.col("replicated_activity")
        out = out.with_columns(
            pl.col("data_input_port").str.extract(r"^\d+x(\d+)$", 1).cast(pl.Float64).alias("word_bits")
        ).with_columns(
            (pl.col("log_hls_switched") + act.log()).alias("log_act_switched"),
            *((pl.col(f"hls_{r}") * act + 1).log().alias(f"log_act_{r}") for r in ("lut", "ff", "dsp", "bram")),
            (pl.col("rtl_num_arith") * pl.col("word_bits") * act + 1).log().alias("log_act_arith_bits"),
            (pl.col("rtl_num_logic") * pl.col("word_bits") * act + 1).log().alias("log_act_logic_bits"),
            (pl.col("log2_throughput") * math.log(2) + (pl.col("c_num_arith") * pl.col("word_bits") + 1).log())
            .alias("log_work_rate_bits"),
        )  # fmt: skip
        cols += POWERGEAR_ACTIVITY_FEATURES
    if route is not None:
        _require(route, ("design_id", "lut", "ff", "dsp", "bram", "power_dynamic_w", "extra"), "route")
        r = (
            route.select(
                pl.col("design_id"),
                *(pl.col(c).cast(pl.Float64).alias(f"route_{c}") for c in ("lut", "ff", "dsp", "bram")),
                *(ex.str.json_path_match(f"$.{k}").cast(pl.Float64).alias(f"route_{v}") for k, v in
                  (("logic_luts", "logic_lut"), ("lutrams", "lutram"), ("srls", "srl"), ("freq_mhz", "freq_mhz"))),
                (pl.col("power_dynamic_w").cast(pl.Float64) * 1000).alias("vivado_dynamic_mw"),
            )
            .unique("design_id", keep="first")
            .with_columns(
                *((pl.col(f"route_{c}") + 1).log().alias(f"log_route_{c}") for c in ("lut", "ff", "dsp", "bram")),
                _switched(*(pl.col(f"route_{c}") for c in ("lut", "ff", "dsp", "bram"))).alias("log_route_switched"),
                pl.col("vivado_dynamic_mw").log().alias("log_vivado_dynamic_mw"),
            )
        )  # fmt: skip
        out = _join_all(out, r, "route")
        out = out.with_columns(
            (pl.col("route_ff") / pl.col("hls_ff").clip(1)).alias("route_to_hls_ff"),
            (pl.col("route_lut") / pl.col("hls_lut").clip(1)).alias("route_to_hls_lut"),
            # Vivado's estimate per unit of switched resources: its activity/routing assumption
            (pl.col("log_vivado_dynamic_mw") - pl.col("log_route_switched")).alias("log_vivado_per_switched"),
        )
        cols += POWERGEAR_ROUTE_FEATURES
    return out.sort("_r").select(pl.col(c).cast(pl.Float64) for c in cols)
