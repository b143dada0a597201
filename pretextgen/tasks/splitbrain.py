"""Split-brain autoencoders, Lab (Zhang, Isola & Efros, CVPR 2017, "Split-Brain Autoencoders:
Unsupervised Learning by Cross-Channel Prediction").

One crop, two cross-channel problems: L -> ab and ab -> L, both as classification. The crop, the
flip, the Lab conversion (on the backend: NumPy or DALI operators), the ab quantization options
(``grid_step``, ``neighbours``, ``sigma``, ``target_stride``), the ab prior pass (ab_prior.json
beside the shards, near-grayscale sources skipped: ab -> L needs colour) and every parameter are
colorization's (``pretextgen.tasks.colorization``); L is quantized into ``l_bins`` equal bins over
[0, 100].

Plan / JSON: ``crop_box`` (source px), ``flip``, ``quantization`` {grid_step, bins, neighbours,
sigma, target_stride, l_bins}, ``label`` = 0 (per-pixel targets; ``num_classes`` = ab bins).
Fields: ``L.npy`` (size, size) float16 and ``ab.npy`` (size, size, 2) float16: the two inputs;
``ab_bins.npy`` / ``ab_weights.npy`` (t, t, neighbours): target of L -> ab; ``L_bins.npy`` (t, t)
uint8: target of ab -> L, the L bin of the target pixels; t = ceil(size / target_stride).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import lab
from ..registry import Field, Task, TrainerSpec, register_task
from . import colorization as col


@dataclass(frozen=True)
class SplitBrainParams(col.ColorizationParams):
    l_bins: int = 100  # L quantized into this many equal bins over [0, 100]

    LIMITS = {**col.ColorizationParams.LIMITS, "l_bins": (256, "L bins are stored as uint8")}

    def validate(self):
        super().validate()  # checks LIMITS too (type(self).LIMITS)
        if self.l_bins < 2:
            raise ValueError("l_bins: must be at least 2")


def plan(p: SplitBrainParams, rng: np.random.Generator, width: int, height: int, part: int = 0) -> dict:
    out = col.plan(p, rng, width, height, part)
    out["quantization"]["l_bins"] = p.l_bins
    return out


def finish(p: SplitBrainParams, views: list[np.ndarray], plan: dict) -> dict:
    image = col.oriented(views[0], plan)
    targets = col.ab_targets(p, image)
    s = p.target_stride
    return {"L": np.ascontiguousarray(image[..., 0], np.float16),
            "ab": np.ascontiguousarray(image[..., 1:], np.float16),
            "ab_bins": targets["ab_bins"], "ab_weights": targets["ab_weights"],
            "L_bins": lab.quantize_l(image[::s, ::s, 0], p.l_bins)}


# ---------------------------------------------------------------- what other parts need (Task fields)
def draw(sample, meta, ctx):
    """Both halves of the crop: L -> ab (L, the nearest ab bin of each target pixel, L in those
    colours) and ab -> L (ab at fixed L, the target L bins as gray)."""
    from ..drawing import COMPACT_HEIGHT, WHITE, ab_colour, hstack, lab_to_rgb, labeled, tagged, upsample

    q = meta.get("quantization", {})
    L = np.asarray(sample["L"], np.float32)
    ab = np.asarray(sample["ab"], np.float32)
    ab_t = lab.gamut_bins(int(q.get("grid_step", 10)))[np.asarray(sample["ab_bins"])[..., 0]]
    nl = int(q.get("l_bins", 100))
    L_t = (np.asarray(sample["L_bins"], np.float32) + 0.5) * (100.0 / nl)
    h = COMPACT_HEIGHT
    to_ab = tagged([(L, "L (input)"), (ab_colour(ab_t), "ab bins (target)"),
                    (lab_to_rgb(L, upsample(ab_t, L.shape)), "L + target")], h)
    to_l = tagged([(ab_colour(ab), "ab (input)"), (lab_to_rgb(L_t, np.zeros((*L_t.shape, 2))), "L bins (target)")], h)
    return hstack([labeled(to_ab, "L -> ab", paper=WHITE), labeled(to_l, "ab -> L", paper=WHITE)], 12), \
        f"L -> ab ({len(lab.gamut_bins(int(q.get('grid_step', 10))))} ab bins) and ab -> L ({nl} L bins)" + \
        (", flipped" if meta.get("flip") else "")


def pixel_targets(out, m: dict, p: SplitBrainParams) -> list[str]:
    """inspect's label lines: the two targets per pixel, and the ab-bin usage (``colorization.ab_usage``)."""
    t = p.target_side()
    return [f"labels: per pixel (cls is always 0): two targets at {t} x {t} pixels a sample (target_stride "
            f"{p.target_stride}): L -> ab, the ab soft-encoded over the {p.neighbours} nearest of "
            f"{len(lab.gamut_bins(p.grid_step))} in-gamut ab bins (grid_step {p.grid_step}); ab -> L, the L bin "
            f"(of {p.l_bins})", *col.ab_usage(out, m, p)]


