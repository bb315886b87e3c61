"""Request and response shapes of the HTTP API, one family per concept.

Every field carries its limits (dims > 0 and bounded, finite floats, ``Literal`` choices) so a
bad query is refused with a 422 naming the field before any model runs. Requests forbid unknown
fields (a typo is an error, not a silently ignored option). No field ever carries code or pickles:
FPGA models are JSON layer lists, uploads are JSON rows or parquet read by polars.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hwsurrogate.datasets.schemas import DEVICE_ID_PATTERN, GEMM_DTYPES, GEMM_OPS, MAX_DIM

#: Most queries one predict call may carry (413 above it).
MAX_PREDICT_QUERIES = 10_000
#: Largest GEMM dimension accepted: ``datasets.schemas.MAX_DIM`` (2**24, far beyond any measured
#: shape), the same cap every stored integer has.
MAX_BATCH = 1 << 16

DeviceId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=DEVICE_ID_PATTERN,  # the same grammar the store checks
        description="source-qualified device id, e.g. 'gpperf/rtx4070', 'help/pixel2', 'local/myhost-cpu'",
        examples=["gpperf/rtx4070"],
    ),
]
Dim = Annotated[int, Field(gt=0, le=MAX_DIM)]
GemmOp = Literal[tuple(sorted(GEMM_OPS))]  # type: ignore[valid-type]
GemmDtype = Literal[tuple(sorted(GEMM_DTYPES))]  # type: ignore[valid-type]
GemmLayout = Literal["nn", "nt", "tn", "tt"]
Space = Literal["nb201", "fbnet", "ofa"]


class Request(BaseModel):
    """Base of every request body: unknown fields and NaN/inf are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ModelRef(BaseModel):
    """Which registered model answered."""

    name: str = Field(description="registered MLflow model name, e.g. 'hws-gemm'")
    version: str = Field(description="registry version served")


# ---------------------------------------------------------------------------------------- GEMM
class GemmQuery(Request):
    device: DeviceId
    op: GemmOp = "gemm"
    m: Dim
    n: Dim
    k: Dim
    batch: Annotated[int, Field(gt=0, le=MAX_BATCH)] = 1
    dtype: GemmDtype = "fp32"
    layout: GemmLayout | None = None


class GemmQueryBatch(Request):
    queries: list[GemmQuery] = Field(min_length=1, description=f"at most {MAX_PREDICT_QUERIES} queries")
    strict: bool = Field(
        default=False,
        description="refuse (422) queries outside the model's training domain instead of answering them "
        "with in_domain false and a warning",
    )


class GemmPrediction(BaseModel):
    runtime_ms: float | None
    power_w: float | None
    energy_j: float | None


#: the training-domain fields every prediction response carries (one definition)
InDomain = Annotated[
    bool | None,
    Field(
        description="every query inside the model's training domain (true), some outside (false, see "
        "out_of_domain and warnings), or unknown: a model saved before domains were recorded (null)"
    ),
]
OutOfDomain = Annotated[
    list[int], Field(default_factory=list, description="indices of the queries outside it")
]


class GemmPredictionBatch(BaseModel):
    model: ModelRef
    predictor: Literal["served", "adapted", "mixed"] = Field(
        description="'served': the registered GEMM model; 'adapted': its correction for a device adapted "
        "with `hws adapt --task gemm`; 'mixed': a batch with devices of both kinds"
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="e.g. queries outside the training domain, a device adapted on another model version",
    )
    in_domain: InDomain = None
    out_of_domain: OutOfDomain
    count: int
    predictions: list[GemmPrediction]


# ------------------------------------------------------------------------------------- latency
class ArchQuery(Request):
    """One architecture: its canonical ``arch_key`` or its index in the space's list."""

    arch_key: str | None = Field(default=None, min_length=1, max_length=512)
    arch_index: int | None = Field(default=None, ge=0, le=10_000_000)

    @model_validator(mode="after")
    def _one_of(self) -> ArchQuery:
        if (self.arch_key is None) == (self.arch_index is None):
            raise ValueError("give exactly one of arch_key or arch_index")
        return self


