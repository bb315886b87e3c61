"""Tree models compiled to native code with tl2cgen: built once per model version, cached, verified.

treelite's GTIL spends most of a one-row call in Python (its config is JSON-encoded per call):
~40 us for the GEMM runtime model's 79 trees where the trees themselves take ~1 us. tl2cgen turns
the same treelite model into C (one ``if``/``else`` nest per tree, float64 leaf values summed
in tree order as GTIL does; each feature first mapped to its index among the trees' sorted
thresholds, :data:`BUILD_PARAMS`, so the nests compare small integers with the same outcome)
and compiles it to a shared library, optimised for size (:data:`BUILD_OPTIONS`). Its generated
``predict(union Entry* row, int pred_margin, double* out)`` (which quantizes the row in place
and adds the trees' values to ``out``) is called here through ``ctypes``, one call per row, on
buffers each thread keeps and reuses (:func:`predict_together`: no per-call arrays or ``ctypes``
objects; several models on one feature matrix share one copy and one missing-value pass): about
a microsecond per row and model above the trees' own time. tl2cgen is needed to
*build* only (``pip install 'hwsurrogate[compiled]'`` and a C compiler); serving a built library
needs neither.

**Cache.** One folder per model version under :func:`cache_root` (``$HWSURROGATE_TREE_CACHE``,
default ``$XDG_CACHE_HOME/hwsurrogate/trees``), named by :func:`model_key`: the SHA-256 of the
treelite checkpoint bytes (``treelite.Model.serialize_bytes``) and :data:`BUILD_FORMAT`. A new
model version has new bytes, so a stale library is never looked up. ``<key>/build.json``
records the SHA-256 of ``<key>/trees.so`` as built; a library is loaded only when the cache
root and its folder belong to this user and are writable by no one else, and the library's
bytes hash to the recorded digest (:func:`load`). Anything else is ignored and rebuilt.
Each finished build prunes the cache (:func:`prune`): folders whose ``build.json`` records an
older :data:`BUILD_FORMAT` (no key of this version can name them) are removed, newer formats (a
newer install sharing the cache) and folders without a readable record are left alone.

**Builds** never run in the caller's thread: :func:`request_build` starts a detached process
(``python -m hwsurrogate.surrogates.models.compiled_trees BUILD_DIR``) that outlives a one-off
``hws predict``, and callers keep answering through GTIL until :func:`ready` finds the library
(checked at most once a second per model). One build per key at a time across processes (an
exclusive ``<key>.building`` marker, stale after :data:`STALE_BUILD_S`), and at most
:func:`max_builds` at once per cache: a model that finds the slots taken asks again later. No tl2cgen or no C
compiler (logged once per process at INFO), a failed build (``<key>.failed`` holds the error;
logged once per process as a warning): GTIL answers, never an error.
``HWSURROGATE_COMPILED_TREES=0`` turns compiled serving off.

Answers equal GTIL's (and so scikit-learn's to 1e-9 relative): the same import, the same sums.
A missing value (NaN) is passed as tl2cgen's missing marker (the low 32 bits of the 8-byte
entry set to -1); a present value whose low 32 bits happen to be all ones would read as
missing, so such a batch goes to GTIL instead (:meth:`CompiledTrees.predict` returns None).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "BUILDS_ENV",
    "BUILD_FORMAT",
    "BuildRequest",
    "CompiledTrees",
    "build",
    "build_in_subprocess",
    "cache_root",
    "enabled",
    "load",
    "max_builds",
    "missing_builder",
    "model_key",
    "predict_together",
    "prune",
    "ready",
    "request_build",
    "toolchain",
]

log = logging.getLogger(__name__)

#: bumped whenever the build or the calling convention changes (part of every key).
#: 2: thresholds quantized (tl2cgen ``quantize``: each feature mapped once to its threshold
#: index, the trees compare small integers): 30% less code, and a one-query GEMM call
#: (runtime + power trees, called amid the rest of the query's work, so mostly from cold
#: caches) 19 us faster; the same answers (benchmarks/tree_serving.py checks them)
#: 3: compiled for size (:data:`BUILD_OPTIONS`): the trees are branches, so less code is less time
#: wherever the code is not already in the CPU's caches, which a one-query call's trees never are
#: (runtime + power trees amid a GEMM query ~12 us less, 88 vs 100 us a query at load 9; warm
#: 128-row batches of both 0.95 vs 1.39 ms; the same answers)
BUILD_FORMAT = 3
#: tl2cgen parameters of every build (with ``parallel_comp`` by the number of trees)
BUILD_PARAMS: dict[str, int] = {"quantize": 1}
#: compiler flags of every build, after tl2cgen's ``-O3`` (so they win)
BUILD_OPTIONS: list[str] = ["-Os"]
LIB_FILE = "trees.so"
META_FILE = "build.json"
CHECKPOINT_FILE = "model.treelite"
#: a build marker older than this is taken as a build that died
STALE_BUILD_S = 900.0
#: ``$HWSURROGATE_COMPILED_BUILDS``: detached builds running at once per cache, across processes
#: (default: half the cores, at least 1). Each compiles C on one core; a server that met every
#: latency device's model in a minute started ~79 builds at once without it (load average 50)
BUILDS_ENV = "HWSURROGATE_COMPILED_BUILDS"
#: what :func:`request_build` did: started a build, found one running for the key, found the
#: cache's build slots taken (ask again later), or will not build it here (off, no tl2cgen or
#: compiler, a failed build, a cache that is not private)
BuildRequest = Literal["started", "building", "busy", "off"]

#: the name of a finished build's folder: its key (:func:`model_key`)
_KEY_RE = re.compile(r"[0-9a-f]{64}")

_loaded: dict[str, CompiledTrees] = {}
_logged: set[str] = set()


def enabled() -> bool:
    """Whether compiled serving is on (``HWSURROGATE_COMPILED_TREES`` is not ``0``) on a
    little-endian machine (the entry layout the calls rely on)."""
    return os.environ.get("HWSURROGATE_COMPILED_TREES", "1") != "0" and sys.byteorder == "little"


def cache_root() -> Path:
    """``$HWSURROGATE_TREE_CACHE``, else ``$XDG_CACHE_HOME/hwsurrogate/trees`` (``~/.cache/...``)."""
    raw = os.environ.get("HWSURROGATE_TREE_CACHE")
    if raw:
        return Path(raw)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hwsurrogate" / "trees"


def model_key(checkpoint: bytes) -> str:
    """The cache key of a treelite checkpoint: SHA-256 of its bytes and :data:`BUILD_FORMAT`."""
    return hashlib.sha256(b"hws-trees-%d\0" % BUILD_FORMAT + checkpoint).hexdigest()


def toolchain() -> str | None:
    """The C compiler tl2cgen will call (``$CC``, else gcc, clang or cc on PATH), or None."""
    for name in (os.environ.get("CC"), "gcc", "clang", "cc"):
        if name and shutil.which(name):
            return name
    return None


def missing_builder() -> str | None:
    """Why this machine cannot build compiled trees (no tl2cgen, no C compiler), or None."""
    if importlib.util.find_spec("tl2cgen") is None:
        return "tl2cgen is not installed (pip install 'hwsurrogate[compiled]')"
    if toolchain() is None:
        return "no C compiler (gcc, clang, cc or $CC)"
    return None


def _log_once(reason: str, message: str, *args: Any, level: int = logging.WARNING) -> None:
    if reason not in _logged:
        _logged.add(reason)
        log.log(level, message, *args)


def _private(path: Path) -> bool:
    """``path`` exists, belongs to this user and no one else may write it."""
    try:
        st = path.stat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


class CompiledTrees:
    """A verified compiled library of one single-output tree model, called through ``ctypes``."""

    def __init__(self, path: Path, n_features: int) -> None:
        lib = ctypes.CDLL(str(path))
        self._lib = lib  # keeps the library loaded
        self.n_features = int(n_features)
        fn = lib.predict
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        self.entry = fn  #: the library's ``predict(union Entry* row, int pred_margin, double* out)``

    def predict(self, x: np.ndarray) -> np.ndarray | None:
        """One value per row of the float64 matrix ``x``; None where a present value's bits
        would read as tl2cgen's missing marker (the caller uses GTIL for that batch)."""
        out = predict_together((self,), x)
        return None if out is None else out[0]


