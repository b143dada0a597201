"""Tracked patch triplets (Wang & Gupta, ICCV 2015, "Unsupervised Learning of Visual
Representations using Videos").

Moving patches (highest mean flow magnitude, in place of the paper's SURF + improved trajectories)
are followed over ``track_len`` frames by integrating dense flow; a track is kept when following it
back returns within ``fb_max`` x the patch side of its start (forward-backward check) and when the
query and the positive still look alike: their normalized cross-correlation (grayscale, both
shrunk to 32 px, at the boxes the sample cuts) is at least ``min_ncc`` (appearance check). The
forward-backward check alone keeps positives that drifted off the object; ``min_ncc`` = 0.3 keeps
a positive only when it matches its query better than most pairs of random patches from two clips
do (the distributions: BENCHMARKS.md). Dropped candidates are replaced by the window's next ones
where there are. A query or positive of one colour has NCC 0 and is dropped;
a clip of one colour throughout is skipped beforehand (``flat_std``, every video task's rule). The
candidates each check drops are counted per clip (``videos[].tracks_rejected``) and in total
(``tracks_rejected``) in the manifest. The negative is not checked: a flat or unlike patch is a
valid, if easy, negative.

Tracks are found once per clip, in its ``windows_per_clip`` highest-motion windows, and cached
(every check's param is part of the cache key). A sample is
(query = the patch in the track's first frame, positive = the tracked patch in its last frame,
negative): with probability ``other_video_prob`` a patch of another clip, else a patch of the same
clip at least ``negative_min_gap`` frames from both; where neither exists, a patch of the positive's
frame that does not overlap it. All three are resized to ``size``.

Label (``cls``) = the negative's kind: 0 another clip, 1 same clip at a distant time, 2 same frame
elsewhere (triplet losses ignore it; it lets one weigh or filter the negatives).
Plan / JSON: ``track`` {``frames``, ``boxes`` (source px, one per frame), ``fb_error`` (fraction of
the side), ``motion`` (source px per frame), ``ncc`` (query vs positive)}, ``negative`` {``source``,
``frame``, ``box``, ``kind``}, ``clips`` / ``views`` (query, positive, negative), ``label``.
Fields: ``patches.npy`` (3, size, size, 3) uint8: [query, positive, negative].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import FLOW_LIMITS, MAX_SIDE, SIDE_WHY, check_limits, check_probabilities
from ..registry import Field, Task, TrainerSpec, register_task
from ..clips import VideoHooks, VideoTaskParams, int_box, views_of

KINDS = ("other_video", "distant_time", "other_place")
KIND_NAMES = ("other clip", "same clip, distant", "same frame")  # the labels 0, 1, 2 in words


@dataclass(frozen=True)
class TrackParams(VideoTaskParams):
    size: int = 96  # output patch side in px
    track_len: int = 30  # frames a patch is followed over
    patch: float = 0.25  # patch side / shorter side of the frame
    windows_per_clip: int = 6  # highest-motion windows tracked per clip
    patches_per_window: int = 4  # candidate moving patches per window
    min_patch_motion: float = 0.3  # mean flow over patch and window, analysis px per frame
    fb_max: float = 0.15  # forward-backward error allowed, fraction of the patch side
    other_video_prob: float = 0.5  # negative from another clip (else the same clip, far in time)
    negative_min_gap: int = 30  # frames between a same-clip negative and the query and positive
    min_ncc: float = 0.3  # query/positive NCC (gray, 32 px) a track needs: above most chance pairs

    def validate_rules(self):  # called by validate_flow()
        super().validate_rules()
        if not -1 <= self.min_ncc <= 1:
            raise ValueError("min_ncc: must be in [-1, 1] (-1 turns the appearance check off)")

    LIMITS = {  # not a field: see config.check_limits
        **FLOW_LIMITS,
        "size": (MAX_SIDE, SIDE_WHY),
        "track_len": (150, "a window's track_len + 1 frames are decoded at once (151 1080p frames: 0.9 GB) and "
                           "flowed both ways; Wang & Gupta track 30"),
        "windows_per_clip": (32, "windows tracked per clip, each decoded and flowed both ways; 6 by default"),
        "patches_per_window": (32, "candidate patches tracked per window; 4 by default"),
    }

    def validate(self):
        check_limits(self)
        self.validate_flow()
        if self.size < 8:
            raise ValueError("size: must be at least 8")
        if self.track_len < 1:
            raise ValueError("track_len: must be at least 1")
        if self.motion_step > self.track_len:
            raise ValueError(f"motion_step: {self.motion_step} is longer than track_len {self.track_len}, so a window "
                             f"of track_len + 1 frames holds no measured frame pair and all have motion 0; lower "
                             f"motion_step to <= {self.track_len} or raise track_len to >= {self.motion_step}")
        if not 0 < self.patch <= 1:
            raise ValueError("patch: must be in (0, 1]")
        if self.windows_per_clip < 1 or self.patches_per_window < 1:
            raise ValueError("windows_per_clip/patches_per_window: must be at least 1")
        if self.fb_max <= 0 or self.min_patch_motion < 0:
            raise ValueError("fb_max/min_patch_motion: need fb_max > 0 and min_patch_motion >= 0")
        check_probabilities(self, "other_video_prob")
        if self.negative_min_gap < 1:
            raise ValueError("negative_min_gap: must be at least 1")


def track_settings(p: TrackParams):
    from ..clips import TrackSettings

    return TrackSettings(p.track_len, p.patch, p.windows_per_clip, p.patches_per_window, p.min_patch_motion, p.fb_max,
                         p.min_ncc)


def _random_box(rng, side: int, width: int, height: int) -> list[int]:
    side = min(side, width, height)
    x0, y0 = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
    return [x0, y0, x0 + side, y0 + side]


def _disjoint_box(rng, avoid: list[int], width: int, height: int) -> list[int]:
    """A box of avoid's side that does not overlap it (the farthest corner if 32 draws fail)."""
    side = avoid[2] - avoid[0]
    for _ in range(32):
        b = _random_box(rng, side, width, height)
        if b[2] <= avoid[0] or b[0] >= avoid[2] or b[3] <= avoid[1] or b[1] >= avoid[3]:
            return b
    cx, cy = (avoid[0] + avoid[2]) / 2, (avoid[1] + avoid[3]) / 2
    x0 = 0 if cx > width / 2 else width - side
    y0 = 0 if cy > height / 2 else height - side
    return [x0, y0, x0 + side, y0 + side]


