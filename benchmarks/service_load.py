"""Load benchmark of ``hws serve`` against a real uvicorn process on loopback.

Measures, on this machine:

1. single-prediction latency (POST /v1/predict/gemm with one query) from 32 concurrent
   clients for 60 s, each sending 5 requests/s (160 req/s offered, open loop: latency counts
   from when a request was due): p50/p90/p99 and 5xx. Targets: p50 <= 5 ms, p99 <= 25 ms,
   zero 5xx.
2. the throughput limit: the same 32 clients in a closed loop (each sends its next request as
   soon as the last is answered). Here p50 is 32 / throughput by Little's law, whatever the
   server does, so it is reported, not held to the latency target.
3. a 10,000-row GEMM batch over HTTP vs the same batch through the in-process model
   (``load_predictor('gemm').predict``). Target: HTTP <= 1.5x in-process.
4. the HTTP floor: GET /healthz in a closed loop (no model, no body).
5. the same two requests through the ASGI app called in this process (no uvicorn, no sockets):
   process CPU per request, ``clients`` requests at a time, after the server has stopped. It
   separates the service's own cost from the HTTP server's and is far less noisy than the phases
   above on a shared machine.

The served model is the project's own GEMM surrogate, trained by ``train_gemm_model`` on the
GPPerf RTX 4070 data into a private MLflow registry (``--use-existing`` serves your champion).
Load comes from asyncio streams (one keep-alive connection per client, pre-encoded requests)
so the generator leaves the server most of the second core.

    python benchmarks/service_load.py                        # ~3 minutes
    python benchmarks/service_load.py --duration 10 --saturation-duration 5
The JSON goes to bench-results/service-load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the in-process side runs with the server's OpenMP setting (``hws serve``'s defaults), so the
# 10k-row comparison measures HTTP, not how OpenMP threads wait on a busy machine; set before any
# OpenMP runtime loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.service.tiny_models (the one tiny-model recipe)

TOKEN = "bench-token-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def collect_numpy_gemm(n_shapes: int = 150, seed: int = 0) -> pl.DataFrame:
    """Time float32/float64 numpy matmuls of random shapes on this CPU (median of 5 runs)."""
    rng = np.random.default_rng(seed)
    host = socket.gethostname().split(".")[0]
    rows = []
    for _ in range(n_shapes):
        m, n, k = (int(2 ** rng.uniform(4, 10)) for _ in range(3))
        dtype = rng.choice(["fp32", "fp64"])
        a = rng.standard_normal((m, k)).astype(np.float32 if dtype == "fp32" else np.float64)
        b = rng.standard_normal((k, n)).astype(a.dtype)
        a @ b  # warm-up
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            a @ b
            times.append((time.perf_counter() - t0) * 1e3)
        rows.append({"device_id": f"local/{host}-cpu", "op": "gemm", "m": m, "n": n, "k": k, "batch": 1,
                     "dtype": str(dtype), "layout": "nn", "runtime_ms": float(np.median(times))})  # fmt: skip
    return pl.DataFrame(rows)


GPPERF_DEVICE = "gpperf/rtx4070"


def ensure_gemm_model(use_existing: bool, store: Path) -> dict[str, object]:
    """The model the server will answer with, and where it came from.

    ``use_existing``: the champion already registered in $MLFLOW_TRACKING_URI. Otherwise (default)
    the project's own GEMM surrogate, trained by ``train_gemm_model`` exactly as ``hws train gemm``
    does, on the GPPerf RTX 4070 data when $HWSURROGATE_DATA_DIR has it (runtime + power models:
    what a user serves), else on ~150 numpy GEMMs timed here (a small forest pipeline).
    """
    from hwsurrogate.surrogates.registry.loading import ModelNotFoundError, load_predictor

    if use_existing:
        try:
            p = load_predictor("gemm")
        except ModelNotFoundError as exc:
            raise SystemExit(f"--use-existing: {exc}") from None
        device = str(p.native.devices[0]) if p.native is not None else None
        return {"model_origin": "existing registered champion", "name": p.name, "version": p.version,
                "device": device}  # fmt: skip
    data_dir = Path(os.environ.get("HWSURROGATE_DATA_DIR", ROOT.parent / "shared" / "data"))
    if (data_dir / "gemm" / "gpperf_rtx4070").is_dir():
        from hwsurrogate.datasets.importers import import_source
        from hwsurrogate.datasets.store import DatasetStore
        from hwsurrogate.surrogates.training.gemm import GemmTrainConfig, train_gemm_model

        t0 = time.perf_counter()
        ds = DatasetStore(store)
        import_source("gpperf", data_dir / "gemm" / "gpperf_rtx4070", store=ds)
        res = train_gemm_model(ds, GemmTrainConfig())
        return {
            "model_origin": (
                f"trained here in {time.perf_counter() - t0:.0f} s by train_gemm_model (as `hws train gemm`) "
                "on GPPerf RTX 4070: runtime + power gradient-boosted trees on the shared feature pipeline"
            ),
            "name": "hws-gemm",
            "version": res.version,
            "device": GPPERF_DEVICE,
        }
    from tests.service.tiny_models import fit_gemm_pipeline, register_gemm_pipeline

    t0 = time.perf_counter()
    frame = collect_numpy_gemm()
    collect_s = time.perf_counter() - t0
    model = fit_gemm_pipeline(frame, ["runtime_ms"], n_estimators=100)
    version = register_gemm_pipeline(model, experiment="hws-bench-service")
    return {
        "model_origin": (
            f"no GPPerf data under {data_dir}: timed {frame.height} numpy GEMM shapes on this CPU in "
            f"{collect_s:.1f} s, fitted a 100-tree random-forest pipeline (runtime_ms only) and registered it"
        ),
        "name": "hws-gemm",
        "version": version,
        "device": str(frame["device_id"][0]),
    }


def start_server(store: Path, port: int) -> subprocess.Popen:
    """uvicorn on the app factory, with the process settings ``hws serve`` starts it with."""
    from hwsurrogate.service.process_env import server_environment

    env = {**os.environ, **server_environment(os.environ)}
    env.update(HWSURROGATE_STORE=str(store), HWSURROGATE_SERVICE_TOKEN=TOKEN)
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "hwsurrogate.service.app:create_app_from_env",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env)
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).raise_for_status()
            # models load at the first request needing one: /v1/models loads them (outside the timing)
            models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=120).json()["models"]
            if any(m["task"] == "gemm" and m["available"] for m in models):
                return proc
            raise RuntimeError("server is up but serves no gemm model")
        except httpx.HTTPError:
            time.sleep(0.25)
    proc.kill()
    raise RuntimeError("server did not start within 180 s")


def _cpu_s(pid: int) -> float:
    """User+system CPU seconds used so far by process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _gemm_model_calls(url: object) -> int | None:
    """How many model calls the server's GEMM model has made so far (``/v1/models``)."""
    import httpx

    gemm = next(m for m in httpx.get(f"{url}/v1/models").json()["models"] if m["task"] == "gemm")
    return gemm.get("model_calls")


