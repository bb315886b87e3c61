"""One entry point from a model source to its operator table: :func:`load_op_table`.

Sources (picked by form, checked before anything is built):

- ``FILE.onnx`` or the bytes of an ONNX file: :mod:`.onnx_graph` (protobuf, shape inference);
- ``FILE.py:CALLABLE``: the file is imported (it is the user's own code) and ``CALLABLE()``
  is called under ``torch.device("meta")`` to build the module; ``package.module:CALLABLE``
  imports an installed module or one in the current directory, as ``hws collect latency --model``;
- ``config.json`` (or a dict): a HuggingFace-style transformer config, :mod:`.hf_config`;
- a ``torch.nn.Module`` object: traced as it is (moved to the meta device).

Input shapes: ``input_shapes`` are whole input shapes (batch first); ``batch`` replaces the first
dimension of each. A config takes token ids of shape (``batch``, ``seqlen``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from hwsurrogate.errors import HwSurrogateError, ModelSourceError

__all__ = ["describe_source", "load_callable", "load_op_table", "source_kind"]


def source_kind(source: Any) -> str:
    """``onnx``, ``callable``, ``config`` or ``module`` for a model source (ModelSourceError otherwise)."""
    if isinstance(source, (bytes, bytearray)):
        return "onnx"
    if isinstance(source, dict):
        return "config"
    if isinstance(source, (str, Path)):
        text = str(source)
        if text.lower().endswith(".onnx"):
            return "onnx"
        if text.lower().endswith(".json"):
            return "config"
        if ":" in text and not text.endswith(":"):
            return "callable"
        raise ModelSourceError(
            f"model {text!r}: give FILE.onnx, FILE.py:CALLABLE, package.module:CALLABLE or a config.json"
        )
    try:
        import torch

        if isinstance(source, torch.nn.Module):
            return "module"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    raise ModelSourceError(f"model: unsupported source of type {type(source).__name__}")


def describe_source(source: Any) -> str:
    """A short label of a source for messages and reports."""
    if isinstance(source, (bytes, bytearray)):
        return f"ONNX upload ({len(source)} bytes)"
    if isinstance(source, dict):
        return f"config ({source.get('model_type', '?')})"
    if isinstance(source, (str, Path)):
        return str(source)
    return type(source).__name__


def load_callable(spec: str) -> Any:
    """The callable a ``FILE.py:CALLABLE`` or ``package.module:CALLABLE`` spec names (not called)."""
    left, _, attr = str(spec).rpartition(":")
    if not left or not attr.isidentifier():
        raise ModelSourceError(f"model {spec!r}: expected FILE.py:CALLABLE or package.module:CALLABLE")
    if left.endswith(".py"):
        path = Path(left)
        if not path.is_file():
            raise ModelSourceError(f"model {spec!r}: file {left!r} not found")
        name = "hws_user_model_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        spec_obj = importlib.util.spec_from_file_location(name, path)
        if spec_obj is None or spec_obj.loader is None:
            raise ModelSourceError(f"model {spec!r}: cannot import {left!r}")
        module = importlib.util.module_from_spec(spec_obj)
        sys.modules[name] = module
        try:
            spec_obj.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise ModelSourceError(
                f"model {spec!r}: importing {left!r} failed ({type(exc).__name__}: {exc})"
            ) from None
        if not hasattr(module, attr):
            names = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            raise ModelSourceError(
                f"model {spec!r}: {left!r} has no {attr!r}; its callables: {', '.join(names[:12]) or 'none'}"
            )
        return getattr(module, attr)
    from hwsurrogate.datasets.collectors.dnn_latency import import_callable

    try:
        return import_callable(str(spec))
    except HwSurrogateError as exc:
        raise ModelSourceError(str(exc)) from None


def _shapes(
    input_shapes: Sequence[Sequence[int]] | Sequence[int] | None, batch: int | None
) -> list[list[int]]:
    if input_shapes is None:
        return []
    shapes = list(input_shapes)
    if shapes and all(isinstance(d, int) and not isinstance(d, bool) for d in shapes):
        shapes = [shapes]  # one shape given flat
    out = []
    for i, s in enumerate(shapes):
        if isinstance(s, (str, bytes)) or not isinstance(s, Sequence):
            raise ModelSourceError(
                f"input_shape[{i}]: expected a list of integers, got {s!r}", field="input_shape"
            )
        dims = list(s)
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims) or not dims:
            raise ModelSourceError(
                f"input_shape[{i}]: dimensions must be integers >= 1, got {dims}", field="input_shape"
            )
        if batch is not None:
            dims[0] = batch
        out.append(dims)
    return out


def load_op_table(
    source: Any,
    input_shapes: Sequence[Sequence[int]] | Sequence[int] | None = None,
    *,
    batch: int | None = None,
    seqlen: int | None = None,
    mode: str = "inference",
    num_layers: int | None = None,
) -> pl.DataFrame:
    """The operator table of ``source`` (see the module doc) called on ``input_shapes``.

    ``batch`` replaces each input's first dim; for a config, the input is (``batch``,
    ``seqlen``) token ids (``input_shapes`` may give that instead). ``num_layers`` overrides a
    config's layer count. Every failure is a :class:`~hwsurrogate.errors.ModelSourceError`
    naming the field (``model``, ``input_shape``, ``batch``, ``seqlen``, ``mode``).
    """
    for field, value in (("batch", batch), ("seqlen", seqlen)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ModelSourceError(f"{field} must be an integer >= 1, got {value!r}", field=field)
    if mode not in ("inference", "training"):
        raise ModelSourceError(f"mode {mode!r} must be 'inference' or 'training'", field="mode")
    kind = source_kind(source)
    shapes = _shapes(input_shapes, batch)
    if kind == "onnx":
        from hwsurrogate.datasets.frontends.onnx_graph import onnx_op_table

        return onnx_op_table(bytes(source) if isinstance(source, bytearray) else source, input_shapes=shapes or None,
                             mode=mode)  # fmt: skip
    from hwsurrogate.datasets.frontends.torch_fx import build_callable, trace_module

    label = describe_source(source)
    if kind == "config":
        from hwsurrogate.datasets.frontends.hf_config import config_module

        if not shapes:
            if seqlen is None:
                raise ModelSourceError(
                    "a transformer config needs --seqlen (and --batch, default 1)", field="seqlen"
                )
            shapes = [[batch or 1, seqlen]]
        elif seqlen is not None:
            shapes = [[shapes[0][0], seqlen]]
        if len(shapes[0]) != 2:
            raise ModelSourceError(
                f"input_shape {shapes[0]} does not fit a transformer config: token ids are (batch, seqlen)",
                field="input_shape",
            )
        module = config_module(source, num_layers=num_layers)
        return trace_module(module, shapes[:1], mode=mode, input_dtypes=["int64"], source=label)
    if not shapes:
        raise ModelSourceError(f"model {label!r}: give its input shape, e.g. --input-shape 1,3,224,224",
                               field="input_shape")  # fmt: skip
    module = build_callable(load_callable(str(source)), label) if kind == "callable" else source
    return trace_module(module, shapes, mode=mode, source=label)
