"""Importers of public measurement data, one module per source.

Each module exposes ``SOURCE`` (a :class:`Source`) and ``load(path) -> dict[kind, DataFrame]``.
:func:`import_source` resolves the path (``--from PATH`` or ``$HWSURROGATE_DATA_DIR/<subpath>``),
loads every frame, checks each against its schema and commits them to the store all or nothing,
replacing the source's previous partitions (so re-importing is idempotent).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hwsurrogate.datasets import Kind
from hwsurrogate.errors import HwSurrogateError, SourceFormatError, SourceNotFoundError, UnknownSourceError

if TYPE_CHECKING:  # polars and the store load with the first import, not with the list of sources
    import polars as pl

    from hwsurrogate.datasets.store import DatasetStore

__all__ = [
    "IMPORTERS",
    "ImportOutcome",
    "ImportReport",
    "Source",
    "default_path",
    "import_available",
    "import_source",
    "importer",
    "load_source",
    "sources",
]


@dataclass(frozen=True)
class Source:
    name: str
    kinds: tuple[Kind, ...]
    subpath: str  # relative to HWSURROGATE_DATA_DIR
    url: str  # public download location for users with network
    license: str
    description: str


class _ImporterModule(Protocol):
    SOURCE: Source

    def load(self, path: Path) -> dict[Kind, pl.DataFrame]: ...


#: Registered importers, in import order (name -> module under this package).
IMPORTERS: dict[str, str] = {
    "help": "help",
    "latbench": "latbench",
    "gpperf": "gpperf",
    "neusight": "neusight",
    "neusight_ops": "neusight_ops",
    "neusight_traces": "neusight_traces",
    "aiconfigurator": "aiconfigurator",
    "wa-hls4ml": "wa_hls4ml",
    "wa-hls4ml-dense": "wa_hls4ml_dense",
    "hlsyn": "hlsyn",
    "harp": "harp",
    "hlsdataset": "hlsdataset",
}


def importer(name: str) -> _ImporterModule:
    """The module of source ``name`` (imported now); UnknownSourceError names the known sources."""
    if name not in IMPORTERS:
        raise UnknownSourceError(f"unknown source {name!r}; known sources: {', '.join(IMPORTERS)}")
    return importlib.import_module(f"{__name__}.{IMPORTERS[name]}")  # type: ignore[return-value]


def sources() -> list[Source]:
    """Every registered source's description, in import order."""
    return [importer(n).SOURCE for n in IMPORTERS]


def default_path(name: str, data_dir: Path | None = None) -> Path:
    """``<data_dir>/<subpath>`` for a source; ``data_dir`` defaults to ``HWSURROGATE_DATA_DIR``."""
    from hwsurrogate.settings import get_settings

    src = importer(name).SOURCE
    base = data_dir if data_dir is not None else get_settings(fresh=True).data_dir
    if base is None:
        raise SourceNotFoundError(
            f"no path for source {name!r}: pass --from PATH or set HWSURROGATE_DATA_DIR "
            f"(the data can be downloaded from {src.url})"
        )
    return Path(base) / src.subpath


@dataclass(frozen=True)
class ImportReport:
    source: str
    path: Path
    rows: dict[str, int]
    seconds: float


def load_source(name: str, path: Path | None = None) -> tuple[Path, dict[Kind, pl.DataFrame]]:
    """Read a source into frames without writing anything."""
    mod = importer(name)
    path = Path(path) if path is not None else default_path(name)
    if not path.exists():
        raise SourceNotFoundError(f"source {name!r} not found at {path}; download it from {mod.SOURCE.url}")
    try:
        frames = mod.load(path)
    except HwSurrogateError:
        raise
    except Exception as exc:  # an unexpected parser failure still names the source and path
        raise SourceFormatError(f"source {name!r} at {path}: {type(exc).__name__}: {exc}") from exc
    return path, frames


def import_source(name: str, path: Path | None = None, *, store: DatasetStore | None = None) -> ImportReport:
    """Import one source into the store (replacing its previous rows); all or nothing."""
    from hwsurrogate.datasets.store import DatasetStore, Write

    t0 = time.perf_counter()
    store = store or DatasetStore()
    path, frames = load_source(name, path)
    partition = name
    counts = store.commit([Write(kind, partition, frame, "replace") for kind, frame in frames.items()])
    rows = {kind: n for (kind, _), n in counts.items()}
    return ImportReport(name, path, rows, time.perf_counter() - t0)


@dataclass(frozen=True)
class ImportOutcome:
    """What happened to one source in :func:`import_available`."""

    source: str
    report: ImportReport | None = None
    skipped: str | None = None  # the source is absent: why
    error: str | None = None  # the import failed (its previous rows are unchanged)


def import_available(names: Iterable[str], *, store: DatasetStore) -> Iterator[ImportOutcome]:
    """Import each named source found under ``HWSURROGATE_DATA_DIR``, one commit per source.

    Absent sources are skipped with the reason; a failing source does not stop the others.
    """
    for name in names:
        try:
            path = default_path(name)
            if not path.exists():
                yield ImportOutcome(name, skipped=f"not found at {path}")
                continue
            yield ImportOutcome(name, report=import_source(name, path, store=store))
        except SourceNotFoundError as exc:
            yield ImportOutcome(name, skipped=str(exc))
        except HwSurrogateError as exc:
            yield ImportOutcome(name, error=str(exc))
