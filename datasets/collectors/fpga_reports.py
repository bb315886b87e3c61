"""Readers for Xilinx HLS and Vivado reports and hls4ml project descriptions.

* ``<top>_csynth.xml`` / ``csynth.xml`` (Vivado HLS and Vitis HLS C-synthesis estimates) and,
  when no XML is present, ``<top>_csynth.rpt`` (the text version);
* ``vivado_synth.rpt`` (or any ``report_utilization`` text report of a whole design):
  7-series ("Slice LUTs", "Slice Registers") and UltraScale ("CLB LUTs", "CLB Registers")
  names, "DSPs", "Block RAM Tile" (36 Kb tiles), "URAM", CARRY4/CARRY8;
* ``hls4ml_config.yml`` (custom YAML tags such as ``!keras_model`` are tolerated) and
  ``firmware/parameters.h`` (one entry per layer config struct: ``n_in``, ``n_out``,
  ``reuse_factor``, ``strategy``, ``io_type`` ...).

Every reader raises :class:`~hwsurrogate.errors.SourceFormatError` naming the file and the
missing or malformed field when a report is truncated or is not what its name says.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hwsurrogate.errors import SourceFormatError


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        raise SourceFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _num(text: str | None, *, path: Path, name: str, required: bool = True) -> float | None:
    """A number from a report cell; 'undef', '?', '-' and empty become None (or an error if required)."""
    raw = (text or "").strip()
    cleaned = re.sub(r"\s*(ns|us|ms)$", "", raw).replace(",", "")
    try:
        return float(cleaned)
    except ValueError:
        if required:
            raise SourceFormatError(f"{path}: field {name!r} is {raw!r}, expected a number") from None
        return None


def _hls_tool(version: str | None, header_tool: str | None = None) -> str:
    """vivado_hls up to 2020.1, vitis_hls from 2020.2 (or as the report header says)."""
    if header_tool:
        return header_tool
    m = re.match(r"\s*(\d{4})\.(\d+)", version or "")
    if m and (int(m.group(1)), int(m.group(2))) >= (2020, 2):
        return "vitis_hls"
    return "vivado_hls"


@dataclass
class HlsEstimate:
    """C-synthesis estimates of one top function."""

    path: Path
    top: str
    part: str
    tool: str
    tool_version: str | None
    clock_ns: float | None
    estimated_clock_ns: float | None
    cycles: float | None
    cycles_max: float | None
    ii: float | None
    ii_max: float | None
    lut: float
    ff: float
    dsp: float
    bram18k: float
    uram: float | None
    available: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- csynth.xml
def parse_csynth_xml(path: Path) -> HlsEstimate:
    text = _read_text(path)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise SourceFormatError(f"{path}: not well-formed XML ({exc}); truncated report?") from None

    def find(xpath: str, *, required: bool = True) -> str | None:
        node = root.find(xpath)
        if node is None or node.text is None:
            if required:
                raise SourceFormatError(f"{path}: missing <{xpath.split('/')[-1]}> ({xpath})")
            return None
        return node.text.strip()

    def number(xpath: str, *, required: bool = True) -> float | None:
        return _num(find(xpath, required=required), path=path, name=xpath.split("/")[-1], required=required)

    version = find("./ReportVersion/Version", required=False)
    res = root.find("./AreaEstimates/Resources")
    if res is None:
        raise SourceFormatError(f"{path}: missing <AreaEstimates><Resources>")
    dsp_tag = next((t for t in ("DSP", "DSP48E", "DSP48E2", "DSP58E2") if res.find(t) is not None), None)
    if dsp_tag is None:
        raise SourceFormatError(f"{path}: missing <DSP>/<DSP48E> in <AreaEstimates><Resources>")
    avail: dict[str, float] = {}
    for child in root.findall("./AreaEstimates/AvailableResources/*"):
        value = _num(child.text, path=path, name=f"AvailableResources/{child.tag}", required=False)
        if value is not None:
            avail[child.tag] = value
    perf = "./PerformanceEstimates/SummaryOfOverallLatency/"
    return HlsEstimate(
        path=path,
        top=find("./UserAssignments/TopModelName") or "",
        part=find("./UserAssignments/Part") or "",
        tool=_hls_tool(version),
        tool_version=version,
        clock_ns=number("./UserAssignments/TargetClockPeriod"),
        estimated_clock_ns=number("./PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod",
                                  required=False),
        cycles=number(perf + "Best-caseLatency", required=False),
        cycles_max=number(perf + "Worst-caseLatency", required=False),
        ii=number(perf + "Interval-min", required=False),
        ii_max=number(perf + "Interval-max", required=False),
        lut=number("./AreaEstimates/Resources/LUT"),  # type: ignore[arg-type]
        ff=number("./AreaEstimates/Resources/FF"),  # type: ignore[arg-type]
        dsp=number(f"./AreaEstimates/Resources/{dsp_tag}"),  # type: ignore[arg-type]
        bram18k=number("./AreaEstimates/Resources/BRAM_18K"),  # type: ignore[arg-type]
        uram=number("./AreaEstimates/Resources/URAM", required=False),
        available=avail,
    )  # fmt: skip


# ---------------------------------------------------------------------------------- csynth.rpt
def _table_rows(lines: list[str], start: int) -> list[list[str]]:
    """Rows ``|a|b|c|`` of the first ASCII table at or after ``start`` (separator lines skipped)."""
    rows: list[list[str]] = []
    i = start
    while i < len(lines) and not lines[i].strip().startswith("+-"):
        i += 1
    while i < len(lines):
        s = lines[i].strip()
        if s.startswith("+-"):
            i += 1
            continue
        if not s.startswith("|"):
            break
        rows.append([c.strip() for c in s.strip("|").split("|")])
        i += 1
    return rows


def parse_csynth_rpt(path: Path) -> HlsEstimate:
    text = _read_text(path)
    lines = text.splitlines()
    m = re.search(r"==\s*(Vivado|Vitis) HLS Report for '([^']+)'", text)
    if not m:
        raise SourceFormatError(f"{path}: no \"== Vivado/Vitis HLS Report for '<top>'\" header")
    header_tool = "vivado_hls" if m.group(1) == "Vivado" else "vitis_hls"
    top = m.group(2)
    vm = re.search(r"^\*\s*Version:\s*(\S+)", text, re.M)
    pm = re.search(r"^\*\s*Target device:\s*(\S+)", text, re.M)
    if not pm:
        raise SourceFormatError(f"{path}: missing field 'Target device'")

    def section(title: str) -> int:
        for i, line in enumerate(lines):
            if line.strip().startswith(title):
                return i
        raise SourceFormatError(f"{path}: missing section {title!r}; truncated report?")

    timing = _table_rows(lines, section("+ Timing"))
    clock_row = next((r for r in timing if len(r) >= 3 and r[0] and r[0] != "Clock"), None)
    if clock_row is None:
        raise SourceFormatError(f"{path}: the timing summary has no clock row")
    latency = _table_rows(lines, section("+ Latency"))
    lat_row = next((r for r in latency if r and re.fullmatch(r"\d+|\?|undef", r[0])), None)
    if lat_row is None or len(lat_row) < 6:
        raise SourceFormatError(f"{path}: the latency summary has no data row (min/max cycles, interval)")
    util = _table_rows(lines, section("== Utilization Estimates"))
    if not util:
        raise SourceFormatError(f"{path}: the utilization summary table is missing")
    header = util[0]
    total = next((r for r in util if r and r[0] == "Total"), None)
    if total is None:
        raise SourceFormatError(f"{path}: the utilization summary has no 'Total' row; truncated report?")
    avail_row = next((r for r in util if r and r[0] == "Available"), None)
    cols = {name: i for i, name in enumerate(header)}
    dsp_col = next((c for c in ("DSP", "DSP48E", "DSP48E2", "DSP58E2") if c in cols), None)
    for need in ("BRAM_18K", "FF", "LUT"):
        if need not in cols:
            raise SourceFormatError(f"{path}: utilization summary lacks the {need!r} column")
    if dsp_col is None:
        raise SourceFormatError(f"{path}: utilization summary lacks a DSP column")

    def cell(row: list[str], col: str, *, required: bool = True) -> float | None:
        if col not in cols or cols[col] >= len(row):
            if required:
                raise SourceFormatError(f"{path}: 'Total' row has no {col!r} value")
            return None
        return _num(row[cols[col]], path=path, name=col, required=required)

    avail: dict[str, float] = {}
    if avail_row is not None:
        for col in ("BRAM_18K", dsp_col, "FF", "LUT", "URAM"):
            v = cell(avail_row, col, required=False)
            if v is not None:
                avail[col] = v
    version = vm.group(1) if vm else None
    return HlsEstimate(
        path=path,
        top=top,
        part=pm.group(1),
        tool=_hls_tool(version, header_tool),
        tool_version=version,
        clock_ns=_num(clock_row[1], path=path, name="Target"),
        estimated_clock_ns=_num(clock_row[2], path=path, name="Estimated", required=False),
        cycles=_num(lat_row[0], path=path, name="Latency min", required=False),
        cycles_max=_num(lat_row[1], path=path, name="Latency max", required=False),
        ii=_num(lat_row[4], path=path, name="Interval min", required=False),
        ii_max=_num(lat_row[5], path=path, name="Interval max", required=False),
        lut=cell(total, "LUT"),  # type: ignore[arg-type]
        ff=cell(total, "FF"),  # type: ignore[arg-type]
        dsp=cell(total, dsp_col),  # type: ignore[arg-type]
        bram18k=cell(total, "BRAM_18K"),  # type: ignore[arg-type]
        uram=cell(total, "URAM", required=False),
        available=avail,
    )


# ---------------------------------------------------------------------------------- vivado_synth.rpt
@dataclass
class VivadoUtilization:
    """Post-synthesis (or post-route) utilization of a whole design from ``report_utilization``."""

    path: Path
    design: str | None
    device: str
    tool_version: str | None
    stage: str  # post_synth | post_route
    design_state: str
    lut: float
    ff: float
    dsp: float
    bram36k: float
    uram: float | None
    carry: float | None
    available: dict[str, float] = field(default_factory=dict)


_STATES = {
    "synthesized": "post_synth",
    "routed": "post_route",
    "fully routed": "post_route",
    "physopt postroute": "post_route",
}


def parse_vivado_utilization(path: Path) -> VivadoUtilization:
    text = _read_text(path)

    def header(name: str, *, required: bool = True) -> str | None:
        m = re.search(rf"^\|\s*{name}\s*:\s*(.+?)\s*$", text, re.M)
        if not m and required:
            raise SourceFormatError(f"{path}: missing header field {name!r}; not a report_utilization file?")
        return m.group(1) if m else None

    tool = header("Tool Version", required=False)
    vm = re.search(r"Vivado v\.?(\S+)", tool or "")
    device = header("Device") or ""
    state = header("Design State") or ""
    stage = _STATES.get(state.strip().lower())
    if stage is None:
        raise SourceFormatError(
            f"{path}: 'Design State' is {state!r}; expected Synthesized (post_synth) or Routed (post_route)"
        )
    sites: dict[str, tuple[float, float | None]] = {}
    for line in text.splitlines():
        s = line.strip()
        if not s.startswith("|") or s.count("|") < 4:
            continue
        cells = [c.strip() for c in s.strip("|").split("|")]
        name = cells[0].rstrip("*").strip()
        if name in sites:
            continue
        try:
            used = float(cells[1])
        except ValueError:
            continue
        avail = None
        if len(cells) >= 4:
            try:
                avail = float(cells[-2])
            except ValueError:
                avail = None
        sites[name] = (used, avail)

    def pick(names: tuple[str, ...], field_name: str, *, required: bool = True) -> float | None:
        for n in names:
            if n in sites:
                return sites[n][0]
        if required:
            raise SourceFormatError(
                f"{path}: no {field_name} row ({' / '.join(repr(n) for n in names)}); truncated report?"
            )
        return None

    lut = pick(("CLB LUTs", "Slice LUTs"), "lut")
    ff = pick(("CLB Registers", "Slice Registers"), "ff")
    dsp = pick(("DSPs",), "dsp")
    bram = pick(("Block RAM Tile",), "bram")
    uram = pick(("URAM",), "uram", required=False)
    carry = pick(("CARRY8", "CARRY4"), "carry", required=False)
    avail = {
        k: v[1]
        for k, v in sites.items()
        if v[1] is not None
        and k
        in ("CLB LUTs", "Slice LUTs", "CLB Registers", "Slice Registers", "DSPs", "Block RAM Tile", "URAM")
    }
    return VivadoUtilization(
        path=path, design=header("Design", required=False), device=device,
        tool_version=vm.group(1) if vm else None, stage=stage, design_state=state,
        lut=lut, ff=ff, dsp=dsp, bram36k=bram, uram=uram, carry=carry,  # type: ignore[arg-type]
        available=avail,  # type: ignore[arg-type]
    )  # fmt: skip


# ---------------------------------------------------------------------------------- hls4ml project
class _LenientLoader(yaml.SafeLoader):
    """SafeLoader that turns unknown tags (``!keras_model path``) into their plain value."""


def _unknown_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


_LenientLoader.add_multi_constructor("!", _unknown_tag)


def read_hls4ml_config(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.load(_read_text(path), Loader=_LenientLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SourceFormatError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise SourceFormatError(f"{path}: expected a mapping at the top level, got {type(doc).__name__}")
    return doc


_STRUCT_RE = re.compile(r"(?://\s*([^\n]*)\n)?\s*struct\s+(\w+)\s*:\s*nnet::(\w+)\s*\{(.*?)\n\s*\};", re.S)
_FIELD_RE = re.compile(r"static\s+const\s+(?:unsigned|int|bool|unsigned\s+int)\s+(\w+)\s*=\s*([^;]+);")
_DEFINE_RE = re.compile(r"^\s*#define\s+(\w+)\s+(\d+)\s*$", re.M)


def parse_parameters_h(path: Path, defines: Path | None = None) -> list[dict[str, Any]]:
    """One dict per hls4ml layer config struct (``name``, ``config``, ``kind`` and its constants)."""
    text = _read_text(path)
    macros: dict[str, int] = {}
    for src in (defines, path):
        if src is not None and src.is_file():
            macros.update({k: int(v) for k, v in _DEFINE_RE.findall(_read_text(src))})
    layers: list[dict[str, Any]] = []
    for comment, struct, base, body in _STRUCT_RE.findall(text):
        entry: dict[str, Any] = {"config": struct, "kind": base.removesuffix("_config")}
        name = comment.strip()
        if name and not name.startswith("hls-fpga-machine-learning"):
            entry["name"] = name
        for key, raw in _FIELD_RE.findall(body):
            raw = raw.strip()
            if re.fullmatch(r"\d+", raw):
                entry[key] = int(raw)
            elif raw in ("true", "false"):
                entry[key] = raw == "true"
            elif raw in macros:
                entry[key] = macros[raw]
            elif raw.startswith("nnet::"):
                entry[key] = raw.removeprefix("nnet::")
        layers.append(entry)
    return layers


_CLASS_NAMES = {
    "dense": "Dense",
    "activ": "Activation",
    "conv1d": "Conv1D",
    "conv2d": "Conv2D",
    "pooling1d": "Pooling1D",
    "pooling2d": "Pooling2D",
    "batchnorm": "BatchNormalization",
    "padding1d": "ZeroPadding1D",
    "padding2d": "ZeroPadding2D",
}


def hls4ml_model_layers(structs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """parameters.h structs in the project's ``model`` vocabulary (``class_name``, ``d_in``, ``d_out`` ...).

    The raw struct constants stay under ``hls4ml``; the ``*_mult`` dense configs hls4ml writes
    inside a convolution are part of that convolution, not layers of their own.
    """
    layers: list[dict[str, Any]] = []
    for st in structs:
        if str(st.get("config", "")).endswith("_mult"):
            continue
        kind = str(st.get("kind", ""))
        g = st.get
        node: dict[str, Any] = {"class_name": _CLASS_NAMES.get(kind, kind)}
        if kind == "dense":
            node |= {"d_in": [g("n_in")], "d_out": [g("n_out")], "neurons": g("n_out")}
        elif kind == "conv1d":
            node |= {"d_in": [g("in_width"), g("n_chan")], "d_out": [g("out_width"), g("n_filt")],
                     "filters": g("n_filt"), "kernel_size": [g("filt_width")]}  # fmt: skip
            if g("stride_width") is not None:
                node["strides"] = [g("stride_width")]
        elif kind == "conv2d":
            node |= {"d_in": [g("in_height"), g("in_width"), g("n_chan")],
                     "d_out": [g("out_height"), g("out_width"), g("n_filt")], "filters": g("n_filt"),
                     "kernel_size": [g("filt_height"), g("filt_width")]}  # fmt: skip
            if g("stride_height") is not None:
                node["strides"] = [g("stride_height"), g("stride_width")]
        elif g("n_in") is not None:
            node |= {"d_in": [g("n_in")], "d_out": [g("n_out", g("n_in"))]}
        if kind == "activ":
            node["activation"] = str(st.get("config", "")).split("_config")[0] or None
        for key in ("reuse_factor", "strategy", "io_type", "name", "n_zeros"):
            if g(key) is not None:
                node[key] = g(key)
        node["hls4ml"] = {k: v for k, v in st.items() if k not in ("name", "kind")}
        layers.append(node)
    return layers
