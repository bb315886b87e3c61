"""``hws collect latency``: inference latency of NAS-Bench-201 / FBNet archs or your own model.

The command is in :mod:`hwsurrogate.cli.collect`; this module measures and returns rows, writing nothing.

Networks are built as the benchmarks define them (:mod:`.nasnets`), put in eval mode, and run
under ``torch.inference_mode`` on the local CPU or CUDA device with a given batch size and
thread count. Each arch gets ``warmup`` untimed runs, then ``repeats`` timed runs (one forward
each; perf_counter_ns on the CPU, CUDA events + synchronisation on a GPU); the row holds the
median, ``extra`` the IQR, min and the environment.

``space="custom"`` measures a user model: a TorchScript file, a ``torch.export`` ``.pt2`` file, an ONNX file (needs
onnxruntime: ``pip install 'hwsurrogate[onnx]'``) or an import path ``module:callable``
returning an ``nn.Module``, with ``input_shape`` (C, H, W...) of one sample. Its ``arch_key``
is the file name plus a sha256 prefix, or the import path.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import random
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from hwsurrogate.datasets.archspaces import (
    FBNET_N_LAYERS,
    FBNET_OPS,
    HELP_REFERENCE_ARCHS,
    NB201_OPS,
    check_arch_key,
    format_nb201,
)
from hwsurrogate.datasets.collectors import environment as envmod
from hwsurrogate.datasets.collectors.environment import (
    Environment,
    capture_environment,
    local_device_id,
    parse_device,
)
from hwsurrogate.datasets.collectors.timing import (
    Timing,
    check_timing_options,
    cpu_sampler,
    cuda_sampler,
    host_clock,
    measure,
)
from hwsurrogate.datasets.schemas import conform
from hwsurrogate.errors import CollectorError
from hwsurrogate.progress import track

__all__ = [
    "SOURCE",
    "build_network",
    "collect_latency",
    "fresh_seed",
    "import_callable",
    "local_device_id",
    "random_arch_keys",
    "reference_arch_keys",
]

Space = Literal["nb201", "fbnet", "custom"]
Precision = Literal["fp32", "fp16", "bf16"]
SOURCE = "collector:latency"
SPACES: tuple[str, ...] = ("nb201", "fbnet", "custom")


def build_network(space: str, arch_key: str) -> Any:
    """The benchmark's ``torch.nn.Module`` for ``arch_key`` (canonical key of ``space``), in eval mode."""
    from hwsurrogate.datasets.collectors.nasnets import FBNetNetwork, NB201Network

    key = _canonical(space, arch_key)
    if space == "nb201":
        return NB201Network(key).eval()
    if space == "fbnet":
        return FBNetNetwork(key).eval()
    raise CollectorError(f"space {space!r}: build_network builds 'nb201' or 'fbnet' networks")


def _canonical(space: str, arch_key: str) -> str:
    if space not in ("nb201", "fbnet"):
        raise CollectorError(f"space {space!r} must be one of {list(SPACES)}")
    try:
        return check_arch_key(space, arch_key)
    except ValueError as exc:
        msg = str(exc)
        raise CollectorError(msg if msg.startswith("arch_key") else f"arch_key: {msg}") from None


def random_arch_keys(
    space: Literal["nb201", "fbnet"], n: int, *, seed: int = 0, exclude: Sequence[str] = ()
) -> list[str]:
    """``n`` distinct uniformly random canonical arch keys of ``space``, none of them in ``exclude``."""
    rng = random.Random(seed)
    if space == "nb201":
        limit = len(NB201_OPS) ** 6
        draw: Callable[[], str] = lambda: format_nb201([rng.choice(NB201_OPS) for _ in range(6)])  # noqa: E731
    elif space == "fbnet":
        limit = len(FBNET_OPS) ** FBNET_N_LAYERS
        draw = lambda: " ".join(rng.choice(FBNET_OPS) for _ in range(FBNET_N_LAYERS))  # noqa: E731
    else:
        raise CollectorError(f"space {space!r}: random archs exist for 'nb201' and 'fbnet'")
    skip = set(exclude)
    if not 1 <= n <= limit - len(skip):
        raise CollectorError(f"n must be in 1..{limit - len(skip)} for {space}, got {n}")
    out: dict[str, None] = {}
    while len(out) < n:
        key = draw()
        if key not in skip:
            out[key] = None
    return list(out)


