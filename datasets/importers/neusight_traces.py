"""Importer: NeuSight whole-model traces: per-operator latency of one traced layer + end-to-end latency.

Read the source README under ``$HWSURROGATE_DATA_DIR/models/neusight_traces`` first.

- ``label/<GPU>/<model>-<mode>-<seqlen>-<batch>.csv.gz`` (a torch.fx graph with one layer, each
  node timed): one ``ops`` row per node and phase, ``model`` = the file stem, ``name`` = the fx
  node name, ``module`` = the innermost module class that owns it. ``forward`` rows carry
  ``fw_latency``; training traces add a ``backward`` row carrying ``bw_latency + acc_latency``
  (the backward kernels plus gradient accumulation) with the forward op's shapes. Rows whose
  time is zero (placeholders, parameters, the output node, ops with no backward) are not rows.
- ``label/<GPU>/<model>-<mode>-<seqlen>-<batch>.json``: one ``model_latency`` row (``e2e_latency``
  of the whole ``num_layer``-layer model). The ``-fusion`` (compiled) and ``-dp4/-tp4/-pp4_1``
  (4-GPU) JSONs are other execution regimes and are not imported.

Mapping of fx nodes onto the operator-table vocabulary (:mod:`hwsurrogate.datasets.optable`) is
:func:`map_trace_nodes`: ``addmm``/``Linear``/2-D-weight ``matmul`` -> linear, batched
``matmul``/``bmm`` -> bmm, ``LayerNorm`` -> layernorm, ``softmax``, activations, elementwise
arithmetic and comparisons (``where``, ``masked_fill``, ``dropout`` ...), reductions (``mean``,
``max`` over a dim, ``cumsum`` ...), copies and tensor creation (``contiguous``, ``to``, ``cat``,
``zeros`` ...), ``Embedding``; everything else (views, ``size``, ``getitem``, Python scalar
arithmetic) is op_kind ``other`` with its measured time, never dropped. Shapes are parsed with
:func:`ast.literal_eval` (literals only; nothing in a file is executed). ``torch.bool`` tensors
are recorded as ``int8`` (1-byte elements; the operator table has no bool dtype).

:func:`trace_op_table` returns the operator table of one traced configuration with NeuSight's
layer replication (``count`` = ``num_layer`` for the layer's rows), the input of whole-model
prediction; :func:`trace_measured_table` adds the measured per-call ``latency_ms``.
"""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import polars as pl

from hwsurrogate.datasets.importers import Source
from hwsurrogate.datasets.importers._common import read_bytes, read_csv_checked, with_provenance
from hwsurrogate.datasets.optable import OP_TABLE_SCHEMA, op_table
from hwsurrogate.datasets.schemas import Kind
from hwsurrogate.errors import SourceFormatError

__all__ = [
    "LAYER_BOUNDS",
    "SOURCE",
    "load",
    "map_trace_nodes",
    "parse_stem",
    "trace_measured_table",
    "trace_op_table",
]

SOURCE = Source(
    name="neusight_traces",
    kinds=("ops", "model_latency"),
    subpath="models/neusight_traces",
    url="https://github.com/sitar-lab/NeuSight/tree/6945927d9afcca2b9daf021f8395e53edc5b4eef/scripts/asplos/label",
    license="MIT",
    description="NeuSight: per-op traces and end-to-end latency of 6 transformer models on 9 NVIDIA GPUs",
)
#: 71 trace CSVs (11,253 timed node x phase rows) and 83 end-to-end JSONs.
EXPECTED_ROWS: dict[str, int] = {"ops": 11_253, "model_latency": 83}
ORIGIN = "github.com/sitar-lab/NeuSight@6945927d9afcca2b9daf021f8395e53edc5b4eef:scripts/asplos/label"
TRACE_COLUMNS = ("op", "target", "meta", "input_shapes", "output_shape", "dtype", "Name",
                 "fw_latency", "bw_latency", "acc_latency")  # fmt: skip
_STEM = re.compile(r"^(?P<model>[A-Za-z0-9_.]+)-(?P<mode>inf|train)-(?P<seqlen>\d+)-(?P<batch>\d+)$")
MODES = {"inf": "inference", "train": "training"}

#: first node -> last node of the replicated layer (NeuSight's ``aggregator.replicate_layer``)
LAYER_BOUNDS: dict[str, str] = {
    "bert_encoder_layer_0_attention_self_query": "bert_encoder_layer_0_output_layer_norm",
    "transformer_h_0_ln_1": "add_15",
    "model_decoder_layers_0_self_attn_layer_norm": "view_11",
}