def run_phase(proc: subprocess.Popen, *args: object, **kwargs: object) -> dict[str, object]:
    """One load phase plus the CPU each side spent per request (server process vs this client)
    and how many requests shared a model call (the server's request batching)."""
    calls0 = _gemm_model_calls(args[0])
    server0, client0 = _cpu_s(proc.pid), time.process_time()
    out = asyncio.run(load_loop(*args, **kwargs))  # type: ignore[arg-type]
    n = max(int(out["requests"]), 1)  # type: ignore[call-overload]
    out["server_cpu_ms_per_request"] = round((_cpu_s(proc.pid) - server0) * 1e3 / n, 3)
    out["client_cpu_ms_per_request"] = round((time.process_time() - client0) * 1e3 / n, 3)
    calls1 = _gemm_model_calls(args[0])
    if calls0 is not None and calls1 is not None:
        # the warm-up request of each client is counted in the calls, not in the requests
        out["gemm_model_calls"] = calls1 - calls0
        if not kwargs.get("floor") and calls1 > calls0:
            out["requests_per_model_call"] = round(n / (calls1 - calls0), 1)
    return out


async def _asgi_call(app: object, method: str, path: str, body: bytes) -> int:
    """One request through the ASGI ``app`` (no server); its status."""
    headers = [(b"host", b"127.0.0.1")]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}  # fmt: skip
    status = 0

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, object]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])  # type: ignore[call-overload]

    await app(scope, receive, send)  # type: ignore[operator]
    return status


