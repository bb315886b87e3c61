"""Reading the pickled latency files (HELP ``.pt`` zip archives, LatBench ``.pickle``) safely.

Both formats hold plain Python objects (lists, dicts, floats) plus numpy scalars, never tensors.
A restricted unpickler admits only the few globals that such data needs, so a tampered file
cannot run code; any other global is refused with an error naming the file.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

from hwsurrogate.datasets.importers._common import read_bytes
from hwsurrogate.errors import SourceFormatError

#: (module, name) pairs a data pickle may reference: numpy scalars/arrays and their dtypes.
_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
    }
)


class _DataUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, path: Path) -> None:
        super().__init__(io.BytesIO(data))
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise SourceFormatError(
                f"{self._path}: pickle references {module}.{name}, which plain latency data never "
                "needs; refusing to load it"
            )
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:  # torch tensors are stored as persistent ids
        raise SourceFormatError(f"{self._path}: holds tensor storage ({pid!r}); expected plain lists/dicts")


def loads_data(data: bytes, path: Path) -> Any:
    """Unpickle plain data (numpy scalars allowed); errors name ``path``."""
    try:
        return _DataUnpickler(data, path).load()
    except SourceFormatError:
        raise
    except Exception as exc:  # truncated / corrupt pickles raise many different types
        raise SourceFormatError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None


def read_pickle(path: Path) -> Any:
    """A plain ``.pickle`` file (optionally .xz/.gz compressed)."""
    return loads_data(read_bytes(path), path)


def read_torch_zip(path: Path) -> Any:
    """The object inside a PyTorch zip archive (``<name>/data.pkl``), without importing torch."""
    data = read_bytes(path)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [n for n in zf.namelist() if n.endswith("data.pkl")]
            if len(members) != 1:
                raise SourceFormatError(f"{path}: expected one data.pkl member, found {members}")
            payload = zf.read(members[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise SourceFormatError(
            f"{path}: not a readable torch zip archive ({exc}); truncated or corrupt"
        ) from None
    return loads_data(payload, path)
