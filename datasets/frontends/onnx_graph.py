"""ONNX front end: an ``.onnx`` file -> the operator table, with no code executed.

The bytes are parsed as an ONNX protobuf (``onnx.load_model_from_string``: data only, never a
pickle; external weight files are not opened), at most :data:`MAX_ONNX_BYTES`. Shapes come
from ``onnx.shape_inference.infer_shapes`` after the graph inputs' symbolic dimensions are
fixed from ``input_shapes``. Each node becomes one row (the vocabulary of
:mod:`hwsurrogate.datasets.optable`):

==========================================  ================================================
ONNX op                                      op_kind
==========================================  ================================================
Gemm, MatMul with a 2-D right operand        linear (m = rows of A, k, n)
MatMul with batched operands                 bmm
Conv (2-D, square)                           conv2d (``groups`` > 1: dense conv of equal FLOPs,
                                             ``in_channels`` per group, as the torch front end)
Relu, Gelu, Sigmoid, Tanh, HardSwish, ...    activation
Add, Sub, Mul, Div, Pow, Sqrt, Erf, ...      elementwise (``inputs`` = operands with > 1 element)
BatchNormalization                           elementwise (op ``batch_norm``)
Softmax, LogSoftmax                          softmax
LayerNormalization                           layernorm
Gather of an initializer table               embedding
ReduceMean/Sum/Max, pooling                  reduction
Transpose, Concat, Slice, Expand, Pad, ...   copy
Reshape, Flatten, (Un)Squeeze, Shape, ...    other, 0 bytes
anything else                                other with its inputs' and output's bytes
==========================================  ================================================
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from hwsurrogate.datasets.optable import op_table
from hwsurrogate.errors import ModelSourceError

__all__ = ["MAX_ONNX_BYTES", "onnx_op_table", "read_onnx_bytes"]

#: Largest ONNX file accepted (weights included); larger models: export without weights.
MAX_ONNX_BYTES = 256 << 20

_ACT = {"Relu", "Gelu", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "LeakyRelu", "Elu", "Selu", "Softplus",
        "Mish", "PRelu", "Clip", "Softsign", "ThresholdedRelu", "Celu", "FastGelu", "BiasGelu"}  # fmt: skip
_ELT = {"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal", "Erf", "Where",
        "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Max", "Min", "Sum", "Mean",
        "Floor", "Ceil", "Sin", "Cos", "Cast", "Mod", "Sign", "Round", "Dropout", "Trilu"}  # fmt: skip
_RED = {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceLogSumExp",
        "GlobalAveragePool", "GlobalMaxPool", "MaxPool", "AveragePool", "ArgMax", "ArgMin", "CumSum"}  # fmt: skip
_COPY = {"Transpose", "Concat", "Slice", "Expand", "Pad", "Tile", "Split", "Resize", "Upsample", "DepthToSpace",
         "SpaceToDepth"}  # fmt: skip
_VIEW = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Shape", "Constant", "Identity", "Size",
         "ConstantOfShape"}  # fmt: skip
_ELEM_DTYPE = {
    1: "fp32",
    10: "fp16",
    16: "bf16",
    11: "fp64",
    7: "int64",
    6: "int32",
    3: "int8",
    2: "int8",
    9: "int8",
}
_ELEM_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp64": 8, "int64": 8, "int32": 4, "int8": 1}


def read_onnx_bytes(path: str | Path, *, max_bytes: int = MAX_ONNX_BYTES) -> bytes:
    """The file's bytes, refusing anything larger than ``max_bytes`` before reading it."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ModelSourceError(f"model {str(p)!r}: cannot read it ({exc.strerror})") from None
    if size > max_bytes:
        raise ModelSourceError(
            f"model {str(p)!r}: {size / 1e6:.1f} MB is more than the {max_bytes / 1e6:.0f} MB an ONNX file may be; "
            "export it without weights (external data) or raise the limit"
        )
    return p.read_bytes()


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ModelSourceError(
            "reading ONNX models needs the 'onnx' package: pip install 'hwsurrogate[onnx]' (or pip install onnx)"
        ) from None
    return onnx


def _parse(data: bytes, source: str, max_bytes: int) -> Any:
    onnx = _onnx()

    if len(data) > max_bytes:
        raise ModelSourceError(
            f"{source}: {len(data) / 1e6:.1f} MB is more than the {max_bytes / 1e6:.0f} MB an ONNX file may be"
        )
    if not data:
        raise ModelSourceError(f"{source}: the ONNX file is empty")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # google.protobuf DecodeError and friends
        raise ModelSourceError(
            f"{source}: not an ONNX model (protobuf parse failed: {type(exc).__name__})"
        ) from None
    if not model.graph.node:
        raise ModelSourceError(f"{source}: the ONNX graph has no nodes (not an ONNX model, or an empty one)")
    return model


