"""Jigsaw puzzles (Noroozi & Favaro, ECCV 2016).

A square crop, in a frame of ``crop`` (255) px, is divided into grid x grid cells (85 px); in each
cell a ``tile`` (64) px box sits at a random offset that keeps at least ``gap`` px between
neighbouring tiles (the gaps remove edge-continuity shortcuts). Each tile is resampled from its own
box of source pixels, every box of a sample the same integer side: all tiles share one resampling
phase, so no common upsampling grid tells a tile's column from its interpolation pattern (a crop
resized first and then cut would). The tiles are stored in the order of a permutation drawn from a
fixed set chosen for a large Hamming distance; the label is its index in the set.

Per-tile standardisation, colour jitter per tile and grayscale with probability 0.66 are on by
default, as in Kolesnikov et al. 2019 (google/revisiting-self-supervised): with them a trunk cannot
solve the puzzle from each tile's brightness, contrast or colour cast.

Plan / JSON: ``crop_box`` (source px), ``boxes`` (one per *stored* tile, source px, integer),
``permutation`` (stored tile j came from grid cell permutation[j], cells row-major), ``offsets``
(tile offset inside its cell, frame px, per cell), ``gray``, ``jitter`` (per stored tile, per
channel [gain, bias] or null), ``label``; ``views`` are the tiles' boxes in cell order.
Fields: ``tiles.npy`` (grid^2, tile, tile, 3): uint8, or float16 when ``tile_norm`` (each tile
minus its mean over its pixels and channels, divided by its std).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import MAX_SIDE, check_fractions, check_limits, check_probabilities
from ..geometry import apply_color_jitter, draw_color_jitter, random_square, same_side_boxes, to_gray3, view
from ..permutations import MAX_PERMUTATIONS, hamming_stats, n_permutations, permutation_set, set_digest
from ..registry import Field, Task, TrainerSpec, register_task


@dataclass(frozen=True)
class JigsawParams:
    grid: int = 3
    crop: int = 255  # side of the frame the crop is divided in, in tile px: the tiles' scale
    tile: int = 64  # stored tile side; with gap, must fit in a cell (crop // grid)
    gap: int = 0  # least px (frame px) between neighbouring tiles; offsets take the rest of the cell
    crop_scale: tuple[float, float] = (1.0, 1.0)  # crop side / shorter source side (paper: whole short side)
    permutations: int = 100  # size of the permutation set = number of classes
    permutation_seed: int = 0  # the set is derived from this seed alone
    permutation_criterion: str = "max_min"  # or "mean": greedy on minimal or mean Hamming distance
    tile_norm: bool = True  # store each tile normalised to zero mean, unit std (float16); Kolesnikov et al.
    color_jitter: float = 0.1  # per tile and channel: gain in [1-j, 1+j], bias in [-20j, 20j] levels
    gray_prob: float = 0.66  # probability that the whole puzzle is grayscale (Kolesnikov et al.; Noroozi's 0.3)
    min_side: int = 64

    LIMITS = {  # not a field: see config.check_limits
        "grid": (6, "beyond 3x3 the permutation search holds grid^4 rows of 200000 candidate bytes: "
                    "260 MB for 6x6; the paper uses 3"),
        "crop": (MAX_SIDE, "side in px of the crop cut into cells; the paper uses 255"),
        "permutations": (MAX_PERMUTATIONS, "the greedy search's time grows with the set: 5000 take seconds "
                                           "(BENCHMARKS.md); the paper uses 100-1000"),
    }

    def validate(self):
        check_limits(self)
        if self.grid < 2:
            raise ValueError("grid: must be at least 2")
        if self.tile < 1:
            raise ValueError("tile: must be at least 1")
        if self.gap < 0:
            raise ValueError("gap: must be at least 0")
        if self.tile + self.gap > self.crop // self.grid:
            raise ValueError(_tile_misfit(self))
        if self.permutations < 2:
            raise ValueError("permutations: must be at least 2 (one permutation is a one-class problem)")
        cells = self.grid * self.grid
        if cells <= 9 and self.permutations > n_permutations(cells):
            raise ValueError(f"permutations: {self.permutations} is more than the {n_permutations(cells)} permutations "
                             f"of a {self.grid}x{self.grid} grid; lower permutations to <= {n_permutations(cells)} "
                             f"or raise grid to >= {self.grid + 1}")
        if self.permutation_criterion not in ("max_min", "mean"):
            raise ValueError("permutation_criterion: must be 'max_min' or 'mean'")
        check_fractions(self, "crop_scale")
        check_probabilities(self, "gray_prob")
        if not 0 <= self.color_jitter < 1:
            raise ValueError("color_jitter: must be in [0, 1)")


def _tile_misfit(p: JigsawParams) -> str:
    """tile, gap, crop and grid are set together: the error gives values for each that would fit."""
    cell, need = p.crop // p.grid, p.tile + p.gap
    fixes = [f"lower tile to <= {cell - p.gap}"] if cell - p.gap >= 1 else []
    if p.gap:
        fixes.append(f"lower gap to <= {cell - p.tile}" if cell >= p.tile else "lower gap")
    if need * p.grid <= MAX_SIDE:
        fixes.append(f"raise crop to >= {need * p.grid}")
    if p.crop // need >= 2:
        fixes.append(f"lower grid to <= {p.crop // need}")
    what = f"tile + gap = {p.tile} + {p.gap}" if p.gap else f"tile: {p.tile}"
    return (f"{what} does not fit in a cell of crop // grid = {p.crop} // {p.grid} = {cell} px; "
            + " or ".join(fixes))


def permutations_of(p: JigsawParams) -> np.ndarray:
    return permutation_set(p.grid * p.grid, p.permutations, p.permutation_seed, p.permutation_criterion)


def plan(p: JigsawParams, rng: np.random.Generator, width: int, height: int, part: int = 0) -> dict:
    n = p.grid * p.grid
    crop_box = random_square(rng, width, height, p.crop_scale)
    cell = p.crop // p.grid
    low = p.gap // 2  # the gap is split between the two sides of each cell
    offsets = rng.integers(low, cell - p.tile - (p.gap - low) + 1, size=(n, 2))  # (dx, dy) per cell
    label = int(rng.integers(p.permutations))
    perm = [int(c) for c in permutations_of(p)[label]]
    gray = bool(rng.random() < p.gray_prob)
    jitter = draw_color_jitter(rng, n, p.color_jitter)
    # Tile corners in frame px (cells row-major), then source boxes of one integer side.
    rows, cols = np.divmod(np.arange(n), p.grid)
    cells = same_side_boxes(crop_box, p.crop, np.stack([cols * cell, rows * cell], 1) + offsets, p.tile)  # cell order
    return {
        "crop_box": crop_box, "boxes": cells[perm].tolist(), "permutation": perm,
        "offsets": offsets.tolist(), "gray": gray, "jitter": jitter, "label": label,
        "views": [view(b, (p.tile, p.tile)) for b in cells],
    }


def tiles_from_source(image: np.ndarray, plan: dict) -> np.ndarray:
    """Tiles in grid order (row-major), before permutation, gray and jitter: (grid^2, tile, tile,
    3), each resampled from its box (the reference views)."""
    from ..geometry import crop_resize

    return np.stack([crop_resize(image, v["box"], v["size"]) for v in plan["views"]])


def finish(p: JigsawParams, views: list[np.ndarray], plan: dict) -> dict:
    tiles = np.stack(views)[plan["permutation"]]  # views in cell order -> stored order
    if plan["gray"]:
        tiles = to_gray3(tiles)
    if plan["jitter"] is not None:  # per stored tile
        tiles = apply_color_jitter(tiles, plan["jitter"])
    if p.tile_norm:
        t = tiles.astype(np.float32)
        mean = t.mean(axis=(1, 2, 3), keepdims=True)
        std = t.std(axis=(1, 2, 3), keepdims=True)
        tiles = ((t - mean) / np.maximum(std, 1.0)).astype(np.float16)
    return {"tiles": np.ascontiguousarray(tiles)}


def permutations_file(p: JigsawParams) -> str:
    return f"jigsaw_permutations_{p.grid * p.grid}x{p.permutations}_{p.permutation_criterion}_seed{p.permutation_seed}.npy"


def prepare(p: JigsawParams, out_dir) -> dict:
    """Write the permutation set beside the shards; its description goes into the manifest."""
    from pathlib import Path

    perms = permutations_of(p)
    stats = hamming_stats(perms)  # before the file: a failure here must not leave a lone .npy behind
    name = permutations_file(p)
    np.save(Path(out_dir) / name, perms)
    return {"permutation_set": {"file": name, "sha256": set_digest(perms), "size": len(perms),
                                "criterion": p.permutation_criterion, "seed": p.permutation_seed, **stats}}


def load_prepared(p: JigsawParams, out_dir, header: dict) -> None:
    """A worker of a distributed build takes the plan step's set (sha256-checked) instead of
    computing it again."""
    from pathlib import Path

    from ..errors import PretextgenError
    from ..permutations import use_set

    path = Path(out_dir) / header["permutation_set"]["file"]
    perms = np.load(path)
    if set_digest(perms) != header["permutation_set"]["sha256"]:
        raise PretextgenError(f"{path} does not match the sha256 in the plan: plan the build again")
    use_set(p.grid * p.grid, p.permutations, p.permutation_seed, p.permutation_criterion, perms)


# ---------------------------------------------------------------- what other parts need (Task fields)
def torch_finish(p: JigsawParams, views, plans) -> dict:
    """``finish`` for a whole batch: the tiles' views (grid^2 of (B, tile, tile, C), cell order)
    put in stored order by one gather, then gray, jitter, norm."""
    import torch

    from ..device_finish import gray3_torch

    dev = views[0].device
    cells = torch.stack(views, 1)  # (B, n, tile, tile, C)
    perm = torch.tensor([plan["permutation"] for plan in plans], device=dev)  # (B, n): stored j <- cell
    tiles = torch.gather(cells, 1, perm[:, :, None, None, None].expand(cells.shape))
    gray = torch.tensor([plan["gray"] for plan in plans], device=dev)
    if bool(gray.any()):
        tiles = torch.where(gray[:, None, None, None, None], gray3_torch(tiles), tiles)
    if plans[0]["jitter"] is not None:
        j = torch.tensor([plan["jitter"] for plan in plans], dtype=torch.float32, device=dev)  # (B, n, 3, 2)
        tiles = torch.round(tiles * j[:, :, None, None, :, 0] + j[:, :, None, None, :, 1]).clamp(0, 255).to(torch.uint8)
    if p.tile_norm:
        t = tiles.float()
        mean = t.mean(dim=(2, 3, 4), keepdim=True)
        std = t.std(dim=(2, 3, 4), keepdim=True, correction=0)
        tiles = ((t - mean) / std.clamp(min=1.0)).half()
    return {"tiles": tiles.contiguous()}


def put_back(tiles: np.ndarray, permutation) -> np.ndarray:
    """Tiles in grid order (row-major): stored tile j goes back to cell permutation[j]."""
    back = np.empty_like(tiles)
    back[list(permutation)] = tiles
    return back


def draw(sample, meta, ctx):
    """Tiles as stored (shuffled, each with its number), beside the same tiles put back
    (``put_back``): the right grid must show the crop in order, with the gaps."""
    from ..drawing import PANEL_HEIGHT, badge, fit, grid, tagged

    tiles = np.asarray(sample["tiles"])
    g = int(round(np.sqrt(len(tiles))))
    perm = [int(v) for v in meta["permutation"]]
    cell = max(8, (PANEL_HEIGHT - 2 * (g - 1)) // g)
    shuffled = grid([badge(fit(t, cell), str(j)) for j, t in enumerate(tiles)], g)
    back = grid([fit(t, cell) for t in put_back(tiles, perm)], g, 6)
    return tagged([(shuffled, "stored (tile numbers)"), (back, "put back")]), \
        f"permutation {meta['label']}: {perm}" + (", gray" if meta.get("gray") else "")


def paper_baseline(path, rng, p):
    """JigsawPuzzlePytorch-style loader (bbrattoli/JigsawPuzzlePytorch, Noroozi & Favaro): resize the
    short side to 256, random 255 crop, 85 px cells, random 64 px tile in each, permute, grayscale with gray_prob (theirs: 0.3)."""
    from PIL import Image

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


TASK = register_task(Task(
    name="jigsaw",
    params=JigsawParams,
    plan=plan,
    finish=finish,
    fields=(Field("tiles", "npy", "uint8 (float16 with tile_norm)", lambda p: (p.grid * p.grid, p.tile, p.tile, 3),
                  "tiles in stored (shuffled) order", channels=True),),
    num_classes=lambda p: p.permutations,
    prepare=prepare,
    load_prepared=load_prepared,
    summary="predict which permutation of a maximal-Hamming set shuffled the tiles",
    paper="Noroozi & Favaro 2016, Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles",
    draw=draw,
    torch_finish=torch_finish,
    finish_on_device=True,  # GPU builds: faster than the host finish (README, GPU builds; bench_gpu.py)
    baseline=paper_baseline,
    # Training (pretextgen train): CPU preset for 32 px CIFAR-like photos on 2 cores: a 2x2 puzzle at
    # the photos' own scale (UnNAS's prepare_jig: 12 px tiles, 24 permutations). 3x3 puzzles of
    # upsampled tiles were solved from low-level cues and left the deeper stages below random; live
    # samples generalised no better than a fixed build and probed lower (BENCHMARKS.md, jigsaw presets).
    # GPU preset ResNet-18 (CIFAR stem) with AMP. Sample params per preset: what `pretextgen compare` builds.
    trainer=TrainerSpec(
        recipe="pretextgen.training.recipes.spatial:Jigsaw", eval_input="rgb",
        presets={"cpu": dict(trunk="small", epochs=8, batch_size=64, optimizer="sgd", lr=0.05, weight_decay=0.0005, warmup_epochs=0.5),
                 "gpu": dict(trunk="resnet18", epochs=100, batch_size=128, optimizer="sgd", lr=0.05, weight_decay=0.0005, warmup_epochs=1, amp=True, num_workers=8)},
        samples={"cpu": {"grid": 2, "crop": 32, "tile": 12, "gap": 3, "permutations": 24, "min_side": 32},
                 "gpu": {"grid": 2, "crop": 32, "tile": 12, "gap": 3, "permutations": 24, "min_side": 32}}),
))
