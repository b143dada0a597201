"""Relative patch position (Doersch, Gupta & Efros, ICCV 2015).

A centre patch and one of its 8 neighbours on a 3x3 layout of ``patch`` px with ``gap`` px between
patches, each patch jittered by up to ``jitter`` px. The layout is placed in a frame where it spans
a random ``layout_scale`` fraction of the shorter source side. Label = neighbour position in raster
order: 0 top-left, 1 top, 2 top-right, 3 left, 4 right, 5 bottom-left, 6 bottom, 7 bottom-right.

Anti-shortcut options from the paper: with probability ``downsample_prob`` a patch is shrunk to as
few as ``min_pixels`` pixels and enlarged back; chromatic aberration is handled by ``chroma``:
``drop`` keeps one channel and replaces the other two with Gaussian noise (std = ``noise_ratio`` x
the kept channel's std, around its mean), ``project`` removes the green-magenta component.
The noise is a slice of a fixed bank of standard normals (``noise_bank``) at an offset the plan
draws: a fresh generator and 96 x 96 x 3 normals per patch took 270 us, the slice takes 20 us.

Plan / JSON: ``boxes`` = [centre_box, neighbour_box] (source px), ``offset`` = neighbour (dx, dy) in
{-1, 0, 1}, ``downsample`` (per patch, [w, h] or null), ``keep_channel`` and ``noise_offset`` (into
``noise_bank``) per patch (``drop`` only), ``label``.
Fields: ``patches.npy`` (2, patch, patch, 3) uint8: [centre, neighbour].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..config import check_fractions, check_limits, check_probabilities
from ..geometry import view
from ..registry import Field, Task, register_task

# (dx, dy) of the neighbour for each label, raster order.
NEIGHBOURS = [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)]
GREEN_MAGENTA = np.array([-1.0, 2.0, -1.0]) / np.sqrt(6.0)
NOISE_BANK_SEED = 0xC0_7E_47  # the bank is part of the task's definition: changing it changes samples


@dataclass(frozen=True)
class ContextParams:
    patch: int = 96
    gap: int = 48
    jitter: int = 7
    layout_scale: tuple[float, float] = (0.6, 1.0)  # layout extent / shorter source side
    downsample_prob: float = 0.33
    min_pixels: int = 100
    chroma: str = "drop"  # "drop", "project" or "none"
    noise_ratio: float = 0.01
    min_side: int = 64

    LIMITS = {  # not a field: see config.check_limits
        "patch": (512, "output side in px; the noise bank holds 128 x patch^2 floats (128 MB at 512); "
                       "the paper uses 96"),
    }

    def validate(self):
        check_limits(self)
        for name, low in (("patch", 4), ("gap", 0), ("jitter", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"{name}: must be at least {low}")
        if self.chroma not in ("drop", "project", "none"):
            raise ValueError("chroma: must be 'drop', 'project' or 'none'")
        check_probabilities(self, "downsample_prob")
        if self.min_pixels < 1:
            raise ValueError("min_pixels: must be at least 1")
        if self.min_pixels > self.patch * self.patch:
            raise ValueError(f"min_pixels: {self.min_pixels} is more than the patch x patch = {self.patch} x "
                             f"{self.patch} = {self.patch * self.patch} pixels of a patch; lower min_pixels to "
                             f"<= {self.patch * self.patch} or raise patch to >= {math.isqrt(self.min_pixels - 1) + 1}")
        check_fractions(self, "layout_scale")

    @property
    def extent(self) -> int:
        """Side of the 3x3 layout in task pixels, jitter margins included (398 for the defaults)."""
        return 3 * self.patch + 2 * self.gap + 2 * self.jitter


def plan(p: ContextParams, rng: np.random.Generator, width: int, height: int, part: int = 0) -> dict:
    short = min(width, height)
    span = short * rng.uniform(*p.layout_scale)  # layout extent in source px
    s = span / p.extent  # source px per task px
    ox = rng.uniform(0, width - span)
    oy = rng.uniform(0, height - span)
    label = int(rng.integers(8))
    dx, dy = NEIGHBOURS[label]
    step = p.patch + p.gap
    boxes = []
    # Python floats and math here: the same IEEE doubles as NumPy scalars, at a fraction of the cost
    # (paid per sample in the thread that feeds the backend).
    for gx, gy in ((0, 0), (dx, dy)):
        jx, jy = (int(v) for v in rng.integers(-p.jitter, p.jitter + 1, size=2))
        x0 = p.jitter + (1 + gx) * step + jx  # task px inside the layout
        y0 = p.jitter + (1 + gy) * step + jy
        boxes.append([max(0, math.floor(ox + x0 * s)), max(0, math.floor(oy + y0 * s)),
                      min(width, math.ceil(ox + (x0 + p.patch) * s)), min(height, math.ceil(oy + (y0 + p.patch) * s))])
    downsample = []
    for _ in range(2):
        if rng.random() < p.downsample_prob:
            side = round(math.sqrt(rng.uniform(p.min_pixels, p.patch * p.patch)))
            downsample.append([side, side])
        else:
            downsample.append(None)
    out = {"boxes": boxes, "offset": [dx, dy], "downsample": downsample, "label": label,
           "views": [view(b, (p.patch, p.patch)) for b in boxes]}
    if p.chroma == "drop":
        out["keep_channel"] = [int(c) for c in rng.integers(3, size=2)]
        need = 2 * p.patch * p.patch
        out["noise_offset"] = [int(c) for c in rng.integers(len(noise_bank(p.patch)) - need + 1, size=2)]
    return out


@lru_cache(maxsize=4)
def noise_bank(patch: int) -> np.ndarray:
    """float32 standard normals from ``NOISE_BANK_SEED``: at least 2^21, and 64 patches' worth (2
    channels each) so that offsets drawn uniformly rarely overlap. Read-only, shared by threads."""
    bank = np.random.default_rng(NOISE_BANK_SEED).standard_normal(max(1 << 21, 128 * patch * patch), np.float32)
    bank.setflags(write=False)
    return bank


def _drop_channels(patch: np.ndarray, keep: int, offset: int, ratio: float) -> np.ndarray:
    import cv2

    h, w = patch.shape[:2]
    kept = np.ascontiguousarray(patch[..., keep])
    mean, std = (float(v[0, 0]) for v in cv2.meanStdDev(kept))  # population std, as np.std
    noise = noise_bank(h)[offset : offset + 2 * h * w].reshape(h, w, 2)
    # saturate(round(noise * std * ratio + mean)) in one OpenCV call: 20 us against 58 in NumPy.
    channels = list(cv2.split(cv2.addWeighted(noise, std * ratio, noise, 0.0, mean, dtype=cv2.CV_8U)))
    channels.insert(keep, kept)
    return cv2.merge(channels)


def _project(patch: np.ndarray) -> np.ndarray:
    x = patch.astype(np.float32)
    x -= (x @ GREEN_MAGENTA)[..., None] * GREEN_MAGENTA
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def finish(p: ContextParams, views: list[np.ndarray], plan: dict) -> dict:
    import cv2

    out = []
    for j, patch in enumerate(views):
        ds = plan["downsample"][j]
        if ds is not None:
            small = cv2.resize(patch, tuple(ds), interpolation=cv2.INTER_AREA)
            patch = cv2.resize(small, (p.patch, p.patch), interpolation=cv2.INTER_LINEAR)
        if p.chroma == "drop":
            patch = _drop_channels(patch, plan["keep_channel"][j], plan["noise_offset"][j], p.noise_ratio)
        elif p.chroma == "project":
            patch = _project(patch)
        out.append(patch)
    return {"patches": np.stack(out)}


TASK = register_task(Task(
    name="context",
    params=ContextParams,
    plan=plan,
    finish=finish,
    fields=(Field("patches", "npy", "uint8", lambda p: (2, p.patch, p.patch, 3), "[centre, neighbour]", channels=True),),
    num_classes=lambda p: 8,
    summary="predict where a neighbouring patch sits relative to the centre patch (8 classes)",
    paper="Doersch et al. 2015, Unsupervised Visual Representation Learning by Context Prediction",
))
