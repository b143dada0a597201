"""The contrastive recipes: pull views of one source together against other sources. Exemplar
(surrogate classes of transformed patches) and contrastive (SimCLR's groups of views).

Both share ``_Contrast``: the trunk, its pooled last stage through a projection MLP
(Linear-BN-ReLU-Linear to ``proj_dim``), and one loss of ``training.losses`` chosen by
``extra.loss``, with in-batch negatives or a memory of them (``extra.memory``). Extra settings:

- ``loss``: ``info_nce`` (default; ``temperature``, ``beta``, ``tau_plus``), ``contrastive``
  (``margin``, default 1.0), ``triplet`` (``margin`` 0.2, ``mining`` semi-hard), ``lifted_structured``
  (``margin`` 1.0, ``smooth`` true), ``npair`` (``l2_reg`` 0.002). The margin losses read
  L2-normalised embeddings (distances then lie in [0, 2], so the margins mean the same at every
  width); npair reads them unnormalised with Sohn's norm penalty; info_nce normalises in the loss.
- ``memory``: ``none`` (default: the batch's other groups are the negatives, gathered from every
  rank under torchrun), ``queue`` (MoCo v2: a momentum key encoder, ``momentum`` 0.99, and a queue
  of ``queue_size`` 4096 keys; view 0 is the query, view 1 the key) or ``bank`` (Wu et al. 2018:
  one entry per sample of the build, ``bank_momentum`` 0.5, ``negatives`` 4096 drawn per step).
  Both memories train with info_nce (``temperature`` 0.2 by default, MoCo v2's).
- ``mask_same_source`` (true): two groups cut from the same photo (a build with more samples than
  photos) are not each other's negatives; the sample JSON's ``source`` says which photo. The
  memories drop a query's own earlier keys (queue) and its own entry (bank) from its negatives, but
  not other samples of its photo.

How pairs, triplets and groups come from the samples: the k views of a sample form its group
(``groups``); info_nce, contrastive and lifted_structured compare every view with every other in
the batch; triplet and npair take view 0 as the anchor and view 1 as the positive; triplet's
negatives are mined from the other samples' two views (``mining`` none: the next sample's view 1).
Every recipe reports ``alignment`` and ``uniformity`` (Wang & Isola) of the L2-normalised
projections of views 0 and 1, per step, for ``metrics.csv``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..heads import MLP
from ..inputs import normalize_rgb
from ..losses import (MINING, alignment, contrastive, gather, info_nce, info_nce_keys, lifted_structured, npair,
                      retrieval_accuracy, triplet, uniformity)
from ..memory import MemoryBank, MomentumQueue
from .base import _RGB, extra, make_recipe_trunk, source_ids

LOSSES = ("info_nce", "contrastive", "triplet", "lifted_structured", "npair")
MEMORIES = ("none", "queue", "bank")
DEFAULT_MARGIN = {"contrastive": 1.0, "triplet": 0.2, "lifted_structured": 1.0}


class _Contrast(_RGB):
    field = ""
    default_temperature = 0.5

    def __init__(self, params, config, size):
        super().__init__(params, config)
        self.trunk = make_recipe_trunk(config, 3, size)
        c = self.trunk.out_channels
        dim = int(extra(config, "proj_dim", 128))
        self.projector = MLP((c, int(extra(config, "proj_hidden", c)), dim), bn=True)
        self.loss_name = str(extra(config, "loss", "info_nce"))
        self.memory_kind = str(extra(config, "memory", "none"))
        if self.loss_name not in LOSSES:
            raise ConfigError(f"extra.loss={self.loss_name!r}: one of {', '.join(LOSSES)}")
        if self.memory_kind not in MEMORIES:
            raise ConfigError(f"extra.memory={self.memory_kind!r}: one of {', '.join(MEMORIES)}")
        if self.memory_kind != "none" and self.loss_name != "info_nce":
            raise ConfigError(f"extra.memory={self.memory_kind} trains with extra.loss=info_nce, not {self.loss_name}")
        default_t = 0.2 if self.memory_kind != "none" else self.default_temperature
        self.temperature = float(extra(config, "temperature", default_t))
        self.beta, self.tau_plus = float(extra(config, "beta", 0.0)), float(extra(config, "tau_plus", 0.0))
        self.margin = float(extra(config, "margin", DEFAULT_MARGIN.get(self.loss_name, 0.0)))
        self.mining = str(extra(config, "mining", "semi-hard"))
        if self.mining not in MINING:
            raise ConfigError(f"extra.mining={self.mining!r}: one of {', '.join(MINING)}")
        self.smooth = bool(extra(config, "smooth", True))
        self.l2_reg = float(extra(config, "l2_reg", 0.002))
        self.mask_same_source = bool(extra(config, "mask_same_source", True))
        if self.memory_kind == "queue":
            self.memory = MomentumQueue(nn.Sequential(self.trunk, self.projector), int(extra(config, "queue_size", 4096)),
                                        dim, float(extra(config, "momentum", 0.99)))
        elif self.memory_kind == "bank":
            self.memory = MemoryBank(dim, float(extra(config, "bank_momentum", 0.5)))
            self.bank_negatives = int(extra(config, "negatives", 4096))

    def groups(self, batch) -> torch.Tensor:
        """(B,) int64: each sample's group id, unique over the build (and so over ranks)."""
        raise NotImplementedError

    def prepare(self, data_dir, dataset):
        if self.memory_kind == "bank":
            if data_dir is None:
                raise ConfigError("extra.memory=bank keeps one entry per sample of a build; train from a build "
                                  "(--data), or use extra.memory=queue with live samples")
            from ...shards import read_manifest

            self.memory.resize(int(read_manifest(data_dir)["samples"]))

    def _exclude(self, groups, sources):
        if not self.mask_same_source:
            return None
        return (sources[:, None] == sources[None, :]) & (groups[:, None] != groups[None, :])

    def loss(self, batch):
        views = normalize_rgb(batch[self.field])  # (B, k, 3, s, s)
        b, k = views.shape[:2]
        if self.memory_kind == "queue":
            return self._queue_loss(batch, views)
        z = self.projector(self.trunk(views.flatten(0, 1)))  # (B k, D), sample-major
        measures = self._measures(z.view(b, k, -1)[:, 0], z.view(b, k, -1)[:, 1])
        if self.memory_kind == "bank":
            loss, metrics = self._bank_loss(batch, z, k)
            return loss, {**metrics, **measures}
        groups = self.groups(batch)
        sources = source_ids(batch, groups)
        if self.loss_name in ("triplet", "npair"):
            pairs = z.view(b, k, -1)
            anchor, positive = gather(pairs[:, 0]), gather(pairs[:, 1])
            groups, sources = gather(groups), gather(sources)
            exclude = self._exclude(groups, sources)
            if self.loss_name == "npair":
                loss = npair(anchor, positive, self.l2_reg, exclude)
            else:
                anchor, positive = F.normalize(anchor, dim=1), F.normalize(positive, dim=1)
                loss = triplet(anchor, positive, positive.roll(-1, 0), self.margin, self.mining, exclude)
            both = torch.stack([anchor, positive], 1).flatten(0, 1)
            acc = retrieval_accuracy(both, groups.repeat_interleave(2), None if exclude is None else
                                     exclude.repeat_interleave(2, 0).repeat_interleave(2, 1))
            return loss, {"accuracy": acc, **measures}
        z, groups, sources = gather(z), gather(groups.repeat_interleave(k)), gather(sources.repeat_interleave(k))
        exclude = self._exclude(groups, sources)
        if self.loss_name == "info_nce":
            loss, metrics = info_nce(z, groups, self.temperature, self.beta, self.tau_plus, exclude)
            return loss, {**metrics, **measures}
        z = F.normalize(z.float(), dim=1)
        if self.loss_name == "contrastive":
            loss = contrastive(z, groups, self.margin, exclude)
        else:
            loss = lifted_structured(z, groups, self.margin, self.smooth, exclude)
        return loss, {"accuracy": retrieval_accuracy(z, groups, exclude), **measures}

    @staticmethod
    def _measures(a, b) -> dict:
        with torch.no_grad():
            a, b = F.normalize(a.float(), dim=1), F.normalize(b.float(), dim=1)
            return {"alignment": alignment(a, b), "uniformity": uniformity(a)}

    def _queue_loss(self, batch, views):
        q = self.projector(self.trunk(views[:, 0]))
        keys = self.memory.keys(nn.Sequential(self.trunk, self.projector), views[:, 1])
        negatives, negative_ids = self.memory.negatives()
        groups = self.groups(batch)
        loss, metrics = info_nce_keys(q, keys, negatives, self.temperature, self.beta, self.tau_plus,
                                      exclude=negative_ids[None, :] == groups[:, None])
        self.memory.push(keys, groups)
        return loss, {**metrics, **self._measures(q, keys)}

    def _bank_loss(self, batch, z, k):
        slots = (batch["index"] % len(self.memory.vectors)).repeat_interleave(k)
        drawn = self.memory.draw(self.bank_negatives, z.device)
        own, negatives = self.memory.vectors[slots].clone(), self.memory.vectors[drawn].clone()
        loss, metrics = info_nce_keys(z, own, negatives, self.temperature, self.beta, self.tau_plus,
                                      exclude=drawn[None, :] == slots[:, None])
        self.memory.update(slots, z.detach())
        return loss, metrics


