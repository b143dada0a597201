"""Small pure helpers shared by the tasks and the backends: boxes, crops, resampling.

Boxes are ``[x0, y0, x1, y1]`` in source pixel coordinates, x1/y1 exclusive. A *view* is a box
resized to ``size = [width, height]``; it is the only pixel work a backend does.
"""
from __future__ import annotations

import numpy as np


def random_square(rng: np.random.Generator, width: int, height: int, scale: tuple[float, float]) -> list[int]:
    """A square box whose side is a random fraction (in ``scale``) of the shorter side."""
    short = min(width, height)
    side = max(1, min(short, int(round(short * rng.uniform(*scale)))))
    x0 = int(rng.integers(0, width - side + 1))
    y0 = int(rng.integers(0, height - side + 1))
    return [x0, y0, x0 + side, y0 + side]


def view(box, size) -> dict:
    return {"box": [int(v) for v in box], "size": [int(size[0]), int(size[1])]}


def map_box(origin: tuple[float, float], scale: float, box) -> list[float]:
    """Map a box from a resized frame (frame px) back to source px: ``origin + box * scale``."""
    ox, oy = origin
    x0, y0, x1, y1 = box
    return [round(ox + x0 * scale, 4), round(oy + y0 * scale, 4), round(ox + x1 * scale, 4), round(oy + y1 * scale, 4)]


def crop_resize(image: np.ndarray, box, size) -> np.ndarray:
    """The reference view: integer crop, then OpenCV resize (area filter when shrinking, bilinear
    when enlarging). DALI's antialiased linear resize agrees within the tolerance in the tests."""
    import cv2

    x0, y0, x1, y1 = (int(v) for v in box)
    w, h = int(size[0]), int(size[1])
    crop = image[y0:y1, x0:x1]
    if crop.shape[1] == w and crop.shape[0] == h:
        return np.ascontiguousarray(crop)
    shrink = crop.shape[1] >= w and crop.shape[0] >= h
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def to_gray3(image: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma replicated to three channels (uint8 in, uint8 out)."""
    y = image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114
    y = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    return np.repeat(y[..., None], 3, axis=-1)
