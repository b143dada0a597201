"""Exemplar surrogate classes (Dosovitskiy et al., NIPS 2014, "Discriminative Unsupervised Feature
Learning with Convolutional Neural Networks").

Every sample is one surrogate class: a seed patch of ``patch`` px (32) taken where the gradient
energy is high, and ``transforms`` (K) random transformations of it; the label is the class id (the
plan's number). N, the number of classes, is the number of samples (``--samples``).

The seed: ``candidates`` centres are drawn uniformly (far enough from the border for every
transformation to stay inside), and the one whose seed box has the highest mean squared gradient
(BT.601 luma, central differences) is kept; ``source_stats`` computes that energy from the source
pixels before planning. Usable: the kept seed's energy reaches ``min_energy`` (1 grey level squared
per px: few random boxes of real photos fall below it, BENCHMARKS.md), else the plan is refused
(``UnusablePlan``) and drawn again from another source; the manifest counts such plans. The seed
box covers ``patch * source_scale`` source px (1.0: the paper's
native-resolution patches; the affine views resample bilinearly without an antialiasing filter).

Each transformation, with the paper's ranges as defaults: translation (up to ``translate`` of the
patch side, each axis), scale (``scale``, > 1 zooms in), rotation (up to ``rotate`` degrees), then
"contrast 1" (the patch's pixels projected on their own principal components, each projection
scaled by a factor in ``pca_contrast``; the paper uses the components of all the data's pixels),
"contrast 2" (S and V of HSV raised to a power log-uniform in ``power``, multiplied by ``multiply``,
shifted by ``add``) and "colour" (hue shifted by up to ``hue`` turns). Geometry is one affine view
per transformation (the matrix maps output px to source px); the rest is ``finish``.

Plan / JSON: ``seed_box`` (source px, float), ``candidates`` ([cx, cy, energy] per candidate),
``seed`` (index of the kept one), ``transforms`` (per view: ``dx``, ``dy`` (patch sides), ``scale``,
``angle`` (deg, counter-clockwise), ``pca`` (3 factors), ``s`` and ``v`` ([power, multiply, add]),
``hue``), ``views`` (their affine matrices), ``label`` = class id.
Fields: ``patches.npy`` (K, patch, patch, 3) uint8.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import hsv
from ..config import check_limits
from ..errors import PretextgenError, UnusablePlan
from ..geometry import affine_views
from ..registry import Field, Task, TrainerSpec, register_task


@dataclass(frozen=True)
class ExemplarParams:
    patch: int = 32  # output side (px)
    transforms: int = 32  # K, transformed patches per surrogate class
    source_scale: float = 1.0  # source px per output px in the seed patch
    candidates: int = 8  # seed centres tried; the highest gradient energy wins
    min_energy: float = 1.0  # the winner's mean squared luma gradient must reach this (else: no class)
    translate: float = 0.2  # up to this fraction of the patch side, each axis
    scale: tuple[float, float] = (0.7, 1.4)
    rotate: float = 20.0  # degrees, either way
    pca_contrast: tuple[float, float] = (0.5, 2.0)
    power: tuple[float, float] = (0.25, 4.0)  # on S and V, drawn log-uniform
    multiply: tuple[float, float] = (0.7, 1.4)
    add: tuple[float, float] = (-0.1, 0.1)
    hue: float = 0.1  # turns, either way
    min_side: int = 64

    LIMITS = {  # not a field: see config.check_limits
        "patch": (256, "output side in px; the paper uses 32"),
        "transforms": (512, "patches per sample; the paper uses up to 300"),
        "candidates": (256, "seed centres scored per sample, each listed in the sample's JSON; 8 by default"),
        "source_scale": (16.0, "source px per output px: the seed patch is patch x source_scale px a side; "
                               "1 in the paper"),
    }
    MAX_PIXELS = 1 << 22  # transforms x patch^2 per sample: recolour holds them as float64 (~100 MB)

    def validate(self):
        check_limits(self)
        for name, low in (("patch", 4), ("transforms", 1), ("candidates", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name}: must be at least {low}")
        if self.transforms * self.patch * self.patch > self.MAX_PIXELS:
            k, side, cap = self.transforms, self.patch, self.MAX_PIXELS
            raise ValueError(f"transforms: {k} patches of {side} x {side} px are {k * side * side} pixels per sample, "
                             f"above the limit of {cap} (the recolouring holds them as float64, ~100 MB); lower "
                             f"transforms to <= {cap // (side * side)} or patch to <= {math.isqrt(cap // k)}")
        if self.source_scale <= 0 or self.translate < 0 or not 0 <= self.rotate <= 180 or not 0 <= self.hue <= 0.5:
            raise ValueError("source_scale > 0, translate >= 0, rotate in [0, 180], hue in [0, 0.5]")
        for name in ("scale", "pca_contrast", "power", "multiply"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name}: need 0 < min <= max")
        if not self.add[0] <= self.add[1]:
            raise ValueError("add: need min <= max")

    @property
    def seed_side(self) -> float:
        return self.patch * self.source_scale

    @property
    def margin(self) -> float:
        """Source px from a seed centre that the farthest transformed pixel can reach."""
        return self.seed_side * (self.translate + 0.5 * np.sqrt(2) / self.scale[0])


def gradient_energy(params: ExemplarParams, rgb: np.ndarray) -> np.ndarray:
    """Summed-area table (H+1, W+1) of the squared luma gradient: the box energy in O(1)."""
    y = rgb.astype(np.float32) @ hsv.LUMA
    gy, gx = np.gradient(y)
    e = np.zeros((y.shape[0] + 1, y.shape[1] + 1), np.float64)
    e[1:, 1:] = np.cumsum(np.cumsum(gx * gx + gy * gy, 0, dtype=np.float64), 1)
    return e


def box_energy(table: np.ndarray, cx: float, cy: float, side: float) -> float:
    """Mean squared gradient over the seed box of ``side`` centred on (cx, cy), clipped to the image."""
    h, w = table.shape[0] - 1, table.shape[1] - 1
    x0, x1 = (min(max(round(v), 0), w) for v in (cx - side / 2, cx + side / 2))
    y0, y1 = (min(max(round(v), 0), h) for v in (cy - side / 2, cy + side / 2))
    area = max(1, (x1 - x0) * (y1 - y0))
    return float((table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]) / area)


def _r(x) -> float:
    return round(float(x), 6)


def transform_matrix(p: ExemplarParams, cx: float, cy: float, t: dict) -> np.ndarray:
    """Output px -> source px: centre of the output on the seed centre, shifted, zoomed, rotated.
    (2, 3) for one transformation; (K, 2, 3) when ``t``'s values are arrays of K."""
    a = np.deg2rad(np.asarray(t["angle"], np.float64))
    k = p.source_scale / np.asarray(t["scale"], np.float64)
    cos, sin = np.cos(a), np.sin(a)
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # y down: content turns CCW
    lin = k[..., None, None] * rot
    c_out = (p.patch - 1) / 2
    shift = np.stack([cx + np.asarray(t["dx"]) * p.seed_side, cy + np.asarray(t["dy"]) * p.seed_side], -1)
    return np.concatenate([lin, (shift - lin @ np.array([c_out, c_out]))[..., None]], -1)


