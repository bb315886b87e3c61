"""HuggingFace-style ``config.json`` (BERT, GPT-2, OPT and alike) -> a compact transformer module.

The module is written here in plain torch (``transformers`` is not needed) with the operators
the HuggingFace implementations run, in the same order: embeddings (+ positions, + token types
for BERT), per layer Q/K/V projections, ``q @ k^T`` (bmm), scale, mask, softmax, dropout,
``p @ v`` (bmm), output projection, residual adds, layer norms (post-LN for BERT, pre-LN for GPT-2
and OPT), the MLP (linear, activation, linear), a final norm and the LM head. It is built on the
meta device and traced by :func:`~hwsurrogate.datasets.frontends.torch_fx.trace_module`, so a
48-layer model costs no memory.

Keys read (HuggingFace names; the first present wins): hidden ``hidden_size | n_embd | d_model``,
layers ``num_hidden_layers | n_layer | num_layers``, heads ``num_attention_heads | n_head``,
MLP width ``intermediate_size | ffn_dim | n_inner`` (default 4 x hidden), ``vocab_size``,
activation ``hidden_act | activation_function``. Unknown ``model_type`` values are built as
GPT-2-like decoders when those keys are present; otherwise the error names the missing key.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from hwsurrogate.errors import ModelSourceError

__all__ = ["MAX_CONFIG_BYTES", "TransformerConfig", "config_module", "read_config"]

MAX_CONFIG_BYTES = 1 << 20

_ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
         "relu": "relu", "silu": "silu", "swish": "silu", "tanh": "tanh"}  # fmt: skip


class TransformerConfig:
    """The fields the compact transformer needs, read and checked from a config dict."""

    def __init__(self, cfg: dict[str, Any], source: str = "config") -> None:
        if not isinstance(cfg, dict):
            raise ModelSourceError(f"{source}: a config must be a JSON object, got {type(cfg).__name__}")
        self.source = source
        self.model_type = str(cfg.get("model_type", "gpt2")).lower()
        self.hidden = self._int(cfg, ("hidden_size", "n_embd", "d_model"))
        self.layers = self._int(cfg, ("num_hidden_layers", "n_layer", "num_layers"))
        self.heads = self._int(cfg, ("num_attention_heads", "n_head", "num_heads"))
        self.ffn = self._int(cfg, ("intermediate_size", "ffn_dim", "n_inner"), default=4 * self.hidden)
        self.vocab = self._int(cfg, ("vocab_size",), default=50257)
        self.positions = self._int(cfg, ("max_position_embeddings", "n_positions", "n_ctx"), default=2048)
        self.type_vocab = self._int(cfg, ("type_vocab_size",), default=0) if self.model_type == "bert" else 0
        act = str(cfg.get("hidden_act") or cfg.get("activation_function") or "gelu")
        if act not in _ACTS:
            raise ModelSourceError(
                f"{source}: activation {act!r} is not one of {sorted(_ACTS)}", field="hidden_act"
            )
        self.activation = _ACTS[act]
        if self.hidden % self.heads:
            raise ModelSourceError(f"{source}: hidden size {self.hidden} is not divisible by {self.heads} heads",
                                   field="num_attention_heads")  # fmt: skip
        self.post_ln = self.model_type == "bert"
        self.causal = self.model_type != "bert"
        archs = [str(a) for a in cfg.get("architectures") or []]
        self.lm_head = any(a.endswith(("LMHeadModel", "ForCausalLM", "ForMaskedLM")) for a in archs)

    def _int(self, cfg: dict[str, Any], keys: tuple[str, ...], default: int | None = None) -> int:
        for key in keys:
            value = cfg.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 20:
                raise ModelSourceError(f"{self.source}: {key} must be an integer in [1, 2^20], got {value!r}",
                                       field=key)  # fmt: skip
            return int(value)
        if default is None:
            raise ModelSourceError(f"{self.source}: missing {' | '.join(keys)}", field=keys[0])
        return default


def _act(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "gelu":
        return F.gelu(x)
    if name == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu(x)
    if name == "silu":
        return F.silu(x)
    return torch.tanh(x)


class _Attention(nn.Module):
    def __init__(self, c: TransformerConfig) -> None:
        super().__init__()
        self.heads, self.head_dim, self.causal = c.heads, c.hidden // c.heads, c.causal
        self.q_proj = nn.Linear(c.hidden, c.hidden)
        self.k_proj = nn.Linear(c.hidden, c.hidden)
        self.v_proj = nn.Linear(c.hidden, c.hidden)
        self.out_proj = nn.Linear(c.hidden, c.hidden)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape[0], x.shape[1], x.shape[2]
        q = self.q_proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        scores = scores + mask
        probs = self.dropout(torch.softmax(scores, dim=-1))
        ctx = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, h)
        return self.out_proj(ctx)


class _Block(nn.Module):
    def __init__(self, c: TransformerConfig) -> None:
        super().__init__()
        self.post_ln, self.activation = c.post_ln, c.activation
        self.attn = _Attention(c)
        self.ln1 = nn.LayerNorm(c.hidden)
        self.ln2 = nn.LayerNorm(c.hidden)
        self.fc1 = nn.Linear(c.hidden, c.ffn)
        self.fc2 = nn.Linear(c.ffn, c.hidden)
        self.drop1 = nn.Dropout(0.1)
        self.drop2 = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.post_ln:  # BERT
            x = self.ln1(x + self.drop1(self.attn(x, mask)))
            return self.ln2(x + self.drop2(self.fc2(_act(self.activation, self.fc1(x)))))
        x = x + self.drop1(self.attn(self.ln1(x), mask))
        return x + self.drop2(self.fc2(_act(self.activation, self.fc1(self.ln2(x)))))


class CompactTransformer(nn.Module):
    """Embeddings, ``layers`` blocks, final norm (pre-LN) and the LM head of a config."""

    def __init__(self, c: TransformerConfig) -> None:
        super().__init__()
        self.config_ = c
        self.tok = nn.Embedding(c.vocab, c.hidden)
        self.pos = nn.Embedding(c.positions, c.hidden)
        self.types = nn.Embedding(c.type_vocab, c.hidden) if c.type_vocab else None
        self.emb_ln = nn.LayerNorm(c.hidden) if c.post_ln else None
        self.drop = nn.Dropout(0.1)
        self.blocks = nn.ModuleList(_Block(c) for _ in range(c.layers))
        self.final_ln = None if c.post_ln else nn.LayerNorm(c.hidden)
        self.head = nn.Linear(c.hidden, c.vocab, bias=False) if c.lm_head else None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        s = ids.shape[1]
        positions = torch.arange(s, device=ids.device).unsqueeze(0)
        x = self.tok(ids) + self.pos(positions)
        if self.types is not None:
            x = x + self.types(torch.zeros_like(ids))
        if self.emb_ln is not None:
            x = self.emb_ln(x)
        x = self.drop(x)
        if self.config_.causal:
            mask = torch.full((s, s), float("-inf"), device=ids.device).triu(1)
        else:
            mask = torch.zeros((s, s), device=ids.device)
        for block in self.blocks:
            x = block(x, mask)
        if self.final_ln is not None:
            x = self.final_ln(x)
        if self.head is not None:
            x = self.head(x)
        return x


def read_config(path: str | Path) -> dict[str, Any]:
    """Read a config.json (at most :data:`MAX_CONFIG_BYTES`); errors name the file."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ModelSourceError(f"{p}: {size} bytes is more than a config may be ({MAX_CONFIG_BYTES})")
        data = json.loads(p.read_text())
    except ModelSourceError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelSourceError(f"{p}: not a readable JSON config ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ModelSourceError(f"{p}: a config must be a JSON object, got {type(data).__name__}")
    return data


def config_module(config: dict[str, Any] | str | Path, *, num_layers: int | None = None) -> nn.Module:
    """Build the compact transformer of ``config`` (a dict or a config.json path) on the meta device.

    ``num_layers`` overrides the config's layer count (e.g. 1 to trace one layer).
    """
    source = str(config) if isinstance(config, (str, Path)) else "config"
    cfg = read_config(config) if isinstance(config, (str, Path)) else config
    c = TransformerConfig(cfg, source)
    if num_layers is not None:
        if num_layers < 1:
            raise ModelSourceError(f"num_layers must be >= 1, got {num_layers}", field="num_layers")
        c.layers = num_layers
    with torch.device("meta"):
        return CompactTransformer(c)
