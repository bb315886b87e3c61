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

import os
import re
from typing import Any

from hwsurrogate.errors import HwSurrogateError

__all__ = [
    "ClusterError",
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


def forwarded_env() -> dict[str, str]:
    """The ``HWSURROGATE_*`` and ``MLFLOW_*`` variables of this process (what workers must share)."""
    return {k: v for k, v in os.environ.items() if k.startswith(_FORWARD_PREFIXES)}


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
    """The Ray node id of the calling worker (None outside Ray)."""
    try:
        import ray
    except ImportError:
        return None
    if not ray.is_initialized():
        return None
    return str(ray.get_runtime_context().get_node_id())