def _dims(vi: Any) -> list[int | str | None]:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    out: list[int | str | None] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def _fix_inputs(model: Any, input_shapes: Sequence[Sequence[int]] | None, source: str) -> None:
    init = {i.name for i in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in init]
    if input_shapes:
        if len(input_shapes) > len(inputs):
            raise ModelSourceError(
                f"input_shape: {len(input_shapes)} shapes given but {source} has {len(inputs)} input(s) "
                f"({', '.join(vi.name for vi in inputs)})",
                field="input_shape",
            )
        for vi, shape in zip(inputs, input_shapes, strict=False):
            dims = _dims(vi)
            if dims and len(dims) != len(shape):
                raise ModelSourceError(
                    f"input_shape {list(shape)} does not fit {source}: input {vi.name!r} has rank {len(dims)} "
                    f"({dims})",
                    field="input_shape",
                )
            for i, (want, have) in enumerate(zip(shape, dims, strict=False)):
                if isinstance(have, int) and have != want:
                    raise ModelSourceError(
                        f"input_shape {list(shape)} does not fit {source}: input {vi.name!r} dim {i} is fixed at "
                        f"{have}, got {want}",
                        field="input_shape",
                    )
            tt = vi.type.tensor_type
            tt.shape.ClearField("dim")
            for d in shape:
                tt.shape.dim.add().dim_value = int(d)
    for vi in inputs:
        dims = _dims(vi)
        if not dims or any(not isinstance(d, int) for d in dims):
            raise ModelSourceError(
                f"{source}: input {vi.name!r} has symbolic or unknown dims {dims}; give --input-shape",
                field="input_shape",
            )


def onnx_op_table(
    source: str | Path | bytes,
    *,
    input_shapes: Sequence[Sequence[int]] | None = None,
    mode: str = "inference",
    max_bytes: int = MAX_ONNX_BYTES,
    name: str | None = None,
) -> pl.DataFrame:
    """The operator table of an ONNX model (a path or the file's bytes).

    ``input_shapes`` fixes the graph inputs' dims (required when they are symbolic; checked
    against fixed dims). ``mode="training"`` adds one backward row per float forward row that
    carries time, as the torch front end does. Errors name the file, the node and the field.
    """
    onnx = _onnx()
    label = name or (f"model {str(source)!r}" if not isinstance(source, bytes) else "ONNX upload")
    data = source if isinstance(source, bytes) else read_onnx_bytes(source, max_bytes=max_bytes)
    model = _parse(data, label, max_bytes)
    _fix_inputs(model, input_shapes, label)
    try:
        inferred = onnx.shape_inference.infer_shapes(
            model, check_type=False, strict_mode=True, data_prop=True
        )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelSourceError(
            f"{label}: onnx shape inference failed ({first}); check --input-shape against the model's inputs",
            field="input_shape",
        ) from None
    g = inferred.graph
    shapes: dict[str, list[Any]] = {}
    types: dict[str, str] = {}
    for vi in (*g.input, *g.value_info, *g.output):
        shapes[vi.name] = _dims(vi)
        types[vi.name] = _ELEM_DTYPE.get(vi.type.tensor_type.elem_type, "fp32")
    inits = {}
    for t in g.initializer:
        shapes[t.name] = [int(d) for d in t.dims]
        types[t.name] = _ELEM_DTYPE.get(t.data_type, "fp32")
        inits[t.name] = t
    rows = [_row(node, i, shapes, types, inits, label) for i, node in enumerate(g.node)]
    rows = [r for r in rows if r is not None]
    if mode == "training":
        from hwsurrogate.datasets.frontends.torch_fx import backward_rows

        rows = rows + backward_rows(rows)
    elif mode != "inference":
        raise ModelSourceError(f"mode {mode!r} must be 'inference' or 'training'", field="mode")
    return op_table(rows)


