"""Vondrick et al. style loader: OpenCV reads the reference and target frames, PIL crop + resize,
scikit-image rgb2lab, nearest of fixed ab centres (a uniform grid here; the original fits k-means)."""
import cv2
import numpy as np
from PIL import Image
from skimage.color import rgb2lab

_GRID = np.stack(np.meshgrid(np.linspace(-60, 60, 4), np.linspace(-60, 60, 4)), -1).reshape(-1, 2)


def make(path, rng, p):
    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ref = int(rng.integers(0, max(1, n - p.targets * p.gap)))
    ims = []
    for k in range(p.targets + 1):
        cap.set(cv2.CAP_PROP_POS_FRAMES, ref + k * p.gap)
        ok, bgr = cap.read()
        ims.append(Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    cap.release()
    w, h = ims[0].size
    side = int(min(w, h) * rng.uniform(*p.crop_scale))
    x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    box = (x0, y0, x0 + side, y0 + side)
    views = [im.resize((p.size, p.size), Image.BILINEAR, box=box) for im in ims]
    gray = np.stack([np.asarray(v.convert("L")) for v in views])
    bins = []
    for v in views:
        ab = rgb2lab(np.asarray(v.resize((p.label_size, p.label_size), Image.BILINEAR)))[..., 1:]
        bins.append(((ab[..., None, :] - _GRID) ** 2).sum(-1).argmin(-1).astype(np.uint8))
    return (np.asarray(views[0]), gray, np.stack(bins)), 0