#: a thread keeps its entry and output buffers for batches up to this many rows (reused by its
#: next calls); a larger batch gets buffers of its own for the call
SCRATCH_ROWS = 128


class _Buffers:
    """One thread's buffers for ``n_features``-wide rows: the rows as entries (missing values
    marked), a scratch copy for every library but the last (each call quantizes its rows in
    place) and the outputs, with their addresses taken once."""

    __slots__ = ("out", "out_at", "rows", "rows_at", "scratch", "scratch_at", "words")

    def __init__(self, n_rows: int, n_features: int, n_libraries: int) -> None:
        self.rows = np.empty((n_rows, n_features))
        self.words = self.rows.view(np.int32)  # each entry as (low, high) 32-bit halves
        self.scratch = np.empty_like(self.rows)
        self.out = np.empty(n_rows * n_libraries)
        self.rows_at, self.scratch_at, self.out_at = (
            a.ctypes.data for a in (self.rows, self.scratch, self.out)
        )


_thread_buffers = threading.local()


def _buffers(n_rows: int, n_features: int, n_libraries: int) -> _Buffers:
    """This thread's buffers for the call (kept per row width), or a batch's own past :data:`SCRATCH_ROWS`."""
    if n_rows > SCRATCH_ROWS:
        return _Buffers(n_rows, n_features, n_libraries)
    kept = _thread_buffers.__dict__
    bufs = kept.get(n_features)
    if bufs is None or len(bufs.out) < SCRATCH_ROWS * n_libraries:
        bufs = kept[n_features] = _Buffers(SCRATCH_ROWS, n_features, max(2, n_libraries))
    return bufs


