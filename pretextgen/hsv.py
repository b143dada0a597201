"""RGB <-> HSV on float images in [0, 1] (NumPy ports of torchvision's ``_rgb2hsv``/``_hsv2rgb``),
and the colour adjustments that the exemplar and contrastive tasks share. Deterministic: every
parameter comes from a plan."""
from __future__ import annotations

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # torchvision's rgb_to_grayscale weights


def rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0, 1] -> (..., 3) HSV, hue in [0, 1)."""
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    maxc, minc = x.max(-1), x.min(-1)
    cr = maxc - minc
    s = cr / np.where(maxc == 0, 1, maxc)
    d = np.where(cr == 0, 1, cr)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = np.where(maxc == r, bc - gc, np.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = np.where(cr == 0, 0.0, h)
    return np.stack([(h / 6.0) % 1.0, s, maxc], -1).astype(np.float32)


def hsv_to_rgb(x: np.ndarray) -> np.ndarray:
    h, s, v = x[..., 0], x[..., 1], x[..., 2]
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.astype(np.int64) % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], -1).astype(np.float32)


def gray(x: np.ndarray) -> np.ndarray:
    """(..., 3) -> (...) luma."""
    return x @ LUMA


def adjust_hue(x: np.ndarray, shift: float) -> np.ndarray:
    hsv = rgb_to_hsv(x)
    hsv[..., 0] = (hsv[..., 0] + shift) % 1.0
    return hsv_to_rgb(hsv)


def to_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
