"""MAE-style loader (He et al., main_pretrain.py): RandomResizedCrop + flip with PIL, then NumPy
patchify and random_masking (argsort of uniform noise)."""
import numpy as np
from PIL import Image


def make(path, rng, p):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    for _ in range(10):
        area = w * h * rng.uniform(*p.crop_scale)
        ar = np.exp(rng.uniform(np.log(p.crop_ratio[0]), np.log(p.crop_ratio[1])))
        cw, ch = int(round(np.sqrt(area * ar))), int(round(np.sqrt(area / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
            break
    else:
        cw, ch, x0, y0 = min(w, h), min(w, h), (w - min(w, h)) // 2, (h - min(w, h)) // 2
    img = im.resize((p.size, p.size), Image.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch))
    if rng.random() < p.flip_prob:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    a = np.asarray(img)
    n = p.size // p.patch
    patches = a.reshape(n, p.patch, n, p.patch, 3).transpose(0, 2, 1, 3, 4).reshape(n * n, -1)
    ids_shuffle = np.argsort(rng.random(n * n))
    ids_restore = np.argsort(ids_shuffle)
    keep = int(n * n * (1 - p.mask_ratio))
    mask = np.ones(n * n, np.uint8)
    mask[:keep] = 0
    return (a, patches[ids_shuffle[:keep]], patches, mask[ids_restore], ids_restore), 0
