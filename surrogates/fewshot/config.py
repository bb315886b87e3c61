"""Few-shot latency model: configuration (:class:`FewShotConfig`), constants and errors.

Imports nothing heavy (no numpy), so command-line option defaults can read it for free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from hwsurrogate.errors import HwSurrogateError

MODEL_NAME = "hws-fewshot-latency"
#: predictions stay within this factor of the measured support range (guards wild extrapolation
#: to architectures far outside the support, e.g. disconnected NB201 cells)
EXTRAPOLATION_FACTOR = 4.0
FEWSHOT_SPACES: tuple[str, ...] = ("nb201", "fbnet", "ofa")
PriorKind = Literal["gaussian", "mixture", "both"]
#: most op-at-position pair features FewShotConfig.edge_pairs may add (NB201 has 375)
MAX_PAIR_FEATURES = 2000
#: latency transforms a device head can be linear in (see FewShotConfig.transforms)
TRANSFORMS: tuple[str, ...] = ("log", "sqrt", "ms")
#: source-latency feature blocks: the transforms, or "table" (each source device's additive
#: per-position cost table fitted on its whole table, i.e. its latencies denoised to a lookup table)
SOURCE_BLOCKS: tuple[str, ...] = (*TRANSFORMS, "table")
#: spaces with physical per-layer cost features (FewShotConfig.physical_features)
PHYSICAL_SPACES: tuple[str, ...] = ("fbnet",)


class FewShotError(HwSurrogateError, ValueError):
    """Bad measurements or device name for few-shot adaptation (names the field)."""


class NotMetaTrainedError(HwSurrogateError, LookupError):
    """No meta-trained few-shot model is available (run ``hws train fewshot``)."""


@dataclass(frozen=True)
class FewShotConfig:
    """Hyperparameters of :class:`FewShotLatencyRegressor` (saved with the model)."""

    use_device_latencies: bool = True  # z(a): source-device log-latencies as arch features
    use_arch_features: bool = True  # x(a): features.nas.arch_vectors as arch features
    # gaussian prior (mean/covariance of the source devices' weights), a mixture centred on the
    # individual source devices, or both averaged by marginal likelihood; gaussian won on the
    # validation devices (HELP meta-valid + leave-one-out mobile meta-train devices, NB201 and FBNet)
    prior: PriorKind = "gaussian"
    prior_ridge: float = 1.0  # ridge of each source device's full-table fit (prior estimation)
    tau_grid: tuple[float, ...] = (0.0003, 0.001, 0.003, 0.01, 0.03)  # isotropic prior variance added to S
    noise_grid: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)  # noise variance (standardized log units)
    encoder_ridge: float = 1.0  # ridge of the x -> z encoder for archs outside the table
    meta_k: int = 20  # support size of the meta-validation episodes
    meta_draws: int = 3  # support draws per pseudo-target device
    meta_query: int = 1000  # query archs per meta-validation episode
    # pairwise products of the first k principal components of [z, x], per space; k chosen on
    # HELP's meta-valid devices (NB201: 4 helps, FBNet: none does)
    interaction_pcs: tuple[tuple[str, int], ...] = (("nb201", 4),)
    # at adaptation, tau is picked by marginal likelihood among meta-tau x these factors and the
    # noise among evidence_noises (empty factors: use the meta-selected tau/noise as they are)
    evidence_tau_factors: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
    evidence_noises: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.4)
    flat_component: bool = True  # Bayesian model averaging with a prior-free ridge on x
    compact_component: bool = True  # ... and with a ridge on the compact (count/MAC) arch features
    # ... and with a ridge on the op counts alone: in an NB201 cell an op costs the same on every
    # edge, so latency ~ sum of per-op costs (a 5-weight model that 10-20 measurements pin down)
    count_component: bool = True
    flat_taus: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    # output transforms of the latency the linear model is fitted in ("log": multiplicative
    # op costs; "ms": latency = sum of op latencies, exact for sequential execution; "sqrt":
    # in between). Each has its own source-device prior; a device's heads are combined by
    # Bayesian model averaging with Jacobian-corrected marginal likelihoods (on ms).
    transforms: tuple[str, ...] = ("log", "sqrt", "ms")
    # the source-device latencies enter the arch features as these transforms (one block of
    # n_src standardized columns each): "ms" lets an additive device be a sum of source latencies
    source_transforms: tuple[str, ...] = ("log",)
    # spaces whose features include the products of the per-position op one-hots of two
    # different positions (NB201: op-at-edge pairs; lets an additive-in-ms model price op
    # combinations, e.g. cache effects on a Raspberry Pi); their weights come from the source prior
    edge_pairs: tuple[str, ...] = ()
    min_measurements: int = 5  # fewest measurements per space accepted by adapt
    random_state: int = 0
    # spaces whose arch features include the meta-trained GNN embedding of .meta_gnn
    # (a GIN encoder meta-trained on the source devices through a closed-form per-device head;
    # see docs/fewshot.md). Chosen on the validation devices (`hws bench fewshot-gnn`): NB201
    # 0.930 -> 0.933, FBNet 0.862 -> 0.876 with the settings below; OFA has not been validated.
    gnn: tuple[str, ...] = ("nb201", "fbnet")
    gnn_features: bool = True  # the embedding enters the source-prior Bayesian model as columns
    gnn_component: bool = True  # ... and a prior-free ridge on the embedding joins the model average
    # ... and a model on the embedding alone whose prior is fitted to the source devices' weights
    # on it (the stand-alone GNN head with a source-device Gaussian prior) joins the average
    gnn_prior_component: bool = True
    gnn_steps: int = 400  # meta-training steps of the encoder
    gnn_embed_dim: int = 16
    gnn_inner: str = "ridge"  # inner loop of meta-training: closed-form "ridge", "metasgd", "none" (v0)
    gnn_rank_loss: float = 0.0  # weight of the pairwise ranking loss in meta-training
    gnn_ensemble: int = 1  # independently seeded encoders (embeddings concatenated)
    # HELP's hardware embedding (the 10 reference latencies -> MLP) as the prior mean of a
    # device's head in meta-training; off: a learned global prior mean (measured better on the
    # validation devices: NB201 0.9327 vs 0.9323, FBNet 0.876 vs 0.875)
    gnn_use_references: bool = False
    # cross-space transfer: a space whose encoder (meta-trained earlier in the same fit, e.g.
    # "nb201") initializes the message-passing layers of the other spaces' encoders
    gnn_transfer_from: str = ""
    # a per-layer cost-table model: latency (in each transform) = sum over positions of the cost
    # of the op chosen there (the per-position op one-hots alone, e.g. FBNet's 22 x 9 table), with
    # a Gaussian prior fitted to the source devices' tables (mean + low-rank covariance of their
    # ridge fits, plus an evidence-selected diagonal among flat_taus) joins the model average
    table_component: tuple[str, ...] = ()
    # the prior's low-rank part is scaled by each of these (evidence-selected per device)
    table_cov_scales: tuple[float, ...] = (1.0,)
    # spaces whose features include physical per-layer cost terms summed over the layers (MACs of
    # the expand / depthwise / project convolutions, activation and parameter sizes, per-stage
    # conv counts; see physical_vectors): a basis for lookup-table devices beyond the sources' span
    physical_features: tuple[str, ...] = ()
    # spaces where a model on the "table" source block alone (the sources' denoised lookup-table
    # latencies as the only features, a Gaussian prior fitted to the source devices' weights on
    # them, each device's own column masked) joins the model average; needs "table" in
    # source_transforms (added automatically for these spaces)
    # (FBNet: HELP validation 0.8753 -> 0.8801; with no_flat 0.8830). Off by default: with the
    # NASFLAT task suite's source devices the pair collapses F3 0.911 -> 0.582 and FA 0.687 ->
    # 0.564 (rows "ablation: lookup-table span ..." of `hws bench fewshot-tasks`), so the HELP
    # validation gain does not carry to other source-device sets
    span_component: tuple[str, ...] = ()
    span_taus: tuple[float, ...] = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
    span_noises: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)
    # spaces where the prior-free ridges (flat, compact, op-count) stay out of the model average
    # even with flat_component on: on FBNet they took weight from better models on noisy phones
    no_flat: tuple[str, ...] = ()
    # how the model average weights its models: "evidence" (marginal likelihood of the support)
    # or "loo" (leave-one-out predictive log density of the support, closed form; Geisser's
    # pseudo-likelihood: rewards the model that predicts held-out support points, not the one
    # whose prior fits the support best)
    weighting: str = "evidence"

    def __post_init__(self) -> None:
        for name, allowed in (("transforms", TRANSFORMS), ("source_transforms", SOURCE_BLOCKS)):
            bad = [t for t in getattr(self, name) if t not in allowed]
            if bad:
                raise ValueError(f"FewShotConfig.{name}: {bad} not among {list(allowed)}")
        bad = [s for s in self.span_component if s not in FEWSHOT_SPACES]
        if bad:
            raise ValueError(f"FewShotConfig.span_component: {bad} not among {list(FEWSHOT_SPACES)}")
        bad = [s for s in self.physical_features if s not in PHYSICAL_SPACES]
        if bad:
            raise ValueError(f"FewShotConfig.physical_features: {bad} not among {list(PHYSICAL_SPACES)}")
        if self.weighting not in ("evidence", "loo"):
            raise ValueError(f"FewShotConfig.weighting: {self.weighting!r} is not evidence or loo")
        if self.prior not in ("gaussian", "mixture", "both"):
            raise ValueError(f"FewShotConfig.prior: {self.prior!r} is not gaussian, mixture or both")
        bad = [s for s in self.gnn if s not in FEWSHOT_SPACES]
        if bad:
            raise ValueError(f"FewShotConfig.gnn: {bad} not among {list(FEWSHOT_SPACES)}")
        for name in ("table_component", "no_flat"):
            bad = [s for s in getattr(self, name) if s not in FEWSHOT_SPACES]
            if bad:
                raise ValueError(f"FewShotConfig.{name}: {bad} not among {list(FEWSHOT_SPACES)}")
        if self.gnn_inner not in ("ridge", "metasgd", "none"):
            raise ValueError(f"FewShotConfig.gnn_inner: {self.gnn_inner!r} is not ridge, metasgd or none")
        if self.gnn_transfer_from not in ("", *FEWSHOT_SPACES):
            raise ValueError(
                f"FewShotConfig.gnn_transfer_from: {self.gnn_transfer_from!r} is not '' or one of {list(FEWSHOT_SPACES)}"
            )

    def gnn_config(self) -> Any:
        """The :class:`~.meta_gnn.MetaGNNConfig` of the ``gnn_*`` fields (imports torch)."""
        from hwsurrogate.surrogates.fewshot.meta_gnn import MetaGNNConfig

        return MetaGNNConfig(
            embed_dim=self.gnn_embed_dim,
            steps=self.gnn_steps,
            inner=self.gnn_inner,
            rank_loss_weight=self.gnn_rank_loss,
            ensemble=self.gnn_ensemble,
            use_references=self.gnn_use_references,
            seed=self.random_state,
        )
