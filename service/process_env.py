"""The process settings a prediction server starts with (``hws serve`` and the benchmarks that
start one): no imports beyond the standard library, so reading them sets nothing off."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["POLARS_JEMALLOC_ITEMS", "SERVER_ENV_DEFAULTS", "server_environment"]

#: Settings the server process starts with where the user's environment does not set them (the
#: user's own values, even empty ones, win). Allocators: glibc's malloc keeps at most two arenas
#: instead of eight per core, and polars' jemalloc returns freed pages to the system after a
#: second (in a background thread) instead of keeping them: with 16 readers of 50,000-row pages,
#: what the readers leave behind shrinks (figures in docs/store.md). OpenMP: the threads of a
#: scikit-learn batch sleep when they wait instead of spinning (``OMP_WAIT_POLICY=PASSIVE``): on a
#: machine whose cores are busy with other work, spinning threads made a 10,000-row GEMM batch
#: 20-30x slower (2.5-3.6 s against 108-115 ms in benchmarks/service_load.py, docs/service.md
#: "OpenMP threads that sleep"). All are read when the process starts
#: (jemalloc's when polars is imported: polars puts its own defaults before the value it finds,
#: later items win; OpenMP's when the runtime loads), so ``hws serve`` starts the server as a
#: fresh process with them (``exec``).
SERVER_ENV_DEFAULTS: dict[str, str] = {
    "MALLOC_ARENA_MAX": "2",
    "_RJEM_MALLOC_CONF": "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0",
    "OMP_WAIT_POLICY": "PASSIVE",
}


#: The items polars itself writes into ``_RJEM_MALLOC_CONF`` when it is imported, before the value
#: it found (polars/__init__.py): every child of a process that imported polars inherits them,
#: so they are not the user's setting.
POLARS_JEMALLOC_ITEMS = frozenset(
    {"dirty_decay_ms:500", "muzzy_decay_ms:1000", "thp:always", "metadata_thp:always"}
)


def server_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The :data:`SERVER_ENV_DEFAULTS` variables ``environ`` does not set: absent, or for
    ``_RJEM_MALLOC_CONF`` holding nothing but polars' own items (:data:`POLARS_JEMALLOC_ITEMS`)."""
    out = {}
    for name, value in SERVER_ENV_DEFAULTS.items():
        current = environ.get(name)
        if name == "_RJEM_MALLOC_CONF" and current is not None:
            current = ",".join(i for i in current.split(",") if i and i not in POLARS_JEMALLOC_ITEMS) or None
        if current is None:
            out[name] = value
    return out
