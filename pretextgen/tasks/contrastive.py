"""Contrastive views (SimCLR, Chen et al. 2020; BYOL, Grill et al. 2020): a group of ``views`` (k,
default 2) independently augmented views of one source image, for InfoNCE / NT-Xent, N-pair,
triplet, lifted-structure and margin-contrastive losses. The label is the group id (the plan's
number: every sample is its own group, and all its views share one source).

Each view, in the usual order: RandomResizedCrop (area ``crop_scale``, aspect ``crop_ratio``) to
``size``; horizontal flip (``flip_prob``); colour jitter (``jitter_prob``: brightness, contrast,
saturation, hue in a random order, torchvision's ColorJitter); grayscale (``gray_prob``); Gaussian
blur (``blur_prob``, sigma in ``blur_sigma``, a ``blur_kernel`` px kernel); solarize (``solarize_prob``,
pixels >= 128 inverted). Defaults: BYOL's recipe (asymmetric blur 1.0 / 0.1 and solarize 0 / 0.2);
the probabilities are lists, one per view, the last repeated for further views.

Plan / JSON: ``views_params``: per view ``box`` (source px), ``flip``, ``jitter`` (null or
{``order``, ``brightness``, ``contrast``, ``saturation``, ``hue``}), ``gray``, ``blur_sigma`` (null
or sigma), ``solarize``; ``label`` = group id.
Fields: ``views.npy`` (k, size, size, 3) uint8.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import hsv
from ..config import MAX_SIDE, SIDE_WHY, check_limits
from ..geometry import random_resized_box, view
from ..registry import Field, Task, register_task

JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


@dataclass(frozen=True)
class ContrastiveParams:
    views: int = 2  # k views per group
    size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.3333333333333333)
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4  # factor in [1 - b, 1 + b]
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1  # shift in [-hue, hue] turns
    gray_prob: float = 0.2
    blur_prob: tuple[float, ...] = (1.0, 0.1)  # per view; the last value for further views
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int = 23  # odd; about 10% of size
    solarize_prob: tuple[float, ...] = (0.0, 0.2)  # per view; the last value for further views
    min_side: int = 32

    LIMITS = {  # not a field: see config.check_limits
        "views": (32, "views per sample, each a full crop; SimCLR/BYOL use 2, multi-crop recipes up to 12"),
        "size": (MAX_SIDE, SIDE_WHY),
        "blur_kernel": (255, "Gaussian kernel side in px; SimCLR uses about size / 10 (23 for 224)"),
    }

    def validate(self):
        check_limits(self)
        if self.views < 1:
            raise ValueError("views: must be at least 1")
        if self.size < 8:
            raise ValueError("size: must be at least 8")
        for name in ("crop_scale", "crop_ratio", "blur_sigma"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name}: need 0 < min <= max")
        if self.crop_scale[1] > 1:
            raise ValueError("crop_scale: max must be at most 1")
        for name in ("flip_prob", "jitter_prob", "gray_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: must be in [0, 1]")
        for name in ("blur_prob", "solarize_prob"):
            v = getattr(self, name)
            if not v or any(not 0 <= x <= 1 for x in v):
                raise ValueError(f"{name}: a list of probabilities in [0, 1], one per view")
        if min(self.brightness, self.contrast, self.saturation) < 0 or not 0 <= self.hue <= 0.5:
            raise ValueError("brightness/contrast/saturation: must be >= 0; hue: in [0, 0.5]")
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise ValueError("blur_kernel: must be a positive odd number")
        if self.blur_kernel > self.size:
            raise ValueError(f"blur_kernel: {self.blur_kernel} is wider than the {self.size} px views; lower "
                             f"blur_kernel to <= {self.size - 1 + self.size % 2} (odd; SimCLR uses about size / 10) "
                             f"or raise size to >= {self.blur_kernel}")


def _per_view(values: tuple, k: int) -> float:
    return values[min(k, len(values) - 1)]


def _r(x: float) -> float:
    return round(float(x), 6)  # the JSON holds exactly the numbers that are applied


def plan(p: ContrastiveParams, rng: np.random.Generator, width: int, height: int, part: int = 0,
         index: int = 0) -> dict:
    params = []
    for k in range(p.views):
        box = random_resized_box(rng, width, height, p.crop_scale, p.crop_ratio)
        flip = bool(rng.random() < p.flip_prob)
        jitter = None
        if rng.random() < p.jitter_prob:
            jitter = {"order": [JITTER_OPS[o] for o in rng.permutation(4)],
                      "brightness": _r(rng.uniform(max(0, 1 - p.brightness), 1 + p.brightness)),
                      "contrast": _r(rng.uniform(max(0, 1 - p.contrast), 1 + p.contrast)),
                      "saturation": _r(rng.uniform(max(0, 1 - p.saturation), 1 + p.saturation)),
                      "hue": _r(rng.uniform(-p.hue, p.hue))}
        gray = bool(rng.random() < p.gray_prob)
        blur = _r(rng.uniform(*p.blur_sigma)) if rng.random() < _per_view(p.blur_prob, k) else None
        solarize = bool(rng.random() < _per_view(p.solarize_prob, k))
        params.append({"box": box, "flip": flip, "jitter": jitter, "gray": gray, "blur_sigma": blur,
                       "solarize": solarize})
    return {"views_params": params, "label": int(index),
            "views": [view(v["box"], (p.size, p.size)) for v in params]}


def _jitter(x: np.ndarray, j: dict) -> np.ndarray:
    """torchvision's ColorJitter on a float image, ops in the plan's order, clamped after each."""
    for op in j["order"]:
        f = j[op]
        if op == "brightness":
            x = x * f
        elif op == "contrast":
            x = f * x + (1 - f) * hsv.gray(x).mean()
        elif op == "saturation":
            x = f * x + (1 - f) * hsv.gray(x)[..., None]
        else:
            x = hsv.adjust_hue(x, f)
        x = np.clip(x, 0.0, 1.0)
    return x


def augment(p: ContrastiveParams, image: np.ndarray, v: dict) -> np.ndarray:
    """One view after its crop: flip, jitter, grayscale, blur, solarize, as the plan says."""
    import cv2

    x = hsv.to_float(image[:, ::-1] if v["flip"] else image)
    if v["jitter"] is not None:
        x = _jitter(x, v["jitter"])
    if v["gray"]:
        x = np.repeat(hsv.gray(x)[..., None], 3, -1)
    if v["blur_sigma"] is not None:
        x = cv2.GaussianBlur(np.ascontiguousarray(x), (p.blur_kernel, p.blur_kernel), v["blur_sigma"],
                             borderType=cv2.BORDER_REFLECT_101)
    out = hsv.to_uint8(x)
    if v["solarize"]:
        out = np.where(out >= 128, 255 - out, out).astype(np.uint8)
    return out


def finish(p: ContrastiveParams, views: list[np.ndarray], plan: dict) -> dict:
    return {"views": np.stack([augment(p, im, v) for im, v in zip(views, plan["views_params"])])}


TASK = register_task(Task(
    name="contrastive",
    params=ContrastiveParams,
    plan=plan,
    finish=finish,
    fields=(Field("views", "npy", "uint8", lambda p: (p.views, p.size, p.size, 3), "k augmented views of one image",
                  channels=True),),
    num_classes=lambda p: 0,  # one group per sample: the manifest states the number of samples
    label_is_plan_index=True,
    summary="k augmented views of one image (SimCLR/BYOL recipe); label = group id",
    paper="Chen et al. 2020 (SimCLR); Grill et al. 2020 (BYOL)",
))