def reference_arch_keys(space: str) -> list[str]:
    """HELP's 10 hardware-embedding reference architectures of ``space`` (nb201, fbnet), in HELP's order.

    The few-shot adaptation (``hws adapt``) uses a device's latencies on these as its fingerprint,
    so measuring them first makes every later measurement count.
    """
    if space not in HELP_REFERENCE_ARCHS:
        raise CollectorError(f"space {space!r}: reference archs exist for {', '.join(HELP_REFERENCE_ARCHS)}")
    return list(HELP_REFERENCE_ARCHS[space].values())


def fresh_seed() -> int:
    """A new seed for ``--random`` (printed by the CLI so a run can be repeated with ``--seed``)."""
    return random.SystemRandom().randrange(1, 2**31)


# ------------------------------------------------------------------------------ custom models
@dataclass
class LoadedModel:
    """A runnable model: ``run(x)`` executes one forward on a prepared input."""

    identifier: str
    framework: str
    run: Callable[[Any], Any]
    make_input: Callable[[tuple[int, ...]], Any]
    n_params: int | None = None


def _file_id(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return f"{path.name}@sha256:{h.hexdigest()[:12]}"


def _torch_model(module: Any, identifier: str, framework: str, device: str, precision: str) -> LoadedModel:
    import torch

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    module = module.to(device=device, dtype=dtype)
    with contextlib.suppress(NotImplementedError):  # torch.export modules keep their exported mode
        module = module.eval()

    def run(x: Any) -> Any:
        with torch.inference_mode():
            return module(x)

    def make_input(shape: tuple[int, ...]) -> Any:
        return torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)

    n_params = sum(p.numel() for p in module.parameters()) if hasattr(module, "parameters") else None
    return LoadedModel(identifier, framework, run, make_input, n_params)


