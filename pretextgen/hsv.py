"""RGB <-> HSV on float images in [0, 1], and the colour helpers that the exemplar and contrastive
tasks share. Deterministic: every parameter comes from a plan."""
from __future__ import annotations

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # torchvision's rgb_to_grayscale weights


def rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0, 1] -> (..., 3) HSV, hue in [0, 1) (OpenCV's float conversion: the same
    formulas as skimage and torchvision, and an order of magnitude faster than NumPy here)."""
    import cv2

    flat = np.ascontiguousarray(x, np.float32).reshape(-1, 1, 3)
    h = cv2.cvtColor(flat, cv2.COLOR_RGB2HSV).reshape(np.shape(x))
    h[..., 0] = (h[..., 0] / 360.0) % 1.0
    return h


def hsv_to_rgb(x: np.ndarray) -> np.ndarray:
    import cv2

    flat = np.array(x, np.float32).reshape(-1, 1, 3)
    flat[..., 0] = (flat[..., 0] % 1.0) * 360.0
    return cv2.cvtColor(flat, cv2.COLOR_HSV2RGB).reshape(np.shape(x))


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
