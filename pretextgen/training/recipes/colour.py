"""The colour recipes: predict channels from channels. Colorization (L -> ab bins) and the
split-brain autoencoder (L -> ab and ab -> L)."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from ...errors import PretextgenError
from ..heads import UpDecoder
from ..inputs import lab_input, normalize_ab, normalize_L
from ..losses import classification, soft_cross_entropy
from ..models import Trunk
from ..recipe import Recipe
from .base import _L, extra, make_recipe_trunk, output_map


def _load_ab_weights(params, data_dir, dataset) -> torch.Tensor:
    """The class-rebalancing weights of the ab bins (Q,): the build's ab_prior.json; for live samples
    the ``prior`` file of the params, else the same prior pass a build runs, over the live sources."""
    from ...parallel import default_workers
    from ...tasks.colorization import PRIOR_FILE, compute_prior, load_prior

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
        from ...lab import gamut_bins

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


class Colorization(_L):
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
        self.ab = _AbBins(self.trunk, params, 1, int(extra(config, "decoder_width", 64)))
        self.rebalance = bool(extra(config, "rebalance", True))

    def prepare(self, data_dir, dataset):
        if self.rebalance:
            self.ab.prior_weights.copy_(_load_ab_weights(self.params, data_dir, dataset))

    def loss(self, batch):
        last = next(reversed(self.trunk.features(normalize_L(batch["L"]).unsqueeze(1)).values()))
        loss, acc = self.ab.loss(last, batch, self.rebalance)
        return loss, {"accuracy": acc}


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
        width = int(extra(config, "decoder_width", 64))
        self.trunk = SplitTrunk(config, params.size)
        self.ab = _AbBins(self.trunk.l_net, params, 1, width)
        c, side = output_map(self.trunk.ab_net, 2, params.size)
        self.l_decoder = UpDecoder(c, params.l_bins, side, params.target_side(), width)
        self.rebalance = bool(extra(config, "rebalance", True))

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
