"""Heads the recipes put on their trunks: small importable modules for people who write their own loop."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .models import vit_blocks


class MLP(nn.Sequential):
    """Linear -> [BatchNorm] -> ReLU -> ... -> Linear (no activation after the last)."""

    def __init__(self, dims, bn: bool = False):
        layers = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b, bias=not (bn and i < len(dims) - 2)))
            if i < len(dims) - 2:
                layers += [nn.BatchNorm1d(b)] if bn else []
                layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UpDecoder(nn.Module):
    """A light decoder: transposed 4x4 convolutions of stride 2 (BN, ReLU) from a ``src``-px map
    until the next would pass ``dst`` px, a 1x1 convolution to ``cout`` channels, and a bilinear
    resize to exactly ``dst`` px where the sides are not a power of two apart."""

    def __init__(self, cin: int, cout: int, src: int, dst: int, width: int = 64):
        super().__init__()
        layers, side, c = [], src, cin
        while side * 2 <= dst:
            layers += [nn.ConvTranspose2d(c, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            c, side = width, side * 2
        layers.append(nn.Conv2d(c, cout, 1))
        self.net, self.dst = nn.Sequential(*layers), dst

    def forward(self, x):
        y = self.net(x)
        if y.shape[-1] != self.dst or y.shape[-2] != self.dst:
            y = F.interpolate(y, size=(self.dst, self.dst), mode="bilinear", align_corners=False)
        return y


class MaeDecoder(nn.Module):
    """MAE's decoder, light: encoded visible tokens -> ``width``, mask tokens appended and unshuffled
    with ids_restore, fixed sine-cosine positions, ``depth`` pre-norm blocks, a linear layer to the
    patch's pixels."""

    def __init__(self, enc_width: int, side: int, patch_dim: int, width: int = 128, depth: int = 2, heads: int = 4):
        super().__init__()
        from .models import sincos_2d

        self.embed = nn.Linear(enc_width, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("pos", sincos_2d(side, width), persistent=False)
        self.blocks = vit_blocks(width, depth, heads)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, patch_dim)

    def forward(self, tokens, ids_restore):
        x = self.embed(tokens)
        b, n_keep, w = x.shape
        mask = self.mask_token.expand(b, ids_restore.shape[1] - n_keep, w)
        x = torch.cat([x, mask], dim=1).gather(1, ids_restore[..., None].expand(-1, -1, w)) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.out(self.norm(x))
