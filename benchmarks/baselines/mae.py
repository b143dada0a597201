"""MAE-style loader (He et al., main_pretrain.py): RandomResizedCrop + flip with PIL, then NumPy
patchify and random_masking (argsort of uniform noise)."""
import numpy as np
from PIL import Image

from .contrastive import random_resized_crop


def make(path, rng, p):
    img = random_resized_crop(Image.open(path).convert("RGB"), rng, p, Image.BICUBIC)
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
