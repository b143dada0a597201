"""Trunks shared by the image tasks, each with named stage taps (``features(x) -> {stage: map}``) and
an ``in_channels`` argument (3 for RGB, 1 for L, 2 for ab).

- ``small``: six 3x3 convolutions in three blocks (32-64-128 channels, batch norm, ReLU, 2x2 max
  pool after each block): the CPU preset, a useful run in minutes on 2 cores.
- ``resnet18``: ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max pool): the GPU preset.
- ``vit_tiny``: for mae (patch embedding, 12 blocks of width 192; see ``recipes``).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class Trunk(nn.Module):
    """A feature extractor with named stages. ``features(x)`` returns every stage's map, in order;
    ``forward(x)`` the last stage globally average-pooled, (B, out_channels)."""

    stages: tuple[str, ...] = ()
    out_channels: int = 0

    def features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = next(reversed(self.features(x).values()))
        return last.mean(dim=(2, 3)) if last.ndim == 4 else last


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallConvTrunk(Trunk):
    """Three blocks of two 3x3 conv-BN-ReLU, each followed by a 2x2 max pool (block1..block3)."""

    stages = ("block1", "block2", "block3")

    def __init__(self, in_channels: int = 3, widths=(32, 64, 128)):
        super().__init__()
        blocks, cin = [], in_channels
        for w in widths:
            blocks.append(nn.Sequential(_conv_bn(cin, w), _conv_bn(w, w), nn.MaxPool2d(2)))
            cin = w
        self.blocks = nn.ModuleList(blocks)
        self.in_channels, self.out_channels = in_channels, widths[-1]

    def features(self, x):
        out = OrderedDict()
        for name, block in zip(self.stages, self.blocks):
            x = block(x)
            out[name] = x
        return out


class _Basic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(y)) + self.short(x))


class ResNet18Trunk(Trunk):
    """ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max pool); stages layer1..layer4."""

    stages = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(_Basic(cin, cout, stride), _Basic(cout, cout, 1)))
            cin = cout
        self.layers = nn.ModuleList(layers)
        self.in_channels, self.out_channels = in_channels, 512

    def features(self, x):
        x = self.stem(x)
        out = OrderedDict()
        for name, layer in zip(self.stages, self.layers):
            x = layer(x)
            out[name] = x
        return out


TRUNKS = {"small": SmallConvTrunk, "resnet18": ResNet18Trunk}


def make_trunk(name: str, in_channels: int = 3, **kwargs) -> Trunk:
    try:
        cls = TRUNKS[name]
    except KeyError:
        raise ValueError(f"unknown trunk {name!r}; choose one of: {', '.join(TRUNKS)}") from None
    return cls(in_channels=in_channels, **kwargs)