class LatencyQueryBatch(Request):
    device: DeviceId
    space: Space
    archs: list[ArchQuery] = Field(min_length=1, description=f"at most {MAX_PREDICT_QUERIES} architectures")
    strict: bool = Field(
        default=False,
        description="refuse (422) queries outside the model's training domain instead of answering them "
        "with in_domain false and a warning",
    )


class LatencyPrediction(BaseModel):
    arch_key: str
    latency_ms: float | None


class LatencyPredictionBatch(BaseModel):
    device: str
    space: str
    predictor: Literal["served", "adapted"] = Field(
        description="'served': the registered latency model; 'adapted': a few-shot adapted device"
    )
    model: ModelRef
    warnings: list[str] = Field(default_factory=list, description="e.g. queries outside the training domain")
    in_domain: InDomain = None
    out_of_domain: OutOfDomain
    count: int
    predictions: list[LatencyPrediction]


# ---------------------------------------------------------------------------------------- FPGA
Precision = Annotated[
    str,
    Field(
        pattern=r"^(ap_)?u?(fixed|int)<\s*\d{1,2}\s*(,\s*-?\d{1,2}\s*)?>$",
        max_length=32,
        examples=["ap_fixed<16,6>"],
    ),
]
Part = Annotated[
    str,
    Field(
        pattern=r"^(?i:x[acq][a-z0-9]*)(-[A-Za-z0-9]+){0,4}$",
        min_length=6,
        max_length=40,
        description="AMD/Xilinx part number, e.g. 'xcu250-figd2104-2L-e' or 'xc7z020clg400-1'",
        examples=["xcu250-figd2104-2L-e"],
    ),
]
Shape = Annotated[list[Annotated[int, Field(gt=0, le=1 << 20)]], Field(min_length=1, max_length=4)]
SmallInt = Annotated[int, Field(gt=0, le=1 << 20)]


class LayerSpec(Request):
    """One layer of an hls4ml model, in the layer-list format of the ``fpga`` table's ``model`` column."""

    class_name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$", examples=["Dense"])
    name: str | None = Field(default=None, max_length=128)
    d_in: Shape | None = None
    d_out: Shape | None = None
    neurons: SmallInt | None = None
    filters: SmallInt | None = None
    channels: SmallInt | None = None
    kernel_size: SmallInt | list[SmallInt] | None = None
    strides: SmallInt | list[SmallInt] | None = None
    pool_size: SmallInt | list[SmallInt] | None = None
    padding: Literal["same", "valid"] | None = None
    activation: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
    use_bias: bool | None = None
    dropout_rate: float | None = Field(default=None, ge=0, lt=1)
    parameters: int | None = Field(default=None, ge=0, le=1 << 34)
    reuse_factor: SmallInt | None = None
    weight_precision: str | None = Field(default=None, max_length=32)
    weight_bits: int | None = Field(default=None, gt=0, le=64)
    weight_int_bits: int | None = Field(default=None, ge=-64, le=64)


class Hls4mlConfig(Request):
    precision: Precision = "ap_fixed<16,6>"
    reuse_factor: Annotated[int, Field(gt=0, le=1 << 16)] = 1
    strategy: Literal["latency", "resource"] = "latency"
    io_type: Literal["io_parallel", "io_stream"] = "io_parallel"
    part: Part = "xcu250-figd2104-2L-e"


class Hls4mlDesign(Request):
    type: Literal["hls4ml"] = "hls4ml"
    layers: list[LayerSpec] = Field(min_length=1, max_length=256)
    config: Hls4mlConfig = Field(default_factory=Hls4mlConfig)


PragmaValue = Annotated[int, Field(ge=0, le=1 << 20)] | Annotated[str, Field(max_length=32)]


class HlsDesign(Request):
    """An HLS kernel with its pragma settings (HLSyn/HARP style placeholders)."""

    type: Literal["hls"] = "hls"
    kernel: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$", examples=["gemm-blocked"])
    pragmas: dict[
        Annotated[str, Field(pattern=r"^__[A-Z]+__[A-Za-z0-9_]{1,60}$")],
        PragmaValue,
    ] = Field(default_factory=dict, max_length=256, examples=[{"__PARA__L0": 4, "__PIPE__L1": "flatten"}])
    tool: Literal["merlin", "vitis_hls", "vivado_hls"] = "merlin"