def paper_baseline(path, rng, p):
    """Split-brain loader in the style of the PyTorch re-implementations of Zhang et al. 2017: the
    colorization baseline's crop and Lab; inputs L and ab, targets the dense ab encoding and L bins."""
    lab_ = col.pil_crop_lab(path, rng, p)
    t = lab_[:: p.target_stride, :: p.target_stride]
    ab_target = col.soft_encode_dense(t[..., 1:], lab.gamut_bins(p.grid_step).astype(np.float64), p.neighbours, p.sigma)
    l_bins = np.clip(np.floor(t[..., 0] * p.l_bins / 100), 0, p.l_bins - 1).astype(np.uint8)
    return (lab_[..., :1].astype(np.float32), lab_[..., 1:].astype(np.float32), ab_target, l_bins), 0


TASK = register_task(Task(
    name="splitbrain",
    params=SplitBrainParams,
    plan=plan,
    finish=finish,
    fields=(col.L_FIELD,
            Field("ab", "npy", "float16", lambda p: (p.size, p.size, 2), "ab of the crop (input of ab -> L)",
                  channels=True),
            *col.target_fields(),
            Field("L_bins", "npy", "uint8", lambda p: (p.target_side(), p.target_side()),
                  "L bin of the target pixels (target of ab -> L)", compare="ordinal", ids=True)),
    num_classes=lambda p: len(lab.gamut_bins(p.grid_step)),
    select_sources=col.select_sources,
    usable=col.TASK.usable,
    view_post=col.view_post,
    dali_view_post=col.dali_view_post,
    summary="two cross-channel problems on one Lab crop: L -> quantized ab, ab -> quantized L",
    paper="Zhang, Isola & Efros 2017, Split-Brain Autoencoders: Unsupervised Learning by Cross-Channel Prediction",
    draw=draw,
    baseline=paper_baseline,
    pixel_targets=pixel_targets,
    # Training (pretextgen train): CPU preset for 32 px CIFAR-like photos on 2 cores; GPU preset
    # ResNet-18 (CIFAR stem) with AMP. Sample params per preset: what `pretextgen compare` builds.
    trainer=TrainerSpec(
        recipe="pretextgen.training.recipes.colour:SplitBrain", eval_input="L+ab",
        presets={"cpu": dict(trunk="small", epochs=8, batch_size=64, optimizer="adamw", lr=0.001, weight_decay=0.0001, warmup_epochs=0.5),
                 "gpu": dict(trunk="resnet18", epochs=100, batch_size=256, optimizer="adamw", lr=0.001, weight_decay=0.0001, warmup_epochs=1, amp=True, num_workers=8)},
        samples={"cpu": {"size": 32, "target_stride": 2},
                 "gpu": {"size": 32, "target_stride": 2}}),
))
