"""Masked autoencoding (He et al., CVPR 2022, "Masked Autoencoders Are Scalable Vision Learners").

A RandomResizedCrop of the source (MAE's: area 0.2-1, aspect 3/4-4/3) resized to ``size``, flipped
with probability ``flip_prob``, cut into L = (size / patch)^2 patches. Exactly ``L - int(L * (1 -
mask_ratio))`` patches are masked in every sample (147 of 196 for the defaults: the count, not an
average), chosen as MAE's ``random_masking`` does: argsort of uniform noise, the first ``len_keep``
kept. Patches are flattened in MAE's ``patchify`` order: (row, column) of the patch, then
(y, x, channel) inside it.

Plan / JSON: ``crop_box`` (source px), ``flip``, ``ids_keep`` (kept patch indices, in the order the
encoder sees them), ``ids_restore`` (argsort of the shuffle: unshuffles encoder + mask tokens),
``num_masked``, ``label`` = 0 (no class).
Fields: ``image.png`` (size, size, 3) uint8; ``visible.npy`` (len_keep, patch^2 * 3) uint8, the kept
patches in ``ids_keep`` order; ``target.npy`` (L, patch^2 * 3): all patches, uint8, or float16 with
``norm_pix`` (each patch of pixels/255 minus its mean, over its variance + 1e-6 square-rooted: MAE's
``norm_pix_loss`` target); ``mask.npy`` (L,) uint8, 1 = masked, in patch order; ``ids_keep.npy``,
``ids_restore.npy`` int16.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config import MAX_SIDE, SIDE_WHY, check_fractions, check_limits, check_probabilities
from ..geometry import random_resized_box, view
from ..registry import Field, Task, TrainerSpec, register_task


@dataclass(frozen=True)
class MAEParams:
    size: int = 224
    patch: int = 16
    mask_ratio: float = 0.75  # masked fraction of the patches, exact per sample
    crop_scale: tuple[float, float] = (0.2, 1.0)  # RandomResizedCrop area fraction (MAE pre-training)
    crop_ratio: tuple[float, float] = (0.75, 1.3333333333333333)  # aspect ratio range of the crop
    flip_prob: float = 0.5
    norm_pix: bool = False  # target = per-patch normalised pixels (float16)
    min_side: int = 32

    LIMITS = {"size": (MAX_SIDE, SIDE_WHY)}  # not a field: see config.check_limits
    MAX_GRID = 128  # patches a side: ids_keep/ids_restore are int16 and every sample's JSON lists them

    def validate(self):
        check_limits(self)
        if self.size < 1:
            raise ValueError("size: must be at least 1")
        if self.patch < 1:
            raise ValueError("patch: must be at least 1")
        if self.size % self.patch:
            near = [d for d in range(max(1, self.patch // 2), 2 * self.patch + 1) if self.size % d == 0]
            sizes = sorted({self.size - self.size % self.patch, self.size - self.size % self.patch + self.patch} - {0})
            raise ValueError(f"patch: {self.patch} does not divide size {self.size} ({self.size} / {self.patch} = "
                             f"{self.size / self.patch:g}); set patch to a divisor of size"
                             + (f" ({', '.join(map(str, near[:6]))})" if near else "")
                             + f" or size to a multiple of patch ({' or '.join(map(str, sizes))})")
        side, cap = self.size // self.patch, self.MAX_GRID
        if side > cap:
            raise ValueError(f"patch: size {self.size} / patch {self.patch} = {side} patches a side ({side * side} in "
                             f"all), above the limit of {cap} a side (ids are stored as int16 and listed in every "
                             f"sample's JSON; MAE: 224 / 16 = 14); raise patch to >= {-(-self.size // cap)} or "
                             f"lower size to <= {cap * self.patch}")
        if not 0 <= self.mask_ratio < 1:
            raise ValueError("mask_ratio: must be in [0, 1)")
        if self.len_keep < 1:
            n = self.num_patches
            raise ValueError(f"mask_ratio: {self.mask_ratio} leaves int({n} x (1 - {self.mask_ratio})) = 0 of the "
                             f"{n} patches visible; lower mask_ratio to <= {math.floor((1 - 1 / n) * 1e4) / 1e4} "
                             f"or lower patch (more patches)")
        check_fractions(self, "crop_scale")
        lo, hi = self.crop_ratio
        if not 0 < lo <= hi:
            raise ValueError("crop_ratio: need 0 < min <= max")
        check_probabilities(self, "flip_prob")

    @property
    def num_patches(self) -> int:
        return (self.size // self.patch) ** 2

    @property
    def len_keep(self) -> int:
        return int(self.num_patches * (1 - self.mask_ratio))  # MAE's own rounding


def plan(p: MAEParams, rng: np.random.Generator, width: int, height: int, part: int = 0) -> dict:
    box = random_resized_box(rng, width, height, p.crop_scale, p.crop_ratio)
    flip = bool(rng.random() < p.flip_prob)
    ids_shuffle = np.argsort(rng.random(p.num_patches), kind="stable")
    ids_restore = np.argsort(ids_shuffle, kind="stable")
    return {"crop_box": box, "flip": flip, "ids_keep": ids_shuffle[: p.len_keep].tolist(),
            "ids_restore": ids_restore.tolist(), "num_masked": p.num_patches - p.len_keep, "label": 0,
            "views": [view(box, (p.size, p.size))]}


def patchify(image: np.ndarray, patch: int) -> np.ndarray:
    """(H, W, C) -> (H/p * W/p, p * p * C), MAE's order."""
    h, w, c = image.shape
    x = image.reshape(h // patch, patch, w // patch, patch, c).transpose(0, 2, 1, 3, 4)
    return x.reshape(-1, patch * patch * c)


def unpatchify(patches: np.ndarray, patch: int, side: int) -> np.ndarray:
    n = side // patch
    x = patches.reshape(n, n, patch, patch, -1).transpose(0, 2, 1, 3, 4)
    return x.reshape(side, side, -1)


def finish(p: MAEParams, views: list[np.ndarray], plan: dict) -> dict:
    image = np.ascontiguousarray(views[0][:, ::-1] if plan["flip"] else views[0])
    patches = patchify(image, p.patch)
    keep = np.asarray(plan["ids_keep"], np.int64)
    restore = np.asarray(plan["ids_restore"], np.int64)
    mask = np.ones(p.num_patches, np.uint8)
    mask[: len(keep)] = 0
    mask = mask[restore]  # back to patch order, as MAE does
    target = patches
    if p.norm_pix:
        x = patches.astype(np.float32) / 255.0
        mean = x.mean(axis=1, keepdims=True)
        var = x.var(axis=1, keepdims=True)
        target = ((x - mean) / np.sqrt(var + 1e-6)).astype(np.float16)
    return {"image": image, "visible": np.ascontiguousarray(patches[keep]), "target": np.ascontiguousarray(target),
            "mask": mask, "ids_keep": keep.astype(np.int16), "ids_restore": restore.astype(np.int16)}


def _dim(p: MAEParams) -> int:
    return p.patch * p.patch * 3


# ---------------------------------------------------------------- what other parts need (Task fields)
def draw(sample, meta, ctx):
    """The image, and the image with masked patches greyed out (what the encoder sees)."""
    from ..drawing import tagged

    img = np.asarray(sample["image"])
    mask = np.asarray(sample["mask"]).astype(bool)
    side = int(round(np.sqrt(len(mask))))
    p = img.shape[0] // side
    seen = img.copy()
    for k in np.flatnonzero(mask):
        r, c = divmod(int(k), side)
        seen[r * p : (r + 1) * p, c * p : (c + 1) * p] = 128
    return tagged([(img, "image"), (seen, "visible")]), f"{int(mask.sum())} of {len(mask)} masked"


def paper_baseline(path, rng, p):
    """MAE-style loader (He et al., main_pretrain.py): RandomResizedCrop + flip with PIL, then NumPy
    patchify and random_masking (argsort of uniform noise)."""
    from PIL import Image

    from .contrastive import pil_random_resized_crop

    img = pil_random_resized_crop(Image.open(path).convert("RGB"), rng, p, Image.BICUBIC)
    if rng.random() < p.flip_prob:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    a = np.asarray(img)
    n = p.size // p.patch
    patches = a.reshape(n, p.patch, n, p.patch, 3).transpose(0, 2, 1, 3, 4).reshape(n * n, -1)
    ids_shuffle = np.argsort(rng.random(n * n))
    ids_restore = np.argsort(ids_shuffle)
    keep = int(n * n * (1 - p.mask_ratio))
    mask = np.ones(n * n, np.uint8)
    mask[:keep] = 0
    return (a, patches[ids_shuffle[:keep]], patches, mask[ids_restore], ids_restore), 0


def pixel_targets(out, m: dict, p: MAEParams) -> list[str]:
    """inspect's label lines: the target is pixels, and the masked share (exact: from the params)."""
    n, k = p.num_patches, p.num_patches - p.len_keep
    return [f"labels: none (cls is always 0): the target is the pixels of all {n} patches of {p.patch} x {p.patch} px "
            f"(target.npy{', normalised per patch: norm_pix' if p.norm_pix else ''}); {k} of {n} patches masked in "
            f"every sample ({k / n:.1%}; mask_ratio {p.mask_ratio:g}), and the loss is scored on those"]


TASK = register_task(Task(
    name="mae",
    params=MAEParams,
    plan=plan,
    finish=finish,
    fields=(
        Field("image", "png", "uint8", lambda p: (p.size, p.size, 3), "the (flipped) crop", channels=True),
        Field("visible", "npy", "uint8", lambda p: (p.len_keep, _dim(p)), "kept patches, ids_keep order"),
        Field("target", "npy", "uint8 (float16 with norm_pix)", lambda p: (p.num_patches, _dim(p)),
              "all patches in patch order (normalised per patch with norm_pix)"),
        Field("mask", "npy", "uint8", lambda p: (p.num_patches,), "1 = masked, patch order"),
        Field("ids_keep", "npy", "int16", lambda p: (p.len_keep,), "kept patch indices", ids=True),
        Field("ids_restore", "npy", "int16", lambda p: (p.num_patches,), "unshuffle indices", ids=True),
    ),
    num_classes=lambda p: 1,
    summary="reconstruct the masked patches (exactly mask_ratio of them) from the visible ones",
    paper="He et al. 2022, Masked Autoencoders Are Scalable Vision Learners",
    draw=draw,
    baseline=paper_baseline,
    pixel_targets=pixel_targets,
    # Training (pretextgen train): CPU preset for 32 px CIFAR-like photos on 2 cores; GPU preset
    # ResNet-18 (CIFAR stem) with AMP. Sample params per preset: what `pretextgen compare` builds.
    trainer=TrainerSpec(
        recipe="pretextgen.training.recipes.masked:Mae", eval_input="rgb",
        presets={"cpu": dict(trunk="vit_tiny", epochs=8, batch_size=128, optimizer="adamw", lr=0.001, weight_decay=0.05, warmup_epochs=1),
                 "gpu": dict(trunk="vit_tiny", epochs=200, batch_size=256, optimizer="adamw", lr=0.0015, weight_decay=0.05, warmup_epochs=10, amp=True, num_workers=8)},
        # CPU: 8 px patches (16 tokens) and per-patch normalised targets: beat the random ViTs beyond
        # the noise at a CPU budget; 4 px patches at the same training compute did not (BENCHMARKS.md).
        samples={"cpu": {"size": 32, "patch": 8, "norm_pix": True},
                 "gpu": {"size": 32, "patch": 4}}),
))
