"""exemplar, inpainting, mae, contrastive: labels and targets proven from the source through the
plan on real photos; affine views agree between OpenCV and DALI; backends agree; builds round-trip."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from helpers import dali_difference, mean_abs_diff, requires_gpu
from pretextgen.backends import DaliBackend, OpenCVBackend, execute_plan, reference_sample, source_scale
from pretextgen.builder import build
from pretextgen.plan import plan_sample
from pretextgen.config import load_params, make_params
from pretextgen.errors import PretextgenError
from pretextgen.geometry import affine_view, crop_resize, warp_affine
from pretextgen.hsv import hsv_to_rgb, rgb_to_hsv
from pretextgen.registry import Field, Task, get_task
from pretextgen.shards import read_manifest, read_shard
from pretextgen.sources import check_source, load_rgb, skimage_data_dir
from pretextgen.tasks import contrastive, exemplar, inpainting, mae

TASKS = ("exemplar", "inpainting", "mae", "contrastive")
# Worst per-sample mean absolute difference (grey levels) between DALI CPU and OpenCV over 12
# samples of scikit-image's photos, measured with DALI 2.4: exemplar 0.009 (the affine views agree
# exactly; HSV recolouring amplifies a few rounding differences), mae 2.55, inpainting 3.99 (box
# views: DALI's antialiased linear resize against OpenCV's area filter), contrastive 1.63.
TOLERANCE = {"exemplar": 0.1, "inpainting": 5.0, "mae": 4.0, "contrastive": 3.0}
# On the GPU, nvJPEG decodes and the CUDA warp_affine rounds a little differently: exemplar measured
# 0.32 grey levels on an H200 (DALI 2.4), against 0.009 for DALI on the CPU.
GPU_TOLERANCE = {**TOLERANCE, "exemplar": 1.0}
CLI = [sys.executable, "-m", "pretextgen.cli"]
NO_COLOUR = {"pca_contrast": [1.0, 1.0], "power": [1.0, 1.0], "multiply": [1.0, 1.0], "add": [0.0, 0.0], "hue": 0.0}


def _items(name, sources, n, seed=0, **overrides):
    root, good = sources
    t = get_task(name)
    p = load_params(t, overrides=overrides)
    return t, p, [plan_sample(t, p, good, seed, i, root) for i in range(n)]


# ------------------------------------------------------------------ affine views
def _probe_task():
    """An unregistered task whose samples are its raw views: the affine view kind on its own."""
    return Task(name="affine_probe", params=type(load_params(get_task("exemplar"))), plan=None,
                finish=lambda p, views, plan: {"views": views},
                fields=(Field("views", "npy", "uint8", lambda p: (), ""),), num_classes=lambda p: 1,
                summary="", paper="")


def _affine_items(sources, n):
    from pretextgen.plan import WorkItem

    root, good = sources
    rng = np.random.default_rng(7)
    items = []
    for i in range(n):
        src = good[i % len(good)]
        a, s = rng.uniform(-np.pi, np.pi), rng.uniform(0.3, 3.0)
        lin = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        t = [rng.uniform(0, src.width), rng.uniform(0, src.height)]
        items.append(WorkItem(i, src, {"views": [affine_view(np.hstack([lin, np.array(t)[:, None]]), (48, 40)),
                                                 affine_view([[1, 0, 5], [0, 1, 9]], (31, 17))]}))
    return items


def _affine_agreement(sources, device):
    root, _ = sources
    t, p = _probe_task(), load_params(get_task("exemplar"))
    items = _affine_items(sources, 12)
    dali = [f["views"] for _, f in DaliBackend(t, p, root, device=device, batch_size=5, encode=False).run(items)]
    worst = 0.0
    for it, d in zip(items, dali):
        img = load_rgb(root, it.source)
        ref = [warp_affine(img, v["affine"], v["size"]) for v in it.plan["views"]]
        assert d[0].shape == ref[0].shape == (40, 48, 3) and d[1].shape == ref[1].shape == (17, 31, 3)
        worst = max(worst, *(float(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(d, ref)))
        # A pure integer translation is an exact crop, on both executors (pixel centres agree).
        np.testing.assert_array_equal(d[1], img[9:26, 5:36])
    return worst


def test_affine_view_reference_is_the_inverse_map(sources):
    root, good = sources
    img = load_rgb(root, good[0])
    np.testing.assert_array_equal(warp_affine(img, [[1, 0, 3], [0, 1, 4]], (20, 10)), img[4:14, 3:23])
    # 2x zoom-out: output pixel (x, y) samples source (2x, 2y) exactly (pixel centres on integers).
    out = warp_affine(img, [[2, 0, 10], [0, 2, 20]], (16, 16))
    np.testing.assert_array_equal(out, img[20:52:2, 10:42:2])
    # A 90-degree turn: output (x, y) <- source (31 - y, x): np.rot90 of the crop.
    rot = warp_affine(img, [[0, -1, 31], [1, 0, 0]], (32, 32))
    np.testing.assert_array_equal(rot, np.rot90(img[:32, :32], 1))


def test_dali_cpu_affine_views_match_opencv(sources):
    # Measured with DALI 2.4 CPU: identical to cv2.warpAffine (max difference 0 grey levels) once the
    # matrix is moved to DALI's half-pixel centres; 1 level allows for a rounding tie.
    assert _affine_agreement(sources, "cpu") <= 1


@requires_gpu
@pytest.mark.gpu
def test_dali_gpu_affine_views_match_opencv(sources):
    assert _affine_agreement(sources, "gpu") <= 2


# ------------------------------------------------------------------ backends and plans
def test_dali_cpu_exemplar_agrees_with_opencv_almost_exactly(sources):
    """Tighter than verify's interpolation tolerance (test_contracts.py checks every task against
    that): exemplar's views are affine warps, which both backends compute alike."""
    assert dali_difference("exemplar", *sources, "cpu", n=12, batch_size=5) < TOLERANCE["exemplar"]