def predict_together(libraries: Sequence[CompiledTrees], x: np.ndarray) -> np.ndarray | None:
    """Each library's value per row of the float64 matrix ``x`` (taking as many features), as a
    ``(len(libraries), rows)`` array; None where a present value's bits would read as tl2cgen's
    missing marker (the caller uses GTIL for that batch).

    The rows are copied once into this thread's buffers and their missing values marked once for
    every library (a one-query GEMM call: runtime and power trees on one feature row), then each
    library's entry point is called per row (the libraries quantize their rows in place, so each
    but the last gets a fresh copy). Threads never share buffers: several threads predicting at
    once each get their own answers."""
    if x.ndim != 2:
        raise ValueError(f"x must be a 2-d feature matrix; got shape {x.shape}")
    n, width = x.shape
    for lib in libraries:
        if lib.n_features != width:
            raise ValueError(f"x has {width} features; these compiled trees take {lib.n_features}")
    k = len(libraries)
    bufs = _buffers(n, width, k)
    rows = bufs.rows[:n]
    np.copyto(rows, x)
    words = bufs.words[:n]
    nan = np.isnan(rows)
    if np.count_nonzero(nan):
        low = words[:, 0::2]
        if np.count_nonzero(low[~nan] == -1):
            return None
        low[nan] = -1
    elif np.count_nonzero(words == -1):
        return None  # without NaN no high half is all ones, so only a low half can be (contiguous: cheaper)
    stride, size = 8 * width, 8 * width * n
    ctypes.memset(bufs.out_at, 0, 8 * n * k)  # the trees add their values to the output
    for j, lib in enumerate(libraries):
        at = bufs.rows_at
        if j < k - 1:
            ctypes.memmove(bufs.scratch_at, bufs.rows_at, size)
            at = bufs.scratch_at
        fn, res = lib.entry, bufs.out_at + 8 * n * j
        for i in range(n):
            fn(at + i * stride, 0, res + 8 * i)
    return bufs.out[: n * k].reshape(k, n).copy()


def ready(key: str) -> CompiledTrees | None:
    """The compiled library of ``key`` when built and verified (loaded once per process), else None."""
    got = _loaded.get(key)
    if got is None:
        got = load(key)
        if got is not None:
            _loaded[key] = got
    return got


def load(key: str, root: Path | None = None) -> CompiledTrees | None:
    """Load ``<root>/<key>/trees.so`` if we built it: root and folder private to this user, the
    library's SHA-256 equal to the one ``build.json`` recorded, one target, one class."""
    root = cache_root() if root is None else root
    folder = root / key
    lib, meta_path = folder / LIB_FILE, folder / META_FILE
    if not (_private(root) and _private(folder) and _private(lib) and _private(meta_path)):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        digest = hashlib.sha256(lib.read_bytes()).hexdigest()
    except (OSError, ValueError):
        return None
    if meta.get("key") != key or meta.get("format") != BUILD_FORMAT or meta.get("sha256") != digest:
        _log_once(f"mismatch:{key}", "compiled trees %s do not match their build record; not loaded", folder)
        return None
    compiled = CompiledTrees(lib, int(meta["n_features"]))
    lib_handle = compiled._lib
    if lib_handle.get_num_target() != 1 or lib_handle.get_num_feature() != compiled.n_features:
        return None
    return compiled


