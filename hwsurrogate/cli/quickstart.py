"""``hws quickstart``: the whole loop on this machine with embedded defaults.

collect here (small GEMM sweep, a fingerprint, a few NB201 latencies) -> import the public data
when present -> train small/fast models -> start the service -> query it through
:class:`~hwsurrogate.client.HwsClient` (including adapting a predictor to this machine as an
unseen device) -> print the answers and where to look.

Every step calls a named function of the module that owns it. A step whose module is not
installed, whose inputs are missing (no public data, no model) or that fails is reported with
its reason and the loop carries on: it never crashes half-way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hwsurrogate.cli.options import store_option
from hwsurrogate.datasets.importers import IMPORTERS, import_available

if TYPE_CHECKING:
    import threading

    import polars as pl

    from hwsurrogate.datasets.store import DatasetStore

__all__ = ["DEFAULT_SOURCES", "POOR_ERROR", "Context", "Skip", "Step", "adaptation_report", "quickstart", "run_steps"]

#: Public sources imported by default (enough to train the latency and GEMM models quickly).
DEFAULT_SOURCES = ("help", "latbench", "gpperf")

#: an adapted prediction further than this (relative) from the measurement is called poor
POOR_ERROR = 0.25


class Skip(Exception):
    """A step cannot run here; the message says why."""


def _short_hostname() -> str:
    import socket

    return socket.gethostname().split(".")[0] or "host"


def _new_token() -> str:
    import secrets

    return secrets.token_urlsafe(18)


@dataclass
class Context:
    """What the steps share: the store, this host, the collected frames and the running service."""

    store: DatasetStore
    host: str = field(default_factory=_short_hostname)
    collected: dict[str, pl.DataFrame] = field(default_factory=dict)
    url: str | None = None
    token: str = field(default_factory=_new_token)
    server: Any = None
    server_thread: threading.Thread | None = None
    port: int = 0  #: 0: a free port, printed when the service starts

    @property
    def local_device(self) -> str:
        return f"local/{self.host}-cpu"


def _brief(result: object) -> str:
    """A training result in one line: its version / promotion / metrics fields when it has them."""
    fields = {k: getattr(result, k) for k in ("version", "promoted", "run_id") if hasattr(result, k)}
    return ", ".join(f"{k}={v}" for k, v in fields.items()) or str(result)[:200]


# ------------------------------------------------------------------------------------ collect
def step_collect_gemm(ctx: Context) -> str:
    from hwsurrogate.datasets.collectors.gemm import collect_gemm, sweep_shapes

    shapes = sweep_shapes("random", n_shapes=24, min_dim=32, max_dim=512, seed=0)
    frame = collect_gemm(shapes, backend="numpy", min_time_s=0.05, min_samples=5, measure_energy=False)
    added = ctx.store.append("gemm", frame, partition="collector:gemm")
    ctx.collected["gemm"] = frame
    return f"{frame.height} GEMM shapes timed on {frame['device_id'][0]} ({added} new rows)"


def step_collect_fingerprint(ctx: Context) -> str:
    from hwsurrogate.datasets.collectors.fingerprint import collect_fingerprint

    frame = collect_fingerprint(quick=True)
    ctx.store.append("devices", frame, partition="collector:fingerprint")
    ctx.collected["devices"] = frame
    return f"fingerprint of {frame['device_id'][0]}: {frame['name'][0]}"


def step_collect_latency(ctx: Context) -> str:
    from hwsurrogate.datasets.collectors.dnn_latency import collect_latency, random_arch_keys

    keys = random_arch_keys("nb201", 12, seed=0)
    # one thread: on a 2-core machine two threads read 288 ms with an IQR of 224 ms, one thread 6.4 ms
    frame = collect_latency("nb201", keys, repeats=5, warmup=2, threads=1)
    ctx.store.append("latency", frame, partition="collector:latency")
    ctx.collected["latency"] = frame
    med = frame["latency_ms"].median()
    return f"{frame.height} NB201 architectures measured (median {med:.2f} ms)"


# ------------------------------------------------------------------------------------- import
def step_import(ctx: Context, sources: tuple[str, ...]) -> str:
    from hwsurrogate.progress import make_progress

    done, skipped = [], []
    with make_progress() as progress:
        task = progress.add_task("import", total=len(sources))
        for outcome in import_available(sources, store=ctx.store):
            if outcome.report is not None:
                done.append(f"{outcome.source} ({outcome.report.rows})")
            else:
                skipped.append(f"{outcome.source}: {outcome.skipped or outcome.error}")
            progress.advance(task)
    if not done:
        raise Skip("; ".join(skipped) or "no sources requested")
    return "imported " + ", ".join(done) + (f"; skipped {'; '.join(skipped)}" if skipped else "")


# -------------------------------------------------------------------------------------- train
def step_train_gemm(ctx: Context) -> str:
    from hwsurrogate.surrogates.training.gemm import train_gemm_model

    return f"hws-gemm: {_brief(train_gemm_model(ctx.store))}"


def step_train_latency(ctx: Context) -> str:
    import polars as pl

    from hwsurrogate.surrogates.training.latency import train_latency_model

    # the imported devices only: this machine's handful of collected rows is what `adapt` is for
    imported = [s for s in ctx.store.read("latency", space="nb201")["source"].unique().to_list()
                if not s.startswith(("collector:", "upload:"))]  # fmt: skip
    frame = ctx.store.read("latency", space="nb201", source=imported) if imported else pl.DataFrame()
    if frame.height == 0:
        raise Skip("no imported NB201 latency rows in the store (import help/latbench first)")
    return f"hws-latency: {_brief(train_latency_model(frame, model='tree', max_train_archs=1000))}"


def step_train_fewshot(ctx: Context) -> str:
    from hwsurrogate.surrogates.training.fewshot import train_fewshot_model

    if ctx.store.scan("latency", space="nb201").select("device_id").unique().collect().height < 2:
        raise Skip("few-shot meta-training needs NB201 latencies of >= 2 source devices (import help)")
    res = train_fewshot_model(["nb201"], store_root=ctx.store.root)
    state = "champion" if res.promoted else "kept the current champion"
    return f"hws-fewshot-latency v{res.version} meta-trained ({state}) and exported for adaptation"


# -------------------------------------------------------------------------------------- serve
def step_serve(ctx: Context) -> str:
    import socket
    import threading

    import uvicorn

    from hwsurrogate.client import HwsClient
    from hwsurrogate.service.app import ServiceConfig, create_app

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", ctx.port))
        except OSError as exc:
            raise RuntimeError(f"port {ctx.port} is not free ({exc.strerror}); pick another with --port") from None
        port = s.getsockname()[1]
    app = create_app(ServiceConfig(store=ctx.store.root, token=ctx.token))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="hws-serve", daemon=True)
    thread.start()
    ctx.url, ctx.server, ctx.server_thread = f"http://127.0.0.1:{port}", server, thread
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start")
        time.sleep(0.1)
    with HwsClient(ctx.url) as client:
        served = [f"{m['task']} v{m['version']}" for m in client.models() if m["available"]]
    return f"serving at {ctx.url} (docs {ctx.url}/docs); models: {', '.join(served) or 'none yet'}"


def _client(ctx: Context) -> Any:
    from hwsurrogate.client import HwsClient

    if ctx.url is None:
        raise Skip("the service is not running")
    return HwsClient(ctx.url, ctx.token, client_name="quickstart")


def step_query_gemm(ctx: Context) -> str:
    with _client(ctx) as client:
        if not any(m["task"] == "gemm" and m["available"] for m in client.models()):
            raise Skip("no gemm model is served")
        shapes = [(256, 256, 256), (1024, 1024, 1024), (4096, 1024, 512)]
        gemm = ctx.collected.get("gemm")
        device = gemm["device_id"][0] if gemm is not None else ctx.local_device
        qs = [{"device": device, "m": m, "n": n, "k": k, "dtype": "fp32"} for m, n, k in shapes]
        out = client.predict_gemm(qs)
    lines = [f"  {m}x{n}x{k} fp32 on {device}: {p['runtime_ms']:.3f} ms"
             for (m, n, k), p in zip(shapes, out["predictions"], strict=True)]  # fmt: skip
    return f"{out['model']['name']} v{out['model']['version']}:\n" + "\n".join(lines)


def step_upload(ctx: Context) -> str:
    frame = ctx.collected.get("gemm")
    if frame is None:
        raise Skip("no GEMM rows were collected here")
    with _client(ctx) as client:
        first = client.upload_rows("gemm", frame)
        again = client.upload_rows("gemm", frame)
    return (
        f"uploaded {first['received']} collected rows: {first['added']} added, {first['duplicates']} already "
        f"stored; re-sent: {again['added']} added (idempotent by measurement_id)"
    )


def step_adapt_this_machine(ctx: Context) -> str:
    frame = ctx.collected.get("latency")
    if frame is None or frame.height < 5:
        raise Skip("needs >= 5 NB201 latencies measured here (collect step)")
    device = f"unseen/{ctx.host}-cpu"
    support, held_out = frame.head(8), frame.slice(8)
    measurements = [{"space": "nb201", "arch_key": k, "latency_ms": v}
                    for k, v in zip(support["arch_key"], support["latency_ms"], strict=True)]  # fmt: skip
    from hwsurrogate.client import ServiceError

    with _client(ctx) as client:
        try:
            reg = client.register_device(device, measurements=measurements)
        except ServiceError as exc:
            if exc.status_code == 503:  # no meta-trained few-shot model: a missing piece, not a failure
                raise Skip(str(exc.detail)) from None
            raise
        pred = client.predict_latency(device, "nb201", arch_keys=held_out["arch_key"].to_list())
    predicted = [p["latency_ms"] for p in pred["predictions"]]
    return (f"adapted {device} from {reg['n_measurements']} measurements in {reg['adapt_seconds']:.2f} s; "
            "held-out architectures:\n" + adaptation_report(held_out["latency_ms"].to_list(), predicted))  # fmt: skip


def adaptation_report(measured: list[float], predicted: list[float], *, poor: float = POOR_ERROR) -> str:
    """One line per held-out architecture (measured, predicted, ratio, error), then an honest verdict.

    A prediction further than ``poor`` (relative) from its measurement is marked poor, and the
    verdict says when the median error is above it, with what usually causes it.
    """
    import statistics

    lines, errors = [], []
    for m, p in zip(measured, predicted, strict=True):
        err = abs(p - m) / m
        errors.append(err)
        mark = "  <- poor" if err > poor else ""
        lines.append(f"  measured {m:.2f} ms, predicted {p:.2f} ms (ratio {p / m:.2f}, error {err:.0%}){mark}")
    if not errors:
        return "no held-out architectures to check"
    median = statistics.median(errors)
    n_poor = sum(e > poor for e in errors)
    if median > poor:
        verdict = (f"POOR adaptation: median error {median:.0%} (> {poor:.0%}), {n_poor}/{len(errors)} predictions "
                   "poor. Usual causes: too few or noisy measurements (measure HELP's 10 references plus 10 "
                   "others with `hws collect latency --references --random 10 --out m.csv`), or a device "
                   "unlike the source devices.")  # fmt: skip
    else:
        verdict = f"median error {median:.0%} (<= {poor:.0%}); {n_poor}/{len(errors)} predictions poor"
    return "\n".join(lines) + "\n  " + verdict


def step_query_latency(ctx: Context) -> str:
    import polars as pl

    with _client(ctx) as client:
        if not any(m["task"] == "latency" and m["available"] for m in client.models()):
            raise Skip("no latency model is served")
        lat = ctx.store.scan("latency", space="nb201").filter(pl.col("source") != "collector:latency")
        sample = lat.select("device_id", "arch_key", "latency_ms").head(3).collect()
        if sample.height == 0:
            raise Skip("no imported NB201 rows to compare with")
        device = sample["device_id"][0]
        out = client.predict_latency(device, "nb201", arch_keys=sample["arch_key"].to_list())
    lines = [f"  measured {m:.2f} ms, predicted {p['latency_ms']:.2f} ms"
             for m, p in zip(sample["latency_ms"], out["predictions"], strict=True)]  # fmt: skip
    return f"{device} ({out['model']['name']} v{out['model']['version']}):\n" + "\n".join(lines)


# ------------------------------------------------------------------------------------- runner
@dataclass
class Step:
    name: str
    run: Callable[[Context], str]


def run_steps(ctx: Context, steps: list[Step]) -> list[tuple[str, str, str]]:
    """Run every step; returns (name, status, message). A failing step never stops the loop."""
    results = []
    for i, step in enumerate(steps, 1):
        click.secho(f"[{i}/{len(steps)}] {step.name} ...", bold=True, err=True)
        t0 = time.perf_counter()
        try:
            msg, status = step.run(ctx), "ok"
        except Skip as exc:
            msg, status = str(exc), "skipped"
        except ImportError as exc:  # a piece this build does not have: a missing piece, not a failure
            msg, status = f"not available in this build ({type(exc).__name__}: {exc})", "skipped"
        except Exception as exc:  # noqa: BLE001 - reported, and the loop carries on
            msg, status = f"{type(exc).__name__}: {exc}", "failed"
        colour = {"ok": "green", "skipped": "yellow", "failed": "red"}[status]
        click.secho(f"    {status} ({time.perf_counter() - t0:.1f} s): {msg}", fg=colour, err=True)
        results.append((step.name, status, msg))
    return results


@click.command()
@store_option
@click.option("--skip-import", is_flag=True, help="Do not import the public data.")
@click.option("--skip-collect", is_flag=True, help="Do not measure on this machine.")
@click.option("--skip-train", is_flag=True, help="Use the models already registered.")
@click.option(
    "--sources",
    default=",".join(DEFAULT_SOURCES),
    show_default=True,
    help=f"Public sources to import (comma-separated; 'all' = {', '.join(IMPORTERS)}).",
)
@click.option("--keep-serving", is_flag=True, help="Leave the service running at the end (Ctrl-C stops it).")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port of the service it starts on 127.0.0.1 (0: a free one, printed).")  # fmt: skip
def quickstart(
    store_path: Path | str | None,
    skip_import: bool,
    skip_collect: bool,
    skip_train: bool,
    sources: str,
    keep_serving: bool,
    port: int,
) -> None:
    """Run the whole loop on this machine: collect, import, train, serve, query, adapt.

    Steps whose pieces are missing (module not installed, no public data under
    HWSURROGATE_DATA_DIR, no model) are skipped with the reason. Aim: under 10 minutes on a
    laptop CPU.
    """
    from hwsurrogate.datasets.store import DatasetStore

    store = DatasetStore(store_path)
    ctx = Context(store=store, port=port)
    click.echo(f"store: {store.root if store.is_remote else Path(store.root).resolve()}", err=True)
    chosen = (
        tuple(IMPORTERS) if sources == "all" else tuple(s.strip() for s in sources.split(",") if s.strip())
    )
    steps: list[Step] = []
    if not skip_collect:
        steps += [
            Step("collect a small GEMM sweep here", step_collect_gemm),
            Step("collect this machine's fingerprint", step_collect_fingerprint),
            Step("collect NB201 latencies here", step_collect_latency),
        ]
    if not skip_import:
        steps.append(Step("import public data", lambda c: step_import(c, chosen)))
    if not skip_train:
        steps += [
            Step("train the GEMM model", step_train_gemm),
            Step("train the latency model", step_train_latency),
            Step("meta-train few-shot adaptation", step_train_fewshot),
        ]
    steps += [
        Step("start the service", step_serve),
        Step("predict GEMM runtimes", step_query_gemm),
        Step("upload the collected rows (twice)", step_upload),
        Step("predict latency on an imported device", step_query_latency),
        Step("adapt to this machine as an unseen device", step_adapt_this_machine),
    ]
    t0 = time.perf_counter()
    results = run_steps(ctx, steps)
    summary = store.summary()
    click.echo("\nstore now holds:")
    for kind, entry in summary.items():
        click.echo(f"  {kind:8s} {entry['rows']:>10,} rows  {entry['sources']}")
    n_ok = sum(1 for _, s, _ in results if s == "ok")
    click.echo(f"\n{n_ok}/{len(results)} steps ran in {time.perf_counter() - t0:.0f} s. Where to look:")
    click.echo("  MLflow runs and models:  mlflow ui --backend-store-uri sqlite:///mlflow.db")
    serving = ctx.server is not None and keep_serving
    if serving:
        click.echo(f"  API docs:                {ctx.url}/docs (and {ctx.url}/redoc)")
    click.echo("  serve it yourself:        hws serve --port 8000, then http://127.0.0.1:8000/docs")
    if ctx.server is not None:
        if not keep_serving:
            click.echo(f"the service at {ctx.url} stops now (--keep-serving leaves it running)")
        else:
            click.echo(f"serving at {ctx.url} with write token {ctx.token}; Ctrl-C to stop")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        ctx.server.should_exit = True
        if ctx.server_thread is not None:  # a server thread still running while the interpreter
            ctx.server_thread.join(timeout=30)  # shuts down crashed it at exit (segfault, rc 139)
