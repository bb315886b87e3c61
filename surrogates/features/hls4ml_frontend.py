"""A user's own model into the hls4ml layer list, through hls4ml's own front ends.

An hls4ml user has a PyTorch or ONNX model and an hls4ml configuration (precision, reuse
factor, strategy, io type, part). :func:`onnx_design` and :func:`pytorch_design` convert it with
hls4ml 1.3 (``config_from_pytorch_model`` / ``convert_from_pytorch_model``,
``config_from_onnx_model`` / ``convert_from_onnx_model``) into hls4ml's ``ModelGraph`` (no
compile, no build, no Vivado), then read the graph's layers into the layer list the
``fpga-hls4ml`` surrogate consumes (the ``model`` column, :mod:`.hls4ml`): the per-layer reuse
factor and weight precision are the ones hls4ml resolved for the layer.

The configuration is the hls4ml one: either its YAML file (``IOType``, ``Part``, ``Backend``,
``HLSConfig: {Model, LayerType, LayerName}``) or just the ``HLSConfig`` part. It is read with
``yaml.safe_load`` (no tags, no code), and checked before hls4ml sees it; every error names the
field (``HLSConfig.Model.ReuseFactor``, ``HLSConfig.LayerName.fc1.Precision.weight``, ...).
hls4ml itself snaps a reuse factor that does not divide a layer to the closest valid one with a
printed warning; here it is an error listing the valid ones, so the prediction is for the design
the user asked for.

Layers hls4ml inserts for its own plumbing are folded, so that the list reads like the Keras
layer lists the surrogate was trained on: the ``Transpose`` of PyTorch's channels-last
conversion, the ``Clone`` of a stream fan-out, and a ``ZeroPadding`` split from a padded
convolution (the convolution gets ``padding: same``).

An ONNX file is parsed from bytes with ``onnx.load_model_from_string`` (protobuf only: no code,
no external-data files; a model whose tensors live in external files is refused) and shape
inference, the preprocessing hls4ml's ONNX reader expects (it does not infer shapes itself).
A PyTorch model is a ``torch.nn.Module`` the caller already holds: loading it from a ``.py``
file runs that file, which only the command line does, on the user's own file.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwsurrogate.datasets import precision as fixed_point
from hwsurrogate.errors import HwSurrogateError
from hwsurrogate.surrogates.features.hls4ml import HLS4ML_LAYER_CLASSES

#: Largest ONNX file or configuration accepted (bytes).
MAX_ONNX_BYTES = 64 << 20
MAX_CONFIG_BYTES = 1 << 20

#: Top-level keys of hls4ml's YAML configuration that mean something here.
_TOP_KEYS = {
    "HLSConfig",
    "IOType",
    "Part",
    "Backend",
    "ClockPeriod",
    "OutputDir",
    "ProjectName",
    "InputShape",
}
_HLS_KEYS = {"Model", "LayerType", "LayerName", "Flows", "Optimizers", "SkipOptimizers"}
_MODEL_KEYS = {"Precision", "ReuseFactor", "Strategy", "BramFactor", "TraceOutput", "ChannelsLastConversion",
               "TransposeOutputs", "BitExact"}  # fmt: skip
_LAYER_KEYS = {"Precision", "ReuseFactor", "Strategy", "Trace", "TableSize", "Implementation", "Skip",
               "ParallelizationFactor", "ConvImplementation", "unroll"}  # fmt: skip
_STRATEGIES = {"latency": "Latency", "resource": "Resource"}
_IO_TYPES = ("io_parallel", "io_stream")
#: ONNX ops QONNX's cleanup folds or rewrites (Gemm -> MatMul + Add; shape arithmetic of exporters)
_FOLDED_BY_QONNX = {
    "Gemm",
    "Constant",
    "Shape",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Cast",
    "Slice",
    "ConstantOfShape",
}
_MODEL_REFS = {"KerasModel", "KerasJson", "KerasH5", "OnnxModel", "PytorchModel"}
DEFAULT_PART = "xcu250-figd2104-2L-e"


class Hls4mlConfigError(HwSurrogateError, ValueError):
    """An hls4ml configuration or model the surrogate cannot take; the message names the field.

    ``field`` is the configuration path (``HLSConfig.Model.ReuseFactor``) or ``"model"``.
    """

    def __init__(self, message: str, field: str = "model") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Hls4mlDesign:
    """A model converted through hls4ml: its layer list and the configuration columns of a query."""

    layers: list[dict[str, Any]]
    reuse_factor: int
    precision: str
    strategy: str
    io_type: str
    part: str
    notes: list[str] = field(default_factory=list)

    def query(self) -> dict[str, Any]:
        """One ``fpga-hls4ml`` query row (:data:`.hls4ml.HLS4ML_QUERY_COLUMNS`)."""
        import json

        return {
            "model": json.dumps(self.layers, separators=(",", ":")),
            "reuse_factor": self.reuse_factor,
            "precision": self.precision,
            "strategy": self.strategy,
            "io_type": self.io_type,
            "part": self.part,
        }


# --------------------------------------------------------------------------- configuration
def read_hls4ml_config(source: str | Path | bytes | dict[str, Any] | None) -> dict[str, Any]:
    """An hls4ml configuration from a YAML/JSON file, its bytes or a dict, checked (see the module).

    Returns ``{"IOType", "Part", "HLSConfig": {"Model": {...}, "LayerType": {...}, "LayerName": {...}}}``
    with ``Model.Precision``, ``Model.ReuseFactor`` and ``Model.Strategy`` always present.
    """
    if source is None:
        raw: object = {}
    elif isinstance(source, dict):
        raw = source
    else:
        import yaml

        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise Hls4mlConfigError(f"hls4ml config {str(path)!r} does not exist", field="config")
            if path.stat().st_size > MAX_CONFIG_BYTES:
                raise Hls4mlConfigError(
                    f"hls4ml config {str(path)!r} is larger than {MAX_CONFIG_BYTES} bytes"
                )
            data = path.read_bytes()
        else:
            data = source
        if len(data) > MAX_CONFIG_BYTES:
            raise Hls4mlConfigError(f"hls4ml config is larger than {MAX_CONFIG_BYTES} bytes", field="config")
        try:
            raw = yaml.safe_load(data.decode("utf-8")) or {}
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            raise Hls4mlConfigError(f"hls4ml config is not valid YAML/JSON: {exc}", field="config") from None
    return check_hls4ml_config(raw)


def _fail(path: str, why: str) -> Hls4mlConfigError:
    return Hls4mlConfigError(f"hls4ml config: {path} {why}", field=path)


def _check_keys(obj: object, path: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _fail(path, f"must be a mapping, got {type(obj).__name__}")
    for k in obj:
        if not isinstance(k, str) or k not in allowed:
            raise _fail(f"{path}.{k}" if path else str(k), f"is not a key hls4ml's config has here; known: "
                        f"{', '.join(sorted(allowed))}")  # fmt: skip
    return obj


def _check_precision(value: object, path: str, *, auto_ok: bool) -> object:
    if isinstance(value, dict):
        for k, v in value.items():
            _check_precision(v, f"{path}.{k}", auto_ok=auto_ok)
        return value
    if isinstance(value, str) and value.strip().lower() == "auto" and auto_ok:
        return value
    if fixed_point.parse_precision(value) is None:
        raise _fail(path, f"is {value!r}, not an hls4ml fixed-point type (ap_fixed<W,I>, ap_ufixed<W,I>, "
                    "ap_int<W>, ap_uint<W>, with or without the ap_ prefix" + (", or auto)" if auto_ok else ")"))  # fmt: skip
    return value


def _check_rf(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 20:
        raise _fail(path, f"must be an integer between 1 and {1 << 20}; it is {value!r}")
    return value


def _check_strategy(value: object, path: str) -> str:
    if not isinstance(value, str) or value.lower() not in _STRATEGIES:
        raise _fail(path, f"is {value!r}; the surrogate knows Latency and Resource")
    return _STRATEGIES[value.lower()]


def _check_layer(cfg: object, path: str) -> dict[str, Any]:
    cfg = dict(_check_keys(cfg, path, _LAYER_KEYS))
    if "Precision" in cfg:
        _check_precision(cfg["Precision"], f"{path}.Precision", auto_ok=True)
    if "ReuseFactor" in cfg:
        _check_rf(cfg["ReuseFactor"], f"{path}.ReuseFactor")
    if "Strategy" in cfg:
        cfg["Strategy"] = _check_strategy(cfg["Strategy"], f"{path}.Strategy")
    return cfg


def check_hls4ml_config(raw: object) -> dict[str, Any]:
    """Check an hls4ml configuration mapping (see :func:`read_hls4ml_config`); errors name the field."""
    if not isinstance(raw, dict):
        raise _fail("(top level)", f"must be a mapping, got {type(raw).__name__}")
    refs = sorted(_MODEL_REFS & set(raw))
    if refs:
        raise _fail(refs[0], "names a model file; pass the model itself (--model / the upload), the config "
                    "only configures it")  # fmt: skip
    if "HLSConfig" in raw:
        top = _check_keys(raw, "", _TOP_KEYS)
        hls = _check_keys(top["HLSConfig"], "HLSConfig", _HLS_KEYS)
        prefix = "HLSConfig."
    else:
        top = {k: raw[k] for k in ("IOType", "Part", "Backend", "ClockPeriod") if k in raw}
        hls = _check_keys({k: v for k, v in raw.items() if k not in top}, "", _HLS_KEYS)
        prefix = ""
    model = dict(_check_keys(hls.get("Model", {}), f"{prefix}Model", _MODEL_KEYS))
    model["Precision"] = _check_precision(model.get("Precision", "ap_fixed<16,6>"), f"{prefix}Model.Precision",
                                          auto_ok=False)  # fmt: skip
    model["ReuseFactor"] = _check_rf(model.get("ReuseFactor", 1), f"{prefix}Model.ReuseFactor")
    model["Strategy"] = _check_strategy(model.get("Strategy", "Latency"), f"{prefix}Model.Strategy")
    out_hls: dict[str, Any] = {"Model": model}
    for group in ("LayerType", "LayerName"):
        entries = hls.get(group, {}) or {}
        if not isinstance(entries, dict):
            raise _fail(f"{prefix}{group}", f"must be a mapping, got {type(entries).__name__}")
        out_hls[group] = {str(k): _check_layer(v, f"{prefix}{group}.{k}") for k, v in entries.items()}
    io_type = top.get("IOType", "io_parallel")
    if io_type not in _IO_TYPES:
        raise _fail("IOType", f"is {io_type!r}; hls4ml's are {', '.join(_IO_TYPES)}")
    part = top.get("Part", DEFAULT_PART)
    if not isinstance(part, str) or not part.strip() or len(part) > 64:
        raise _fail("Part", f"must be an FPGA part name, got {part!r}")
    backend = top.get("Backend", "Vivado")
    if backend not in ("Vivado", "Vitis"):
        raise _fail("Backend", f"is {backend!r}; the surrogate knows the Vivado and Vitis backends")
    return {
        "IOType": io_type,
        "Part": part.strip(),
        "Backend": backend,
        "HLSConfig": out_hls,
        "_prefix": prefix,
    }


# --------------------------------------------------------------------------- conversion
def _require_hls4ml() -> Any:
    try:
        import hls4ml
    except ImportError:
        raise Hls4mlConfigError(
            "reading PyTorch/ONNX models needs hls4ml: pip install 'hwsurrogate[hls4ml]'"
        ) from None
    return hls4ml


def _merge_config(generated: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """hls4ml's generated config with the user's Model / LayerType / LayerName entries on top."""
    hls = cfg["HLSConfig"]
    out = dict(generated)
    out["Model"] = {**generated.get("Model", {}), **hls["Model"]}
    if hls["Model"]["Strategy"] == "Resource":
        out["Model"]["Strategy"] = "Resource"
    for group in ("LayerType", "LayerName"):
        merged = {k: dict(v) for k, v in (generated.get(group) or {}).items()}
        for name, layer in hls[group].items():
            merged[name] = {**merged.get(name, {}), **layer}
        if merged:
            out[group] = merged
    return out


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run an hls4ml call with its prints and warnings kept off stdout (``--json`` stays JSON)."""
    import warnings

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kwargs)
        except Hls4mlConfigError:
            raise
        except Exception as exc:  # hls4ml raises bare Exception for unsupported layers
            msg = str(exc).replace("ERROR: ", "") or type(exc).__name__
            raise Hls4mlConfigError(f"hls4ml could not convert the model: {msg}") from None


