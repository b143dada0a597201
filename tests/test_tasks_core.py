"""rotation, jigsaw, context: labels proven by inversion on real photos; DALI on the GPU agrees with
OpenCV; plans pinned to those of schema 3. (What every task must do: test_contracts.py.)"""
from __future__ import annotations

import numpy as np
import pytest

from helpers import dali_difference, requires_gpu
from pretextgen.backends import reference_sample
from pretextgen.plan import plan_sample
from pretextgen.config import load_params
from pretextgen.geometry import crop_resize, to_gray3
from pretextgen.permutations import hamming_stats, permutation_set
from pretextgen.registry import get_task
from pretextgen.sources import load_rgb
from pretextgen.tasks.context import NEIGHBOURS
from pretextgen.tasks.jigsaw import permutations_of, tiles_from_source

CORE = ("rotation", "jigsaw", "context")
# Mean absolute difference (grey levels, 0-255) between DALI's antialiased linear resize and
# OpenCV's (area when shrinking, bilinear when enlarging) on the same plans, worst sample of 16.
# Measured on scikit-image's photos with DALI 2.4 CPU: rotation 2.61, jigsaw 2.83, context 0.26;
# the large shrinks (a 2964 px photo to 224 px: box versus triangle filter) differ most. Checked
# here on the GPU; on the CPU by test_contracts.py (verify's tolerance, every task).
BACKEND_TOLERANCE = 4.0


def _items(task, params, sources, n, seed=0):
    return [plan_sample(task, params, sources, seed, i) for i in range(n)]


def test_rotation_inverts_to_the_crop(sources):
    root, good = sources
    t = get_task("rotation")
    p = load_params(t)
    for it in _items(t, p, good, 12):
        img = load_rgb(root, it.source)
        out = reference_sample(t, p, img, it.plan)["image"]
        k, (x0, y0, x1, y1) = it.plan["k"], it.plan["crop_box"]
        assert x1 - x0 == y1 - y0, "rotation crops must be square"
        assert it.plan["label"] == k
        np.testing.assert_array_equal(np.rot90(out, -k), crop_resize(img, it.plan["crop_box"], (p.size, p.size)))


def test_rotation_all_rotations_share_one_crop(sources):
    root, good = sources
    t = get_task("rotation")
    p = load_params(t, overrides={"all_rotations": True})
    items = _items(t, p, good, 8)
    assert [it.plan["label"] for it in items] == [0, 1, 2, 3] * 2
    assert len({tuple(it.plan["crop_box"]) for it in items[:4]}) == 1
    img = load_rgb(root, items[0].source)
    outs = [np.rot90(reference_sample(t, p, img, it.plan)["image"], -it.plan["k"]) for it in items[:4]]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


@pytest.mark.parametrize("grid,perms", [(3, 100), (2, 24), (4, 50)])
def test_jigsaw_tiles_put_back_reproduce_the_grid(sources, grid, perms):
    root, good = sources
    t = get_task("jigsaw")
    tile = {2: 100, 3: 64, 4: 48}[grid]
    p = load_params(t, overrides={"grid": grid, "tile": tile, "permutations": perms, "gray_prob": 0.0,
                                  "tile_norm": False, "color_jitter": 0.0})
    perm_set = permutations_of(p)
    for it in _items(t, p, good, 6):
        img = load_rgb(root, it.source)
        tiles = reference_sample(t, p, img, it.plan)["tiles"]
        perm = it.plan["permutation"]
        assert perm == perm_set[it.plan["label"]].tolist()
        grid_tiles = tiles_from_source(img, it.plan)
        back = np.empty_like(tiles)
        back[perm] = tiles  # stored tile j came from cell perm[j]
        np.testing.assert_array_equal(back, grid_tiles)
        cell = p.crop // grid
        x0, y0, x1, _ = it.plan["crop_box"]
        s = (x1 - x0) / p.crop
        sides = {b[2] - b[0] for b in it.plan["boxes"]} | {b[3] - b[1] for b in it.plan["boxes"]}
        assert sides == {round(tile * s)}  # one source side for all: one resampling phase
        for j, box in enumerate(it.plan["boxes"]):
            # The stored box of tile j lies inside the cell perm[j] (rounding apart), in source pixels,
            # and resampling that box straight from the source gives the tile exactly.
            r, q = divmod(perm[j], grid)
            cx0, cy0 = x0 + q * cell * s, y0 + r * cell * s
            assert cx0 - 1 <= box[0] and box[2] <= cx0 + cell * s + 1
            assert cy0 - 1 <= box[1] and box[3] <= cy0 + cell * s + 1
            assert all(isinstance(v, int) for v in box)
            np.testing.assert_array_equal(crop_resize(img, box, (tile, tile)), tiles[j])


