"""Model front ends: a user's model (PyTorch module, ONNX file, HuggingFace-style config) -> the
operator table of :mod:`hwsurrogate.datasets.optable`.

- :mod:`.torch_fx`: an ``nn.Module`` traced with torch.fx and run on meta tensors (no weights,
  no GPU, no arithmetic);
- :mod:`.onnx_graph`: an ONNX file read as protobuf, shapes from onnx shape inference (no code
  executed, size-limited);
- :mod:`.hf_config`: a BERT / GPT-2 / OPT-style ``config.json`` built as a compact transformer
  in code, then traced like any module;
- :mod:`.source`: one entry point, :func:`load_op_table`, that picks the front end from the
  model source (``FILE.onnx``, ``FILE.py:CALLABLE``, ``package.module:CALLABLE``, ``config.json``).

Modules load torch / onnx on first use, so importing this package is light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "MAX_ONNX_BYTES",
    "build_callable",
    "config_module",
    "load_op_table",
    "onnx_op_table",
    "trace_module",
]

_LAZY = {
    "trace_module": "torch_fx",
    "build_callable": "torch_fx",
    "onnx_op_table": "onnx_graph",
    "MAX_ONNX_BYTES": "onnx_graph",
    "config_module": "hf_config",
    "load_op_table": "source",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