_LINEAR = {"addmm", "linear"}
_BATCHED = {"matmul", "bmm", "baddbmm"}
_ACTIVATION = {
    "relu",
    "gelu",
    "tanh",
    "sigmoid",
    "silu",
    "gelu_new",
    "newgeluactivation",
    "elu",
    "leaky_relu",
}
_ELEMENTWISE = {
    "add", "sub", "mul", "truediv", "div", "floordiv", "pow", "where", "masked_fill", "masked_fill_",
    "eq", "ne", "lt", "le", "gt", "ge", "neg", "abs", "log", "exp", "rsqrt", "sqrt", "dropout",
    "clamp", "iadd", "imul", "and_", "or_", "invert", "logical_not", "maximum", "minimum",
}  # fmt: skip
_REDUCTION = {
    "mean",
    "sum",
    "logsumexp",
    "argmax",
    "argmin",
    "count_nonzero",
    "cumsum",
    "amax",
    "amin",
    "prod",
    "var",
    "std",
}
_MAXMIN = {"max", "min"}
_COPY = {
    "contiguous", "to", "clone", "reshape", "type", "float", "long", "bool", "half", "int", "type_as",
    "repeat", "cat", "stack", "one_hot", "full", "zeros", "ones", "arange", "tensor", "full_like",
    "zeros_like", "ones_like", "empty", "copy_",
}  # fmt: skip
_MODULES = {"linear": "linear", "conv1d": "linear", "layernorm": "layer_norm", "embedding": "embedding",
            "dropout": "dropout", "relu": "relu", "tanh": "tanh", "gelu": "gelu", "newgeluactivation": "gelu",
            "softmax": "softmax"}  # fmt: skip
_DTYPES = {"torch.float32": "fp32", "torch.float16": "fp16", "torch.bfloat16": "bf16", "torch.int64": "int64",
           "torch.int32": "int32", "torch.bool": "int8", "torch.float64": "fp64", "torch.int8": "int8"}  # fmt: skip
_CLASS = re.compile(r"<class '([^']+)'>")
_FUNC = re.compile(r"<(?:built-in )?(?:function|method) ([A-Za-z_][A-Za-z0-9_]*)")


def parse_stem(stem: str) -> dict[str, object] | None:
    """``gpt2_large-train-1024-4`` -> model, mode, seqlen, batch; None for other file names."""
    m = _STEM.match(stem)
    if m is None:
        return None
    return {
        "model": m["model"],
        "mode": MODES[m["mode"]],
        "seqlen": int(m["seqlen"]),
        "batch": int(m["batch"]),
    }


def _shape(text: object, where: str) -> list[int] | list[list[int]] | None:
    if text is None or text == "":
        return None
    try:
        value = ast.literal_eval(str(text))  # literals only: never executes code
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise SourceFormatError(f"{where}: shape {str(text)[:80]!r} is not a literal list/tuple") from None
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        raise SourceFormatError(f"{where}: shape {str(text)[:80]!r} is not a list")
    return value


def _numel(shape: object) -> int:
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        return 0
    return math.prod(shape) if shape else 1


def _op_name(op: str, target: str, module_cls: str | None) -> str:
    if op == "call_module":
        short = (module_cls or target).rsplit(".", 1)[-1].lower()
        return _MODULES.get(short, short)
    if op == "call_method":
        return target
    m = _FUNC.match(target)
    if m:
        return m[1]
    if target.startswith("<class"):
        return target.split("'")[1].rsplit(".", 1)[-1] if "'" in target else "class"
    return target