@pytest.mark.parametrize("gap", [0, 6])
def test_jigsaw_gap_is_kept_between_neighbouring_tiles(sources, gap):
    root, good = sources
    t = get_task("jigsaw")
    p = load_params(t, overrides={"crop": 96, "tile": 24, "gap": gap, "gray_prob": 0.0})
    cell, seen = p.crop // p.grid, set()
    for it in _items(t, p, good, 40):
        off = np.asarray(it.plan["offsets"])  # (9, (dx, dy)) frame px, cells row-major
        assert off.min() >= gap // 2 and off.max() <= cell - p.tile - (gap - gap // 2)
        x = np.arange(9) % 3 * cell + off[:, 0]
        gaps = (x[1::3] - x[0::3] - p.tile).tolist() + (x[2::3] - x[1::3] - p.tile).tolist()
        assert min(gaps) >= gap
        seen.update(gaps)
    assert min(seen) <= gap + 1 and max(seen) >= 2 * (cell - p.tile) - gap - 1  # the whole range is drawn


def test_jigsaw_options_gray_jitter_norm(sources):
    root, good = sources
    t = get_task("jigsaw")
    p = load_params(t, overrides={"gray_prob": 1.0, "color_jitter": 0.2, "tile_norm": True})
    it = _items(t, p, good, 1)[0]
    assert it.plan["gray"] and np.asarray(it.plan["jitter"]).shape == (9, 3, 2)
    tiles = reference_sample(t, p, load_rgb(root, it.source), it.plan)["tiles"]
    assert tiles.dtype == np.float16 and tiles.shape == (9, 64, 64, 3)
    m = tiles.astype(np.float32).mean(axis=(1, 2, 3))
    assert np.abs(m).max() < 0.01
    p2 = load_params(t, overrides={"gray_prob": 1.0, "tile_norm": False, "color_jitter": 0.0})
    g = reference_sample(t, p2, load_rgb(root, it.source), _items(t, p2, good, 1)[0].plan)["tiles"]
    assert np.array_equal(g[..., 0], g[..., 1]) and np.array_equal(g[..., 1], g[..., 2])


def test_permutation_sets():
    a = permutation_set(9, 100)
    assert a.shape == (100, 9) and len({tuple(r) for r in a}) == 100
    assert all(sorted(r) == list(range(9)) for r in a.tolist())
    from pretextgen.permutations import _greedy_set

    np.testing.assert_array_equal(a, _greedy_set.__wrapped__(9, 100))  # derived, not stored state
    stats = hamming_stats(a)
    assert stats["min_hamming"] >= 6, stats  # greedy max-min; a random set of 100 has min 2-3
    rnd = np.argsort(np.random.default_rng(1).random((100, 9)), 1)
    assert hamming_stats(rnd)["min_hamming"] < stats["min_hamming"]
    big = permutation_set(9, 1000)
    assert len({tuple(r) for r in big}) == 1000 and hamming_stats(big)["min_hamming"] >= 4
    mean = permutation_set(9, 100, 0, "mean")
    assert hamming_stats(mean)["mean_hamming"] >= stats["mean_hamming"] - 0.05


