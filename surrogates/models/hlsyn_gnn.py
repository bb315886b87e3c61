"""A torch-geometric GNN on HLSyn program graphs with the pragma values on the pragma nodes.

:class:`HlsynGNN`: node features of :mod:`.program_graphs` (+ an opcode embedding) -> residual
GINE layers over the ProGraML edges in both directions (edge attributes: flow one-hot and a
reversed flag) -> attention, sum and max pooling -> concatenated with the standardised analytical
loop-nest features (:data:`.program_graphs.LOOP_FEATURES`) -> MLP -> one output per target.

:class:`HlsynGNNRegressor` is the estimator: ``fit(queries, y)`` with ``queries`` holding
``kernel`` and ``pragmas`` and ``y`` HLSyn's normalised targets ``(perf, util_lut, util_ff,
util_dsp, util_bram)``. It trains on transformed targets (perf as a residual on
``-0.5 * log2(sequential loop iterations)``, utilisations as ``sqrt``; then z-scored), holds out
whole training kernels for early stopping (never rows of the same kernel), caps designs per
kernel so training fits the CPU budget, and ``predict`` returns the targets in HLSyn's space.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import Tensor, nn
from torch_geometric.nn import AttentionalAggregation, GINEConv, global_add_pool, global_max_pool

from hwsurrogate.surrogates.features.program_graphs import (
    LOOP_FEATURES,
    NODE_FEATURES,
    OP_VOCAB,
    KernelGraph,
    loop_features,
    node_features,
    pragma_values,
)

__all__ = ["HlsynGNNConfig", "HlsynGNN", "HlsynGNNRegressor"]

N_EDGE_ATTR = 5  # flow one-hot (4) + reversed flag


@dataclass(frozen=True)
class HlsynGNNConfig:
    hidden_channels: int = 48
    num_layers: int = 3
    op_embedding: int = 8
    epochs: int = 40  # upper bound; early stopping usually ends sooner
    batch_size: int = 64  # designs per step (CPU-friendly)
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 6
    val_fraction: float = 0.2  # of the training KERNELS, held out for early stopping
    max_designs_per_kernel: int = 150  # subsample (seeded) so an epoch stays cheap on 2 cores
    dropout: float = 0.1
    seed: int = 0
    num_threads: int = 1
    max_seconds: float | None = 200.0  # wall-clock cap on training (early stopping keeps the best)


class HlsynGNN(nn.Module):
    """Residual bidirectional GINE encoder + attention/sum/max pooling + loop features -> MLP."""

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        num_layers: int,
        out_channels: int,
        *,
        graph_features: int = 0,
        op_vocab: int = len(OP_VOCAB),
        op_embedding: int = 8,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.op_emb = nn.Embedding(op_vocab, op_embedding)
        self.inp = nn.Linear(in_channels + op_embedding, hidden_channels)
        self.convs = nn.ModuleList(
            GINEConv(
                nn.Sequential(
                    nn.Linear(hidden_channels, hidden_channels),
                    nn.ReLU(),
                    nn.Linear(hidden_channels, hidden_channels),
                ),
                edge_dim=N_EDGE_ATTR,
            )  # fmt: skip
            for _ in range(num_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_channels) for _ in range(num_layers))
        self.att = AttentionalAggregation(nn.Linear(hidden_channels, 1))
        self.head = nn.Sequential(
            nn.Linear(3 * hidden_channels + graph_features, 2 * hidden_channels),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(2 * hidden_channels, hidden_channels),
            nn.ReLU(),
            nn.Linear(hidden_channels, out_channels),
        )

    def reset_parameters(self) -> None:
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def forward(
        self, x: Tensor, op: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor,
        graph_x: Tensor | None, num_graphs: int,
    ) -> Tensor:  # fmt: skip
        h = torch.relu(self.inp(torch.cat([x, self.op_emb(op)], dim=1)))
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = h + torch.relu(norm(conv(h, edge_index, edge_attr)))
        pooled = [
            self.att(h, batch, dim_size=num_graphs),
            global_add_pool(h, batch, size=num_graphs) / 64.0,
            global_max_pool(h, batch, size=num_graphs),
        ]
        if graph_x is not None:
            pooled.append(graph_x)
        return self.head(torch.cat(pooled, dim=1))


@dataclass
class _KernelTensors:
    x: Tensor  # (n_designs, N, F)
    op: Tensor  # (N,)
    edge_index: Tensor  # (2, 2E) both directions
    edge_attr: Tensor  # (2E, 5)
    loops: Tensor  # (n_designs, len(LOOP_FEATURES)) standardised


def _bidirectional(kg: KernelGraph) -> tuple[Tensor, Tensor]:
    ei = torch.from_numpy(kg.edge_index)
    flow = torch.nn.functional.one_hot(torch.from_numpy(kg.edge_flow), 4).float()
    fwd = torch.cat([flow, torch.zeros(flow.shape[0], 1)], dim=1)
    rev = torch.cat([flow, torch.ones(flow.shape[0], 1)], dim=1)
    return torch.cat([ei, ei.flip(0)], dim=1), torch.cat([fwd, rev], dim=0)


def _collate(parts: list[tuple[_KernelTensors, np.ndarray]]) -> dict[str, Any]:
    """Concatenate design subsets of several kernels into one disjoint graph (no per-design loop)."""
    xs, ops, eis, eas, batches, loops = [], [], [], [], [], []
    node_off = graph_off = 0
    for kt, idx in parts:
        n, nn_ = len(idx), kt.x.shape[1]
        xs.append(kt.x[idx].reshape(n * nn_, -1))
        ops.append(kt.op.repeat(n))
        e = kt.edge_index.shape[1]
        eis.append(kt.edge_index.repeat(1, n) + (torch.arange(n) * nn_).repeat_interleave(e) + node_off)
        eas.append(kt.edge_attr.repeat(n, 1))
        batches.append(torch.arange(n).repeat_interleave(nn_) + graph_off)
        loops.append(kt.loops[idx])
        node_off += n * nn_
        graph_off += n
    return {
        "x": torch.cat(xs), "op": torch.cat(ops), "edge_index": torch.cat(eis, dim=1),
        "edge_attr": torch.cat(eas), "batch": torch.cat(batches), "graph_x": torch.cat(loops),
        "num_graphs": graph_off,
    }  # fmt: skip


def _masked_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over the known (non-NaN) targets."""
    ok = ~torch.isnan(target)
    return ((pred - torch.nan_to_num(target)) ** 2)[ok].sum() / ok.sum().clamp(min=1)


