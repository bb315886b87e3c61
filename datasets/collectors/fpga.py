"""``hws collect fpga``: FPGA resource rows from Xilinx reports or from yosys synthesis here.

The command is in :mod:`hwsurrogate.cli.collect`; this module measures and returns rows, writing nothing.

Two ways to fill the store's ``fpga`` table (source ``collector:fpga``, origin = host name):

``parse``
    Read hls4ml / Vivado HLS / Vitis HLS project folders: C-synthesis estimates
    (``stage=hls_estimate``, ``bram_unit=bram18k``) and, when present, Vivado's
    ``vivado_synth.rpt`` (``stage=post_synth``, ``bram_unit=bram36k``). The model and the
    configuration come from ``hls4ml_config.yml`` and ``firmware/parameters.h``. Both stages of
    a project share one ``design_id`` but stay separate rows.

``sweep``
    Generate Verilog for hls4ml-style quantized dense layers (:mod:`.fpga_rtl`), synthesize each
    with yosys ``synth_xilinx`` for 7-series cells (:mod:`.fpga_yosys`) and store the cell counts
    under ``domain=yosys-xc7``, ``tool=yosys``, ``stage=post_synth``. These are *not* Vivado
    numbers and never share a domain with them.

Every row's ``extra`` holds the environment (host, OS, Python, hwsurrogate, tool versions) so
rows from different machines are comparable; ``measurement_id`` includes the tool version, so
re-running the same design with the same tool is idempotent and a new tool version adds rows.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import platform
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl

from hwsurrogate import __version__
from hwsurrogate.datasets.collectors.fpga_reports import (
    HlsEstimate,
    VivadoUtilization,
    hls4ml_model_layers,
    parse_csynth_rpt,
    parse_csynth_xml,
    parse_parameters_h,
    parse_vivado_utilization,
    read_hls4ml_config,
)
from hwsurrogate.datasets.collectors.fpga_rtl import (
    Conv1DLayerSpec,
    DenseLayerSpec,
    LayerSpec,
    generate_layer_verilog,
    layer_precision,
)
from hwsurrogate.datasets.collectors.fpga_yosys import (
    SynthesisTimeout,
    YosysToolchain,
    find_yosys,
    synthesize_xc7,
)
from hwsurrogate.datasets.precision import FixedPoint, parse_precision
from hwsurrogate.datasets.schemas import conform, schema, with_measurement_id
from hwsurrogate.datasets.store import DatasetStore
from hwsurrogate.errors import CollectorError, HwSurrogateError, SourceFormatError
from hwsurrogate.progress import make_progress

SOURCE = "collector:fpga"
PARTITION = "collector:fpga"
YOSYS_DOMAIN = "yosys-xc7"
YOSYS_PART = "xc7 (yosys synth_xilinx)"
#: measurement ids include the tool version: same design + same tool = same measurement
ID_KEY = ("domain", "design_id", "stage", "tool", "tool_version")


def environment(tool_info: dict[str, str] | None = None) -> dict[str, Any]:
    """Where and with what a row was produced (goes into ``extra.env``)."""
    env: dict[str, Any] = {
        "host": socket.gethostname(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "hwsurrogate": __version__,
        "collected_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if tool_info:
        env.update(tool_info)
    return env


def _json(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def finalize(frame: pl.DataFrame) -> pl.DataFrame:
    """Add provenance and measurement ids and check the frame against the ``fpga`` schema."""
    if frame.height == 0:
        return pl.DataFrame(schema=schema("fpga"))
    frame = frame.with_columns(
        pl.lit(SOURCE).alias("source"),
        pl.lit(socket.gethostname()).alias("origin"),
        pl.lit(datetime.now(UTC), dtype=pl.Datetime("us", "UTC")).alias("imported_at"),
    )
    frame = with_measurement_id(frame, "fpga", key=ID_KEY)
    return conform("fpga", frame, context=SOURCE)


# ====================================================================================== reports
@dataclass
class ProjectFiles:
    """The report files of one HLS project folder."""

    root: Path
    csynth: Path | None = None
    vivado: Path | None = None
    hls4ml_config: Path | None = None
    parameters_h: Path | None = None
    defines_h: Path | None = None
    top: str | None = None


def _build_script(root: Path) -> tuple[str | None, str | None]:
    """(project dir, top) from hls4ml's build_prj.tcl (``open_project X`` / ``set_top Y``)."""
    tcl = root / "build_prj.tcl"
    prj = top = None
    if tcl.is_file():
        for line in tcl.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "open_project":
                prj = parts[-1].strip('"{}')
            elif len(parts) >= 2 and parts[0] == "set_top":
                top = parts[-1].strip('"{}')
    return prj, top