@pytest.mark.parametrize("args,digest", [
    ((9, 100, 0, "max_min"), "1cd6a25cfa70aa5d06c1454fbd13a2541508d084256602de71290cc787cbe97a"),
    ((9, 1000, 0, "max_min"), "3737af41e671e8113d84e579cceec215ac50f8521051d9240f668e12f78c2bf8"),
    ((9, 100, 0, "mean"), "cf8d8f309c6200fea8513cf9ed57c946478e8fa60a53f1768927b1643a18eede"),
    ((16, 100, 0, "max_min"), "5eb6a68875b9e4aa4058b29ca7ab54105065ae6df1f482053cc6c72ef818a164"),
])
def test_permutation_sets_stay_those_of_earlier_versions(args, digest):
    """A jigsaw label is an index into its set: the sets must not change between versions. These
    digests are the sets of version 0.2.0 (before the faster distance computation)."""
    from pretextgen.permutations import set_digest

    assert set_digest(permutation_set(*args)) == digest


PLAN_SIZES = [(500, 375), (128, 128), (4032, 3024), (96, 300), (1024, 683)]


@pytest.mark.parametrize("task,digest", [
    ("colorization", "d55f515aeb3eb026"), ("context", "e2c97901ea13383a"), ("contrastive", "436d8a3273c3540f"),
    ("inpainting", "c2a6fbb560f3936d"), ("jigsaw", "997107c8d194cbf5"), ("mae", "38874efa527a37d4"),
    ("rotation", "ce3e6139d36b9014"), ("splitbrain", "d36a79861684995c"),
])
def test_plans_stay_those_of_schema_3(task, digest):
    """Sample i is drawn from (seed, i) alone, and a build of this schema must draw the same plans
    on any later version (resume, a shard rebuilt alone, verify): 64 plans of each task over
    sources of five sizes, pinned as drawn by version 0.2.0 (jigsaw: by 0.6.0, schema 3). Any change that moves a draw fails
    here; such a change needs a new SCHEMA_VERSION. (exemplar plans from pixels; its shards are
    re-derived in the build tests.)"""
    import hashlib
    import json

    from pretextgen.plan import plan_sample
    from pretextgen.sources import Source

    t, p = get_task(task), load_params(get_task(task))
    srcs = [Source(path=f"{w}x{h}.jpg", width=w, height=h, format="JPEG", mode="RGB", host_decode=False)
            for w, h in PLAN_SIZES]
    plans = [plan_sample(t, p, srcs, 7, i).plan for i in range(64)]
    assert hashlib.sha256(json.dumps(plans, sort_keys=True).encode()).hexdigest()[:16] == digest


def test_context_boxes_match_the_label(sources):
    root, good = sources
    t = get_task("context")
    p = load_params(t, overrides={"chroma": "none", "downsample_prob": 0.0})
    labels = set()
    for it in _items(t, p, good, 40):
        c, n = (np.array(b, float) for b in it.plan["boxes"])
        dxy = (n[:2] + n[2:]) / 2 - (c[:2] + c[2:]) / 2
        side = c[2] - c[0]
        dx, dy = NEIGHBOURS[it.plan["label"]]
        step = side * (p.patch + p.gap) / p.patch
        slack = side * (2 * p.jitter + 2) / p.patch
        assert abs(dxy[0] - dx * step) <= slack and abs(dxy[1] - dy * step) <= slack
        labels.add(it.plan["label"])
        if len(labels) < 3:
            img = load_rgb(root, it.source)
            pt = reference_sample(t, p, img, it.plan)["patches"]
            for j in range(2):
                np.testing.assert_array_equal(pt[j], crop_resize(img, it.plan["boxes"][j], (p.patch, p.patch)))
    assert labels == set(range(8))


def test_context_chroma_drop_keeps_one_channel(sources):
    root, good = sources
    t = get_task("context")
    p = load_params(t, overrides={"downsample_prob": 0.0})
    for it in _items(t, p, good, 6):
        img = load_rgb(root, it.source)
        pt = reference_sample(t, p, img, it.plan)["patches"]
        for j in range(2):
            ref = crop_resize(img, it.plan["boxes"][j], (p.patch, p.patch))
            keep = it.plan["keep_channel"][j]
            np.testing.assert_array_equal(pt[j][..., keep], ref[..., keep])
            others = [c for c in range(3) if c != keep]
            assert pt[j][..., others].astype(float).std() <= ref[..., keep].std() * 0.05 + 1.0


