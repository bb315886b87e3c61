"""Importer: wa-hls4ml: hls4ml designs with HLS-estimate and post-synthesis resources and latency.

Read the source README under ``$HWSURROGATE_DATA_DIR/fpga/wa-hls4ml`` for units, encodings and defects.

Row design (see ``docs/fpga-data.md``): one design per record (``meta_data.uuid``, or
``meta_data.model_id`` in the 2_20 family) and up to two rows per design:

- ``stage=post_synth``: ``resource_report`` (Vivado logic synthesis). ``bram`` counts 36 Kb tiles,
  so ``bram_unit=bram36k``. An empty report (``{}``) means synthesis is missing: no row, never zeros.
- ``stage=hls_estimate``: ``hls_resource_report`` (``bram_unit=bram18k``) and ``latency_report``
  (``cycles``/``cycles_max`` = ``cycles_min/max``, ``ii`` = ``interval_min``). Written when either
  report has numbers (exemplar records have latency but no HLS resources).

The reader streams: a JSON array file (the format of the full 4.98 GB HuggingFace dataset) is
decoded one record at a time, so memory holds one record plus the output columns. JSON lines
and ``.gz``/``.xz`` compressed files are read the same way.
"""

from __future__ import annotations

import gzip
import json
import lzma
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import polars as pl

from hwsurrogate.datasets import precision
from hwsurrogate.datasets.importers import Source
from hwsurrogate.datasets.importers._common import with_provenance
from hwsurrogate.datasets.schemas import Kind, with_measurement_id
from hwsurrogate.errors import SourceFormatError

SOURCE = Source(
    name="wa-hls4ml",
    kinds=("fpga",),
    subpath="fpga/wa-hls4ml",
    url="https://huggingface.co/datasets/fastmachinelearning/wa-hls4ml",
    license="CC-BY-NC-4.0",
    description="wa-hls4ml: hls4ml designs with HLS-estimate and post-synthesis resources and latency",
)

ORIGIN = "github.com/ben-hawks/axess-benchmark@2d23bd52f0c26b9aec30ac3cbbad50c497b5bfae (excerpt of HF fastmachinelearning/wa-hls4ml)"
DOMAIN = "hls4ml"

_REPORT_KEYS = ("lut", "ff", "dsp", "bram")  # required; uram is optional (absent in some 2_20 records)
_RESOURCE_COLUMNS = (*_REPORT_KEYS, "uram")
_LATENCY_KEYS = ("cycles_min", "cycles_max", "interval_min", "interval_max")
_LATENCY_OPTIONAL = ("target_clock", "estimated_clock")
_BATCH_ROWS = 50_000  # rows turned into a frame at a time, to bound Python-object memory on the full dataset
_COMPUTE = re.compile(r"(Dense|Conv)", re.IGNORECASE)
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- reading records
def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    if path.suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the records of a wa-hls4ml JSON array (or JSON-lines) file one at a time.

    A truncated or malformed file raises :class:`SourceFormatError` naming the file and the
    index of the record that could not be decoded.
    """
    try:
        with _open_text(path) as fh:
            head = fh.read(_CHUNK)
            first = _skip_ws(head, 0)
            if first >= len(head):
                raise SourceFormatError(f"{path}: empty file, expected a JSON array of records")
            if head[first] == "[":
                yield from _iter_array(path, fh, head, first + 1)
                return
            if head[first] != "{":
                raise SourceFormatError(f"{path}: expected a JSON array of records, found {head[first]!r}")
        with _open_text(path) as fh:  # JSON lines, one record per line
            for i, line in enumerate(fh):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SourceFormatError(f"{path}: line {i + 1} is not valid JSON ({exc.msg})") from None
                if not isinstance(obj, dict):
                    raise SourceFormatError(
                        f"{path}: line {i + 1} is a {type(obj).__name__}, expected an object"
                    )
                yield obj
    except (OSError, EOFError, lzma.LZMAError, UnicodeDecodeError) as exc:
        raise SourceFormatError(f"{path}: cannot read ({exc}); the file is truncated or corrupt") from None


def _iter_array(path: Path, fh: IO[str], buf: str, pos: int) -> Iterator[dict[str, Any]]:
    dec = json.JSONDecoder()
    index, eof, chunk, need_sep = 0, False, _CHUNK, False
    while True:
        pos = _skip_ws(buf, pos)
        if pos >= len(buf):
            if eof:
                raise SourceFormatError(f"{path}: truncated JSON after record {index - 1} (no closing ']')")
            more = fh.read(chunk)
            eof = not more
            buf, pos = buf[pos:] + more, 0
            continue
        c = buf[pos]
        if c == "]":
            return
        if need_sep:
            if c != ",":
                raise SourceFormatError(
                    f"{path}: malformed JSON after record {index - 1}: {buf[pos : pos + 20]!r}"
                )
            pos, need_sep = pos + 1, False
            continue
        try:
            obj, end = dec.raw_decode(buf, pos)
        except json.JSONDecodeError as exc:
            if eof:
                raise SourceFormatError(
                    f"{path}: record {index} is not valid JSON ({exc.msg}); the file is truncated or corrupt"
                ) from None
            more = fh.read(chunk)
            eof = not more
            chunk = min(chunk * 2, 1 << 28)  # a record larger than the buffer: grow the reads
            buf, pos = buf[pos:] + more, 0
            continue
        if not isinstance(obj, dict):
            raise SourceFormatError(f"{path}: record {index} is a {type(obj).__name__}, expected an object")
        yield obj
        index, pos, need_sep = index + 1, end, True
        if pos > _CHUNK:
            buf, pos = buf[pos:], 0


def _skip_ws(buf: str, pos: int) -> int:
    n = len(buf)
    while pos < n and buf[pos] in " \t\r\n":
        pos += 1
    return pos


# --------------------------------------------------------------------------- parsing helpers
def parse_precision(spec: object) -> tuple[int, int] | None:
    """(W, I) of a record's precision: a type (``fixed<16,6>``, ``ap_int<8>``, see
    :mod:`hwsurrogate.datasets.precision`) or hls4ml's ``{"default": type}`` dict; None for ``auto``."""
    fp = precision.parse_precision(_precision_str(spec))
    return None if fp is None else (fp.width, fp.integer)


