"""JigsawPuzzlePytorch-style loader (bbrattoli/JigsawPuzzlePytorch, Noroozi & Favaro): resize the
short side to 256, random 255 crop, 85 px cells, random 64 px tile in each, permute, 30% grayscale."""
import numpy as np
from PIL import Image

from pretextgen.tasks.jigsaw import permutations_of


def make(path, rng, p):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = 256 / min(w, h)
    im = im.resize((max(256, round(w * s)), max(256, round(h * s))), Image.BILINEAR)
    if rng.random() < p.gray_prob:
        im = im.convert("L").convert("RGB")
    x0, y0 = rng.integers(0, im.size[0] - 255 + 1), rng.integers(0, im.size[1] - 255 + 1)
    im = im.crop((x0, y0, x0 + 255, y0 + 255))
    cell = 255 // p.grid
    tiles = []
    for n in range(p.grid * p.grid):
        r, c = divmod(n, p.grid)
        tile = im.crop((c * cell, r * cell, (c + 1) * cell, (r + 1) * cell))
        dx, dy = rng.integers(0, cell - p.tile + 1, size=2)
        tiles.append(np.asarray(tile.crop((dx, dy, dx + p.tile, dy + p.tile))))
    label = int(rng.integers(p.permutations))
    order = permutations_of(p)[label]
    return np.stack([tiles[i] for i in order]), label
