"""Unpickling with an allow-list: the one restricted unpickler every reader of pickles builds on.

A pickle names each class or function it needs as ``module.name`` and the unpickler calls it, so
a plain :func:`pickle.load` of a tampered file runs whatever the file names (``os.system``). A
:class:`RestrictedUnpickler` asks a ``resolve(module, name)`` function instead: it returns the
object to use (the real one, or a checked stand-in) or ``None`` to refuse, and a refusal is a
:class:`PickleRefusedError` naming the source and the global. Persistent ids (torch's tensor
storage in ``torch.save`` files) are refused too.

Readers: the latency data importers (:mod:`hwsurrogate.datasets.importers._pickle`: plain data,
a handful of numpy stand-ins) and the logged models' artifact
(:mod:`hwsurrogate.surrogates.registry.artifact_model`: the project's fitted model classes).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from typing import Any

__all__ = ["PickleRefusedError", "Resolver", "RestrictedUnpickler", "restricted_loads"]

#: ``resolve(module, name)``: the object a pickle may use for ``module.name``, or None to refuse it
Resolver = Callable[[str, str], Any]


class PickleRefusedError(pickle.UnpicklingError):
    """A pickle names a global (or holds a persistent id) that its reader does not allow."""


class RestrictedUnpickler(pickle.Unpickler):
    """:class:`pickle.Unpickler` whose globals come from ``resolve`` (None: refused).

    ``source`` names the file in errors; ``why`` ends the refusal message (what the reader expects).
    """

    def __init__(self, file: Any, resolve: Resolver, *, source: str, why: str) -> None:
        super().__init__(file)
        self._resolve = resolve
        self._source = source
        self._why = why

    def find_class(self, module: str, name: str) -> Any:
        found = self._resolve(module, name) if isinstance(module, str) and isinstance(name, str) else None
        if found is None:
            raise PickleRefusedError(f"{self._source}: pickle references {module}.{name}, {self._why}; refusing to load it")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise PickleRefusedError(f"{self._source}: pickle holds a persistent id ({pid!r}); refusing to load it")


def restricted_loads(data: bytes, resolve: Resolver, *, source: str, why: str) -> Any:
    """Unpickle ``data`` through a :class:`RestrictedUnpickler` (its errors propagate unchanged)."""
    return RestrictedUnpickler(io.BytesIO(data), resolve, source=source, why=why).load()