def plan(p: ExemplarParams, rng: np.random.Generator, width: int, height: int, part: int = 0,
         index: int = 0, stats: np.ndarray | None = None) -> dict:
    if stats is None:
        raise PretextgenError("exemplar plans from the source's gradient energy: pass stats=gradient_energy(...)")
    m = p.margin
    lo_x, hi_x = (m, width - m) if width > 2 * m else (width / 2, width / 2)
    lo_y, hi_y = (m, height - m) if height > 2 * m else (height / 2, height / 2)
    cands = []
    for _ in range(p.candidates):
        cx, cy = _r(rng.uniform(lo_x, hi_x)), _r(rng.uniform(lo_y, hi_y))
        cands.append([cx, cy, round(box_energy(stats, cx, cy, p.seed_side), 4)])
    seed = int(np.argmax([c[2] for c in cands]))
    if cands[seed][2] < p.min_energy:  # flat everywhere we looked: K copies of one colour are no class
        raise UnusablePlan(f"no textured seed patch: best of {p.candidates} candidates has gradient energy "
                           f"{cands[seed][2]:g} < min_energy={p.min_energy:g}")
    cx, cy = cands[seed][:2]
    half = p.seed_side / 2
    # All K transformations in one draw (columns in the order of the JSON), rounded as stored: one
    # value at a time cost far more per plan in the main process (BENCHMARKS.md).
    log_pca, log_pow = np.log(p.pca_contrast), np.log(p.power)
    lo, hi = np.array([(-p.translate, p.translate), (-p.translate, p.translate), p.scale, (-p.rotate, p.rotate),
                       log_pca, log_pca, log_pca, log_pow, p.multiply, p.add, log_pow, p.multiply, p.add,
                       (-p.hue, p.hue)], np.float64).T
    x = lo + (hi - lo) * rng.random((p.transforms, 14))
    x[:, [4, 5, 6, 7, 10]] = np.exp(x[:, [4, 5, 6, 7, 10]])
    x = np.round(x, 6)
    transforms = [{"dx": r[0], "dy": r[1], "scale": r[2], "angle": r[3], "pca": r[4:7], "s": r[7:10],
                   "v": r[10:13], "hue": r[13]} for r in x.tolist()]
    columns = {"dx": x[:, 0], "dy": x[:, 1], "scale": x[:, 2], "angle": x[:, 3]}
    views = affine_views(transform_matrix(p, cx, cy, columns), (p.patch, p.patch))
    return {"seed_box": [_r(cx - half), _r(cy - half), _r(cx + half), _r(cy + half)], "candidates": cands,
            "seed": seed, "transforms": transforms, "label": int(index), "views": views}


