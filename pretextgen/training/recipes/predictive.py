"""The predictive recipe: contrastive predictive coding (van den Oord et al. 2018; Hénaff et al. 2019).

The trunk encodes every patch of the grid into one vector z (its last stage, pooled). A context
network reads the rows above: ``RowCausalConv`` layers, a masked convolution whose output at row i
sees input rows <= i only (PixelCNN's vertical stack). For each step k = 1..K a linear map W_k
predicts, from the context at (i, j), the vector of the patch ``k + skip`` rows below, (i + k +
skip, j). ``skip`` is 1 where neighbouring rows overlap (stride < patch): the next row shares pixels
with row i, so predicting it would be copying (Greedy InfoMax skips it the same way); 0 otherwise.
The loss is InfoNCE (``losses.info_nce_keys``): each prediction against its true patch and every
other patch of the batch (the other patches of its own image included, as CPC), cosine similarity
over a temperature. With ``directions`` 4 (CPC v2) the grid is also read from the other three sides
(the z map turned by 90, 180 and 270 degrees, one context network and set of W_k each).

Extra: ``steps`` K (3, or fewer where the grid has fewer rows ahead: CPC v1 predicts up to 5
rows on a 7-row grid; with the skip, 3 leaves every step at least two rows of context on the CPU
preset's 7 rows), ``directions`` (1), ``context_width`` (128), ``context_layers`` (2),
``temperature`` (0.1), ``norm`` (``layer``: each patch's own statistics, as v2; batch norm would
share statistics between the patches of an image and of the batch, a channel a predictor can read).
Negatives come from this process's batch only (not gathered under torchrun).

Evaluation (``eval_protocols``): ``grid`` (the default) cuts the image, at the scale the patches
were cut at, into the training grid of patches, encodes each and averages their features, the
way CPC reads an image; ``whole`` runs the trunk on the whole image at that scale.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..inputs import normalize_rgb
from ..losses import info_nce_keys
from .base import _RGB, extra, make_recipe_trunk


class RowCausalConv(nn.Module):
    """A k x k convolution whose output at row i sees input rows i - k + 1 .. i only (padded above,
    not below); columns are padded on both sides."""

    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__()
        self.k = k
        self.conv = nn.Conv2d(cin, cout, k)

    def forward(self, x):
        return self.conv(F.pad(x, (self.k // 2, self.k // 2, self.k - 1, 0)))


class ContextNet(nn.Module):
    """``layers`` RowCausalConv + ReLU: the context at (i, j) summarises rows <= i (a receptive field
    of 2 ``layers`` + 1 rows above, 2 ``layers`` + 1 columns wide)."""

    def __init__(self, cin: int, width: int, layers: int):
        super().__init__()
        parts, c = [], cin
        for _ in range(layers):
            parts += [RowCausalConv(c, width), nn.ReLU(inplace=True)]
            c = width
        self.net = nn.Sequential(*parts)

    def forward(self, z):
        return self.net(z)


class CPC(_RGB):
    """Contrastive predictive coding on a grid of patches (see the module docstring). Input:
    normalised RGB patches; ``eval_size`` = ``patch``."""

    accuracy = ("share of predictions (every step k, every position) whose most similar candidate among all "
                "patches of the batch is the true patch k rows below")

    def __init__(self, params, config):
        super().__init__(params, config)
        self.trunk = make_recipe_trunk(config, 3, params.patch, norm="layer")
        c = self.trunk.out_channels
        self.skip = 1 if params.stride < params.patch else 0
        self.steps = int(extra(config, "steps", min(3, params.grid - 1 - self.skip)))
        self.directions = int(extra(config, "directions", 1))
        self.temperature = float(extra(config, "temperature", 0.1))
        if self.directions not in (1, 4):
            raise ConfigError(f"extra.directions={self.directions}: 1 (rows below) or 4 (CPC v2: every side)")
        if params.grid - 1 - self.skip < 1:
            raise ConfigError(f"cpc: a {params.grid}-row grid whose rows overlap (stride {params.stride} < patch "
                              f"{params.patch}) leaves no row to predict past the overlapping one; build with grid >= 3 "
                              "or stride = patch")
        if not 1 <= self.steps <= params.grid - 1 - self.skip:
            raise ConfigError(f"extra.steps={self.steps}: a {params.grid}-row grid"
                              f"{' (skipping the overlapping row)' if self.skip else ''} predicts 1 to "
                              f"{params.grid - 1 - self.skip} rows ahead")
        width, layers = int(extra(config, "context_width", 128)), int(extra(config, "context_layers", 2))
        self.context = nn.ModuleList(ContextNet(c, width, layers) for _ in range(self.directions))
        self.predict = nn.ModuleList(nn.ModuleList(nn.Conv2d(width, c, 1) for _ in range(self.steps))
                                     for _ in range(self.directions))

    def encode(self, patches: torch.Tensor) -> torch.Tensor:
        """uint8 (B, n, 3, p, p) -> (B, C, g, g): each patch's pooled vector at its grid place."""
        b, n = patches.shape[:2]
        g = int(round(n ** 0.5))
        z = self.trunk(normalize_rgb(patches).flatten(0, 1))  # (B n, C)
        return z.view(b, g, g, -1).permute(0, 3, 1, 2)

    def loss(self, batch):
        z = self.encode(batch["patches"])  # (B, C, g, g)
        b, c, g, _ = z.shape
        candidates = z.permute(0, 2, 3, 1).reshape(-1, c)  # every patch of the batch, (B g g, C)
        ids = torch.arange(b * g * g, device=z.device).view(b, g, g)
        total, hits, count = 0.0, 0.0, 0
        for d in range(self.directions):
            zd, idd = torch.rot90(z, d, dims=(2, 3)), torch.rot90(ids, d, dims=(1, 2))
            ctx = self.context[d](zd)
            for k in range(1, self.steps + 1):
                ahead = k + self.skip
                pred = self.predict[d][k - 1](ctx[:, :, : g - ahead])  # predicts rows ahead.. of zd
                pred = pred.permute(0, 2, 3, 1).reshape(-1, c)
                target = idd[:, ahead:].reshape(-1)  # the true patch of each prediction
                loss, m = info_nce_keys(pred, candidates[target], candidates, self.temperature,
                                        exclude=target[:, None] == torch.arange(len(candidates), device=z.device)[None])
                total = total + loss * len(target)
                hits += float(m["accuracy"]) * len(target)
                count += len(target)
        return total / count, {"accuracy": torch.tensor(hits / count)}

    @property
    def eval_size(self):
        return self.params.patch

    def eval_protocols(self):
        # The layout's frame spans crop_scale x the shorter side: images at that scale show objects at
        # the size the patches held them; "grid" cuts the training grid of patches from it (CPC's
        # way of reading an image), "whole" runs the trunk on the whole image.
        p = self.params
        size = round(p.frame / (sum(p.crop_scale) / 2))
        origin = (size - p.frame) // 2
        return {"grid": {"size": size, "cells": p.grid, "patch": p.patch, "step": p.stride, "origin": origin},
                "whole": {"size": size}}
