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


def map_boxes(origin, scale: float, boxes) -> list[list[float]]:
    """Map boxes (N, 4) from a resized frame back to source px: ``origin + box * scale``, 4 decimals."""
    o = np.asarray([origin[0], origin[1], origin[0], origin[1]], np.float64)
    return np.round(o + np.asarray(boxes, np.float64) * scale, 4).tolist()


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


def same_side_boxes(crop_box, frame: int, corners, side: float) -> np.ndarray:
    """(n, 4) integer source boxes for boxes given in a ``frame`` px frame laid over the square
    ``crop_box``: ``corners`` (n, 2) frame px (x, y), ``side`` frame px. Every box gets the same
    integer side in source px, so each one resampled to its output size has the same phase: no
    shared upsampling grid gives away where a box sat (jigsaw's tiles, cpc's patches)."""
    span = crop_box[2] - crop_box[0]
    s = span / frame  # source px per frame px
    side_px = max(1, round(side * s))
    corner = np.minimum(np.floor(np.asarray(corners) * s + 0.5).astype(np.int64), span - side_px)
    corner = corner + np.asarray(crop_box[:2])
    return np.concatenate([corner, corner + side_px], 1)


def draw_color_jitter(rng: np.random.Generator, n: int, strength: float):
    """Per element and channel [gain, bias]: gain in [1-j, 1+j], bias in [-20j, 20j] grey levels,
    (n, 3, 2) as a JSON-native list rounded to 4 places; None when ``strength`` is 0 (nothing drawn)."""
    if strength <= 0:
        return None
    gains = rng.uniform(1 - strength, 1 + strength, size=(n, 3))
    biases = rng.uniform(-20 * strength, 20 * strength, size=(n, 3))
    return np.round(np.stack([gains, biases], -1), 4).tolist()


def apply_color_jitter(stack: np.ndarray, jitter) -> np.ndarray:
    """A stack (n, h, w, 3) uint8 with ``draw_color_jitter``'s [gain, bias] applied per element and
    channel, rounded and clipped to uint8."""
    j = np.asarray(jitter, np.float32)  # (n, 3, 2)
    return np.clip(np.rint(stack * j[:, None, None, :, 0] + j[:, None, None, :, 1]), 0, 255).astype(np.uint8)


def affine_view(matrix, size) -> dict:
    """A view that is not an axis-aligned box: output pixel (x, y) samples the source at
    ``matrix @ (x, y, 1)`` (2x3, output px to source px, pixel centres on integer coordinates as in
    OpenCV), bilinear, border pixels repeated. Rounded here so the JSON is exactly what is executed."""
    return affine_views(np.asarray(matrix, np.float64).reshape(1, 2, 3), size)[0]


def affine_views(matrices: np.ndarray, size) -> list[dict]:
    """``affine_view`` of each of K matrices (K, 2, 3), rounded in one NumPy call."""
    size = [int(size[0]), int(size[1])]
    return [{"affine": m, "size": list(size)} for m in np.round(np.asarray(matrices, np.float64), 6).tolist()]


def warp_affine(image: np.ndarray, matrix, size) -> np.ndarray:
    """The reference affine view (cv2.warpAffine with the inverse map); DALI's fn.warp_affine
    matches it to a grey level once the matrix is moved to its pixel-centre convention."""
    import cv2

    m = np.asarray(matrix, np.float64).reshape(2, 3)
    return cv2.warpAffine(image, m, (int(size[0]), int(size[1])), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def dali_affine(matrix) -> np.ndarray:
    """The same map in DALI's convention (pixel centres at +0.5): src + 0.5 = M @ (dst - 0.5) + t."""
    m = np.asarray(matrix, np.float64).reshape(2, 3).copy()
    m[:, 2] += 0.5 - m[:, :2] @ np.array([0.5, 0.5])
    return m.astype(np.float32)


def render_view(image: np.ndarray, v: dict, scale: int = 1) -> np.ndarray:
    """One plan view by the reference executor: an affine view or a box view. ``scale`` > 1:
    ``image`` is the source decoded at 1/scale (``jpeg_scale``) and the box view is ``scaled_view``."""
    if scale > 1:
        return scaled_view(image, v["box"], v["size"], scale)
    if "affine" in v:
        return warp_affine(image, v["affine"], v["size"])
    return crop_resize(image, v["box"], v["size"])


# 1/2, 1/4 and 1/8 are libjpeg's DCT scalings (OpenCV's IMREAD_REDUCED_COLOR_s); larger ones shrink
# the 1/8 image further by whole blocks (``sources.load_bgr``).
JPEG_SCALES = (64, 32, 16, 8, 4, 2)


def jpeg_scale(width: int, height: int, views) -> int:
    """The largest s in ``JPEG_SCALES`` at which a JPEG of this size can be decoded for ``views``
    without losing resolution: s divides both sides (so the 1/s image's pixel u covers source
    pixels [s*u, s*u + s) whatever the EXIF orientation) and every view is a box that still spans
    1 to 2 reduced pixels per output pixel on each axis (bilinear sampling stays within the box's
    own detail). 1 where none does. A reduced decode costs far less than a full one on large
    photos (BENCHMARKS.md)."""
    # Called per sample: the smallest and largest box/size ratios first, so that the usual small
    # photo returns at once (0.8 us, against 2.8 for testing every scale in turn).
    lo, hi = float("inf"), 0.0
    for v in views:
        if "box" not in v:
            return 1
        b, (w, h) = v["box"], v["size"]
        rx, ry = (b[2] - b[0]) / w, (b[3] - b[1]) / h
        lo, hi = min(lo, rx, ry), max(hi, rx, ry)
    for s in JPEG_SCALES:  # 1 <= ratio / s < 2 for every ratio
        if s > lo:
            continue
        if hi >= 2 * s:
            break  # and for every smaller s
        if width % s == 0 and height % s == 0:
            return s
    return 1


def scaled_view(reduced: np.ndarray, box, size, scale: int) -> np.ndarray:
    """A box view cut from the source decoded at 1/``scale``: bilinear samples at the output pixels'
    centres mapped exactly into the reduced image (source x = box x0 + (j + 0.5) * box width / size
    width, reduced x = source x / scale), so the view covers the box it records, as in the full-size
    executor; it differs from that one's area filter by less than the backends' tolerance (tested)."""
    import cv2

    x0, y0, x1, y1 = (float(c) for c in box)
    w, h = int(size[0]), int(size[1])
    kx, ky = (x1 - x0) / w, (y1 - y0) / h
    # OpenCV's pixel centres sit on integers: reduced index = (source x) / scale - 0.5.
    m = np.array([[kx / scale, 0.0, (x0 + 0.5 * kx) / scale - 0.5],
                  [0.0, ky / scale, (y0 + 0.5 * ky) / scale - 0.5]])
    return cv2.warpAffine(reduced, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def random_resized_box(rng: np.random.Generator, width: int, height: int, scale: tuple[float, float],
                       ratio: tuple[float, float]) -> list[int]:
    """torchvision's RandomResizedCrop box: area a ``scale`` fraction of the source, aspect ratio
    log-uniform in ``ratio``, 10 tries, then the largest centred box within ``ratio``."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
        w = int(round(np.sqrt(target * aspect)))
        h = int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            x0 = int(rng.integers(0, width - w + 1))
            y0 = int(rng.integers(0, height - h + 1))
            return [x0, y0, x0 + w, y0 + h]
    r = width / height
    if r < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif r > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    x0, y0 = (width - w) // 2, (height - h) // 2
    return [x0, y0, x0 + w, y0 + h]