def find_project_files(root: Path) -> ProjectFiles:
    """Locate the reports of the project in ``root`` (a folder) or the single report ``root`` (a file)."""
    if root.is_file():
        name = root.name
        if name.endswith("csynth.xml") or name.endswith("csynth.rpt"):
            return ProjectFiles(root=root.parent, csynth=root)
        if name.endswith(".rpt"):
            return ProjectFiles(root=root.parent, vivado=root)
        raise SourceFormatError(f"{root}: not a csynth.xml / *_csynth.rpt / vivado_synth.rpt report")
    if not root.is_dir():
        raise SourceFormatError(f"{root}: no such file or folder")
    files = ProjectFiles(root=root)
    cfg = root / "hls4ml_config.yml"
    files.hls4ml_config = cfg if cfg.is_file() else None
    params = root / "firmware" / "parameters.h"
    files.parameters_h = params if params.is_file() else None
    defines = root / "firmware" / "defines.h"
    files.defines_h = defines if defines.is_file() else None
    prj, top = _build_script(root)
    if top is None and files.hls4ml_config is not None:
        top = read_hls4ml_config(files.hls4ml_config).get("ProjectName")
    files.top = top
    # C-synthesis report: XML first (it is the machine-readable one), text as a fallback
    for ext in ("xml", "rpt"):
        cands = sorted(p for p in root.rglob(f"*csynth.{ext}") if "syn" in p.parts or p.parent == root)
        if top:
            exact = [p for p in cands if p.name in (f"{top}_csynth.{ext}", f"csynth.{ext}")]
            if prj:
                exact = [p for p in exact if prj in p.parts] or exact
            cands = exact
        if len(cands) > 1:
            # Vivado HLS writes one report per function; without a known top we cannot choose
            shown = ", ".join(str(p.relative_to(root)) for p in cands[:5])
            raise SourceFormatError(
                f"{root}: {len(cands)} C-synthesis reports ({shown}) and no build_prj.tcl / "
                "hls4ml_config.yml naming the top function; pass the report file itself"
            )
        if cands:
            files.csynth = cands[0]
            break
    for cand in (root / "vivado_synth.rpt", *sorted(root.glob("*/vivado_synth.rpt"))):
        if cand.is_file():
            files.vivado = cand
            break
    if files.csynth is None and files.vivado is None:
        raise SourceFormatError(
            f"{root}: no C-synthesis report (*_csynth.xml / *_csynth.rpt) and no vivado_synth.rpt found"
        )
    return files


def _normalize_precision(p: object) -> str | None:
    if isinstance(p, dict):
        p = p.get("default") or p.get("result") or next(iter(p.values()), None)
    if p is None:
        return None
    s = str(p).replace(" ", "")
    return s if s.startswith("ap_") or not s.startswith(("fixed<", "ufixed<", "int<", "uint<")) else "ap_" + s


