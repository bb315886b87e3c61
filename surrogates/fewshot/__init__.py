"""Few-shot latency prediction on an unseen device: meta-trained prior + closed-form adaptation.

The problem: a new phone/board/GPU, a handful of measured architectures (HELP's 10 reference
architectures plus a few more), and a latency prediction for every architecture of a NAS space.

**Model** (a hierarchical Bayesian linear model; one per NAS space). An architecture ``a`` is
described by a feature vector ``f(a) = [z(a), x(a)]``:

- ``z(a)``: its standardized log-latencies on the *source* devices (every architecture of a
  space's table was measured on every source device; NASFLAT/MultiPredict-style). For an
  architecture outside the table (a user model), ``z`` comes from a ridge encoder
  ``x -> z`` fitted on the table.
- ``x(a)``: the standardized architecture vector of :func:`~hwsurrogate.surrogates.features.nas.arch_vectors` (op one-hots,
  op counts, live-path features, MAC proxies).
- ``e(a)`` (``FewShotConfig.gnn``, default NB201 and FBNet): the embedding of the GNN encoder
  of :mod:`.meta_gnn`, meta-trained on the source devices; it adds feature columns and two
  models (a ridge and a source-prior model on ``e`` alone) to the model average below.

A device's latency is linear in a transform of it, ``g(y) = mu + s * f(a) . w``, for ``g`` in
``log`` (multiplicative op costs), ``sqrt`` and ``ms`` (latency = sum of the ops' latencies).
Meta-training learns, per transform, the prior ``w ~ N(m, S + tau I)`` from the source
devices: each source device's ``w_d`` is fitted on its full table with its own columns of ``z``
masked, ``m``/``S`` are their mean/covariance; ``tau`` and the noise variance are chosen by
leave-one-source-device-out few-shot validation. Adapting to a new device is the closed-form
posterior mean given its k measurements (a ridge solve: milliseconds), with ``tau``/noise
picked by the support set's marginal likelihood, averaged with prior-free ridges on the
architecture features, and the transforms' heads averaged by their marginal likelihoods made
comparable by each transform's Jacobian (Bayesian model averaging). With ``prior="mixture"``
the prior is a mixture of Gaussians centred on the individual source devices, weighted by how
well each explains the support set (the posterior starts from the most similar known devices).

Honesty rules used by the benchmarks: a target device's latencies are only read at the support
architectures; the 10 reference architectures count as measurements.

The adaptation path imports numpy and polars only (no torch, no MLflow) so that ``hws adapt``
finishes in well under 2 s; features of the table architectures are stored in the model file.

Modules (this package re-exports their public names):

- :mod:`.config`: :class:`FewShotConfig`, constants, :class:`FewShotError`, :class:`NotMetaTrainedError`
- :mod:`.posterior`: the closed-form linear algebra: :class:`DeviceHead`, :func:`posterior_head`,
  :func:`predict_head`, the latency transforms
- :mod:`.space`: :class:`SpaceModel` (one space's prior and feature table) and feature encoding
- :mod:`.meta_train`: meta-training one space (:func:`fit_space`), :func:`latency_matrix`, the GNN cache
- :mod:`.regressor`: :class:`FewShotLatencyRegressor` (fit, adapt, predict, save/load)
- :mod:`.measurements`: the one measurement reader and checker (latency and GEMM tasks)
- :mod:`.protocol`: HELP's evaluation protocol, :func:`score_predictions`, device splits
- :mod:`.meta_gnn`: the meta-trained GNN encoder (imports torch; not re-exported)
- :mod:`.gemm`: few-shot adaptation of the GEMM surrogate (not re-exported)
"""

from __future__ import annotations

from hwsurrogate.surrogates.fewshot.config import (
    EXTRAPOLATION_FACTOR,
    FEWSHOT_SPACES,
    MAX_PAIR_FEATURES,
    MODEL_NAME,
    PHYSICAL_SPACES,
    SOURCE_BLOCKS,
    TRANSFORMS,
    FewShotConfig,
    FewShotError,
    NotMetaTrainedError,
    PriorKind,
)
from hwsurrogate.surrogates.fewshot.measurements import (
    MEASUREMENT_COLUMNS,
    check_device_name,
    check_measurements,
    read_measurements,
)
from hwsurrogate.surrogates.fewshot.meta_train import (
    fit_space,
    latency_matrix,
    meta_train_gnn,
    reference_rows,
)
from hwsurrogate.surrogates.fewshot.posterior import (
    DeviceHead,
    forward_transform,
    log_jacobian,
    posterior_head,
    predict_head,
    ridge_masked,
)
from hwsurrogate.surrogates.fewshot.protocol import (
    DeviceSplit,
    default_splits_path,
    evaluate_help_protocol,
    help_protocol_rows,
    qualify_device,
    read_splits,
    score_predictions,
    spearman,
)
from hwsurrogate.surrogates.fewshot.regressor import FewShotLatencyRegressor
from hwsurrogate.surrogates.fewshot.space import (
    SpaceModel,
    pair_products,
    physical_vectors,
    source_blocks,
    source_table_ms,
    standardize,
    with_interactions,
)

__all__ = [
    "EXTRAPOLATION_FACTOR",
    "FEWSHOT_SPACES",
    "MAX_PAIR_FEATURES",
    "MEASUREMENT_COLUMNS",
    "MODEL_NAME",
    "PHYSICAL_SPACES",
    "SOURCE_BLOCKS",
    "TRANSFORMS",
    "DeviceHead",
    "DeviceSplit",
    "FewShotConfig",
    "FewShotError",
    "FewShotLatencyRegressor",
    "NotMetaTrainedError",
    "PriorKind",
    "SpaceModel",
    "check_device_name",
    "check_measurements",
    "default_splits_path",
    "evaluate_help_protocol",
    "fit_space",
    "forward_transform",
    "help_protocol_rows",
    "latency_matrix",
    "log_jacobian",
    "meta_train_gnn",
    "pair_products",
    "physical_vectors",
    "posterior_head",
    "predict_head",
    "qualify_device",
    "read_measurements",
    "read_splits",
    "reference_rows",
    "ridge_masked",
    "score_predictions",
    "source_blocks",
    "source_table_ms",
    "spearman",
    "standardize",
    "with_interactions",
]
