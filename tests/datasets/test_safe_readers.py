"""Safe readers of untrusted files (issue 15, F5): tampered pickles and torch zips get a clear error.

The crash repros run in a subprocess, so a segmentation fault fails the test instead of killing
pytest; the hypothesis fuzz feeds corrupted copies of valid files to the same readers.
"""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsurrogate.datasets.importers._pickle import loads_data, read_pickle, read_torch_zip
from hwsurrogate.errors import SourceFormatError

#: Writes the F5 file: a numpy scalar of a structured dtype whose object field is hidden by
#: pickled flags 0, so numpy's own unpickling reads the payload b"AAAAAAAA" as a pointer.
MAKE_TAMPERED = """
import pickle, sys, zipfile
import numpy as np
try:
    from numpy._core.multiarray import scalar
except ImportError:
    from numpy.core.multiarray import scalar

class TamperedDtype:
    def __reduce__(self):
        return (np.dtype, ("V8", False, True), (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0))

class HiddenFields:  # a numeric dtype code, but the pickled state smuggles fields in
    def __reduce__(self):
        return (np.dtype, ("f8", False, True), (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0))

class Evil:
    def __init__(self, dtype):
        self.dtype = dtype
    def __reduce__(self):
        return (scalar, (self.dtype, b"A" * 8))

out, variant = sys.argv[1], sys.argv[2]
data = pickle.dumps({"lat": [Evil(TamperedDtype() if variant == "structured" else HiddenFields())]}, protocol=2)
if out.endswith(".pt"):
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("archive/data.pkl", data)
else:
    open(out, "wb").write(data)
"""

READ = """
import sys
from pathlib import Path
from hwsurrogate.datasets.importers._pickle import read_pickle, read_torch_zip
from hwsurrogate.errors import SourceFormatError
path = Path(sys.argv[1])
try:
    (read_torch_zip if path.suffix == ".pt" else read_pickle)(path)
except SourceFormatError as exc:
    print("REFUSED", exc)
    sys.exit(3)
print("LOADED")
"""


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("variant", ["structured", "hidden-fields"])
@pytest.mark.parametrize("name", ["desktop-gpu-gtx-1080ti-fp32.pickle", "pixel2.pt"])
def test_tampered_numpy_dtype_is_a_clear_error_not_a_crash(tmp_path: Path, name: str, variant: str) -> None:
    path = tmp_path / name
    made = _run(MAKE_TAMPERED, str(path), variant)
    assert made.returncode == 0, made.stderr
    result = _run(READ, str(path))
    assert result.returncode == 3, (
        f"rc={result.returncode} (a negative rc is a signal: a crash)\n{result.stderr}"
    )
    assert "REFUSED" in result.stdout and name in result.stdout and "dtype" in result.stdout


@pytest.mark.slow  # proves the repro is the real attack: numpy's own unpickler crashes on it
def test_the_tampered_file_does_crash_an_unrestricted_unpickler(tmp_path: Path) -> None:
    path = tmp_path / "evil.pickle"
    assert _run(MAKE_TAMPERED, str(path), "structured").returncode == 0
    crashed = _run("import pickle, sys; print(pickle.loads(open(sys.argv[1], 'rb').read()))", str(path))
    assert crashed.returncode < 0  # killed by a signal (SIGSEGV)


def _valid_payload() -> bytes:
    data = {
        "arch": [[1, 2, 3], [4, 5, 6]],
        "lat": [np.float64(1.5), np.float32(2.5), np.int64(7), np.dtype(">f8").type(3.0), 4.0, True],
        "name": "pixel2",
    }
    return pickle.dumps(data, protocol=2)


def _torch_zip(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def test_valid_numpy_scalars_still_load(tmp_path: Path) -> None:
    out = loads_data(_valid_payload(), tmp_path / "x.pickle")
    assert out["lat"][:4] == [1.5, 2.5, 7, 3.0]
    assert isinstance(out["lat"][0], np.float64) and isinstance(out["lat"][2], np.int64)
    pt = tmp_path / "x.pt"
    pt.write_bytes(_torch_zip(_valid_payload()))
    assert read_torch_zip(pt)["name"] == "pixel2"


def test_numpy_arrays_and_object_dtypes_are_refused(tmp_path: Path) -> None:
    for obj in (np.arange(3), np.dtype("O"), np.array(["a"], dtype=object)[0:1]):
        with pytest.raises(SourceFormatError, match="x.pickle"):
            loads_data(pickle.dumps(obj, protocol=2), tmp_path / "x.pickle")


def test_zip_member_larger_than_the_limit_is_refused_before_reading(tmp_path: Path, monkeypatch) -> None:
    import hwsurrogate.datasets.importers._pickle as readers

    monkeypatch.setattr(readers, "MAX_PICKLE_BYTES", 100)
    pt = tmp_path / "big.pt"
    pt.write_bytes(_torch_zip(pickle.dumps(list(range(1000)))))
    with pytest.raises(SourceFormatError, match="big.pt: data.pkl would decompress"):
        read_torch_zip(pt)


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, byte in edits:
        out[pos % len(out)] = byte
    return bytes(out[:cut] if cut is not None else out)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=8)
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@FUZZ
@given(edits=EDITS, cut=st.none() | st.integers(0, 400))
def test_fuzz_corrupted_pickle_loads_or_is_refused(tmp_path_factory, edits, cut) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.pickle"
    path.write_bytes(_mutate(_valid_payload(), edits, cut))
    try:
        read_pickle(path)
    except SourceFormatError as exc:
        assert "f.pickle" in str(exc)


@FUZZ
@given(edits=EDITS, cut=st.none() | st.integers(0, 800))
def test_fuzz_corrupted_torch_zip_loads_or_is_refused(tmp_path_factory, edits, cut) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.pt"
    path.write_bytes(_mutate(_torch_zip(_valid_payload()), edits, cut))
    try:
        read_torch_zip(path)
    except SourceFormatError as exc:
        assert "f.pt" in str(exc)


def test_hws_data_import_of_a_tampered_latbench_copy_exits_with_an_error(tmp_path: Path) -> None:
    """The issue's F5 command, in a subprocess: was a segmentation fault, now exit 2 (bad input) naming the file."""
    import os

    from .test_import_errors import build_latbench

    root = build_latbench(tmp_path / "lb")
    pk = root / "embedded-tpu-edge-tpu-int8.pickle"
    assert _run(MAKE_TAMPERED, str(pk), "structured").returncode == 0
    env = {**os.environ, "HWSURROGATE_STORE": str(tmp_path / "store")}
    cmd = [sys.executable, "-m", "hwsurrogate.cli", "data", "import", "latbench", "--from", str(root)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, f"rc={result.returncode}\n{result.stderr[-2000:]}"
    assert pk.name in result.stderr and "dtype" in result.stderr
    assert not list((tmp_path / "store").glob("**/*.parquet"))
