"""Joining a Ray cluster: the one place ``ray`` is started, and the ``--on`` resource label.

``hws collect ... --ray ADDRESS``, ``hws tune --ray ADDRESS`` and ``hws predict ... --ray
ADDRESS`` call :func:`connect` first; without ``--ray`` nothing imports this module's ``ray``
(``pip install 'hwsurrogate[distributed]'`` installs it). The driver (the ``hws`` process)
forwards the settings workers need to read the same store and MLflow (``HWSURROGATE_*``,
``MLFLOW_*``) as Ray ``runtime_env`` variables; the code itself must already be installed on
every node (same hwsurrogate version).

``--on LABEL``: a task that needs hardware runs only on nodes that declare the custom resource
named LABEL (``ray start --resources '{"gpu_type=H100": 1}'``; Ray allows ``=`` in resource
names). Each task takes one unit, so a node runs as many such tasks at once as it has units.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hwsurrogate.errors import HwSurrogateError

__all__ = [
    "ClusterError",
    "LocalCluster",
    "check_resource",
    "connect",
    "forwarded_env",
    "node_id",
    "resource_label",
]

_LABEL_RE = re.compile(r"^[A-Za-z0-9_.:/-]+(=[A-Za-z0-9_.:/-]+)?$")
#: environment variables the driver passes to every worker (store, MLflow, progress, settings)
_FORWARD_PREFIXES = ("HWSURROGATE_", "MLFLOW_")


class ClusterError(HwSurrogateError):
    """Ray is not installed, the cluster cannot be reached, or it lacks a requested resource."""


def resource_label(text: str | None, option: str = "--on") -> str | None:
    """Check an ``--on`` label (``gpu_type=H100`` or a plain resource name); None passes through."""
    if text is None:
        return None
    label = text.strip()
    if not _LABEL_RE.match(label):
        raise ClusterError(
            f"{option} {text!r}: expected a custom resource name such as gpu_type=H100 "
            "(letters, digits, _ . : / -, at most one '=')"
        )
    return label


#: never sent to workers: the service's write token is for ``--push`` from the driver only
_NOT_FORWARDED = frozenset({"HWSURROGATE_SERVICE_TOKEN"})


def forwarded_env() -> dict[str, str]:
    """The ``HWSURROGATE_*`` and ``MLFLOW_*`` variables of this process (what workers must share).

    MLflow credentials (``MLFLOW_TRACKING_TOKEN`` ...) go along, since workers load models from
    the same tracking server; the service token does not.
    """
    return {
        k: v for k, v in os.environ.items() if k.startswith(_FORWARD_PREFIXES) and k not in _NOT_FORWARDED
    }


def connect(address: str) -> Any:
    """Join the Ray cluster at ``address`` (``HOST:PORT``, ``auto`` or ``ray://HOST:PORT``); the ``ray`` module.

    A second call in the same process reuses the connection. Raises :class:`ClusterError`
    naming the address when Ray is missing or the cluster does not answer.
    """
    if not address or not address.strip():
        raise ClusterError("--ray: give the cluster address, e.g. 127.0.0.1:6379 or auto")
    try:
        import ray
    except ImportError:
        raise ClusterError(
            "--ray needs Ray: pip install 'hwsurrogate[distributed]' (on this machine and every node)"
        ) from None
    if ray.is_initialized():
        return ray
    _check_reachable(address.strip())
    try:
        ray.init(
            address=address.strip(),
            runtime_env={"env_vars": forwarded_env()},
            log_to_driver=False,
            logging_level="ERROR",
        )
    except Exception as exc:  # ConnectionError, TimeoutError, ValueError from ray
        raise ClusterError(
            f"--ray {address}: cannot join the Ray cluster ({type(exc).__name__}: {exc})"
        ) from None
    return ray


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A ``HOST:PORT`` that does not accept a TCP connection is an error now (Ray itself retries for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or address == "auto":
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterError(
            f"--ray {address}: nothing answers at {host}:{port} ({exc}); start the head with "
            f"`ray start --head --port {port}` or give its address"
        ) from None


def check_resource(label: str | None) -> None:
    """Fail now, not after an endless wait, when no live node declares the resource ``label``."""
    if label is None:
        return
    import ray

    have = {name for node in ray.nodes() if node.get("Alive") for name in node.get("Resources", {})}
    if label not in have:
        custom = sorted(
            n for n in have if not n.startswith(("node:", "CPU", "GPU", "memory", "object_store"))
        )
        raise ClusterError(
            f"--on {label}: no live node of the cluster has the custom resource {label!r} "
            f"(custom resources present: {custom or 'none'}); start such a node with "
            f"`ray start --address HEAD:PORT --resources '{{\"{label}\": 1}}'`"
        )


def node_id() -> str | None:
    """The Ray node id of the calling worker (None outside Ray).

    Never imports Ray: a process that has not imported it (every run without ``--ray``) is not
    in a Ray cluster, so collectors may call this on every run.
    """
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return str(ray.get_runtime_context().get_node_id())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalCluster:
    """A Ray cluster of several nodes on this machine, for tests and benchmarks (``ray start`` each).

    Every node is a ``ray start --block`` in its own process group on 127.0.0.1 with ``cpus``
    CPUs and a small object store; :meth:`kill` SIGKILLs one node's group (the node dying),
    :meth:`stop` ends the groups this object started, never other Ray instances (no ``ray stop``).
    Token authentication: the processes get ``RAY_AUTH_MODE``/``RAY_AUTH_TOKEN`` from this
    process's environment, which must be set before ``ray`` is imported here (Ray reads the mode
    at import).
    """

    def __init__(self, *, cpus: int = 1, object_store_bytes: int = 80 * 1024 * 1024) -> None:
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.cpus, self.object_store_bytes = cpus, object_store_bytes
        self.tmp = Path(tempfile.mkdtemp(prefix="hwsray", dir="/tmp"))  # short: Ray's socket paths
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _start(self, name: str, args: list[str]) -> None:
        ray_cli = str(Path(sys.executable).with_name("ray"))
        common = ["--node-ip-address", "127.0.0.1", "--num-cpus", str(self.cpus), "--object-store-memory",
                  str(self.object_store_bytes), "--temp-dir", str(self.tmp), "--block", "--disable-usage-stats"]  # fmt: skip
        env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0"}
        with open(self.tmp / f"{name}.log", "wb") as log:
            self.procs[name] = subprocess.Popen([ray_cli, "start", *args, *common], env=env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def start_head(self, timeout_s: float = 120) -> None:
        self._start("head", ["--head", "--port", str(self.port), "--include-dashboard", "false",
                             "--ray-client-server-port", str(_free_port())])  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.procs["head"].poll() is not None:
                raise ClusterError(f"ray head exited: {self.log('head')}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.3)
        raise ClusterError(f"ray head did not open port {self.port} in {timeout_s:g} s")

    def add_node(self, name: str, resources: dict[str, float] | None = None, timeout_s: float = 120) -> None:
        """Start node ``name`` and wait until the cluster sees it alive (joins this process to the cluster)."""
        import ray

        before = self.alive() if ray.is_initialized() else 1
        args = ["--address", self.address] + (["--resources", json.dumps(resources)] if resources else [])
        self._start(name, args)
        if not ray.is_initialized():
            ray.init(address=self.address, logging_level="ERROR", log_to_driver=False)
        deadline = time.monotonic() + timeout_s
        while self.alive() < before + 1:
            if time.monotonic() > deadline or self.procs[name].poll() is not None:
                raise ClusterError(f"node {name} did not join: {self.log(name)}")
            time.sleep(0.5)

    @staticmethod
    def alive() -> int:
        import ray

        return sum(bool(n["Alive"]) for n in ray.nodes())

    def kill(self, name: str) -> None:
        """SIGKILL node ``name``'s process group: its raylet dies, its workers exit, Ray sees a dead node."""
        os.killpg(self.procs[name].pid, signal.SIGKILL)

    def stop(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        for proc in reversed(list(self.procs.values())):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=5)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue
        shutil.rmtree(self.tmp, ignore_errors=True)
