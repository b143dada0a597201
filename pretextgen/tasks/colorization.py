"""Colorization as classification (Zhang, Isola & Efros, ECCV 2016, "Colorful Image Colorization").

A square crop (``crop_scale`` of the shorter side) resized to ``size``, mirrored with probability
``flip_prob``, converted to CIE Lab by the backend (NumPy, or DALI operators on the GPU/CPU). Input:
L. Target: the ab of every ``target_stride``-th pixel (rows and columns 0, s, 2s, ...: Zhang's Caffe
model subsamples by a 1x1 convolution of stride 4), soft-encoded over its ``neighbours`` nearest
in-gamut bins (grid ``grid_step``) with Gaussian weights of ``sigma``.

Class rebalancing: before the build, one pass over the sources counts the ab bins of every pixel
(sources shrunk to ``prior_side``) into the empirical prior; ``ab_prior.json`` beside the shards
holds the counts, the smoothed prior and the weights w = 1 / ((1 - lambda) p + lambda / Q),
E_p[w] = 1. The same pass skips near-grayscale sources (fewer than ``gray_fraction`` of pixels
with chroma >= ``gray_chroma``). ``prior=FILE`` reuses a prior (``pretextgen prior`` or another
build). Samples do not depend on the prior: a trainer weights pixel (i, j) by
``weights[ab_bins[i, j, 0]]`` (``pretextgen.tasks.colorization.pixel_weights``).

Plan / JSON: ``crop_box`` (source px), ``flip``, ``quantization`` {grid_step, bins, neighbours,
sigma, target_stride}, ``label`` = 0 (targets are per pixel; ``num_classes`` = the number of bins).
Fields: ``L.npy`` (size, size) float16 in [0, 100]; ``ab_target.npy`` (t, t, 2) float16;
``ab_bins.npy`` (t, t, neighbours) uint16, nearest first; ``ab_weights.npy`` (t, t, neighbours)
float16 summing to 1; t = ceil(size / target_stride).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import MAX_SIDE, SIDE_WHY, check_fractions, check_limits, check_probabilities
from .. import lab
from ..errors import PretextgenError
from ..geometry import random_square, view
from ..registry import Field, Task, TrainerSpec, register_task

PRIOR_FILE = "ab_prior.json"
PRIOR_FORMAT = "pretextgen-ab-prior/1"


@dataclass(frozen=True)
class ColorizationParams:
    size: int = 224  # output side in pixels
    crop_scale: tuple[float, float] = (0.6, 1.0)  # crop side / shorter source side
    flip_prob: float = 0.5  # horizontal mirror
    target_stride: int = 4  # targets at every 4th pixel (the paper's 56 x 56 for 224)
    grid_step: int = 10  # ab bin size
    neighbours: int = 5  # soft encoding over this many nearest bins (1: one-hot)
    sigma: float = 5.0  # Gaussian of the soft encoding, ab units
    prior: str = ""  # ab_prior.json to reuse; "" computes it from the sources
    prior_sigma: float = 5.0  # smoothing of the empirical prior, ab units
    prior_lambda: float = 0.5  # weight of the uniform distribution in the rebalancing mix
    prior_side: int = 256  # sources shrunk to this longer side (area filter) for the prior pass
    gray_chroma: float = 5.0  # a pixel is coloured when sqrt(a^2 + b^2) >= this
    gray_fraction: float = 0.01  # a source with fewer coloured pixels than this is skipped
    min_side: int = 32

    LIMITS = {  # not a field: see config.check_limits
        "size": (MAX_SIDE, SIDE_WHY),
        "neighbours": (32, "every target pixel stores this many bins and weights; the paper uses 5"),
        "prior_side": (4096, "the prior pass converts every source to Lab at this longer side; 256 by default"),
    }
    MAX_TARGET_SIDE = 256  # ceil(size / target_stride): the paper's 56; each target pixel holds neighbours bins

    def validate(self):
        check_limits(self)
        if self.size < 8:
            raise ValueError("size: must be at least 8")
        check_fractions(self, "crop_scale")
        check_probabilities(self, "flip_prob")
        if self.target_stride < 1:
            raise ValueError("target_stride: must be at least 1")
        if self.target_stride > self.size:
            raise ValueError(f"target_stride: {self.target_stride} is larger than size {self.size}; "
                             f"lower target_stride to <= {self.size} or raise size to >= {self.target_stride}")
        if self.target_side() > self.MAX_TARGET_SIDE:
            t, m = self.target_side(), self.MAX_TARGET_SIDE
            fixes = f"raise target_stride to >= {-(-self.size // m)} or lower size to <= {m * self.target_stride}"
            raise ValueError(f"target_stride: size {self.size} / target_stride {self.target_stride} gives {t} x {t} "
                             f"targets, above the limit of {m} a side (each target pixel stores neighbours bins "
                             f"and weights; the paper: 224 / 4 = 56); {fixes}")
        if not 2 <= self.grid_step <= 64:
            raise ValueError("grid_step: must be in 2..64 (ab units)")
        if self.neighbours < 1:
            raise ValueError("neighbours: must be at least 1")
        if self.neighbours > 10:  # 10: the fewest in-gamut bins of any grid_step (64); only then count them
            bins = len(lab.gamut_bins(self.grid_step))
            if self.neighbours > bins:
                raise ValueError(f"neighbours: {self.neighbours} is more than the {bins} ab bins of grid_step "
                                 f"{self.grid_step}; lower neighbours to <= {bins} or lower grid_step (finer bins)")
        if self.sigma <= 0 or self.prior_sigma < 0:
            raise ValueError("sigma/prior_sigma: need sigma > 0 and prior_sigma >= 0")
        if not 0 < self.prior_lambda <= 1:
            raise ValueError("prior_lambda: must be in (0, 1]")
        if self.prior_side < 8:
            raise ValueError("prior_side: must be at least 8")
        if self.gray_chroma < 0 or not 0 <= self.gray_fraction < 1:
            raise ValueError("gray_chroma/gray_fraction: need gray_chroma >= 0 and 0 <= gray_fraction < 1")
        if self.min_side < 1:
            raise ValueError("min_side: must be at least 1")

    def target_side(self) -> int:
        return -(-self.size // self.target_stride)


def quantization(p: ColorizationParams) -> dict:
    return {"grid_step": p.grid_step, "bins": len(lab.gamut_bins(p.grid_step)), "neighbours": p.neighbours,
            "sigma": p.sigma, "target_stride": p.target_stride}


def plan(p: ColorizationParams, rng: np.random.Generator, width: int, height: int, part: int = 0) -> dict:
    box = random_square(rng, width, height, p.crop_scale)
    flip = bool(rng.random() < p.flip_prob)
    return {"crop_box": box, "flip": flip, "quantization": quantization(p), "label": 0,
            "views": [view(box, (p.size, p.size))]}


def oriented(view_lab: np.ndarray, plan: dict) -> np.ndarray:
    """The Lab view (float32, from the backend's view_post) mirrored when the plan says so."""
    return view_lab[:, ::-1] if plan["flip"] else view_lab


def ab_targets(p: ColorizationParams, image_lab: np.ndarray) -> dict:
    """The quantized ab targets of a Lab crop: ab at the target pixels, their soft encoding."""
    ab = image_lab[:: p.target_stride, :: p.target_stride, 1:]
    idx, w = lab.soft_encode(ab, lab.gamut_bins(p.grid_step), p.neighbours, p.sigma)
    return {"ab_target": ab.astype(np.float16), "ab_bins": idx, "ab_weights": w.astype(np.float16)}


def finish(p: ColorizationParams, views: list[np.ndarray], plan: dict) -> dict:
    image = oriented(views[0], plan)
    return {"L": np.ascontiguousarray(image[..., 0], np.float16), **ab_targets(p, image)}


def pixel_weights(ab_bins: np.ndarray, prior: dict) -> np.ndarray:
    """Class-rebalancing weight of each target pixel: the weight of its nearest bin (Zhang 2016)."""
    return np.asarray(prior["weights"], np.float32)[ab_bins[..., 0]]


def view_post(view_rgb: np.ndarray) -> np.ndarray:
    return lab.srgb_to_lab(view_rgb)


def dali_view_post(node):
    from ..pipelines.lab import lab_from_rgb

    return lab_from_rgb(node)


# ---------------------------------------------------------------- the ab prior, one pass over the sources
def _source_stats(args) -> list[tuple[list[int], float]]:
    """Per source: (ab bin counts, fraction of coloured pixels) of the source shrunk to prior_side."""
    import cv2

    from ..sources import Source, load_rgb

    root, items, p = args
    out = []
    for d in items:
        rgb = load_rgb(Path(root), Source(**d))
        h, w = rgb.shape[:2]
        f = p.prior_side / max(h, w)
        if f < 1:
            rgb = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        image = lab.srgb_to_lab(rgb)
        chroma = np.hypot(image[..., 1], image[..., 2])
        out.append((lab.ab_histogram(image, p.grid_step).tolist(), float((chroma >= p.gray_chroma).mean())))
    return out


def sources_digest(sources) -> str:
    h = hashlib.sha256()
    for s in sources:
        h.update(f"{s.path}\t{s.width}\t{s.height}\n".encode())
    return h.hexdigest()


def _gray_key(p: ColorizationParams) -> dict:
    return {"prior_side": p.prior_side, "gray_chroma": p.gray_chroma, "gray_fraction": p.gray_fraction}


def compute_prior(p: ColorizationParams, root, sources, workers: int = 1, progress=None) -> dict:
    """The ab prior of ``sources`` (their non-gray ones) as the JSON-native dict of ab_prior.json."""
    from ..parallel import map_chunks

    jobs = [(str(root), [s.to_dict() for s in sources[k : k + 16]], p) for k in range(0, len(sources), 16)]
    stats = map_chunks(_source_stats, jobs, workers, progress)
    bins = lab.gamut_bins(p.grid_step)
    counts = np.zeros(len(bins), np.int64)
    gray = {}
    for s, (c, coloured) in zip(sources, stats):
        if coloured < p.gray_fraction:
            gray[s.path] = round(coloured, 6)
        else:
            counts += np.asarray(c, np.int64)
    out = {"format": PRIOR_FORMAT, "grid_step": p.grid_step, "bins": bins.astype(int).tolist(),
           "counts": counts.tolist(), "images": len(sources) - len(gray), "pixels": int(counts.sum()),
           "sources_digest": sources_digest(sources), "gray": gray, **_gray_key(p)}
    if counts.sum() > 0:
        out.update(_weights(p, counts))
    return out


def _weights(p: ColorizationParams, counts) -> dict:
    prior, w = lab.prior_weights(np.asarray(counts), lab.gamut_bins(p.grid_step), p.prior_sigma, p.prior_lambda)
    return {"prior_sigma": p.prior_sigma, "prior_lambda": p.prior_lambda,
            "prior": [round(float(v), 10) for v in prior], "weights": [round(float(v), 6) for v in w]}


def load_prior(path, p: ColorizationParams) -> dict:
    """A prior file checked against the params; weights recomputed if lambda or sigma differ."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PretextgenError(f"prior file {path} does not exist; make one with `pretextgen prior`") from None
    except (OSError, ValueError) as e:
        raise PretextgenError(f"prior file {path} is not a readable JSON file: {e}") from None
    if not isinstance(data, dict) or data.get("format") != PRIOR_FORMAT:
        raise PretextgenError(f"prior file {path} is not a pretextgen ab prior (format {PRIOR_FORMAT})")
    if data["grid_step"] != p.grid_step or data["bins"] != lab.gamut_bins(p.grid_step).astype(int).tolist():
        raise PretextgenError(f"prior file {path} has ab bins of grid step {data['grid_step']}; "
                              f"this build uses grid_step={p.grid_step}")
    if "weights" not in data:
        raise PretextgenError(f"prior file {path} counts no coloured pixel (all its sources are near-grayscale)")
    if (data.get("prior_sigma"), data.get("prior_lambda")) != (p.prior_sigma, p.prior_lambda):
        data.update(_weights(p, data["counts"]))
    return data


def select_sources(p: ColorizationParams, root, sources, out, workers: int = 1, progress=None):
    """The build step: (kept sources, skipped [{source, reason}], manifest extras). Writes
    out/ab_prior.json: the reused ``prior`` file, the one of an interrupted build, or a new one."""
    from ..progress import Progress
    from ..shards import file_sha256, write_json

    target = Path(out) / PRIOR_FILE
    given = Path(p.prior) if p.prior else (target if target.exists() else None)
    data = load_prior(given, p) if given is not None else None
    digest = sources_digest(sources)
    if data is None or data["sources_digest"] != digest or any(data[k] != v for k, v in _gray_key(p).items()):
        bar = Progress(len(sources), "ab prior", "images", progress)
        fresh = compute_prior(p, root, sources, workers, bar)
        bar.close()
        if data is None:
            if "weights" not in fresh:
                raise PretextgenError("every source is near-grayscale (see gray_chroma, gray_fraction): "
                                      "colorization needs colour photos")
            data = fresh
        else:  # a reused prior: keep its counts, take this source set's gray list
            data = {**data, "gray": fresh["gray"], "sources_digest": digest}
    write_json(target, data)
    gray = data["gray"]
    kept = [s for s in sources if s.path not in gray]
    skipped = [{"source": s.path, "reason": f"near-grayscale: {gray[s.path]:.2%} of pixels with chroma >= "
                f"{p.gray_chroma:g} (gray_fraction={p.gray_fraction:g})"} for s in sources if s.path in gray]
    extra = {"ab_prior": {"file": PRIOR_FILE, "sha256": file_sha256(target), "bins": len(data["bins"]),
                          "images": data["images"], "pixels": data["pixels"],
                          "reused": str(p.prior) if p.prior else None}}
    return kept, skipped, extra


def write_prior(p: ColorizationParams, root, sources, path, workers: int = 1, progress=None) -> dict:
    """``pretextgen prior``: compute the prior of ``sources`` into ``path``; returns it."""
    from ..shards import write_json

    data = compute_prior(p, root, sources, workers, progress)
    if "weights" not in data:
        raise PretextgenError("every source is near-grayscale (see gray_chroma, gray_fraction): no ab prior")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data)
    return data


def target_fields() -> tuple[Field, Field]:
    """The soft-encoded ab target fields, shared with split-brain."""
    return (
        Field("ab_bins", "npy", "uint16", lambda p: (p.target_side(), p.target_side(), p.neighbours),
              "nearest in-gamut ab bins, nearest first", compare="bins", channels=True, ids=True),
        Field("ab_weights", "npy", "float16", lambda p: (p.target_side(), p.target_side(), p.neighbours),
              "soft-encoding weights, sum 1", compare="weights:ab_bins", channels=True),
    )


L_FIELD = Field("L", "npy", "float16", lambda p: (p.size, p.size), "lightness L of the crop, 0..100")


# ---------------------------------------------------------------- what other parts need (Task fields)
def draw(sample, meta, ctx):
    """L, the ab target (colour at fixed L), and L with the target's colours (ab upsampled)."""
    from ..drawing import ab_colour, lab_to_rgb, tagged, upsample

    L = np.asarray(sample["L"], np.float32)
    ab = np.asarray(sample["ab_target"], np.float32)
    return tagged([(L, "L"), (ab_colour(ab), "ab target"), (lab_to_rgb(L, upsample(ab, L.shape)), "L + ab")]), \
        "colour target"


def ab_usage(out, m: dict, p: ColorizationParams) -> list[str]:
    """How the ab targets spread over the in-gamut bins: the counts of the build's ab_prior.json (every
    pixel of the sources, no sample decoded); without that file, the nearest bins of sampled targets."""
    from ..inspect.summary import sampled, usage_lines

    bins = lab.gamut_bins(p.grid_step)
    names = [f"ab ({a:g}, {b:g})" for a, b in bins]
    path = Path(out) / PRIOR_FILE
    if path.exists():
        data = json.loads(path.read_text())
        reused = (m.get("ab_prior") or {}).get("reused")
        where = (f"{PRIOR_FILE}: {data['pixels']} pixels of {data['images']} source image(s)"
                 + (f", a prior reused from {reused}" if reused else ""))
        return usage_lines(data["counts"], names, "in-gamut ab bins", where)
    samples = sampled(out, m)
    counts = np.bincount(np.concatenate([np.asarray(s["ab_bins"])[..., 0].ravel() for s in samples] or [[]])
                         .astype(np.int64), minlength=len(bins))
    return usage_lines(counts, names, "in-gamut ab bins (nearest)",
                       f"target pixels of {len(samples)} sample(s) (no {PRIOR_FILE} in the build)")


def pixel_targets(out, m: dict, p: ColorizationParams) -> list[str]:
    """inspect's label lines: the target per pixel, and the ab-bin usage (``ab_usage``)."""
    t = p.target_side()
    return [f"labels: per pixel (cls is always 0): the ab of {t} x {t} target pixels a sample (target_stride "
            f"{p.target_stride}), soft-encoded over the {p.neighbours} nearest of {len(lab.gamut_bins(p.grid_step))} "
            f"in-gamut ab bins (grid_step {p.grid_step})", *ab_usage(out, m, p)]


def soft_encode_dense(ab, bins, k, sigma):
    """The baselines' soft encoding: a dense (h, w, Q) array from the k nearest bins of every pixel."""
    x = ab.reshape(-1, 2)
    d = np.sqrt(((x[:, None, :] - bins[None, :, :]) ** 2).sum(-1))
    nn = np.argsort(d, axis=1)[:, :k]
    w = np.exp(-np.take_along_axis(d, nn, 1) ** 2 / (2 * sigma**2))
    out = np.zeros((len(x), len(bins)), np.float32)
    np.put_along_axis(out, nn, w / w.sum(1, keepdims=True), 1)
    return out.reshape(ab.shape[:2] + (len(bins),))


def pil_crop_lab(path, rng, p):
    """The baselines' crop (PIL), mirrored or not, in Lab (skimage, float64)."""
    from PIL import Image
    from skimage.color import rgb2lab

    from .rotation import pil_square_crop

    crop = pil_square_crop(path, rng, p)
    if rng.random() < p.flip_prob:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    return rgb2lab(np.asarray(crop))


def paper_baseline(path, rng, p):
    """Colorization loader in the style of the PyTorch re-implementations of Zhang et al. 2016: PIL
    crop + resize + flip, skimage.color.rgb2lab, then the soft encoding as a dense (h*w, Q) array
    built from the 5 nearest bins of every target pixel (their NNEncode), bins = the in-gamut set."""
    lab_ = pil_crop_lab(path, rng, p)
    target = soft_encode_dense(lab_[:: p.target_stride, :: p.target_stride, 1:],
                               lab.gamut_bins(p.grid_step).astype(np.float64), p.neighbours, p.sigma)
    return (lab_[..., :1].astype(np.float32), target), 0


TASK = register_task(Task(
    name="colorization",
    params=ColorizationParams,
    plan=plan,
    finish=finish,
    fields=(L_FIELD, Field("ab_target", "npy", "float16", lambda p: (p.target_side(), p.target_side(), 2),
                           "ab of the target pixels", channels=True), *target_fields()),
    num_classes=lambda p: len(lab.gamut_bins(p.grid_step)),
    select_sources=select_sources,
    usable="as every image task, and sources must hold colour (gray_fraction of pixels with chroma >= gray_chroma)",
    view_post=view_post,
    dali_view_post=dali_view_post,
    summary="predict the quantized ab colour (soft-encoded over in-gamut bins) of each pixel from L",
    paper="Zhang, Isola & Efros 2016, Colorful Image Colorization",
    draw=draw,
    baseline=paper_baseline,
    pixel_targets=pixel_targets,
    # Training (pretextgen train): CPU preset for 32 px CIFAR-like photos on 2 cores; GPU preset
    # ResNet-18 (CIFAR stem) with AMP. Sample params per preset: what `pretextgen compare` builds.
    trainer=TrainerSpec(
        recipe="pretextgen.training.recipes.colour:Colorization", eval_input="L",
        presets={"cpu": dict(trunk="small", epochs=8, batch_size=64, optimizer="adamw", lr=0.001, weight_decay=0.0001, warmup_epochs=0.5),
                 "gpu": dict(trunk="resnet18", epochs=100, batch_size=256, optimizer="adamw", lr=0.001, weight_decay=0.0001, warmup_epochs=1, amp=True, num_workers=8)},
        samples={"cpu": {"size": 32, "target_stride": 2},
                 "gpu": {"size": 32, "target_stride": 2}}),
))