@requires_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("name", TASKS)
def test_dali_gpu_agrees_with_opencv(sources, name):
    assert dali_difference(name, *sources, "gpu", n=12, batch_size=5) < GPU_TOLERANCE[name]


# ------------------------------------------------------------------ exemplar
def _box_energy_direct(img, box):
    """Mean squared luma gradient over a box, computed on the box's own pixels (no summed-area table)."""
    y = img.astype(np.float64) @ [0.299, 0.587, 0.114]
    gy, gx = np.gradient(y)
    x0, y0, x1, y1 = (int(np.clip(round(v), 0, lim)) for v, lim in zip(box, [img.shape[1], img.shape[0]] * 2))
    return float((gx[y0:y1, x0:x1] ** 2 + gy[y0:y1, x0:x1] ** 2).mean())


def test_exemplar_seed_is_the_highest_gradient_candidate(sources):
    root, good = sources
    t, p, items = _items("exemplar", sources, 10)
    beaten = 0
    for i, it in enumerate(items):
        assert it.plan["label"] == i, "one surrogate class per plan"
        img = load_rgb(root, it.source)
        side = p.seed_side
        energies = [_box_energy_direct(img, [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
                    for cx, cy, _ in it.plan["candidates"]]
        np.testing.assert_allclose([c[2] for c in it.plan["candidates"]], energies, rtol=1e-4, atol=1e-3)
        assert it.plan["seed"] == int(np.argmax(energies))
        cx, cy = (it.plan["seed_box"][0] + it.plan["seed_box"][2]) / 2, (it.plan["seed_box"][1] + it.plan["seed_box"][3]) / 2
        assert [round(cx, 3), round(cy, 3)] == [round(v, 3) for v in it.plan["candidates"][it.plan["seed"]][:2]]
        # ...and it has more gradient than a typical position of the same image.
        rng = np.random.default_rng(i)
        rand = [_box_energy_direct(img, [x, y, x + side, y + side])
                for x, y in zip(rng.uniform(0, img.shape[1] - side, 20), rng.uniform(0, img.shape[0] - side, 20))]
        beaten += max(energies) >= np.median(rand)
    assert beaten == len(items)


def test_exemplar_transformations_invert_to_the_seed(sources):
    root, good = sources
    t, p, items = _items("exemplar", sources, 4, **NO_COLOUR)
    errors = []
    for it in items:
        img = load_rgb(root, it.source)
        patches = reference_sample(t, p, img, it.plan)["patches"]
        assert patches.shape == (p.transforms, p.patch, p.patch, 3) and len(it.plan["transforms"]) == p.transforms
        cx, cy = it.plan["candidates"][it.plan["seed"]][:2]
        for patch, tr, v in zip(patches, it.plan["transforms"], it.plan["views"]):
            m = np.asarray(v["affine"])
            np.testing.assert_allclose(m, exemplar.transform_matrix(p, cx, cy, tr), atol=1e-5)
            # The matrix is the stated transformation: zoom, turn and shift of the seed centre.
            assert np.allclose(np.linalg.norm(m[:, :2], axis=0), p.source_scale / tr["scale"], atol=1e-5)
            assert np.isclose(np.degrees(np.arctan2(m[1, 0], m[0, 0])), tr["angle"], atol=1e-3)
            c = (p.patch - 1) / 2
            np.testing.assert_allclose(m @ [c, c, 1], [cx + tr["dx"] * p.seed_side, cy + tr["dy"] * p.seed_side], atol=1e-4)
            # Colour off: the patch is the source resampled there (photometric steps are identities).
            np.testing.assert_array_equal(patch, warp_affine(img, m, (p.patch, p.patch)))
            # Inversion: every output pixel lies inside the source (the border is never replicated).
            corners = m @ np.array([[0, 0, 1], [p.patch - 1, 0, 1], [0, p.patch - 1, 1], [p.patch - 1, p.patch - 1, 1]]).T
            assert corners.min() >= 0 and corners[0].max() <= img.shape[1] - 1 and corners[1].max() <= img.shape[0] - 1
            # Warping the patch back by the inverse map lands on the source's pixels there.
            inv = cv2.invertAffineTransform(m)
            x0, y0 = (int(v) - 8 for v in m @ [c, c, 1])  # a 16 x 16 source window at the patch centre
            back = warp_affine(patch, np.hstack([inv[:, :2], (inv[:, :2] @ [x0, y0] + inv[:, 2])[:, None]]), (16, 16))
            errors.append(mean_abs_diff(back, img[y0 : y0 + 16, x0 : x0 + 16]))
    # Two bilinear resamplings of the high-gradient seeds: measured mean 5.9, worst 12.9 grey levels;
    # the wrong inverse (the transposed matrix) gives 33 on average.
    assert np.mean(errors) < 9 and max(errors) < 16


def test_exemplar_recolour_follows_the_plan(sources):
    root, _ = sources
    t, p, items = _items("exemplar", sources, 2)
    img = load_rgb(root, items[0].source)
    v, tr = items[0].plan["views"][0], dict(items[0].plan["transforms"][0])
    raw = warp_affine(img, v["affine"], v["size"])
    patches = reference_sample(t, p, img, items[0].plan)["patches"]
    assert np.array_equal(patches[0], exemplar.recolour(raw[None], [tr])[0])  # one at a time = all at once
    # Only the hue moves: S and V identities, PCA factors 1.
    tr.update(pca=[1, 1, 1], s=[1, 1, 0], v=[1, 1, 0], hue=0.25)
    out = rgb_to_hsv(exemplar.recolour(raw[None], [tr])[0].astype(np.float32) / 255)
    src = rgb_to_hsv(raw.astype(np.float32) / 255)
    sat = (src[..., 1] > 0.3) & (src[..., 2] > 0.3)
    assert sat.sum() > 20, "pick a coloured patch for this check"
    dh = (out[..., 0] - src[..., 0] - 0.25 + 0.5) % 1 - 0.5
    assert np.abs(dh[sat]).mean() < 0.02
    # Doubling every PCA projection doubles the patch's colour spread around its mean.
    x = raw.astype(np.float64) / 255
    y = exemplar.pca_contrast(x[None].astype(np.float32), [[2, 2, 2]])[0]
    unclipped = (y > 0.001).all(-1) & (y < 0.999).all(-1)
    np.testing.assert_allclose((y - x.reshape(-1, 3).mean(0))[unclipped], 2 * (x - x.reshape(-1, 3).mean(0))[unclipped], atol=1e-4)


def test_exemplar_needs_the_gradient_energy():
    t = get_task("exemplar")
    with pytest.raises(PretextgenError, match="gradient energy"):
        t.plan(load_params(t), np.random.default_rng(0), 100, 100)


def test_hsv_round_trip_matches_skimage():
    from skimage.color import rgb2hsv

    x = np.random.default_rng(0).random((50, 40, 3)).astype(np.float32)
    x[0, :5] = 0.5  # greys: hue and saturation 0
    h = rgb_to_hsv(x)
    np.testing.assert_allclose(h, rgb2hsv(x), atol=1e-5)
    np.testing.assert_allclose(hsv_to_rgb(h), x, atol=1e-5)


# ------------------------------------------------------------------ inpainting
@pytest.mark.parametrize("kind", ["center", "blocks", "regions"])
def test_inpainting_mask_covers_the_stated_fraction(sources, kind):
    root, _ = sources
    t, p, items = _items("inpainting", sources, 6, mask=kind)
    fill = np.array(p.fill, np.uint8)
    for it in items:
        img = load_rgb(root, it.source)
        crop = crop_resize(img, it.plan["crop_box"], (p.size, p.size))
        s = reference_sample(t, p, img, it.plan)
        m = s["mask"].astype(bool)
        assert s["mask"].max() == 1 and m.mean() == pytest.approx(it.plan["coverage"], abs=1e-6)
        np.testing.assert_array_equal(s["image"][~m], crop[~m])  # context untouched
        assert (s["image"][m] == fill).all()  # hole filled with the dataset mean
        if kind == "center":
            x0, y0, x1, y1 = it.plan["hole"]
            assert (x1 - x0, y1 - y0) == (p.size // 2 - 2 * p.overlap,) * 2 and x0 == p.size // 4 + p.overlap
            assert m.sum() == (p.size // 2 - 2 * p.overlap) ** 2 and m[y0:y1, x0:x1].all()
            q = p.size // 4
            np.testing.assert_array_equal(s["target"], crop[q : q + p.size // 2, q : q + p.size // 2])
            # The 4 px overlap border of the target is visible in the input.
            assert not m[q : q + p.overlap, q:].any() and not m[q:, q : q + p.overlap].any()
        else:
            assert p.coverage[0] <= m.mean() <= p.coverage[1]
            np.testing.assert_array_equal(s["target"], crop)
        if kind == "blocks":
            np.testing.assert_array_equal(m, inpainting.blocks_mask(it.plan["blocks"], p.size))
        if kind == "regions":
            # The seed alone gives the mask back, and it is the first pattern within the coverage.
            again, tries = inpainting.region_mask(it.plan["mask_seed"], p.size, p.region_res, p.region_density, p.coverage)
            assert tries == it.plan["tries"]
            np.testing.assert_array_equal(again, m)


def test_inpainting_regions_retry_until_in_range():
    for seed in range(20):
        m, tries = inpainting.region_mask(seed, 128, 0.06, 0.25, (0.2, 0.3))
        assert 0.2 <= m.mean() <= 0.3 and tries >= 1
        for n in range(1, tries):  # the earlier draws were all outside the range
            early, _ = inpainting.region_mask(seed, 128, 0.06, 0.25, (0.2, 0.3), tries=n)
            assert not 0.2 <= early.mean() <= 0.3


# ------------------------------------------------------------------ mae
@pytest.mark.parametrize("overrides", [{}, {"mask_ratio": 0.6, "patch": 32, "norm_pix": True}])
def test_mae_masks_exactly_the_configured_count(sources, overrides):
    root, _ = sources
    t, p, items = _items("mae", sources, 8, **overrides)
    L = (p.size // p.patch) ** 2
    for it in items:
        keep, restore = np.array(it.plan["ids_keep"]), np.array(it.plan["ids_restore"])
        assert len(keep) == int(L * (1 - p.mask_ratio)) and it.plan["num_masked"] == L - len(keep)
        if not overrides:
            assert it.plan["num_masked"] == 147  # 0.75 of 196, every sample
        s = reference_sample(t, p, load_rgb(root, it.source), it.plan)
        assert s["mask"].sum() == L - len(keep) and (s["mask"][keep] == 0).all()
        shuffle = np.argsort(restore)
        np.testing.assert_array_equal(shuffle[: len(keep)], keep)  # ids_restore unshuffles ids_keep
        crop = crop_resize(load_rgb(root, it.source), it.plan["crop_box"], (p.size, p.size))
        image = crop[:, ::-1] if it.plan["flip"] else crop
        np.testing.assert_array_equal(s["image"], image)
        n = p.size // p.patch
        for j, k in enumerate(keep[:5]):
            r, c = divmod(int(k), n)
            np.testing.assert_array_equal(s["visible"][j], image[r * p.patch : (r + 1) * p.patch, c * p.patch : (c + 1) * p.patch].reshape(-1))
        if p.norm_pix:
            tgt = s["target"].astype(np.float32)
            assert s["target"].dtype == np.float16 and np.abs(tgt.mean(1)).max() < 0.01
        else:
            np.testing.assert_array_equal(mae.unpatchify(s["target"], p.patch, p.size), image)


# ------------------------------------------------------------------ contrastive
def test_contrastive_views_share_one_source(sources):
    root, good = sources
    t, p, items = _items("contrastive", sources, 6, views=3, blur_prob=[1.0, 0.0], solarize_prob=[0.0, 0.0, 1.0])
    for i, it in enumerate(items):
        assert it.plan["label"] == i and len(it.plan["views_params"]) == 3
        img = load_rgb(root, it.source)
        s = reference_sample(t, p, img, it.plan)["views"]
        assert s.shape == (3, p.size, p.size, 3)
        vp = it.plan["views_params"]
        assert vp[0]["blur_sigma"] is not None and vp[1]["blur_sigma"] is None and vp[2]["blur_sigma"] is None
        assert not vp[0]["solarize"] and vp[2]["solarize"]
        other = load_rgb(root, good[(good.index(it.source) + 1) % len(good)])
        for k, v in enumerate(vp):
            x0, y0, x1, y1 = v["box"]
            assert 0 <= x0 < x1 <= it.source.width and 0 <= y0 < y1 <= it.source.height
            mine = contrastive.augment(p, crop_resize(img, v["box"], (p.size, p.size)), v)
            np.testing.assert_array_equal(s[k], mine)
            if x1 <= other.shape[1] and y1 <= other.shape[0]:
                assert mean_abs_diff(contrastive.augment(p, crop_resize(other, v["box"], (p.size, p.size)), v), s[k]) > 3


def test_contrastive_augmentations_are_the_recipe(sources):
    root, good = sources
    p = load_params(get_task("contrastive"))
    img = crop_resize(load_rgb(root, good[0]), [0, 0, 200, 200], (64, 64))
    plain = {"flip": False, "jitter": None, "gray": False, "blur_sigma": None, "solarize": False}
    np.testing.assert_array_equal(contrastive.augment(p, img, plain), img)
    np.testing.assert_array_equal(contrastive.augment(p, img, {**plain, "flip": True}), img[:, ::-1])
    g = contrastive.augment(p, img, {**plain, "gray": True})
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    sol = contrastive.augment(p, img, {**plain, "solarize": True})
    np.testing.assert_array_equal(sol, np.where(img >= 128, 255 - img, img))
    bright = {"order": ["brightness", "contrast", "saturation", "hue"], "brightness": 0.5, "contrast": 1.0,
              "saturation": 1.0, "hue": 0.0}
    assert np.abs(contrastive.augment(p, img, {**plain, "jitter": bright}).astype(int) - np.rint(img * 0.5)).max() <= 1
    blurred = contrastive.augment(p, img, {**plain, "blur_sigma": 2.0})
    assert np.abs(np.diff(blurred.astype(int), axis=1)).mean() < np.abs(np.diff(img.astype(int), axis=1)).mean()


def test_contrastive_jitter_matches_pil_enhance_and_skimage_hue():
    from PIL import Image, ImageEnhance
    from skimage.color import hsv2rgb, rgb2hsv

    # torchvision's brightness, contrast and saturation are PIL's ImageEnhance blends (black, the
    # mean grey, the grey image); PIL rounds to uint8 after each step, hence 2 levels.
    img = np.asarray(Image.open(skimage_data_dir() / "coffee.png").convert("RGB"))[::4, ::4]
    p = load_params(get_task("contrastive"))
    plain = {"flip": False, "gray": False, "blur_sigma": None, "solarize": False}
    j = {"order": ["contrast", "saturation", "brightness", "hue"], "brightness": 0.8, "contrast": 0.7,
         "saturation": 1.3, "hue": 0.0}
    pil = Image.fromarray(img)
    for op, enh in (("contrast", ImageEnhance.Contrast), ("saturation", ImageEnhance.Color),
                    ("brightness", ImageEnhance.Brightness)):
        pil = enh(pil).enhance(j[op])
    ours = contrastive.augment(p, img, {**plain, "jitter": j})
    assert np.abs(ours.astype(int) - np.asarray(pil).astype(int)).max() <= 2
    h = rgb2hsv(img)
    h[..., 0] = (h[..., 0] + 0.3) % 1.0
    ref = np.rint(hsv2rgb(h) * 255)
    hue = {"order": ["hue", "brightness", "contrast", "saturation"], "brightness": 1.0, "contrast": 1.0,
           "saturation": 1.0, "hue": 0.3}
    assert np.abs(contrastive.augment(p, img, {**plain, "jitter": hue}) - ref).max() <= 1


# ------------------------------------------------------------------ builds, JSON, errors
@pytest.mark.parametrize("name,backend", [("exemplar", "dali"), ("inpainting", "opencv"), ("contrastive", "opencv")])
def test_build_rederives_every_sample_from_its_json(tmp_path, photos, name, backend):
    """Beyond the contracts (test_contracts.py): exemplar on DALI within its own tight tolerance,
    inpainting's region masks, one class per plan for exemplar and contrastive."""
    root, _ = photos
    overrides = {"transforms": 4} if name == "exemplar" else {"mask": "regions"} if name == "inpainting" else {}
    m = build(name, tmp_path / name, samples=6, backend=backend, device="cpu", overrides=overrides, workers=1,
              progress=False)
    t = get_task(name)
    p = make_params(t, read_manifest(tmp_path / name)["params"])
    if t.label_is_plan_index:
        assert m["num_classes"] == 6 and m["label_histogram"] == {}
    n = 0
    for rec in m["shards"]:
        for key, s in read_shard(tmp_path / name / rec["name"]):
            meta = s["json"]
            assert s["cls"] == meta["label"] and meta["task"] == name and int(key) == meta["index"]
            if t.label_is_plan_index:
                assert meta["label"] == meta["index"]
            src, _ = check_source(root, meta["source"], 1)
            fields = execute_plan(t, p, root, src, meta, meta.get("jpeg_scale", 1))
            for f in t.fields:
                stored = s[f"{f.name}.{f.ext}"]
                assert stored.shape == f.shape(p)
                if backend == "opencv":
                    np.testing.assert_array_equal(stored, fields[f.name])
                else:
                    assert mean_abs_diff(stored, fields[f.name]) < TOLERANCE[name]
            n += 1
    assert n == 6


def test_contrastive_on_shared_flowers(tmp_path, shared_images):
    root = shared_images / "flowers5" / "train"
    m = build("contrastive", tmp_path / "c", source=root / "daisy", samples=4, backend="opencv", device="cpu",
              overrides={"size": 96, "blur_kernel": 9}, workers=1, progress=False)
    for key, s in read_shard(tmp_path / "c" / m["shards"][0]["name"]):
        assert s["views.npy"].shape == (2, 96, 96, 3) and s["cls"] == int(key)


@pytest.mark.parametrize("args,needle", [
    (["--task", "inpainting", "--set", "mask=ring"], "inpainting.mask"),
    (["--task", "mae", "--set", "patch=15"], "mae.patch"),
    (["--task", "contrastive", "--set", "blur_kernel=4"], "contrastive.blur_kernel"),
    (["--task", "exemplar", "--set", "scale=[0, 2]"], "exemplar.scale"),
])
def test_bad_settings_give_one_error_line(tmp_path, args, needle):
    r = subprocess.run(CLI + ["build", "--out", str(tmp_path / "x"), "--samples", "2", *args],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pretextgen: error:") and needle in lines[0]


def test_opencv_backend_cuts_views_in_bgr_and_gives_the_reference_samples(sources):
    """The OpenCV backend turns plain photos to RGB after cutting the views, not before: every image
    task's samples must stay those of ``reference_sample`` on ``load_rgb`` (box and affine views,
    area shrinking and bilinear enlarging), or on the JPEG decoded at 1/s where it scales it."""
    from pretextgen.registry import list_tasks

    root, _ = sources
    names = [n for n in list_tasks() if get_task(n).input == "image"]
    assert {"rotation", "jigsaw", "context", "exemplar", "contrastive"} <= set(names)
    scaled = 0
    for name in names:
        t, p, items = _items(name, sources, 16, seed=9)  # every photo at least once
        got = [f for _, f in OpenCVBackend(t, p, root, encode=False).run(items)]
        for item, fields in zip(items, got):
            assert not item.source.host_decode, "plain photos take the BGR path"
            scale = source_scale(item.source, item.plan, True)
            scaled += scale > 1
            ref = execute_plan(t, p, root, item.source, item.plan, scale)
            for f in t.fields:
                assert np.array_equal(fields[f.name], ref[f.name]), f"{name} sample {item.index}: {f.name}"
    assert scaled, "some samples must take the scaled-JPEG path (hubble_deep_field.jpg, 1000x872)"
