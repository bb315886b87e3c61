"""Reading the pickled latency files (HELP ``.pt`` zip archives, LatBench ``.pickle``) safely.

Both formats hold plain Python objects (lists, dicts, floats) plus numpy scalars, never tensors
or arrays. A restricted unpickler (:mod:`hwsurrogate.safe_pickle`) admits only the few globals that such data needs, so a
tampered file cannot run code; any other global is refused with an error naming the file.

It is also memory-safe: no byte of the file reaches numpy's own reconstruction. numpy's
``dtype`` and ``scalar`` are replaced by stand-ins that accept only plain numeric dtypes (no
structured, object, void or string dtypes: a structured dtype whose pickled flags hide an
object field would otherwise make numpy read file bytes as a pointer) and build each scalar
with ``numpy.frombuffer`` from exactly ``itemsize`` bytes. Arrays (``_reconstruct``) are
refused: the data never holds them.
"""

from __future__ import annotations

import io
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from hwsurrogate.datasets.importers._common import read_bytes
from hwsurrogate.errors import SourceFormatError
from hwsurrogate.safe_pickle import PickleRefusedError, restricted_loads

#: dtype codes a data pickle may name: booleans, integers, floats, complex numbers.
_NUMERIC_CODES = frozenset(
    {"b1", "?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"}
)
#: Largest ``data.pkl`` member read from a torch zip (the HELP files are a few MB).
MAX_PICKLE_BYTES = 512 * 1024 * 1024


class _Refused(Exception):
    """Raised inside the unpickler; :func:`loads_data` turns it into a SourceFormatError naming the file."""


class _SafeDtype:
    """``numpy.dtype(code, align, copy)`` + its pickled state, checked before numpy sees either."""

    def __init__(self, code: object, align: object = False, copy: object = True) -> None:
        if not isinstance(code, str) or code not in _NUMERIC_CODES:
            raise _Refused(f"a numpy dtype {code!r}; only plain numeric dtypes are allowed")
        self.code = code
        self.byteorder = "="

    def __setstate__(self, state: object) -> None:
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
        plain = (
            isinstance(state, tuple)
            and len(state) in (8, 9)
            and state[0] in (3, 4)
            and state[1] in ("<", ">", "|", "=")
            and state[2:5] == (None, None, None)
            and state[5:7] == (-1, -1)
            and (len(state) == 8 or state[8] is None)
        )
        if not plain:
            raise _Refused("a numpy dtype with fields, a sub-array or metadata (a structured dtype)")
        self.byteorder = state[1]  # type: ignore[index]

    def numpy(self) -> np.dtype[Any]:
        dt = np.dtype(self.code)
        return dt.newbyteorder(self.byteorder) if self.byteorder in ("<", ">") else dt


def _safe_scalar(dtype: object, data: object = None) -> Any:
    """``numpy.core.multiarray.scalar``: one numeric value from exactly ``itemsize`` bytes."""
    if not isinstance(dtype, _SafeDtype):
        raise _Refused(f"a numpy scalar of {type(dtype).__name__}; expected a plain numeric dtype")
    dt = dtype.numpy()
    if not isinstance(data, bytes) or len(data) != dt.itemsize:
        raise _Refused(f"a numpy {dt} scalar whose payload is not {dt.itemsize} bytes")
    return np.frombuffer(data, dtype=dt)[0].copy()


def _latin1(text: object, encoding: object = "latin1") -> bytes:
    """``_codecs.encode``, as protocol-2 pickles use it for bytes: text -> latin-1 bytes only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


#: (module, name) a data pickle may reference -> the safe stand-in that is called instead.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "scalar"): _safe_scalar,
    ("numpy._core.multiarray", "scalar"): _safe_scalar,
    ("numpy", "dtype"): _SafeDtype,
    ("_codecs", "encode"): _latin1,
    ("collections", "OrderedDict"): OrderedDict,
}


def _allowed(module: str, name: str) -> Any:
    return _ALLOWED_GLOBALS.get((module, name))


def loads_data(data: bytes, path: Path) -> Any:
    """Unpickle plain data (numpy numeric scalars allowed); errors name ``path``."""
    try:
        return restricted_loads(data, _allowed, source=str(path), why="which plain latency data never needs")
    except PickleRefusedError as exc:
        raise SourceFormatError(str(exc)) from None
    except _Refused as exc:
        raise SourceFormatError(f"{path}: pickle holds {exc}; refusing to load it") from None
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
            members = [i for i in zf.infolist() if i.filename.endswith("data.pkl")]
            if len(members) != 1:
                raise SourceFormatError(
                    f"{path}: expected one data.pkl member, found {[m.filename for m in members]}"
                )
            if members[0].file_size > MAX_PICKLE_BYTES:
                raise SourceFormatError(
                    f"{path}: data.pkl would decompress to {members[0].file_size} bytes "
                    f"(limit {MAX_PICKLE_BYTES}); refusing to read it"
                )
            payload = zf.read(members[0])
    except SourceFormatError:
        raise
    except Exception as exc:  # BadZipFile, LargeZipFile, zlib.error, EOFError, NotImplementedError ...
        raise SourceFormatError(
            f"{path}: not a readable torch zip archive ({type(exc).__name__}: {exc}); truncated or corrupt"
        ) from None
    return loads_data(payload, path)
