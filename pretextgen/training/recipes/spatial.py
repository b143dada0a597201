"""The spatial recipes: classify where pixels were. Rotation (which way up), jigsaw (which
permutation of tiles), context (where a neighbour patch sat around a centre patch)."""
from __future__ import annotations

from torch import nn

from ..heads import MLP
from ..inputs import normalize_rgb, standardize
from ..losses import classification
from .base import _RGB, extra, make_recipe_trunk


class Rotation(_RGB):
    """RotNet (Gidaris et al. 2018): trunk, last stage average-pooled, a linear 4-way classifier;
    cross-entropy on k. Input: normalised RGB at ``size``."""

    accuracy = "top-1 of the 4-way rotation classifier (0, 90, 180 or 270 degrees)"

    def __init__(self, params, config):
        super().__init__(params, config)
        self.trunk = make_recipe_trunk(config, 3, params.size)
        self.head = nn.Linear(self.trunk.out_channels, 4)

    def loss(self, batch):
        return classification(self.head(self.trunk(normalize_rgb(batch["image"]))), batch["label"])

    @property
    def eval_size(self):
        return self.params.size


class Jigsaw(_RGB):
    """Context-free network (Noroozi & Favaro 2016): one shared trunk per tile, each tile's pooled
    features through a shared ``Linear(C, tile_width)`` + ReLU (fc6), the grid^2 of them
    concatenated, then ``Linear -> ReLU -> Linear`` to the P = ``permutations`` classes;
    cross-entropy. Extra: ``tile_width`` (128), ``head_width`` (256). Input: normalised RGB tiles,
    or the stored per-tile standardised ones with ``tile_norm`` (then ``eval_input`` standardises
    each image the same way). ``eval_size`` = ``tile``."""

    accuracy = "top-1 of the permutation classifier (which permutation of the set shuffled the tiles)"

    def __init__(self, params, config):
        super().__init__(params, config)
        self.trunk = make_recipe_trunk(config, 3, params.tile)
        w, hw = int(extra(config, "tile_width", 128)), int(extra(config, "head_width", 256))
        self.tile_fc = nn.Sequential(nn.Linear(self.trunk.out_channels, w), nn.ReLU(inplace=True))
        self.head = MLP((params.grid ** 2 * w, hw, params.permutations))

    def _input(self, tiles):
        return tiles.float() if tiles.is_floating_point() else normalize_rgb(tiles)

    def loss(self, batch):
        tiles = batch["tiles"]  # (B, n, 3, t, t) in stored order
        f = self.tile_fc(self.trunk(self._input(tiles).flatten(0, 1)))
        return classification(self.head(f.view(tiles.shape[0], -1)), batch["label"])

    @property
    def eval_size(self):
        return self.params.tile

    def eval_input(self, images):
        return standardize(images) if self.params.tile_norm else normalize_rgb(images)

    def eval_protocols(self):
        # The tiles' frame spans crop_scale x the shorter side at crop px (each tile resampled to it): whole
        # images at that scale show objects at the size the trunk learned them (Noroozi & Favaro's
        # and VISSL's evaluation); "grid" cuts the training grid's centre tiles from it.
        p = self.params
        size, cell = round(p.crop / (sum(p.crop_scale) / 2)), p.crop // p.grid
        return {"whole": {"size": size},
                "grid": {"size": size, "cells": p.grid, "patch": p.tile, "step": cell, "origin": (cell - p.tile) // 2}}


class Context(_RGB):
    """Relative patch position (Doersch et al. 2015): a shared trunk per patch, each pooled and
    through a shared ``Linear(C, patch_width)`` + ReLU, the pair concatenated (centre, neighbour),
    then ``Linear -> ReLU -> Linear`` to 8 classes; cross-entropy. Extra: ``patch_width`` (128),
    ``head_width`` (256), ``patch_norm`` (true). Input: each patch minus its mean, over its RMS
    (``standardize``; Doersch et al. normalise each patch, so its brightness and contrast say
    nothing of where it sat), or ImageNet-normalised RGB with ``patch_norm`` false; ``eval_input``
    treats each labeled image the same way. ``eval_size`` = ``patch``."""

    accuracy = "top-1 of the 8-way classifier of where the neighbour patch sits around the centre patch"

    def __init__(self, params, config):
        super().__init__(params, config)
        self.trunk = make_recipe_trunk(config, 3, params.patch)
        w, hw = int(extra(config, "patch_width", 128)), int(extra(config, "head_width", 256))
        self.patch_fc = nn.Sequential(nn.Linear(self.trunk.out_channels, w), nn.ReLU(inplace=True))
        self.head = MLP((2 * w, hw, 8))
        self.patch_norm = bool(extra(config, "patch_norm", True))

    def eval_input(self, images):
        return standardize(images) if self.patch_norm else normalize_rgb(images)

    def loss(self, batch):
        patches = batch["patches"]  # (B, 2, 3, p, p): centre, neighbour
        f = self.patch_fc(self.trunk(self.eval_input(patches).flatten(0, 1)))
        return classification(self.head(f.view(patches.shape[0], -1)), batch["label"])

    @property
    def eval_size(self):
        return self.params.patch

    def eval_protocols(self):
        # The 3 x 3 layout (patches and gaps) spans layout_scale x the shorter side: whole images at
        # that scale show objects at the patches' scale; "grid" cuts the layout's nine patches.
        # Patches that kept one colour channel (chroma="drop") are matched by showing each channel
        # alone in turn.
        p = self.params
        span = 3 * p.patch + 2 * p.gap
        size = round(span / (sum(p.layout_scale) / 2))
        channels = {"channels": "each"} if p.chroma == "drop" else {}
        return {"whole": {"size": size, **channels},
                "grid": {"size": size, "cells": 3, "patch": p.patch, "step": p.patch + p.gap, "origin": (size - span) // 2,
                         **channels}}
