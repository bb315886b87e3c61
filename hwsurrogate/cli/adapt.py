"""``hws adapt``: adapt a predictor to an unseen device from a few measurements.

``--task latency`` runs :func:`adapt_latency` (the few-shot latency model, read from the local
export written at registration, never from MLflow: numpy and polars only, well under 2 s);
``--task gemm`` runs :func:`adapt_gemm` (the GEMM surrogate's spec calibration and residual
correction, :func:`hwsurrogate.surrogates.adapt.adapt_gemm`). Heavy imports stay inside the
commands so that ``hws adapt --help`` is instant.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from hwsurrogate.cli.options import store_option

device_option = click.option(
    "--device", required=True, help="Name of the new device (must not collide with a known one)."
)


@click.command("adapt-latency")
@device_option
@click.option(
    "--measurements",
    required=True,
    help="CSV/parquet with columns space, arch_key, latency_ms; or 'store' for the device's store rows.",
)
@click.option(
    "--version",
    default=None,
    help="Registered model version to adapt (default: the champion); saved with the device.",
)
@store_option
def adapt_latency(
    device: str, measurements: str, version: str | None = None, store_path: Path | str | None = None
) -> None:
    """Adapt the few-shot latency model to DEVICE from a handful of measurements and remember it."""
    from hwsurrogate.surrogates.fewshot import FewShotError, NotMetaTrainedError, read_measurements
    from hwsurrogate.surrogates.registry.adapted import AdaptedDeviceRegistry

    t0 = time.perf_counter()
    registry = AdaptedDeviceRegistry(store_path)
    try:
        if measurements == "store":
            from hwsurrogate.datasets.store import DatasetStore

            rows = DatasetStore(registry.root).read("latency", device=device)
            if rows.height == 0:
                raise FewShotError(f"the store has no latency rows for device {device!r}")
            frame = rows.select("space", "arch_key", "latency_ms")
        else:
            frame = read_measurements(measurements)
        adapted = registry.adapt(device, frame, version=version, allow_store_device=measurements == "store")
    except (FewShotError, NotMetaTrainedError) as exc:
        raise click.ClickException(str(exc)) from None
    elapsed = time.perf_counter() - t0
    summary = {
        "device_id": adapted.device_id,
        "model": f"{adapted.model_name} v{adapted.model_version}",
        "spaces": {s: h.n_measurements for s, h in adapted.heads.items()},
        # the held-out error (each point predicted by an adaptation that did not see it) is the one
        # to trust; the fit error is measured on the points the adaptation was fitted to
        "heldout": adapted.heldout,
        "fit_mape_pct": {s: round(v, 2) for s, v in adapted.support_mape.items()},
        "saved_to": str(registry.device_path(device)),
        "adapt_s": round(elapsed, 3),
    }
    click.echo(json.dumps(summary, indent=1))


@click.command("adapt-gemm")
@click.option("--device", required=True, help="Name of the unseen GPU (must not be a training device).")
@click.option(
    "--measurements",
    required=True,
    help="CSV/parquet/JSON with op, m, n, k, runtime_ms (+ batch, dtype), or 'store' for the device's stored rows.",
)
@store_option
def adapt_gemm(device: str, measurements: str, store_path: Path | str | None = None) -> None:
    """Adapt the GEMM surrogate to an unseen GPU from a few measured shapes (persisted in the store)."""
    from hwsurrogate.surrogates.fewshot.gemm import AdaptationError
    from hwsurrogate.surrogates.fewshot.measurements import read_measurements

    t0 = time.perf_counter()
    if measurements == "store":
        from hwsurrogate.datasets.store import DatasetStore

        frame = DatasetStore(store_path).read("gemm", device=device)
        if frame.height == 0:
            raise AdaptationError(f"the store has no gemm rows for device {device!r}")
    else:
        frame = read_measurements(measurements, error=AdaptationError)
    from threadpoolctl import threadpool_limits

    # a few hundred tiny tree predictions: OpenMP threads only add contention (on a busy 2-core
    # machine they slowed the fit from ~0.1 s to ~9 s); process-wide, so the CLI only
    from hwsurrogate.surrogates.adapt import adapt_gemm as adapt_and_save

    with threadpool_limits(limits=1, user_api="openmp"):
        record, path = adapt_and_save(device, frame, store_root=store_path)
    click.echo(
        f"adapted {device} from {record.n_measurements} measurements on {record.model_name} v{record.model_version}: "
        f"held-out MAPE {record.heldout_mape:.1f}% ({record.heldout_method}; each shape predicted by an "
        f"adaptation that did not see it)"
    )
    click.echo(
        f"error on the {record.n_measurements} fitted shapes: {record.fit_mape_before:.1f}% (specs only) -> "
        f"{record.fit_mape_after:.1f}% (not an estimate of the error on new shapes)"
    )
    click.echo(
        f"saved {path}  (adaptation {record.fit_seconds:.2f} s, model load {record.load_seconds:.2f} s, "
        f"command {time.perf_counter() - t0:.2f} s after start-up)"
    )


@click.command("adapt-fpga-hlsyn")
@click.option("--kernel", required=True, help="Name of the new HLS kernel (the designs' `kernel`).")
@click.option("--measurements", required=True, help="CSV/parquet/JSON: pragmas, cycles, lut, ff, dsp, bram.")
@store_option
def adapt_fpga_hlsyn(kernel: str, measurements: str, store_path: Path | str | None = None) -> None:
    """Adapt the served HLS-design model to an unseen kernel from a few synthesised designs."""
    import re

    from hwsurrogate.surrogates.fewshot.measurements import read_measurements

    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", kernel):
        raise click.BadParameter(f"{kernel!r}: letters, digits, - and _ (up to 64)", param_hint="--kernel")
    t0 = time.perf_counter()
    try:
        frame = read_measurements(measurements)
        from threadpoolctl import threadpool_limits

        from hwsurrogate.surrogates.adapt import adapt_hlsyn_kernel

        with threadpool_limits(limits=1, user_api="openmp"):
            record, path = adapt_hlsyn_kernel(kernel, frame, store_root=store_path)
    except (ValueError, LookupError) as exc:
        raise click.ClickException(str(exc)) from None
    held = (
        f"{record.heldout_rmse:.3f} ({record.heldout_method}; each design predicted by a correction that did not "
        "see it)"
        if record.heldout_rmse is not None
        else f"not measured ({record.heldout_method})"
    )
    click.echo(
        f"adapted kernel {kernel} from {record.n_designs} designs on {record.model_name} v{record.model_version}: "
        f"summed RMSE (HLSyn's 5 targets) held out {held}"
    )
    click.echo(
        f"on the {record.n_designs} fitted designs: {record.fit_rmse_before:.3f} (zero-shot) -> "
        f"{record.fit_rmse_after:.3f} (not an estimate of the error on new designs)"
    )
    if record.correction.loop_source:
        click.echo(f"loop-nest features: {record.correction.loop_source}")
    click.echo(f"saved {path}  (fit {record.fit_seconds:.2f} s, command {time.perf_counter() - t0:.2f} s)")


@click.command()
@click.option(
    "--task", type=click.Choice(["latency", "gemm", "fpga-hlsyn"]), default="latency", show_default=True
)
@click.option("--device", default=None, help="Name of the new device (latency, gemm; not a known one).")
@click.option("--kernel", default=None, help="Name of the new HLS kernel (fpga-hlsyn).")
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
@store_option
@click.pass_context
def adapt(
    ctx: click.Context, task: str, device: str | None, kernel: str | None, measurements: str, version: str | None,
    store_path: Path | str | None,
) -> None:  # fmt: skip
    """Adapt a predictor to an unseen device or HLS kernel from a handful of measurements (under 2 s).

    \b
    latency:    --device D; columns space, arch_key, latency_ms (10 HELP reference archs + a few more is best)
    gemm:       --device D; columns op, m, n, k, batch, dtype, runtime_ms
    fpga-hlsyn: --kernel K; columns pragmas (JSON object), cycles, lut, ff, dsp, bram (+ tool); 20 designs
                is HLSyn's protocol (see `hws bench fpga-hlsyn-fewshot`)
    The adaptation is remembered with the model version it was adapted from; an adapted kernel
    (fpga-hlsyn) is never overwritten.
    """
    if task == "fpga-hlsyn":
        if kernel is None or device is not None or version is not None:
            raise click.UsageError("--task fpga-hlsyn takes --kernel (not --device or --version)")
        ctx.invoke(adapt_fpga_hlsyn, kernel=kernel, measurements=measurements, store_path=store_path)
        return
    if device is None or kernel is not None:
        raise click.UsageError(f"--task {task} takes --device (not --kernel)")
    if task == "latency":
        ctx.invoke(adapt_latency, device=device, measurements=measurements, version=version,
                   store_path=store_path)  # fmt: skip
        return
    if version is not None:
        raise click.BadParameter(
            f"--version is supported for --task latency only, not {task!r}", param_hint="--version"
        )
    ctx.invoke(adapt_gemm, device=device, measurements=measurements, store_path=store_path)