class HlsynGNNRegressor:
    """Fit/predict HLSyn's normalised targets from (kernel, pragmas) with :class:`HlsynGNN`.

    Parameters
    ----------
    graphs : dict
        kernel -> :class:`.program_graphs.KernelGraph` (from :func:`.program_graphs.kernel_graphs`).
    config : HlsynGNNConfig
    """

    targets: tuple[str, ...] = ("perf", "util_lut", "util_ff", "util_dsp", "util_bram")

    def __init__(self, graphs: dict[str, KernelGraph], config: HlsynGNNConfig | None = None) -> None:
        self.graphs = graphs
        self.config = config or HlsynGNNConfig()

    # ------------------------------------------------------------------ shared featurisation
    def _kernel_tensors(
        self, queries: pl.DataFrame
    ) -> list[tuple[str, np.ndarray, _KernelTensors, np.ndarray]]:
        """Per kernel: (kernel, row indices, tensors, raw loop features)."""
        for c in ("kernel", "pragmas"):
            if c not in queries.columns:
                raise ValueError(f"fpga-hlsyn queries miss column {c!r}")
        kernels = queries["kernel"].cast(pl.String)
        unknown = sorted(set(kernels.unique().to_list()) - set(self.graphs))
        if unknown:
            raise ValueError(
                f"fpga-hlsyn: column 'kernel' has value(s) {unknown[:5]} without a program graph; "
                f"known kernels: {sorted(self.graphs)[:10]}..."
            )
        groups = (
            pl.DataFrame({"kernel": kernels})
            .with_row_index("_r")
            .group_by("kernel", maintain_order=True)
            .agg("_r")
        )
        out = []
        pr = queries["pragmas"].cast(pl.String)
        for kernel, rows in groups.iter_rows():
            kg = self.graphs[kernel]
            r = np.asarray(rows, dtype=np.int64)
            values = pragma_values(kg, pr.gather(r))
            lf = loop_features(kg, values)
            ei, ea = _bidirectional(kg)
            kt = _KernelTensors(
                x=torch.from_numpy(node_features(kg, values)), op=torch.from_numpy(kg.op_index),
                edge_index=ei, edge_attr=ea, loops=torch.zeros(len(r), len(LOOP_FEATURES)),
            )  # fmt: skip
            out.append((kernel, r, kt, lf))
        return out

    def _perf_base(self, lf: np.ndarray) -> np.ndarray:
        return -0.5 * lf[:, LOOP_FEATURES.index("lp_log2_seq_iters")]

    def _encode_y(self, y: np.ndarray, base: np.ndarray) -> np.ndarray:
        z = y.copy()
        z[:, 0] = y[:, 0] - base
        z[:, 1:] = np.sqrt(np.clip(y[:, 1:], 0, None))
        return z

    def _decode_y(self, z: np.ndarray, base: np.ndarray) -> np.ndarray:
        y = z.copy()
        y[:, 0] = z[:, 0] + base
        y[:, 1:] = np.clip(z[:, 1:], 0, None) ** 2
        return y

    # ------------------------------------------------------------------ fit / predict
    def fit(self, queries: pl.DataFrame, y: np.ndarray | pl.DataFrame) -> HlsynGNNRegressor:
        cfg = self.config
        if isinstance(y, pl.DataFrame):
            missing = [t for t in self.targets if t not in y.columns]
            if missing:
                raise ValueError(f"fpga-hlsyn GNN: y misses target column(s) {missing}")
            y = y.select(self.targets).to_numpy()
        y = np.asarray(y, dtype=np.float64)
        if queries.height == 0:
            raise ValueError("fpga-hlsyn GNN: X must not be empty")
        if y.shape != (queries.height, len(self.targets)):
            raise ValueError(
                f"fpga-hlsyn GNN: y has shape {y.shape}; expected ({queries.height}, {len(self.targets)})"
            )
        if np.isinf(y).any():
            bad = int(np.isinf(y).any(axis=1).sum())
            raise ValueError(f"fpga-hlsyn GNN: y has {bad} rows with infinite targets")
        if np.isnan(y).all(axis=0).any():
            t = self.targets[int(np.flatnonzero(np.isnan(y).all(axis=0))[0])]
            raise ValueError(f"fpga-hlsyn GNN: target {t!r} is NaN in every row")
        # NaN = a missing target (e.g. FF absent from a report): masked out of the loss
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        prev_threads = torch.get_num_threads()
        torch.set_num_threads(cfg.num_threads)
        try:
            return self._fit(queries, y, rng)
        finally:
            torch.set_num_threads(prev_threads)

    def _fit(self, queries: pl.DataFrame, y: np.ndarray, rng: np.random.Generator) -> HlsynGNNRegressor:
        cfg = self.config
        t0 = time.perf_counter()
        parts = self._kernel_tensors(queries)
        # subsample designs per kernel (seeded) so one epoch stays cheap
        keep = []
        for kernel, r, kt, lf in parts:
            sel = np.sort(rng.permutation(len(r))[: cfg.max_designs_per_kernel])
            keep.append((kernel, r[sel], kt, lf, sel))
        lf_all = np.concatenate([k[3][k[4]] for k in keep])
        self.loop_mean_ = lf_all.mean(0)
        self.loop_std_ = lf_all.std(0) + 1e-6
        z_parts = []
        for _kernel, r, kt, lf, sel in keep:
            kt.x = kt.x[sel]
            kt.loops = torch.from_numpy(((lf[sel] - self.loop_mean_) / self.loop_std_).astype(np.float32))
            z_parts.append(self._encode_y(y[r], self._perf_base(lf[sel])))
        z_all = np.concatenate(z_parts)
        self.y_mean_ = np.nanmean(z_all, axis=0)
        self.y_std_ = np.nanstd(z_all, axis=0) + 1e-6
        kernels = [k[0] for k in keep]
        n_val = max(1, int(round(cfg.val_fraction * len(kernels)))) if len(kernels) > 1 else 0
        val_k = set(rng.permutation(kernels)[:n_val].tolist())
        data = [
            (k[2], torch.from_numpy(((z - self.y_mean_) / self.y_std_).astype(np.float32)), k[0] in val_k)
            for k, z in zip(keep, z_parts, strict=True)
        ]
        train = [(kt, zt) for kt, zt, v in data if not v]
        val = [(kt, zt) for kt, zt, v in data if v] or train
        self.val_kernels_ = sorted(val_k)
        model = HlsynGNN(
            len(NODE_FEATURES), cfg.hidden_channels, cfg.num_layers, len(self.targets),
            graph_features=len(LOOP_FEATURES), op_embedding=cfg.op_embedding, dropout=cfg.dropout,
        )  # fmt: skip
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        best, best_state, bad_epochs = float("inf"), copy.deepcopy(model.state_dict()), 0
        self.history_: list[dict[str, float]] = []
        index = [(i, j) for i, (kt, _) in enumerate(train) for j in range(kt.x.shape[0])]
        for epoch in range(cfg.epochs):
            model.train()
            perm = rng.permutation(len(index))
            total = 0.0
            for s in range(0, len(perm), cfg.batch_size):
                chunk = [index[p] for p in perm[s : s + cfg.batch_size]]
                by_k: dict[int, list[int]] = {}
                for i, j in chunk:
                    by_k.setdefault(i, []).append(j)
                sel = [(train[i][0], np.array(js)) for i, js in by_k.items()]
                target = torch.cat([train[i][1][np.array(js)] for i, js in by_k.items()])
                pred = model(**_collate(sel))
                loss = _masked_mse(pred, target)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(chunk)
            val_loss = self._loss(model, val)
            self.history_.append({"epoch": epoch, "train": total / len(index), "val": val_loss})
            if val_loss < best - 1e-4:
                best, best_state, bad_epochs = val_loss, copy.deepcopy(model.state_dict()), 0
            else:
                bad_epochs += 1
            if bad_epochs >= cfg.patience or (cfg.max_seconds and time.perf_counter() - t0 > cfg.max_seconds):
                break
        model.load_state_dict(best_state)
        model.eval()
        self.model_ = model
        self.best_val_loss_ = best
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    @torch.no_grad()
    def _loss(self, model: HlsynGNN, parts: list[tuple[_KernelTensors, Tensor]]) -> float:
        model.eval()
        se, n = 0.0, 0
        for kt, zt in parts:
            for s in range(0, kt.x.shape[0], 256):
                idx = np.arange(s, min(s + 256, kt.x.shape[0]))
                pred = model(**_collate([(kt, idx)]))
                ok = ~torch.isnan(zt[idx])
                se += float(((pred - torch.nan_to_num(zt[idx])) ** 2)[ok].sum())
                n += int(ok.sum())
        return se / max(n, 1)

    @torch.no_grad()
    def predict(self, queries: pl.DataFrame) -> np.ndarray:
        if not hasattr(self, "model_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("HlsynGNNRegressor is not fitted yet: call fit first")
        prev = torch.get_num_threads()
        torch.set_num_threads(self.config.num_threads)
        try:
            out = np.full((queries.height, len(self.targets)), np.nan)
            for _kernel, r, kt, lf in self._kernel_tensors(queries):
                kt.loops = torch.from_numpy(((lf - self.loop_mean_) / self.loop_std_).astype(np.float32))
                zs = []
                for s in range(0, len(r), 256):
                    idx = np.arange(s, min(s + 256, len(r)))
                    zs.append(self.model_(**_collate([(kt, idx)])).numpy())
                z = np.concatenate(zs).astype(np.float64) * self.y_std_ + self.y_mean_
                out[r] = self._decode_y(z, self._perf_base(lf))
            return out
        finally:
            torch.set_num_threads(prev)

    def get_config(self) -> dict[str, Any]:
        return asdict(self.config)
