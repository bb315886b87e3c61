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
from hwsurrogate.cli.options import (
    json_option,
    out_option,
    ray_option,
    store_option,
    strict_option,
    write_frame,
)

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
    task: str, queries: pl.DataFrame, version: str | None, store_path: Path | str | None, strict: bool = False
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


def _ray_options(fn: Any) -> Any:
    """``--ray ADDRESS`` and ``--workers N`` of every predict command."""
    fn = click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1),
                      help="With --ray: Ray workers, each loading the model once.")(fn)  # fmt: skip
    return ray_option("Predict with Ray Data on the cluster at ADDRESS: the queries are split into batches, "
                      "answered by --workers workers that load the model once each.")(fn)  # fmt: skip


def _predict_ray(
    task: str, queries: pl.DataFrame, *, ray_address: str, workers: int, version: str | None,
    store_path: Path | str | None, strict: bool, as_json: bool, out: Path | None,
) -> None:  # fmt: skip
    """``--ray``: the same dispatch per batch on Ray workers; print or write like the local path."""
    from hwsurrogate.cluster import connect
    from hwsurrogate.surrogates.distributed import predict_on_ray

    _check_before_loading(task, queries)
    connect(ray_address)
    try:
        result = predict_on_ray(
            task, queries, store_root=store_path, version=version, strict=strict, workers=workers
        )
    except (ValueError, LookupError) as exc:
        raise click.ClickException(str(exc)) from None
    outside = int((result["in_domain"] == False).sum()) if "in_domain" in result.columns else 0  # noqa: E712
    if outside:
        click.echo(
            f"warning: {outside} of {result.height} queries lie outside the model's training domain", err=True
        )
    n_workers = result["ray_worker"].n_unique()
    result = result.drop("ray_worker")
    if out is not None:
        write_frame(result, out)
        click.echo(f"wrote {result.height} predictions to {out} ({n_workers} Ray worker(s))")
    elif as_json:
        click.echo(
            json.dumps({"predictions": result.to_dicts(), "ray_workers": n_workers}, indent=2, default=str)
        )
    else:
        import polars as pl

        with pl.Config(tbl_rows=min(result.height, 200), tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=120,
                       tbl_hide_dataframe_shape=True):  # fmt: skip
            click.echo(result)
        click.echo(f"{result.height} predictions from {n_workers} Ray worker(s)")


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
@_ray_options
def predict_gemm(
    queries_path: Path | None, device: str | None, op: str, m: int | None, n: int | None, k: int | None,
    batch: int, dtype: str, layout: str | None, version: str | None, store_path: Path | str | None, as_json: bool,
    out: Path | None, strict: bool, ray_address: str | None = None, workers: int = 2,
) -> None:  # fmt: skip
    """Runtime (ms), power (W) and energy (J) of GEMM shapes on a known or adapted GPU.

    \b
    hws predict gemm --device neusight/Tesla_T4 -m 1024 -n 1024 -k 1024
    hws predict gemm --queries shapes.csv --out predictions.csv
    hws predict gemm --queries million_shapes.parquet --ray head:6379 --workers 8 --out pred.parquet
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
    if ray_address:
        return _predict_ray("gemm", queries, ray_address=ray_address, workers=workers, version=version,
                            store_path=store_path, strict=strict, as_json=as_json, out=out)  # fmt: skip
    answer = _dispatch("gemm", queries, version, store_path, strict)
    _emit(pl.concat([queries, answer.outputs], how="horizontal"), answer, as_json=as_json, out=out)


# --------------------------------------------------------------------------- FPGA


def _load_pytorch(spec: str) -> Any:
    """``file.py:NAME`` -> the ``torch.nn.Module`` it names (NAME may be a no-argument factory).

    This runs ``file.py``: it is the user's own model file on the user's own machine, which is
    why only the command line takes PyTorch models (the service takes ONNX files, which run nothing).
    """
    import importlib.util

    import torch

    path_text, _, name = spec.rpartition(":")
    path = Path(path_text)
    if not name or not path_text or path.suffix != ".py":
        raise click.BadParameter(f"{spec!r}: give model.onnx or model.py:NAME", param_hint="--model")
    if not path.is_file():
        raise click.BadParameter(f"{str(path)!r} does not exist", param_hint="--model")
    module_spec = importlib.util.spec_from_file_location(f"hws_user_model_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise click.BadParameter(f"{str(path)!r} cannot be imported", param_hint="--model")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise click.BadParameter(f"{str(path)!r} failed to import: {exc}", param_hint="--model") from None
    obj = getattr(module, name, None)
    if obj is None:
        raise click.BadParameter(f"{str(path)!r} has no {name!r}", param_hint="--model")
    if not isinstance(obj, torch.nn.Module) and callable(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise click.BadParameter(f"{name}() failed: {exc}", param_hint="--model") from None
    if not isinstance(obj, torch.nn.Module):
        raise click.BadParameter(
            f"{name!r} in {str(path)!r} is a {type(obj).__name__}, not a torch.nn.Module (or a function "
            "returning one)",
            param_hint="--model",
        )
    return obj.eval()


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(x) for x in text.replace("x", ",").split(",") if x.strip())
    except ValueError:
        dims = ()
    if not dims or any(d < 1 or d > 1 << 20 for d in dims):
        raise click.BadParameter(f"{text!r}: give positive sizes without the batch, e.g. 16 or 3,32,32",
                                 param_hint="--input-shape")  # fmt: skip
    return dims


def _hls4ml_query(model: str, input_shape: str | None, config_path: Path | None, part: str | None) -> Any:
    """The one query row of a user's model read through hls4ml (:mod:`.features.hls4ml_frontend`)."""
    import polars as pl

    from hwsurrogate.surrogates.features import hls4ml_frontend as fe

    try:
        config = fe.read_hls4ml_config(config_path)
        if model.endswith(".onnx"):
            if input_shape is not None:
                raise click.UsageError("--input-shape is for PyTorch models; an ONNX file carries its shapes")
            design = fe.onnx_design(Path(model), config, part=part)
        else:
            if input_shape is None:
                raise click.UsageError("a PyTorch model needs --input-shape (no batch), e.g. 16 or 3,32,32")
            design = fe.pytorch_design(_load_pytorch(model), _parse_shape(input_shape), config, part=part)
    except fe.Hls4mlConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"read {len(design.layers)} layers through hls4ml: "
        + ", ".join(f"{layer['class_name']}{layer.get('d_out', '')}" for layer in design.layers[:12])
        + (" ..." if len(design.layers) > 12 else ""),
        err=True,
    )
    return pl.DataFrame([design.query()], schema_overrides={"reuse_factor": pl.Int64})


