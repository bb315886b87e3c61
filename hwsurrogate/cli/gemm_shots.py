"""``hws predict gemm-shots``: which GEMM shapes to measure on a new GPU before ``hws adapt --task gemm``.

The choice is :func:`hwsurrogate.surrogates.fewshot.gemm.suggest_shapes` (greedy maximum
posterior variance of the adaptation's own Gaussian process); imported inside the command so
that ``--help`` stays fast.
"""

from __future__ import annotations

import click


@click.command("gemm-shots")
@click.option("--device", required=True, help="The new GPU (descriptors from the devices table or the file).")
@click.option(
    "--candidates",
    required=True,
    help="CSV/parquet/JSON of shapes you could measure: op, m, n, k (+ batch, dtype); descriptor "
    "columns (peak_fp32_gflops, mem_bw_gbs, cores, ...) when the device is not in the devices table.",
)
@click.option("-n", "count", default=10, show_default=True, help="How many shapes to suggest.")
@click.option("--out", default=None, help="Write the suggested shapes here (CSV) instead of printing them.")
def gemm_shots(device: str, candidates: str, count: int, out: str | None) -> None:
    """Which GEMM shapes to measure on a new GPU before `hws adapt --task gemm`.

    Picks COUNT of your candidate shapes that the adaptation learns most from (spread over
    sizes, aspect ratios and ops). Measure them, add a runtime_ms column, and run
    `hws adapt --task gemm --device DEVICE --measurements FILE`.
    """

    from hwsurrogate.settings import get_settings
    from hwsurrogate.surrogates.fewshot.gemm import AdaptationError, descriptors_for, suggest_shapes
    from hwsurrogate.surrogates.fewshot.measurements import read_measurements

    frame = read_measurements(candidates, error=AdaptationError)
    root = get_settings(fresh=True).store  # a directory or an s3:// URI
    desc = descriptors_for(device, frame, root)
    idx = suggest_shapes(frame, desc, count)
    keep = [c for c in ("op", "m", "n", "k", "batch", "dtype", "layout") if c in frame.columns]
    picked = frame[idx].select(keep)
    if out:
        picked.write_csv(out)
        click.echo(f"wrote {picked.height} shapes to {out}; add runtime_ms and run hws adapt --task gemm")
    else:
        click.echo(picked.write_csv())