def asgi_in_process(store: Path, device: str, clients: int, rounds: int = 150) -> dict[str, object]:
    """Process CPU per request of ``GET /healthz`` and of a single-GEMM ``POST`` through the ASGI
    app in this process: ``clients`` requests at a time (so the request batcher merges them as it
    does under the closed loop), ``rounds`` times, after 20 rounds of warm-up; best of 3."""
    from hwsurrogate.service.app import ServiceConfig, create_app

    pool = [json.dumps({"queries": [q]}).encode() for q in queries(512, device, seed=2)]

    async def run() -> dict[str, object]:
        app = create_app(ServiceConfig(store=store, token=TOKEN))
        out: dict[str, object] = {"clients": clients, "rounds": rounds}
        async with app.router.lifespan_context(app):
            app.state.models.ensure_loaded()
            for label, method, path in (("healthz", "GET", "/healthz"), ("gemm", "POST", "/v1/predict/gemm")):
                bodies = [b""] if method == "GET" else pool
                best = float("inf")
                for _ in range(3):
                    for r in range(20 + rounds):
                        if r == 20:
                            c0 = time.process_time()
                        sent = [bodies[(r * clients + i) % len(bodies)] for i in range(clients)]
                        statuses = await asyncio.gather(*(_asgi_call(app, method, path, b) for b in sent))
                        if any(s != 200 for s in statuses):
                            raise RuntimeError(f"in-process {path} answered {sorted(set(statuses))}")
                    best = min(best, (time.process_time() - c0) / (rounds * clients))
                out[f"{label}_cpu_us_per_request"] = round(best * 1e6, 1)
        return out

    return asyncio.run(run())


def queries(n: int, device: str, seed: int = 1) -> list[dict[str, object]]:
    """``n`` random GEMM queries on ``device`` in the range its model was trained on."""
    rng = np.random.default_rng(seed)
    gpperf = device == GPPERF_DEVICE
    dims = (2 ** rng.uniform(9, 13, size=(n, 3)) if gpperf else 2 ** rng.uniform(4, 10, size=(n, 3))).astype(
        int
    )
    dtypes = rng.choice(["fp32"] if gpperf else ["fp32", "fp64"], n)
    layouts = rng.choice(["nn", "nt", "tn", "tt"] if gpperf else ["nn"], n)
    return [
        {"device": device, "op": "gemm", "m": int(m), "n": int(nn), "k": int(k), "batch": 1,
         "dtype": str(d), "layout": str(lay)}
        for (m, nn, k), d, lay in zip(dims, dtypes, layouts, strict=True)
    ]  # fmt: skip


def _http_request(host: str, port: int, path: str, body: bytes | None) -> bytes:
    """One pre-encoded HTTP/1.1 keep-alive request (GET without a body, POST with a JSON one)."""
    if body is None:
        return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send ``request`` and read the whole response; returns its status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"content-length:")
    if at < 0:
        raise ConnectionError(f"response without Content-Length: {head[:80]!r}")
    length = int(lower[at + 15 : lower.index(b"\r\n", at)])
    await reader.readexactly(length)
    return status


