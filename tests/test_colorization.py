"""colorization and splitbrain: Lab against scikit-image (NumPy and DALI), the derived in-gamut ab
bins, soft encoding, the ab prior and its rebalancing weights, targets re-derived from the source
crop, backends agreeing, the build's prior pass (near-grayscale sources skipped, prior reused)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from skimage.color import lab2rgb, rgb2lab

from helpers import requires_gpu
from pretextgen import lab
from pretextgen.backends import DaliBackend, reference_sample
from pretextgen.builder import build
from pretextgen.plan import plan_sample
from pretextgen.cli import main
from pretextgen.config import load_params
from pretextgen.errors import ConfigError, PretextgenError
from pretextgen.geometry import crop_resize
from pretextgen.registry import get_task
from pretextgen.shards import file_sha256, read_shard
from pretextgen.sources import load_rgb, scan

LAB_TASKS = ("colorization", "splitbrain")
# scikit-image's photos stored as single-channel PNGs: no colour at all.
GRAY_PHOTOS = {"brick.png", "camera.png", "coins.png", "grass.png", "gravel.png", "moon.png"}
# Largest |Lab difference| from skimage.color.rgb2lab (float64) over 262,144 colours and two photos.
# Measured: NumPy float32 1.0e-4, DALI operators (CPU, float32) 8.2e-5.
LAB_TOLERANCE = 2e-4
# DALI's antialiased resize against OpenCV's on the same plans (32 samples of scikit-image's
# photos, DALI 2.4 CPU): mean |L difference| at most 1.21; nearest ab bin equal for >= 93% of targets.
BACKEND_L_TOLERANCE = 2.0
BACKEND_SAME_BIN = 0.85


def colour_lattice() -> np.ndarray:
    """64^3 colours including 0 and 255 on every channel, as a 512 x 512 image."""
    v = np.round(np.linspace(0, 255, 64)).astype(np.uint8)
    r, g, b = np.meshgrid(v, v, v, indexing="ij")
    return np.stack([r, g, b], -1).reshape(512, 512, 3)


@pytest.fixture(scope="module")
def colour_sources(photos):
    root, files = photos
    good, skipped = scan(root, files, min_side=32)
    assert not skipped
    return root, [s for s in good if s.path not in GRAY_PHOTOS]


def test_numpy_lab_matches_skimage(photos):
    root, _ = photos
    from skimage import data

    for image in (colour_lattice(), data.astronaut(), data.coffee()):
        err = np.abs(lab.srgb_to_lab(image).astype(np.float64) - rgb2lab(image)).max()
        assert err < LAB_TOLERANCE, err


@pytest.mark.parametrize("device", ["cpu", pytest.param("gpu", marks=[pytest.mark.gpu, requires_gpu])])
def test_dali_lab_matches_skimage(device):
    from skimage import data

    from pretextgen.pipelines.lab import lab_batch

    images = [colour_lattice(), data.astronaut(), data.coffee()]
    for image, out in zip(images, lab_batch(images, device)):
        assert out.dtype == np.float32 and out.shape == image.shape
        err = np.abs(out.astype(np.float64) - rgb2lab(image)).max()
        assert err < LAB_TOLERANCE, f"{device}: largest Lab error {err}"


def test_gamut_bins_are_those_of_all_8bit_colours():
    """The face shortcut of gamut_bins gives the bins of all 2^24 colours; 261 of them, not 313."""
    bins = lab.gamut_bins(10)
    hit = np.zeros((40, 40), bool)  # lattice cells (a / 10 + 20, b / 10 + 20)
    gb = np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing="ij"), -1).reshape(-1, 2).astype(np.uint8)
    for r in range(0, 256, 16):  # 16 red levels at a time: about a million colours per chunk
        rgb = np.concatenate([np.column_stack([np.full(len(gb), v, np.uint8), gb]) for v in range(r, r + 16)])
        q = np.round(lab.srgb_to_lab(rgb)[:, 1:] / 10).astype(np.int64) + 20
        hit[q[:, 0], q[:, 1]] = True
    assert {(int(a) // 10 + 20, int(b_) // 10 + 20) for a, b_ in bins} == set(zip(*np.nonzero(hit)))
    assert len(bins) == 261
    assert bins[:, 0].min() == -90 and bins[:, 0].max() == 100
    assert bins[:, 1].min() == -110 and bins[:, 1].max() == 90
    assert np.all(bins % 10 == 0) and len(np.unique(bins, axis=0)) == len(bins)


def test_soft_encoding_is_the_gaussian_over_the_nearest_bins():
    bins = lab.gamut_bins(10)
    rng = np.random.default_rng(0)
    ab = lab.srgb_to_lab(rng.integers(0, 256, (500, 3), dtype=np.uint8))[:, 1:]
    idx, w = lab.soft_encode(ab, bins, k=5, sigma=5.0)
    d = np.sqrt(((ab[:, None, :].astype(np.float64) - bins[None].astype(np.float64)) ** 2).sum(-1))
    kth = np.sort(d, axis=1)[:, :5]
    chosen = np.take_along_axis(d, idx.astype(np.int64), 1)
    np.testing.assert_allclose(chosen, kth, atol=1e-6)  # the 5 nearest, nearest first
    expect = np.exp(-chosen**2 / 50.0)
    np.testing.assert_allclose(w, expect / expect.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(idx[:, 0], lab.nearest_bin(ab))
    hard_idx, hard_w = lab.soft_encode(ab, bins, k=1)
    assert np.all(hard_w == 1.0) and np.array_equal(hard_idx[:, 0], idx[:, 0])
    # A value on a bin centre: that bin first, its 4 lattice neighbours tie and share one weight.
    i, w = lab.soft_encode(np.array([[20.0, -30.0]]), bins)
    assert tuple(bins[i[0, 0]]) == (20.0, -30.0)
    np.testing.assert_allclose(w[0, 1:], w[0, 1])
    assert list(i[0, 1:]) == sorted(i[0, 1:])  # equal distances in index order


def test_prior_weights_rebalance_to_unit_expectation():
    bins = lab.gamut_bins(10)
    counts = np.zeros(len(bins))
    counts[lab.nearest_bin(np.array([[0.0, 0.0], [10.0, 20.0]]))] = [900, 100]
    p, w = lab.prior_weights(counts, bins, sigma=5.0, lam=0.5)
    assert abs(p.sum() - 1) < 1e-12 and abs((p * w).sum() - 1) < 1e-9
    assert np.all(np.diff(w[np.argsort(p)]) <= 1e-12)  # rarer bins weigh more
    assert p[lab.nearest_bin(np.array([[0.0, 10.0]]))][0] > 0  # smoothing reaches the neighbours
    p0, _ = lab.prior_weights(counts, bins, sigma=0.0)
    np.testing.assert_allclose(p0, counts / counts.sum())
    _, uniform = lab.prior_weights(counts, bins, lam=1.0)
    np.testing.assert_allclose(uniform, 1.0)


@pytest.mark.parametrize("name", LAB_TASKS)
def test_targets_recomputed_from_the_source_crop(colour_sources, name):
    """Labels by construction: the crop cut from the source by the JSON's box, mirrored by its flip,
    converted by scikit-image (an independent Lab) gives back every field."""
    root, good = colour_sources
    t = get_task(name)
    p = load_params(t)
    bins = lab.gamut_bins(p.grid_step)
    flips = set()
    for i in range(8):
        it = plan_sample(t, p, good, 0, i)
        out = reference_sample(t, p, load_rgb(root, it.source), it.plan)
        crop = crop_resize(load_rgb(root, it.source), it.plan["crop_box"], (p.size, p.size))
        if it.plan["flip"]:
            crop = crop[:, ::-1]
        flips.add(it.plan["flip"])
        ref = rgb2lab(crop)
        tgt = ref[:: p.target_stride, :: p.target_stride]
        np.testing.assert_allclose(out["L"], ref[..., 0], atol=0.06)  # float16 steps are 1/16 above 64
        d = np.sqrt(((tgt[..., None, 1:] - bins.astype(np.float64)) ** 2).sum(-1))
        chosen = np.take_along_axis(d, out["ab_bins"].astype(np.int64), -1)
        np.testing.assert_allclose(chosen, np.sort(d, -1)[..., : p.neighbours], atol=1e-3)
        np.testing.assert_allclose(out["ab_weights"].astype(np.float32).sum(-1), 1.0, atol=4e-3)
        assert it.plan["label"] == 0 and it.plan["quantization"]["bins"] == len(bins) == t.num_classes(p)
        if name == "colorization":
            np.testing.assert_allclose(out["ab_target"], tgt[..., 1:], atol=0.07)
        else:
            np.testing.assert_allclose(out["ab"], ref[..., 1:], atol=0.07)
            np.testing.assert_array_equal(out["L_bins"], np.clip(np.floor(tgt[..., 0] * p.l_bins / 100), 0, p.l_bins - 1))
            # Inversion: the two halves of the split brain put back together are the crop.
            lab_back = np.dstack([out["L"], out["ab"]]).astype(np.float64)
            assert np.abs(lab2rgb(lab_back) * 255 - crop).max() < 1.0
    assert flips == {True, False}


@requires_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("name", LAB_TASKS)
def test_dali_gpu_agrees_with_reference(colour_sources, name):
    """On DALI's CPU device: test_contracts.py (verify's bins and pixel tolerances, every task)."""
    root, good = colour_sources
    t = get_task(name)
    p = load_params(t)
    items = [plan_sample(t, p, good, 1, i) for i in range(12)]
    b = DaliBackend(t, p, root, device="gpu", batch_size=6, threads=2, encode=False)
    try:
        got = list(b.run(items))
    finally:
        b.close()
    assert [it.index for it, _ in got] == [it.index for it in items]
    for it, fields in got:
        ref = reference_sample(t, p, load_rgb(root, it.source), it.plan)
        assert set(fields) == {f.name for f in t.fields}
        for f in t.fields:
            assert fields[f.name].shape == f.shape(p) and fields[f.name].dtype == ref[f.name].dtype
        dl = np.abs(fields["L"].astype(np.float64) - ref["L"]).mean()
        same = (fields["ab_bins"][..., 0] == ref["ab_bins"][..., 0]).mean()
        assert dl < BACKEND_L_TOLERANCE and same > BACKEND_SAME_BIN, (it.source.path, dl, same)


def test_build_skips_gray_sources_and_stores_the_prior(tmp_path):
    m = build("colorization", tmp_path / "a", samples=6, workers=1, progress=False, backend="opencv")
    gray = {s["source"] for s in m["skipped"] if s["reason"].startswith("near-grayscale")}
    assert gray == GRAY_PHOTOS
    prior = json.loads((tmp_path / "a" / "ab_prior.json").read_text())
    assert m["ab_prior"]["sha256"] == file_sha256(tmp_path / "a" / "ab_prior.json")
    assert m["ab_prior"]["bins"] == len(prior["weights"]) == 261 == m["num_classes"]
    p, w = np.array(prior["prior"]), np.array(prior["weights"])
    assert abs((p * w).sum() - 1) < 1e-4 and sum(prior["counts"]) == prior["pixels"] > 0
    assert set(prior["gray"]) == GRAY_PHOTOS
    for _, sample in read_shard(tmp_path / "a" / m["shards"][0]["name"]):
        assert sample["json"]["source"] not in GRAY_PHOTOS and sample["cls"] == 0
        assert sample["ab_bins.npy"].shape == (56, 56, 5) and sample["L.npy"].shape == (224, 224)
    # Reused: `pretextgen prior` writes the same file, and a build with prior=FILE stores it as is.
    assert main(["prior", "--out", str(tmp_path / "p.json"), "--workers", "1"]) == 0
    assert file_sha256(tmp_path / "p.json") == m["ab_prior"]["sha256"]
    m2 = build("colorization", tmp_path / "b", samples=6, workers=1, progress=False, backend="opencv",
               overrides={"prior": str(tmp_path / "p.json")})
    assert m2["ab_prior"]["reused"] == str(tmp_path / "p.json")
    assert [s["sha256"] for s in m2["shards"]] == [s["sha256"] for s in m["shards"]]
    # Other lambda: same counts, new weights.
    m3 = build("colorization", tmp_path / "c", samples=2, workers=1, progress=False, backend="opencv",
               overrides={"prior": str(tmp_path / "p.json"), "prior_lambda": 0.9})
    p3 = json.loads((tmp_path / "c" / "ab_prior.json").read_text())
    assert p3["counts"] == prior["counts"] and p3["weights"] != prior["weights"] and m3["complete"]


def test_bad_prior_and_params_fail_in_one_line(tmp_path, capsys):
    t = get_task("colorization")
    with pytest.raises(ConfigError, match="neighbours"):
        load_params(t, overrides={"neighbours": 0})
    with pytest.raises(PretextgenError, match="does not exist"):
        build("colorization", tmp_path / "x", samples=2, workers=1, progress=False,
              overrides={"prior": str(tmp_path / "missing.json")})
    (tmp_path / "bad.json").write_text(json.dumps({"format": "something else"}))
    rc = main(["build", "--task", "splitbrain", "--out", str(tmp_path / "y"), "--samples", "2", "--no-progress",
               "--set", f"prior={tmp_path / 'bad.json'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not a pretextgen ab prior" in err[0]
    gray_only = tmp_path / "gray"
    gray_only.mkdir()
    from pretextgen.sources import skimage_data_dir

    for name in ("camera.png", "moon.png"):
        shutil.copy(skimage_data_dir() / name, gray_only / name)
    with pytest.raises(PretextgenError, match="near-grayscale"):
        build("colorization", tmp_path / "z", source=gray_only, samples=2, workers=1, progress=False)


def test_real_flowers_are_colour_and_re_derive(shared_images, tmp_path):
    """../shared/data's flower photos: none flagged gray; stored samples re-derive from the JSON."""
    folder = tmp_path / "flowers"
    for cls in ("daisy", "rose", "tulip"):
        src = sorted((shared_images / "flowers5" / "train" / cls).glob("*.jpg"))[:4]
        (folder / cls).mkdir(parents=True)
        for f in src:
            shutil.copy(f, folder / cls / f.name)
    m = build("splitbrain", tmp_path / "o", source=folder, samples=6, workers=1, progress=False, backend="opencv")
    assert m["sources_used"] == 12 and not m["skipped"]
    t = get_task("splitbrain")
    p = load_params(t)
    for _, sample in read_shard(tmp_path / "o" / m["shards"][0]["name"]):
        meta = sample["json"]
        src = next(s for s in scan(folder, [meta["source"]], 1)[0])
        again = reference_sample(t, p, load_rgb(folder, src), meta)
        np.testing.assert_array_equal(again["ab_bins"], sample["ab_bins.npy"])
        np.testing.assert_array_equal(again["L"], sample["L.npy"])