def pca_contrast(x: np.ndarray, factors) -> np.ndarray:
    """Scale each pixel's projection on its patch's principal colour components by ``factors``:
    x (K, H, W, 3) float in [0, 1], factors (K, 3)."""
    flat = x.reshape(len(x), -1, 3).astype(np.float64)
    mean = flat.mean(1, keepdims=True)
    c = flat - mean
    cov = np.einsum("kni,knj->kij", c, c) / max(1, c.shape[1] - 1) + 1e-12 * np.eye(3)
    _, vecs = np.linalg.eigh(cov)
    out = ((c @ vecs) * np.asarray(factors, np.float64)[:, None, :]) @ vecs.transpose(0, 2, 1) + mean
    return np.clip(out, 0, 1).reshape(x.shape).astype(np.float32)


def recolour(patches: np.ndarray, transforms: list[dict]) -> np.ndarray:
    """The photometric part of the transformations, on uint8 patches (K, H, W, 3), all at once."""
    x = pca_contrast(hsv.to_float(patches), [t["pca"] for t in transforms])
    h = hsv.rgb_to_hsv(x)
    for c, key in ((1, "s"), (2, "v")):
        power, mul, add = (np.array([t[key][q] for t in transforms], np.float32)[:, None, None] for q in range(3))
        h[..., c] = np.clip(h[..., c] ** power * mul + add, 0, 1)
    h[..., 0] = (h[..., 0] + np.array([t["hue"] for t in transforms], np.float32)[:, None, None]) % 1.0
    return hsv.to_uint8(hsv.hsv_to_rgb(h))


def finish(p: ExemplarParams, views: list[np.ndarray], plan: dict) -> dict:
    return {"patches": recolour(np.stack(views), plan["transforms"])}


# ---------------------------------------------------------------- what other parts need (Task fields)
def draw(sample, meta, ctx):
    """All transformed patches of the surrogate class."""
    from ..drawing import PANEL_HEIGHT, fit, grid

    patches = list(np.asarray(sample["patches"]))
    return fit(grid(patches, 8), PANEL_HEIGHT), f"surrogate class {meta['label']}: {len(patches)} patches"


