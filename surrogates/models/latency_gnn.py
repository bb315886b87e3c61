"""A torch-geometric GNN that predicts the latency of an architecture on many devices at once.

:class:`LatencyGNN` encodes an architecture graph from :mod:`.graphs` (same topology within a
space) with residual GIN layers that pass messages both along and against the DAG edges, pools
sum and mean over nodes and ends in one output per device (a per-device head sharing one
encoder). :class:`MultiDeviceLatencyGNN` is the estimator around it: ``fit`` takes arch keys and
a ``(n_archs, n_devices)`` latency matrix (NaN where a device lacks a measurement), trains on
standardised log latency with a held-out validation split and early stopping, and ``predict``
returns milliseconds. Hyperparameters live in :class:`GNNConfig`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.nn import GINConv, global_add_pool, global_mean_pool

from hwsurrogate.surrogates.features import nas as graphs

__all__ = ["GNNConfig", "LatencyGNN", "MultiDeviceLatencyGNN", "pairwise_rank_loss"]


@dataclass(frozen=True)
class GNNConfig:
    hidden_channels: int = 64  # width of every GIN layer
    num_layers: int = 3  # message-passing layers
    epochs: int = 300  # upper bound; early stopping usually ends sooner
    batch_size: int = 128  # graphs per step (CPU-friendly)
    lr: float = 3e-3
    weight_decay: float = 1e-5
    patience: int = 40  # epochs without validation improvement before stopping
    val_fraction: float = 0.1  # of the training archs, held out for early stopping
    rank_loss_weight: float = 0.0  # weight of a pairwise logistic ranking loss (Spearman-aware)
    dropout: float = 0.0
    seed: int = 0
    num_threads: int = 1  # torch intra-op threads (<= 2; 1 is fastest on the shared, oversubscribed CPU)
    max_seconds: float | None = None  # wall-clock cap on training, None = no cap


class LatencyGNN(nn.Module):
    """Residual bidirectional GIN encoder + sum/mean pooling + linear heads.

    Args:
        in_channels: node features (``graphs.graph_spec(space).num_node_features``).
        hidden_channels: width of every layer.
        num_layers: message-passing layers.
        out_channels: outputs per graph (one per device).
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        num_layers: int,
        out_channels: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if min(in_channels, hidden_channels, num_layers, out_channels) < 1:
            raise ValueError(
                f"LatencyGNN sizes must be >= 1; got in={in_channels}, hidden={hidden_channels}, "
                f"layers={num_layers}, out={out_channels}"
            )
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.out_channels = out_channels
        self.dropout = dropout
        self.embed = nn.Linear(in_channels, hidden_channels)

        def mlp() -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(hidden_channels, hidden_channels),
                nn.ReLU(),
                nn.Linear(hidden_channels, hidden_channels),
            )

        self.fwd = nn.ModuleList(GINConv(mlp(), train_eps=True) for _ in range(num_layers))
        self.bwd = nn.ModuleList(GINConv(mlp(), train_eps=True) for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_channels) for _ in range(num_layers))
        self.head = nn.Sequential(
            nn.Linear(2 * hidden_channels, hidden_channels),
            nn.ReLU(),
            nn.Linear(hidden_channels, out_channels),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int | None = None) -> Tensor:
        if x.size(-1) != self.in_channels:
            raise ValueError(f"expected {self.in_channels} node features, got {x.size(-1)}")
        h = self.embed(x)
        rev = edge_index.flip(0)
        for fwd, bwd, norm in zip(self.fwd, self.bwd, self.norms, strict=True):
            z = fwd(h, edge_index) + bwd(h, rev)
            z = nn.functional.dropout(torch.relu(z), p=self.dropout, training=self.training)
            h = norm(h + z)
        pooled = torch.cat(
            [global_add_pool(h, batch, num_graphs), global_mean_pool(h, batch, num_graphs)], dim=1
        )
        return self.head(pooled)


