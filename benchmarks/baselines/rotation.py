"""RotNet-style loader (Gidaris et al.): PIL crop + resize, np.rot90."""
import numpy as np
from PIL import Image


def square_crop(path, rng, p):
    """A random square crop (side ``crop_scale`` x the shorter side) resized to ``size``, in PIL."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    side = int(min(w, h) * rng.uniform(*p.crop_scale))
    x0, y0 = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
    return im.resize((p.size, p.size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side))


def make(path, rng, p):
    crop = square_crop(path, rng, p)
    k = int(rng.integers(4))
    return np.ascontiguousarray(np.rot90(np.asarray(crop), k)), k