def _check_layer_names(graph: Any, cfg: dict[str, Any]) -> None:
    names = [layer.name for layer in graph.get_layers()]
    prefix = cfg["_prefix"]
    for name in cfg["HLSConfig"]["LayerName"]:
        if name not in names:
            raise _fail(
                f"{prefix}LayerName.{name}", f"names no layer of the model; its layers: {', '.join(names)}"
            )


def onnx_design(
    model: bytes | str | Path, config: dict[str, Any] | None = None, *, part: str | None = None
) -> Hls4mlDesign:
    """Convert an ONNX model (file path or bytes) with hls4ml and read its layer list."""
    import onnx

    hls4ml = _require_hls4ml()
    cfg = read_hls4ml_config(config) if not isinstance(config, dict) or "_prefix" not in config else config
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise Hls4mlConfigError(f"ONNX model {str(path)!r} does not exist")
        if path.stat().st_size > MAX_ONNX_BYTES:
            raise Hls4mlConfigError(f"ONNX model {str(path)!r} is larger than {MAX_ONNX_BYTES} bytes")
        model = path.read_bytes()
    if len(model) > MAX_ONNX_BYTES:
        raise Hls4mlConfigError(f"ONNX model is larger than {MAX_ONNX_BYTES} bytes")
    try:
        proto = onnx.load_model_from_string(model)
    except Exception as exc:
        raise Hls4mlConfigError(f"model is not an ONNX file: {str(exc)[:200]}") from None
    if not proto.graph.node:
        raise Hls4mlConfigError("ONNX model has no nodes (is it an ONNX file?)")
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise Hls4mlConfigError(f"ONNX initializer {init.name!r} keeps its data in an external file; "
                                    "save the model with its weights inside")  # fmt: skip
    supported = set(hls4ml.converters.get_supported_onnx_layers()) | {"Dropout", "Identity"}
    for node in proto.graph.node:  # by the user's node names, before QONNX renames them
        if node.op_type not in supported | _FOLDED_BY_QONNX:
            raise Hls4mlConfigError(
                f"ONNX node {node.name or node.output[0]!r} is a {node.op_type}, which hls4ml does not convert"
            )
    proto = _qonnx_clean(proto)
    for node in proto.graph.node:
        if node.op_type not in supported:
            raise Hls4mlConfigError(f"ONNX node {node.name!r} (after QONNX cleanup) is a {node.op_type}, which "
                                    "hls4ml does not convert")  # fmt: skip
    model_cfg = cfg["HLSConfig"]["Model"]
    generated = _quiet(
        hls4ml.utils.config_from_onnx_model, proto, granularity="model", backend=cfg["Backend"],
        default_precision=_default_precision(model_cfg["Precision"]), default_reuse_factor=model_cfg["ReuseFactor"],
    )  # fmt: skip
    hls_config = _merge_config(generated, cfg)
    graph = _quiet(
        hls4ml.converters.convert_from_onnx_model, proto, hls_config=hls_config, backend=cfg["Backend"],
        io_type=cfg["IOType"], part=part or cfg["Part"], output_dir=_scratch_dir(),
    )  # fmt: skip
    return _design(graph, cfg, part or cfg["Part"])