async def load_loop(
    url: str,
    device: str,
    clients: int,
    duration: float,
    max_requests: int,
    *,
    floor: bool = False,
    rate_per_client: float | None = None,
) -> dict[str, object]:
    """Closed loop: each client sends its next request when the last one is answered.

    ``rate_per_client`` paces each client instead (open loop: one request every 1/rate s,
    staggered); latency then counts from when a request was *due*, so a slow answer that delays
    the next request is charged to it (no coordinated omission).

    ``floor=True`` sends GET /healthz instead (no model, no body): the HTTP stack's own floor here.

    Each client is one keep-alive connection driven by asyncio streams with pre-encoded requests:
    a load generator that costs ~0.1 ms of CPU per request, so on a 2-core machine it leaves the
    server its core (an httpx client costs ~1.5 ms per request).
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    pool = queries(512, device, seed=2)
    path = "/healthz" if floor else "/v1/predict/gemm"
    requests = [
        _http_request(host, int(port), path, None if floor else json.dumps({"queries": [q]}).encode())
        for q in pool
    ]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    error_types: dict[str, int] = {}
    sent = 0
    stop_at = 0.0

    async def worker(i: int) -> None:
        nonlocal sent, errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            await _roundtrip(reader, writer, requests[i % len(requests)])  # warm connection and paths
            await start.wait()
            j, k = i, 0
            due0 = time.perf_counter() + (i / clients / rate_per_client if rate_per_client else 0.0)
            while time.perf_counter() < stop_at and sent < max_requests:
                t0 = time.perf_counter()
                if rate_per_client:
                    due = due0 + k / rate_per_client
                    k += 1
                    if due > t0:
                        await asyncio.sleep(due - t0)
                    t0 = due
                sent += 1
                request = requests[j % len(requests)]
                j += clients
                try:
                    status = await _roundtrip(reader, writer, request)
                    latencies.append((time.perf_counter() - t0) * 1e3)
                    statuses[status] = statuses.get(status, 0) + 1
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors += 1
                    error_types[type(exc).__name__] = error_types.get(type(exc).__name__, 0) + 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
        finally:
            writer.close()

    start = asyncio.Event()
    tasks = [asyncio.create_task(worker(i)) for i in range(clients)]
    await asyncio.sleep(0.5)  # let every client connect and warm up
    t0 = time.perf_counter()
    stop_at = t0 + duration
    start.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    lat = np.array(latencies)
    return {
        "clients": clients,
        "mode": f"open loop, {rate_per_client} req/s per client" if rate_per_client else "closed loop",
        "load_generator": "asyncio streams, one keep-alive connection per client, pre-encoded requests",
        "duration_s": round(elapsed, 2),
        "requests": int(lat.size),
        "throughput_rps": round(lat.size / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p90_ms": round(float(np.percentile(lat, 90)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "max_ms": round(float(lat.max()), 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "n_5xx": sum(v for k, v in statuses.items() if k >= 500),
        "transport_errors": errors,
        "transport_error_types": error_types,
    }


def batch_comparison(url: str, device: str, n: int, repeats: int) -> dict[str, object]:
    import httpx

    from hwsurrogate.surrogates.registry.loading import load_predictor

    qs = queries(n, device, seed=3)
    frame = pl.DataFrame(qs).rename({"device": "device_id"})
    predictor = load_predictor("gemm")
    predictor.predict(frame)  # warm
    in_proc, http, server_model, server_handler, server_parse = [], [], [], [], []
    # both sides start from their input ready-made: a polars frame in process, JSON bytes over HTTP
    body = json.dumps({"queries": qs}).encode()
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=url, timeout=120) as client:
        client.post("/v1/predict/gemm", content=body, headers=headers).raise_for_status()  # warm
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = predictor.predict(frame)
            in_proc.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            r = client.post("/v1/predict/gemm", content=body, headers=headers)
            http.append(time.perf_counter() - t0)
            r.raise_for_status()
            timing = dict(p.split(";dur=") for p in r.headers["server-timing"].split(", "))
            server_model.append(float(timing["model"]))
            server_handler.append(float(timing["handler"]))
            server_parse.append(float(timing["parse"]))
    served = np.array([p["runtime_ms"] for p in r.json()["predictions"]])
    np.testing.assert_allclose(served, out["runtime_ms"].to_numpy(), rtol=1e-9)
    med_in, med_http = statistics.median(in_proc), statistics.median(http)
    one = frame.head(1)
    single = []
    for _ in range(50):
        t0 = time.perf_counter()
        predictor.predict(one)
        single.append(time.perf_counter() - t0)
    trees = served_tree_costs(predictor.native, one)
    return {
        "rows": n,
        "repeats": repeats,
        "in_process_ms_median": round(med_in * 1e3, 1),
        "http_ms_median": round(med_http * 1e3, 1),
        "ratio_http_over_in_process": round(med_http / med_in, 2),
        "server_model_ms_median": round(statistics.median(server_model), 1),
        "server_handler_ms_median": round(statistics.median(server_handler), 1),
        "server_parse_validate_ms_median": round(statistics.median(server_parse), 1),
        "target_ratio": 1.5,
        "in_process_single_row_ms_median": round(statistics.median(single) * 1e3, 2),
        "served_trees_one_row": trees,
        "same_answers": True,
    }


def served_tree_costs(native: object, one: pl.DataFrame) -> dict[str, float] | None:
    """One feature row through the served GEMM trees (runtime + power): treelite vs scikit-learn."""
    runtime = getattr(native, "runtime", None)
    if runtime is None or not hasattr(runtime, "model_"):
        return None  # not the project's GemmPyfunc (e.g. the forest pipeline fallback)
    import treelite.gtil
    from threadpoolctl import threadpool_limits

    from hwsurrogate.surrogates.models.tree_serving import to_treelite

    models = [m.model_ for m in (runtime, getattr(native, "power", None)) if m is not None]
    x, _ = runtime._features(one)
    calls = {
        "treelite_ms": [lambda t=to_treelite(m): treelite.gtil.predict(t, x, nthread=1) for m in models],
        "sklearn_ms": [lambda m=m: m.predict(x) for m in models],
    }
    calls["sklearn_1thread_ms"] = calls["sklearn_ms"]
    out: dict[str, float] = {"models": len(models)}
    for label, fns in calls.items():
        # scikit-learn on one OpenMP thread is how the service runs calls under 512 rows
        with threadpool_limits(limits=1 if label == "sklearn_1thread_ms" else None, user_api="openmp"):
            costs = []
            for fn in fns:
                runs = []
                for _ in range(200):
                    t0 = time.perf_counter()
                    fn()
                    runs.append(time.perf_counter() - t0)
                costs.append(statistics.median(runs[20:]) * 1e3)
        out[label] = round(sum(costs), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of the paced phase (default 60)")
    ap.add_argument(
        "--rate-per-client", type=float, default=5.0,
        help="requests/s each client sends in the paced phase (default 5: 160 req/s from 32 clients)",
    )  # fmt: skip
    ap.add_argument(
        "--saturation-duration", type=float, default=20.0,
        help="seconds of the closed-loop phase (clients send back to back: the throughput limit)",
    )  # fmt: skip
    ap.add_argument("--floor-duration", type=float, default=10.0, help="seconds of GET /healthz load")
    ap.add_argument("--max-requests", type=int, default=200_000, help="stop a phase after this many requests")
    ap.add_argument("--batch-rows", type=int, default=10_000)
    ap.add_argument(
        "--use-existing", action="store_true",
        help="serve the gemm champion registered at $MLFLOW_TRACKING_URI instead of training one in a temp registry",
    )  # fmt: skip
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "service-load.json")
    args = ap.parse_args()

    t_start = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="hws-bench-") as tmp:
        if not args.use_existing:  # a private registry: the figures never depend on what the user has
            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
            os.environ["HWSURROGATE_MLFLOW_ARTIFACTS"] = f"{tmp}/mlruns"
        model = ensure_gemm_model(args.use_existing, Path(tmp) / "train-store")
        print(f"model: {model['name']} v{model['version']} ({model['model_origin']})", flush=True)
        device = str(model["device"])
        port = _free_port()
        proc = start_server(Path(tmp) / "store", port)
        url = f"http://127.0.0.1:{port}"
        try:
            print(f"server up at {url}; {args.batch_rows}-row batch comparison ...", flush=True)
            batch = batch_comparison(url, device, args.batch_rows, repeats=5)
            print(json.dumps(batch), flush=True)
            print(
                f"floor: GET /healthz, {args.clients} clients for {args.floor_duration:.0f} s ...", flush=True
            )
            floor = run_phase(
                proc, url, device, args.clients, args.floor_duration, args.max_requests, floor=True
            )
            print(json.dumps(floor), flush=True)
            print(f"paced: {args.clients} clients x {args.rate_per_client:g} req/s for {args.duration:.0f} s ...",
                  flush=True)  # fmt: skip
            paced = run_phase(proc, url, device, args.clients, args.duration, args.max_requests,
                              rate_per_client=args.rate_per_client)  # fmt: skip
            print(json.dumps(paced), flush=True)
            print(f"saturation: {args.clients} closed-loop clients for {args.saturation_duration:.0f} s ...",
                  flush=True)  # fmt: skip
            load = run_phase(proc, url, device, args.clients, args.saturation_duration, args.max_requests)
            print(json.dumps(load), flush=True)
        finally:
            proc.terminate()
            proc.wait(15)
        print(f"in process: the ASGI app, {args.clients} requests at a time ...", flush=True)
        asgi = asgi_in_process(Path(tmp) / "store", device, args.clients)
        print(json.dumps(asgi), flush=True)
    n_5xx = paced["n_5xx"] + load["n_5xx"] + floor["n_5xx"]
    floor_share = round(load["throughput_rps"] / floor["throughput_rps"], 3)
    cpu_share = round(floor["server_cpu_ms_per_request"] / max(load["server_cpu_ms_per_request"], 1e-9), 3)
    trees = batch["served_trees_one_row"]
    ratio = batch["ratio_http_over_in_process"]
    paced_split = (f"{args.clients} clients x {args.rate_per_client:g} req/s "
                   f"({args.clients * args.rate_per_client:g} req/s offered), {args.duration:g} s")  # fmt: skip
    closed = f"{args.clients} closed-loop clients (no pause), {args.saturation_duration:g} s"
    little = (f"closed loop: {args.clients} requests always in flight, so p50 >= {args.clients} / throughput "
              "(Little's law); a latency target needs a paced load")  # fmt: skip
    result = {
        "benchmark": "service_load",
        "command": "python benchmarks/service_load.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "note": "server and load generator share this machine's cores",
        "model": model,
        "single_prediction_paced": paced,
        "single_prediction_saturation": load,
        "http_floor_healthz": floor,
        "saturation_over_floor": floor_share,
        # server CPU per request, healthz over single GEMM: the floor share a CPU-bound server can reach
        "server_cpu_share": cpu_share,
        "targets": {"p50_ms": 5, "p99_ms": 25, "n_5xx": 0, "batch_ratio": 1.5, "floor_share": 0.7},
        "met": {
            "p50": paced["p50_ms"] <= 5,
            "p99": paced["p99_ms"] <= 25,
            "zero_5xx": n_5xx == 0,
            "batch_ratio": ratio <= 1.5,
            "floor_share": floor_share >= 0.7,
        },
        "batch_10k": batch,
        "asgi_in_process": asgi,
        "wall_time_s": round(time.perf_counter() - t_start, 1),
    }
    # the common benchmark shape (docs/benchmarks.md) so BENCHMARKS.md lists it with the others
    result["wall_s"] = result["wall_time_s"]
    result["rows"] = [
        {"metric": "single prediction p50 ms", "split": paced_split, "ours": paced["p50_ms"], "anchor": None,
         "target": 5, "direction": "<=", "met": paced["p50_ms"] <= 5},
        {"metric": "single prediction p99 ms", "split": paced_split, "ours": paced["p99_ms"], "anchor": None,
         "target": 25, "direction": "<=", "met": paced["p99_ms"] <= 25},
        {"metric": "5xx responses", "split": "all phases", "ours": n_5xx, "anchor": None, "target": 0,
         "direction": "<=", "met": n_5xx == 0},
        {"metric": "10k-row GEMM batch HTTP / in-process", "split": "median of 5", "ours": ratio, "anchor": None,
         "target": 1.5, "direction": "<=", "met": ratio <= 1.5},
        {"metric": "throughput req/s", "split": closed, "ours": load["throughput_rps"], "anchor": None,
         "target": None, "direction": ">=", "met": None, "note": little},
        {"metric": "single prediction p50 ms", "split": closed, "ours": load["p50_ms"], "anchor": None,
         "target": None, "direction": "<=", "met": None, "note": little},
        {"metric": "single prediction p99 ms", "split": closed, "ours": load["p99_ms"], "anchor": None,
         "target": None, "direction": "<=", "met": None},
        {"metric": "GET /healthz req/s (HTTP floor)", "split": f"{args.clients} closed-loop clients",
         "ours": floor["throughput_rps"], "anchor": None, "target": None, "direction": ">=", "met": None},
        {"metric": "single-GEMM throughput / healthz floor", "split": closed, "ours": floor_share,
         "anchor": None, "target": 0.7, "direction": ">=", "met": floor_share >= 0.7,
         "note": "both measured in this run"},
        {"metric": "server CPU per request: healthz / single GEMM", "split": closed, "ours": cpu_share,
         "anchor": None, "target": None, "direction": ">=", "met": None,
         "note": "the floor share reachable while the server's CPU is the limit"},
        {"metric": "ASGI app in process, CPU us per request: GET /healthz", "split": f"{args.clients} at a time",
         "ours": asgi["healthz_cpu_us_per_request"], "anchor": None, "target": None, "direction": "<=", "met": None,
         "note": "no server, no sockets; best of 3 x 150 rounds"},
        {"metric": "ASGI app in process, CPU us per request: single GEMM", "split": f"{args.clients} at a time",
         "ours": asgi["gemm_cpu_us_per_request"], "anchor": None, "target": None, "direction": "<=", "met": None,
         "note": "no server, no sockets; request batching merges them as under the closed loop"},
        {"metric": "GEMM one query in-process ms", "split": "load_predictor('gemm').predict, median of 50",
         "ours": batch["in_process_single_row_ms_median"], "anchor": None, "target": 0.1, "direction": "<=",
         "met": batch["in_process_single_row_ms_median"] <= 0.1, "note": "features + runtime + power trees"},
        *([{"metric": f"GEMM one row, runtime + power trees ms ({k.removesuffix('_ms')})",
            "split": "the served model's trees, one feature row", "ours": trees[k], "anchor": None,
            "target": 0.1 if k == "treelite_ms" else None, "direction": "<=",
            "met": trees[k] <= 0.1 if k == "treelite_ms" else None}
           for k in ("treelite_ms", "sklearn_ms", "sklearn_1thread_ms")] if trees else []),
    ]  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\n{'figure':<44}{'ours':>10}{'target':>10}")
    print(f"{'paced p50 (ms)':<44}{paced['p50_ms']:>10}{'<= 5':>10}")
    print(f"{'paced p99 (ms)':<44}{paced['p99_ms']:>10}{'<= 25':>10}")
    print(f"{'5xx (all phases)':<44}{n_5xx:>10}{'0':>10}")
    print(f"{'10k batch HTTP / in-process':<44}{ratio:>10}{'<= 1.5':>10}")
    print(f"{'saturation throughput (req/s)':<44}{load['throughput_rps']:>10}{'':>10}")
    print(f"{'saturation p50 / p99 (ms)':<44}{str(load['p50_ms']) + ' / ' + str(load['p99_ms']):>10}")
    print(f"{'floor GET /healthz req/s':<44}{floor['throughput_rps']:>10}{'':>10}")
    print(f"{'saturation / floor':<44}{floor_share:>10}{'>= 0.7':>10}")
    cpu_floor, cpu_gemm = floor["server_cpu_ms_per_request"], load["server_cpu_ms_per_request"]
    print(f"{'server CPU ms/request healthz / GEMM':<44}{cpu_floor:>10}{cpu_gemm:>10}")
    asgi_pair = f"{asgi['healthz_cpu_us_per_request']} / {asgi['gemm_cpu_us_per_request']}"
    print(f"{'in-process ASGI CPU us/request healthz / GEMM':<44}{asgi_pair:>20}")
    print(
        f"{'GEMM one query in-process (ms)':<44}{batch['in_process_single_row_ms_median']:>10}{'<= 0.1':>10}"
    )
    if trees:
        print(
            f"{'GEMM trees one row treelite / sklearn (ms)':<44}{trees['treelite_ms']:>10}{trees['sklearn_ms']:>10}"
        )
    print(f"wall time {result['wall_time_s']} s; wrote {args.out}")


if __name__ == "__main__":
    main()