FpgaDesign = Annotated[Hls4mlDesign | HlsDesign, Field(discriminator="type")]


class FpgaQueryBatch(Request):
    designs: list[FpgaDesign] = Field(min_length=1, max_length=MAX_PREDICT_QUERIES)
    strict: bool = Field(
        default=False,
        description="refuse (422) queries outside the model's training domain instead of answering them "
        "with in_domain false and a warning",
    )


class Hls4mlOnnxQuery(Request):
    """An ONNX model and its hls4ml configuration, converted by hls4ml (no code runs: protobuf only)."""

    onnx_base64: str = Field(
        min_length=8,
        max_length=8 * 1024 * 1024,
        description="the .onnx file, base64-encoded (weights inside the file; external data is refused)",
    )
    hls4ml_config: dict[str, Any] | Annotated[str, Field(max_length=1 << 20)] | None = Field(
        default=None,
        description="hls4ml's configuration: its YAML text or the same as an object (IOType, Part, HLSConfig: "
        "{Model, LayerType, LayerName}, or just the HLSConfig part); default ap_fixed<16,6>, reuse factor 1, "
        "Latency, io_parallel",
    )
    part: Part | None = Field(default=None, description="overrides the configuration's Part")
    strict: bool = Field(default=False, description="refuse (422) a model outside the training domain")


class FpgaPrediction(BaseModel):
    type: Literal["hls4ml", "hls"]
    stage: str = Field(description="what the numbers mean: 'hls_estimate' or 'post_synth' (see docs)")
    model: ModelRef
    lut: float | None = None
    ff: float | None = None
    dsp: float | None = None
    bram: float | None = None
    cycles: float | None = None
    ii: float | None = None
    valid_prob: float | None = None


class Hls4mlOnnxPrediction(BaseModel):
    layers: list[dict[str, Any]] = Field(description="the layer list hls4ml produced (the surrogate's input)")
    reuse_factor: int
    precision: str
    strategy: str
    io_type: str
    part: str
    warnings: list[str] = Field(default_factory=list)
    in_domain: InDomain = None
    prediction: FpgaPrediction


class FpgaPredictionBatch(BaseModel):
    warnings: list[str] = Field(default_factory=list, description="e.g. queries outside the training domain")
    in_domain: InDomain = None
    out_of_domain: OutOfDomain
    count: int
    predictions: list[FpgaPrediction]


# ------------------------------------------------------------------------------------- devices
LatencyMs = Annotated[float, Field(gt=0, le=1e7)]


class DeviceMeasurement(Request):
    """One measured architecture latency on the new device."""

    space: Space
    arch_key: str | None = Field(default=None, min_length=1, max_length=512)
    arch_index: int | None = Field(default=None, ge=0, le=10_000_000)
    latency_ms: LatencyMs

    @model_validator(mode="after")
    def _one_of(self) -> DeviceMeasurement:
        if self.arch_key is None and self.arch_index is None:
            raise ValueError("give arch_key or arch_index")
        return self


class DeviceRegistration(Request):
    device_id: DeviceId
    fingerprint: dict[Space, dict[Annotated[str, Field(pattern=r"^\d{1,8}$")], LatencyMs]] | None = Field(
        default=None,
        description="{space: {arch_index: latency_ms}} of reference architectures (the devices table format)",
    )
    measurements: list[DeviceMeasurement] | None = Field(default=None, max_length=10_000)

    @model_validator(mode="after")
    def _something(self) -> DeviceRegistration:
        n = sum(len(t) for t in (self.fingerprint or {}).values()) + len(self.measurements or [])
        if n == 0:
            raise ValueError("give a fingerprint and/or measurements (at least one latency)")
        return self


class AdaptedDeviceInfo(BaseModel):
    device_id: str
    n_measurements: int
    spaces: list[str]
    created_at: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class DeviceRegistered(AdaptedDeviceInfo):
    adapt_seconds: float


class DeviceSummary(BaseModel):
    device_id: str
    kind: str | None = None
    name: str | None = None
    tables: dict[str, int] = Field(description="rows per table kind holding this device")
    adapted: bool
    tasks: dict[str, str] = Field(
        default_factory=dict,
        description="the prediction tasks that can answer this device and how: 'served' (the champion "
        "was trained on it) or 'adapted' (a few-shot adaptation); empty: no model predicts it yet",
    )