def plan(p: TrackParams, rng: np.random.Generator, index, part: int = 0) -> dict:
    tracks = index.all_tracks()
    c, tr = tracks[int(rng.integers(len(tracks)))]
    src = index.sources[c]
    fq, fp = tr["frames"][0], tr["frames"][-1]
    query, positive = int_box(tr["boxes"][0], src.width, src.height), int_box(tr["boxes"][-1], src.width, src.height)
    side = query[2] - query[0]
    others = [k for k in range(len(index.sources)) if k != c]
    far = np.flatnonzero((np.abs(np.arange(src.frames) - fq) >= p.negative_min_gap)
                         & (np.abs(np.arange(src.frames) - fp) >= p.negative_min_gap))
    want_other = rng.random() < p.other_video_prob
    if others and (want_other or far.size == 0):
        kind = 0
        neg_src = index.sources[others[int(rng.integers(len(others)))]]
        neg_frame = int(rng.integers(neg_src.frames))
        neg_box = _random_box(rng, side, neg_src.width, neg_src.height)
    elif far.size:
        kind, neg_src = 1, src
        neg_frame = int(far[int(rng.integers(far.size))])
        neg_box = _random_box(rng, side, src.width, src.height)
    else:
        kind, neg_src, neg_frame = 2, src, fp
        neg_box = _disjoint_box(rng, positive, src.width, src.height)
    clips = [{"source": src.path, "frames": [fq, fp]}, {"source": neg_src.path, "frames": [neg_frame]}]
    return {"track": tr, "negative": {"source": neg_src.path, "frame": neg_frame, "box": neg_box, "kind": KINDS[kind]},
            "label": kind, "clips": clips, "views": views_of(clips, [query, positive, neg_box], (p.size, p.size))}


def finish(p: TrackParams, views: list[np.ndarray], plan: dict) -> dict:
    return {"patches": np.stack(views)}