@click.command("fpga")
@_queries_option("CSV/JSON/parquet of designs (or --model).")
@click.option(
    "--model",
    "model",
    help="Your model instead of --queries: model.onnx, or model.py:NAME (a torch.nn.Module or a function "
    "returning one; the file is run). Read through hls4ml's own front end (needs hwsurrogate[hls4ml]).",
)
@click.option("--input-shape", help="PyTorch models: input shape without the batch, e.g. 16 or 3,32,32.")
@click.option(
    "--hls4ml-config",
    "hls4ml_config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="hls4ml YAML config (IOType, Part, HLSConfig: Model/LayerType/LayerName) or just its HLSConfig "
    "part; default: ap_fixed<16,6>, reuse factor 1, Latency, io_parallel.",
)
@click.option("--part", help="FPGA part (overrides the config's Part).")
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
@_ray_options
def predict_fpga(
    queries_path: Path | None, model: str | None, input_shape: str | None, hls4ml_config: Path | None,
    part: str | None, kind: str, version: str | None, store_path: Path | str | None, as_json: bool,
    out: Path | None, strict: bool, ray_address: str | None = None, workers: int = 2,
) -> None:  # fmt: skip
    """Resources (LUT/FF/DSP/BRAM) and cycles of hls4ml models or HLSyn-style HLS designs.

    \b
    hws predict fpga --queries designs.json              (kind picked from the columns)
    hws predict fpga --kind hlsyn --queries points.csv --out pred.csv
    hws predict fpga --model model.onnx --hls4ml-config config.yml --json
    hws predict fpga --model net.py:build --input-shape 16 --hls4ml-config config.yml --part xcu250-figd2104-2L-e

    With --model, hls4ml 1.3 converts the model (no Vivado: its model graph only) and the layer
    list, reuse factors and precisions it settles on are what the surrogate sees; a reuse factor
    that does not divide a layer, an unknown precision or a layer hls4ml or the surrogate does
    not support is an error naming the config field or the layer.
    """
    import polars as pl

    from hwsurrogate.surrogates.api import INPUTS

    if model is not None:
        if queries_path is not None:
            raise click.UsageError("give --queries or --model, not both")
        if kind == "hlsyn":
            raise click.UsageError("--model is for hls4ml models (--kind hls4ml)")
        queries, kind = _hls4ml_query(model, input_shape, hls4ml_config, part), "hls4ml"
    elif queries_path is None:
        raise click.UsageError("give --queries FILE (one design per row) or --model model.onnx|model.py:NAME")
    elif input_shape or hls4ml_config or part:
        raise click.UsageError("--input-shape, --hls4ml-config and --part go with --model")
    else:
        queries = read_queries(queries_path)
    if kind == "auto":
        kind = "hlsyn" if "pragmas" in queries.columns else "hls4ml"
    task = f"fpga-{kind}"
    missing = [c for c in INPUTS[task] if c not in queries.columns]
    if missing:
        raise click.BadParameter(f"{task} queries miss column(s) {missing}", param_hint="--queries")
    if ray_address:
        return _predict_ray(task, queries.select(INPUTS[task]), ray_address=ray_address, workers=workers,
                            version=version, store_path=store_path, strict=strict, as_json=as_json, out=out)  # fmt: skip
    answer = _dispatch(task, queries, version, store_path, strict)
    result = pl.concat([queries.select(INPUTS[task]), answer.outputs], how="horizontal")
    if model is not None and not as_json and out is None:
        result = result.drop("model")  # the layer list: --json or --out shows it
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
@_ray_options
def predict_latency(
    device_id: str | None,
    space: str,
    arch_keys: tuple[str, ...],
    queries_path: Path | None,
    version: str | None,
    store_path: Path | str | None,
    as_json: bool,
    out: Path | None,
    strict: bool,
    ray_address: str | None = None,
    workers: int = 2,
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
    if ray_address:
        return _predict_ray("latency", queries, ray_address=ray_address, workers=workers, version=version,
                            store_path=store_path, strict=strict, as_json=as_json, out=out)  # fmt: skip
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
