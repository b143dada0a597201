"""What the three video tasks share: their flow parameters, the plan layout, and the frame executor.

A video plan names the frames to decode and the views to cut from them:

- ``clips``: ``[{"source": path, "frames": [f, ...]}]``, a fixed number of clip slots per task; the
  frames of a slot are listed in the order the views use them (duplicates allowed);
- ``views``: ``[{"clip": c, "frame": f, "box": [x0, y0, x1, y1], "size": [w, h]}]``, clip-major:
  the k-th view of slot c shows ``clips[c]["frames"][k]``. Boxes are integer source pixels.

Usability, checked once per clip before indexing, on ``CHECK_FRAMES`` evenly spaced frames shrunk to
``CHECK_SIDE`` px (fixed frames: the decision is deterministic): a clip whose checked frames all
have a pixel standard deviation below ``flat_std`` grey levels in every channel is one colour (a
black or blank recording) and is skipped for every video task, with the reason in the manifest's
``skipped`` (a black MJPEG clip measures 0; the flattest of 16 real clips 15.9, so 2.0 leaves room
for codec noise and none for content); then the task's own rule (``VideoHooks.usable``) runs on
the same frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import crop_resize


@dataclass(frozen=True)
class VideoTaskParams:
    flow: str = "dis"  # dis or farneback (CPU, OpenCV), nvof (GPU, DALI fn.optical_flow)
    flow_size: int = 256  # longer side of the frames flow is computed on
    motion_step: int = 2  # motion is measured between frames k*step and (k+1)*step
    min_side: int = 32  # clips with a shorter side below this are skipped
    flat_std: float = 2.0  # a clip whose checked frames all have pixel std below this is one colour: skipped

    def validate_flow(self):
        if self.flow not in ("dis", "farneback", "nvof"):
            raise ValueError("flow: must be dis, farneback or nvof")
        if self.flow_size < 32:
            raise ValueError("flow_size: must be at least 32")
        if self.motion_step < 1:
            raise ValueError("motion_step: must be at least 1")
        if self.min_side < 8:
            raise ValueError("min_side: must be at least 8")
        self.validate_rules()

    def validate_rules(self):
        """The usability rules' params (a task with its own rule extends this)."""
        if not 0 <= self.flat_std <= 255:
            raise ValueError("flat_std: must be in [0, 255] (grey levels)")

    def flow_settings(self):
        from .motion import FlowSettings

        return FlowSettings(self.flow, self.flow_size, self.motion_step)


CHECK_FRAMES = 8  # frames per clip the usability rules look at, evenly spaced over the clip
CHECK_SIDE = 64  # their longer side after shrinking (area filter): the rules read statistics, not detail


def check_frames(reader, src) -> list[np.ndarray]:
    """``CHECK_FRAMES`` evenly spaced frames of the clip (first and last included), shrunk to
    ``CHECK_SIDE`` px on the longer side: what the usability rules decide on."""
    import cv2

    idx = sorted({int(round(v)) for v in np.linspace(0, src.frames - 1, min(CHECK_FRAMES, src.frames))})
    out = []
    for f in reader.read(src.path, idx):
        s = CHECK_SIDE / max(f.shape[:2])
        if s < 1:
            f = cv2.resize(f, (max(1, round(f.shape[1] * s)), max(1, round(f.shape[0] * s))),
                           interpolation=cv2.INTER_AREA)
        out.append(f)
    return out


def flat_reason(p: VideoTaskParams, frames: list[np.ndarray]) -> str | None:
    """The reason a clip is skipped as one colour, or None: every checked frame has a pixel standard
    deviation below ``flat_std`` in every channel (no view of it can show anything)."""
    spread = max(float(f.reshape(-1, f.shape[-1]).std(0).max()) for f in frames)
    if spread < p.flat_std:
        return (f"one colour: all {len(frames)} checked frames have pixel std <= {spread:.2f} "
                f"(flat_std={p.flat_std:g})")
    return None


def views_of(clips: list[dict], boxes: list[list[int]], size) -> list[dict]:
    """Views for every frame of every clip slot, in clip-major order; ``boxes`` has one per view."""
    out = []
    for c, clip in enumerate(clips):
        for f in clip["frames"]:
            out.append({"clip": c, "frame": int(f), "box": [int(v) for v in boxes[len(out)]],
                        "size": [int(size[0]), int(size[1])]})
    return out


def int_box(box, width: int, height: int) -> list[int]:
    """A float box (source px) rounded to whole pixels, same side kept, shifted inside the frame."""
    x0, y0, x1, y1 = box
    w, h = max(1, int(round(x1 - x0))), max(1, int(round(y1 - y0)))
    w, h = min(w, width), min(h, height)
    xi = min(max(0, int(round(x0))), width - w)
    yi = min(max(0, int(round(y0))), height - h)
    return [xi, yi, xi + w, yi + h]


def read_views(reader, plan: dict) -> list[np.ndarray]:
    """The plan's views (uint8 RGB at their size)."""
    return read_views_batch(reader, [plan])[0]


def read_views_batch(reader, plans: list[dict]) -> list[list[np.ndarray]]:
    """Every plan's views, decoding each needed (clip, frame) once and in ascending frame order per
    clip: decord then decodes forward instead of seeking back to a keyframe for every sample (on
    clips with one keyframe that is 5 to 10x faster). Only the views are kept, never whole frames."""
    wanted: dict = {}  # (source, frame) -> [(plan number, view number)]
    for n, plan in enumerate(plans):
        seen = [0] * len(plan["clips"])
        for j, v in enumerate(plan["views"]):
            clip = plan["clips"][v["clip"]]
            if clip["frames"][seen[v["clip"]]] != v["frame"]:
                raise ValueError("plan views are not in clip-major order")
            seen[v["clip"]] += 1
            wanted.setdefault((clip["source"], int(v["frame"])), []).append((n, j))
    out: list[list] = [[None] * len(p["views"]) for p in plans]
    for source, frame in sorted(wanted):
        image = reader.read(source, [frame])[0]
        for n, j in wanted[(source, frame)]:
            v = plans[n]["views"][j]
            out[n][j] = crop_resize(image, v["box"], v["size"])
    return out


@dataclass(frozen=True)
class VideoHooks:
    """What a video task needs from the motion index, given to ``Task(video=...)``."""

    motion: bool = True  # the plan reads motion scores (frame windows)
    tracks: object = None  # tracks(params) -> motion.TrackSettings: the plan reads tracks
    prepare: object = None  # prepare(params, index, out) -> manifest entries (after indexing)
    usable: object = None  # usable(params, frames) -> None or the reason a clip is skipped (the task's rule),
    # on the clip's check_frames; runs before indexing, after the one-colour rule every video task has
