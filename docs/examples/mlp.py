"""A small PyTorch MLP for the README's `hws predict fpga --model docs/examples/mlp.py:build` and
`hws predict model --model docs/examples/mlp.py:build` examples (16 inputs, 32 hidden, 5 outputs)."""

import torch.nn as nn


def build() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 5))
