"""``hws predict gemm|fpga|latency``: predictions from the registered champion models.

Queries come from a CSV/JSON/parquet file (``--queries FILE``) or, for one query, from flags.
Every command asks the one served-or-adapted dispatch (:mod:`hwsurrogate.surrogates.predict`):
devices adapted with ``hws adapt`` answer with their adaptation, others with the registered
model (alias ``champion`` unless ``--version``), whose ``predict`` computes the features itself.
Output: a table on stdout, or ``--out FILE`` (.csv / .json / .parquet).

Commands of this module: ``predict_gemm`` and ``predict_fpga`` (GEMM/FPGA surrogates);
``predict_latency`` is added below the marked section by the latency surrogate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import polars as pl

from hwsurrogate.cli.lazy import LazyGroup
from hwsurrogate.surrogates.api import INPUTS


def read_queries(path: str) -> pl.DataFrame:
    """A query frame from CSV, JSON (list of objects or {"queries": [...]}) or parquet; errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise click.BadParameter(f"queries file {path!r} does not exist", param_hint="--queries")
    try:
        if p.suffix == ".parquet":
            return pl.read_parquet(p)
        if p.suffix in (".json", ".jsonl"):
            data = json.loads(p.read_text())
            if isinstance(data, dict):
                data = data.get("queries", [data])
            if not isinstance(data, list) or not data:
                raise ValueError("expected a non-empty list of query objects")
            return pl.DataFrame(data, infer_schema_length=None)
        return pl.read_csv(p, infer_schema_length=10_000)
    except click.BadParameter:
        raise
    except Exception as exc:
        raise click.BadParameter(
            f"queries file {path!r} could not be read: {exc}", param_hint="--queries"
        ) from None


def write_output(frame: pl.DataFrame, out: str | None) -> None:
    if out is None:
        with pl.Config(tbl_rows=min(frame.height, 200), tbl_cols=-1, tbl_width_chars=200):
            click.echo(frame)
        return
    p = Path(out)
    if p.suffix == ".parquet":
        frame.write_parquet(p)
    elif p.suffix == ".json":
        p.write_text(json.dumps(frame.to_dicts(), indent=1, default=str))
    else:
        frame.write_csv(p)
    click.echo(f"wrote {frame.height} predictions to {out}")


def _dispatch(task: str, queries: pl.DataFrame, version: str | None, store_root: Path | None) -> Any:
    """The one served-or-adapted dispatch (:mod:`hwsurrogate.surrogates.predict`); errors become one line.

    ``version`` pins the served model's registry version; adapted devices keep the version they
    were adapted on (a warning says when it differs from the served one).
    """
    from hwsurrogate.surrogates.predict import local_dispatch

    try:
        answer = local_dispatch(store_root, versions={task: version}).predict(task, queries)
    except (ValueError, LookupError) as exc:
        raise click.ClickException(str(exc)) from None
    for warning in answer.warnings:
        click.echo(f"warning: {warning}", err=True)
    return answer


# --------------------------------------------------------------------------- GEMM


@click.command("gemm")
@click.option(
    "--queries", "queries_path", help="CSV/JSON/parquet with device_id, op, m, n, k (+ batch, dtype, layout)."
)
@click.option("--device", help="Device id (one query from flags).")
@click.option("--op", type=click.Choice(["gemm", "bmm", "linear"]), default="gemm", show_default=True)
@click.option("-m", "m", type=int, help="Rows of A / output.")
@click.option("-n", "n", type=int, help="Columns of the output.")
@click.option("-k", "k", type=int, help="Reduction dimension.")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--dtype", default="fp32", show_default=True)
@click.option("--layout", default=None)
@click.option("--version", default=None, help="Registry version of hws-gemm (default: @champion).")
@click.option(
    "--store",
    "store_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Dataset store with the adapted devices (default: $HWSURROGATE_STORE or ./store).",
)
@click.option("--out", default=None, help="Write predictions to .csv/.json/.parquet instead of printing.")
def predict_gemm(
    queries_path: str | None, device: str | None, op: str, m: int | None, n: int | None, k: int | None,
    batch: int, dtype: str, layout: str | None, version: str | None, store_root: Path | None, out: str | None,
) -> None:  # fmt: skip
    """Runtime (ms), power (W) and energy (J) of GEMM shapes on a known or adapted GPU.

    \b
    hws predict gemm --device neusight/Tesla_T4 -m 1024 -n 1024 -k 1024
    hws predict gemm --queries shapes.csv --out predictions.csv
    Devices adapted with `hws adapt --task gemm` are served with their correction.
    """
    if queries_path:
        queries = read_queries(queries_path)
    else:
        missing = [name for name, v in (("--device", device), ("-m", m), ("-n", n), ("-k", k)) if v is None]
        if missing:
            raise click.UsageError(
                f"give --queries FILE or all of --device -m -n -k (missing {', '.join(missing)})"
            )
        queries = pl.DataFrame(
            [{"device_id": device, "op": op, "m": m, "n": n, "k": k, "batch": batch, "dtype": dtype, "layout": layout}],
            schema={"device_id": pl.String, "op": pl.String, "m": pl.Int64, "n": pl.Int64, "k": pl.Int64,
                    "batch": pl.Int64, "dtype": pl.String, "layout": pl.String},
        )  # fmt: skip
    for col, default in (("batch", 1), ("layout", None)):
        if col not in queries.columns:
            queries = queries.with_columns(pl.lit(default).alias(col))
    missing = [c for c in INPUTS["gemm"] if c not in queries.columns]
    if missing:
        raise click.BadParameter(f"queries miss column(s) {missing}", param_hint="--queries")
    answer = _dispatch("gemm", queries, version, store_root)
    write_output(pl.concat([queries, answer.outputs], how="horizontal"), out)