def _precision_str(spec: object) -> str | None:
    if isinstance(spec, dict):
        spec = spec.get("default", next(iter(spec.values()), None)) if spec else None
    return spec if isinstance(spec, str) else None


def _shape(raw: object) -> tuple[list[int] | None, list[list[int]] | None]:
    """Unwrap an input/output shape: drop the batch ``null``; InputLayer's ``[[null, ...]]`` and
    multi-input (``Add``) lists of shapes return (first shape, all shapes)."""
    if not isinstance(raw, list) or not raw:
        return None, None
    if all(isinstance(x, list) for x in raw):
        shapes = [[int(v) for v in s if v is not None] for s in raw]
        return shapes[0], (shapes if len(shapes) > 1 else None)
    return [int(v) for v in raw if v is not None], None


class _Ctx:
    """Where a record came from, for error messages."""

    def __init__(self, path: Path, index: int, design_id: str | None = None) -> None:
        self.path, self.index, self.design_id = path, index, design_id

    def fail(self, field: str, what: str) -> SourceFormatError:
        rid = f" ({self.design_id})" if self.design_id else ""
        return SourceFormatError(f"{self.path}: record {self.index}{rid}: field {field!r} {what}")


def _number(value: object, field: str, ctx: _Ctx) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]  # report values are strings: "17.5"
    except (TypeError, ValueError):
        raise ctx.fail(field, f"is not a number: {value!r}") from None
    if x != x or x in (float("inf"), float("-inf")) or x < 0:
        raise ctx.fail(field, f"must be a finite non-negative number, got {value!r}")
    return x


def _report(
    rec: dict[str, Any],
    key: str,
    keys: tuple[str, ...],
    optional: tuple[str, ...],
    ctx: _Ctx,
    *,
    required: bool,
) -> dict[str, float] | None:
    """Parse a report of string numbers: ``keys`` must be present, ``optional`` may be; others are ignored."""
    if key not in rec:
        if required:
            raise ctx.fail(key, "is missing (an empty {} marks a missing report)")
        return None
    rep = rec[key]
    if rep is None or rep == {}:
        return None
    if not isinstance(rep, dict):
        raise ctx.fail(key, f"must be an object, got {type(rep).__name__}")
    out: dict[str, float] = {}
    for k in keys:
        if k not in rep:
            raise ctx.fail(f"{key}.{k}", f"is missing (found {sorted(rep)})")
        out[k] = _number(rep[k], f"{key}.{k}", ctx)
    for k in optional:
        if rep.get(k) not in (None, ""):
            out[k] = _number(rep[k], f"{key}.{k}", ctx)
    return out


