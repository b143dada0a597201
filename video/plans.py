"""The frame executor of video plans (their layout: ``pretextgen.clips``), and the frames the clips'
usability rules look at (fixed frames, so the decision is deterministic).
"""
from __future__ import annotations

import numpy as np

from ..geometry import crop_resize

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


def read_views(reader, plan: dict) -> list[np.ndarray]:
    """The plan's views (uint8 RGB at their size)."""
    return read_views_batch(reader, [plan])[0]


def read_views_batch(reader, plans: list[dict]) -> list[list[np.ndarray]]:
    """Every plan's views, decoding each needed (clip, frame) once and in ascending frame order per
    clip: decord then decodes forward instead of seeking back to a keyframe for every sample (much
    faster on clips with few keyframes). Only the views are kept, never whole frames."""
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
