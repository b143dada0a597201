"""Trunks shared by the image tasks, each with named stage taps (``features(x) -> {stage: map}``) and
an ``in_channels`` argument (3 for RGB, 1 for L, 2 for ab).

- ``small``: six 3x3 convolutions in three blocks (32-64-128 channels, batch norm, ReLU, 2x2 max
  pool after each block): the CPU preset, a useful run in minutes on 2 cores.
- ``resnet18``: ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max pool): the GPU preset.
- ``vit_tiny``: for mae (patch embedding, 12 blocks of width 192, taps after blocks 4/8/12; see
  ``recipes``); it takes ``image_size`` and ``patch``.
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


NORMS = ("batch", "group", "layer", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The normalisation after a convolution: ``batch`` (statistics over the batch: what the papers'
    trunks use), ``group`` (GroupNorm, 8 groups), ``layer`` (GroupNorm with one group: each input's
    own statistics over channels and pixels, as CPC v2) or ``none``. ``group``, ``layer`` and
    ``none`` share no statistics between the inputs of a batch (a patch cannot learn about its
    neighbours through them)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of: {', '.join(NORMS)}")


def _conv_bn(cin: int, cout: int, norm: str = "batch") -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=norm == "none"), norm_layer(norm, cout),
                         nn.ReLU(inplace=True))


class SmallConvTrunk(Trunk):
    """Three blocks of two 3x3 conv-norm-ReLU (``norm``: ``norm_layer``), each followed by a 2x2 max
    pool (block1..block3)."""

    stages = ("block1", "block2", "block3")

    def __init__(self, in_channels: int = 3, widths=(32, 64, 128), norm: str = "batch"):
        super().__init__()
        blocks, cin = [], in_channels
        for w in widths:
            blocks.append(nn.Sequential(_conv_bn(cin, w, norm), _conv_bn(w, w, norm), nn.MaxPool2d(2)))
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
    def __init__(self, cin: int, cout: int, stride: int, norm: str = "batch"):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), norm_layer(norm, cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), norm_layer(norm, cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), norm_layer(norm, cout))

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(y)) + self.short(x))


class ResNet18Trunk(Trunk):
    """ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max pool); stages layer1..layer4."""

    stages = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, in_channels: int = 3, widths=(64, 128, 256, 512), norm: str = "batch"):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), norm_layer(norm, widths[0]),
                                  nn.ReLU(inplace=True))
        layers, cin = [], widths[0]
        for cout, stride in zip(widths, (1, 2, 2, 2)):
            layers.append(nn.Sequential(_Basic(cin, cout, stride, norm), _Basic(cout, cout, 1, norm)))
            cin = cout
        self.layers = nn.ModuleList(layers)
        self.in_channels, self.out_channels = in_channels, widths[-1]

    def features(self, x):
        x = self.stem(x)
        out = OrderedDict()
        for name, layer in zip(self.stages, self.layers):
            x = layer(x)
            out[name] = x
        return out


def sincos_2d(side: int, dim: int) -> torch.Tensor:
    """(side * side, dim) fixed 2-D sine-cosine position embedding (MAE's), rows in raster order."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(torch.arange(side, dtype=torch.float64), torch.arange(side, dtype=torch.float64),
                            indexing="ij")
    parts = []
    for pos in (xs.reshape(-1), ys.reshape(-1)):
        out = pos[:, None] * omega[None, :]
        parts += [out.sin(), out.cos()]
    emb = torch.cat(parts, dim=1)
    return torch.cat([emb, emb.new_zeros(len(emb), dim - emb.shape[1])], dim=1).float()


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, patch * patch * C): patches in raster order, each flattened (y, x, channel),
    the order of MAE's ``patchify`` and of the mae task's ``visible`` / ``target`` fields."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def vit_blocks(width: int, depth: int, heads: int) -> nn.ModuleList:
    """Pre-norm transformer blocks (MLP ratio 4, GELU), batch first."""
    return nn.ModuleList(nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                                    batch_first=True, norm_first=True) for _ in range(depth))


class VitTinyTrunk(Trunk):
    """ViT-tiny (width 192, 12 blocks, 3 heads; no class token, fixed sine-cosine positions) on
    ``image_size`` images cut into ``patch`` px patches. Stages: the tokens after blocks 4, 8 and 12
    (the last after the final norm), reshaped to maps (B, width, side, side) so that they pool like a
    conv trunk's. ``encode(tokens, ids)`` runs the encoder on a subset of patches (MAE's visible ones)."""

    def __init__(self, in_channels: int = 3, image_size: int = 32, patch: int = 4, width: int = 192,
                 depth: int = 12, heads: int = 3):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"vit_tiny: patch {patch} does not divide image_size {image_size}")
        self.in_channels, self.out_channels, self.patch = in_channels, width, patch
        self.side = image_size // patch
        self.embed = nn.Linear(patch * patch * in_channels, width)
        self.register_buffer("pos", sincos_2d(self.side, width), persistent=False)
        self.blocks = vit_blocks(width, depth, heads)
        self.norm = nn.LayerNorm(width)
        taps = sorted({max(1, round(depth * k / 3)) for k in (1, 2, 3)})
        self.taps = {t: f"block{t}" for t in taps}
        self.stages = tuple(self.taps.values())

    def encode(self, tokens: torch.Tensor, ids: torch.Tensor | None = None, taps: bool = False):
        """``tokens`` (B, n, patch * patch * C) flattened normalised patches, ``ids`` (B, n) their
        positions (None: all, in raster order). Returns the encoded tokens (B, n, width), or with
        ``taps`` {stage: tokens}."""
        pos = self.pos if ids is None else self.pos[ids]
        x = self.embed(tokens) + pos
        out = OrderedDict()
        for i, block in enumerate(self.blocks, 1):
            x = block(x)
            if i == len(self.blocks):
                x = self.norm(x)
            if i in self.taps:
                out[self.taps[i]] = x
        return out if taps else x

    def features(self, x):
        tokens = self.encode(patchify(x, self.patch), taps=True)
        b = x.shape[0]
        return OrderedDict((k, v.transpose(1, 2).reshape(b, -1, self.side, self.side)) for k, v in tokens.items())


TRUNKS = {"small": SmallConvTrunk, "resnet18": ResNet18Trunk, "vit_tiny": VitTinyTrunk}


def make_trunk(name: str, in_channels: int = 3, norm: str = "batch", **kwargs) -> Trunk:
    """The trunk ``name`` of ``TRUNKS``; ``norm`` (``NORMS``) for the conv trunks (vit_tiny has its
    own layer norms and takes only "batch", the default, meaning its own)."""
    try:
        cls = TRUNKS[name]
    except KeyError:
        raise ValueError(f"unknown trunk {name!r}; choose one of: {', '.join(TRUNKS)}") from None
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of: {', '.join(NORMS)}")
    if cls is VitTinyTrunk:
        if norm != "batch":
            raise ValueError(f"vit_tiny has its own layer norms; norm={norm!r} applies to the conv trunks")
        return cls(in_channels=in_channels, **kwargs)
    return cls(in_channels=in_channels, norm=norm, **kwargs)