def _layers(rec: dict[str, Any], model_prec: object, ctx: _Ctx) -> list[dict[str, Any]]:
    cfg = rec.get("model_config")
    if not isinstance(cfg, list) or not cfg:
        raise ctx.fail("model_config", "must be a non-empty list of layers")
    layer_names = rec["hls_config"].get("LayerName") or {}
    weight_keys = [
        k
        for k, v in layer_names.items()
        if isinstance(v, dict)
        and isinstance(v.get("Precision"), dict)
        and "weight" in v["Precision"]
        and not k.endswith(("_linear", "_alpha"))
    ]
    compute = [
        i
        for i, layer in enumerate(cfg)
        if isinstance(layer, dict) and _COMPUTE.search(str(layer.get("class_name", "")))
    ]
    positional = dict(zip(compute, weight_keys, strict=False)) if len(compute) == len(weight_keys) else {}
    default_bits = parse_precision(model_prec)
    out: list[dict[str, Any]] = []
    for i, layer in enumerate(cfg):
        if not isinstance(layer, dict) or "class_name" not in layer:
            raise ctx.fail(f"model_config[{i}].class_name", "is missing")
        d_in, d_in_all = _shape(layer.get("input_shape"))
        d_out, _ = _shape(layer.get("output_shape"))
        node: dict[str, Any] = {"class_name": layer["class_name"], "d_in": d_in, "d_out": d_out}
        if d_in_all is not None:
            node["d_in_all"] = d_in_all
        for k in ("neurons", "filters", "channels", "kernel_size", "strides", "padding", "pool_size",
                  "activation", "use_bias", "dropout_rate", "parameters", "reuse_factor", "name",
                  "inbound_layers"):  # fmt: skip
            if layer.get(k) is not None:
                node[k] = layer[k]
        if i in compute:
            key = layer.get("name") if layer.get("name") in weight_keys else positional.get(i)
            spec = layer_names[key]["Precision"]["weight"] if key is not None else None
            bits = parse_precision(spec) or default_bits
            node["weight_precision"] = (
                spec if bits is not None and parse_precision(spec) else _precision_str(model_prec)
            )
            node["weight_bits"], node["weight_int_bits"] = bits if bits is not None else (None, None)
        out.append(node)
    return out


def _tool(version: str | None) -> str:
    """Vivado HLS ended with 2020.1; later versions synthesise with Vitis HLS."""
    if version:
        m = re.match(r"(\d{4})\.(\d+)", version)
        if m and (int(m.group(1)), int(m.group(2))) > (2020, 1):
            return "vitis_hls"
    return "vivado_hls"


_FAMILY_RE = re.compile(r"^(?:test|train|val|validation|exemplar)_(.+?)(?:_merged)?$")


