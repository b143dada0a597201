"""RotNet-style loader (Gidaris et al.): PIL crop + resize, np.rot90."""
import numpy as np
from PIL import Image


def make(path, rng, p):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    side = int(min(w, h) * rng.uniform(*p.crop_scale))
    x0, y0 = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
    crop = im.resize((p.size, p.size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side))
    k = int(rng.integers(4))
    return np.ascontiguousarray(np.rot90(np.asarray(crop), k)), k
