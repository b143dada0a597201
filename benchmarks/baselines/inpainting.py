"""Context-encoder-style loader (Pathak et al.): PIL crop + resize, NumPy mask, hole set to the mean."""
import numpy as np
from PIL import Image


def make(path, rng, p):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    side = int(min(w, h) * rng.uniform(*p.crop_scale))
    x0, y0 = rng.integers(0, w - side + 1), rng.integers(0, h - side + 1)
    crop = np.asarray(im.resize((p.size, p.size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side)))
    mask = np.zeros((p.size, p.size), bool)
    q = p.size // 4
    if p.mask == "center":
        mask[q + p.overlap : 3 * q - p.overlap, q + p.overlap : 3 * q - p.overlap] = True
        target = crop[q : 3 * q, q : 3 * q]
    else:
        target = crop
        if p.mask == "blocks":
            while mask.mean() < p.coverage[0]:
                bw, bh = (max(1, int(p.size * rng.uniform(*p.block_side))) for _ in range(2))
                bx, by = rng.integers(0, p.size - bw + 1), rng.integers(0, p.size - bh + 1)
                trial = mask.copy()
                trial[by : by + bh, bx : bx + bw] = True
                if trial.mean() <= p.coverage[1]:
                    mask = trial
        else:
            g = max(2, int(round(p.size * p.region_res)))
            while not p.coverage[0] <= mask.mean() <= p.coverage[1]:
                low = Image.fromarray(np.uint8(rng.random((g, g)) * 255))
                mask = np.asarray(low.resize((p.size, p.size), Image.BILINEAR)) < p.region_density * 255
    image = crop.copy()
    image[mask] = p.fill
    return (image, np.ascontiguousarray(target), mask.astype(np.uint8)), 0