def pairwise_rank_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean logistic loss over ordered pairs within each device column of the batch."""
    dp = pred[:, None, :] - pred[None, :, :]
    dt = target[:, None, :] - target[None, :, :]
    m = mask[:, None, :] & mask[None, :, :] & (dt.abs() > 1e-6)
    if not m.any():
        return pred.new_zeros(())
    return nn.functional.softplus(-torch.sign(dt) * dp)[m].mean()


class MultiDeviceLatencyGNN:
    """Train one :class:`LatencyGNN` with a head per device; predict latency in ms.

    ``fit(arch_keys, latency_ms)`` where ``latency_ms`` is ``(n_archs, n_devices)`` (NaN =
    unmeasured). Learned state ends in ``_``: ``model_``, ``mean_``, ``std_``,
    ``history_`` (per-epoch train/val loss), ``best_epoch_``, ``fit_seconds_``.
    """

    def __init__(self, space: str, devices: Sequence[str], config: GNNConfig | None = None) -> None:
        self.space = graphs.check_space(space)
        self.devices = list(devices)
        self.config = config or GNNConfig()

    # ------------------------------------------------------------------ helpers
    def _tensors(self, arch_keys: Sequence[str]) -> Tensor:
        return torch.from_numpy(graphs.node_features(self.space, arch_keys))

    def _forward(self, x_nodes: Tensor) -> Tensor:
        x, ei, batch = graphs.collate_fixed(x_nodes, self.edge_index_)
        return self.model_(x, ei, batch, x_nodes.size(0))

    def fit(self, arch_keys: Sequence[str], latency_ms: np.ndarray) -> MultiDeviceLatencyGNN:
        cfg = self.config
        y = np.asarray(latency_ms, dtype=np.float64)
        if y.ndim == 1:
            y = y[:, None]
        if y.shape != (len(arch_keys), len(self.devices)):
            raise ValueError(
                f"latency_ms must have shape (n_archs={len(arch_keys)}, n_devices={len(self.devices)}), got {y.shape}"
            )
        if len(arch_keys) < 4:
            raise ValueError(f"need at least 4 architectures to train a GNN, got {len(arch_keys)}")
        bad = np.isfinite(y) & (y <= 0)
        if bad.any():
            raise ValueError(f"latency_ms must be > 0; {int(bad.sum())} values are <= 0")
        observed = np.isfinite(y)
        empty = [d for d, n in zip(self.devices, observed.sum(axis=0), strict=True) if n == 0]
        if empty:
            raise ValueError(f"device(s) {empty} have no finite latency")
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        prev_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, min(cfg.num_threads, 2)))
        try:
            return self._fit(arch_keys, y, observed, rng)
        finally:
            torch.set_num_threads(prev_threads)

    def _fit(
        self, arch_keys: Sequence[str], y: np.ndarray, observed: np.ndarray, rng: np.random.Generator
    ) -> MultiDeviceLatencyGNN:
        cfg = self.config
        t0 = time.perf_counter()
        logy = np.where(observed, np.log(np.where(observed, y, 1.0)), np.nan)
        self.mean_ = np.nanmean(logy, axis=0)
        std = np.nanstd(logy, axis=0)
        self.std_ = np.where(std > 1e-12, std, 1.0)
        z = torch.from_numpy(np.nan_to_num((logy - self.mean_) / self.std_)).float()
        mask = torch.from_numpy(observed)
        X = self._tensors(arch_keys)
        spec = graphs.graph_spec(self.space)
        self.edge_index_ = spec.edge_index
        self.model_ = LatencyGNN(
            spec.num_node_features, cfg.hidden_channels, cfg.num_layers, len(self.devices), cfg.dropout
        )
        n = X.size(0)
        perm = rng.permutation(n)
        n_val = int(round(cfg.val_fraction * n)) if n >= 20 else 0
        val_idx, tr_idx = torch.from_numpy(perm[:n_val]), torch.from_numpy(perm[n_val:])
        opt = torch.optim.AdamW(self.model_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.lr * 0.02)
        best, best_state, best_epoch, waited = float("inf"), None, 0, 0
        self.history_: list[tuple[float, float]] = []
        for epoch in range(cfg.epochs):
            self.model_.train()
            order = tr_idx[torch.randperm(len(tr_idx))]
            total = 0.0
            for start in range(0, len(order), cfg.batch_size):
                b = order[start : start + cfg.batch_size]
                pred = self._forward(X[b])
                m = mask[b]
                loss = ((pred - z[b]) ** 2)[m].mean()
                if cfg.rank_loss_weight > 0:
                    loss = loss + cfg.rank_loss_weight * pairwise_rank_loss(pred, z[b], m)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b)
            sched.step()
            val = self._loss(X[val_idx], z[val_idx], mask[val_idx]) if n_val else total / max(len(tr_idx), 1)
            self.history_.append((total / max(len(tr_idx), 1), val))
            if val < best - 1e-6:
                best, best_state, best_epoch, waited = val, copy.deepcopy(self.model_.state_dict()), epoch, 0
            else:
                waited += 1
            if waited >= cfg.patience:
                break
            if cfg.max_seconds is not None and time.perf_counter() - t0 > cfg.max_seconds:
                break
        if best_state is not None:
            self.model_.load_state_dict(best_state)
        self.model_.eval()
        self.best_epoch_ = best_epoch
        self.best_val_loss_ = best
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    @torch.no_grad()
    def _loss(self, X: Tensor, z: Tensor, mask: Tensor) -> float:
        self.model_.eval()
        out = torch.cat([self._forward(X[i : i + 1024]) for i in range(0, X.size(0), 1024)])
        self.model_.train()
        return float(((out - z) ** 2)[mask].mean())

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

    @torch.no_grad()
    def predict_all(self, arch_keys: Sequence[str]) -> np.ndarray:
        """``(n_archs, n_devices)`` latency in ms for every device."""
        self._check_fitted()
        self.model_.eval()
        X = self._tensors(arch_keys)
        if X.size(0) == 0:
            return np.zeros((0, len(self.devices)))
        out = torch.cat([self._forward(X[i : i + 2048]) for i in range(0, X.size(0), 2048)]).double().numpy()
        return np.exp(out * self.std_ + self.mean_)

    def predict(self, arch_keys: Sequence[str], device_ids: Sequence[str]) -> np.ndarray:
        """Latency in ms of ``arch_keys[i]`` on ``device_ids[i]``."""
        self._check_fitted()
        col = {d: i for i, d in enumerate(self.devices)}
        unknown = sorted({d for d in device_ids if d not in col})
        if unknown:
            raise ValueError(f"unknown device_id {unknown[0]!r} for space {self.space!r}")
        all_dev = self.predict_all(arch_keys)
        return all_dev[np.arange(len(arch_keys)), [col[d] for d in device_ids]]

    def params(self) -> dict[str, object]:
        return {"space": self.space, "n_devices": len(self.devices), **asdict(self.config)}
