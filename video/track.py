"""Patch tracking by integrating dense flow, with a forward-backward consistency check
(in place of Wang & Gupta's SURF + improved dense trajectories) and an appearance check (normalized
cross-correlation of the first and last patch). All coordinates here are analysis px.
"""
from __future__ import annotations

import numpy as np

from .flow import magnitude


def moving_patches(mean_motion: np.ndarray, side: int, count: int, min_motion: float) -> list[tuple[float, float]]:
    """Centres of up to ``count`` non-overlapping side x side patches with the highest mean flow
    magnitude (at least ``min_motion``), strongest first; patches lie inside the frame."""
    import cv2

    h, w = mean_motion.shape
    if side > min(h, w):
        return []
    box = cv2.boxFilter(mean_motion.astype(np.float32), -1, (side, side), normalize=True,
                        borderType=cv2.BORDER_CONSTANT)
    half = side / 2.0
    # centres whose patch is inside the frame
    lo_x, hi_x = int(np.ceil(half)), int(np.floor(w - half))
    lo_y, hi_y = int(np.ceil(half)), int(np.floor(h - half))
    if lo_x > hi_x or lo_y > hi_y:
        return []
    valid = np.full_like(box, -1.0)
    valid[lo_y : hi_y + 1, lo_x : hi_x + 1] = box[lo_y : hi_y + 1, lo_x : hi_x + 1]
    out = []
    for _ in range(count):
        y, x = np.unravel_index(int(np.argmax(valid)), valid.shape)
        if valid[y, x] < min_motion:
            break
        out.append((float(x), float(y)))
        # suppress every centre whose patch would overlap this one
        valid[max(0, y - side + 1) : y + side, max(0, x - side + 1) : x + side] = -1.0
    return out


def _patch_flow(flow: np.ndarray, cx: float, cy: float, side: int) -> np.ndarray | None:
    h, w = flow.shape[:2]
    x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    if x0 < 0 or y0 < 0 or x0 + side > w or y0 + side > h:
        return None  # the patch left the frame: the track ends
    return np.median(flow[y0 : y0 + side, x0 : x0 + side].reshape(-1, 2), axis=0)


def follow(flows: list[np.ndarray], start: tuple[float, float], side: int) -> list[tuple[float, float]] | None:
    """Centres in every frame, moving the patch by the median flow inside it; None if it leaves the frame."""
    path = [start]
    cx, cy = start
    for f in flows:
        d = _patch_flow(f, cx, cy, side)
        if d is None:
            return None
        cx, cy = cx + float(d[0]), cy + float(d[1])
        path.append((cx, cy))
    if _patch_flow(flows[-1], cx, cy, side) is None:
        return None
    return path


NCC_SIDE = 32  # both patches are compared in grayscale at this side (area filter)


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalized cross-correlation of two same-shaped arrays, in [-1, 1]; 0 when either is flat
    (a patch of one colour matches nothing)."""
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.astype(np.float64).ravel() - b.mean()
    den = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b) / den if den > 1e-6 else 0.0


def patch_ncc(first: np.ndarray, last: np.ndarray, box0, box1) -> float:
    """NCC of the patch ``box0`` of frame ``first`` and ``box1`` of ``last`` (integer boxes, RGB
    frames), both grayscale at ``NCC_SIDE``: how alike the query and the tracked positive look."""
    import cv2

    from ..geometry import crop_resize

    a, b = (cv2.cvtColor(crop_resize(f, box, (NCC_SIDE, NCC_SIDE)), cv2.COLOR_RGB2GRAY)
            for f, box in ((first, box0), (last, box1)))
    return ncc(a, b)


def track_window(fwd: list[np.ndarray], bwd: list[np.ndarray], side: int, count: int, min_motion: float,
                 fb_max: float, appearance=None, min_ncc: float = -1.0, rejected: dict | None = None) -> list[dict]:
    """Tracks of the most moving patches over the window: forward through ``fwd`` (k -> k+1), back
    through ``bwd`` (k+1 -> k); kept when the round trip ends within ``fb_max`` x side of the start
    and, given ``appearance(centres) -> ncc``, when the first and last patch correlate >= ``min_ncc``.
    Each: centres (analysis px) per frame, ``fb_error`` (fraction of side), ``motion`` (px/frame),
    ``ncc`` (with ``appearance``). ``rejected`` counts the candidates dropped, by reason:
    ``left_frame``, ``forward_backward``, ``appearance``."""
    if rejected is None:
        rejected = {}
    mean_motion = np.mean([magnitude(f) for f in fwd], axis=0)
    out = []
    # 4x more candidates than wanted: in panning shots the strongest patches often leave the frame
    for start in moving_patches(mean_motion, side, 4 * count, min_motion):
        if len(out) == count:
            break
        path = follow(fwd, start, side)
        back = None if path is None else follow(bwd[::-1], path[-1], side)
        if back is None:
            rejected["left_frame"] = rejected.get("left_frame", 0) + 1
            continue
        err = float(np.hypot(back[-1][0] - start[0], back[-1][1] - start[1])) / side
        if err > fb_max:
            rejected["forward_backward"] = rejected.get("forward_backward", 0) + 1
            continue
        extra = {}
        if appearance is not None:
            extra["ncc"] = appearance(path)
            if extra["ncc"] < min_ncc:
                rejected["appearance"] = rejected.get("appearance", 0) + 1
                continue
        steps = np.diff(np.array(path), axis=0)
        out.append({"centres": path, "fb_error": err, "motion": float(np.mean(np.hypot(steps[:, 0], steps[:, 1]))),
                    **extra})
    return out
