"""Issue 15: many readers of large pages must not blow up the server's memory or its liveness probe.

    hws bench store-readers [--store DIR] [--clients 16] [--rows 50000] [--duration 20] [--json FILE]
    python benchmarks/store_readers.py ...           (the same command)

Starts ``hws serve`` (read-only, on a free 127.0.0.1 port, never 8000) over a store holding
the public data (``--store``, or every source imported into a temporary store from
``$HWSURROGATE_DATA_DIR``). Then ``--clients`` readers, each one keep-alive connection in
a separate client process, download ``GET /v1/datasets/<kind>/rows?limit=<rows>`` pages at
random offsets, back to back, for ``--duration`` seconds, while this process polls
``GET /healthz`` every 50 ms and samples the server's RSS (psutil, children included) every
50 ms. The first page of every reader is parsed and must hold exactly ``--rows`` rows.

Reported against the targets: peak server RSS < 600 MB and ``/healthz`` p99 < 100 ms under
the load; also the idle RSS and /healthz, the pages and rows per second the readers got, and
the load average at the start and end (the 2-core development machine is shared: read
timings taken under load as upper bounds).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click

from hwsurrogate.benchmarks.report import BenchReport, json_option
from hwsurrogate.datasets.schemas import KINDS

BENCHMARK = "store-readers"
RSS_TARGET_MB = 600.0
HEALTHZ_P99_TARGET_MS = 100.0
POLL_S = 0.05


def _load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _free_port() -> int:
    """A free loopback port other than 8000 (the tests' port)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port != 8000:
            return port


def _percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _start_server(store: Path, port: int, *, preload_models: bool = False) -> subprocess.Popen[bytes]:
    """``hws serve --read-only`` over ``store``; returns once /healthz answers (or raises)."""
    import httpx

    cmd = [sys.executable, "-m", "hwsurrogate.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--store", str(store), "--read-only", "--log-level", "warning"]  # fmt: skip
    if preload_models:
        cmd.append("--preload-models")
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise click.ClickException(f"hws serve exited during start-up (status {proc.returncode})")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise click.ClickException("hws serve did not answer /healthz within 180 s")


def _allocator_env(pid: int) -> dict[str, str | None]:
    """The allocator variables the server process started with (``/proc/<pid>/environ``; ``hws
    serve`` sets defaults for those the caller did not); {} where /proc cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    env = dict(item.decode(errors="replace").split("=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k: env.get(k) for k in ("MALLOC_ARENA_MAX", "_RJEM_MALLOC_CONF", "ARROW_DEFAULT_MEMORY_POOL")}


def _served_models(base: str) -> dict[str, str | None]:
    """{task: served version, or None where unavailable} from ``GET /v1/models``."""
    import httpx

    models = httpx.get(f"{base}/v1/models", timeout=60).json()["models"]
    return {m["task"]: m.get("version") if m.get("available") else None for m in models}


def _warm_predictions(base: str, store: Path) -> dict[str, int]:
    """One prediction per model the server holds before the readers come: a 1-architecture latency
    query per (device, space) of the store's latency table (one tree model each), a 1-row GEMM
    query per device of its gemm table. Returns the requests answered (200) and refused per task."""
    import httpx
    import polars as pl

    from hwsurrogate.datasets.store import DatasetStore

    st = DatasetStore(store)
    lat = st.scan("latency").group_by("device_id", "space").agg(pl.col("arch_key").first()).collect()
    gemm = (
        st.scan("gemm").group_by("device_id")
        .agg(pl.col("op", "m", "n", "k", "batch", "dtype").first()).collect()
    )  # fmt: skip
    out = {"latency answered": 0, "latency refused": 0, "gemm answered": 0, "gemm refused": 0}
    with httpx.Client(base_url=base, timeout=120) as client:
        for dev, space, arch in lat.iter_rows():
            body = {"device": dev, "space": space, "archs": [{"arch_key": arch}]}
            ok = client.post("/v1/predict/latency", json=body).status_code == 200
            out["latency answered" if ok else "latency refused"] += 1
        for dev, op, m, n, k, batch, dtype in gemm.iter_rows():
            query = {"device": dev, "op": op, "m": m, "n": n, "k": k, "batch": batch, "dtype": dtype}
            ok = client.post("/v1/predict/gemm", json={"queries": [query]}).status_code == 200
            out["gemm answered" if ok else "gemm refused"] += 1
    return out


class _RssSampler(threading.Thread):
    """Peak resident memory of a process and all of its children, sampled every ``POLL_S``."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.peak_mb = 0.0
        self.samples: list[float] = []
        self.stop = threading.Event()

    def sample(self) -> float:
        import psutil

        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass  # a child that just exited
        mb = total / 2**20
        self.samples.append(mb)
        self.peak_mb = max(self.peak_mb, mb)
        return mb

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            time.sleep(POLL_S)


def _poll_healthz(base: str, seconds: float, *, until: Any = None) -> list[float]:
    """Latencies (ms) of GET /healthz every ``POLL_S`` for ``seconds`` (and on until the event
    ``until`` is set); a non-200 is an error."""
    import httpx

    out: list[float] = []
    with httpx.Client(base_url=base, timeout=30) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end or (until is not None and not until.is_set()):
            t0 = time.perf_counter()
            r = client.get("/healthz")
            out.append((time.perf_counter() - t0) * 1e3)
            if r.status_code != 200:
                raise click.ClickException(f"/healthz answered {r.status_code} under load: {r.text[:200]}")
            time.sleep(POLL_S)
    return out


def _reader(base: str, kind: str, rows: int, total: int, seconds: float, seed: int) -> dict[str, Any]:
    """One client: pages of ``rows`` rows at random offsets, back to back, for ``seconds``."""
    import httpx

    rng = random.Random(seed)
    pages: list[float] = []
    nbytes = 0
    errors: list[str] = []
    t_start = time.monotonic()
    first: tuple[int, bytes] | None = None
    with httpx.Client(base_url=base, timeout=120) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            offset = rng.randrange(0, max(total - rows, 0) + 1)
            params = {"limit": rows, "offset": offset}
            t0 = time.perf_counter()
            with client.stream("GET", f"/v1/datasets/{kind}/rows", params=params) as r:
                if first is None:
                    body = r.read()
                    nbytes += len(body)
                    first = (offset, body)
                else:
                    for chunk in r.iter_raw(1 << 16):
                        nbytes += len(chunk)
            pages.append((time.perf_counter() - t0) * 1e3)
            if r.status_code != 200:
                errors.append(f"offset {offset}: HTTP {r.status_code}")
    t_end = time.monotonic()
    if first is not None and not errors:  # parsed after the loop: a slow parse would idle the connection
        offset, body = first
        got, want = len(json.loads(body)["rows"]), min(rows, total - offset)
        if got != want:
            errors.append(f"offset {offset}: {got} rows, expected {want}")
    return {"pages_ms": pages, "bytes": nbytes, "errors": errors, "wall_s": t_end - t_start}


def _readers_process(args: tuple[str, str, int, int, float, int], out: Any, done: Any) -> None:
    """Runs ``clients`` reader threads (one process for all of them) and sends their results back."""
    base, kind, rows, total, seconds, clients = args
    results: list[dict[str, Any]] = [{} for _ in range(clients)]

    def one(i: int) -> None:
        try:
            results[i] = _reader(base, kind, rows, total, seconds, seed=i)
        except Exception as exc:  # reported, never swallowed
            results[i] = {
                "pages_ms": [],
                "bytes": 0,
                "errors": [f"{type(exc).__name__}: {exc}"],
                "wall_s": 0.0,
            }

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    out.put(results)


def run(
    store: Path,
    *,
    kind: str,
    clients: int,
    rows: int,
    duration: float,
    preload_models: bool = False,
    warm_predictions: bool = False,
) -> BenchReport:
    import httpx

    report = BenchReport(
        BENCHMARK,
        protocol=f"hws serve over the public-data store; {clients} clients each downloading {rows:,}-row "
        f"JSON pages of {kind} at random offsets for {duration:.0f} s while /healthz is polled every "
        f"{POLL_S * 1e3:.0f} ms; server RSS (children included) sampled every {POLL_S * 1e3:.0f} ms; "
        + (
            "models loaded at start-up (--preload-models: the registry's champions, from their local copies)"
            if preload_models
            else "models never requested (they load on first need)"
        )
        + (
            "; then one prediction per latency device/space model and per GEMM device before the readers "
            "(--warm-predictions: every tree model built and in use)"
            if warm_predictions
            else ""
        ),
    )
    load_start = _load_average()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    proc = _start_server(store, port, preload_models=preload_models)
    ready_s = time.monotonic() - t0
    try:
        allocator = _allocator_env(proc.pid)
        served = _served_models(base) if preload_models else None
        warmed = _warm_predictions(base, store) if warm_predictions else None
        sampler = _RssSampler(proc.pid)
        total = int(httpx.get(f"{base}/v1/datasets/{kind}", timeout=120).json()["rows"])
        if total < rows:
            raise click.ClickException(
                f"the store's {kind} table has {total:,} rows, fewer than --rows {rows:,}"
            )
        idle_healthz = _poll_healthz(base, 3.0)
        idle_rss = sampler.sample()
        sampler.start()
        ctx = multiprocessing.get_context("spawn")
        queue: Any = ctx.Queue()
        done = ctx.Event()
        readers = ctx.Process(
            target=_readers_process, args=((base, kind, rows, total, duration, clients), queue, done)
        )
        readers.start()
        time.sleep(0.5)  # the readers' first requests are in flight
        busy_healthz = _poll_healthz(base, duration - 1.0, until=done)
        results = queue.get(timeout=600)
        readers.join(60)
        sampler.stop.set()
        sampler.join(5)
        load_end = _load_average()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    errors = [e for r in results for e in r["errors"]]
    if errors:
        raise click.ClickException(f"{len(errors)} reader errors, e.g. {errors[:3]}")
    pages_ms = [t for r in results for t in r["pages_ms"]]
    pages = len(pages_ms)
    wall = max(r["wall_s"] for r in results)  # the last page ends after --duration: it counts in full
    state = ", models preloaded and warmed" if warm_predictions else ", models preloaded" if preload_models else ""
    split = f"{clients} readers x {rows:,} rows ({kind})" + state
    report.add(
        "server peak RSS MB", split, round(sampler.peak_mb, 1), target=RSS_TARGET_MB, n=len(sampler.samples)
    )
    report.add("/healthz p99 ms", split, round(_percentile(busy_healthz, 99), 1), target=HEALTHZ_P99_TARGET_MS,
               n=len(busy_healthz))  # fmt: skip
    report.add("/healthz p50 ms", split, round(_percentile(busy_healthz, 50), 1), n=len(busy_healthz))
    report.add("rows/s to all readers", split, round(pages * rows / wall), n=pages)
    report.add("page p50 ms", split, round(_percentile(pages_ms, 50), 1), n=pages)
    idle = "idle, before the readers" + state
    report.add("server RSS MB", idle, round(idle_rss, 1))
    report.add("/healthz p99 ms", idle, round(_percentile(idle_healthz, 99), 1),
               n=len(idle_healthz))  # fmt: skip
    report.data = {
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load_start,
        "load_average_at_end": load_end,
        "store": str(store),
        f"{kind}_rows": total,
        "server_ready_s": round(ready_s, 1),
        "server_allocator_env": allocator,
    }
    if served is not None:
        report.data["models_served"] = served
    if warmed is not None:
        report.data["warm_up_requests"] = warmed
    report.details = {
        "pages": pages,
        "reading_wall_s": round(wall, 1),
        "mb_per_s_to_readers": round(sum(r["bytes"] for r in results) / 2**20 / wall, 1),
        "page_ms": {
            "p50": round(_percentile(pages_ms, 50), 1),
            "p90": round(_percentile(pages_ms, 90), 1),
            "max": round(max(pages_ms), 1) if pages_ms else None,
        },
        "healthz_ms": {
            "p50": round(_percentile(busy_healthz, 50), 1),
            "p90": round(_percentile(busy_healthz, 90), 1),
            "p99": round(_percentile(busy_healthz, 99), 1),
            "max": round(max(busy_healthz), 1),
        },
        "rss_mb": {
            "idle": round(idle_rss, 1),
            "median": round(statistics.median(sampler.samples), 1),
            "peak": round(sampler.peak_mb, 1),
        },
    }
    return report


def _import_all(root: Path, data_dir: Path) -> None:
    from hwsurrogate.datasets.importers import IMPORTERS, default_path, import_source
    from hwsurrogate.datasets.store import DatasetStore

    store = DatasetStore(root)
    for source in IMPORTERS:
        path = default_path(source, data_dir)
        if path.exists():
            import_source(source, path, store=store)


@click.command(BENCHMARK)
@click.option("--store", "store_root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Store holding the public data (default: import it into a temporary store).")  # fmt: skip
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Public data folder for that import (default: $HWSURROGATE_DATA_DIR).")  # fmt: skip
@click.option(
    "--kind", type=click.Choice(KINDS), default="gemm", show_default=True, help="Table the readers download."
)
@click.option("--clients", type=click.IntRange(1, 256), default=16, show_default=True)
@click.option(
    "--rows", type=click.IntRange(1, 50_000), default=50_000, show_default=True, help="Rows per page."
)
@click.option("--duration", type=click.FloatRange(3, 3600), default=20.0, show_default=True,
              help="Seconds of reading.")  # fmt: skip
@click.option("--preload-models", is_flag=True,
              help="Start the server with --preload-models (MLflow and the registered champions in memory "
              "before the readers; default: models never requested, as a dataset-only server).")  # fmt: skip
@click.option("--warm-predictions", is_flag=True,
              help="With --preload-models: one prediction per latency device/space model and per GEMM device "
              "before the readers, so every tree model is built and in use (a prediction server that has been "
              "answering); compiled libraries built meanwhile load at a later prediction, not measured here.")  # fmt: skip
@json_option(BENCHMARK)
def bench_store_readers(
    store_root: Path | None,
    data_dir: Path | None,
    kind: str,
    clients: int,
    rows: int,
    duration: float,
    preload_models: bool,
    warm_predictions: bool,
    json_path: str | None,
) -> None:
    """Server RSS and /healthz latency while many clients download 50k-row pages."""
    try:
        import psutil  # noqa: F401
    except ImportError:
        raise click.ClickException("this benchmark needs psutil (pip install psutil)") from None
    os.environ.setdefault("HWSURROGATE_NO_PROGRESS", "1")
    if warm_predictions and not preload_models:
        raise click.BadParameter("needs --preload-models", param_hint="--warm-predictions")
    if store_root is not None:
        if not (store_root / kind / "_delta_log").is_dir():
            raise click.BadParameter(f"{store_root} has no {kind} table; import the public data first",
                                     param_hint="--store")  # fmt: skip
        report = run(store_root, kind=kind, clients=clients, rows=rows, duration=duration,
                     preload_models=preload_models, warm_predictions=warm_predictions)  # fmt: skip
    else:
        folder = data_dir or (
            Path(os.environ["HWSURROGATE_DATA_DIR"]) if os.environ.get("HWSURROGATE_DATA_DIR") else None
        )
        if folder is None or not folder.is_dir():
            raise click.BadParameter("pass --store, or --data-dir / $HWSURROGATE_DATA_DIR to import the public data",
                                     param_hint="--store")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="hws-readers-bench-") as tmp:
            click.echo(f"importing the public data from {folder} ...", err=True)
            _import_all(Path(tmp) / "store", folder)
            report = run(Path(tmp) / "store", kind=kind, clients=clients, rows=rows, duration=duration,
                         preload_models=preload_models, warm_predictions=warm_predictions)  # fmt: skip
    report.emit(json_path)
    if not all(r.met for r in report.rows if r.met is not None):
        raise SystemExit(1)


if __name__ == "__main__":
    bench_store_readers()
