"""What the recipes share: their ``TrainConfig.extra`` reader, the trunk a config names, and the RGB
and L evaluations most of them use.

The recipes of the image tasks are grouped by family, one file each: ``spatial`` (rotation,
jigsaw, context: classify where pixels were), ``contrastive`` (exemplar, contrastive: pull views of
one source together), ``colour`` (colorization, split-brain: predict channels from channels) and
``masked`` (inpainting, mae: reconstruct hidden pixels), ``predictive`` (cpc: predict the
patches below from the rows above) and ``video`` (frame_order, track, video_colorization: what
frames of one clip say about each other, learnt by a 2D trunk on single frames). Each task names its class in its
``TrainerSpec`` (``pretextgen/tasks/<task>.py``). Settings a recipe reads from ``TrainConfig.extra``
are listed in its docstring with their defaults. Any trunk of ``models.TRUNKS`` works
(``config.trunk``); ``vit_tiny`` gets ``image_size`` = ``eval_size`` and ``extra.patch`` (default
4). mae needs ``vit_tiny``.
"""
from __future__ import annotations

import zlib

import torch

from ...errors import ConfigError
from ..inputs import lab_input, normalize_rgb
from ..models import Trunk, make_trunk
from ..recipe import Recipe

DEFAULT_WIDTHS = {"small": (32, 64, 128), "resnet18": (64, 128, 256, 512)}


def extra(config, key, default):
    """``config.extra[key]``, or ``default``."""
    return config.extra.get(key, default)


def make_recipe_trunk(config, in_channels: int, size: int, scale: float = 1.0, norm: str | None = None) -> Trunk:
    """``config.trunk`` for ``in_channels`` inputs of ``size`` px; ``scale`` < 1 narrows it (each
    split-brain half is half as wide, so that the two together are one trunk); ``norm``:
    ``extra.norm``, else this default, else batch norm (``models.norm_layer``)."""
    name, kwargs = config.trunk, {}
    norm = extra(config, "norm", norm)
    if norm is not None:
        kwargs["norm"] = norm
    if name == "vit_tiny":
        kwargs = {"image_size": size, "patch": int(extra(config, "patch", 4))}
        if scale != 1.0:
            kwargs["width"] = int(192 * scale)
    elif scale != 1.0 and name in DEFAULT_WIDTHS:
        kwargs["widths"] = tuple(int(w * scale) for w in DEFAULT_WIDTHS[name])
    try:
        return make_trunk(name, in_channels, **kwargs)
    except ValueError as e:
        raise ConfigError(f"trunk: {e}") from None


def source_ids(batch, groups: torch.Tensor) -> torch.Tensor:
    """(B,) int64: a CRC-32 of each sample's source path (the same on every rank, unlike ``hash``);
    where the batch carries no JSON (made by hand), -1 - its group id: every group its own source."""
    if "json" not in batch:
        return -1 - groups
    return torch.tensor([zlib.crc32(str(j.get("source", "")).encode()) for j in batch["json"]], device=groups.device)


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


class _L(Recipe):
    """Shared by the recipes whose trunk sees Lab L (L / 50 - 1) of a ``size`` px frame or image."""

    @property
    def eval_size(self):
        return self.params.size

    def eval_input(self, images):
        return lab_input(images)[:, :1]

    def eval_features(self, x):
        return self.trunk.features(x)