@pytest.mark.parametrize("task", ["colorization", "splitbrain"])
def test_verify_accepts_dali_builds_and_catches_a_wrong_crop(tmp_path, task):
    """DALI builds differ from the OpenCV re-derivation by interpolation only; verify must accept
    them (class ids by the share that differ, weights where bins agree) yet reject a wrong crop."""
    import pretextgen
    from pretextgen.backends import reference_sample
    from pretextgen.config import make_params
    from pretextgen.registry import get_task
    from pretextgen.shards import read_manifest, read_shard
    from pretextgen.sources import check_source, default_source, load_rgb
    from pretextgen.verify import BINS_TOLERANCE, compare_bins, verify

    out = tmp_path / task
    pretextgen.build(task=task, out=out, samples=24, backend="dali", device="cpu", workers=2, progress=False)
    rep = verify(out, count=24)
    assert rep.ok, rep.lines()
    m = read_manifest(out)
    t, p = get_task(task), make_params(get_task(task), m["params"])
    root, _ = default_source()
    _, s = next(iter(read_shard(out / m["shards"][0]["name"])))
    meta = s["json"]
    src, _ = check_source(root, meta["source"], 1)
    wrong = dict(meta, flip=not meta["flip"])
    derived = reference_sample(t, p, load_rgb(root, src), wrong)
    assert compare_bins(s["ab_bins.npy"], derived["ab_bins"]) > BINS_TOLERANCE