def _project_description(files: ProjectFiles) -> tuple[list[dict[str, Any]] | None, dict[str, Any]]:
    """(model layer list, config) from hls4ml_config.yml and firmware/parameters.h, when present."""
    config: dict[str, Any] = {}
    model: list[dict[str, Any]] | None = None
    if files.hls4ml_config is not None:
        raw = read_hls4ml_config(files.hls4ml_config)
        hls = raw.get("HLSConfig") or {}
        mcfg = hls.get("Model") or {} if isinstance(hls, dict) else {}
        config.update(
            {
                "project_name": raw.get("ProjectName"),
                "backend": raw.get("Backend"),
                "part": raw.get("Part") or raw.get("XilinxPart"),
                "clock_period_ns": raw.get("ClockPeriod"),
                "io_type": raw.get("IOType"),
                "precision": _normalize_precision(mcfg.get("Precision")),
                "reuse_factor": mcfg.get("ReuseFactor"),
                "strategy": str(mcfg["Strategy"]).lower() if mcfg.get("Strategy") else None,
                "hls_config": hls,
                "input_shapes": raw.get("InputShapes"),
                "output_shapes": raw.get("OutputShapes"),
            }
        )
    if files.parameters_h is not None:
        structs = parse_parameters_h(files.parameters_h, files.defines_h)
        model = hls4ml_model_layers(structs)
        _add_weight_precision(model, config.get("precision"))
        dense = [layer for layer in structs if layer.get("kind") == "dense"]
        if dense:
            if not config.get("io_type"):
                config["io_type"] = dense[0].get("io_type")
            if not config.get("strategy") and dense[0].get("strategy"):
                config["strategy"] = str(dense[0]["strategy"]).lower()
            if config.get("reuse_factor") is None and dense[0].get("reuse_factor"):
                config["reuse_factor"] = dense[0]["reuse_factor"]
    return model, {k: v for k, v in config.items() if v is not None}


def _add_weight_precision(model: list[dict[str, Any]], precision: object) -> None:
    """Dense/Conv layers get the model precision as ``weight_precision``/``weight_bits``/``weight_int_bits``."""
    fp = parse_precision(precision)
    if fp is None:
        return  # e.g. "auto": left out rather than guessed
    for layer in model:
        if str(layer.get("class_name", "")).startswith(("Dense", "Conv")):
            layer |= {"weight_precision": precision, "weight_bits": fp.width, "weight_int_bits": fp.integer}


