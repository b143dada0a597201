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
from ..registry import Field, Task, TrainerSpec, register_task

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
    # saturate(round(noise * std * ratio + mean)) in one OpenCV call: faster than NumPy (BENCHMARKS.md).
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


# ---------------------------------------------------------------- what other parts need (Task fields)
NEIGHBOUR_NAMES = ["top-left", "top", "top-right", "left", "right", "bottom-left", "bottom", "bottom-right"]


def arrow(plan: dict) -> tuple[tuple[float, float], tuple[float, float]]:
    """(centre of the centre box, centre of the neighbour box) in source px."""
    (a, b) = plan["boxes"]
    return ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2), ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)


def _source_view(src: np.ndarray, plan: dict, height: int, aspect=(0.75, 1.5)) -> np.ndarray:
    """The source around the two boxes (centre green, neighbour red, the label as a yellow arrow),
    ``height`` px tall, its width/height kept within ``aspect`` where the source allows."""
    import cv2

    from ..drawing import GREEN, RED, YELLOW

    (c0, c1) = plan["boxes"]
    H, W = src.shape[:2]
    pad = (c0[2] - c0[0]) * 1.5
    x0, y0 = max(0, min(c0[0], c1[0]) - pad), max(0, min(c0[1], c1[1]) - pad)
    x1, y1 = min(W, max(c0[2], c1[2]) + pad), min(H, max(c0[3], c1[3]) + pad)
    if x1 - x0 > aspect[1] * (y1 - y0):  # a left/right pair: show more above and below
        cy, half = (y0 + y1) / 2, (x1 - x0) / aspect[1] / 2
        y0, y1 = max(0, cy - half), min(H, cy + half)
    elif x1 - x0 < aspect[0] * (y1 - y0):
        cx, half = (x0 + x1) / 2, (y1 - y0) * aspect[0] / 2
        x0, x1 = max(0, cx - half), min(W, cx + half)
    x0, y0, x1, y1 = int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1))
    s = height / (y1 - y0)
    view = cv2.resize(np.ascontiguousarray(src[y0:y1, x0:x1]), (max(1, round((x1 - x0) * s)), height),
                      interpolation=cv2.INTER_AREA)

    def pt(x, y):
        return int((x - x0) * s), int((y - y0) * s)

    for b, col in ((c0, GREEN), (c1, RED)):
        cv2.rectangle(view, pt(b[0], b[1]), pt(b[2], b[3]), col, 2)
    start, end = arrow(plan)
    cv2.arrowedLine(view, pt(*start), pt(*end), YELLOW, 2, cv2.LINE_AA, tipLength=0.2)
    return view


def _layout(label: int) -> np.ndarray:
    """The 3x3 layout with the labelled neighbour and the arrow (drawn when the source is missing)."""
    import cv2

    from ..drawing import GREEN, RED, YELLOW

    lay = np.full((90, 90, 3), 60, np.uint8)
    dx, dy = NEIGHBOURS[label]
    cv2.rectangle(lay, (31, 31), (59, 59), GREEN, 2)
    cv2.rectangle(lay, (31 + 30 * dx, 31 + 30 * dy), (59 + 30 * dx, 59 + 30 * dy), RED, 2)
    cv2.arrowedLine(lay, (45, 45), (45 + 30 * dx, 45 + 30 * dy), YELLOW, 2, tipLength=0.3)
    return lay


def draw(sample, meta, ctx):
    """The two patch boxes on the source (centre green, neighbour red) with the label as an arrow
    (the bare 3x3 layout, marked "source not found", when the source is not here), then the stored
    [centre, neighbour] patches, each with the channel it kept when the build dropped channels."""
    from ..drawing import COMPACT_HEIGHT, tagged

    label = int(meta["label"])
    patches = list(np.asarray(sample["patches"]))
    src = ctx.source(meta["source"])
    first = (_source_view(src, meta, COMPACT_HEIGHT), "source") if src is not None else \
        (_layout(label), "source not found")
    who = ["centre", "neighbour"]
    keep = meta.get("keep_channel")
    tags = [f"{w}, kept {'RGB'[c]}" for w, c in zip(who, keep)] if keep else who
    caption = f"neighbour {NEIGHBOUR_NAMES[label]} (label {label})"
    if keep:
        caption += f"; channel kept: {'RGB'[keep[0]]} (centre), {'RGB'[keep[1]]} (neighbour)"
    elif getattr(ctx.params, "chroma", None) == "project":
        caption += "; green-magenta removed"
    shrunk = [f"{w} {d[0]}x{d[1]}" for w, d in zip(who, meta.get("downsample") or []) if d]
    if shrunk:
        caption += "; downsampled: " + ", ".join(shrunk)
    return tagged([first, (patches[0], tags[0]), (patches[1], tags[1])], COMPACT_HEIGHT), caption


