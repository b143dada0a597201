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
from ..registry import Field, Task, TrainerSpec, register_task

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


# ---------------------------------------------------------------- what other parts need (Task fields)
def draw(sample, meta, ctx):
    """The views side by side."""
    from ..drawing import tagged

    views = list(np.asarray(sample["views"]))
    return tagged([(v, f"view {k}") for k, v in enumerate(views)]), f"positive pair, group {meta['label']}"


def pil_random_resized_crop(im, rng, p, resample=None):
    """torchvision's RandomResizedCrop on a PIL image (fallback: the whole image); bilinear unless
    ``resample`` says otherwise."""
    from PIL import Image

    resample = Image.BILINEAR if resample is None else resample
    w, h = im.size
    for _ in range(10):
        area = w * h * rng.uniform(*p.crop_scale)
        ar = np.exp(rng.uniform(np.log(p.crop_ratio[0]), np.log(p.crop_ratio[1])))
        cw, ch = int(round(np.sqrt(area * ar))), int(round(np.sqrt(area / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
            return im.resize((p.size, p.size), resample, box=(x0, y0, x0 + cw, y0 + ch))
    return im.resize((p.size, p.size), resample)


def _pil_hue(im, shift):
    from PIL import Image

    hsv = np.asarray(im.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(int) + int(shift * 255)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def paper_baseline(path, rng, p):
    """SimCLR/BYOL-style two-view loader: torchvision's PIL path written out (RandomResizedCrop, flip,
    ColorJitter via ImageEnhance in a random order, grayscale, PIL Gaussian blur, ImageOps.solarize)."""
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps

    src = Image.open(path).convert("RGB")
    views = []
    for k in range(p.views):
        im = pil_random_resized_crop(src, rng, p)
        if rng.random() < p.flip_prob:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        if rng.random() < p.jitter_prob:
            for op in rng.permutation(4):
                if op == 0:
                    im = ImageEnhance.Brightness(im).enhance(rng.uniform(1 - p.brightness, 1 + p.brightness))
                elif op == 1:
                    im = ImageEnhance.Contrast(im).enhance(rng.uniform(1 - p.contrast, 1 + p.contrast))
                elif op == 2:
                    im = ImageEnhance.Color(im).enhance(rng.uniform(1 - p.saturation, 1 + p.saturation))
                else:
                    im = _pil_hue(im, rng.uniform(-p.hue, p.hue))
        if rng.random() < p.gray_prob:
            im = im.convert("L").convert("RGB")
        if rng.random() < p.blur_prob[min(k, len(p.blur_prob) - 1)]:
            im = im.filter(ImageFilter.GaussianBlur(rng.uniform(*p.blur_sigma)))
        if rng.random() < p.solarize_prob[min(k, len(p.solarize_prob) - 1)]:
            im = ImageOps.solarize(im, 128)
        views.append(np.asarray(im))
    return np.stack(views), 0


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
    draw=draw,
    baseline=paper_baseline,
    # Training (pretextgen train): CPU preset for 32 px CIFAR-like photos on 2 cores; GPU preset
    # ResNet-18 (CIFAR stem) with AMP. Sample params per preset: what `pretextgen compare` builds.
    trainer=TrainerSpec(
        recipe="pretextgen.training.recipes.contrastive:Contrastive", eval_input="rgb",
        presets={"cpu": dict(trunk="small", epochs=10, batch_size=128, optimizer="adamw", lr=0.001, weight_decay=0.0001, warmup_epochs=1, extra={"temperature": 0.5}),
                 "gpu": dict(trunk="resnet18", epochs=200, batch_size=512, optimizer="adamw", lr=0.002, weight_decay=0.0001, warmup_epochs=10, amp=True, num_workers=8, extra={"temperature": 0.2})},
        samples={"cpu": {"size": 32, "crop_scale": [0.2, 1.0], "saturation": 0.4, "blur_prob": [0.0], "solarize_prob": [0.0], "blur_kernel": 3},
                 "gpu": {"size": 32, "crop_scale": [0.2, 1.0], "saturation": 0.4, "blur_prob": [0.0], "solarize_prob": [0.0], "blur_kernel": 3}}),
))