def paper_baseline(path, rng, p):
    """Exemplar-CNN-style surrogate class (Dosovitskiy et al.): PIL decode, gradient energy in NumPy to
    pick the seed among candidates, then per transformation a PIL affine warp and NumPy/PIL colour work."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    a = np.asarray(im, np.float32)
    gy, gx = np.gradient(a @ np.array([0.299, 0.587, 0.114], np.float32))
    energy = gx * gx + gy * gy
    side = p.patch * p.source_scale
    margin = side * (p.translate + 0.5 * np.sqrt(2) / p.scale[0])
    w, h = im.size
    best, centre = -1.0, (w / 2, h / 2)
    for _ in range(p.candidates):
        cx, cy = rng.uniform(margin, w - margin), rng.uniform(margin, h - margin)
        x0, y0 = int(cx - side / 2), int(cy - side / 2)
        e = energy[y0 : y0 + int(side), x0 : x0 + int(side)].mean()
        if e > best:
            best, centre = e, (cx, cy)
    out = []
    for _ in range(p.transforms):
        dx, dy = rng.uniform(-p.translate, p.translate, 2) * side
        s, ang = rng.uniform(*p.scale), np.deg2rad(rng.uniform(-p.rotate, p.rotate))
        k = p.source_scale / s
        c = (p.patch - 1) / 2
        m = k * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        t = np.array([centre[0] + dx, centre[1] + dy]) - m @ [c, c]
        patch = im.transform((p.patch, p.patch), Image.AFFINE, (m[0, 0], m[0, 1], t[0], m[1, 0], m[1, 1], t[1]),
                             resample=Image.BILINEAR)
        x = np.asarray(patch, np.float32) / 255
        flat = x.reshape(-1, 3)
        mean = flat.mean(0)
        _, vecs = np.linalg.eigh(np.cov(flat - mean, rowvar=False))
        flat = ((flat - mean) @ vecs * np.exp(rng.uniform(*np.log(p.pca_contrast), 3))) @ vecs.T + mean
        hsv = np.asarray(Image.fromarray(np.uint8(np.clip(flat, 0, 1).reshape(x.shape) * 255)).convert("HSV"), np.float32) / 255
        for ch in (1, 2):
            hsv[..., ch] = np.clip(hsv[..., ch] ** np.exp(rng.uniform(*np.log(p.power))) * rng.uniform(*p.multiply)
                                   + rng.uniform(*p.add), 0, 1)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-p.hue, p.hue)) % 1.0
        out.append(np.asarray(Image.fromarray(np.uint8(hsv * 255), "HSV").convert("RGB")))
    return np.stack(out), 0


TASK = register_task(Task(
    name="exemplar",
    params=ExemplarParams,
    plan=plan,
    finish=finish,
    fields=(Field("patches", "npy", "uint8", lambda p: (p.transforms, p.patch, p.patch, 3),
                  "K transformations of the class's seed patch", channels=True),),
    num_classes=lambda p: 0,  # one surrogate class per sample: the manifest states the number of samples
    label_is_plan_index=True,
    source_stats=gradient_energy,
    usable="as every image task, and the seed patch must be textured (min_energy), else the plan is drawn again",
    summary="surrogate classes: K random transformations of one high-gradient seed patch; label = class id",
    paper="Dosovitskiy et al. 2014, Discriminative Unsupervised Feature Learning with CNNs",
    draw=draw,
    baseline=paper_baseline,
    # Training (pretextgen train): CPU preset for 32 px CIFAR-like photos on 2 cores; GPU preset
    # ResNet-18 (CIFAR stem) with AMP. Sample params per preset: what `pretextgen compare` builds.
    trainer=TrainerSpec(
        recipe="pretextgen.training.recipes.contrastive:Exemplar", eval_input="rgb",
        presets={"cpu": dict(trunk="small", epochs=8, batch_size=32, optimizer="adamw", lr=0.001, weight_decay=0.0001, warmup_epochs=1, extra={"temperature": 0.1}),
                 "gpu": dict(trunk="resnet18", epochs=100, batch_size=64, optimizer="adamw", lr=0.001, weight_decay=0.0001, warmup_epochs=2, amp=True, num_workers=8, extra={"temperature": 0.1})},
        samples={"cpu": {"patch": 16, "transforms": 8, "min_side": 32},
                 "gpu": {"patch": 16, "transforms": 8, "min_side": 32}}),
))
