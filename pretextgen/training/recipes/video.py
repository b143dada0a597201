"""The video recipes: what frames of one clip say about each other. Frame order (are three frames in
order?), track (is this patch the one tracked 30 frames on?) and video colorization (copy a
reference frame's colours by pointing at its pixels). Each trains a 2D trunk on single frames, so
that every video trunk is probed on images like the image tasks' trunks, and read on DAVIS by
``pretextgen eval --davis``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import PretextgenError
from ..heads import MLP
from ..inputs import normalize_L, normalize_rgb
from ..losses import classification, triplet
from .base import _L, _RGB, extra, make_recipe_trunk, output_map, source_ids


class FrameOrder(_RGB):
    """Shuffle and Learn (Misra et al. 2016): one trunk per frame with shared weights, each frame's
    last-stage map flattened through a shared ``Linear(C h w, frame_width)`` + batch norm + ReLU
    (the paper's fc6 reads CaffeNet's pool5 map, so where things are in the frame reaches the head),
    then ``Linear -> ReLU -> Linear`` to 2 classes (ordered or not); cross-entropy.

    - The head reads the three frame vectors in the shown order and, with ``differences`` (true),
      also |f1 - f2|, |f2 - f3| and |f1 - f3|: in an ordered tuple the outer frames are the farthest
      apart, and without these the head has to find that subtraction itself. Without them (and
      without the batch norm, whose absence let every unit of the frame fc die) the CPU preset stayed
      at chance (BENCHMARKS.md).
    - ``pooled`` (false) averages the map first, as the other recipes' heads do: a pooled vector
      barely changes as an object moves.

    Extra: ``frame_width`` (128), ``head_width`` (256), ``differences``, ``pooled``.

    Batch norm: the 3 B frames of a batch go through the trunk as one batch, so its statistics are
    shared by all three frames, as the paper's shared-weight towers share theirs. They cannot tell
    the order: each statistic is over ordered and shuffled tuples alike and over all three positions
    (a frame's position is what the head reads, not what the trunk normalises by).

    The sample mix is the build's (``ordered_fraction``, 0.5 by default; the paper's best was 0.25).
    Input: normalised RGB frames; ``eval_size`` = ``size``."""

    accuracy = "top-1 of the 2-way classifier of whether the three frames are in order (b,c,d or d,c,b)"

    def __init__(self, params, config):
        super().__init__(params, config)
        self.trunk = make_recipe_trunk(config, 3, params.size)
        w, hw = int(extra(config, "frame_width", 128)), int(extra(config, "head_width", 256))
        self.pooled = bool(extra(config, "pooled", False))
        self.differences = bool(extra(config, "differences", True))
        c, side = output_map(self.trunk, 3, params.size)
        self.frame_fc = nn.Sequential(nn.Linear(c if self.pooled else c * side * side, w, bias=False),
                                      nn.BatchNorm1d(w), nn.ReLU(inplace=True))
        self.head = MLP(((6 if self.differences else 3) * w, hw, 2))

    def logits(self, frames):
        """(B, 2) logits (shuffled, ordered) for (B, 3, 3, s, s) uint8 frames in the shown order."""
        x = normalize_rgb(frames).flatten(0, 1)
        f = self.trunk(x) if self.pooled else next(reversed(self.trunk.features(x).values())).flatten(1)
        f1, f2, f3 = self.frame_fc(f).view(frames.shape[0], 3, -1).unbind(1)
        parts = [f1, f2, f3] + ([(f1 - f2).abs(), (f2 - f3).abs(), (f1 - f3).abs()] if self.differences else [])
        return self.head(torch.cat(parts, 1))

    def loss(self, batch):
        return classification(self.logits(batch["frames"]), batch["label"])

    @property
    def eval_size(self):
        return self.params.size


class Track(_RGB):
    """Wang & Gupta 2015: a siamese trunk, its pooled features through ``Linear -> ReLU -> Linear``
    to an L2-normalised ``embed`` (128) vector; squared distances between unit vectors, which are
    2 x the paper's 1 - cosine. The ranking loss ``max(0, D(q, p) - D(q, n) + margin)`` with both
    query and positive as anchors (``losses.triplet``), against two negatives each:

    - the stored one (the build's: another clip, a distant frame, or elsewhere in the frame: a
      random negative);
    - the hardest in the batch among the other samples' queries and positives from other clips
      (``triplet(mining="hard")``; patches of the anchor's own clip are left out, since a patch
      tracked elsewhere in one clip may show the same thing).

    The paper picks the 4 highest-loss of a batch's random patches; here one random and one hard,
    averaged. The stored ``label`` (the negative's kind) is never read. Extra: ``embed`` (128),
    ``margin`` (1.0: the paper's 0.5 of 1 - cosine), ``hard`` (true: the in-batch negative).
    Input: normalised RGB patches; ``eval_size`` = ``size``."""

    accuracy = "share of queries nearer their tracked positive than their stored negative"

    def __init__(self, params, config):
        super().__init__(params, config)
        self.trunk = make_recipe_trunk(config, 3, params.size)
        c = self.trunk.out_channels
        self.head = MLP((c, c, int(extra(config, "embed", 128))))
        self.margin = float(extra(config, "margin", 1.0))
        self.hard = bool(extra(config, "hard", True))

    def embed(self, patches):
        return F.normalize(self.head(self.trunk(normalize_rgb(patches))).float(), dim=1)

    def loss(self, batch):
        patches = batch["patches"]  # (B, 3, 3, s, s): query, positive, negative
        b = patches.shape[0]
        q, p, n = self.embed(patches.flatten(0, 1)).view(b, 3, -1).unbind(1)
        loss = (triplet(q, p, n, self.margin) + triplet(p, q, n, self.margin)) / 2
        if self.hard:
            clips = source_ids(batch, torch.arange(b, device=q.device))
            same_clip = clips[:, None] == clips[None, :]
            loss = loss + (triplet(q, p, margin=self.margin, mining="hard", exclude=same_clip)
                           + triplet(p, q, margin=self.margin, mining="hard", exclude=same_clip)) / 2
        nearer = ((q - p) ** 2).sum(1) < ((q - n) ** 2).sum(1)
        return loss, {"accuracy": nearer.float().mean()}

    @property
    def eval_size(self):
        return self.params.size


def point_and_copy(targets: torch.Tensor, reference: torch.Tensor, ref_ids: torch.Tensor, clusters: int,
                   temperature: float) -> torch.Tensor:
    """Vondrick et al.'s pointer: each target position's distribution over the colour clusters is
    the reference positions' one-hot clusters weighted by softmax_j(<f_target, f_ref_j> / T).
    ``targets`` (B, T, D, h, w), ``reference`` (B, D, h, w), ``ref_ids`` (B, h, w) int64; returns
    probabilities (B, T, clusters, h, w)."""
    b, t, d, h, w = targets.shape
    ref = reference.flatten(2)  # (B, D, hw)
    tgt = targets.flatten(3).permute(0, 1, 3, 2).reshape(b, t * h * w, d)  # (B, T hw, D)
    attn = torch.softmax(torch.bmm(tgt, ref) / temperature, dim=2)  # (B, T hw, hw)
    onehot = F.one_hot(ref_ids.flatten(1), clusters).float()  # (B, hw, K)
    probs = torch.bmm(attn, onehot)  # (B, T hw, K)
    return probs.view(b, t, h, w, clusters).permute(0, 1, 4, 2, 3)


class VideoColorization(_L):
    """Tracking Emerges by Colorizing Videos (Vondrick et al. 2018): one trunk on each grayscale
    frame (Lab L), its last stage through a 1x1 convolution to an ``embed`` (64)-channel map at the
    labels' side (bilinear where the trunk's stride does not give ``label_size``; the small trunk
    at ``size`` = 8 x ``label_size`` gives it exactly). Each target position points at the
    reference's positions (softmax of dot products over ``temperature``, 1.0) and copies their
    colour clusters (``point_and_copy``); loss: cross-entropy of the copied distribution at the
    target's cluster id. The colours are the reference's own cluster ids (the sample's ``bins[0]``);
    the model never sees colour. ``prepare`` reads the build's ``ab_clusters.npy`` into a buffer (the
    checkpoint carries the centres, so copied ids can be drawn as colours) and checks that its count
    is the params' ``clusters``. Extra: ``embed`` (64), ``temperature`` (1.0). Input: L / 50 - 1;
    ``eval_size`` = ``size`` (labeled images converted to L)."""

    accuracy = ("per-pixel top-1: share of target pixels whose most likely copied colour cluster is their own "
                "(chance: the share of the most common cluster)")

    def __init__(self, params, config):
        super().__init__(params, config)
        self.trunk = make_recipe_trunk(config, 1, params.size)
        c, _ = output_map(self.trunk, 1, params.size)
        self.embed = nn.Conv2d(c, int(extra(config, "embed", 64)), 1)
        self.temperature = float(extra(config, "temperature", 1.0))
        self.register_buffer("ab_centres", torch.zeros(params.clusters, 2))

    def prepare(self, data_dir, dataset):
        from ...tasks.video_colorization import CLUSTERS_FILE

        if data_dir is None:
            raise PretextgenError("video_colorization trains from a build folder (its ab_clusters.npy); "
                                  "build one with `pretextgen build --task video_colorization`")
        path = Path(data_dir) / CLUSTERS_FILE
        if not path.exists():
            raise PretextgenError(f"{data_dir} holds no {CLUSTERS_FILE}; rebuild it with this version of pretextgen")
        centres = np.load(path).astype(np.float32)
        if centres.shape != (self.params.clusters, 2):
            raise PretextgenError(f"{path}: {centres.shape[0]} colour clusters, but the build's params say "
                                  f"{self.params.clusters}")
        self.ab_centres.copy_(torch.from_numpy(centres))

    def _maps(self, gray):
        """(N, embed, label_size, label_size) for (N, 1, s, s) uint8 L (0..255)."""
        m = self.embed(next(reversed(self.eval_features(normalize_L(gray.float() * (100 / 255))).values())))
        side = self.params.label_size
        if m.shape[-1] != side or m.shape[-2] != side:
            m = F.interpolate(m, size=(side, side), mode="bilinear", align_corners=False)
        return m.float()

    def loss(self, batch):
        gray, bins = batch["gray"], batch["bins"]  # (B, 1 + T, s, s) uint8 L x 255/100; (B, 1 + T, l, l) ids
        b, n = gray.shape[:2]
        maps = self._maps(gray.flatten(0, 1).unsqueeze(1)).view(b, n, -1, *bins.shape[-2:])
        probs = point_and_copy(maps[:, 1:], maps[:, 0], bins[:, 0].long(), self.params.clusters, self.temperature)
        target = bins[:, 1:].long()
        loss = -torch.log(probs.gather(2, target.unsqueeze(2)).clamp(min=1e-8)).mean()
        return loss, {"accuracy": (probs.argmax(2) == target).float().mean()}