def test_soft_encode_local_search_equals_the_search_over_all_bins():
    """The 5x5-lattice search is exact: same bins (ties in bin-index order) and same weights as
    comparing every value with every bin, including lattice ties and values far outside the gamut."""
    bins = lab.gamut_bins(10)
    rng = np.random.default_rng(0)
    ab = np.concatenate([rng.uniform(-130, 130, (20000, 2)), rng.integers(-12, 12, (4000, 2)) * 10.0,
                         rng.integers(-24, 24, (4000, 2)) * 5.0])
    idx, w = lab.soft_encode(ab, bins)
    c = bins.astype(np.float64)
    ref_idx, d2 = lab._nearest(ab, c, np.broadcast_to(np.arange(len(c)), (len(ab), len(c))), 5)
    ref_w = np.exp(-(d2 - d2[:, :1]) / 50.0)
    ref_w /= ref_w.sum(1, keepdims=True)
    np.testing.assert_array_equal(idx, ref_idx.astype(np.uint16))
    np.testing.assert_array_equal(w, ref_w.astype(np.float32))
    brute = np.argsort(((ab[:, None, :] - c[None]) ** 2).sum(-1), axis=1, kind="stable")[:, :1]
    np.testing.assert_array_equal(idx[:, :1], brute)  # the nearest bin, by a plain brute force
