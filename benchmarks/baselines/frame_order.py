"""Shuffle & Learn style loader (Misra et al.): OpenCV VideoCapture seeks to each frame, PIL crop +
resize; the window is uniform (the original ranks windows by precomputed flow offline)."""
import cv2
import numpy as np
from PIL import Image


def _frame(cap, k):
    cap.set(cv2.CAP_PROP_POS_FRAMES, int(k))
    ok, bgr = cap.read()
    return Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def make(path, rng, p):
    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    start = int(rng.integers(0, max(1, n - p.span)))
    a, b, c, d, e = np.sort(rng.choice(p.span, 5, replace=False)) + start
    label = int(rng.integers(2))
    frames = ([b, c, d], [d, c, b])[int(rng.integers(2))] if label else ([b, a, d], [b, e, d])[int(rng.integers(2))]
    first = _frame(cap, frames[0])
    w, h = first.size
    side = int(min(w, h) * rng.uniform(*p.crop_scale))
    x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    box = (x0, y0, x0 + side, y0 + side)
    ims = [first] + [_frame(cap, k) for k in frames[1:]]
    cap.release()
    return np.stack([np.asarray(im.resize((p.size, p.size), Image.BILINEAR, box=box)) for im in ims]), label