class Exemplar(_Contrast):
    """Exemplar CNN (Dosovitskiy et al. 2014) without its N-way softmax: the paper trains an N-way
    classifier over N surrogate classes, but here N is the number of samples (it grows with the
    build, every class is seen once an epoch and its output row would barely train), so the K
    transformed patches of each class are instead pulled together against the other classes of
    the batch (the module docstring's losses; positives: the other views of the same class label).
    Extra: those of the module docstring; ``temperature`` 0.1 (SupCon's, for K > 2 positives per
    anchor), ``proj_dim`` (128), ``proj_hidden`` (C). Input: normalised RGB; ``eval_size`` =
    ``patch``."""

    accuracy = ("share of patches whose most similar other patch in the batch (cosine, projected) is a transform "
                "of the same seed patch: a nearest-neighbour score, not the paper's N-way classifier (with "
                "extra.memory: share of queries whose own key or bank entry beats every negative)")

    field = "patches"
    default_temperature = 0.1

    def __init__(self, params, config):
        super().__init__(params, config, params.patch)

    def groups(self, batch):
        return batch["label"]

    @property
    def eval_size(self):
        return self.params.patch


class Contrastive(_Contrast):
    """SimCLR (Chen et al. 2020): trunk pooled -> projection MLP (Linear-BN-ReLU-Linear, 128-d) ->
    NT-Xent over the k views of each group against every other view of the batch; the other losses
    and memories of the module docstring by ``extra.loss`` and ``extra.memory``. Extra: those of the
    module docstring; ``temperature`` 0.5 (SimCLR's value for small batches; 0.1-0.2 suits batches
    of thousands), ``proj_dim`` (128), ``proj_hidden`` (C). Input: normalised RGB; ``eval_size`` =
    ``size``. Train from live samples (``--source``) to see fresh views every epoch."""

    accuracy = ("share of views whose most similar other view in the batch (cosine, projected) is a view of the "
                "same image; a larger batch (more negatives) makes it harder (with extra.memory: share of queries "
                "whose own key or bank entry beats every negative)")

    field = "views"

    def __init__(self, params, config):
        super().__init__(params, config, params.size)

    def groups(self, batch):
        return batch["index"]

    @property
    def eval_size(self):
        return self.params.size