def load_model(
    spec: str, *, device: str = "cpu", precision: str = "fp32", threads: int | None = None
) -> LoadedModel:
    """Load a user model from a TorchScript/ONNX file or a ``module:callable`` import path."""
    import torch

    path = Path(spec)
    if path.suffix in (".pt", ".pth", ".pt2", ".ts", ".torchscript", ".onnx") or path.exists():
        if not path.is_file():
            raise CollectorError(f"model {spec!r}: file not found")
        try:
            identifier = _file_id(path)
        except OSError as exc:
            raise CollectorError(f"model {spec!r}: cannot read the file ({exc.strerror})") from None
        if path.suffix == ".onnx":
            return _onnx_model(path, identifier, device=device, precision=precision, threads=threads)
        if path.suffix == ".pt2":
            try:
                module = torch.export.load(str(path)).module()
            except Exception as exc:
                raise CollectorError(
                    f"model {spec!r}: not a torch.export program torch.export.load can read "
                    f"({type(exc).__name__}); save it with torch.export.save(torch.export.export(m, args), path)"
                ) from None
            return _torch_model(
                module, identifier, f"torch.export (torch {torch.__version__})", device, precision
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch>=2.9 deprecates TorchScript
                module = torch.jit.load(str(path), map_location=device)
        except Exception as exc:
            raise CollectorError(
                f"model {spec!r}: not a TorchScript file torch.jit.load can read ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); save it with torch.jit.script(m).save(path)"
            ) from None
        return _torch_model(module, identifier, f"torchscript (torch {torch.__version__})", device, precision)
    if ":" not in spec:
        raise CollectorError(
            f"model {spec!r}: give a .pt/.pt2/.onnx file or an import path 'package.module:callable'"
        )
    mod_name, _, attr = spec.partition(":")
    factory = _import_callable(spec, mod_name, attr)
    module = factory() if callable(factory) and not isinstance(factory, torch.nn.Module) else factory
    if not isinstance(module, torch.nn.Module):
        raise CollectorError(
            f"model {spec!r}: {attr}() returned {type(module).__name__}, not a torch.nn.Module"
        )
    return _torch_model(module, spec, f"torch {torch.__version__} (eager)", device, precision)


def import_callable(spec: str) -> Any:
    """The object a ``package.module:callable`` spec names (the module may be a file in the current directory)."""
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise CollectorError(f"model {spec!r}: give an import path 'package.module:callable'")
    return _import_callable(spec, mod_name, attr)


def _import_callable(spec: str, mod_name: str, attr: str) -> Any:
    """``attr`` of module ``mod_name``, importable from installed packages or from the current directory.

    ``hws collect latency --model mynet:build`` with ``./mynet.py`` works without PYTHONPATH: the
    current directory is put first on ``sys.path`` for this import only.
    """
    import sys

    cwd = str(Path.cwd())
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and mod_name.split(".")[0] == exc.name.split(".")[0]:
            file = Path(*mod_name.split(".")).with_suffix(".py")
            raise CollectorError(
                f"model {spec!r}: no module {mod_name!r}: neither an installed package nor {file} in "
                f"the current directory ({cwd}); run from the folder holding it or set PYTHONPATH"
            ) from None
        raise CollectorError(f"model {spec!r}: importing {mod_name!r} failed ({exc})") from None
    except ImportError as exc:
        raise CollectorError(f"model {spec!r}: cannot import ({type(exc).__name__}: {exc})") from None
    finally:
        if added:
            sys.path.remove(cwd)
    try:
        return getattr(module, attr)
    except AttributeError:
        names = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise CollectorError(
            f"model {spec!r}: cannot import {attr!r}: module {mod_name!r} ({getattr(module, '__file__', '?')}) has no such name; "
            f"its callables: {', '.join(names[:12]) or 'none'}"
        ) from None


def _onnx_model(
    path: Path, identifier: str, *, device: str, precision: str, threads: int | None
) -> LoadedModel:
    ort = envmod.optional_module("onnxruntime", extra="onnx", purpose=f"measuring the ONNX model {path.name}")
    if precision != "fp32":
        raise CollectorError(f"precision {precision!r}: ONNX models are run as exported (use fp32)")
    kind, index = parse_device(device)
    providers: list[Any] = ["CPUExecutionProvider"]
    if kind == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise CollectorError(
                "device='cuda': this onnxruntime has no CUDAExecutionProvider; install onnxruntime-gpu"
            )
        providers = [("CUDAExecutionProvider", {"device_id": index})]
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:
        raise CollectorError(
            f"model {str(path)!r}: onnxruntime cannot load it ({str(exc).splitlines()[0]})"
        ) from None
    inp = session.get_inputs()[0]
    name = inp.name

    def run(x: Any) -> Any:
        return session.run(None, {name: x})

    def make_input(shape: tuple[int, ...]) -> Any:
        return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)

    return LoadedModel(
        identifier, f"onnxruntime {ort.__version__} ({session.get_providers()[0]})", run, make_input
    )


# ------------------------------------------------------------------------------ measuring
def _sampler(run: Callable[[Any], Any], x: Any, kind: str, index: int, timer: str) -> Callable[[int], float]:
    if kind == "cuda":  # pragma: no cover - needs a GPU
        return cuda_sampler(lambda: run(x), index)
    return cpu_sampler(lambda: run(x), host_clock(timer))


