"""What video tasks declare, and the plan layout they share: their params base, their hooks into
the motion index, the one-colour rule, and the view helpers. Pure: the video package
(``pretextgen.video``) decodes and executes, and imports this; tasks never import the video package.

A video plan names the frames to decode and the views to cut from them:

- ``clips``: ``[{"source": path, "frames": [f, ...]}]``, a fixed number of clip slots per task; the
  frames of a slot are listed in the order the views use them (duplicates allowed);
- ``views``: ``[{"clip": c, "frame": f, "box": [x0, y0, x1, y1], "size": [w, h]}]``, clip-major:
  the k-th view of slot c shows ``clips[c]["frames"][k]``. Boxes are integer source pixels.

Usability, checked once per clip before indexing on a few evenly spaced frames
(``video.plans.check_frames``): a clip whose checked frames all have a pixel standard deviation
below ``flat_std`` grey levels in every channel is one colour (a black or blank recording) and is
skipped for every video task (codec noise stays below 2.0, real footage far above it); then the
task's own rule (``VideoHooks.usable``) runs on the same frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FlowSettings:
    method: str = "dis"
    size: int = 256  # analysis frames: longer side in px
    step: int = 2  # motion is measured between frames k*step and (k+1)*step


@dataclass(frozen=True)
class TrackSettings:
    length: int = 30  # frames a patch is followed over (track_len + 1 frames)
    patch: float = 0.25  # patch side / shorter side of the frame
    windows: int = 6  # highest-motion non-overlapping windows tracked per clip
    per_window: int = 4  # candidate patches per window
    min_motion: float = 0.3  # analysis px per frame, mean over the patch and the window
    fb_max: float = 0.15  # forward-backward error allowed, as a fraction of the patch side
    min_ncc: float = 0.3  # NCC of the first and last patch (gray, video.track.NCC_SIDE px) needed


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
        return FlowSettings(self.flow, self.flow_size, self.motion_step)


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


@dataclass(frozen=True)
class VideoHooks:
    """What a video task needs from the motion index, given to ``Task(video=...)``."""

    motion: bool = True  # the plan reads motion scores (frame windows)
    tracks: object = None  # tracks(params) -> motion.TrackSettings: the plan reads tracks
    prepare: object = None  # prepare(params, index, out, reader) -> manifest entries (after indexing; reader: frames)
    usable: object = None  # usable(params, frames) -> None or the reason a clip is skipped (the task's rule),
    # on the clip's check_frames; runs before indexing, after the one-colour rule every video task has