def _qonnx_clean(proto: Any) -> Any:
    """The preprocessing hls4ml's ONNX reader expects (its docs and tests): QONNX cleanup (shape
    inference, constant folding), channels-last conversion, Gemm to MatMul, cleanup again."""
    try:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
        from qonnx.transformation.gemm_to_matmul import GemmToMatMul
        from qonnx.util.cleanup import cleanup_model
    except ImportError:
        raise Hls4mlConfigError(
            "reading ONNX models needs qonnx: pip install 'hwsurrogate[hls4ml]'"
        ) from None

    def run() -> Any:
        wrapped = cleanup_model(ModelWrapper(proto))
        wrapped = wrapped.transform(ConvertToChannelsLastAndClean())
        wrapped = cleanup_model(wrapped.transform(GemmToMatMul()))
        return wrapped.model

    try:
        return _quiet(run)
    except Hls4mlConfigError as exc:
        raise Hls4mlConfigError(f"the ONNX model could not be prepared for hls4ml (QONNX cleanup): "
                                f"{str(exc).split(': ', 1)[-1][:300]}") from None  # fmt: skip


def pytorch_design(
    module: Any, input_shape: tuple[int, ...] | list[tuple[int, ...]], config: dict[str, Any] | None = None,
    *, part: str | None = None,
) -> Hls4mlDesign:  # fmt: skip
    """Convert a ``torch.nn.Module`` (``input_shape`` without the batch) with hls4ml; read its layer list."""
    import torch

    hls4ml = _require_hls4ml()
    if not isinstance(module, torch.nn.Module):
        raise Hls4mlConfigError(f"the PyTorch model must be a torch.nn.Module, got {type(module).__name__}")
    cfg = read_hls4ml_config(config) if not isinstance(config, dict) or "_prefix" not in config else config
    model_cfg = cfg["HLSConfig"]["Model"]
    generated = _quiet(
        hls4ml.utils.config_from_pytorch_model, module, input_shape, granularity="model", backend=cfg["Backend"],
        default_precision=_default_precision(model_cfg["Precision"]), default_reuse_factor=model_cfg["ReuseFactor"],
    )  # fmt: skip
    hls_config = _merge_config(generated, cfg)
    graph = _quiet(
        hls4ml.converters.convert_from_pytorch_model, module, hls_config=hls_config, backend=cfg["Backend"],
        io_type=cfg["IOType"], part=part or cfg["Part"], output_dir=_scratch_dir(),
    )  # fmt: skip
    return _design(graph, cfg, part or cfg["Part"])


