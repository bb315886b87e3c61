"""``hws predict gemm|latency|fpga|gemm-shots``: predictions from the command line.

Every command asks the one served-or-adapted dispatch (:mod:`hwsurrogate.surrogates.predict`):
devices adapted with ``hws adapt`` answer with their adaptation, others with the registered
model (alias ``champion`` unless ``--version``), whose ``predict`` computes the features itself.

One convention for all of them: queries from flags or ``--queries FILE`` (CSV, JSON or parquet);
a table on stdout, ``--json`` for JSON on stdout, or ``--out FILE`` (.csv / .json / .parquet).
Heavy libraries load inside the commands, so ``hws predict --help`` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hwsurrogate.cli.gemm_shots import gemm_shots
from hwsurrogate.cli.lazy import LazyGroup
from hwsurrogate.cli.options import json_option, out_option, store_option, strict_option, write_frame

if TYPE_CHECKING:
    import polars as pl

    from hwsurrogate.surrogates.predict import Answer

__all__ = ["predict", "predict_fpga", "predict_gemm", "predict_latency", "read_queries"]


def read_queries(path: str | Path) -> pl.DataFrame:
    """A query frame from CSV, JSON (list of objects or {"queries": [...]}) or parquet; errors name the file."""
    import polars as pl

    p = Path(path)
    if not p.is_file():
        raise click.BadParameter(f"queries file {str(path)!r} does not exist", param_hint="--queries")
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
    except Exception as exc:
        raise click.BadParameter(
            f"queries file {str(path)!r} could not be read: {exc}", param_hint="--queries"
        ) from None


#: up to this many query rows, predictions run on one thread
SMALL_BATCH = 64


def _check_before_loading(task: str, queries: pl.DataFrame) -> None:
    """Reject bad values before any model loads (a model load costs far more than these checks)."""
    try:
        if task == "gemm":
            from hwsurrogate.surrogates.features.gemm import check_gemm_queries

            check_gemm_queries(queries)
        elif task == "latency":
            from hwsurrogate.surrogates.features import nas

            for (space,), part in queries.group_by("space", maintain_order=True):
                nas.arch_vectors(str(space), part["arch_key"])
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _dispatch(
    task: str, queries: pl.DataFrame, version: str | None, store_path: Path | None, strict: bool = False
) -> Answer:
    """The dispatch's answer; errors become one line, warnings go to stderr.

    ``version`` pins the served model's registry version; adapted devices keep the version they
    were adapted on (a warning says when it differs from the served one). ``strict`` refuses
    queries outside the training domain.
    """
    from hwsurrogate.surrogates.predict import local_dispatch

    _check_before_loading(task, queries)
    from threadpoolctl import threadpool_limits

    # a few rows: one thread (an OpenMP region per tree costs more than the tree on a busy machine)
    threads = 1 if queries.height <= SMALL_BATCH else None
    try:
        with threadpool_limits(limits=threads):
            answer = local_dispatch(store_path, versions={task: version}).predict(task, queries, strict=strict)
    except (ValueError, LookupError) as exc:
        raise click.ClickException(str(exc)) from None
    for warning in answer.warnings:
        click.echo(f"warning: {warning}", err=True)
    return answer


def _emit(result: pl.DataFrame, answer: Answer, *, as_json: bool, out: Path | None) -> None:
    """Print a table (default), JSON (``--json``), or write ``--out FILE``; every row says ``in_domain``."""
    import polars as pl

    if answer.in_domain and "in_domain" not in result.columns:
        result = result.with_columns(pl.Series("in_domain", answer.in_domain, dtype=pl.Boolean))
    if out is not None:
        write_frame(result, out)
        click.echo(f"wrote {result.height} predictions to {out}")
        return
    if as_json:
        payload: dict[str, Any] = {
            "predictor": answer.predictor,
            "model_name": answer.model.name,
            "model_version": answer.model.version,
            "models": [{"name": m.name, "version": m.version} for m in answer.models],
            "warnings": answer.warnings,
            "predictions": result.to_dicts(),
        }
        click.echo(json.dumps(payload, indent=2, default=str))
        return
    with pl.Config(tbl_rows=min(result.height, 200), tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=120,
                   tbl_hide_dataframe_shape=True):  # fmt: skip
        click.echo(result)
    click.echo(", ".join(f"{m.name} version {m.version}" for m in answer.models) + f" ({answer.predictor})")


def _queries_option(help: str) -> Any:
    return click.option("--queries", "queries_path", type=click.Path(dir_okay=False, path_type=Path), help=help)


# --------------------------------------------------------------------------- GEMM


@click.command("gemm")
@_queries_option("CSV/JSON/parquet with device_id, op, m, n, k (+ batch, dtype, layout).")
@click.option("--device", help="Device id (one query from flags).")
@click.option("--op", type=click.Choice(["gemm", "bmm", "linear"]), default="gemm", show_default=True)
@click.option("-m", "m", type=int, help="Rows of A / output.")
@click.option("-n", "n", type=int, help="Columns of the output.")
@click.option("-k", "k", type=int, help="Reduction dimension.")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--dtype", default="fp32", show_default=True)
@click.option("--layout", default=None)
@click.option("--version", default=None, help="Registry version of hws-gemm (default: @champion).")
@store_option
@json_option
@out_option()
@strict_option
def predict_gemm(
    queries_path: Path | None, device: str | None, op: str, m: int | None, n: int | None, k: int | None,
    batch: int, dtype: str, layout: str | None, version: str | None, store_path: Path | None, as_json: bool,
    out: Path | None, strict: bool,
) -> None:  # fmt: skip
    """Runtime (ms), power (W) and energy (J) of GEMM shapes on a known or adapted GPU.

    \b
    hws predict gemm --device neusight/Tesla_T4 -m 1024 -n 1024 -k 1024
    hws predict gemm --queries shapes.csv --out predictions.csv
    Devices adapted with `hws adapt --task gemm` are served with their correction.
    """
    import polars as pl

    from hwsurrogate.surrogates.api import INPUTS

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
    answer = _dispatch("gemm", queries, version, store_path, strict)
    _emit(pl.concat([queries, answer.outputs], how="horizontal"), answer, as_json=as_json, out=out)


# --------------------------------------------------------------------------- FPGA


@click.command("fpga")
@_queries_option("CSV/JSON/parquet of designs (required).")
@click.option(
    "--kind",
    type=click.Choice(["auto", "hls4ml", "hlsyn"]),
    default="auto",
    show_default=True,
    help="hls4ml: model, reuse_factor, precision, strategy, io_type, part; hlsyn: kernel, pragmas, tool.",
)
@click.option("--version", default=None, help="Registry version (default: @champion).")
@store_option
@json_option
@out_option()
@strict_option
def predict_fpga(
    queries_path: Path | None, kind: str, version: str | None, store_path: Path | None, as_json: bool,
    out: Path | None, strict: bool,
) -> None:  # fmt: skip
    """Resources (LUT/FF/DSP/BRAM) and cycles of hls4ml models or HLSyn-style HLS designs.

    \b
    hws predict fpga --queries designs.json              (kind picked from the columns)
    hws predict fpga --kind hlsyn --queries points.csv --out pred.csv
    """
    import polars as pl

    from hwsurrogate.surrogates.api import INPUTS

    if queries_path is None:
        raise click.UsageError("give --queries FILE (one design per row)")
    queries = read_queries(queries_path)
    if kind == "auto":
        kind = "hlsyn" if "pragmas" in queries.columns else "hls4ml"
    task = f"fpga-{kind}"
    missing = [c for c in INPUTS[task] if c not in queries.columns]
    if missing:
        raise click.BadParameter(f"{task} queries miss column(s) {missing}", param_hint="--queries")
    answer = _dispatch(task, queries, version, store_path, strict)
    result = pl.concat([queries.select(INPUTS[task]), answer.outputs], how="horizontal")
    _emit(result, answer, as_json=as_json, out=out)


# --------------------------------------------------------------------------- latency


@click.command("latency")
@click.option("--device", "device_id", help="Device id, e.g. help/pixel2 (with --arch-key).")
@click.option("--space", type=click.Choice(["nb201", "fbnet", "ofa"]), default="nb201", show_default=True)
@click.option("--arch-key", "arch_keys", multiple=True, help="Canonical arch key (repeat for several).")
@click.option(
    "--queries",
    "--input",
    "queries_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="CSV/JSON/parquet with columns device_id, space, arch_key (instead of --device/--arch-key; "
    "--input is the old name).",
)
@click.option("--version", default=None, help="Registered model version (default: the champion).")
@store_option
@json_option
@out_option()
@strict_option
def predict_latency(
    device_id: str | None,
    space: str,
    arch_keys: tuple[str, ...],
    queries_path: Path | None,
    version: str | None,
    store_path: Path | None,
    as_json: bool,
    out: Path | None,
    strict: bool,
) -> None:
    """Latency (ms) of architectures on a device: adapted devices with their few-shot model, others
    with the `hws-latency` champion.

    \b
    Examples:
      hws predict latency --device help/pixel2 \\
          --arch-key '|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|'
      hws predict latency --queries queries.csv --json
    """
    import polars as pl

    if queries_path is not None:
        if device_id or arch_keys:
            raise click.UsageError("give either --queries or --device/--arch-key, not both")
        frame = read_queries(queries_path)
        missing = [c for c in ("device_id", "space", "arch_key") if c not in frame.columns]
        if missing:
            raise click.BadParameter(f"{str(queries_path)!r} misses column(s) {missing}", param_hint="--queries")
        queries = frame.select("device_id", "space", "arch_key")
    else:
        if not device_id or not arch_keys:
            raise click.UsageError("give --device and at least one --arch-key (or --queries FILE)")
        n = len(arch_keys)
        queries = pl.DataFrame({"device_id": [device_id] * n, "space": [space] * n, "arch_key": list(arch_keys)})
    answer = _dispatch("latency", queries, version, store_path, strict)
    _emit(queries.with_columns(answer.outputs["latency_ms"]), answer, as_json=as_json, out=out)


# --------------------------------------------------------------------------- the group


def _model_command() -> click.Command:
    from hwsurrogate.cli.predict_model import predict_model_cmd

    return predict_model_cmd


@click.group(cls=LazyGroup)
def predict() -> None:
    """Predict from the command line: served champions, or the adaptation of an adapted device."""


predict.add_command(predict_gemm)
predict.add_command(predict_latency)
predict.add_command(predict_fpga)
predict.add_command(gemm_shots)
predict.add_lazy_command("model", _model_command, "Whole-model latency of your own model (ONNX, FILE.py:CALLABLE, config.json).")
