"""``hws predict latency``: latency of architectures on a known device with the registered model."""

from __future__ import annotations

import json
from pathlib import Path

import click
import polars as pl


def _read_queries(path: Path) -> pl.DataFrame:
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON records instead of a table.")
def predict_latency(
    device_id: str | None,
    space: str,
    arch_keys: tuple[str, ...],
    input_path: Path | None,
    version: str | None,
    as_json: bool,
) -> None:
    """Predict latency_ms of architectures on a device with the `hws-latency` champion.

    \b
    Examples:
      hws predict latency --device help/pixel2 \\
          --arch-key '|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|'
      hws predict latency --input queries.csv --json
    """
    from .registry import ModelNotFoundError, load_predictor

    if input_path is not None:
        if device_id or arch_keys:
            raise click.UsageError("give either --input or --device/--arch-key, not both")
        queries = _read_queries(input_path)
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
    try:
        predictor = load_predictor("latency", version=version)
        out = predictor.predict(queries)
    except ModelNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    result = queries.with_columns(out["latency_ms"])
    if as_json:
        click.echo(
            json.dumps({"model_version": predictor.version, "predictions": result.to_dicts()}, indent=2)
        )
        return
    with pl.Config(tbl_rows=-1, fmt_str_lengths=120, tbl_hide_dataframe_shape=True):
        click.echo(result)
    click.echo(f"{predictor.name} version {predictor.version}")
