"""NAS-Bench-201 and FBNet-space networks, built as the benchmarks define them (for latency).

**NAS-Bench-201** (Dong & Yang, ICLR 2020; ``D-X-Y/AutoDL-Projects`` ``lib/models/cell_infers/
tiny_network.py``, ``cells.py``, ``cell_operations.py``), CIFAR cell network:

- stem: Conv3x3(3 -> C=16, no bias) + BatchNorm;
- 3 stages of N=5 cells with C = 16, 32, 64; between stages a residual reduction block
  (ReLU-Conv3x3/s2-BN, ReLU-Conv3x3-BN, shortcut AvgPool2x2/s2 + Conv1x1, no bias);
- a cell has 4 nodes; node j sums op(node i) over i < j; ops: ``none`` (multiply by 0),
  ``skip_connect`` (identity), ``nor_conv_1x1`` / ``nor_conv_3x3`` (ReLU-Conv-BN, affine BN with
  running stats), ``avg_pool_3x3`` (stride 1, pad 1, ``count_include_pad=False``);
- lastact BatchNorm + ReLU, global average pooling, Linear(64 -> classes); CIFAR-10 (10
  classes, 32x32 input) is the default, as in HW-NAS-Bench / HELP latencies.

Parameter counts match the benchmark: 0.073306 M for a cell without convolutions and
1.531546 M for the all-``nor_conv_3x3`` cell (CIFAR-10; the min/max NB201 reports).

**FBNet space** as HW-NAS-Bench defines it (``GATECH-EIC/HW-NAS-Bench``
``hw_nas_bench_api/fbnet_models/model_infer.py``, ``FBNet_Infer``), CIFAR-100 variant:

- stem ConvNorm: Conv3x3(3 -> 16, stride 1 on CIFAR) + BN + ReLU;
- 22 searchable layers in 7 stages of [1, 4, 4, 4, 4, 4, 1] layers with output channels
  [16, 24, 32, 64, 112, 184, 352] and first-layer strides [1, 1, 2, 2, 1, 2, 1] (CIFAR);
- ``kK_eE[_g2]``: Conv1x1(C_in -> E*C_in, groups G) + BN + ReLU, channel shuffle if G > 1,
  depthwise ConvKxK (stride, pad ceil((K - s)/2)) + BN + ReLU, Conv1x1(-> C_out, groups G) + BN,
  residual when C_in == C_out and stride 1; ``skip``: identity, or Conv1x1/stride + BN + ReLU
  when the shape changes;
- header ConvNorm 1x1 (352 -> 1504) + BN + ReLU, global average pooling, Linear(1504 -> 100).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hwsurrogate.datasets.archspaces import NB201_EDGES, parse_fbnet, parse_nb201
from hwsurrogate.errors import CollectorError

# ------------------------------------------------------------------------------ NAS-Bench-201


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv (no bias) -> BatchNorm, the NB201 convolution op."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(out_channels, affine=True, track_running_stats=True),
        )


class Zero(nn.Module):
    """The ``none`` op: zeros of the input's shape (computed as x * 0, as NB201 does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def nb201_op(name: str, channels: int) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise CollectorError(f"unknown NB201 op {name!r}")


class ResidualReduction(nn.Module):
    """NB201's ResNet basic block with stride 2 between stages."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(in_channels, out_channels, 3, 2, 1)
        self.conv_b = ReLUConvBN(out_channels, out_channels, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Cell(nn.Module):
    """A 4-node NB201 cell: node j = sum over i < j of op_(j,i)(node i)."""

    def __init__(self, ops: tuple[str, ...], channels: int) -> None:
        super().__init__()
        self.edges = NB201_EDGES
        self.layers = nn.ModuleList(nb201_op(op, channels) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for target in (1, 2, 3):
            nodes.append(
                sum(
                    layer(nodes[src])
                    for layer, (tgt, src) in zip(self.layers, self.edges, strict=True)
                    if tgt == target
                )  # type: ignore[arg-type]
            )
        return nodes[-1]


class NB201Network(nn.Module):
    """NAS-Bench-201's TinyNetwork for one arch string."""

    def __init__(self, arch_key: str, *, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10):
        super().__init__()
        ops = parse_nb201(arch_key)
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        layers: list[nn.Module] = []
        c_prev = channels
        for stage, c in enumerate((channels, channels * 2, channels * 4)):
            if stage > 0:
                layers.append(ResidualReduction(c_prev, c))
            layers.extend(NB201Cell(ops, c) for _ in range(cells_per_stage))
            c_prev = c
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lastact(self.cells(self.stem(x)))
        return self.classifier(self.global_pooling(out).flatten(1))


