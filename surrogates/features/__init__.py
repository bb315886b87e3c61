"""The one feature pipeline shared by training and serving, one module per domain.

Everything is vectorised polars/numpy: a frame of queries in, a frame of features out. Models
logged to MLflow call these functions inside ``predict``, so the service and the CLI never
compute features themselves.

- :mod:`.gemm`: GEMM roofline/wave features on the device descriptors;
- :mod:`.hls4ml`: hls4ml models as flat per-layer summaries;
- :mod:`.hlsyn`: HLSyn/HARP pragma vectors and kernel program-graph statistics;
- :mod:`.powergear`: PowerGear power features of HLS designs;
- :mod:`.ops`: roofline features of non-GEMM operator calls (import the sub-module);
- :mod:`.hls4ml_frontend`: a user's PyTorch/ONNX model and hls4ml config into the hls4ml layer list,
  through hls4ml's own front ends (optional extra ``hls4ml``; imported as a sub-module);
- :mod:`.nas` (architecture graphs and vectors of the NAS spaces) and :mod:`.program_graphs`
  (HLSyn program graphs) need torch, so they are imported as sub-modules, not re-exported here.
"""

from __future__ import annotations

from hwsurrogate.surrogates.features.gemm import (
    DEFAULT_LAYOUT,
    DEVICE_DESCRIPTORS,
    GEMM_DEVICE_FEATURES,
    GEMM_DTYPE_CODES,
    GEMM_DTYPE_SPECS,
    GEMM_FEATURE_VERSION,
    GEMM_LAYOUT_CODES,
    GEMM_MAX_ALIGN_BITS,
    GEMM_OP_CODES,
    GEMM_QUERY_COLUMNS,
    GEMM_SHAPE_FEATURES,
    GEMM_TILES,
    UnknownGemmDeviceError,
    alignment_bits,
    check_gemm_queries,
    device_table,
    gemm_feature_matrix,
    gemm_feature_names,
    gemm_features,
)
from hwsurrogate.surrogates.features.hls4ml import (
    HLS4ML_FEATURES,
    HLS4ML_QUERY_COLUMNS,
    hls4ml_features,
    parse_precision,
)
from hwsurrogate.surrogates.features.hlsyn import (
    GRAPH_OPCODES,
    HLSYN_AGG_FEATURES,
    HLSYN_N_POSITIONS,
    HLSYN_POS_FEATURES,
    HLSYN_QUERY_COLUMNS,
    TOOL_CODES,
    hlsyn_features,
    program_graph_stats,
)
from hwsurrogate.surrogates.features.powergear import (
    NEST_FULL_UNROLL_LOG2_SPEEDUP,
    NEST_PIPELINE_LOG2_SPEEDUP,
    POWERGEAR_ACTIVITY_FEATURES,
    POWERGEAR_FEATURES,
    POWERGEAR_HLS_FEATURES,
    POWERGEAR_ROUTE_FEATURES,
    powergear_features,
)

__all__ = [
    # gemm
    "DEFAULT_LAYOUT",
    "DEVICE_DESCRIPTORS",
    "GEMM_DEVICE_FEATURES",
    "GEMM_DTYPE_CODES",
    "GEMM_DTYPE_SPECS",
    "GEMM_FEATURE_VERSION",
    "GEMM_LAYOUT_CODES",
    "GEMM_MAX_ALIGN_BITS",
    "GEMM_OP_CODES",
    "GEMM_QUERY_COLUMNS",
    "GEMM_SHAPE_FEATURES",
    "GEMM_TILES",
    "UnknownGemmDeviceError",
    "alignment_bits",
    "check_gemm_queries",
    "device_table",
    "gemm_feature_matrix",
    "gemm_feature_names",
    "gemm_features",
    # hls4ml
    "HLS4ML_FEATURES",
    "HLS4ML_QUERY_COLUMNS",
    "hls4ml_features",
    "parse_precision",
    # hlsyn
    "GRAPH_OPCODES",
    "HLSYN_AGG_FEATURES",
    "HLSYN_N_POSITIONS",
    "HLSYN_POS_FEATURES",
    "HLSYN_QUERY_COLUMNS",
    "TOOL_CODES",
    "hlsyn_features",
    "program_graph_stats",
    # powergear
    "NEST_FULL_UNROLL_LOG2_SPEEDUP",
    "NEST_PIPELINE_LOG2_SPEEDUP",
    "POWERGEAR_ACTIVITY_FEATURES",
    "POWERGEAR_FEATURES",
    "POWERGEAR_HLS_FEATURES",
    "POWERGEAR_ROUTE_FEATURES",
    "powergear_features",
]