def paper_baseline(path, rng, p):
    """Relative-position loader in the style of the PyTorch re-implementations of Doersch et al.:
    PIL resize so the 3x3 layout fits, crop the two patches, drop two colour channels for noise."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    w, h = im.size
    extent = 3 * p.patch + 2 * p.gap + 2 * p.jitter
    s = extent / (min(w, h) * rng.uniform(*p.layout_scale))
    im = im.resize((max(extent, round(w * s)), max(extent, round(h * s))), Image.BILINEAR)
    ox, oy = rng.integers(0, im.size[0] - extent + 1), rng.integers(0, im.size[1] - extent + 1)
    label = int(rng.integers(8))
    dx, dy = NEIGHBOURS[label]
    step = p.patch + p.gap
    patches = []
    for gx, gy in ((0, 0), (dx, dy)):
        jx, jy = rng.integers(-p.jitter, p.jitter + 1, size=2)
        x0, y0 = ox + p.jitter + (1 + gx) * step + jx, oy + p.jitter + (1 + gy) * step + jy
        a = np.asarray(im.crop((x0, y0, x0 + p.patch, y0 + p.patch)), dtype=np.float32)
        if rng.random() < p.downsample_prob:
            side = int(np.sqrt(rng.uniform(p.min_pixels, p.patch**2)))
            small = Image.fromarray(a.astype(np.uint8)).resize((side, side), Image.BILINEAR)
            a = np.asarray(small.resize((p.patch, p.patch), Image.BILINEAR), dtype=np.float32)
        keep = int(rng.integers(3))
        noise = rng.standard_normal(a.shape).astype(np.float32) * a[..., keep].std() * p.noise_ratio + a[..., keep].mean()
        noise[..., keep] = a[..., keep]
        patches.append(np.clip(noise, 0, 255).astype(np.uint8))
    return np.stack(patches), label


TASK = register_task(Task(
    name="context",
    params=ContextParams,
    plan=plan,
    finish=finish,
    fields=(Field("patches", "npy", "uint8", lambda p: (2, p.patch, p.patch, 3), "[centre, neighbour]", channels=True),),
    num_classes=lambda p: 8,
    summary="predict where a neighbouring patch sits relative to the centre patch (8 classes)",
    paper="Doersch et al. 2015, Unsupervised Visual Representation Learning by Context Prediction",
    draw=draw,
    baseline=paper_baseline,
    # Training (pretextgen train): CPU preset for 32 px CIFAR-like photos on 2 cores; GPU preset
    # ResNet-18 (CIFAR stem) with AMP. Sample params per preset: what `pretextgen compare` builds.
    # Trains on a fixed build: live samples predicted held-out photos' samples no better and probed
    # lower (BENCHMARKS.md, the table of every image task).
    trainer=TrainerSpec(
        recipe="pretextgen.training.recipes.spatial:Context", eval_input="rgb",
        presets={"cpu": dict(trunk="small", epochs=8, batch_size=128, optimizer="sgd", lr=0.05, weight_decay=0.0005, warmup_epochs=0.5),
                 "gpu": dict(trunk="resnet18", epochs=100, batch_size=256, optimizer="sgd", lr=0.1, weight_decay=0.0005, warmup_epochs=1, amp=True, num_workers=8)},
        samples={"cpu": {"patch": 16, "gap": 4, "jitter": 2, "min_pixels": 64, "min_side": 32},
                 "gpu": {"patch": 16, "gap": 4, "jitter": 2, "min_pixels": 64, "min_side": 32}}),
))