def _classify(name: str, ins: list, out: list | None) -> dict[str, object]:  # noqa: C901 - a flat table of cases
    """op_kind and shape columns of one node (``other`` with no shapes when it is not a tensor op)."""
    tensors = [s for s in ins if isinstance(s, list) and _numel(s) > 1]
    n_out = _numel(out)
    last = out[-1] if isinstance(out, list) and out and isinstance(out[-1], int) and out[-1] > 0 else None
    vec = {"rows": n_out // last, "cols": last} if last and n_out > 1 else None
    if (
        name in _LINEAR
        or (name in _BATCHED and len(tensors) >= 2 and len(tensors[1]) == 2)
        or name == "linear"
    ):
        if name == "addmm" and len(tensors) >= 2:
            a, b = tensors[-2], tensors[-1]
            if len(a) == 2 and len(b) == 2:
                return {"op_kind": "linear", "batch": 1, "m": a[0], "k": a[1], "n": b[1]}
        if name in _BATCHED and len(tensors) >= 2:
            a, b = tensors[0], tensors[1]
            return {"op_kind": "linear", "batch": 1, "m": _numel(a) // a[-1], "k": a[-1], "n": b[-1]}
        if tensors and last and n_out > 1:
            k = tensors[0][-1]
            return {"op_kind": "linear", "batch": 1, "m": n_out // last, "k": k, "n": last}
    if name in _BATCHED and len(tensors) >= 2 and len(tensors[0]) >= 2 and len(tensors[1]) >= 2:
        a, b = tensors[0], tensors[1]
        m, k, n = a[-2], a[-1], b[-1]
        if m * n > 0 and n_out % (m * n) == 0:
            return {"op_kind": "bmm", "batch": n_out // (m * n), "m": m, "k": k, "n": n}
    if vec is None:
        return {"op_kind": "other"}
    if name == "embedding":
        return {"op_kind": "embedding", "rows": n_out // last, "cols": last}
    if name in ("layer_norm", "layernorm"):
        return {"op_kind": "layernorm", **vec, "inputs": 1}
    if name in ("softmax", "log_softmax"):
        return {"op_kind": "softmax", **vec, "inputs": 1}
    if name in _ACTIVATION:
        return {"op_kind": "activation", **vec, "inputs": 1}
    if name in _MAXMIN:
        biggest = max((_numel(s) for s in tensors), default=0)
        if len(tensors) >= 2 or biggest == n_out:
            return {"op_kind": "elementwise", **vec, "inputs": max(1, len(tensors))}
        name = "amax"
    if name in _REDUCTION:
        biggest = max((_numel(s) for s in tensors), default=0)
        if name == "cumsum" or biggest <= n_out:
            return {"op_kind": "reduction", **vec, "inputs": 1}
        return {"op_kind": "reduction", "rows": n_out, "cols": max(1, biggest // n_out), "inputs": 1}
    if name in _ELEMENTWISE:
        return {"op_kind": "elementwise", **vec, "inputs": max(1, min(len(tensors), 3))}
    if name in _COPY:
        return {"op_kind": "copy", **vec, "inputs": 1}
    return {"op_kind": "other"}


def map_trace_nodes(raw: pl.DataFrame, *, where: str = "trace", mode: str = "training") -> pl.DataFrame:
    """One row per timed fx node: operator-table columns + ``fw_ms``, ``bw_ms`` and ``order``.

    In ``inference`` mode (the model under ``eval()``) dropout is the identity: its node is
    op_kind ``other`` (a dispatch cost), not an elementwise kernel.
    """
    missing = [c for c in TRACE_COLUMNS if c not in raw.columns]
    if missing:
        raise SourceFormatError(f"{where}: missing column(s) {missing}")
    rows: list[dict[str, object]] = []
    lat = raw.select(
        *(
            pl.col(c).cast(pl.Float64, strict=False).fill_null(0.0)
            for c in ("fw_latency", "bw_latency", "acc_latency")
        )
    )
    for i, (node, fw, bw, acc) in enumerate(
        zip(raw.select(TRACE_COLUMNS[:7]).iter_rows(named=True), *(lat[c] for c in lat.columns), strict=True)
    ):
        if node["op"] in ("placeholder", "get_attr", "output"):
            continue
        for v, c in ((fw, "fw_latency"), (bw, "bw_latency"), (acc, "acc_latency")):
            if not math.isfinite(v) or v < 0:
                raise SourceFormatError(f"{where}: node {node['Name']!r} (row {i}) has {c} {v!r}")
        if fw + bw + acc <= 0:
            continue
        at = f"{where}: node {node['Name']!r} (row {i})"
        ins = _shape(node["input_shapes"], at) or []
        out = _shape(node["output_shape"], at)
        classes = _CLASS.findall(str(node["meta"] or ""))
        module_cls = classes[-1] if classes else None
        name = _op_name(
            str(node["op"]), str(node["target"]), module_cls if node["op"] == "call_module" else None
        )
        shape = (
            {"op_kind": "other"} if name == "dropout" and mode == "inference" else _classify(name, ins, out)
        )
        dtype = _DTYPES.get(str(node["dtype"]), "fp32")
        if shape["op_kind"] in ("linear", "bmm", "layernorm", "softmax", "activation"):
            dtype = "fp32" if dtype not in ("fp16", "bf16", "fp64") else dtype
        rows.append(
            {
                "name": node["Name"], "op": name, "module": module_cls, "dtype": dtype, **shape,
                "input_shapes": json.dumps(ins), "output_shape": json.dumps(out),
                "fw_ms": fw, "bw_ms": bw + acc, "order": i,
            }
        )  # fmt: skip
    if not rows:
        raise SourceFormatError(f"{where}: no timed operator nodes")
    return pl.DataFrame(rows, infer_schema_length=None)


def _replicate(nodes: pl.DataFrame, num_layer: int, where: str) -> pl.Series:
    names = nodes["name"].to_list()
    for start, end in LAYER_BOUNDS.items():
        if start in names:
            if end not in names:
                raise SourceFormatError(
                    f"{where}: layer starts at {start!r} but its last node {end!r} is missing"
                )
            i, j = names.index(start), names.index(end)
            if j < i:
                raise SourceFormatError(f"{where}: layer end {end!r} comes before its start {start!r}")
            return pl.Series("count", [num_layer if i <= r <= j else 1 for r in range(len(names))], pl.Int64)
    return pl.Series("count", [1] * len(names), pl.Int64)  # traced whole (Switch): no replication


def _phases(nodes: pl.DataFrame, mode: str) -> pl.DataFrame:
    fw = nodes.filter(pl.col("fw_ms") > 0).with_columns(
        pl.lit("forward").alias("phase"), pl.col("fw_ms").alias("latency_ms")
    )
    if mode != "training":
        return fw
    bw = nodes.filter(pl.col("bw_ms") > 0).with_columns(
        pl.lit("backward").alias("phase"), pl.col("bw_ms").alias("latency_ms")
    )
    return pl.concat([fw, bw], how="diagonal_relaxed").sort("phase", "order", descending=[True, False])


def _read_trace(csv: Path) -> pl.DataFrame:
    return read_csv_checked(csv, TRACE_COLUMNS, infer_schema_length=0)


def trace_measured_table(
    csv: str | Path, *, num_layer: int | None = None, mode: str | None = None
) -> pl.DataFrame:
    """:func:`trace_op_table` plus the measured per-call ``latency_ms`` of each row."""
    csv = Path(csv)
    stem = csv.name.removesuffix(".gz").removesuffix(".csv")
    meta = parse_stem(stem) or {}
    mode = mode or str(meta.get("mode", "inference"))
    if mode not in ("inference", "training"):
        raise ValueError(f"mode must be 'inference' or 'training', got {mode!r}")
    if num_layer is None:
        js = csv.with_name(f"{stem}.json")
        if not js.exists():
            raise SourceFormatError(f"{csv}: num_layer not given and {js.name} (which states it) is missing")
        stated = _read_json(js).get("num_layer")
        num_layer = stated if isinstance(stated, int) and stated >= 1 else 1  # 0/null: traced whole
    if num_layer < 1:
        raise ValueError(f"num_layer must be >= 1, got {num_layer}")
    nodes = map_trace_nodes(_read_trace(csv), where=str(csv), mode=mode)
    nodes = nodes.with_columns(_replicate(nodes, num_layer, str(csv)))
    rows = _phases(nodes, mode)
    table = op_table(rows.select([c for c in OP_TABLE_SCHEMA if c in rows.columns]))
    return table.with_columns(rows["latency_ms"])


def trace_op_table(csv: str | Path, *, num_layer: int | None = None, mode: str | None = None) -> pl.DataFrame:
    """The operator table of one traced configuration with NeuSight's layer replication.

    ``num_layer`` defaults to the sibling JSON's; ``mode`` to the file name's (``-inf-`` /
    ``-train-``): training adds the backward rows. Layer rows (README: from
    ``bert_encoder_layer_0_attention_self_query`` / ``transformer_h_0_ln_1`` /
    ``model_decoder_layers_0_self_attn_layer_norm`` to ``bert_encoder_layer_0_output_layer_norm`` /
    ``add_15`` / ``view_11``) get ``count = num_layer``; prologue and epilogue rows ``count = 1``.
    """
    return trace_measured_table(csv, num_layer=num_layer, mode=mode).drop("latency_ms")


def _read_json(path: Path) -> dict[str, object]:
    try:
        value = json.loads(read_bytes(path))
    except ValueError as exc:
        raise SourceFormatError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise SourceFormatError(f"{path}: expected a JSON object")
    return value


def _latency_row(path: Path, gpu: str, configs: dict[str, str]) -> dict[str, object]:
    meta = parse_stem(path.stem)
    assert meta is not None
    spec = _read_json(path)
    layers = spec.get("num_layer")
    if layers is not None and (not isinstance(layers, int) or isinstance(layers, bool) or layers < 0):
        raise SourceFormatError(f"{path}: num_layer must be an integer >= 0 or null, got {layers!r}")
    for key in ("e2e_latency", "fw_latency", "bwall_latency"):
        v = spec.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
            raise SourceFormatError(f"{path}: {key} must be a finite number >= 0, got {v!r}")
    model = str(meta["model"])
    trace = path.with_suffix(".csv.gz")
    return {
        "device_id": f"neusight/{gpu}", "model": model, "mode": meta["mode"], "batch": meta["batch"],
        "seqlen": meta["seqlen"], "num_layer": layers or None, "dtype": "fp32",
        "latency_ms": float(spec["e2e_latency"]), "fw_latency_ms": float(spec["fw_latency"]),
        "bw_latency_ms": float(spec["bwall_latency"]), "config": configs.get(model),
        "framework": "PyTorch 2.1.0", "extra": json.dumps({"file": f"{gpu}/{path.name}",
        "trace": f"{gpu}/{trace.name}" if trace.exists() else None,
        "runtime_stat": "CUDA events, 25 runs, mean of the fastest 5"}),
        "measurement_id": f"neusight_traces|{gpu}|{path.stem}",
    }  # fmt: skip


def _ops_rows(csv: Path, gpu: str) -> pl.DataFrame:
    stem = csv.name.removesuffix(".csv.gz")
    meta = parse_stem(stem)
    if meta is None:
        raise SourceFormatError(f"{csv}: file name is not <model>-<inf|train>-<seqlen>-<batch>.csv.gz")
    nodes = map_trace_nodes(_read_trace(csv), where=str(csv), mode=str(meta["mode"]))
    rows = _phases(nodes, str(meta["mode"]))
    table = op_table(rows.select([c for c in OP_TABLE_SCHEMA if c in rows.columns]))
    shape_cols = [c for c in ("batch", "m", "n", "k", "rows", "cols", "inputs") if c in table.columns]
    return table.select(
        "op_kind", "op", "phase", "dtype", *shape_cols, "flops", "bytes", "name", "module"
    ).with_columns(
        rows["latency_ms"],
        pl.lit(f"neusight/{gpu}").alias("device_id"),
        pl.lit(stem).alias("model"),
        pl.lit("PyTorch 2.1.0").alias("framework"),
        pl.lit(25, pl.Int64).alias("repetitions"),
        pl.concat_str(
            [pl.lit(f"neusight_traces|{gpu}|{stem}"), pl.col("name"), pl.col("phase")], separator="|"
        ).alias("measurement_id"),
    )


def load(path: Path) -> dict[Kind, pl.DataFrame]:
    """Read the source at ``path`` into ``ops`` and ``model_latency`` frames."""
    label = path / "label"
    gpus = sorted(p for p in label.iterdir() if p.is_dir()) if label.is_dir() else []
    if not gpus:
        raise SourceFormatError(f"{label}: no GPU folders found")
    configs = {
        f.stem: json.dumps(_read_json(f), sort_keys=True)
        for f in sorted((path / "model_configs").glob("*.json"))
    }
    ops: list[pl.DataFrame] = []
    latency: list[dict[str, object]] = []
    for folder in gpus:
        for csv in sorted(folder.glob("*.csv.gz")):
            ops.append(_ops_rows(csv, folder.name))
        for js in sorted(folder.glob("*.json")):
            if parse_stem(js.stem) is not None:  # -fusion / -dp4 / -tp4 / -pp4_1: other regimes
                latency.append(_latency_row(js, folder.name, configs))
    if not ops or not latency:
        raise SourceFormatError(f"{label}: no trace CSVs or no end-to-end JSONs found")
    prov = {"source": "neusight_traces", "origin": ORIGIN, "license": SOURCE.license}
    return {
        "ops": with_provenance(pl.concat(ops, how="diagonal_relaxed"), **prov),
        "model_latency": with_provenance(pl.DataFrame(latency, infer_schema_length=None), **prov),
    }