def record_rows(rec: dict[str, Any], *, path: Path, index: int) -> list[dict[str, Any]]:
    """The fpga rows (0, 1 or 2) of one wa-hls4ml record; raises naming file, record and field."""
    ctx = _Ctx(path, index)
    meta = rec.get("meta_data")
    if not isinstance(meta, dict):
        raise ctx.fail("meta_data", "is missing or not an object")
    design_id = meta.get("uuid") or meta.get("model_id")
    if not design_id:
        raise ctx.fail("meta_data.uuid", "is missing (and so is meta_data.model_id)")
    ctx.design_id = str(design_id)
    hls_config = rec.get("hls_config")
    if not isinstance(hls_config, dict) or not isinstance(hls_config.get("Model"), dict):
        raise ctx.fail("hls_config.Model", "is missing or not an object")
    model_cfg = hls_config["Model"]
    part = rec.get("target_part")
    if not isinstance(part, str) or not part:
        raise ctx.fail("target_part", "is missing")
    post = _report(rec, "resource_report", _REPORT_KEYS, ("uram",), ctx, required=True)
    hls = _report(rec, "hls_resource_report", _REPORT_KEYS, ("uram",), ctx, required=False)
    lat = _report(rec, "latency_report", _LATENCY_KEYS, _LATENCY_OPTIONAL, ctx, required=False)

    layers = _layers(rec, model_cfg.get("Precision"), ctx)
    has_conv = any("conv" in str(layer["class_name"]).lower() for layer in layers)
    io_type = hls_config.get("io_type") or rec.get("io_type") or ("io_stream" if has_conv else "io_parallel")
    clock = hls_config.get("clock_period")
    if clock is None and lat is not None:
        clock = lat.get("target_clock")
    clock_ns = _number(clock, "hls_config.clock_period", ctx) if clock is not None else None
    if clock_ns == 0:
        raise ctx.fail("hls_config.clock_period", "must be > 0")
    rf = model_cfg.get("ReuseFactor")
    if rf is not None and (not isinstance(rf, int) or rf < 1):
        raise ctx.fail("hls_config.Model.ReuseFactor", f"must be a positive integer, got {rf!r}")
    strategy = model_cfg.get("Strategy")
    version = rec.get("vivado_version") or rec.get("backend_version")
    version = str(version) if version is not None else None
    model_name = str(meta.get("model_name") or design_id)
    stem = path.stem
    family = m.group(1) if (m := _FAMILY_RE.match(stem)) else stem
    common: dict[str, Any] = {
        "design_id": str(design_id),
        "domain": DOMAIN,
        "kernel": model_name.rstrip("/").rsplit("/", 1)[-1],
        "model": json.dumps(layers, separators=(",", ":")),
        "config": json.dumps(
            {"hls_config": hls_config, "io_type": io_type, "clock_period_ns": clock_ns},
            separators=(",", ":"),
            sort_keys=True,
        ),
        "reuse_factor": rf,
        "precision": _precision_str(model_cfg.get("Precision")),
        "strategy": str(strategy).lower() if strategy is not None else None,
        "io_type": io_type,
        "part": part,
        "tool_version": version,
        "clock_ns": clock_ns,
    }
    base_extra = {
        "family": family,
        "file": path.name,
        "model_name": model_name,
        "artifacts_file": meta.get("artifacts_file"),
        "hls4ml_version": rec.get("hls4ml_version"),
        "backend": rec.get("backend"),
    }
    rows: list[dict[str, Any]] = []
    if post is not None:
        rows.append({
            **common, "stage": "post_synth", "tool": "vivado",
            **{k: post.get(k) for k in _RESOURCE_COLUMNS}, "bram_unit": "bram36k",
            "extra": json.dumps(base_extra, separators=(",", ":")),
        })  # fmt: skip
    if hls is not None or lat is not None:
        row = {**common, "stage": "hls_estimate", "tool": _tool(version), "bram_unit": "bram18k"}
        if hls is not None:
            row.update({k: hls.get(k) for k in _RESOURCE_COLUMNS})
        extra = dict(base_extra)
        if lat is not None:
            row.update(cycles=lat["cycles_min"], cycles_max=lat["cycles_max"], ii=lat["interval_min"])
            extra.update(ii_max=lat["interval_max"], estimated_clock_ns=lat.get("estimated_clock"))
        if hls is None:
            row["bram_unit"] = None
        row["extra"] = json.dumps(extra, separators=(",", ":"))
        rows.append(row)
    return rows


_FRAME_SCHEMA = {
    "design_id": pl.String, "domain": pl.String, "kernel": pl.String, "model": pl.String,
    "config": pl.String, "reuse_factor": pl.Int64, "precision": pl.String, "strategy": pl.String,
    "io_type": pl.String, "part": pl.String, "tool": pl.String, "tool_version": pl.String,
    "stage": pl.String, "lut": pl.Float64, "ff": pl.Float64, "dsp": pl.Float64, "bram": pl.Float64,
    "bram_unit": pl.String, "uram": pl.Float64, "cycles": pl.Float64, "cycles_max": pl.Float64,
    "ii": pl.Float64, "clock_ns": pl.Float64, "extra": pl.String,
}  # fmt: skip


def read_records(paths: list[Path]) -> pl.DataFrame:
    """Rows of every record in ``paths`` (streamed, converted to frames in batches), without provenance."""
    frames: list[pl.DataFrame] = []
    rows: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for path in paths:
        for i, rec in enumerate(iter_records(path)):
            new = record_rows(rec, path=path, index=i)
            if new:
                did = new[0]["design_id"]
                if did in seen:
                    raise SourceFormatError(
                        f"{path}: record {i}: design id {did!r} already seen in {seen[did]}"
                    )
                seen[did] = path.name
            rows.extend(new)
            if len(rows) >= _BATCH_ROWS:
                frames.append(pl.from_dicts(rows, schema=_FRAME_SCHEMA))
                rows = []
    frames.append(pl.from_dicts(rows, schema=_FRAME_SCHEMA) if rows else pl.DataFrame(schema=_FRAME_SCHEMA))
    return pl.concat(frames, how="vertical")


def _json_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    root = path / "raw" if (path / "raw").is_dir() else path
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.name.endswith((".json", ".jsonl", ".json.gz", ".json.xz", ".jsonl.gz", ".jsonl.xz"))
    )
    if not files:
        raise SourceFormatError(f"{path}: no wa-hls4ml JSON files found (expected raw/**/*.json)")
    return files


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read every wa-hls4ml JSON file under ``path`` (or the one file ``path``) into fpga rows."""
    frame = read_records(_json_files(path))
    frame = with_provenance(frame, source=SOURCE.name, origin=ORIGIN, license=SOURCE.license)
    return {"fpga": with_measurement_id(frame, "fpga")}
