"""Inpainting (Pathak et al., CVPR 2016, "Context Encoders: Feature Learning by Inpainting").

A square crop resized to ``size`` (128), part of it hidden (filled with ``fill``, the dataset mean:
by default the ImageNet mean of the paper's code, R 117, G 104, B 123), to be predicted from the rest.
Three kinds of mask, as in the paper and its code:

- ``center``: the central square of side size/2 is the target; the hole is that square shrunk by
  ``overlap`` px (4) on each side, so the target's border stays visible (the paper weights it 10x);
- ``blocks``: random rectangles (sides ``block_side`` x size, possibly overlapping) added until the
  covered fraction lies in ``coverage`` (the paper: "up to 1/4 of the image"); they are in the plan;
- ``regions``: a uniform random pattern at ``region_res`` x size cells a side, upsampled bilinearly
  and thresholded at ``region_density``, redrawn until the masked fraction lies in ``coverage``
  (the paper's code: 20-30%); the plan stores its seed, and ``region_mask`` expands it.

Plan / JSON: ``crop_box`` (source px), ``kind``; ``hole`` and ``target_box`` (center, crop px);
``blocks`` (blocks, crop px, [x0, y0, x1, y1]); ``mask_seed`` and ``tries`` (regions); ``coverage``
(masked fraction, all kinds), ``label`` = 0 (no class).
Fields: ``image.png`` (size, size, 3) uint8, the masked input; ``target.png`` the region to predict:
(size/2, size/2, 3) for center, the whole unmasked crop (size, size, 3) otherwise; ``mask.png``
(size, size) uint8, 1 where the input is filled.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config import MAX_SIDE, SIDE_WHY, check_fractions, check_limits
from ..errors import PretextgenError
from ..geometry import random_square, view
from ..registry import Field, Task, TrainerSpec, register_task

KINDS = ("center", "blocks", "regions")
MAX_TRIES = 1000


@dataclass(frozen=True)
class InpaintingParams:
    size: int = 128
    mask: str = "center"  # center, blocks or regions
    overlap: int = 4  # center: visible border of the target square (px)
    coverage: tuple[float, float] = (0.2, 0.3)  # blocks/regions: accepted masked fraction
    block_side: tuple[float, float] = (0.1, 0.3)  # blocks: side as a fraction of size
    region_res: float = 0.06  # regions: low-resolution pattern cells per output px (the paper's code)
    region_density: float = 0.25  # regions: threshold of the upsampled uniform pattern
    fill: tuple[int, int, int] = (117, 104, 123)  # RGB fill of the hidden pixels: the dataset mean
    crop_scale: tuple[float, float] = (0.8, 1.0)  # square side / shorter source side
    min_side: int = 32

    LIMITS = {"size": (MAX_SIDE, SIDE_WHY)}  # not a field: see config.check_limits
    MAX_REGION_CELLS = 128  # regions: pattern cells a side; each try (up to MAX_TRIES) costs cells x size^2

    def validate(self):
        check_limits(self)
        if self.mask not in KINDS:
            raise ValueError(f"mask: must be one of {', '.join(KINDS)}")
        if self.size < 16 or self.size % 2:
            raise ValueError("size: must be even and at least 16")
        if self.overlap < 0:
            raise ValueError("overlap: must be at least 0")
        if self.overlap >= self.size // 4:
            raise ValueError(f"overlap: {self.overlap} leaves no hole in the size / 2 = {self.size // 2} px target "
                             f"(needs overlap < size // 4 = {self.size // 4}); lower overlap to <= {self.size // 4 - 1} "
                             f"or raise size to >= {4 * (self.overlap + 1)}")
        lo, hi = self.coverage
        if not 0 < lo <= hi < 1:
            raise ValueError("coverage: need 0 < min <= max < 1")
        check_fractions(self, "block_side")
        if not 0 < self.region_res <= 1 or not 0 < self.region_density < 1:
            raise ValueError("region_res / region_density: need 0 < region_res <= 1 and 0 < region_density < 1")
        cells, cap = int(round(self.size * self.region_res)), self.MAX_REGION_CELLS
        if self.mask == "regions" and cells > cap:
            raise ValueError(f"region_res: size {self.size} x region_res {self.region_res} = {cells} pattern cells a "
                             f"side, above the limit of {cap} (each of up to {MAX_TRIES} tries upsamples them to "
                             f"size x size; the paper's code: 0.06 x 128 = 8); lower region_res to <= "
                             f"{math.floor(cap / self.size * 1e4) / 1e4} or size to <= {2 * int(cap / self.region_res / 2)}")
        if self.mask == "blocks":
            self._check_blocks()

    def _check_blocks(self):
        """Blocks are drawn one at a time (up to MAX_TRIES), sides round(size x block_side), and kept
        while the coverage stays <= its max: the sides must allow both ends of the coverage."""
        (lo, hi), (b0, b1), size = self.coverage, self.block_side, self.size
        small = max(1, round(size * b0)) ** 2 / size**2
        if small > hi:
            fit = math.floor(math.isqrt(int(hi * size * size)) / size * 1e4) / 1e4
            raise ValueError(f"block_side: the smallest block ({b0} x size a side) covers {small:.4f} of the crop, "
                             f"more than coverage max {hi}, so no block can be placed; lower block_side min to "
                             f"<= {fit} or raise coverage max to >= {math.ceil(small * 1e4) / 1e4}")
        large = max(1, round(size * b1)) ** 2 / size**2
        if large * MAX_TRIES < lo:
            raise ValueError(f"block_side: {MAX_TRIES} of the largest blocks ({b1} x size a side) cover at most "
                             f"{large * MAX_TRIES:.4f} of the crop, less than coverage min {lo}; raise block_side max "
                             f"to >= {math.ceil(math.sqrt(lo / MAX_TRIES) * 1e4) / 1e4} or lower coverage min")
        if any(not 0 <= v <= 255 for v in self.fill):
            raise ValueError("fill: three values in 0..255")
        check_fractions(self, "crop_scale")


def _upsample(low: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a square grid to size x size (the grid's corners on the corner pixels)."""
    g = low.shape[0]
    w = np.stack([np.interp(np.linspace(0, g - 1, size), np.arange(g), np.eye(g)[k]) for k in range(g)], 1)
    return w @ low @ w.T  # separable linear interpolation: rows, then columns


