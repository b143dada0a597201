"""Frame order verification (Misra, Zitnick & Hebert, ECCV 2016, "Shuffle and Learn").

Five frames a < b < c < d < e drawn from a high-motion window of ``span`` frames (a window
qualifies when its motion is at or above the ``motion_percentile`` of all windows of all clips).
Label 1 (ordered): (b, c, d) or (d, c, b); label 0 (shuffled): (b, a, d) or (b, e, d); the label is
drawn first: ordered with probability ``ordered_fraction`` (1/2: balanced labels; Misra et al.'s
best mix was 1/4 ordered, 3/4 shuffled). The three frames share one square crop
(``crop_scale`` of the shorter side) resized to ``size``: no spatial cue tells the order.

Usability: windows are chosen by motion, so a window of flat frames (no motion) falls below the
percentile; a clip of one colour throughout (a black recording) is skipped before indexing, with
its reason in the manifest's ``skipped``, by the rule every video task has (``flat_std``: every
check frame's pixel std below it). No per-sample pixel check: plans are pixel-free.

Plan / JSON: ``quintuple`` [a, b, c, d, e], ``order`` ("bcd", "dcb", "bad" or "bed"), ``frames``
(the three shown, in order), ``window`` [start, end) and its ``motion`` (source px per frame),
``crop_box``, ``clips`` / ``views`` (the frames and boxes decoded), ``label``.
Fields: ``frames.npy`` (3, size, size, 3) uint8, in the shown order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import FLOW_LIMITS, MAX_SIDE, SIDE_WHY, check_fractions, check_limits
from ..clips import VideoHooks, VideoTaskParams, views_of
from ..geometry import random_square
from ..registry import Field, Task, TrainerSpec, register_task

ORDERED, SHUFFLED = ("bcd", "dcb"), ("bad", "bed")
LABEL_NAMES = ("shuffled", "ordered")  # the labels 0, 1 in words


@dataclass(frozen=True)
class FrameOrderParams(VideoTaskParams):
    size: int = 128  # output side in px
    span: int = 30  # window length in frames; the five frames are drawn inside it
    motion_percentile: float = 50.0  # windows below this percentile of motion are not used
    crop_scale: tuple[float, float] = (0.7, 1.0)  # square crop side / shorter side, shared by the 3 frames
    ordered_fraction: float = 0.5  # share of ordered tuples (label 1); Misra et al.'s best was 0.25

    LIMITS = {  # not a field: see config.check_limits
        **FLOW_LIMITS,
        "size": (MAX_SIDE, SIDE_WHY),
        "span": (600, "window length in frames, 20 s at 30 fps; Misra et al. draw from about 30 frames"),
    }

    def validate(self):
        check_limits(self)
        self.validate_flow()
        if self.size < 8:
            raise ValueError("size: must be at least 8")
        if self.span < 5:
            raise ValueError("span: must be at least 5 (five distinct frames)")
        if self.motion_step >= self.span:
            raise ValueError(f"motion_step: {self.motion_step} is not shorter than span {self.span}, so a window "
                             f"holds no measured frame pair and every window's motion is 0; lower motion_step to "
                             f"<= {self.span - 1} or raise span to >= {self.motion_step + 1}")
        if not 0 <= self.motion_percentile < 100:
            raise ValueError("motion_percentile: must be in [0, 100)")
        check_fractions(self, "crop_scale")
        if not 0 < self.ordered_fraction < 1:
            raise ValueError("ordered_fraction: must be in (0, 1) (0 or 1 makes every label one class)")


def plan(p: FrameOrderParams, rng: np.random.Generator, index, part: int = 0) -> dict:
    wins = index.cached_windows(p.span, p.motion_percentile)
    c, start, motion = wins[int(rng.integers(len(wins)))]
    src = index.sources[c]
    quint = [int(start + k) for k in np.sort(rng.choice(p.span, 5, replace=False))]
    # 1/2 keeps the integer draw of the balanced plans, so their builds stay byte-identical
    label = int(rng.integers(2)) if p.ordered_fraction == 0.5 else int(rng.random() < p.ordered_fraction)
    order = (ORDERED if label else SHUFFLED)[int(rng.integers(2))]
    frames = [quint["abcde".index(ch)] for ch in order]
    box = random_square(rng, src.width, src.height, p.crop_scale)
    clips = [{"source": src.path, "frames": frames}]
    return {"quintuple": quint, "order": order, "frames": frames, "window": [int(start), int(start + p.span)],
            "motion": motion, "crop_box": box, "label": label, "clips": clips,
            "views": views_of(clips, [box] * 3, (p.size, p.size))}


def finish(p: FrameOrderParams, views: list[np.ndarray], plan: dict) -> dict:
    return {"frames": np.stack(views)}


# ---------------------------------------------------------------- what other parts need (Task fields)
def draw(sample, meta, ctx):
    """The three frames in the shown order, each with its frame index."""
    from ..drawing import tagged

    frames = list(np.asarray(sample["frames"]))
    idx = meta.get("frames", [None] * len(frames))
    kind = LABEL_NAMES[int(meta["label"])]
    return tagged([(f, f"frame {i}") for f, i in zip(frames, idx)]), \
        f"{kind} ({meta.get('order', '')}), motion {meta.get('motion', 0):.1f}"


def _cv2_frame(cap, k):
    import cv2
    from PIL import Image

    cap.set(cv2.CAP_PROP_POS_FRAMES, int(k))
    ok, bgr = cap.read()
    return Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def paper_baseline(path, rng, p):
    """Shuffle & Learn style loader (Misra et al.): OpenCV VideoCapture seeks to each frame, PIL crop +
    resize; the window is uniform (the original ranks windows by precomputed flow offline)."""
    import cv2
    from PIL import Image

    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    start = int(rng.integers(0, max(1, n - p.span)))
    a, b, c, d, e = np.sort(rng.choice(p.span, 5, replace=False)) + start
    label = int(rng.integers(2))
    frames = ([b, c, d], [d, c, b])[int(rng.integers(2))] if label else ([b, a, d], [b, e, d])[int(rng.integers(2))]
    first = _cv2_frame(cap, frames[0])
    w, h = first.size
    side = int(min(w, h) * rng.uniform(*p.crop_scale))
    x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    box = (x0, y0, x0 + side, y0 + side)
    ims = [first] + [_cv2_frame(cap, k) for k in frames[1:]]
    cap.release()
    return np.stack([np.asarray(im.resize((p.size, p.size), Image.BILINEAR, box=box)) for im in ims]), label


TASK = register_task(Task(
    name="frame_order",
    params=FrameOrderParams,
    plan=plan,
    finish=finish,
    fields=(Field("frames", "npy", "uint8", lambda p: (3, p.size, p.size, 3), "three frames in the shown order",
                  channels=True),),
    num_classes=lambda p: 2,
    summary="tell whether three frames of a high-motion window are in order (b,c,d / d,c,b) or not",
    paper="Misra et al. 2016, Shuffle and Learn: Unsupervised Learning using Temporal Order Verification",
    input="video",
    video=VideoHooks(motion=True),
    draw=draw,
    baseline=paper_baseline,
    # Training (pretextgen train): CPU preset for a few short clips on 2 cores (64 px frames, the
    # small trunk); GPU preset ResNet-18 at the paper's scale (its CaffeNet saw 227 px).
    trainer=TrainerSpec(
        recipe="pretextgen.training.recipes.video:FrameOrder", eval_input="rgb",
        presets={"cpu": dict(trunk="small", epochs=8, batch_size=32, optimizer="adamw", lr=0.001, weight_decay=0.0001,
                             warmup_epochs=0.5),
                 "gpu": dict(trunk="resnet18", epochs=60, batch_size=128, optimizer="adamw", lr=0.001, weight_decay=0.0001,
                             warmup_epochs=1, amp=True, num_workers=8)},
        samples={"cpu": {"size": 64}, "gpu": {"size": 128}}),
))