def _marker(root: Path, key: str, suffix: str) -> Path:
    return root / f"{key}.{suffix}"


def _remove_stale_builds(root: Path) -> None:
    """Remove build folders older than :data:`STALE_BUILD_S` (a build process that was killed)."""
    cutoff = time.time() - STALE_BUILD_S
    for work in root.glob(".build-*"):
        try:
            if work.stat().st_mtime < cutoff:
                shutil.rmtree(work, ignore_errors=True)
        except OSError:
            pass


def prune(root: Path | None = None) -> list[Path]:
    """Remove the finished builds of an older :data:`BUILD_FORMAT` from the cache; returns them.

    Run after every build (:func:`build`). Only ``<root>/<key>`` folders are looked at, which
    appear by one rename once a build is complete: a build under way (``.build-*`` folders,
    ``<key>.building`` markers) is never touched. A folder is removed when it belongs to this
    user, is writable by no one else and its ``build.json`` records a format below this
    version's; a newer format (a newer install sharing the cache) or no readable record is kept.
    The folder is first renamed to a ``.build-pruned-*`` name (atomic: another process sees the
    whole build or none of it; a removal cut short is swept as a stale build folder), then
    deleted; a process of an older install that has the library loaded keeps its mapping (on
    Linux an unlinked shared library stays valid) and would build it again on its next start.
    """
    root = cache_root() if root is None else root
    removed: list[Path] = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return removed
    for folder in entries:
        if not _KEY_RE.fullmatch(folder.name) or not _private(folder):
            continue
        try:
            meta = json.loads((folder / META_FILE).read_text())
        except (OSError, ValueError):
            continue
        fmt = meta.get("format") if isinstance(meta, dict) else None
        if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt >= BUILD_FORMAT:
            continue
        grave = root / f".build-pruned-{folder.name[:12]}-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            folder.rename(grave)
        except OSError:  # removed (or renamed) meanwhile by another process
            continue
        shutil.rmtree(grave, ignore_errors=True)
        removed.append(folder)
    if removed:
        log.info("removed %d compiled-trees builds of older formats from %s", len(removed), root)
    return removed