def _scratch_dir() -> str:
    """hls4ml wants an output directory even though nothing is written before ``write()``."""
    import tempfile

    return str(Path(tempfile.gettempdir()) / "hwsurrogate-hls4ml-unused")


def _default_precision(spec: object) -> str:
    if isinstance(spec, dict):
        spec = spec.get("default") or next(iter(spec.values()))
    return str(spec)


# --------------------------------------------------------------------------- graph -> layer list
def valid_reuse_factors(n_in: int, n_out: int) -> list[int]:
    """The reuse factors hls4ml accepts for an ``n_in`` x ``n_out`` multiplication.

    The rule of hls4ml's ``FPGABackend._validate_reuse_factor`` (1.3), computed over the
    divisors of ``n_in * n_out`` instead of every integer up to it (a test checks the two agree).
    """
    total = n_in * n_out
    divisors = sorted({d for i in range(1, math.isqrt(total) + 1) if total % i == 0 for d in (i, total // i)})
    out = []
    for rf in divisors:
        mult_limit = math.ceil(total / min(n_in, rf))
        ok = (mult_limit % n_out == 0 or rf >= n_in) and (rf % n_in == 0 or rf < n_in)
        if ok:
            out.append(rf)
    return out


def _shape(var: Any) -> list[int]:
    return [int(d) for d in var.shape] if var is not None else []


def _prec(layer: Any) -> tuple[str | None, int | None, int | None]:
    t = layer.types.get("weight_t") if hasattr(layer, "types") else None
    if t is None:
        return None, None, None
    text = str(t.precision)
    fp = fixed_point.parse_precision(text)
    if fp is None:
        return text, None, None
    return str(fp), fp.width, fp.integer


def _requested_rf(layer: Any, cfg: dict[str, Any]) -> tuple[int, str]:
    """The reuse factor the user asked for this layer and the config field it came from."""
    hls, prefix = cfg["HLSConfig"], cfg["_prefix"]
    if "ReuseFactor" in hls["LayerName"].get(layer.name, {}):
        return hls["LayerName"][layer.name]["ReuseFactor"], f"{prefix}LayerName.{layer.name}.ReuseFactor"
    for key in (layer.class_name, type(layer).__name__.removeprefix("Vivado").removeprefix("Vitis")):
        if "ReuseFactor" in hls["LayerType"].get(key, {}):
            return hls["LayerType"][key]["ReuseFactor"], f"{prefix}LayerType.{key}.ReuseFactor"
    return hls["Model"]["ReuseFactor"], f"{prefix}Model.ReuseFactor"


_PLUMBING = {"Transpose", "Clone"}
_ACTIVATIONS = {"Activation", "ParametrizedActivation", "Softmax", "HardActivation", "LeakyReLU", "ThresholdedReLU",
                "ELU", "PReLU", "TernaryTanh"}  # fmt: skip


def _design(graph: Any, cfg: dict[str, Any], part: str) -> Hls4mlDesign:
    _check_layer_names(graph, cfg)
    layers: list[dict[str, Any]] = []
    notes: list[str] = []
    pending_pad = False
    next_in: list[int] | None = None
    for layer in graph.get_layers():
        cls = layer.class_name
        d_in = _shape(layer.get_input_variable()) if layer.inputs else []
        d_out = _shape(layer.get_output_variable())
        if next_in is not None and cls not in _PLUMBING:
            d_in, next_in = next_in, None
        rf_attr = layer.get_attr("reuse_factor")
        node: dict[str, Any] = {"name": layer.name}
        if cls == "Input":
            node.update(class_name="InputLayer", d_in=d_out, d_out=d_out)
        elif cls in _PLUMBING:
            notes.append(f"{layer.name}: hls4ml's {cls} folded (plumbing, not in Keras-style layer lists)")
            if cls == "Transpose" and layers and layers[-1]["class_name"] == "InputLayer":
                layers[-1]["d_in"] = layers[-1]["d_out"] = d_out  # the input, channels last
            elif cls == "Transpose":
                next_in = d_in  # PyTorch's channels-first flatten: the next layer reads channels last
            continue
        elif cls.startswith("ZeroPadding"):
            pending_pad = True
            if layers:
                layers[-1]["_next_in"] = d_in
            continue
        elif cls == "Dense":
            n_in, n_out = int(layer.get_attr("n_in")), int(layer.get_attr("n_out"))
            node.update(class_name="Dense", d_in=d_in, d_out=d_out, neurons=n_out,
                        use_bias=_has_bias(layer))  # fmt: skip
            node["parameters"] = _n_params(layer)
            _check_compute_rf(layer, cfg, n_in, n_out)
        elif cls in ("Conv1D", "Conv2D", "PointwiseConv1D", "PointwiseConv2D"):
            cls = cls.removeprefix("Pointwise")  # hls4ml's own implementation of a 1x1 convolution
            width = [int(layer.get_attr("filt_width"))]
            if cls == "Conv2D":
                width = [int(layer.get_attr("filt_height")), *width]
            n_chan, n_filt = int(layer.get_attr("n_chan")), int(layer.get_attr("n_filt"))
            strides = [int(layer.get_attr("stride_width"))]
            if cls == "Conv2D":
                strides = [int(layer.get_attr("stride_height")), *strides]
            pads = [layer.get_attr(k) or 0 for k in ("pad_left", "pad_right", "pad_top", "pad_bottom")]
            if pending_pad and layers and "_next_in" in layers[-1]:
                d_in = layers[-1].pop("_next_in")
            node.update(class_name=cls, d_in=d_in, d_out=d_out, filters=n_filt, channels=n_chan, kernel_size=width,
                        strides=strides, padding="same" if pending_pad or any(pads) else "valid",
                        use_bias=_has_bias(layer))  # fmt: skip
            node["parameters"] = _n_params(layer)
            _check_compute_rf(layer, cfg, n_chan * math.prod(width), n_filt)
        elif cls in _ACTIVATIONS:
            act = str(layer.get_attr("activation") or cls).lower()
            node.update(class_name="Activation", activation=act, d_in=d_in, d_out=d_out)
        elif cls in ("Pooling1D", "Pooling2D", "GlobalPooling1D", "GlobalPooling2D"):
            op = str(layer.get_attr("pool_op") or "Max")
            kind = cls.removeprefix("Global").removesuffix("D")  # Pooling1 / Pooling2
            node.update(
                class_name=f"{'Global' if cls.startswith('Global') else ''}{op}{kind}D",
                d_in=d_in,
                d_out=d_out,
            )
            if not cls.startswith("Global"):
                size = [int(layer.get_attr("pool_width"))]
                if cls == "Pooling2D":
                    size = [int(layer.get_attr("pool_height")), *size]
                node["pool_size"] = size
        elif cls == "Reshape":
            node.update(class_name="Flatten" if len(d_out) == 1 else "Reshape", d_in=d_in, d_out=d_out)
        elif cls == "Merge":
            op = str(layer.get_attr("op") or "add").capitalize()
            ins = [_shape(v) for v in (layer.get_input_variable(n) for n in layer.inputs)]
            node.update(class_name=op if op in HLS4ML_LAYER_CLASSES else "Merge", d_in=ins[0], d_out=d_out,
                        d_in_all=ins)  # fmt: skip
        elif cls == "Concatenate":
            ins = [_shape(v) for v in (layer.get_input_variable(n) for n in layer.inputs)]
            node.update(class_name="Concatenate", d_in=ins[0], d_out=d_out, d_in_all=ins)
        elif cls == "ApplyAlpha" and layers and layers[-1]["class_name"] in ("Dense", "Conv1D", "Conv2D"):
            # hls4ml's ONNX reader turns MatMul + Add into Dense + ApplyAlpha (the bias): fold it back
            prev = layers[-1]
            prev["use_bias"] = True
            prev["parameters"] += int(math.prod(d_out[-1:]) if d_out else 0)
            notes.append(f"{layer.name}: hls4ml's ApplyAlpha (a bias) folded into {prev['name']}")
            continue
        elif cls in ("BatchNormalization", "ApplyAlpha"):
            node.update(class_name=cls, d_in=d_in, d_out=d_out)
            node["parameters"] = _n_params(layer)
        else:
            raise Hls4mlConfigError(
                f"layer {layer.name!r} is an hls4ml {cls}, which the fpga-hls4ml surrogate does not model; it "
                "models Dense, Conv1D/2D, activations, pooling, Flatten/Reshape, Add/Concatenate, BatchNormalization"
            )
        pending_pad = False
        if "parameters" not in node:
            node["parameters"] = 0
        if isinstance(rf_attr, int):
            node["reuse_factor"] = rf_attr
        if node["class_name"] in ("Dense", "Conv1D", "Conv2D"):
            text, bits, ibits = _prec(layer)
            if text is not None:
                node["weight_precision"] = text
            if bits is not None:
                node["weight_bits"], node["weight_int_bits"] = bits, ibits
        layers.append(node)
    for node in layers:
        node.pop("_next_in", None)
    model = cfg["HLSConfig"]["Model"]
    return Hls4mlDesign(
        layers=layers, reuse_factor=model["ReuseFactor"], precision=_default_precision(model["Precision"]),
        strategy=model["Strategy"].lower(), io_type=cfg["IOType"], part=part, notes=notes,
    )  # fmt: skip


def _n_params(layer: Any) -> int:
    """Trainable parameters as Keras counts them: weights, plus the bias when the layer has one."""
    n = 0
    for key, w in layer.weights.items():
        if w.data is not None and (key != "bias" or _has_bias(layer)):
            n += int(w.data.size)
    return n


def _has_bias(layer: Any) -> bool:
    """``use_bias`` where hls4ml records it; else whether the bias it made is not all zeros (its
    PyTorch convolution handlers fill a missing bias with zeros and record nothing)."""
    flag = layer.get_attr("use_bias")
    if flag is not None:
        return bool(flag)
    bias = layer.weights.get("bias")
    return bias is not None and bias.data is not None and bool((bias.data != 0).any())


def _check_compute_rf(layer: Any, cfg: dict[str, Any], n_in: int, n_out: int) -> None:
    rf, path = _requested_rf(layer, cfg)
    valid = valid_reuse_factors(n_in, n_out)
    if rf not in valid:
        shown = ", ".join(map(str, valid[:40])) + (", ..." if len(valid) > 40 else "")
        raise _fail(path, f"is {rf}, which is not a valid reuse factor of layer {layer.name!r} "
                    f"({layer.class_name}, {n_in} x {n_out} multiplications; it must divide {n_in * n_out}); "
                    f"valid: {shown}")  # fmt: skip
