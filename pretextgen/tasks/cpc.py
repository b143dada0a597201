"""Contrastive predictive coding on images (van den Oord, Li & Vinyals 2018; Hénaff et al. 2019).

A square crop (``crop_scale`` x the shorter source side) is the frame of a ``grid`` x ``grid`` layout
of overlapping patches: patch (r, c) covers frame px [c stride, c stride + patch) x [r stride, r
stride + patch), so neighbours overlap by ``patch - stride`` (CPC v1: 7 x 7 patches of 64 px at
stride 32 over a 256 px crop). Each patch is jittered as in CPC v1 (a random 60 px box inside its 64
px cell, resampled to 64): a box of ``patch - jitter`` frame px at a random offset in its cell, and
each patch is resampled from its own box of source pixels, every box of a sample the same integer
side, so all patches share one resampling phase (see jigsaw: a crop resized once and then cut gives
each column its own interpolation pattern). The whole layout is mirrored with ``flip_prob``.

Colour, not grayscale as v1: the trunks of this project are probed on colour photos beside the
other tasks' trunks, and Hénaff et al. (v2) trained on colour with per-patch augmentation, which
``color_jitter`` and ``gray_prob`` give here (per patch, drawn from (seed, i); off by default, as
v1). The label is 0: the targets are the other patches of the batch, not a class.

Plan / JSON: ``crop_box`` (source px), the layout (``grid``, ``patch``, ``stride``, ``frame`` =
(grid - 1) stride + patch, in frame px), ``boxes`` (one per stored patch, row-major, source px,
integer), ``offsets`` (each patch's jitter offset in its cell, frame px, before the flip), ``flip``,
``gray`` (per patch), ``jitter`` (per patch, per channel [gain, bias], or null), ``label`` = 0;
``views`` are the boxes in row-major order of the unflipped layout.
Fields: ``patches.npy`` (grid^2, patch, patch, 3) uint8, row-major (after the flip: column c of the
stored grid is column grid - 1 - c of the source).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import MAX_SIDE, SIDE_WHY, check_fractions, check_limits, check_probabilities
from ..geometry import apply_color_jitter, draw_color_jitter, random_square, same_side_boxes, to_gray3, view
from ..registry import Field, Task, TrainerSpec, register_task


@dataclass(frozen=True)
class CPCParams:
    grid: int = 7  # patches a side (CPC v1: 7)
    patch: int = 64  # stored patch side in px
    stride: int = 32  # frame px between neighbouring patches (overlap = patch - stride)
    jitter: int = 4  # each patch is a (patch - jitter) px box of its cell, resampled to patch (v1: 60 of 64)
    crop_scale: tuple[float, float] = (0.8, 1.0)  # frame side / shorter source side (v1: 256 of 300)
    flip_prob: float = 0.5  # mirror the whole layout
    color_jitter: float = 0.0  # per patch and channel: gain in [1-j, 1+j], bias in [-20j, 20j] levels (v2-style)
    gray_prob: float = 0.0  # per patch: probability of grayscale (v2-style patch augmentation)
    min_side: int = 32

    LIMITS = {"patch": (MAX_SIDE, SIDE_WHY)}  # not a field: see config.check_limits

    @property
    def frame(self) -> int:
        """The layout's side in frame px: (grid - 1) stride + patch."""
        return (self.grid - 1) * self.stride + self.patch

    def validate(self):
        check_limits(self)
        if self.grid < 2:
            raise ValueError("grid: must be at least 2 (a patch needs a row below it to be predicted)")
        if self.patch < 8:
            raise ValueError("patch: must be at least 8 (the small trunk pools three times by 2)")
        if not 1 <= self.stride <= self.patch:
            raise ValueError(f"stride: must be in [1, patch = {self.patch}] (patches overlap or touch, not leave gaps)")
        if not 0 <= self.jitter < self.patch:
            raise ValueError(f"jitter: must be in [0, patch = {self.patch})")
        if self.frame > MAX_SIDE:
            raise ValueError(f"grid, stride, patch: the layout spans (grid - 1) x stride + patch = {self.frame} px, "
                             f"above {MAX_SIDE}; lower grid or stride")
        check_fractions(self, "crop_scale")
        check_probabilities(self, "flip_prob", "gray_prob")
        if not 0 <= self.color_jitter < 1:
            raise ValueError("color_jitter: must be in [0, 1)")
        if self.min_side < 1:
            raise ValueError("min_side: must be at least 1")


