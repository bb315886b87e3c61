"""A meta-trained GNN architecture encoder conditioned on a device embedding (few-shot latency).

:class:`MetaGNN` learns an architecture embedding ``e(a)`` (a :class:`~.gnn.LatencyGNN` over the
graphs of :mod:`.graphs` whose output layer has ``embed_dim`` channels) such that, on every
*source* device, a device's standardized log-latency is linear in ``e(a)`` and the linear head is
found from a handful of measurements:

- **Device embedding** (HELP's hardware embedding): the device's log-latencies of the 10 HELP
  reference architectures, standardized over those 10, go through an MLP to the prior mean
  ``v0_d`` of the device's head (a learned global vector when the references are unknown).
- **Inner loop** (closed form, differentiable; MetaOptNet/R2-D2 style instead of MAML's
  gradient steps): given ``k`` support architectures, the head is the posterior mean of
  ``v ~ N(v0_d, I / lambda)`` under Gaussian noise, ``v = v0 + Ec^T (Ec Ec^T + lambda I)^-1
  (yc - Ec v0)`` on centred support embeddings ``Ec`` and latencies ``yc``; ``lambda`` is learned.
- **Outer loop**: each step samples a few source devices, a support set (the references plus
  random architectures, as in HELP's protocol) and a query batch, and minimises the query MSE
  (plus, optionally, a pairwise logistic ranking loss) through the inner solve.

Adapting to a new device only needs ``e(a)`` of the table architectures (precomputed) and an
``n x n`` solve: no torch at adaptation time. :mod:`.fewshot` uses the embedding two ways
(``FewShotConfig.gnn``): as extra architecture feature columns of its Bayesian linear model
(whose source-device prior then covers their weights), and as a prior-free ridge component of
its Bayesian model averaging. :meth:`MetaGNN.adapt` / :meth:`MetaGNN.predict` are the
stand-alone HELP-style predictor (device-embedding prior + closed-form inner step).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hwsurrogate.surrogates.features import nas as graphs
from hwsurrogate.surrogates.models.latency_gnn import LatencyGNN, pairwise_rank_loss

__all__ = ["INNER_LOOPS", "MetaGNN", "MetaGNNConfig"]

INNER_LOOPS: tuple[str, ...] = ("ridge", "metasgd", "none")


@dataclass(frozen=True)
class MetaGNNConfig:
    """Hyperparameters of :class:`MetaGNN` (saved with the model)."""

    embed_dim: int = 16  # arch embedding size (= extra feature columns in the Bayesian model)
    hidden_channels: int = 32  # GIN width
    num_layers: int = 2  # message-passing layers
    device_hidden: int = 32  # width of the device-embedding MLP
    steps: int = 400  # outer (meta) steps
    devices_per_step: int = 4  # source devices per meta-batch
    query_per_step: int = 192  # query architectures per device and step
    support: int = 20  # support architectures per episode (references included)
    # inner adaptation of the head: "ridge" (closed form), "metasgd" (inner_steps gradient steps
    # with learned per-dimension step sizes: HELP's MAML/Meta-SGD recipe, on the head), "none" (v0)
    inner: str = "ridge"
    inner_steps: int = 5  # gradient steps of the "metasgd" inner loop
    use_references: bool = True  # device embedding from the reference latencies (else a global v0)
    rank_loss_weight: float = 0.0  # weight of the pairwise logistic ranking loss on the query
    lr: float = 3e-3
    weight_decay: float = 1e-5
    ensemble: int = 1  # independently seeded encoders; their embeddings are concatenated
    seed: int = 0
    num_threads: int = 1  # torch intra-op threads during meta-training
    max_seconds: float | None = None  # wall-clock cap on meta-training (per ensemble member)

    def __post_init__(self) -> None:
        if self.inner not in INNER_LOOPS:
            raise ValueError(f"MetaGNNConfig.inner: {self.inner!r} is not one of {list(INNER_LOOPS)}")
        for name in ("embed_dim", "hidden_channels", "num_layers", "steps", "devices_per_step",
                     "query_per_step", "support", "ensemble"):  # fmt: skip
            if int(getattr(self, name)) < 1:
                raise ValueError(f"MetaGNNConfig.{name} must be >= 1, got {getattr(self, name)}")


class _Member(nn.Module):
    """One encoder + device-embedding MLP + learned inner-loop ridge."""

    def __init__(self, in_channels: int, n_refs: int, cfg: MetaGNNConfig) -> None:
        super().__init__()
        self.encoder = LatencyGNN(in_channels, cfg.hidden_channels, cfg.num_layers, cfg.embed_dim)
        self.n_refs = n_refs
        self.device_net = nn.Sequential(
            nn.Linear(max(n_refs, 1), cfg.device_hidden),
            nn.ReLU(),
            nn.Linear(cfg.device_hidden, cfg.embed_dim),
        )
        self.v_global = nn.Parameter(torch.zeros(cfg.embed_dim))
        self.log_lambda = nn.Parameter(torch.tensor(0.0))
        self.log_lr = nn.Parameter(torch.full((cfg.embed_dim,), -1.0))  # Meta-SGD step sizes

    def embed(self, x_nodes: Tensor, edge_index: Tensor) -> Tensor:
        x, ei, batch = graphs.collate_fixed(x_nodes, edge_index)
        return self.encoder(x, ei, batch, x_nodes.size(0))

    def prior_mean(self, ref_z: Tensor | None) -> Tensor:
        """(D, E) prior head means from (D, n_refs) reference log-latencies (None: global)."""
        if ref_z is None or self.n_refs == 0:
            return self.v_global[None, :]
        r = (ref_z - ref_z.mean(dim=1, keepdim=True)) / ref_z.std(dim=1, keepdim=True).clamp_min(1e-6)
        return self.v_global[None, :] + self.device_net(r)


def _inner_sgd(E_s: Tensor, y_s: Tensor, v0: Tensor, lr: Tensor, steps: int) -> tuple[Tensor, Tensor, Tensor]:
    """Meta-SGD: ``steps`` gradient steps on the support MSE from ``v0`` (differentiable)."""
    e_mean = E_s.mean(dim=0)
    y_mean = y_s.mean()
    Ec = E_s - e_mean
    yc = y_s - y_mean
    v = v0
    for _ in range(steps):
        v = v - lr * (2.0 / len(yc)) * (Ec.T @ (Ec @ v - yc))
    return v, e_mean, y_mean


def _inner_ridge(E_s: Tensor, y_s: Tensor, v0: Tensor, lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Posterior mean head ``v`` (E,), support mean embedding and latency (closed form)."""
    e_mean = E_s.mean(dim=0)
    y_mean = y_s.mean()
    Ec = E_s - e_mean
    yc = y_s - y_mean
    K = Ec @ Ec.T + lam * torch.eye(len(y_s), dtype=E_s.dtype)
    alpha = torch.linalg.solve(K, yc - Ec @ v0)
    return v0 + Ec.T @ alpha, e_mean, y_mean


