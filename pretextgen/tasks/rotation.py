"""Rotation prediction (Gidaris, Singh & Komodakis, ICLR 2018).

A square crop (square first: a rotated non-square image gives its label away through its aspect
ratio) resized to ``size``, rotated counter-clockwise by k x 90 degrees; label k in 0..3.

Plan / JSON: ``crop_box`` (source px), ``k``, ``label`` = k.
Fields: ``image.png`` (size, size, 3) uint8.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import MAX_SIDE, SIDE_WHY, check_fractions, check_limits
from ..geometry import random_square, view
from ..registry import Field, Task, TrainerSpec, register_task


@dataclass(frozen=True)
class RotationParams:
    size: int = 224  # output side in pixels
    crop_scale: tuple[float, float] = (0.6, 1.0)  # square side as a fraction of the shorter source side
    all_rotations: bool = False  # emit the 4 rotations of each crop as 4 consecutive samples
    min_side: int = 32  # sources with a shorter side below this are skipped

    LIMITS = {"size": (MAX_SIDE, SIDE_WHY)}  # not a field: see config.check_limits

    def validate(self):
        check_limits(self)
        if self.size < 8:
            raise ValueError("size: must be at least 8")
        check_fractions(self, "crop_scale")
        if self.min_side < 1:
            raise ValueError("min_side: must be at least 1")


def plan(p: RotationParams, rng: np.random.Generator, width: int, height: int, part: int = 0) -> dict:
    box = random_square(rng, width, height, p.crop_scale)
    k = int(rng.integers(4))
    if p.all_rotations:
        k = part
    return {"crop_box": box, "k": k, "label": k, "views": [view(box, (p.size, p.size))]}


# np.rot90(x, k) for k = 1, 2, 3 as OpenCV rotations: the same bytes, faster than copying NumPy's
# strided view (BENCHMARKS.md), which matters on CPU builds.
_CV2_ROTATE = {1: "ROTATE_90_COUNTERCLOCKWISE", 2: "ROTATE_180", 3: "ROTATE_90_CLOCKWISE"}


def finish(p: RotationParams, views: list[np.ndarray], plan: dict) -> dict:
    k = plan["k"] % 4
    if k == 0:
        return {"image": np.ascontiguousarray(views[0])}
    import cv2

    return {"image": cv2.rotate(np.ascontiguousarray(views[0]), getattr(cv2, _CV2_ROTATE[k]))}


# ---------------------------------------------------------------- what other parts need (Task fields)
def torch_finish(p: RotationParams, views, plans) -> dict:
    """``finish`` for a whole batch of torch tensors (B, H, W, C): one rot90 per k."""
    import torch

    v = views[0]
    out = torch.empty_like(v)
    ks = torch.tensor([plan["k"] for plan in plans])
    for k in range(4):
        idx = torch.nonzero(ks == k).flatten().to(v.device)
        if len(idx):
            out[idx] = torch.rot90(v[idx], k, dims=(1, 2))
    return {"image": out}


def upright(image: np.ndarray, k: int) -> np.ndarray:
    """A rotation sample turned back by -k x 90 deg: the crop as it was."""
    return np.rot90(image, -k)


def draw(sample, meta, ctx):
    """The sample as stored, then turned back by -k x 90 deg: the second must stand upright."""
    from ..drawing import tagged

    img, k = sample["image"], int(meta["k"])
    return tagged([(img, f"stored, k={k}"), (upright(img, k), "turned back")]), \
        f"rotation {90 * k} deg CCW (label {meta['label']})"


def pil_square_crop(path, rng, p):
    """A random square crop (side ``crop_scale`` x the shorter side) resized to ``size``, in PIL."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    w, h = im.size
    side = int(min(w, h) * rng.uniform(*p.crop_scale))
    x0, y0 = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
    return im.resize((p.size, p.size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side))


def paper_baseline(path, rng, p):
    """RotNet-style loader (Gidaris et al.): PIL crop + resize, np.rot90."""
    crop = pil_square_crop(path, rng, p)
    k = int(rng.integers(4))
    return np.ascontiguousarray(np.rot90(np.asarray(crop), k)), k


TASK = register_task(Task(
    name="rotation",
    params=RotationParams,
    plan=plan,
    finish=finish,
    fields=(Field("image", "png", "uint8", lambda p: (p.size, p.size, 3), "the crop rotated by k x 90 deg CCW",
                  channels=True),),
    num_classes=lambda p: 4,
    samples_per_plan=lambda p: 4 if p.all_rotations else 1,
    summary="predict the rotation (0/90/180/270 deg) of a square crop",
    paper="Gidaris et al. 2018, Unsupervised Representation Learning by Predicting Image Rotations",
    draw=draw,
    torch_finish=torch_finish,
    baseline=paper_baseline,
    # Training (pretextgen train): CPU preset for 32 px CIFAR-like photos on 2 cores; GPU preset
    # ResNet-18 (CIFAR stem) with AMP. Sample params per preset: what `pretextgen compare` builds.
    trainer=TrainerSpec(
        recipe="pretextgen.training.recipes.spatial:Rotation", eval_input="rgb",
        presets={"cpu": dict(trunk="small", epochs=8, batch_size=128, optimizer="sgd", lr=0.05, weight_decay=0.0005, warmup_epochs=0.5),
                 "gpu": dict(trunk="resnet18", epochs=100, batch_size=256, optimizer="sgd", lr=0.1, weight_decay=0.0005, warmup_epochs=1, amp=True, num_workers=8)},
        samples={"cpu": {"size": 32, "crop_scale": [0.8, 1.0], "all_rotations": True},
                 "gpu": {"size": 32, "crop_scale": [0.8, 1.0], "all_rotations": True}}),
))