def max_builds() -> int:
    """Detached builds allowed at once per cache (:data:`BUILDS_ENV`, default half the cores, >= 1)."""
    raw = os.environ.get(BUILDS_ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"${BUILDS_ENV}={raw!r}: give a whole number of builds >= 1")
        return int(raw)
    return max(1, (os.cpu_count() or 1) // 2)


def _builds_running(root: Path) -> int:
    """Build markers in ``root`` younger than :data:`STALE_BUILD_S` (builds under way)."""
    cutoff = time.time() - STALE_BUILD_S
    n = 0
    for marker in root.glob("*.building"):
        try:
            n += marker.stat().st_mtime >= cutoff
        except OSError:
            pass
    return n


def request_build(key: str, checkpoint: bytes) -> BuildRequest:
    """Start a detached build of ``key`` unless one runs for it, the cache already runs
    :func:`max_builds` builds (``"busy"``: ask again later), it failed before, or it cannot be
    built here (no tl2cgen, no compiler: logged once). See :data:`BuildRequest`."""
    if not enabled():
        return "off"
    missing = missing_builder()
    if missing is not None:
        # an expected set-up (the extra not installed), so INFO: a one-off command stays quiet
        _log_once(missing, "%s: trees are served through treelite's GTIL", missing, level=logging.INFO)
        return "off"
    root = cache_root()
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(root):
            _log_once(f"root:{root}", "tree cache %s is not private to this user: compiled trees off", root)
            return "off"
        failed = _marker(root, key, "failed")
        if failed.exists():
            _log_once(f"failed:{key}", "compiled trees %s failed to build (%s); serving through GTIL",
                      key[:12], failed.read_text()[:500])  # fmt: skip
            return "off"
        marker = _marker(root, key, "building")
        try:
            if time.time() - marker.stat().st_mtime < STALE_BUILD_S:
                return "building"  # another process builds it
            marker.unlink()
        except FileNotFoundError:
            pass
        if _builds_running(root) >= max_builds():
            return "busy"
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        _remove_stale_builds(root)
        work = Path(tempfile.mkdtemp(prefix=f".build-{key[:12]}-", dir=root))
        (work / CHECKPOINT_FILE).write_bytes(checkpoint)
        with open(work / "build.log", "wb") as out:
            subprocess.Popen(
                [sys.executable, "-m", __name__, str(work), key],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
    except OSError as exc:  # an exclusive marker another process just made, a read-only cache ...
        if isinstance(exc, FileExistsError):
            return "building"
        _log_once(f"start:{key}", "could not start the compiled-trees build: %s", exc)
        return "off"
    return "started"


def build(checkpoint: bytes, key: str, root: Path | None = None, *, work: Path | None = None) -> Path:
    """Compile ``checkpoint`` (treelite bytes hashing to ``key``) into ``<root>/<key>/trees.so``.

    Builds in a private temporary folder and renames it into place (a concurrent build of the
    same key leaves the first one). Raises on any failure; returns the library's path."""
    if model_key(checkpoint) != key:
        raise ValueError("the checkpoint does not hash to its key")
    import tl2cgen
    import treelite

    root = cache_root() if root is None else root
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".build-{key[:12]}-", dir=root)) if work is None else work
    cc = toolchain()
    if cc is None:
        raise RuntimeError("no C compiler found")
    model = treelite.Model.deserialize_bytes(checkpoint)
    start = time.perf_counter()
    lib = work / LIB_FILE
    n_trees = model.num_tree
    tl2cgen.export_lib(model, toolchain=cc, libpath=lib, nthread=1, options=list(BUILD_OPTIONS),
                       params={**BUILD_PARAMS, "parallel_comp": max(1, min(8, n_trees // 40))})  # fmt: skip
    for leftover in work.iterdir():
        if leftover.name not in (LIB_FILE, "build.log"):
            leftover.unlink()
    meta = {
        "key": key,
        "format": BUILD_FORMAT,
        "sha256": hashlib.sha256(lib.read_bytes()).hexdigest(),
        "n_features": int(model.num_feature),
        "trees": int(n_trees),
        "tl2cgen": tl2cgen.__version__,
        "compiler": cc,
        "options": list(BUILD_OPTIONS),
        "build_s": round(time.perf_counter() - start, 2),
    }
    (work / META_FILE).write_text(json.dumps(meta))
    for path in work.iterdir():
        path.chmod(0o600 if path.name != LIB_FILE else 0o700)
    work.chmod(0o700)
    final = root / key
    try:
        work.rename(final)
    except OSError:  # built meanwhile by another process: keep theirs if it loads
        shutil.rmtree(work, ignore_errors=True)
    try:
        prune(root)
    except Exception as exc:  # noqa: BLE001 - the build is done; a cache left unpruned is no failure
        log.warning("could not prune the compiled-trees cache %s: %s", root, exc)
    return final / LIB_FILE


def build_in_subprocess(checkpoint: bytes, key: str, root: Path | None = None, *, timeout: float = 900) -> Path:
    """:func:`build` in a child process, waited for (what :func:`request_build` starts detached).

    tl2cgen carries its own copy of treelite's C++ library (4.1 beside treelite 4.8): two versions
    of one C++ library in a process that also serves trees through treelite corrupted memory (a
    test run crashed). So :func:`build` runs only in a process that exits after it, and a
    process that serves or tests trees never imports tl2cgen. Raises ValueError for a checkpoint
    that does not hash to ``key``, RuntimeError with the build's error when it fails.
    """
    if model_key(checkpoint) != key:
        raise ValueError("the checkpoint does not hash to its key")
    root = cache_root() if root is None else root
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".build-{key[:12]}-", dir=root))
    (work / CHECKPOINT_FILE).write_bytes(checkpoint)
    proc = subprocess.run([sys.executable, "-m", __name__, str(work), key], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip
    lib = root / key / LIB_FILE
    if not lib.exists():
        failed = _marker(root, key, "failed")
        reason = failed.read_text() if failed.exists() else (proc.stdout + proc.stderr)[-2000:]
        raise RuntimeError(f"building compiled trees {key[:12]} failed (exit {proc.returncode}): {reason}")
    return lib


def _main(argv: list[str]) -> int:
    """The detached build: ``python -m ... WORK_DIR KEY`` (started by :func:`request_build`)."""
    work, key = Path(argv[0]), argv[1]
    root = work.parent
    try:
        build((work / CHECKPOINT_FILE).read_bytes(), key, root, work=work)
        return 0
    except Exception as exc:  # noqa: BLE001 - recorded for the serving processes, which use GTIL
        _marker(root, key, "failed").write_text(f"{type(exc).__name__}: {exc}")
        shutil.rmtree(work, ignore_errors=True)
        return 1
    finally:
        _marker(root, key, "building").unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