class DeviceList(BaseModel):
    count: int
    devices: list[DeviceSummary]


class DeviceDetail(DeviceSummary):
    descriptors: dict[str, Any] | None = None
    adaptation: AdaptedDeviceInfo | None = None


# ------------------------------------------------------------------------------------ datasets
class ColumnSpec(BaseModel):
    name: str
    dtype: str
    nullable: bool
    min: float | None
    max: float | None
    gt: float | None
    allowed: list[str] | None
    max_len: int | None = None
    pattern: str | None = None
    doc: str


class DatasetSummary(BaseModel):
    kind: str
    rows: int
    sources: dict[str, int]
    n_devices: int | None = None


class DatasetList(BaseModel):
    datasets: list[DatasetSummary]


class DatasetDetail(DatasetSummary):
    columns: list[ColumnSpec]
    devices: list[str] | None = None


class RowsPage(BaseModel):
    kind: str
    total: int
    limit: int
    offset: int
    rows: list[dict[str, Any]]


class RowsUpload(Request):
    rows: list[dict[str, Any]] = Field(min_length=1, description="rows of the table; at most 50,000")


class UploadResult(BaseModel):
    kind: str
    source: str
    partition: str
    received: int
    added: int
    duplicates: int


# ------------------------------------------------------------------------------- health/models
class ServedModel(BaseModel):
    task: str
    name: str
    available: bool
    version: str | None = None
    stage: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    reason: str | None = None
    requests: int | None = Field(default=None, description="predict calls since start (batching on)")
    model_calls: int | None = Field(default=None, description="model invocations they were merged into")


class ModelList(BaseModel):
    models: list[ServedModel]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    uptime_s: float
    store: str
    models: dict[str, bool] = Field(
        description="per task, whether its model is loaded; models load at the first request that "
        "needs one (a prediction, GET /v1/models), so a fresh server shows false for every task"
    )
    writes_enabled: bool


# ----------------------------------------------------------------------- whole models (issue 14)
#: Most operator rows one /v1/predict/model table may carry (413 above it).
MAX_MODEL_OPS = 50_000
OpCount = Annotated[int, Field(ge=1, le=1 << 31)]


class OpRow(Request):
    """One operator call of an operator table (datasets/optable.py); shape columns by ``op_kind``."""

    name: str = Field(min_length=1, max_length=256)
    op_kind: Literal["linear", "bmm", "conv2d", "elementwise", "activation", "softmax", "layernorm", "embedding",
                     "reduction", "copy", "other"]  # fmt: skip
    op: str = Field(min_length=1, max_length=64)
    phase: Literal["forward", "backward"] = "forward"
    module: str | None = Field(default=None, max_length=256)
    dtype: Literal["fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8", "int32", "int64"] = "fp32"
    batch: OpCount | None = None
    m: OpCount | None = None
    n: OpCount | None = None
    k: OpCount | None = None
    rows: OpCount | None = None
    cols: OpCount | None = None
    inputs: OpCount | None = None
    in_channels: OpCount | None = None
    out_channels: OpCount | None = None
    kernel_size: OpCount | None = None
    input_size: OpCount | None = None
    stride: OpCount | None = None
    padding: Annotated[int, Field(ge=0, le=1 << 31)] | None = None
    flops: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    bytes: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    count: OpCount = 1


class ModelTableQuery(Request):
    """A whole model as an operator table, and the device and mode to predict it for."""

    device: DeviceId
    mode: Literal["inference", "training"] = "inference"
    ops: list[OpRow] = Field(min_length=1, description="the operator table, one row per operator call")
    per_op: bool = Field(default=False, description="also return the per-operator predictions")


class OpKindShare(BaseModel):
    ms: float
    share: float
    ops: float
    unmodeled_ms: float


class ModelLatencyPrediction(BaseModel):
    """Whole-model latency, its per-op-kind breakdown, and what could not be modeled."""

    device: str
    mode: str
    latency_ms: float
    unmodeled_share: float
    unmodeled_ops: list[str]
    breakdown: dict[str, OpKindShare]
    n_ops: int
    model: ModelRef | None = None
    per_op: list[dict[str, Any]] | None = None
