"""PyTorch front end: an ``nn.Module`` and example input shapes -> the operator table.

The module is traced with ``torch.fx.symbolic_trace`` and the graph is run by an
:class:`torch.fx.Interpreter` on **meta tensors**: every operator computes only its output shape
(no weights are allocated when the module is built under ``torch.device("meta")``, no GPU, no
arithmetic). Each node becomes one row of :mod:`hwsurrogate.datasets.optable`:

- modules ``nn.Linear``, ``nn.Conv2d``, norms, activations, ``nn.Embedding``, pooling, dropout
  and functions/methods (``matmul``/``bmm``/``F.linear``, ``+ * /``, ``softmax``,
  ``layer_norm``, reductions, ``scaled_dot_product_attention`` as bmm + softmax + bmm ...)
  map to their ``op_kind`` (the tables below);
- views (``view``, ``reshape`` of a contiguous tensor, ``permute``, ``transpose``, indexing)
  are ``other`` with 0 bytes; ``contiguous``/``reshape`` of a non-contiguous tensor, ``cat``,
  ``clone`` are ``copy``;
- a grouped convolution (``groups`` > 1, e.g. MobileNet's depthwise conv) is recorded as the
  dense conv with the same FLOPs: ``in_channels`` = channels per group, ``op`` =
  ``depthwise_conv2d`` or ``grouped_conv2d`` (the table has no ``groups`` column);
- anything else with a tensor output is ``other`` with ``bytes`` = its inputs' and output's
  bytes, so the aggregation can state its share; nothing is dropped.

``mode="training"`` runs the module in train mode (dropout active, batch-norm statistics) and
adds one ``backward`` row per forward row that carries time (the forward op's shapes, as
NeuSight's traces; :func:`~hwsurrogate.datasets.optable.derive_flops_bytes` doubles FLOPs).
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl
import torch
import torch.fx as fx

from hwsurrogate.datasets.optable import op_table
from hwsurrogate.errors import ModelSourceError

__all__ = ["MODES", "backward_rows", "build_callable", "torch_dtype_name", "trace_module"]

MODES = ("inference", "training")

_ACTIVATIONS = {
    "relu", "relu_", "relu6", "gelu", "silu", "silu_", "sigmoid", "tanh", "hardswish", "hardsigmoid",
    "leaky_relu", "elu", "selu", "celu", "mish", "softplus", "hardtanh", "gelu_new", "quick_gelu", "glu",
    "logsigmoid", "prelu", "softsign", "tanhshrink",
}  # fmt: skip
_ELEMENTWISE = {
    "add", "sub", "mul", "div", "truediv", "floordiv", "pow", "neg", "exp", "log", "sqrt", "rsqrt", "abs",
    "clamp", "clip", "where", "masked_fill", "masked_fill_", "add_", "mul_", "sub_", "div_", "iadd", "imul",
    "isub", "itruediv", "maximum", "minimum", "eq", "ne", "lt", "gt", "le", "ge", "floor", "ceil", "sin",
    "cos", "reciprocal", "square", "erf", "logical_not", "logical_and", "logical_or", "sign", "tril", "triu",
    "float", "half", "bfloat16", "to", "type_as", "lerp", "addcmul", "addcdiv", "mod", "remainder", "rsub",
    "and_", "or_", "invert", "batch_norm", "dropout",
}  # fmt: skip
_SOFTMAX = {"softmax", "log_softmax", "_softmax"}
_NORMS = {"layer_norm", "rms_norm", "group_norm"}
_REDUCTIONS = {
    "sum", "mean", "amax", "amin", "max", "min", "var", "std", "norm", "logsumexp", "argmax", "argmin",
    "cumsum", "prod", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "max_pool1d",
    "avg_pool1d", "adaptive_avg_pool1d", "all", "any",
}  # fmt: skip
_VIEWS = {
    "view", "reshape", "flatten", "permute", "transpose", "t", "squeeze", "unsqueeze", "expand", "getitem",
    "split", "chunk", "unbind", "narrow", "select", "unflatten", "view_as", "expand_as", "reshape_as",
    "movedim", "swapaxes", "detach", "identity", "size", "dim", "contiguous", "getattr", "unfold",
}  # fmt: skip
_COPIES = {"cat", "concat", "stack", "clone", "repeat", "pad", "roll", "flip", "repeat_interleave", "tile"}
#: module class name (lower case) -> the functional op name, so both spellings share one ``op``
_MODULE_OPS = {
    "layernorm": "layer_norm", "groupnorm": "group_norm", "rmsnorm": "rms_norm", "leakyrelu": "leaky_relu",
    "logsoftmax": "log_softmax", "maxpool2d": "max_pool2d", "avgpool2d": "avg_pool2d",
    "adaptiveavgpool2d": "adaptive_avg_pool2d", "adaptivemaxpool2d": "adaptive_max_pool2d", "maxpool1d": "max_pool1d",
    "avgpool1d": "avg_pool1d", "adaptiveavgpool1d": "adaptive_avg_pool1d", "logsigmoid": "logsigmoid",
}  # fmt: skip
_CREATION = {
    "zeros",
    "ones",
    "full",
    "arange",
    "empty",
    "zeros_like",
    "ones_like",
    "full_like",
    "empty_like",
    "rand",
    "randn",
    "randn_like",
    "rand_like",
    "tensor",
    "new_zeros",
    "new_ones",
    "new_full",
    "new_empty",
}
_GEMMS = {"matmul", "bmm", "mm", "linear", "addmm", "baddbmm"}

_DTYPES: dict[str, str] = {
    "float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64", "int64": "int64",
    "int32": "int32", "int8": "int8", "uint8": "int8", "bool": "int8",
}  # fmt: skip


def torch_dtype_name(dtype: Any) -> str:
    """``torch.float32`` -> ``'fp32'`` (the operator table's dtype names); unknown -> ``'fp32'``."""
    return _DTYPES.get(str(dtype).removeprefix("torch."), "fp32")


def _is_tensor(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def _flat_tensors(values: Any) -> list[Any]:
    out: list[Any] = []

    def walk(v: Any) -> None:
        if _is_tensor(v):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            for item in v:
                walk(item)
        elif isinstance(v, dict):
            for item in v.values():
                walk(item)

    walk(values)
    return out


def _numel(shape: Sequence[int]) -> int:
    return int(math.prod(int(d) for d in shape))


def _two_d(shape: Sequence[int]) -> tuple[int, int]:
    """(rows, cols) of a tensor viewed as 2-D with cols its last dimension."""
    cols = int(shape[-1]) if len(shape) else 1
    return max(1, _numel(shape) // max(cols, 1)), max(cols, 1)


def _op_name(node: Any) -> str:
    target = node.target
    if node.op == "call_method":
        return str(target)
    if target is operator.getitem:
        return "getitem"
    name = getattr(target, "__name__", str(target))
    return name.removeprefix("_").removesuffix("_") if name not in ("relu_", "add_", "mul_") else name


class _Recorder:
    """Turns one executed fx node into operator-table rows."""

    def __init__(self, modules: dict[str, Any], training: bool) -> None:
        self.modules = modules
        self.training = training
        self.rows: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ helpers
    def _base(
        self, node: Any, kind: str, op: str, tensors: list[Any], out: Any, module: str | None
    ) -> dict[str, Any]:
        ref = tensors[0] if tensors else out
        return {
            "name": node.name,
            "op_kind": kind,
            "op": op,
            "phase": "forward",
            "module": module,
            "dtype": torch_dtype_name(ref.dtype if ref is not None else "float32"),
            "input_shapes": json.dumps([list(t.shape) for t in tensors]),
            "output_shape": json.dumps(list(out.shape)) if _is_tensor(out) else None,
        }

    def _vector(self, node: Any, kind: str, op: str, tensors: list[Any], out: Any, module: str | None,
                shape: Sequence[int] | None = None, inputs: int | None = None) -> None:  # fmt: skip
        rows, cols = _two_d(shape if shape is not None else out.shape)
        row = self._base(node, kind, op, tensors, out, module)
        n_inputs = inputs if inputs is not None else max(1, sum(1 for t in tensors if t.numel() > 1))
        row.update(rows=rows, cols=cols, inputs=n_inputs)
        self.rows.append(row)

    def _other(
        self, node: Any, op: str, tensors: list[Any], out: Any, module: str | None, *, view: bool
    ) -> None:
        row = self._base(node, "other", op, tensors, out, module)
        if view:
            row.update(flops=0.0, bytes=0.0)
        else:
            outs = _flat_tensors(out)
            elems = sum(t.numel() * t.element_size() for t in (*tensors, *outs))
            row.update(flops=0.0, bytes=float(elems))
        self.rows.append(row)

    def _gemm(self, node: Any, op: str, a: Any, b_shape: Sequence[int], tensors: list[Any], out: Any,
              module: str | None, *, weight_nk: bool = False) -> None:  # fmt: skip
        """``a @ b`` (``b_shape`` (..., k, n)); ``weight_nk``: b given as an (n, k) weight (F.linear)."""
        row = self._base(node, "linear", op, tensors, out, module)
        if a.dim() < 1 or len(b_shape) < 1 or a.dim() == 1 or len(b_shape) == 1:
            self._other(node, op, tensors, out, module, view=False)
            return
        if weight_nk:
            n, k = int(b_shape[0]), int(b_shape[1])
            row.update(batch=1, m=max(1, a.numel() // max(k, 1)), n=n, k=k)
        elif len(b_shape) == 2:
            k, n = int(b_shape[0]), int(b_shape[1])
            row.update(batch=1, m=max(1, a.numel() // max(k, 1)), n=n, k=k)
        else:
            batch = _numel(out.shape[:-2])
            row.update(
                op_kind="bmm", batch=max(1, batch), m=int(a.shape[-2]), n=int(b_shape[-1]), k=int(a.shape[-1])
            )
        self.rows.append(row)

    # ------------------------------------------------------------------ dispatch
    def record(self, node: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        if node.op in ("placeholder", "output", "get_attr"):
            return
        tensors = _flat_tensors((args, kwargs))
        outs = _flat_tensors(out)
        if not outs:
            return  # sizes, dims, python values: no operator
        stack = node.meta.get("nn_module_stack") or {}
        owner = next(reversed(stack.values()))[0] if stack else None
        if node.op == "call_module":
            self._module(node, self.modules[node.target], tensors, out)
        else:
            self._function(node, _op_name(node), args, kwargs, tensors, out, owner)

    def _module(self, node: Any, mod: Any, tensors: list[Any], out: Any) -> None:
        import torch.nn as nn

        path = str(node.target)
        x = tensors[0] if tensors else None
        tname = _MODULE_OPS.get(type(mod).__name__.lower(), type(mod).__name__.lower())
        if isinstance(mod, nn.Linear) and x is not None:
            self._gemm(
                node, "linear", x, (mod.out_features, mod.in_features), tensors, out, path, weight_nk=True
            )
        elif isinstance(mod, nn.Conv2d) and x is not None:
            self._conv(node, mod, x, tensors, out, path)
        elif (
            isinstance(mod, nn.LayerNorm | nn.GroupNorm | getattr(nn, "RMSNorm", nn.LayerNorm))
            and x is not None
        ):
            self._vector(node, "layernorm", tname, tensors, out, path, inputs=1)
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm) and x is not None:
            self._vector(node, "elementwise", "batch_norm", tensors, out, path, inputs=1)
        elif isinstance(mod, nn.Embedding):
            row = self._base(node, "embedding", "embedding", tensors, out, path)
            row.update(rows=max(1, x.numel() if x is not None else 1), cols=int(mod.embedding_dim),
                       dtype=torch_dtype_name(mod.weight.dtype))  # fmt: skip
            self.rows.append(row)
        elif isinstance(mod, nn.Softmax | nn.LogSoftmax):
            self._vector(node, "softmax", tname, tensors, out, path, inputs=1)
        elif tname in _ACTIVATIONS or isinstance(mod, nn.ReLU | nn.GELU | nn.SiLU | nn.Sigmoid | nn.Tanh | nn.Hardswish |
                                                     nn.LeakyReLU | nn.ReLU6 | nn.Hardsigmoid | nn.ELU | nn.Mish | nn.Softplus):  # fmt: skip
            self._vector(node, "activation", tname, tensors, out, path, inputs=1)
        elif isinstance(mod, nn.Dropout | nn.Dropout2d | nn.Dropout1d):
            if self.training and mod.p > 0:
                self._vector(node, "elementwise", "dropout", tensors, out, path, inputs=1)
            else:
                self._other(node, "identity", tensors, out, path, view=True)
        elif isinstance(mod, nn.Identity | nn.Flatten | nn.Unflatten):
            self._other(node, tname, tensors, out, path, view=True)
        elif isinstance(mod, nn.MaxPool2d | nn.AvgPool2d | nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d |
                        nn.MaxPool1d | nn.AvgPool1d | nn.AdaptiveAvgPool1d) and x is not None:  # fmt: skip
            self._vector(node, "reduction", tname, tensors, out, path, shape=x.shape, inputs=1)
        else:
            self._other(node, tname, tensors, out, path, view=False)

    def _conv(self, node: Any, mod: Any, x: Any, tensors: list[Any], out: Any, path: str) -> None:
        kh, kw = mod.kernel_size
        sh, sw = mod.stride
        dh, dw = mod.dilation
        if isinstance(mod.padding, str):  # 'same' / 'valid'
            ph = pw = (kh - 1) // 2 if mod.padding == "same" else 0
        else:
            ph, pw = mod.padding
        shape = tuple(x.shape)
        if len(shape) == 3:
            shape = (1, *shape)
        h, w = shape[-2], shape[-1]
        if kh != kw or sh != sw or ph != pw or dh != 1 or dw != 1 or h != w:
            # the table's conv2d is square (NeuSight's data): keep it, unmodeled, with its FLOPs
            row = self._base(node, "other", "conv2d_nonsquare", tensors, out, path)
            macs = out.numel() * (mod.in_channels // mod.groups) * kh * kw
            row.update(
                flops=2.0 * macs, bytes=float(sum(t.numel() * t.element_size() for t in (*tensors, out)))
            )
            self.rows.append(row)
            return
        groups = int(mod.groups)
        op = (
            "conv2d"
            if groups == 1
            else ("depthwise_conv2d" if groups == mod.in_channels else "grouped_conv2d")
        )
        row = self._base(node, "conv2d", op, tensors, out, path)
        row.update(batch=int(shape[0]), in_channels=int(mod.in_channels // groups), out_channels=int(mod.out_channels),
                   kernel_size=int(kh), input_size=int(h), stride=int(sh), padding=int(ph))  # fmt: skip
        self.rows.append(row)

    def _function(self, node: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], tensors: list[Any],
                  out: Any, owner: str | None) -> None:  # fmt: skip
        if name in _GEMMS and len(tensors) >= 2:
            if name == "linear":
                self._gemm(
                    node, "linear", tensors[0], tuple(tensors[1].shape), tensors, out, owner, weight_nk=True
                )
            elif name in ("addmm", "baddbmm") and len(tensors) >= 3:
                self._gemm(node, name, tensors[1], tuple(tensors[2].shape), tensors, out, owner)
            else:
                self._gemm(node, name, tensors[0], tuple(tensors[1].shape), tensors, out, owner)
        elif name == "scaled_dot_product_attention" and len(tensors) >= 3:
            self._sdpa(node, tensors, out, owner)
        elif name in _ACTIVATIONS:
            self._vector(node, "activation", name.rstrip("_"), tensors, out, owner, inputs=1)
        elif name in _SOFTMAX:
            self._vector(node, "softmax", name.lstrip("_"), tensors, out, owner, inputs=1)
        elif name in _NORMS:
            self._vector(node, "layernorm", name, tensors, out, owner, inputs=1)
        elif name == "embedding" and len(tensors) >= 2:
            row = self._base(node, "embedding", "embedding", tensors, out, owner)
            row.update(rows=max(1, tensors[0].numel()), cols=int(tensors[1].shape[-1]),
                       dtype=torch_dtype_name(tensors[1].dtype))  # fmt: skip
            self.rows.append(row)
        elif name == "dropout":
            training = bool(kwargs.get("training", args[2] if len(args) > 2 else True))
            if self.training and training:
                self._vector(node, "elementwise", "dropout", tensors, out, owner, inputs=1)
            else:
                self._other(node, "identity", tensors, out, owner, view=True)
        elif name in _ELEMENTWISE:
            self._vector(node, "elementwise", name.rstrip("_").removeprefix("i") if name.startswith("i") and
                         name not in ("invert",) else name.rstrip("_"), tensors, out, owner)  # fmt: skip
        elif name in _REDUCTIONS and tensors:
            self._vector(node, "reduction", name, tensors, out, owner, shape=tensors[0].shape, inputs=1)
        elif name in _VIEWS:
            x = tensors[0] if tensors else None
            copies = name in ("contiguous", "reshape", "flatten") and x is not None and not x.is_contiguous()
            if copies:
                self._vector(node, "copy", name, tensors, out, owner, inputs=1)
            else:
                self._other(node, name, tensors, out, owner, view=True)
        elif name in _COPIES and _is_tensor(out):
            self._vector(node, "copy", name, tensors, out, owner, inputs=1)
        else:
            self._other(node, name, tensors, out, owner, view=False)

    def _sdpa(self, node: Any, tensors: list[Any], out: Any, owner: str | None) -> None:
        """``F.scaled_dot_product_attention(q, k, v)``: q @ k^T, softmax, p @ v (the math it does)."""
        q, k, v = tensors[:3]
        batch = _numel(q.shape[:-2])
        lq, lk, d, dv = int(q.shape[-2]), int(k.shape[-2]), int(q.shape[-1]), int(v.shape[-1])
        for suffix, kind, extra in (
            ("qk", "bmm", {"batch": batch, "m": lq, "n": lk, "k": d}),
            ("softmax", "softmax", {"rows": batch * lq, "cols": lk, "inputs": 1}),
            ("pv", "bmm", {"batch": batch, "m": lq, "n": dv, "k": lk}),
        ):
            row = self._base(
                node, kind, f"sdpa_{suffix}" if kind == "bmm" else "softmax", tensors, out, owner
            )
            row.update(name=f"{node.name}.{suffix}", **extra)
            self.rows.append(row)


def backward_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One backward row per forward row that carries time and a gradient (float operands)."""
    out = []
    for row in rows:
        if row["dtype"] not in ("fp32", "fp16", "bf16", "fp64") and row["op_kind"] != "embedding":
            continue
        if row["op_kind"] == "other" and (not row.get("bytes") or row["op"] in _CREATION):
            continue  # views and new tensors: no backward work
        back = dict(row, name=f"{row['name']}.backward", phase="backward")
        if row["op_kind"] == "other":
            back["bytes"] = 2.0 * float(row["bytes"])
            back["flops"] = 2.0 * float(row.get("flops") or 0.0)
        out.append(back)
    return out


def _first_error_node(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def trace_module(
    module: Any,
    input_shapes: Sequence[Sequence[int]],
    *,
    mode: str = "inference",
    input_dtypes: Sequence[str] | None = None,
    source: str = "module",
    concrete_args: dict[str, Any] | None = None,
) -> pl.DataFrame:
    """The operator table of ``module`` called on inputs of ``input_shapes`` (meta tensors).

    ``module`` is moved to the meta device if it is not already there (build it under
    ``with torch.device("meta"):`` to allocate no weights at all). ``input_dtypes`` gives each
    input's dtype (``fp32``, ``int64`` ...); the default is int64 for an input that feeds an
    embedding first, fp32 otherwise. ``source`` names the model in error messages. Raises
    :class:`~hwsurrogate.errors.ModelSourceError` naming the field and the failing node.
    """
    if mode not in MODES:
        raise ModelSourceError(f"mode {mode!r} must be one of {list(MODES)}", field="mode")
    if not isinstance(module, torch.nn.Module):
        raise ModelSourceError(f"{source}: expected a torch.nn.Module, got {type(module).__name__}")
    shapes = _check_shapes(input_shapes)
    training = mode == "training"
    try:
        module = module.to("meta")
    except Exception as exc:
        raise ModelSourceError(
            f"{source}: cannot move the module to the meta device ({_first_error_node(exc)})"
        ) from None
    module.train(training)
    try:
        graph = fx.symbolic_trace(module, concrete_args=concrete_args)
    except Exception as exc:
        raise ModelSourceError(
            f"{source}: torch.fx cannot trace this module ({type(exc).__name__}: {_first_error_node(exc)}); "
            "make its forward free of data-dependent Python control flow, or export it to ONNX "
            "(torch.onnx.export) and give the .onnx file"
        ) from None
    placeholders = [n for n in graph.graph.nodes if n.op == "placeholder"]
    if len(shapes) > len(placeholders):
        raise ModelSourceError(
            f"input_shape: {len(shapes)} input shapes given but the module's forward takes {len(placeholders)} "
            f"input(s) ({', '.join(p.name for p in placeholders)})",
            field="input_shape",
        )
    dtypes = (
        list(input_dtypes) if input_dtypes else [_guess_dtype(graph, p) for p in placeholders[: len(shapes)]]
    )
    inputs = []
    for shape, dt in zip(shapes, dtypes, strict=False):
        tdt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp64": torch.float64,
               "int64": torch.int64, "int32": torch.int32}.get(dt)  # fmt: skip
        if tdt is None:
            raise ModelSourceError(f"input dtype {dt!r} is not one of fp32, fp16, bf16, fp64, int64, int32",
                                   field="input_dtype")  # fmt: skip
        inputs.append(torch.empty(shape, dtype=tdt, device="meta"))
    recorder = _Recorder(dict(graph.named_modules()), training)
    interp = _RecordingInterpreter(graph, recorder)
    try:
        with torch.no_grad():
            interp.run(*inputs)
    except ModelSourceError:
        raise
    except Exception as exc:
        node = interp.current
        where = f"at node {node.name!r} ({node.op} {_target_name(node)})" if node is not None else ""
        raise ModelSourceError(
            f"input_shape {[list(s) for s in shapes]} does not fit {source} {where}: "
            f"{type(exc).__name__}: {_first_error_node(exc)}",
            field="input_shape",
        ) from None
    rows = recorder.rows
    if not rows:
        raise ModelSourceError(f"{source}: the traced graph has no operators")
    if training:
        rows = rows + backward_rows(rows)
    return op_table(rows)


def _target_name(node: Any) -> str:
    return (
        str(node.target)
        if node.op in ("call_module", "call_method")
        else getattr(node.target, "__name__", str(node.target))
    )


def _guess_dtype(graph: Any, placeholder: Any) -> str:
    """int64 when the input goes straight into an embedding (token ids), else fp32."""
    import torch.nn as nn

    modules = dict(graph.named_modules())
    for user in placeholder.users:
        if user.op == "call_module" and isinstance(modules.get(user.target), nn.Embedding):
            return "int64"
        if user.op == "call_function" and getattr(user.target, "__name__", "") == "embedding":
            return "int64"
    return "fp32"


def _check_shapes(input_shapes: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    if not input_shapes:
        raise ModelSourceError(
            "input_shape: at least one input shape is needed, e.g. 1,3,224,224", field="input_shape"
        )
    out = []
    for i, shape in enumerate(input_shapes):
        try:
            dims = tuple(shape)
        except TypeError:
            raise ModelSourceError(
                f"input_shape[{i}]: expected a list of integers, got {shape!r}", field="input_shape"
            ) from None
        if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
            raise ModelSourceError(f"input_shape[{i}]: dimensions must be integers >= 1, got {list(dims)}",
                                   field="input_shape")  # fmt: skip
        if _numel(dims) > 1 << 40:
            raise ModelSourceError(
                f"input_shape[{i}]: {list(dims)} has more than 2^40 elements", field="input_shape"
            )
        out.append(dims)
    return out


class _RecordingInterpreter(fx.Interpreter):
    """Runs the graph node by node (on meta tensors) and hands each result to the recorder."""

    def __init__(self, gm: Any, recorder: _Recorder) -> None:
        super().__init__(gm)
        self.recorder = recorder
        self.current: Any = None

    def run_node(self, n: Any) -> Any:
        self.current = n
        result = super().run_node(n)
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        self.recorder.record(n, args, kwargs, result)
        return result


def build_callable(factory: Callable[[], Any], source: str) -> Any:
    """Call ``factory`` under ``torch.device("meta")`` (no weights allocated); errors name ``source``."""
    try:
        with torch.device("meta"):
            module = factory() if callable(factory) and not isinstance(factory, torch.nn.Module) else factory
    except Exception as exc:
        gpu = "cuda" in str(exc).lower() or "gpu" in str(exc).lower()
        hint = (
            "; it needs a GPU to build: build it on the CPU (no .cuda()), the trace never computes"
            if gpu
            else ""
        )
        raise ModelSourceError(
            f"model {source!r}: the callable failed to build ({type(exc).__name__}: {_first_error_node(exc)}){hint}"
        ) from None
    if not isinstance(module, torch.nn.Module):
        raise ModelSourceError(
            f"model {source!r}: the callable returned {type(module).__name__}, not a torch.nn.Module"
        )
    return module
