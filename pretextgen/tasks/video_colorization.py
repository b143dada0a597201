"""Colorization by pointing to a reference frame (Vondrick et al., ECCV 2018, "Tracking Emerges by
Colorizing Videos").

A colour reference frame r and ``targets`` later frames r + gap, r + 2 gap, ... of the same clip,
all cut by one square crop (``crop_scale`` of the shorter side) resized to ``size``. The model sees
every frame in grayscale (Lab L) and the reference's colours, and predicts each target pixel's
colour cluster: ab values quantized to the nearest of ``clusters`` k-means centres. The centres are
fit on the source clips before the build (``kmeans_frames`` frames drawn with ``kmeans_seed``),
written beside the shards as ``ab_clusters.npy`` and copied into every sample's JSON, so that a
sample's targets can be re-derived from the clip and its JSON alone.

Usability: a clip without colour gives targets that all fall in one cluster (BENCHMARKS.md), so
clips are checked first on fixed, evenly spaced
frames (``video.plans.check_frames``) and skipped, with the reason in the manifest's ``skipped``,
when fewer than ``gray_fraction`` of their pixels have a chroma sqrt(a^2 + b^2) >= ``gray_chroma``:
the rule and defaults of the image ``colorization`` task (real colour footage keeps well above
them). This runs before the k-means fit, so
the centres come from colour clips only. A clip of one colour throughout is skipped by the rule
every video task has (``flat_std``). A reference crop of one flat region of a colour clip is still
planned (plans are pixel-free); its targets are then few clusters, which the labels state exactly.

Quantization: the view is shrunk to ``label_size`` (area filter), converted to Lab (OpenCV, float:
L in 0..100, a and b in about -128..127), and each pixel's (a, b) takes the nearest centre's id.
Label (``cls``) = 0: the targets are per pixel.
Plan / JSON: ``frames`` [r, targets...], ``gap``, ``crop_box``, ``ab_centres`` (clusters x 2),
``clips`` / ``views``, ``label``.
Fields: ``reference.npy`` (size, size, 3) uint8 RGB; ``gray.npy`` (1 + targets, size, size) uint8
(Lab L x 255/100, reference first); ``bins.npy`` (1 + targets, label_size, label_size) uint8 (cluster
ids; the reference's are the colours to point at, the targets' are the labels).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import FLOW_LIMITS, MAX_SIDE, SIDE_WHY, check_fractions, check_limits
from ..geometry import random_square
from ..registry import Field, Task, TrainerSpec, register_task
from ..clips import VideoHooks, VideoTaskParams, views_of

CLUSTERS_FILE = "ab_clusters.npy"


@dataclass(frozen=True)
class VideoColorizationParams(VideoTaskParams):
    size: int = 128  # frame side in px
    label_size: int = 32  # side of the quantized colour targets
    targets: int = 3  # grayscale target frames after the reference
    gap: int = 5  # frames between the reference and the first target, and between targets
    crop_scale: tuple[float, float] = (0.7, 1.0)  # square crop side / shorter side, shared by all frames
    clusters: int = 16  # k-means centres in ab
    kmeans_frames: int = 64  # frames drawn from the clips to fit them
    kmeans_points: int = 20000  # ab values the fit uses
    kmeans_seed: int = 0
    gray_chroma: float = 5.0  # a pixel is coloured when sqrt(a^2 + b^2) >= this (image colorization's value)
    gray_fraction: float = 0.01  # a clip with fewer coloured pixels than this (check frames) is skipped

    def validate_rules(self):  # called by validate_flow()
        super().validate_rules()
        if not 0 <= self.gray_chroma <= 128:
            raise ValueError("gray_chroma: must be in [0, 128] (ab units)")
        if not 0 <= self.gray_fraction < 1:
            raise ValueError("gray_fraction: must be in [0, 1)")

    LIMITS = {  # not a field: see config.check_limits
        **FLOW_LIMITS,
        "size": (MAX_SIDE, SIDE_WHY),
        "targets": (16, "target frames per sample; Vondrick et al. use 3"),
        "gap": (300, "frames between targets: a clip needs targets x gap + 1 frames; 5 by default"),
        "clusters": (256, "cluster ids are stored as uint8"),
        "kmeans_frames": (1024, "frames decoded to fit the clusters; 64 by default"),
        "kmeans_points": (200_000, "ab values k-means runs on, every iteration against every centre; "
                                   "20000 by default"),
    }
    MAX_KMEANS_WORK = 1 << 23  # kmeans_points x clusters: one Lloyd step holds them as float64 (~200 MB)

    def validate(self):
        check_limits(self)
        self.validate_flow()
        if self.size < 8:
            raise ValueError("size: must be at least 8")
        if self.label_size < 1:
            raise ValueError("label_size: must be at least 1")
        if self.label_size > self.size:
            raise ValueError(f"label_size: {self.label_size} is larger than size {self.size}; lower label_size to "
                             f"<= {self.size} or raise size to >= {self.label_size}")
        for name in ("targets", "gap"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1")
        check_fractions(self, "crop_scale")
        if self.clusters < 2:
            raise ValueError("clusters: must be at least 2")
        if self.kmeans_frames < 1:
            raise ValueError("kmeans_frames: must be at least 1")
        if self.kmeans_points < self.clusters:
            raise ValueError(f"kmeans_points: {self.kmeans_points} is fewer than clusters {self.clusters}; raise "
                             f"kmeans_points to >= {self.clusters} or lower clusters to <= {self.kmeans_points}")
        if self.kmeans_points * self.clusters > self.MAX_KMEANS_WORK:
            cap = self.MAX_KMEANS_WORK
            raise ValueError(f"kmeans_points: {self.kmeans_points} points x {self.clusters} clusters = "
                             f"{self.kmeans_points * self.clusters} distances per k-means step, above the limit of "
                             f"{cap} (~200 MB of float64); lower kmeans_points to <= {cap // self.clusters} or "
                             f"clusters to <= {cap // self.kmeans_points}")


def colour_reason(p: VideoColorizationParams, frames: list[np.ndarray]) -> str | None:
    """Why a clip is skipped (too few coloured pixels over its check frames), or None."""
    ab = np.concatenate([to_lab(f)[..., 1:].reshape(-1, 2) for f in frames])
    coloured = float((np.hypot(ab[:, 0], ab[:, 1]) >= p.gray_chroma).mean())
    if coloured < p.gray_fraction:
        return (f"no colour: {coloured:.2%} of pixels with chroma >= {p.gray_chroma:g} "
                f"(gray_fraction={p.gray_fraction:g})")
    return None


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """float32 Lab (OpenCV, D65): L in 0..100, a and b in about -128..127."""
    import cv2

    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def quantize_ab(rgb: np.ndarray, label_size: int, centres: np.ndarray) -> np.ndarray:
    """(label_size, label_size) uint8: id of the nearest ab centre for each pixel of the shrunk view."""
    import cv2

    small = cv2.resize(rgb, (label_size, label_size), interpolation=cv2.INTER_AREA)
    ab = to_lab(small)[..., 1:].reshape(-1, 1, 2)
    d = ((ab - np.asarray(centres, np.float32)[None]) ** 2).sum(-1)
    return d.argmin(1).astype(np.uint8).reshape(label_size, label_size)


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, iters: int = 30) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding, all draws from ``rng``; centres sorted by (a, b)."""
    pts = points.astype(np.float64)
    centres = [pts[int(rng.integers(len(pts)))]]
    d2 = ((pts - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if d2.sum() > 0 else np.full(len(pts), 1 / len(pts))
        centres.append(pts[int(rng.choice(len(pts), p=probs))])
        d2 = np.minimum(d2, ((pts - centres[-1]) ** 2).sum(1))
    c = np.array(centres)
    for _ in range(iters):
        lab = ((pts[:, None] - c[None]) ** 2).sum(-1).argmin(1)
        new = np.array([pts[lab == j].mean(0) if np.any(lab == j) else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    c = np.round(c, 3)
    return c[np.lexsort((c[:, 1], c[:, 0]))].astype(np.float32)


def fit_clusters(p: VideoColorizationParams, index, reader) -> np.ndarray:
    """(clusters, 2) ab centres fit on ``kmeans_frames`` frames drawn across the clips."""
    import cv2

    rng = np.random.default_rng([p.kmeans_seed, 0xC0102])
    per_frame = -(-p.kmeans_points // p.kmeans_frames)
    pts = []
    for _ in range(p.kmeans_frames):
        src = index.sources[int(rng.integers(len(index.sources)))]
        frame = reader.read(src.path, [int(rng.integers(src.frames))])[0]
        s = 64 / max(frame.shape[:2])
        if s < 1:
            frame = cv2.resize(frame, (max(1, round(frame.shape[1] * s)), max(1, round(frame.shape[0] * s))),
                               interpolation=cv2.INTER_AREA)
        ab = to_lab(frame)[..., 1:].reshape(-1, 2)
        pts.append(ab[rng.choice(len(ab), min(per_frame, len(ab)), replace=False)])
    return kmeans(np.concatenate(pts), p.clusters, rng)


def prepare(p: VideoColorizationParams, index, out, reader) -> dict:
    """Fit the ab centres on frames from ``reader``, write ``ab_clusters.npy`` beside the shards;
    plans copy them from the index."""
    from pathlib import Path

    from ..shards import encode_array, file_sha256

    centres = fit_clusters(p, index, reader)
    index.extras["ab_centres"] = [[round(float(a), 3), round(float(b), 3)] for a, b in centres]
    path = Path(out) / CLUSTERS_FILE
    path.write_bytes(encode_array("npy", centres))
    return {"ab_clusters": {"file": CLUSTERS_FILE, "sha256": file_sha256(path), "centres": index.extras["ab_centres"]}}


def plan(p: VideoColorizationParams, rng: np.random.Generator, index, part: int = 0) -> dict:
    reach = p.targets * p.gap
    starts = np.array([max(0, s.frames - reach) for s in index.sources])
    if starts.sum() == 0:
        raise ValueError("no clip is long enough")  # VideoSetup skips such clips beforehand
    r = int(rng.integers(starts.sum()))
    c = int(np.searchsorted(np.cumsum(starts), r, side="right"))
    ref = r - int(np.cumsum(starts)[c] - starts[c])
    src = index.sources[c]
    frames = [ref + k * p.gap for k in range(p.targets + 1)]
    box = random_square(rng, src.width, src.height, p.crop_scale)
    clips = [{"source": src.path, "frames": frames}]
    return {"frames": frames, "gap": p.gap, "crop_box": box, "ab_centres": index.extras["ab_centres"],
            "label": 0, "clips": clips, "views": views_of(clips, [box] * len(frames), (p.size, p.size))}


def finish(p: VideoColorizationParams, views: list[np.ndarray], plan: dict) -> dict:
    import cv2

    centres = np.asarray(plan["ab_centres"], np.float32)
    gray = np.stack([cv2.cvtColor(v, cv2.COLOR_RGB2Lab)[..., 0] for v in views])
    bins = np.stack([quantize_ab(v, p.label_size, centres) for v in views])
    return {"reference": views[0], "gray": gray, "bins": bins}


# ---------------------------------------------------------------- what other parts need (Task fields)
def _palette(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(40, 256, size=(max(n, 1), 3)).astype(np.uint8)


def draw(sample, meta, ctx):
    """Reference in colour, then each frame's gray input above its cluster-id target."""
    from ..drawing import PANEL_HEIGHT, fit, tagged

    gray = list(np.asarray(sample["gray"]))
    bins = np.asarray(sample["bins"])
    colours = _palette(int(bins.max()) + 1)
    items = [(sample["reference"], "reference")]
    for k, (g, b) in enumerate(zip(gray, bins)):
        items.append((np.concatenate([fit(g, PANEL_HEIGHT // 2), fit(colours[b], PANEL_HEIGHT // 2)], 0),
                      "ref" if k == 0 else f"t{k}"))
    return tagged(items), f"frames {meta.get('frames')}"


def pixel_targets(out, m: dict, p: VideoColorizationParams) -> list[str]:
    """inspect's label lines: the cluster-id targets, and how the target frames of sampled samples use
    the clusters (the centres from the manifest, as ``prepare`` fit them)."""
    from ..inspect.summary import sampled, usage_lines, written

    samples = sampled(out, m)
    centres = (m.get("ab_clusters") or {}).get("centres") or (samples[0]["json"]["ab_centres"] if samples else [])
    counts = np.zeros(max(p.clusters, len(centres)), np.int64)
    for s in samples:  # the targets only: the reference's ids are the colours pointed at, not labels
        counts += np.bincount(np.asarray(s["bins"])[1:].ravel(), minlength=len(counts))[: len(counts)]
    names = [f"#{j} ab ({a:.0f}, {b:.0f})" for j, (a, b) in enumerate(centres)] or \
        [f"#{j}" for j in range(len(counts))]
    return [f"labels: per pixel (cls is always 0): the colour cluster of each of {p.label_size} x {p.label_size} "
            f"pixels of {p.targets} target frame(s) a sample, the nearest of {p.clusters} k-means ab centres "
            f"({CLUSTERS_FILE})",
            *usage_lines(counts, names, "colour clusters",
                         f"target frames of {len(samples)} of {written(m)} sample(s)")]


# The baseline's fixed ab centres: a uniform 4 x 4 grid (the original fits k-means).
_BASELINE_AB_GRID = np.stack(np.meshgrid(np.linspace(-60, 60, 4), np.linspace(-60, 60, 4)), -1).reshape(-1, 2)


def paper_baseline(path, rng, p):
    """Vondrick et al. style loader: OpenCV reads the reference and target frames, PIL crop + resize,
    scikit-image rgb2lab, nearest of fixed ab centres (a uniform grid here; the original fits k-means)."""
    import cv2
    from PIL import Image
    from skimage.color import rgb2lab

    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ref = int(rng.integers(0, max(1, n - p.targets * p.gap)))
    ims = []
    for k in range(p.targets + 1):
        cap.set(cv2.CAP_PROP_POS_FRAMES, ref + k * p.gap)
        ok, bgr = cap.read()
        ims.append(Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    cap.release()
    w, h = ims[0].size
    side = int(min(w, h) * rng.uniform(*p.crop_scale))
    x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    box = (x0, y0, x0 + side, y0 + side)
    views = [im.resize((p.size, p.size), Image.BILINEAR, box=box) for im in ims]
    gray = np.stack([np.asarray(v.convert("L")) for v in views])
    bins = []
    for v in views:
        ab = rgb2lab(np.asarray(v.resize((p.label_size, p.label_size), Image.BILINEAR)))[..., 1:]
        bins.append(((ab[..., None, :] - _BASELINE_AB_GRID) ** 2).sum(-1).argmin(-1).astype(np.uint8))
    return (np.asarray(views[0]), gray, np.stack(bins)), 0


TASK = register_task(Task(
    name="video_colorization",
    params=VideoColorizationParams,
    plan=plan,
    finish=finish,
    fields=(
        Field("reference", "npy", "uint8", lambda p: (p.size, p.size, 3), "the colour reference frame, RGB",
              channels=True),
        Field("gray", "npy", "uint8", lambda p: (p.targets + 1, p.size, p.size), "Lab L of [reference, targets]"),
        Field("bins", "npy", "uint8", lambda p: (p.targets + 1, p.label_size, p.label_size),
              "ab cluster ids of [reference, targets]", compare="bins", ids=True),
    ),
    num_classes=lambda p: 1,
    summary="colour grayscale target frames by pointing to a colour reference frame (ab clusters)",
    paper="Vondrick et al. 2018, Tracking Emerges by Colorizing Videos",
    input="video",
    usable="clips that are not one colour and hold colour (gray_fraction of pixels with chroma >= gray_chroma)",
    video=VideoHooks(motion=False, prepare=prepare, usable=colour_reason),
    draw=draw,
    baseline=paper_baseline,
    pixel_targets=pixel_targets,
    # Training (pretextgen train): the labels' side is the trunk's stride-8 map of the frame (the
    # paper: 256 px frames, 32 x 32 labels); CPU preset 64 px frames, GPU preset the paper's sizes.
    trainer=TrainerSpec(
        recipe="pretextgen.training.recipes.video:VideoColorization", eval_input="L",
        presets={"cpu": dict(trunk="small", epochs=8, batch_size=16, optimizer="adamw", lr=0.001, weight_decay=0.0001,
                             warmup_epochs=0.5),
                 "gpu": dict(trunk="resnet18", epochs=60, batch_size=32, optimizer="adamw", lr=0.001, weight_decay=0.0001,
                             warmup_epochs=1, amp=True, num_workers=8)},
        samples={"cpu": {"size": 64, "label_size": 8}, "gpu": {"size": 256, "label_size": 32}}),
))