# ---------------------------------------------------------------- what other parts need (Task fields)
def draw(sample, meta, ctx):
    """Query, positive (tracked), negative, with their frames."""
    from ..drawing import tagged

    q, p, n = list(np.asarray(sample["patches"]))
    tr = meta.get("track", {})
    frames = tr.get("frames", [None, None])
    label = int(meta["label"])
    return tagged([(q, f"query f{frames[0]}"), (p, f"positive f{frames[-1]}"), (n, "negative")]), \
        f"negative: {KIND_NAMES[label] if label < 3 else label}"


def paper_baseline(path, rng, p):
    """Wang & Gupta style triplet loader: read track_len + 1 consecutive frames with OpenCV, Farneback
    flow between them (full frame, gray), the most moving patch followed by its median flow, a random
    negative patch from a distant frame; PIL crops resized. No cache: flow is computed per sample."""
    import cv2
    from PIL import Image

    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    span = p.track_len + 1
    start = int(rng.integers(0, max(1, n - span)))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    rgb = []
    for _ in range(span):
        ok, bgr = cap.read()
        if not ok:
            break
        rgb.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb]
    flows = [cv2.calcOpticalFlowFarneback(gray[k], gray[k + 1], None, 0.5, 3, 15, 3, 5, 1.2, 0)
             for k in range(len(gray) - 1)]
    h, w = gray[0].shape
    side = int(p.patch * min(h, w))
    mag = cv2.boxFilter(np.linalg.norm(flows[0], axis=2), -1, (side, side))
    mag[: side // 2 + 1], mag[h - side // 2 - 1 :], mag[:, : side // 2 + 1], mag[:, w - side // 2 - 1 :] = 0, 0, 0, 0
    cy, cx = np.unravel_index(np.argmax(mag), mag.shape)
    x, y = float(cx), float(cy)
    for f in flows:
        x0, y0 = int(np.clip(x - side / 2, 0, w - side)), int(np.clip(y - side / 2, 0, h - side))
        dx, dy = np.median(f[y0 : y0 + side, x0 : x0 + side].reshape(-1, 2), axis=0)
        x, y = x + dx, y + dy
    far = int((start + n // 2) % n)
    cap.set(cv2.CAP_PROP_POS_FRAMES, far)
    ok, bgr = cap.read()
    cap.release()
    neg_im = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    nx, ny = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))

    def crop(im, cx_, cy_):
        x0, y0 = int(np.clip(cx_ - side / 2, 0, w - side)), int(np.clip(cy_ - side / 2, 0, h - side))
        return np.asarray(im.resize((p.size, p.size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side)))

    q = crop(Image.fromarray(rgb[0]), cx, cy)
    pos = crop(Image.fromarray(rgb[-1]), x, y)
    neg = crop(neg_im, nx + side / 2, ny + side / 2)
    return np.stack([q, pos, neg]), 1


TASK = register_task(Task(
    name="track",
    params=TrackParams,
    plan=plan,
    finish=finish,
    fields=(Field("patches", "npy", "uint8", lambda p: (3, p.size, p.size, 3), "[query, tracked positive, negative]",
                  channels=True),),
    num_classes=lambda p: 3,
    summary="triplets of a moving patch, the same patch tracked 30 frames later, and a negative patch",
    paper="Wang & Gupta 2015, Unsupervised Learning of Visual Representations using Videos",
    input="video",
    usable="clips that are not one colour; tracks that pass the forward-backward check (fb_max) and whose positive "
           "still looks like its query (min_ncc)",
    video=VideoHooks(motion=True, tracks=track_settings),
    draw=draw,
    baseline=paper_baseline,
    # Training (pretextgen train): CPU preset 64 px patches, the small trunk; GPU preset ResNet-18 at
    # the build's 96 px (the paper's AlexNet saw 227 px).
    trainer=TrainerSpec(
        recipe="pretextgen.training.recipes.video:Track", eval_input="rgb",
        presets={"cpu": dict(trunk="small", epochs=8, batch_size=32, optimizer="adamw", lr=0.001, weight_decay=0.0001,
                             warmup_epochs=0.5),
                 "gpu": dict(trunk="resnet18", epochs=60, batch_size=128, optimizer="adamw", lr=0.001, weight_decay=0.0001,
                             warmup_epochs=1, amp=True, num_workers=8)},
        samples={"cpu": {"size": 64}, "gpu": {"size": 96}}),
))
