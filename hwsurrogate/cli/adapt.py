"""``hws adapt``: adapt a predictor to an unseen device from a few measurements."""

from __future__ import annotations

import click

S = "hwsurrogate.surrogates"


@click.command()
@click.option("--task", type=click.Choice(["latency", "gemm"]), default="latency", show_default=True)
@click.option("--device", required=True, help="Name of the new device (must not collide with a known one).")
@click.option(
    "--measurements",
    required=True,
    help="CSV/parquet file of measurements, or 'store' to use the device's rows in the store.",
)
@click.option(
    "--version",
    default=None,
    help="Registered version of the base model to adapt (latency only; default: the champion).",
)
@click.pass_context
def adapt(ctx: click.Context, task: str, device: str, measurements: str, version: str | None) -> None:
    """Adapt a predictor to an unseen device from a handful of measurements (under 2 s).

    \b
    latency: columns space, arch_key, latency_ms (10 HELP reference archs + a few more is best)
    gemm:    columns op, m, n, k, batch, dtype, runtime_ms
    The adapted device is remembered with the model version it was adapted from.
    """
    import importlib

    module, attr = {
        "latency": (f"{S}.fewshot.cli", "adapt_latency"),
        "gemm": (f"{S}.fewshot.gemm", "adapt_gemm_cli"),
    }[task]
    kwargs = {"device": device, "measurements": measurements}
    if version is not None:
        if task != "latency":
            raise click.BadParameter(
                f"--version is supported for --task latency only, not {task!r}", param_hint="--version"
            )
        kwargs["version"] = version
    ctx.invoke(getattr(importlib.import_module(module), attr), **kwargs)