class MetaGNN:
    """Meta-train the device-conditioned GNN on source devices; embed, adapt, predict.

    ``fit(space, arch_keys, z, ref_rows)``: ``z`` is ``(n_archs, n_devices)`` standardized
    log-latency of the source devices (NaN = unmeasured), ``ref_rows`` the table rows of the
    reference architectures (empty: no device-embedding MLP). Learned state ends in ``_``.
    """

    def __init__(self, config: MetaGNNConfig | None = None) -> None:
        self.config = config or MetaGNNConfig()

    # ------------------------------------------------------------------ meta-training
    def fit(
        self,
        space: str,
        arch_keys: Sequence[str],
        z: np.ndarray,
        ref_rows: Sequence[int] = (),
        *,
        init: MetaGNN | None = None,
    ) -> MetaGNN:
        """Meta-train; ``init`` (cross-space transfer): start every parameter whose name and shape
        match from that meta-trained model (e.g. an NB201 encoder's message-passing layers for
        FBNet; the node-feature input layer differs between spaces and starts fresh)."""
        cfg = self.config
        self.space_ = graphs.check_space(space)
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[0] != len(arch_keys):
            raise ValueError(f"z must have shape (n_archs={len(arch_keys)}, n_devices), got {z.shape}")
        if z.shape[1] < 1:
            raise ValueError("MetaGNN needs at least one source device")
        if len(arch_keys) < cfg.support + 2:
            raise ValueError(f"MetaGNN needs more than {cfg.support + 1} architectures, got {len(arch_keys)}")
        refs = np.asarray(ref_rows, dtype=np.int64) if cfg.use_references else np.zeros(0, dtype=np.int64)
        if len(refs) and (refs.min() < 0 or refs.max() >= len(arch_keys)):
            raise ValueError("ref_rows must be table rows of the architectures")
        if len(refs) and not np.isfinite(z[refs]).all():
            refs = np.zeros(0, dtype=np.int64)  # a source device lacks a reference: no embedding MLP
        self.n_refs_ = len(refs)
        spec = graphs.graph_spec(space)
        X = torch.from_numpy(graphs.node_features(space, arch_keys))
        prev = torch.get_num_threads()
        torch.set_num_threads(max(1, min(cfg.num_threads, 2)))
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            self.members_ = [
                self._fit_member(
                    X, spec.edge_index, z, refs, cfg.seed + 1000 * m,
                    init.members_[m % len(init.members_)] if init is not None else None,
                )
                for m in range(cfg.ensemble)
            ]  # fmt: skip
        finally:
            torch.set_num_threads(prev)
        self.transferred_from_ = init.space_ if init is not None else None
        self.fit_seconds_ = time.perf_counter() - t0
        self.fit_cpu_seconds_ = time.process_time() - c0
        return self

    def _fit_member(
        self, X: Tensor, edge_index: Tensor, z: np.ndarray, refs: np.ndarray, seed: int, init: _Member | None
    ) -> _Member:
        cfg = self.config
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        n, n_dev = z.shape
        member = _Member(X.size(-1), len(refs), cfg)
        if init is not None:
            own = member.state_dict()
            shared = {k: v for k, v in init.state_dict().items() if k in own and own[k].shape == v.shape}
            member.load_state_dict(shared, strict=False)
        opt = torch.optim.AdamW(member.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps, eta_min=cfg.lr * 0.05)
        zt = torch.from_numpy(np.nan_to_num(z)).float()
        observed = np.isfinite(z)
        non_ref = np.setdiff1d(np.arange(n), refs)
        n_rand = max(cfg.support - len(refs), 1)
        t0 = time.perf_counter()
        member.train()
        for _ in range(cfg.steps):
            devs = rng.choice(n_dev, size=min(cfg.devices_per_step, n_dev), replace=False)
            loss = torch.zeros(())
            for d in devs:
                obs = non_ref[observed[non_ref, d]]
                pick = rng.choice(obs, size=min(n_rand + cfg.query_per_step, len(obs)), replace=False)
                sup = np.r_[refs, pick[:n_rand]]
                qry = pick[n_rand:]
                rows = torch.from_numpy(np.r_[sup, qry])
                E = member.embed(X[rows], edge_index)
                y = zt[rows, int(d)]
                ref_z = zt[torch.from_numpy(refs), int(d)][None, :] if len(refs) else None
                v0 = member.prior_mean(ref_z)[0]
                E_s, y_s, E_q, y_q = E[: len(sup)], y[: len(sup)], E[len(sup) :], y[len(sup) :]
                if cfg.inner == "ridge":
                    v, e_mean, y_mean = _inner_ridge(E_s, y_s, v0, member.log_lambda.exp())
                elif cfg.inner == "metasgd":
                    v, e_mean, y_mean = _inner_sgd(E_s, y_s, v0, member.log_lr.exp(), cfg.inner_steps)
                else:
                    v, e_mean, y_mean = v0, E_s.mean(dim=0), y_s.mean()
                pred = y_mean + (E_q - e_mean) @ v
                dl = ((pred - y_q) ** 2).mean()
                if cfg.rank_loss_weight > 0:
                    m = torch.ones(len(y_q), 1, dtype=torch.bool)
                    dl = dl + cfg.rank_loss_weight * pairwise_rank_loss(pred[:, None], y_q[:, None], m)
                loss = loss + dl / len(devs)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if cfg.max_seconds is not None and time.perf_counter() - t0 > cfg.max_seconds:
                break
        member.eval()
        return member

    # ------------------------------------------------------------------ inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "members_"):
            raise RuntimeError("MetaGNN is not meta-trained; call fit() or from_arrays() first")

    @torch.no_grad()
    def embed(self, arch_keys: Sequence[str]) -> np.ndarray:
        """``(n_archs, embed_dim * ensemble)`` arch embeddings (float64)."""
        self._check_fitted()
        spec = graphs.graph_spec(self.space_)
        X = torch.from_numpy(graphs.node_features(self.space_, arch_keys))
        prev = torch.get_num_threads()
        torch.set_num_threads(max(1, min(self.config.num_threads, 2)))
        try:
            out = [
                torch.cat([m.embed(X[i : i + 4096], spec.edge_index) for i in range(0, max(len(X), 1), 4096)])
                if len(X)
                else torch.zeros(0, self.config.embed_dim)
                for m in self.members_
            ]
        finally:
            torch.set_num_threads(prev)
        return torch.cat(out, dim=1).double().numpy()

    @torch.no_grad()
    def device_prior(self, ref_log_latency: np.ndarray | None) -> np.ndarray:
        """Prior head means (concatenated over members) from the 10 reference log-latencies."""
        self._check_fitted()
        rz = None
        if ref_log_latency is not None and self.n_refs_:
            r = np.asarray(ref_log_latency, dtype=np.float64)
            if r.shape != (self.n_refs_,) or not np.isfinite(r).all():
                raise ValueError(f"ref_log_latency must be {self.n_refs_} finite values, got shape {r.shape}")
            rz = torch.from_numpy(r).float()[None, :]
        return np.concatenate([m.prior_mean(rz)[0].double().numpy() for m in self.members_])

    def adapt(
        self, E_support: np.ndarray, log_y: np.ndarray, ref_log_latency: np.ndarray | None = None
    ) -> dict[str, Any]:
        """Stand-alone head of a new device (numpy closed form); members' predictions are averaged.

        ``log_y`` are log-latencies (ms) of the support rows ``E_support`` of :meth:`embed`.
        """
        self._check_fitted()
        log_y = np.asarray(log_y, dtype=np.float64)
        mu, sd = float(log_y.mean()), float(log_y.std()) or 1.0
        y = (log_y - mu) / sd
        v0_all = self.device_prior(ref_log_latency)
        k = self.config.embed_dim
        heads = []
        for i, m in enumerate(self.members_):
            Es = E_support[:, i * k : (i + 1) * k]
            v0 = v0_all[i * k : (i + 1) * k]
            lam = float(m.log_lambda.detach().exp())
            e_mean = Es.mean(axis=0)
            Ec = Es - e_mean
            if self.config.inner == "ridge":
                alpha = np.linalg.solve(Ec @ Ec.T + lam * np.eye(len(y)), y - y.mean() - Ec @ v0)
                v = v0 + Ec.T @ alpha
            elif self.config.inner == "metasgd":
                lr = np.exp(m.log_lr.detach().double().numpy())
                v = v0.copy()
                for _ in range(self.config.inner_steps):
                    v = v - lr * (2.0 / len(y)) * (Ec.T @ (Ec @ v - (y - y.mean())))
            else:
                v = v0
            heads.append((v, e_mean, float(y.mean())))
        return {"heads": heads, "mu": mu, "sd": sd}

    def predict(self, head: dict[str, Any], E: np.ndarray) -> np.ndarray:
        """log-latency (ms) predictions of an :meth:`adapt` head for embedding rows ``E``."""
        k = self.config.embed_dim
        out = np.zeros(len(E))
        for i, (v, e_mean, y_mean) in enumerate(head["heads"]):
            out += y_mean + (E[:, i * k : (i + 1) * k] - e_mean) @ v
        return head["mu"] + head["sd"] * out / len(head["heads"])

    # ------------------------------------------------------------------ persistence
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(named float arrays of every member's parameters, JSON metadata) for ``np.savez``."""
        self._check_fitted()
        arrays = {
            f"m{i}.{name}": t.detach().cpu().numpy().copy()
            for i, m in enumerate(self.members_)
            for name, t in m.state_dict().items()
        }
        meta = {"config": asdict(self.config), "space": self.space_, "n_refs": self.n_refs_}
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> MetaGNN:
        raw = dict(meta["config"])
        model = cls(MetaGNNConfig(**raw))
        model.space_ = graphs.check_space(meta["space"])
        model.n_refs_ = int(meta["n_refs"])
        spec = graphs.graph_spec(model.space_)
        model.members_ = []
        for i in range(model.config.ensemble):
            m = _Member(spec.num_node_features, model.n_refs_, model.config)
            prefix = f"m{i}."
            state = {
                k[len(prefix) :]: torch.from_numpy(np.array(v))
                for k, v in arrays.items()
                if k.startswith(prefix)
            }
            m.load_state_dict(state)
            m.eval()
            model.members_.append(m)
        return model
