"""Exemplar-CNN-style surrogate class (Dosovitskiy et al.): PIL decode, gradient energy in NumPy to
pick the seed among candidates, then per transformation a PIL affine warp and NumPy/PIL colour work."""
import numpy as np
from PIL import Image


def make(path, rng, p):
    im = Image.open(path).convert("RGB")
    a = np.asarray(im, np.float32)
    gy, gx = np.gradient(a @ np.array([0.299, 0.587, 0.114], np.float32))
    energy = gx * gx + gy * gy
    side = p.patch * p.source_scale
    margin = side * (p.translate + 0.5 * np.sqrt(2) / p.scale[0])
    w, h = im.size
    best, centre = -1.0, (w / 2, h / 2)
    for _ in range(p.candidates):
        cx, cy = rng.uniform(margin, w - margin), rng.uniform(margin, h - margin)
        x0, y0 = int(cx - side / 2), int(cy - side / 2)
        e = energy[y0 : y0 + int(side), x0 : x0 + int(side)].mean()
        if e > best:
            best, centre = e, (cx, cy)
    out = []
    for _ in range(p.transforms):
        dx, dy = rng.uniform(-p.translate, p.translate, 2) * side
        s, ang = rng.uniform(*p.scale), np.deg2rad(rng.uniform(-p.rotate, p.rotate))
        k = p.source_scale / s
        c = (p.patch - 1) / 2
        m = k * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        t = np.array([centre[0] + dx, centre[1] + dy]) - m @ [c, c]
        patch = im.transform((p.patch, p.patch), Image.AFFINE, (m[0, 0], m[0, 1], t[0], m[1, 0], m[1, 1], t[1]),
                             resample=Image.BILINEAR)
        x = np.asarray(patch, np.float32) / 255
        flat = x.reshape(-1, 3)
        mean = flat.mean(0)
        _, vecs = np.linalg.eigh(np.cov(flat - mean, rowvar=False))
        flat = ((flat - mean) @ vecs * np.exp(rng.uniform(*np.log(p.pca_contrast), 3))) @ vecs.T + mean
        hsv = np.asarray(Image.fromarray(np.uint8(np.clip(flat, 0, 1).reshape(x.shape) * 255)).convert("HSV"), np.float32) / 255
        for ch in (1, 2):
            hsv[..., ch] = np.clip(hsv[..., ch] ** np.exp(rng.uniform(*np.log(p.power))) * rng.uniform(*p.multiply)
                                   + rng.uniform(*p.add), 0, 1)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-p.hue, p.hue)) % 1.0
        out.append(np.asarray(Image.fromarray(np.uint8(hsv * 255), "HSV").convert("RGB")))
    return np.stack(out), 0