def plan(p: CPCParams, rng: np.random.Generator, width: int, height: int, part: int = 0) -> dict:
    n = p.grid * p.grid
    crop_box = random_square(rng, width, height, p.crop_scale)
    offsets = rng.integers(0, p.jitter + 1, size=(n, 2))  # (dx, dy) per patch, frame px
    flip = bool(rng.random() < p.flip_prob)
    gray = (rng.random(n) < p.gray_prob).tolist() if p.gray_prob > 0 else [False] * n
    jitter = draw_color_jitter(rng, n, p.color_jitter)
    # Patch corners in frame px, then source boxes of one integer side (row-major, unflipped).
    rows, cols = np.divmod(np.arange(n), p.grid)
    xy0 = np.stack([cols * p.stride, rows * p.stride], 1) + offsets
    boxes = same_side_boxes(crop_box, p.frame, xy0, p.patch - p.jitter)
    stored = flipped_order(p.grid) if flip else np.arange(n)
    return {"crop_box": crop_box, "grid": p.grid, "patch": p.patch, "stride": p.stride, "frame": p.frame,
            "boxes": boxes[stored].tolist(), "offsets": offsets.tolist(), "flip": flip, "gray": gray, "jitter": jitter,
            "label": 0,
            "views": [view(b, (p.patch, p.patch)) for b in boxes]}


def flipped_order(grid: int) -> np.ndarray:
    """Row-major patch indices of the mirrored layout: stored patch (r, c) is source patch (r, grid-1-c)."""
    return np.arange(grid * grid).reshape(grid, grid)[:, ::-1].reshape(-1)


def finish(p: CPCParams, views: list[np.ndarray], plan: dict) -> dict:
    patches = np.stack(views)  # row-major, unflipped
    if plan["flip"]:
        patches = patches[flipped_order(p.grid)][:, :, ::-1]
    gray = np.asarray(plan["gray"], bool)
    if gray.any():
        patches = patches.copy()
        patches[gray] = to_gray3(patches[gray])
    if plan["jitter"] is not None:  # per stored patch
        patches = apply_color_jitter(patches, plan["jitter"])
    return {"patches": np.ascontiguousarray(patches)}


def layout(patches: np.ndarray, stride_px: int) -> np.ndarray:
    """The stored patches pasted back at their grid positions (``stride_px`` apart; later patches
    over earlier ones where they overlap): the crop as the patches show it."""
    n, t = len(patches), patches.shape[1]
    g = int(round(np.sqrt(n)))
    side = (g - 1) * stride_px + t
    out = np.zeros((side, side, 3), np.uint8)
    for k, patch in enumerate(patches):
        r, c = divmod(k, g)
        out[r * stride_px:r * stride_px + t, c * stride_px:c * stride_px + t] = patch
    return out