def region_mask(seed: int, size: int, res: float, density: float, coverage, tries: int | None = None):
    """(mask (size, size) bool, tries): the first pattern from ``seed`` whose masked fraction lies in
    ``coverage``; with ``tries`` given, that pattern directly (re-derivation)."""
    rng = np.random.default_rng(seed)
    g = max(2, int(round(size * res)))
    for n in range(1, (tries or MAX_TRIES) + 1):
        m = _upsample(rng.random((g, g)), size) < density
        if tries is not None:
            if n == tries:
                return m, n
            continue
        if coverage[0] <= m.mean() <= coverage[1]:
            return m, n
    raise PretextgenError(f"inpainting: no region mask with coverage in {list(coverage)} after {MAX_TRIES} tries; "
                     "widen coverage or change region_density")


def blocks_mask(blocks, size: int) -> np.ndarray:
    m = np.zeros((size, size), bool)
    for x0, y0, x1, y1 in blocks:
        m[y0:y1, x0:x1] = True
    return m


def _center_boxes(p: InpaintingParams):
    q = p.size // 4
    target = [q, q, q + p.size // 2, q + p.size // 2]
    hole = [target[0] + p.overlap, target[1] + p.overlap, target[2] - p.overlap, target[3] - p.overlap]
    return target, hole


def plan(p: InpaintingParams, rng: np.random.Generator, width: int, height: int, part: int = 0) -> dict:
    box = random_square(rng, width, height, p.crop_scale)
    out = {"crop_box": box, "kind": p.mask, "label": 0, "views": [view(box, (p.size, p.size))]}
    if p.mask == "center":
        target, hole = _center_boxes(p)
        out.update(target_box=target, hole=hole, coverage=round(((hole[2] - hole[0]) / p.size) ** 2, 6))
    elif p.mask == "blocks":
        blocks, m = [], np.zeros((p.size, p.size), bool)
        for _ in range(MAX_TRIES):
            if m.mean() >= p.coverage[0]:
                break
            w, h = (int(round(p.size * rng.uniform(*p.block_side))) for _ in range(2))
            w, h = max(1, w), max(1, h)
            x0, y0 = int(rng.integers(0, p.size - w + 1)), int(rng.integers(0, p.size - h + 1))
            trial = m.copy()
            trial[y0 : y0 + h, x0 : x0 + w] = True
            if trial.mean() <= p.coverage[1]:  # a block that would overshoot is drawn again
                blocks.append([x0, y0, x0 + w, y0 + h])
                m = trial
        else:
            raise PretextgenError("inpainting: blocks could not reach the coverage; widen it or shrink block_side")
        out.update(blocks=blocks, coverage=round(float(m.mean()), 6))
    else:
        seed = int(rng.integers(2**31))
        m, tries = region_mask(seed, p.size, p.region_res, p.region_density, p.coverage)
        out.update(mask_seed=seed, tries=tries, coverage=round(float(m.mean()), 6))
    return out


def mask_of(p: InpaintingParams, plan: dict) -> np.ndarray:
    """The (size, size) bool mask (True = hidden) that the plan describes."""
    if plan["kind"] == "center":
        x0, y0, x1, y1 = plan["hole"]
        m = np.zeros((p.size, p.size), bool)
        m[y0:y1, x0:x1] = True
        return m
    if plan["kind"] == "blocks":
        return blocks_mask(plan["blocks"], p.size)
    return region_mask(plan["mask_seed"], p.size, p.region_res, p.region_density, p.coverage, plan["tries"])[0]


def finish(p: InpaintingParams, views: list[np.ndarray], plan: dict) -> dict:
    crop = views[0]
    m = mask_of(p, plan)
    image = crop.copy()
    image[m] = np.asarray(p.fill, np.uint8)
    if plan["kind"] == "center":
        x0, y0, x1, y1 = plan["target_box"]
        target = np.ascontiguousarray(crop[y0:y1, x0:x1])
    else:
        target = crop
    return {"image": image, "target": target, "mask": m.astype(np.uint8)}


def _target_shape(p: InpaintingParams) -> tuple:
    return (p.size // 2, p.size // 2, 3) if p.mask == "center" else (p.size, p.size, 3)


# ---------------------------------------------------------------- what other parts need (Task fields)
def draw(sample, meta, ctx):
    """Masked input, the mask overlaid on it, and the target."""
    from ..drawing import overlay, tagged

    img = sample["image"]
    return tagged([(img, "input"), (overlay(img, sample["mask"]), "mask"), (sample["target"], "target")]), \
        f"{meta.get('kind', '')} coverage {meta.get('coverage', 0):.2f}"


def pixel_targets(out, m: dict, p: InpaintingParams) -> list[str]:
    """inspect's label lines: the target is pixels; the hidden share, from the params (center) or
    from the plans' ``coverage`` of sampled samples (blocks, regions)."""
    if p.mask == "center":
        t, h = p.size // 2, p.size // 2 - 2 * p.overlap
        return [f"labels: none (cls is always 0): the target is the pixels of the central {t} x {t} square "
                f"(target.png); its {p.overlap} px border stays visible and the {h} x {h} hole is hidden (mask "
                f"center): {h * h / p.size ** 2:.1%} of the crop"]
    from ..inspect.summary import sampled, written

    shares = [float(s["json"]["coverage"]) for s in sampled(out, m)]
    lo, hi = p.coverage
    lines = [f"labels: none (cls is always 0): the target is the pixels of the whole crop (target.png), scored where "
             f"hidden; mask {p.mask}: {100 * lo:g}-{100 * hi:g}% of the crop hidden (coverage)"]
    if shares:
        lines.append(f"  hidden share over {len(shares)} of {written(m)} sample(s): mean {np.mean(shares):.1%}, "
                     f"min {min(shares):.1%}, max {max(shares):.1%}")
    return lines


def paper_baseline(path, rng, p):
    """Context-encoder-style loader (Pathak et al.): PIL crop + resize, NumPy mask, hole set to the mean."""
    from PIL import Image

    from .rotation import pil_square_crop

    crop = np.asarray(pil_square_crop(path, rng, p))
    mask = np.zeros((p.size, p.size), bool)
    q = p.size // 4
    if p.mask == "center":
        mask[q + p.overlap : 3 * q - p.overlap, q + p.overlap : 3 * q - p.overlap] = True
        target = crop[q : 3 * q, q : 3 * q]
    else:
        target = crop
        if p.mask == "blocks":
            while mask.mean() < p.coverage[0]:
                bw, bh = (max(1, int(p.size * rng.uniform(*p.block_side))) for _ in range(2))
                bx, by = rng.integers(0, p.size - bw + 1), rng.integers(0, p.size - bh + 1)
                trial = mask.copy()
                trial[by : by + bh, bx : bx + bw] = True
                if trial.mean() <= p.coverage[1]:
                    mask = trial
        else:
            g = max(2, int(round(p.size * p.region_res)))
            while not p.coverage[0] <= mask.mean() <= p.coverage[1]:
                low = Image.fromarray(np.uint8(rng.random((g, g)) * 255))
                mask = np.asarray(low.resize((p.size, p.size), Image.BILINEAR)) < p.region_density * 255
    image = crop.copy()
    image[mask] = p.fill
    return (image, np.ascontiguousarray(target), mask.astype(np.uint8)), 0


TASK = register_task(Task(
    name="inpainting",
    params=InpaintingParams,
    plan=plan,
    finish=finish,
    fields=(
        Field("image", "png", "uint8", lambda p: (p.size, p.size, 3), "the crop, hidden pixels set to fill",
              channels=True),
        Field("target", "png", "uint8", _target_shape, "center: the central square; else the whole crop",
              channels=True),
        Field("mask", "png", "uint8", lambda p: (p.size, p.size), "1 = hidden"),
    ),
    num_classes=lambda p: 1,
    summary="fill in the hidden part of a crop (center square, random blocks or random regions)",
    paper="Pathak et al. 2016, Context Encoders: Feature Learning by Inpainting",
    draw=draw,
    baseline=paper_baseline,
    pixel_targets=pixel_targets,
    # Training (pretextgen train): CPU preset for 32 px CIFAR-like photos on 2 cores; GPU preset
    # ResNet-18 (CIFAR stem) with AMP. Sample params per preset: what `pretextgen compare` builds.
    trainer=TrainerSpec(
        recipe="pretextgen.training.recipes.masked:Inpainting", eval_input="rgb",
        presets={"cpu": dict(trunk="small", epochs=8, batch_size=64, optimizer="adamw", lr=0.001, weight_decay=0.0001, warmup_epochs=0.5),
                 "gpu": dict(trunk="resnet18", epochs=100, batch_size=256, optimizer="adamw", lr=0.001, weight_decay=0.0001, warmup_epochs=1, amp=True, num_workers=8)},
        samples={"cpu": {"size": 32, "overlap": 1},
                 "gpu": {"size": 32, "overlap": 1}}),
))
