"""Drawing helpers for inspection panels: pure functions from arrays to RGB uint8 images.

Tasks draw their own samples (``Task.draw``) with these; ``pretextgen.inspect`` lays the panels out.
Labels sit on light strips above the pixels (``tagged``, ``labeled``), text is wrapped, never cut.
Only NumPy at import; OpenCV and PIL are imported when a function needs them.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

PANEL_HEIGHT = 150
COMPACT_HEIGHT = 120  # context (three samples to a sheet row) and split-brain (two to a row)
GREEN, RED, YELLOW, WHITE = (40, 220, 40), (240, 50, 50), (250, 220, 40), (255, 255, 255)
# Labels: dark text on a light strip beside the pixels (outlined text over pixels misreads "5" as "#").
INK, PAPER, CAPTION_PAPER = (20, 20, 20), (242, 242, 242), (218, 224, 234)
TAG_SIZE, CAPTION_SIZE, PAD = 13, 14, 4


def to_rgb(a: np.ndarray) -> np.ndarray:
    """Any image-like array as uint8 HxWx3: gray replicated, floats stretched to 0..255."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] == 2:  # ab: as colour at L = 60 (uint8 ab is offset by 128)
        ab = a.astype(np.float32) - (128 if a.dtype == np.uint8 else 0)
        return lab_to_rgb(np.full(a.shape[:2], 60.0), ab)
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        lo, hi = float(a.min()), float(a.max())
        a = np.clip((a - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.ascontiguousarray(a[..., :3])


def lab_to_rgb(L: np.ndarray, ab: np.ndarray) -> np.ndarray:
    import cv2

    lab = np.dstack([np.asarray(L, np.float32), np.asarray(ab, np.float32)])
    return np.clip(np.rint(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB) * 255), 0, 255).astype(np.uint8)


def ab_colour(ab: np.ndarray) -> np.ndarray:
    """ab as colour at a fixed L of 60."""
    return lab_to_rgb(np.full(ab.shape[:2], 60.0), ab)


def upsample(a: np.ndarray, shape) -> np.ndarray:
    """``a`` (a target map) enlarged to ``shape`` (H, W), nearest neighbour."""
    import cv2

    return cv2.resize(np.asarray(a, np.float32), tuple(shape[::-1]), interpolation=cv2.INTER_NEAREST)


def fit(a: np.ndarray, height: int = PANEL_HEIGHT) -> np.ndarray:
    import cv2

    a = to_rgb(a)
    h, w = a.shape[:2]
    width = max(1, int(round(w * height / h)))
    interp = cv2.INTER_NEAREST if h < height else cv2.INTER_AREA
    return cv2.resize(a, (width, height), interpolation=interp)


def row(images, gap: int = 4, height: int = PANEL_HEIGHT) -> np.ndarray:
    parts = []
    for k, im in enumerate(images):
        if k:
            parts.append(np.full((height, gap, 3), 255, np.uint8))
        parts.append(fit(im, height))
    return np.concatenate(parts, 1)


def grid(tiles, cols: int, gap: int = 2) -> np.ndarray:
    """Equal-sized tiles on a grid (row-major), with white gaps."""
    tiles = [to_rgb(t) for t in tiles]
    h, w = tiles[0].shape[:2]
    rows_ = -(-len(tiles) // cols)
    out = np.full((rows_ * h + (rows_ - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = t
    return out


@lru_cache(maxsize=4)
def _font(size: int):
    """PIL's bundled font at ``size`` px (no font file needed; Pillow >= 10.1 with FreeType), else
    its small bitmap font."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def wrap(s: str, width: int, size: int = TAG_SIZE) -> list[str]:
    """``s`` in lines of at most ``width`` px: broken at spaces, inside a word only when the word
    alone is wider. Nothing is dropped."""
    font = _font(size)
    lines: list[str] = []
    for para in s.split("\n"):
        cur = ""
        for word in para.split(" "):
            cand = f"{cur} {word}" if cur else word
            if font.getlength(cand) <= width:
                cur = cand
                continue
            if cur:
                lines.append(cur)
            while len(word) > 1 and font.getlength(word) > width:
                k = 1
                while k < len(word) - 1 and font.getlength(word[: k + 1]) <= width:
                    k += 1
                lines.append(word[:k])
                word = word[k:]
            cur = word
        lines.append(cur)
    return lines


def strip(s: str, width: int, size: int = TAG_SIZE, lines: int = 0, paper=PAPER) -> np.ndarray:
    """A light strip ``width`` px wide with ``s`` in dark text, wrapped (at least ``lines`` lines)."""
    from PIL import Image, ImageDraw

    font = _font(size)
    rows_ = wrap(s, max(width - 2 * PAD, 1), size)
    lh = font.getbbox("Agj|")[3] + 3
    im = Image.new("RGB", (width, max(len(rows_), lines) * lh + 4), paper)
    d = ImageDraw.Draw(im)
    for k, r in enumerate(rows_):
        d.text((PAD, 2 + k * lh), r, font=font, fill=INK)
    return np.asarray(im).copy()


def labeled(img: np.ndarray, s: str, lines: int = 0, size: int = TAG_SIZE, paper=PAPER) -> np.ndarray:
    """``img`` under a strip holding ``s``."""
    img = to_rgb(img)
    return np.concatenate([strip(s, img.shape[1], size, lines, paper), img], 0)


def hstack(parts, gap: int = 4) -> np.ndarray:
    """Parts side by side, top-aligned, white below the shorter ones and in the gaps (no scaling)."""
    parts = [to_rgb(p) for p in parts]
    h = max(p.shape[0] for p in parts)
    out = np.full((h, sum(p.shape[1] for p in parts) + gap * (len(parts) - 1), 3), 255, np.uint8)
    x = 0
    for p in parts:
        out[: p.shape[0], x : x + p.shape[1]] = p
        x += p.shape[1] + gap
    return out


def tagged(items, height: int = PANEL_HEIGHT, gap: int = 4) -> np.ndarray:
    """[(image, tag)]: each image fitted to ``height``, its tag on a strip above (equal strips)."""
    fitted = [fit(im, height) for im, _ in items]
    n = max(len(wrap(t, f.shape[1] - 2 * PAD)) for f, (_, t) in zip(fitted, items))
    return hstack([labeled(f, t, n) for f, (_, t) in zip(fitted, items)], gap)


def text_box(s: str, size: int = TAG_SIZE, paper=PAPER) -> np.ndarray:
    """``s`` on one strip just wide enough for it (a label to put somewhere: ``badge``, axis ticks)."""
    return strip(s, int(_font(size).getlength(s)) + 2 * PAD, size, paper=paper)


def badge(img: np.ndarray, s: str, size: int = TAG_SIZE) -> np.ndarray:
    """``s`` on a light box in the top-left corner of ``img`` (for labels that need their place)."""
    b = text_box(s, size)
    img = to_rgb(img).copy()
    h, w = min(b.shape[0], img.shape[0]), min(b.shape[1], img.shape[1])
    img[:h, :w] = b[:h, :w]
    return img


def overlay(image: np.ndarray, mask: np.ndarray, color=RED, alpha: float = 0.5) -> np.ndarray:
    """``mask`` (nonzero = marked) tinted over ``image``."""
    import cv2

    img = to_rgb(image).astype(np.float32)
    m = np.asarray(mask) > 0
    if m.shape != img.shape[:2]:
        m = cv2.resize(m.astype(np.uint8), img.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
    img[m] = img[m] * (1 - alpha) + np.array(color, np.float32) * alpha
    return img.astype(np.uint8)