def collect_latency(
    space: Space,
    arch_keys: Sequence[str],
    *,
    device: str = "cpu",
    batch: int = 1,
    threads: int | None = None,
    repeats: int = 30,
    warmup: int = 5,
    precision: Precision = "fp32",
    input_shape: Sequence[int] | None = None,
    arch_indices: Sequence[int | None] | None = None,
    timer: Literal["wall", "thread_cpu"] = "wall",
    min_time_s: float = 0.0,
    rounds: int = 1,
    rebuild: bool = False,
    estimator: Literal["median", "round_min_median"] = "median",
    progress: bool = True,
) -> pl.DataFrame:
    """Measure the inference latency of every arch and return rows in the ``latency`` schema.

    ``arch_keys``: canonical keys of ``space`` (nb201/fbnet), or model specs for ``custom``
    (file path or ``module:callable``; needs ``input_shape`` of one sample, e.g. (3, 224, 224)).
    ``arch_indices`` (optional, same length) fills ``arch_index``; HELP reference archs get
    their index automatically. Every key is validated before anything runs.
    ``rounds`` > 1 splits the ``repeats`` of every arch over that many passes through the list
    (models stay built; one extra warm-up per pass), so a burst of other load does not bias one
    arch; the median is over all samples. ``min_time_s`` > 0 keeps timing an arch beyond ``repeats`` runs until its window lasts that
    long (at most 100 x ``repeats`` runs), which averages over bursts of other load.
    ``timer="thread_cpu"`` (CPU, ``threads=1``) counts only this thread's CPU time, for machines
    shared with other jobs; the timer is recorded in ``extra``.
    ``rebuild`` (with ``rounds`` > 1) builds a fresh instance of every model for each round, so
    one instance's memory layout does not bias an arch. ``estimator`` is how the samples become
    ``latency_ms``: ``median`` of all of them, or ``round_min_median``, the median over rounds of
    each round's fastest run (other load only ever adds time; reproducible on a busy machine).
    Both, and the minimum and IQR, are recorded in ``extra``.
    """
    if space not in SPACES:
        raise CollectorError(f"space {space!r} must be one of {list(SPACES)}")
    if isinstance(arch_keys, str):
        arch_keys = [arch_keys]
    if not arch_keys:
        raise CollectorError("arch_keys: no architectures given")
    for name, value, low in (
        ("batch", batch, 1),
        ("repeats", repeats, 1),
        ("warmup", warmup, 0),
        ("rounds", rounds, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise CollectorError(f"{name} must be an integer >= {low}, got {value!r}")
    if precision not in ("fp32", "fp16", "bf16"):
        raise CollectorError(f"precision {precision!r} must be fp32, fp16 or bf16")
    if estimator not in ("median", "round_min_median"):
        raise CollectorError(f"estimator {estimator!r} must be 'median' or 'round_min_median'")
    if rounds > repeats:
        raise CollectorError(
            f"rounds ({rounds}) may not exceed repeats ({repeats}): every round times each arch"
        )
    if arch_indices is not None and len(arch_indices) != len(arch_keys):
        raise CollectorError(f"arch_indices has {len(arch_indices)} entries for {len(arch_keys)} arch_keys")
    kind, index = check_timing_options(device, timer=timer, threads=threads, min_time_s=min_time_s)
    if space == "custom":
        if input_shape is None:
            raise CollectorError("input_shape is required for custom models, e.g. (3, 224, 224)")
        shape = tuple(int(x) for x in input_shape)
        if not shape or any(x < 1 for x in shape):
            raise CollectorError(f"input_shape {tuple(input_shape)} must be positive integers")
        keys = list(arch_keys)
    else:
        shape = _space_shape(space)
        keys = [_canonical(space, k) for k in arch_keys]
    indices = list(arch_indices) if arch_indices is not None else [_reference_index(space, k) for k in keys]

    rows: list[dict[str, Any]] = []
    per_round = [repeats // rounds + (1 if r < repeats % rounds else 0) for r in range(rounds)]
    with envmod.thread_limit(threads) as n_threads:
        env = capture_environment(device, threads=n_threads)

        def prepare(key: str) -> tuple[LoadedModel, Any]:
            if space == "custom":
                model = load_model(key, device=env.device, precision=precision, threads=n_threads)
            else:
                model = _torch_model(build_network(space, key), key, "", env.device, precision)
                model.framework = f"torch {env.software.get('torch', '?')} (eager, inference_mode)"
            return model, model.make_input((batch, *shape))

        # one round: every arch in turn, built lazily; several rounds keep the models built
        prepared = [prepare(k) for k in keys] if rounds > 1 else None
        samples: list[list[Timing]] = [[] for _ in keys]
        jobs = [(r, i) for r in range(rounds) for i in range(len(keys)) if per_round[r] > 0]
        iterator = track(jobs, f"latency {space}/{env.device}") if progress else iter(jobs)
        for r, i in iterator:
            fresh = prepared is None or (rebuild and r > 0)
            model, x = prepare(keys[i]) if fresh else prepared[i]  # type: ignore[index]
            try:
                t = measure(_sampler(model.run, x, kind, index, timer), warmup=warmup if r == 0 or fresh else 1, number=1,
                            min_time_s=min_time_s / rounds, min_samples=per_round[r],
                            max_samples=per_round[r] if min_time_s == 0 else 100 * per_round[r])  # fmt: skip
            except Exception as exc:
                raise CollectorError(
                    f"arch_key {model.identifier!r}: the model failed on input shape {(batch, *shape)} "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                ) from None
            samples[i].append(t)
            if r == rounds - 1 or prepared is None:
                rows.append(_row(space, model, indices[i], samples[i], env=env, batch=batch, precision=precision,
                                 shape=(batch, *shape), rounds=rounds, rebuild=rebuild, estimator=estimator,
                                 timer="cuda_events" if kind == "cuda" else timer))  # fmt: skip
    frame = pl.DataFrame(rows, infer_schema_length=None)
    frame = envmod.provenance(frame, source=SOURCE, env=env,
                              key=("device_id", "space", "arch_key", "batch", "precision"))  # fmt: skip
    return conform("latency", frame, context=SOURCE)


def _merge(parts: list[Timing]) -> Timing:
    """The samples of several rounds of one arch as one Timing."""
    if len(parts) == 1:
        return parts[0]
    return Timing(
        np.concatenate([p.per_call_s for p in parts]), 1, sum(p.window_s for p in parts), parts[0].energy
    )


def _space_shape(space: str) -> tuple[int, ...]:
    from hwsurrogate.datasets.collectors.nasnets import INPUT_SHAPES

    return INPUT_SHAPES[space]


def _reference_index(space: str, key: str) -> int | None:
    for idx, ref in HELP_REFERENCE_ARCHS.get(space, {}).items():
        if ref == key:
            return idx
    return None


def _row(space: str, model: LoadedModel, arch_index: int | None, parts: list[Timing], *, env: Environment,
         batch: int, precision: str, shape: tuple[int, ...], timer: str, rounds: int, rebuild: bool,
         estimator: str) -> dict[str, Any]:  # fmt: skip
    t = _merge(parts)
    round_min_median_s = float(np.median([p.min_s for p in parts]))
    latency_s = round_min_median_s if estimator == "round_min_median" else t.median_s
    extra = {
        "timer": timer,
        "rounds": rounds,
        "rebuild": rebuild,
        "estimator": estimator,
        "median_ms": t.median_s * 1e3,
        "round_min_median_ms": round_min_median_s * 1e3,
        "iqr_ms": t.iqr_s * 1e3,
        "min_ms": t.min_s * 1e3,
        "repeats": t.n_samples,
        "input_shape": list(shape),
        "n_params": model.n_params,
        "threads": env.threads,
        "software": env.software,
        "env": env.summary(),
    }
    return {
        "device_id": env.device_id,
        "space": space,
        "arch_index": arch_index,
        "arch_key": model.identifier,
        "batch": batch,
        "precision": precision,
        "latency_ms": latency_s * 1e3,
        "measured": True,
        "framework": model.framework,
        "extra": json.dumps(extra, sort_keys=True, default=str),
        "collected_at": env.collected_at,
    }