def _int_or_none(v: object, *, field_name: str, path: Path | None) -> int | None:
    if v is None:
        return None
    try:
        out = int(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SourceFormatError(f"{path}: {field_name} is {v!r}, expected an integer") from None
    if out < 1:
        raise SourceFormatError(f"{path}: {field_name} is {out}, expected >= 1")
    return out


def rows_from_project(files: ProjectFiles, env: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``fpga`` rows (one per stage found) of one project."""
    model, config = _project_description(files)
    hls: HlsEstimate | None = None
    if files.csynth is not None:
        hls = (
            parse_csynth_xml(files.csynth)
            if files.csynth.suffix == ".xml"
            else parse_csynth_rpt(files.csynth)
        )
    viv: VivadoUtilization | None = parse_vivado_utilization(files.vivado) if files.vivado else None
    is_hls4ml = files.hls4ml_config is not None or files.parameters_h is not None
    top = (hls.top if hls else None) or files.top or (viv.design if viv else None) or files.root.name
    part = (hls.part if hls else None) or config.get("part") or (viv.device if viv else "")
    if not part:
        raise SourceFormatError(f"{files.root}: no FPGA part in the reports or hls4ml_config.yml")
    clock = hls.clock_ns if hls else config.get("clock_period_ns")
    ident = {"top": top, "part": part, "clock_ns": clock, "model": model, "config": config}
    if model is None and not config:  # plain HLS project: the reports themselves identify it
        ident["reports"] = [
            hashlib.sha1(p.read_bytes()).hexdigest() for p in (files.csynth, files.vivado) if p is not None
        ]
    design_id = f"{top}:{hashlib.sha1(_json(ident).encode()).hexdigest()[:12]}"
    reuse = _int_or_none(config.get("reuse_factor"), field_name="ReuseFactor", path=files.hls4ml_config)
    common: dict[str, Any] = {
        "design_id": design_id,
        "domain": "hls4ml" if is_hls4ml else "xilinx-hls",
        "kernel": str(config.get("project_name") or top),
        "model": _json(model) if model is not None else None,
        "config": _json(config) if config else None,
        "reuse_factor": reuse,
        "precision": config.get("precision"),
        "strategy": config.get("strategy"),
        "io_type": config.get("io_type"),
        "part": part,
        "clock_ns": float(clock) if clock else None,
    }
    rows: list[dict[str, Any]] = []
    if hls is not None:
        extra = {
            "env": env,
            "report": str(hls.path),
            "estimated_clock_ns": hls.estimated_clock_ns,
            "ii_max": hls.ii_max,
            "available": hls.available,
        }
        rows.append(
            common
            | {
                "tool": hls.tool,
                "tool_version": hls.tool_version,
                "stage": "hls_estimate",
                "valid": True,
                "lut": hls.lut,
                "ff": hls.ff,
                "dsp": hls.dsp,
                "bram": hls.bram18k,
                "bram_unit": "bram18k",
                "uram": hls.uram,
                "cycles": hls.cycles,
                "cycles_max": hls.cycles_max,
                "ii": hls.ii,
                "extra": _json(extra),
            }
        )
    if viv is not None:
        extra = {
            "env": env,
            "report": str(viv.path),
            "device": viv.device,
            "design_state": viv.design_state,
            "available": viv.available,
        }
        rows.append(
            common
            | {
                "tool": "vivado",
                "tool_version": viv.tool_version,
                "stage": viv.stage,
                "valid": True,
                "lut": viv.lut,
                "ff": viv.ff,
                "dsp": viv.dsp,
                "bram": viv.bram36k,
                "bram_unit": "bram36k",
                "uram": viv.uram,
                "carry": viv.carry,
                "extra": _json(extra),
            }
        )
    return rows


def discover_projects(paths: Sequence[Path], *, recursive: bool = False) -> list[Path]:
    """Project folders (or report files) to parse; with ``recursive``, every folder below each
    path that holds ``hls4ml_config.yml`` or ``build_prj.tcl``."""
    out: list[Path] = []
    for path in paths:
        if not path.exists():
            raise SourceFormatError(f"{path}: no such file or folder")
        if recursive and path.is_dir():
            found = sorted(
                {p.parent for pat in ("hls4ml_config.yml", "build_prj.tcl") for p in path.rglob(pat)}
            )
            if not found:
                raise SourceFormatError(f"{path}: no hls4ml_config.yml or build_prj.tcl below this folder")
            out.extend(found)
        else:
            out.append(path)
    return out


@dataclass
class CollectResult:
    """Rows ready for the store plus what could not be collected (path or design, reason)."""

    frame: pl.DataFrame
    failures: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    delivered: bool = False  # rows were already handed to ``on_rows`` (stored or pushed)


def collect_fpga_reports(
    paths: Sequence[Path | str],
    *,
    recursive: bool = False,
    on_error: Literal["raise", "skip"] = "raise",
    progress: bool = True,
) -> CollectResult:
    """Parse report folders/files into checked ``fpga`` rows (nothing is written here)."""
    t0 = time.perf_counter()
    roots = discover_projects([Path(p) for p in paths], recursive=recursive)
    env = environment()
    rows: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    with make_progress() as bar:
        task = bar.add_task("parse reports", total=len(roots), visible=progress)
        for root in roots:
            try:
                rows.extend(rows_from_project(find_project_files(root), env))
            except HwSurrogateError as exc:
                if on_error == "raise":
                    raise
                failures.append((str(root), str(exc)))
            bar.advance(task)
    frame = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
    return CollectResult(finalize(frame), failures, wall_s=time.perf_counter() - t0)


# ====================================================================================== yosys sweep
def dense_grid(
    d_in: Iterable[int],
    d_out: Iterable[int],
    precisions: Iterable[str],
    reuse_factors: Iterable[int],
    *,
    seed: int = 0,
    activation: Literal["relu", "linear"] = "relu",
) -> list[DenseLayerSpec]:
    """Every combination as a checked :class:`DenseLayerSpec` (bad values raise before any work)."""
    precs: list[FixedPoint] = [layer_precision(p) for p in precisions]
    specs = [
        DenseLayerSpec(i, o, p, rf, seed=seed, activation=activation)
        for i, o, p, rf in itertools.product(list(d_in), list(d_out), precs, list(reuse_factors))
    ]
    if not specs:
        raise CollectorError("the sweep is empty: give at least one value for d_in, d_out, precision and RF")
    return specs


def conv1d_grid(
    width: Iterable[int],
    channels: Iterable[int],
    filters: Iterable[int],
    kernel_size: Iterable[int],
    precisions: Iterable[str],
    reuse_factors: Iterable[int],
    *,
    seed: int = 0,
    activation: Literal["relu", "linear"] = "relu",
) -> list[Conv1DLayerSpec]:
    """Every Conv1D combination as a checked :class:`Conv1DLayerSpec`."""
    precs: list[FixedPoint] = [layer_precision(p) for p in precisions]
    specs = [
        Conv1DLayerSpec(w, c, f, k, p, rf, seed=seed, activation=activation)
        for w, c, f, k, p, rf in itertools.product(
            list(width), list(channels), list(filters), list(kernel_size), precs, list(reuse_factors)
        )
    ]
    if not specs:
        raise CollectorError("the sweep is empty: give at least one value for every size, precision and RF")
    return specs


def yosys_row(spec: LayerSpec, toolchain: YosysToolchain, env: dict[str, Any],
              workdir: Path, timeout_s: float) -> dict[str, Any]:  # fmt: skip
    """Synthesize one design in ``workdir`` and return its ``fpga`` row (before :func:`finalize`)."""
    top = "dense_layer" if isinstance(spec, DenseLayerSpec) else "conv1d_layer"
    verilog, sched = generate_layer_verilog(spec, module=top)
    t0 = time.perf_counter()
    counts = synthesize_xc7(verilog, top=top, workdir=workdir, toolchain=toolchain, timeout_s=timeout_s)
    synth_s = time.perf_counter() - t0
    layer = spec.describe()
    config = {
        "generator": f"hwsurrogate.fpga_rtl {str(layer['class_name']).lower()} v1",
        "weights": "const",
        "seed": spec.seed,
        "weight_bits": spec.precision.width,
        "act_bits": spec.precision.width,
        "n_mult": sched.n_mult,
        "tree_depth": sched.tree_depth,
        "acc_width": sched.acc_width,
        "yosys_script": "synth_xilinx -family xc7 -flatten -noiopad",
    }
    extra = {"env": env, "synth_s": round(synth_s, 3), "cycles_source": "rtl schedule"} | counts.extra()
    return {
        "design_id": spec.design_id,
        "domain": YOSYS_DOMAIN,
        "kernel": spec.kernel,
        "model": _json([layer]),
        "config": _json(config),
        "reuse_factor": spec.reuse_factor,
        "precision": str(spec.precision),
        "strategy": "resource" if spec.reuse_factor > 1 else "latency",
        "io_type": "io_parallel",
        "part": YOSYS_PART,
        "tool": "yosys",
        "tool_version": toolchain.version,
        "stage": "post_synth",
        "valid": True,
        "lut": float(counts.lut),
        "ff": float(counts.ff),
        "dsp": float(counts.dsp),
        "bram": float(counts.bram36k),
        "bram_unit": "bram36k",
        "uram": 0.0,
        "carry": float(counts.carry),
        "cycles": float(sched.cycles),
        "cycles_max": float(sched.cycles),
        "ii": float(sched.ii),
        "extra": _json(extra),
    }


def _known_ids(store: DatasetStore | None, toolchain: YosysToolchain, specs: Sequence[LayerSpec]) -> set[str]:
    if store is None:
        return set()
    ids = [f"{SOURCE}|{YOSYS_DOMAIN}|{s.design_id}|post_synth|yosys|{toolchain.version}" for s in specs]
    known = store.scan("fpga", source=SOURCE).filter(pl.col("measurement_id").is_in(ids))
    return set(known.select("measurement_id").collect()["measurement_id"].to_list())


def collect_fpga_sweep(
    specs: Sequence[LayerSpec],
    *,
    toolchain: YosysToolchain | None = None,
    timeout_s: float = 300.0,
    n_jobs: int = 1,
    keep_dir: Path | None = None,
    skip_known_in: DatasetStore | None = None,
    on_rows: Callable[[pl.DataFrame], object] | None = None,
    flush_every: int = 10,
    progress: bool = True,
    submit: Callable[[LayerSpec], Future[dict[str, Any]]] | None = None,
) -> CollectResult:
    """Synthesize every spec with yosys (``n_jobs`` at a time) into checked ``fpga`` rows.

    A design that runs past ``timeout_s`` or fails in yosys is *not* stored: it is reported in
    ``failures`` so that a later run with a larger limit can still add it (a stored failure row
    would be deduplicated and block that). Designs already in ``skip_known_in`` with the same
    yosys version are skipped. ``on_rows`` (e.g. a store append) receives checked frames of
    ``flush_every`` finished designs as they complete, the rest at the end or on Ctrl-C, so an
    interrupted long sweep keeps its finished designs and a re-run resumes where it stopped.

    ``submit(spec) -> Future[row]`` runs designs elsewhere instead of ``n_jobs`` local threads
    (:func:`hwsurrogate.datasets.collectors.remote.ray_fpga_submitter`: Ray tasks on a cluster);
    rows, ids, skipping, failures and flushing are the same either way.
    """
    if n_jobs < 1:
        raise CollectorError(f"jobs must be >= 1, got {n_jobs}")
    if timeout_s <= 0:
        raise CollectorError(f"timeout must be > 0 s, got {timeout_s}")
    if flush_every < 1:
        raise CollectorError(f"flush_every must be >= 1, got {flush_every}")
    toolchain = toolchain or find_yosys()
    env = environment(toolchain.describe())
    t0 = time.perf_counter()
    known = _known_ids(skip_known_in, toolchain, specs)
    todo = [
        s
        for s in specs
        if f"{SOURCE}|{YOSYS_DOMAIN}|{s.design_id}|post_synth|yosys|{toolchain.version}" not in known
    ]
    skipped = [s.design_id for s in specs if s not in todo]
    rows: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    n_flushed = 0

    def flush() -> None:
        nonlocal n_flushed
        if on_rows is not None and len(rows) > n_flushed:
            on_rows(finalize(pl.DataFrame(rows[n_flushed:], infer_schema_length=None)))
            n_flushed = len(rows)

    with tempfile.TemporaryDirectory(prefix="hws-fpga-") as tmp:
        base = keep_dir if keep_dir is not None else Path(tmp)
        jobs = "ray tasks" if submit is not None else f"{n_jobs} job{'s' if n_jobs > 1 else ''}"
        with make_progress() as bar, ThreadPoolExecutor(max_workers=1 if submit else n_jobs) as pool:
            task = bar.add_task(f"yosys synth ({jobs})", total=len(todo), visible=progress)
            futures = {
                (
                    submit(s)
                    if submit is not None
                    else pool.submit(yosys_row, s, toolchain, env, base / s.design_id, timeout_s)
                ): s
                for s in todo
            }
            try:
                for fut in as_completed(futures):
                    spec = futures[fut]
                    try:
                        rows.append(fut.result())
                    except SynthesisTimeout as exc:
                        failures.append((spec.design_id, f"timeout: {exc}"))
                    except HwSurrogateError as exc:
                        failures.append((spec.design_id, str(exc)))
                    bar.advance(task)
                    if len(rows) - n_flushed >= flush_every:
                        flush()
            except KeyboardInterrupt:
                for f in futures:
                    f.cancel()
                flush()
                raise
    flush()
    frame = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
    if frame.height:
        frame = frame.sort("design_id")
    return CollectResult(finalize(frame), failures, skipped, wall_s=time.perf_counter() - t0,
                         delivered=on_rows is not None)  # fmt: skip


__all__ = [
    "collect_fpga_reports",
    "collect_fpga_sweep",
    "conv1d_grid",
    "dense_grid",
    "environment",
    "find_project_files",
    "rows_from_project",
    "yosys_row",
]
