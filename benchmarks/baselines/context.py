"""Relative-position loader in the style of the PyTorch re-implementations of Doersch et al.:
PIL resize so the 3x3 layout fits, crop the two patches, drop two colour channels for noise."""
import numpy as np
from PIL import Image

NEIGHBOURS = [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)]


def make(path, rng, p):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    extent = 3 * p.patch + 2 * p.gap + 2 * p.jitter
    s = extent / (min(w, h) * rng.uniform(*p.layout_scale))
    im = im.resize((max(extent, round(w * s)), max(extent, round(h * s))), Image.BILINEAR)
    ox, oy = rng.integers(0, im.size[0] - extent + 1), rng.integers(0, im.size[1] - extent + 1)
    label = int(rng.integers(8))
    dx, dy = NEIGHBOURS[label]
    step = p.patch + p.gap
    patches = []
    for gx, gy in ((0, 0), (dx, dy)):
        jx, jy = rng.integers(-p.jitter, p.jitter + 1, size=2)
        x0, y0 = ox + p.jitter + (1 + gx) * step + jx, oy + p.jitter + (1 + gy) * step + jy
        a = np.asarray(im.crop((x0, y0, x0 + p.patch, y0 + p.patch)), dtype=np.float32)
        if rng.random() < p.downsample_prob:
            side = int(np.sqrt(rng.uniform(p.min_pixels, p.patch**2)))
            small = Image.fromarray(a.astype(np.uint8)).resize((side, side), Image.BILINEAR)
            a = np.asarray(small.resize((p.patch, p.patch), Image.BILINEAR), dtype=np.float32)
        keep = int(rng.integers(3))
        noise = rng.standard_normal(a.shape).astype(np.float32) * a[..., keep].std() * p.noise_ratio + a[..., keep].mean()
        noise[..., keep] = a[..., keep]
        patches.append(np.clip(noise, 0, 255).astype(np.uint8))
    return np.stack(patches), label