# --------------------------------------------------------------------------- FPGA


@click.command("fpga")
@click.option("--queries", "queries_path", required=True, help="CSV/JSON/parquet of designs.")
@click.option(
    "--kind",
    type=click.Choice(["auto", "hls4ml", "hlsyn"]),
    default="auto",
    show_default=True,
    help="hls4ml: model, reuse_factor, precision, strategy, io_type, part; hlsyn: kernel, pragmas, tool.",
)
@click.option("--version", default=None, help="Registry version (default: @champion).")
@click.option(
    "--store",
    "store_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Dataset store with the adapted devices (default: $HWSURROGATE_STORE or ./store).",
)
@click.option("--out", default=None, help="Write predictions to .csv/.json/.parquet instead of printing.")
def predict_fpga(
    queries_path: str, kind: str, version: str | None, store_root: Path | None, out: str | None
) -> None:
    """Resources (LUT/FF/DSP/BRAM) and cycles of hls4ml models or HLSyn-style HLS designs.

    \b
    hws predict fpga --queries designs.json              (kind picked from the columns)
    hws predict fpga --kind hlsyn --queries points.csv --out pred.csv
    """
    queries = read_queries(queries_path)
    if kind == "auto":
        kind = "hlsyn" if "pragmas" in queries.columns else "hls4ml"
    task = f"fpga-{kind}"
    missing = [c for c in INPUTS[task] if c not in queries.columns]
    if missing:
        raise click.BadParameter(f"{task} queries miss column(s) {missing}", param_hint="--queries")
    answer = _dispatch(task, queries, version, store_root)
    write_output(pl.concat([queries.select(INPUTS[task]), answer.outputs], how="horizontal"), out)


# --------------------------------------------------------------------------- latency


def _read_latency_queries(path: Path) -> pl.DataFrame:
    if not path.exists():
        raise click.BadParameter(f"file {str(path)!r} does not exist", param_hint="--input")
    try:
        frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    except Exception as exc:  # polars raises several error types for malformed files
        raise click.BadParameter(f"cannot read {str(path)!r}: {exc}", param_hint="--input") from None
    missing = [c for c in ("device_id", "space", "arch_key") if c not in frame.columns]
    if missing:
        raise click.BadParameter(f"{str(path)!r} misses column(s) {missing}", param_hint="--input")
    return frame.select("device_id", "space", "arch_key")


@click.command("latency")
@click.option("--device", "device_id", help="Device id, e.g. help/pixel2 (with --arch-key).")
@click.option("--space", type=click.Choice(["nb201", "fbnet", "ofa"]), default="nb201", show_default=True)
@click.option("--arch-key", "arch_keys", multiple=True, help="Canonical arch key (repeat for several).")
@click.option(
    "--input",
    "input_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="CSV/parquet with columns device_id, space, arch_key (instead of --device/--arch-key).",
)
@click.option("--version", default=None, help="Registered model version (default: the champion).")
@click.option(
    "--store",
    "store_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Dataset store with the adapted devices (default: $HWSURROGATE_STORE or ./store).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON records instead of a table.")
def predict_latency(
    device_id: str | None,
    space: str,
    arch_keys: tuple[str, ...],
    input_path: Path | None,
    version: str | None,
    store_root: Path | None,
    as_json: bool,
) -> None:
    """Predict latency_ms of architectures on a device with the `hws-latency` champion.

    \b
    Examples:
      hws predict latency --device help/pixel2 \\
          --arch-key '|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|'
      hws predict latency --input queries.csv --json
    """
    if input_path is not None:
        if device_id or arch_keys:
            raise click.UsageError("give either --input or --device/--arch-key, not both")
        queries = _read_latency_queries(input_path)
    else:
        if not device_id or not arch_keys:
            raise click.UsageError("give --device and at least one --arch-key (or --input FILE)")
        queries = pl.DataFrame(
            {
                "device_id": [device_id] * len(arch_keys),
                "space": [space] * len(arch_keys),
                "arch_key": list(arch_keys),
            }
        )
    answer = _dispatch("latency", queries, version, store_root)
    result = queries.with_columns(answer.outputs["latency_ms"])
    if as_json:
        payload = {
            "predictor": answer.predictor,
            "model_name": answer.model.name,
            "model_version": answer.model.version,
            "predictions": result.to_dicts(),
        }
        click.echo(json.dumps(payload, indent=2))
        return
    with pl.Config(tbl_rows=-1, fmt_str_lengths=120, tbl_hide_dataframe_shape=True):
        click.echo(result)
    click.echo(", ".join(f"{m.name} version {m.version}" for m in answer.models) + f" ({answer.predictor})")


# --------------------------------------------------------------------------- the group

PREDICT: dict[str, tuple[str, str]] = {
    "gemm": ("hwsurrogate.cli.predict:predict_gemm", "Runtime/power/energy of GEMM shapes on a device."),
    "latency": (
        "hwsurrogate.cli.predict:predict_latency",
        "Latency of architectures on a known or adapted device.",
    ),
    "fpga": ("hwsurrogate.cli.predict:predict_fpga", "Resources and cycles of an hls4ml model or HLS design."),
    "gemm-shots": (
        "hwsurrogate.surrogates.fewshot.gemm:suggest_shapes_cli",
        "Which GEMM shapes to measure on a new GPU before hws adapt.",
    ),
}


@click.group(cls=LazyGroup, lazy=PREDICT)
def predict() -> None:
    """Predict from the command line with the registered champion models."""