# ---------------------------------------------------------------- what other parts need (Task fields)
def draw(sample, meta, ctx):
    """The crop with the patches' grid drawn over it (the source photo's frame when it is here), the
    patches pasted back at their places, and the patches apart, a gap between them."""
    import cv2

    from ..drawing import COMPACT_HEIGHT, fit, grid, tagged

    patches = np.asarray(sample["patches"])
    p = ctx.params
    g = int(round(np.sqrt(len(patches))))
    panels = []
    src = ctx.source(meta["source"])
    if src is not None:
        x0, y0, x1, y1 = meta["crop_box"]
        crop = np.ascontiguousarray(src[y0:y1, x0:x1])
        if meta.get("flip"):
            crop = np.ascontiguousarray(crop[:, ::-1])
        scale = COMPACT_HEIGHT / crop.shape[0]
        big = cv2.resize(crop, (COMPACT_HEIGHT, COMPACT_HEIGHT), interpolation=cv2.INTER_AREA if scale < 1
                         else cv2.INTER_NEAREST)
        for k, box in enumerate(meta["boxes"]):
            bx0 = (x1 - box[2] if meta.get("flip") else box[0] - x0) * scale
            by0 = (box[1] - y0) * scale
            side = (box[2] - box[0]) * scale
            colour = (230, 60, 30) if k % 2 == 0 else (30, 120, 230)
            cv2.rectangle(big, (int(bx0), int(by0)), (int(bx0 + side) - 1, int(by0 + side) - 1), colour, 1)
        panels.append((big, "source crop, patch boxes"))
    panels.append((layout(patches, p.stride), "patches at their places"))
    panels.append((grid([fit(t, max(8, (COMPACT_HEIGHT - 2 * (g - 1)) // g)) for t in patches], g, 2), "patches"))
    caption = f"{g}x{g} patches of {p.patch} px, stride {p.stride}" + (", mirrored" if meta.get("flip") else "")
    grays = sum(bool(v) for v in meta.get("gray") or [])
    if grays:
        caption += f", {grays} gray"
    return tagged(panels, COMPACT_HEIGHT), caption


def paper_baseline(path, rng, p):
    """CPC-style loader (pl_bolts' CPC v2 transforms, Greedy InfoMax's patchify): PIL crop and resize
    to the layout's frame, then NumPy unfold into overlapping patches (no per-patch resampling)."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    w, h = im.size
    side = int(min(w, h) * rng.uniform(*p.crop_scale))
    x0, y0 = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
    frame = np.asarray(im.resize((p.frame, p.frame), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side)))
    if rng.random() < p.flip_prob:
        frame = frame[:, ::-1]
    patches = [frame[r * p.stride:r * p.stride + p.patch, c * p.stride:c * p.stride + p.patch]
               for r in range(p.grid) for c in range(p.grid)]
    return np.stack(patches), 0


TASK = register_task(Task(
    name="cpc",
    params=CPCParams,
    plan=plan,
    finish=finish,
    fields=(Field("patches", "npy", "uint8", lambda p: (p.grid * p.grid, p.patch, p.patch, 3),
                  "the grid's patches, row-major", channels=True),),
    num_classes=lambda p: 1,
    summary="predict the representations of patches rows below from a summary of the rows above (InfoNCE)",
    paper="van den Oord et al. 2018, Representation Learning with Contrastive Predictive Coding",
    draw=draw,
    baseline=paper_baseline,
    # Training (pretextgen train): CPU preset for 32 px CIFAR-like photos on 2 cores: a 7x7 grid of
    # 8 px patches at stride 4 (pl_bolts' CIFAR-10 layout) with v2's per-patch colour augmentation,
    # so the patches of one photo cannot be matched by their colour alone. GPU preset: the same
    # samples, ResNet-18 with AMP.
    trainer=TrainerSpec(
        recipe="pretextgen.training.recipes.predictive:CPC", eval_input="rgb",
        presets={"cpu": dict(trunk="small", epochs=8, batch_size=64, optimizer="adamw", lr=0.001, weight_decay=0.0001,
                             warmup_epochs=0.5),
                 "gpu": dict(trunk="resnet18", epochs=100, batch_size=128, optimizer="adamw", lr=0.001, weight_decay=0.0001,
                             warmup_epochs=1, amp=True, num_workers=8)},
        samples={"cpu": {"grid": 7, "patch": 8, "stride": 4, "jitter": 1, "crop_scale": [0.8, 1.0], "color_jitter": 0.1,
                         "gray_prob": 0.2, "min_side": 32},
                 "gpu": {"grid": 7, "patch": 8, "stride": 4, "jitter": 1, "crop_scale": [0.8, 1.0], "color_jitter": 0.1,
                         "gray_prob": 0.2, "min_side": 32}}),
))