def _attr(node: Any, key: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == key:
            return onnx.helper.get_attribute_value(a)
    return default


def _row(node: Any, i: int, shapes: dict[str, list[Any]], types: dict[str, str], inits: dict[str, Any],
         label: str) -> dict[str, Any] | None:  # fmt: skip
    name = node.name or f"{node.op_type}_{i}"
    ins = [n for n in node.input if n]
    outs = [n for n in node.output if n]
    in_shapes = [shapes.get(n) for n in ins]
    out_shape = shapes.get(outs[0]) if outs else None
    op = node.op_type
    if op in _VIEW or op == "Dropout" and len(outs) == 1:
        kind = "other"
    else:
        kind = None
    known = out_shape is not None and all(isinstance(d, int) for d in out_shape) and out_shape != []
    if not known and op not in _VIEW and op != "Constant":
        if out_shape == [] and outs:  # scalar output
            out_shape, known = [1], True
        else:
            raise ModelSourceError(
                f"{label}: node {name!r} ({op}): shape inference could not give its output shape ({out_shape}); "
                "give --input-shape with every dim fixed",
                field="input_shape",
            )
    dtype = types.get(ins[0], "fp32") if ins else types.get(outs[0], "fp32") if outs else "fp32"
    row: dict[str, Any] = {
        "name": name,
        "op": op.lower(),
        "phase": "forward",
        "module": None,
        "dtype": dtype,
        "input_shapes": json.dumps([s for s in in_shapes]),
        "output_shape": json.dumps(out_shape),
    }
    if kind == "other" or op == "Constant":
        return {**row, "op_kind": "other", "flops": 0.0, "bytes": 0.0}

    def numel(s: Any) -> int:
        return int(math.prod(s)) if s else 1

    def two_d(s: list[int]) -> tuple[int, int]:
        cols = int(s[-1]) if s else 1
        return max(1, numel(s) // max(cols, 1)), max(cols, 1)

    def fixed(s: Any) -> bool:
        return s is not None and all(isinstance(d, int) for d in s)

    if op in ("Gemm", "MatMul") and len(ins) >= 2 and fixed(in_shapes[0]) and fixed(in_shapes[1]):
        a, b = in_shapes[0], in_shapes[1]
        if op == "Gemm":
            m, k = (a[1], a[0]) if _attr(node, "transA", 0) else (a[0], a[1])
            n = b[0] if _attr(node, "transB", 0) else b[1]
            return {**row, "op_kind": "linear", "batch": 1, "m": m, "n": n, "k": k}
        if len(a) >= 2 and len(b) == 2:
            return {**row, "op_kind": "linear", "batch": 1, "m": numel(a) // a[-1], "n": b[1], "k": a[-1]}
        if len(a) >= 2 and len(b) >= 2:
            return {
                **row,
                "op_kind": "bmm",
                "batch": max(1, numel(out_shape[:-2])),
                "m": a[-2],
                "n": b[-1],
                "k": a[-1],
            }
    if (
        op == "Conv"
        and len(ins) >= 2
        and fixed(in_shapes[0])
        and fixed(in_shapes[1])
        and len(in_shapes[0]) == 4
    ):
        x, w = in_shapes[0], in_shapes[1]
        ks = list(_attr(node, "kernel_shape", w[2:]))
        st = list(_attr(node, "strides", [1, 1]))
        pads = list(_attr(node, "pads", [0, 0, 0, 0]))
        dil = list(_attr(node, "dilations", [1, 1]))
        groups = int(_attr(node, "group", 1))
        auto = _attr(node, "auto_pad", b"NOTSET")
        if auto not in (b"NOTSET", "NOTSET"):
            pads = [(ks[0] - 1) // 2] * 4 if auto in (b"SAME_UPPER", b"SAME_LOWER") else [0, 0, 0, 0]
        square = ks[0] == ks[1] and st[0] == st[1] and len(set(pads)) == 1 and dil == [1, 1] and x[2] == x[3]
        if square:
            conv = "conv2d" if groups == 1 else ("depthwise_conv2d" if groups == x[1] else "grouped_conv2d")
            return {**row, "op": conv, "op_kind": "conv2d", "batch": x[0], "in_channels": x[1] // groups,
                    "out_channels": w[0], "kernel_size": ks[0], "input_size": x[2], "stride": st[0],
                    "padding": pads[0]}  # fmt: skip
        macs = numel(out_shape) * w[1] * ks[0] * ks[1]
        return {**row, "op": "conv2d_nonsquare", "op_kind": "other", "flops": 2.0 * macs,
                "bytes": float(sum(numel(s) for s in (x, w, out_shape)) * _ELEM_BYTES.get(dtype, 4))}  # fmt: skip
    if (
        op == "Gather"
        and len(ins) == 2
        and ins[0] in inits
        and len(in_shapes[0] or []) == 2
        and fixed(in_shapes[1])
    ):
        return {**row, "op_kind": "embedding", "rows": max(1, numel(in_shapes[1])), "cols": in_shapes[0][1]}
    if op in _ACT:
        r, c = two_d(out_shape)
        return {**row, "op_kind": "activation", "rows": r, "cols": c, "inputs": 1}
    if op == "BatchNormalization":
        r, c = two_d(out_shape)
        return {**row, "op": "batch_norm", "op_kind": "elementwise", "rows": r, "cols": c, "inputs": 1}
    if op in _ELT:
        r, c = two_d(out_shape)
        operands = sum(1 for s in in_shapes if fixed(s) and numel(s) > 1)
        return {**row, "op_kind": "elementwise", "rows": r, "cols": c, "inputs": max(1, operands)}
    if op in ("Softmax", "LogSoftmax"):
        r, c = two_d(out_shape)
        return {**row, "op_kind": "softmax", "rows": r, "cols": c, "inputs": 1}
    if op in ("LayerNormalization", "SimplifiedLayerNormalization", "GroupNormalization"):
        r, c = two_d(out_shape)
        return {**row, "op_kind": "layernorm", "rows": r, "cols": c, "inputs": 1}
    if op in _RED and ins and fixed(in_shapes[0]):
        r, c = two_d(in_shapes[0])
        return {**row, "op_kind": "reduction", "rows": r, "cols": c, "inputs": 1}
    if op in _COPY:
        r, c = two_d(out_shape)
        return {**row, "op_kind": "copy", "rows": r, "cols": c, "inputs": 1}
    elems = sum(numel(s) for s in in_shapes if fixed(s)) + numel(out_shape)
    return {**row, "op_kind": "other", "flops": 0.0, "bytes": float(elems * _ELEM_BYTES.get(dtype, 4))}