def test_context_drop_noise_is_the_planned_bank_slice(sources):
    """The dropped channels are Gaussian noise (std noise_ratio x the kept channel's) read from the
    task's fixed bank at the plan's offset: re-derivable from the JSON, independent between channels."""
    from pretextgen.tasks.context import noise_bank

    root, good = sources
    t = get_task("context")
    p = load_params(t, overrides={"downsample_prob": 0.0, "noise_ratio": 0.5})
    for it in _items(t, p, good, 4):
        img = load_rgb(root, it.source)
        pt = reference_sample(t, p, img, it.plan)["patches"].astype(np.float64)
        for j in range(2):
            kept = crop_resize(img, it.plan["boxes"][j], (p.patch, p.patch))[..., it.plan["keep_channel"][j]]
            sigma = kept.std() * p.noise_ratio
            others = [c for c in range(3) if c != it.plan["keep_channel"][j]]
            off = it.plan["noise_offset"][j]
            bank = noise_bank(p.patch)[off : off + 2 * p.patch * p.patch].reshape(p.patch, p.patch, 2)
            expect = np.clip(np.rint(kept.mean() + bank * sigma), 0, 255)
            assert np.abs(pt[j][..., others] - expect).max() <= 1  # float32 rounding at .5
            noise = pt[j][..., others] - kept.mean()
            assert abs(noise.std() / sigma - 1) < 0.1
            assert abs(np.corrcoef(noise[..., 0].ravel(), noise[..., 1].ravel())[0, 1]) < 0.1


def test_context_project_removes_green_magenta(sources):
    root, good = sources
    t = get_task("context")
    p = load_params(t, overrides={"chroma": "project", "downsample_prob": 1.0})
    it = _items(t, p, good, 1)[0]
    pt = reference_sample(t, p, load_rgb(root, it.source), it.plan)["patches"].astype(float)
    gm = pt @ (np.array([-1, 2, -1]) / np.sqrt(6))
    assert np.abs(gm).max() <= 2.0  # rounding and clipping only
    assert all(d is not None for d in it.plan["downsample"])


# Plans of (seed, i) alone and DALI on the CPU against OpenCV: test_contracts.py, for every task.
@requires_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("task", CORE)
def test_dali_gpu_agrees_with_opencv(sources, task):
    assert dali_difference(task, *sources, "gpu", n=16, batch_size=8) < BACKEND_TOLERANCE


def test_to_gray3_matches_bt601():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    assert to_gray3(rgb)[0, :, 0].tolist() == [76, 150, 29]


def test_jpeg_scale_is_its_definition():
    """``jpeg_scale`` (ratios first, for speed) against its definition: the largest s in JPEG_SCALES
    that divides both sides with 1 <= box / (s * size) < 2 on both axes of every view, else 1."""
    from pretextgen.geometry import JPEG_SCALES, jpeg_scale

    def definition(width, height, views):
        for s in JPEG_SCALES:
            if width % s == 0 and height % s == 0 and all(
                    "box" in v and all(1 <= (v["box"][a + 2] - v["box"][a]) / (s * v["size"][a]) < 2 for a in (0, 1))
                    for v in views):
                return s
        return 1

    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20000):
        w, h = (int(x) for x in rng.choice([128, 375, 500, 872, 1000, 1408, 2000, 3024, 4032, 8064], 2))
        views = [{"box": [0, 0, int(rng.integers(8, w + 1)), int(rng.integers(8, h + 1))],
                  "size": [int(x) for x in rng.choice([64, 96, 224, 255], 2)]} for _ in range(int(rng.integers(1, 3)))]
        got = jpeg_scale(w, h, views)
        assert got == definition(w, h, views), (w, h, views)
        seen.add(got)
    assert jpeg_scale(4032, 3024, [{"affine": [[1, 0, 0], [0, 1, 0]], "size": [64, 64]}]) == 1
    assert seen == {1, 2, 4, 8, 16, 32, 64}