# ------------------------------------------------------------------------------ FBNet

FBNET_STAGE_LAYERS = (1, 4, 4, 4, 4, 4, 1)
FBNET_STAGE_CHANNELS = (16, 24, 32, 64, 112, 184, 352)
FBNET_CIFAR_STRIDES = (1, 1, 2, 2, 1, 2, 1)
FBNET_STEM_CHANNELS = 16
FBNET_CIFAR_HEADER = 1504

#: op name -> (kernel size, expansion, groups); ``skip`` is separate.
FBNET_BLOCKS: dict[str, tuple[int, int, int]] = {
    "k3_e1": (3, 1, 1),
    "k3_e1_g2": (3, 1, 2),
    "k3_e3": (3, 3, 1),
    "k3_e6": (3, 6, 1),
    "k5_e1": (5, 1, 1),
    "k5_e1_g2": (5, 1, 2),
    "k5_e3": (5, 3, 1),
    "k5_e6": (5, 6, 1),
}


def _same_padding(kernel_size: int, stride: int) -> int:
    return int(math.ceil((kernel_size - stride) / 2))


class ConvNormReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                      padding=_same_padding(kernel_size, stride), bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )  # fmt: skip


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = self.groups
        return x.view(n, g, c // g, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class InvertedBottleneck(nn.Module):
    """FBNet ``kK_eE[_g2]`` block (HW-NAS-Bench ``ConvBlock``)."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int, expansion: int, groups: int,
                 stride: int) -> None:  # fmt: skip
        super().__init__()
        mid = in_channels * expansion
        self.residual = in_channels == out_channels and stride == 1
        self.conv1 = nn.Conv2d(in_channels, mid, 1, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.shuffle = ChannelShuffle(groups) if groups > 1 else nn.Identity()
        self.conv2 = nn.Conv2d(mid, mid, kernel_size, stride=stride, padding=_same_padding(kernel_size, stride),
                               groups=mid, bias=False)  # fmt: skip
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_channels, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shuffle(self.relu(self.bn1(self.conv1(x))))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out += x
        return out


def fbnet_op(name: str, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if name == "skip":
        if stride == 1 and in_channels == out_channels:
            return nn.Identity()
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
    if name not in FBNET_BLOCKS:
        raise CollectorError(f"unknown FBNet op {name!r}")
    k, e, g = FBNET_BLOCKS[name]
    return InvertedBottleneck(in_channels, out_channels, kernel_size=k, expansion=e, groups=g, stride=stride)


class FBNetNetwork(nn.Module):
    """HW-NAS-Bench's ``FBNet_Infer`` (CIFAR setting) for one 22-op arch key."""

    def __init__(self, arch_key: str, *, num_classes: int = 100) -> None:
        super().__init__()
        ops = parse_fbnet(arch_key)
        self.stem = ConvNormReLU(3, FBNET_STEM_CHANNELS, 3, stride=1)
        layers: list[nn.Module] = []
        c_prev, i = FBNET_STEM_CHANNELS, 0
        for n_layers, c, stride in zip(
            FBNET_STAGE_LAYERS, FBNET_STAGE_CHANNELS, FBNET_CIFAR_STRIDES, strict=True
        ):
            for j in range(n_layers):
                layers.append(fbnet_op(ops[i], c_prev, c, stride if j == 0 else 1))
                c_prev, i = c, i + 1
        self.cells = nn.Sequential(*layers)
        self.header = ConvNormReLU(c_prev, FBNET_CIFAR_HEADER, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(FBNET_CIFAR_HEADER, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.avgpool(self.header(self.cells(self.stem(x)))).flatten(1))


#: Input (C, H, W) of each space's benchmark networks.
INPUT_SHAPES: dict[str, tuple[int, int, int]] = {"nb201": (3, 32, 32), "fbnet": (3, 32, 32)}


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())
