"""The recipes of the nine image tasks: heads and losses as the papers had them, on the shared trunks.

Each task names its class here in its ``TrainerSpec`` (``pretextgen/tasks/<task>.py``). Heads
(``MLP``, ``UpDecoder``, ``MaeDecoder``) and losses (``classification``, ``soft_cross_entropy``,
``info_nce``, ``weighted_mse``) are plain importable pieces for people who write their own loop.

Inputs, as every recipe hands them to its trunk (and ``eval_input`` converts labeled images):

- RGB uint8 -> ``(x / 255 - mean) / std`` per channel with ImageNet's statistics
  (``RGB_MEAN`` = 0.485, 0.456, 0.406; ``RGB_STD`` = 0.229, 0.224, 0.225);
- Lab L in [0, 100] -> ``L / 50 - 1``; ab -> ``ab / 110`` (``lab_input``).

Settings a recipe reads from ``TrainConfig.extra`` are listed in its docstring with their defaults.
Any trunk of ``models.TRUNKS`` works (``config.trunk``); ``vit_tiny`` gets ``image_size`` =
``eval_size`` and ``extra.patch`` (default 4). mae needs ``vit_tiny``.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, PretextgenError
from .models import Trunk, make_trunk, vit_blocks
from .recipe import Recipe

RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)
DEFAULT_WIDTHS = {"small": (32, 64, 128), "resnet18": (64, 128, 256, 512)}


# ---------------------------------------------------------------- inputs
def normalize_rgb(x: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (..., 3, H, W) -> float, per-channel ImageNet mean/std."""
    mean = torch.tensor(RGB_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(RGB_STD, device=x.device).view(3, 1, 1)
    return (x.float() / 255.0 - mean) / std


def normalize_L(L: torch.Tensor) -> torch.Tensor:
    return L.float() / 50.0 - 1.0


def normalize_ab(ab: torch.Tensor) -> torch.Tensor:
    return ab.float() / 110.0


def lab_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (B, 3, H, W) -> (B, 3, H, W) float: L / 50 - 1, a / 110, b / 110, through
    ``pretextgen.lab.srgb_to_lab`` (the conversion the builds use)."""
    from ..lab import srgb_to_lab

    lab = srgb_to_lab(images.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8))
    lab = torch.from_numpy(lab).permute(0, 3, 1, 2).to(images.device)
    return torch.cat([normalize_L(lab[:, :1]), normalize_ab(lab[:, 1:])], dim=1)


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Each image (..., C, H, W) minus its mean over pixels and channels, over max(std, 1) in grey
    levels: what jigsaw's ``tile_norm`` stores."""
    x = x.float()
    mean = x.mean(dim=(-3, -2, -1), keepdim=True)
    std = x.std(dim=(-3, -2, -1), keepdim=True, correction=0)
    return (x - mean) / std.clamp(min=1.0)


# ---------------------------------------------------------------- losses (plain functions)
def classification(logits: torch.Tensor, target: torch.Tensor):
    """Cross-entropy and top-1 accuracy: (loss, {"accuracy"})."""
    loss = F.cross_entropy(logits.float(), target)
    return loss, {"accuracy": (logits.argmax(1) == target).float().mean()}


def soft_cross_entropy(logits: torch.Tensor, bins: torch.Tensor, weights: torch.Tensor,
                       pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Zhang et al. 2016's multinomial loss: per pixel -sum_k w_k log q[bin_k] over the soft
    encoding's k nearest bins; ``logits`` (B, Q, h, w), ``bins`` / ``weights`` (B, k, h, w);
    ``pixel_weights`` (B, h, w) the class-rebalancing weight of each pixel. Mean over pixels."""
    logp = F.log_softmax(logits.float(), dim=1)
    ce = -(weights.float() * logp.gather(1, bins)).sum(1)
    if pixel_weights is not None:
        ce = ce * pixel_weights
    return ce.mean()


def info_nce(z: torch.Tensor, groups: torch.Tensor, temperature: float):
    """NT-Xent / InfoNCE with several positives (SimCLR's loss; SupCon's form when a group holds more
    than two views): z (N, D) embeddings, groups (N,) ids; each anchor's positives are the other
    members of its group, its negatives every other row; cosine similarity / temperature. Returns
    (loss, {"accuracy": share of anchors whose most similar other row is a positive})."""
    z = F.normalize(z.float(), dim=1)
    sim = z @ z.t() / temperature
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    pos = (groups[:, None] == groups[None, :]) & ~eye
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    n_pos = pos.sum(1)
    has = n_pos > 0
    per_anchor = -logp.masked_fill(~pos, 0.0).sum(1) / n_pos.clamp(min=1)
    loss = per_anchor[has].mean()
    hit = pos.gather(1, sim.argmax(1, keepdim=True)).squeeze(1)
    return loss, {"accuracy": hit[has].float().mean()}


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum(weight * (pred - target)^2) / sum(weight * channels): a weighted mean over pixels (and
    channels); ``weight`` broadcasts over the channel axis (B or 1, 1, H, W)."""
    se = (pred.float() - target.float()) ** 2
    weight = weight.float().expand(se.shape[0], 1, *se.shape[2:])
    return (se * weight).sum() / (weight.sum() * se.shape[1]).clamp(min=1e-8)


# ---------------------------------------------------------------- heads
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


def _extra(config, key, default):
    return config.extra.get(key, default)


def make_recipe_trunk(config, in_channels: int, size: int, scale: float = 1.0) -> Trunk:
    """``config.trunk`` for ``in_channels`` inputs of ``size`` px; ``scale`` < 1 narrows it (each
    split-brain half is half as wide, so that the two together are one trunk)."""
    name, kwargs = config.trunk, {}
    if name == "vit_tiny":
        kwargs = {"image_size": size, "patch": int(_extra(config, "patch", 4))}
        if scale != 1.0:
            kwargs["width"] = int(192 * scale)
    elif scale != 1.0 and name in DEFAULT_WIDTHS:
        kwargs["widths"] = tuple(int(w * scale) for w in DEFAULT_WIDTHS[name])
    try:
        return make_trunk(name, in_channels, **kwargs)
    except ValueError as e:
        raise ConfigError(f"trunk: {e}") from None


def output_map(trunk: Trunk, in_channels: int, size: int) -> tuple[int, int]:
    """(channels, side) of the trunk's last stage for a ``size`` px input (a dry run in eval mode:
    no batch-norm statistic moves)."""
    was = trunk.training
    trunk.eval()
    with torch.no_grad():
        last = next(reversed(trunk.features(torch.zeros(1, in_channels, size, size)).values()))
    trunk.train(was)
    return last.shape[1], last.shape[-1]


class _RGB(Recipe):
    """Shared by the recipes whose trunk sees normalised RGB at evaluation."""

    def eval_input(self, images):
        return normalize_rgb(images)

    def eval_features(self, x):
        return self.trunk.features(x)


# ---------------------------------------------------------------- the nine tasks
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
        w, hw = int(_extra(config, "tile_width", 128)), int(_extra(config, "head_width", 256))
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
        w, hw = int(_extra(config, "patch_width", 128)), int(_extra(config, "head_width", 256))
        self.patch_fc = nn.Sequential(nn.Linear(self.trunk.out_channels, w), nn.ReLU(inplace=True))
        self.head = MLP((2 * w, hw, 8))
        self.patch_norm = bool(_extra(config, "patch_norm", True))

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


class _Contrast(_RGB):
    """A trunk, its pooled last stage through a projection MLP (Linear-BN-ReLU-Linear to
    ``proj_dim``), and ``info_nce`` over groups of views."""

    field = ""
    default_temperature = 0.5

    def __init__(self, params, config, size):
        super().__init__(params, config)
        self.trunk = make_recipe_trunk(config, 3, size)
        c = self.trunk.out_channels
        self.projector = MLP((c, int(_extra(config, "proj_hidden", c)), int(_extra(config, "proj_dim", 128))), bn=True)
        self.temperature = float(_extra(config, "temperature", self.default_temperature))

    def groups(self, batch, k):
        raise NotImplementedError

    def loss(self, batch):
        views = batch[self.field]  # (B, k, 3, s, s)
        z = self.projector(self.trunk(normalize_rgb(views).flatten(0, 1)))
        return info_nce(z, self.groups(batch, views.shape[1]), self.temperature)


class Exemplar(_Contrast):
    """Exemplar CNN (Dosovitskiy et al. 2014) without its N-way softmax: the paper trains an N-way
    classifier over N surrogate classes, but here N is the number of samples (it grows with the
    build, every class is seen once an epoch and its output row would barely train), so the K
    transformed patches of each class are instead pulled together against the other classes of
    the batch with InfoNCE / NT-Xent (positives: the other views of the same class label in the
    batch). Trunk pooled -> projection MLP -> ``info_nce``. Extra: ``temperature`` (0.1: SupCon's,
    for K > 2 positives per anchor), ``proj_dim`` (128), ``proj_hidden`` (C). Accuracy: share of
    patches whose most similar other patch in the batch is of their class. Input: normalised RGB;
    ``eval_size`` = ``patch``."""

    accuracy = ("share of patches whose most similar other patch in the batch (cosine, projected) is a transform "
                "of the same seed patch: InfoNCE's nearest-neighbour score, not the paper's N-way classifier")

    field = "patches"
    default_temperature = 0.1

    def __init__(self, params, config):
        super().__init__(params, config, params.patch)

    def groups(self, batch, k):
        return batch["label"].repeat_interleave(k)

    @property
    def eval_size(self):
        return self.params.patch


class Contrastive(_Contrast):
    """SimCLR (Chen et al. 2020): trunk pooled -> projection MLP (Linear-BN-ReLU-Linear, 128-d) ->
    NT-Xent over the k views of each group against every other view of the batch. Extra:
    ``temperature`` (0.5: SimCLR's value for small batches; 0.1-0.2 suits batches of thousands),
    ``proj_dim`` (128), ``proj_hidden`` (C). Accuracy: share of views whose nearest other view is
    of their group. Input: normalised RGB; ``eval_size`` = ``size``. Train from live samples
    (``--source``) to see fresh views every epoch."""

    accuracy = ("share of views whose most similar other view in the batch (cosine, projected) is a view of the "
                "same image; a larger batch (more negatives) makes it harder")

    field = "views"

    def __init__(self, params, config):
        super().__init__(params, config, params.size)

    def groups(self, batch, k):
        return torch.arange(batch["views"].shape[0], device=batch["views"].device).repeat_interleave(k)

    @property
    def eval_size(self):
        return self.params.size


def _load_ab_weights(params, data_dir, dataset) -> torch.Tensor:
    """The class-rebalancing weights of the ab bins (Q,): the build's ab_prior.json; for live samples
    the ``prior`` file of the params, else the same prior pass a build runs, over the live sources."""
    from ..parallel import default_workers
    from ..tasks.colorization import PRIOR_FILE, compute_prior, load_prior

    if data_dir is not None and (Path(data_dir) / PRIOR_FILE).exists():
        prior = load_prior(Path(data_dir) / PRIOR_FILE, params)
    elif data_dir is not None:
        raise PretextgenError(f"{data_dir} holds no {PRIOR_FILE}; rebuild it with this version of pretextgen")
    elif params.prior:
        prior = load_prior(params.prior, params)
    elif getattr(dataset, "sources", None):
        prior = compute_prior(params, dataset.root, dataset.sources, default_workers())
        if "weights" not in prior:
            raise PretextgenError("every live source is near-grayscale: no ab prior to rebalance with")
    else:
        raise PretextgenError("no ab prior: train from a build folder (it holds ab_prior.json) or set prior=FILE")
    return torch.tensor(prior["weights"], dtype=torch.float32)


class _AbBins(nn.Module):
    """L -> ab bins: a trunk (encoder) and an ``UpDecoder`` to the t x t target grid over Q bins,
    trained with ``soft_cross_entropy`` against (ab_bins, ab_weights), each pixel weighted by the
    prior's rebalancing weight of its nearest bin (``pixel_weights``: the ``ab_weights`` buffer)."""

    def __init__(self, trunk, params, in_channels, width):
        super().__init__()
        from ..lab import gamut_bins

        self.q = len(gamut_bins(params.grid_step))
        c, side = output_map(trunk, in_channels, params.size)
        self.decoder = UpDecoder(c, self.q, side, params.target_side(), width)
        self.register_buffer("prior_weights", torch.ones(self.q))

    def loss(self, last, batch, rebalance: bool):
        logits = self.decoder(last)
        bins = batch["ab_bins"]  # (B, k, t, t) int64, nearest first
        w = self.prior_weights[bins[:, 0]] if rebalance else None
        loss = soft_cross_entropy(logits, bins, batch["ab_weights"], w)
        return loss, (logits.argmax(1) == bins[:, 0]).float().mean()


class Colorization(Recipe):
    """Colorful image colorization (Zhang et al. 2016): the trunk encodes L, a light decoder
    (``UpDecoder``) predicts the distribution over the Q in-gamut ab bins on the t x t target grid,
    loss the soft cross-entropy against (ab_bins, ab_weights) rebalanced per pixel by the prior's
    weight of its nearest bin (``pretextgen.tasks.colorization.pixel_weights``). The weights are a
    buffer filled by ``prepare``: from the build's ab_prior.json; for live samples from the params'
    ``prior`` file, else from the same prior pass a build runs over the live sources (never from a
    batch: one batch is too few pixels for a prior); they travel in the checkpoint. Extra:
    ``decoder_width`` (64), ``rebalance`` (true). Accuracy: share of target pixels whose most likely
    bin is their nearest bin. Input: L / 50 - 1 (labeled images converted with
    ``pretextgen.lab.srgb_to_lab``); ``eval_size`` = ``size``."""

    accuracy = ("per-pixel top-1: share of target pixels whose most likely of the Q ab bins is their nearest bin "
                "(not rebalanced)")

    def __init__(self, params, config):
        super().__init__(params, config)
        self.trunk = make_recipe_trunk(config, 1, params.size)
        self.ab = _AbBins(self.trunk, params, 1, int(_extra(config, "decoder_width", 64)))
        self.rebalance = bool(_extra(config, "rebalance", True))

    def prepare(self, data_dir, dataset):
        if self.rebalance:
            self.ab.prior_weights.copy_(_load_ab_weights(self.params, data_dir, dataset))

    def loss(self, batch):
        last = next(reversed(self.trunk.features(normalize_L(batch["L"]).unsqueeze(1)).values()))
        loss, acc = self.ab.loss(last, batch, self.rebalance)
        return loss, {"accuracy": acc}

    @property
    def eval_size(self):
        return self.params.size

    def eval_input(self, images):
        return lab_input(images)[:, :1]

    def eval_features(self, x):
        return self.trunk.features(x)


class SplitTrunk(Trunk):
    """Split-brain trunk: an L half (1 channel in) and an ab half (2 channels in), each half as
    wide; ``features`` takes (B, 3, H, W) normalised Lab and concatenates the halves per stage."""

    def __init__(self, config, size):
        super().__init__()
        self.l_net = make_recipe_trunk(config, 1, size, 0.5)
        self.ab_net = make_recipe_trunk(config, 2, size, 0.5)
        self.stages = tuple(self.l_net.stages)
        self.in_channels, self.out_channels = 3, self.l_net.out_channels + self.ab_net.out_channels

    def features(self, x):
        fl, fa = self.l_net.features(x[:, :1]), self.ab_net.features(x[:, 1:])
        return OrderedDict((k, torch.cat([fl[k], fa[k]], dim=1)) for k in fl)


class SplitBrain(Recipe):
    """Split-brain autoencoder (Zhang et al. 2017): two half-width trunks. L -> ab as
    ``Colorization`` (decoder to the Q ab bins, rebalanced soft cross-entropy, prior from
    ``prepare``); ab -> L a decoder to ``l_bins`` classes with cross-entropy on ``L_bins``. Loss:
    the sum. At evaluation the trunk (``SplitTrunk``) sees L and ab and concatenates the two
    halves' features per stage. Extra: ``decoder_width`` (64), ``rebalance`` (true). Accuracy: the
    mean of the two halves' per-pixel top-1. Input: L / 50 - 1 and ab / 110; ``eval_size`` =
    ``size``."""

    accuracy = ("mean of two per-pixel top-1s: L -> ab (most likely ab bin = the pixel's nearest bin) and ab -> L "
                "(most likely L bin = the pixel's L bin)")

    def __init__(self, params, config):
        super().__init__(params, config)
        width = int(_extra(config, "decoder_width", 64))
        self.trunk = SplitTrunk(config, params.size)
        self.ab = _AbBins(self.trunk.l_net, params, 1, width)
        c, side = output_map(self.trunk.ab_net, 2, params.size)
        self.l_decoder = UpDecoder(c, params.l_bins, side, params.target_side(), width)
        self.rebalance = bool(_extra(config, "rebalance", True))

    def prepare(self, data_dir, dataset):
        if self.rebalance:
            self.ab.prior_weights.copy_(_load_ab_weights(self.params, data_dir, dataset))

    def loss(self, batch):
        fl = self.trunk.l_net.features(normalize_L(batch["L"]).unsqueeze(1))
        fa = self.trunk.ab_net.features(normalize_ab(batch["ab"]))
        loss_ab, acc_ab = self.ab.loss(next(reversed(fl.values())), batch, self.rebalance)
        loss_l, m = classification(self.l_decoder(next(reversed(fa.values()))), batch["L_bins"])
        return loss_ab + loss_l, {"accuracy": (acc_ab + m["accuracy"]) / 2, "accuracy_ab": acc_ab,
                                  "accuracy_L": m["accuracy"]}

    @property
    def eval_size(self):
        return self.params.size

    def eval_input(self, images):
        return lab_input(images)

    def eval_features(self, x):
        return self.trunk.features(x)


class Inpainting(_RGB):
    """Context encoder (Pathak et al. 2016) without the adversarial term: the trunk encodes the masked
    crop, a light decoder (``UpDecoder``) predicts the target in normalised RGB, loss a weighted L2.
    ``center``: over the size/2 target square, its visible ``overlap`` border weighted
    ``overlap_weight`` (10, as the paper's code) and the hole 1; ``blocks`` / ``regions``: over the
    hidden pixels of the whole crop. Extra: ``decoder_width`` (64), ``overlap_weight`` (10).
    Evaluation: the trunk on whole (unmasked) normalised RGB images; ``eval_size`` = ``size``."""

    accuracy = "none measured: the loss is a weighted L2 regression of the target's pixels"

    def __init__(self, params, config):
        super().__init__(params, config)
        self.trunk = make_recipe_trunk(config, 3, params.size)
        c, side = output_map(self.trunk, 3, params.size)
        self.center = params.mask == "center"
        t = params.size // 2 if self.center else params.size
        self.decoder = UpDecoder(c, 3, side, t, int(_extra(config, "decoder_width", 64)))
        w = torch.ones(1, 1, t, t)
        if self.center:
            o = params.overlap
            w.fill_(float(_extra(config, "overlap_weight", 10.0)))
            w[..., o : t - o, o : t - o] = 1.0
        self.register_buffer("target_weight", w, persistent=False)

    def loss(self, batch):
        pred = self.decoder(next(reversed(self.trunk.features(normalize_rgb(batch["image"])).values())))
        weight = self.target_weight if self.center else batch["mask"].unsqueeze(1)
        return weighted_mse(pred, normalize_rgb(batch["target"]), weight), {}

    @property
    def eval_size(self):
        return self.params.size


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


class Mae(_RGB):
    """Masked autoencoder (He et al. 2022): the ``vit_tiny`` encoder sees only the visible patches
    (``visible`` in ``ids_keep`` order, per-channel normalised, at their positions), ``MaeDecoder``
    reconstructs every patch; loss the per-patch MSE averaged over the masked patches only, against
    ``target`` normalised like the input (or the stored per-patch-normalised target with
    ``norm_pix``). Extra: ``decoder_width`` (128), ``decoder_depth`` (2), ``decoder_heads`` (4).
    Evaluation: the encoder on all patches of a normalised RGB image, tokens after blocks 4/8/12 as
    maps; ``eval_size`` = ``size``."""

    accuracy = "none measured: the loss is the MSE of the masked patches' pixels"

    def __init__(self, params, config):
        super().__init__(params, config)
        if config.trunk != "vit_tiny":
            raise ConfigError(f"mae trains a ViT encoder: trunk must be vit_tiny, not {config.trunk!r}")
        self.trunk = make_trunk("vit_tiny", 3, image_size=params.size, patch=params.patch)
        self.decoder = MaeDecoder(self.trunk.out_channels, params.size // params.patch, params.patch ** 2 * 3,
                                  int(_extra(config, "decoder_width", 128)), int(_extra(config, "decoder_depth", 2)),
                                  int(_extra(config, "decoder_heads", 4)))

    def _patches(self, x):
        """uint8 (B, n, p*p*3) -> per-channel normalised, same layout; float targets pass as stored."""
        if x.is_floating_point():
            return x.float()
        b, n, d = x.shape
        mean = torch.tensor(RGB_MEAN, device=x.device)
        std = torch.tensor(RGB_STD, device=x.device)
        return ((x.view(b, n, d // 3, 3).float() / 255.0 - mean) / std).view(b, n, d)

    def loss(self, batch):
        tokens = self.trunk.encode(self._patches(batch["visible"]), batch["ids_keep"])
        pred = self.decoder(tokens, batch["ids_restore"])
        per_patch = ((pred.float() - self._patches(batch["target"])) ** 2).mean(-1)
        mask = batch["mask"].float()
        return (per_patch * mask).sum() / mask.sum().clamp(min=1.0), {}

    @property
    def eval_size(self):
        return self.params.size


__all__ = ["RGB_MEAN", "RGB_STD", "normalize_rgb", "normalize_L", "normalize_ab", "lab_input", "standardize",
           "classification", "soft_cross_entropy", "info_nce", "weighted_mse", "MLP", "UpDecoder", "MaeDecoder",
           "SplitTrunk", "Rotation", "Jigsaw", "Context", "Exemplar", "Contrastive", "Colorization", "SplitBrain",
           "Inpainting", "Mae"]
