"""What a user meets around a build: degenerate samples refused and counted, awkward images
handled, paths that survive a change of folder, a summary that says what happened, loader outputs
ready for torch. Real photos throughout; degenerate copies are made here."""
from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from pretextgen.builder import build
from pretextgen.cli import main
from pretextgen.sources import FLAT_GRID, _composite_on_black, check_source, flat_view, load_rgb, slow_sources


def shard_samples(out: Path):
    """(json, {field: bytes}) of every sample of a build, in order."""
    m = json.loads((out / "manifest.json").read_text())
    for rec in m["shards"]:
        with tarfile.open(out / rec["name"]) as tar:
            group: dict = {}
            for member in tar.getmembers():
                key, _, suffix = member.name.partition(".")
                group.setdefault(key, {})[suffix] = tar.extractfile(member).read()
            for key in sorted(group):
                yield json.loads(group[key]["json"]), group[key]


def logo_on_black(photos, folder: Path, name="logo.png", side=1200, logo=75) -> Path:
    """A real photo shrunk to a small logo in the corner of a large black canvas; by default it
    fills the first cell of the flat-cell grid exactly (1200 / 16 = 75 px), so that a view is one
    colour exactly when it lies in the other cells."""
    root, _ = photos
    rgb = load_rgb(root, check_source(root, "chelsea.png", 1)[0])
    canvas = np.zeros((side, side, 3), np.uint8)
    canvas[:logo, :logo] = cv2.resize(rgb, (logo, logo), interpolation=cv2.INTER_AREA)
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / name), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    return folder / name


def test_flat_cells_mark_the_black_part_of_a_logo_on_black(photos, tmp_path):
    logo_on_black(photos, tmp_path)
    src, _ = check_source(tmp_path, "logo.png", 1)
    flat = [bool(src.flat_cells >> k & 1) for k in range(FLAT_GRID * FLAT_GRID)]
    assert not flat[0] and sum(flat) == FLAT_GRID * FLAT_GRID - 1  # the logo sits in cell (0, 0) alone
    assert flat_view(src, {"box": [600, 600, 900, 900], "size": [64, 64]})
    assert not flat_view(src, {"box": [50, 50, 400, 400], "size": [64, 64]})  # reaches the logo's cell
    root, files = photos
    for f in files:  # real photos: no view of theirs is ever called flat
        s, _ = check_source(root, f, 1)
        assert not flat_view(s, {"box": [0, 0, s.width, s.height], "size": [8, 8]})


@pytest.mark.parametrize("task", ["rotation", "context", pytest.param("exemplar", marks=pytest.mark.slow)])
def test_plans_in_one_colour_areas_are_drawn_again_and_counted(photos, tmp_path, task):
    root, files = photos
    folder = tmp_path / "src"
    for f in files[:4]:
        folder.mkdir(exist_ok=True)
        shutil.copy(root / f, folder / f)
    for k in range(4):  # most sources are logos on black: many first plans land in the black
        logo_on_black(photos, folder, f"logo{k}.png")
    kw = dict(source=folder, samples=48, seed=1, backend="opencv", progress=False)
    m = build(task, tmp_path / "a", **kw)
    assert sum(m["rejected_plans"].values()) > 0
    reasons = set(m["rejected_plans"])
    assert reasons <= {"flat views", "no textured seed patch"}
    redrawn = 0
    for meta, members in shard_samples(tmp_path / "a"):
        redrawn += len(meta.get("rejected", []))
        field = members["patches.npy" if task != "rotation" else "image.png"]
        a = np.load(__import__("io").BytesIO(field)) if field[:6] == b"\x93NUMPY" else cv2.imdecode(
            np.frombuffer(field, np.uint8), cv2.IMREAD_UNCHANGED)
        views = a.reshape(-1, *a.shape[-3:]) if a.ndim == 4 else a[None]
        assert any(int(v.max()) - int(v.min()) > 2 for v in views), f"sample {meta['index']} is one colour"
    assert redrawn == sum(m["rejected_plans"].values())
    build(task, tmp_path / "b", **kw)  # the same seed: the same redraws, the same bytes
    for rec_a, rec_b in zip(m["shards"], json.loads((tmp_path / "b" / "manifest.json").read_text())["shards"]):
        assert rec_a["sha256"] == rec_b["sha256"]
    assert main(["verify", str(tmp_path / "a"), "--samples", "8"]) == 0  # replanning redraws alike


def test_opaque_rgba_png_is_read_like_a_plain_png(photos, tmp_path):
    root, _ = photos
    rgb = load_rgb(root, check_source(root, "astronaut.png", 1)[0])
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    cv2.imwrite(str(tmp_path / "opaque.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    see_through = rgba.copy()
    see_through[:100, :100, 3] = 90
    cv2.imwrite(str(tmp_path / "alpha.png"), cv2.cvtColor(see_through, cv2.COLOR_RGBA2BGRA))
    opaque, _ = check_source(tmp_path, "opaque.png", 1)
    assert not opaque.host_decode  # decoders read it directly: no compositing per visit
    assert np.array_equal(load_rgb(tmp_path, opaque), rgb)
    deep = np.dstack([rgb.astype(np.uint16) * 257, np.full(rgb.shape[:2], 65535, np.uint16)])
    cv2.imwrite(str(tmp_path / "opaque16.png"), cv2.cvtColor(deep, cv2.COLOR_RGBA2BGRA))
    assert check_source(tmp_path, "opaque16.png", 1)[0].host_decode  # 16 bits: our loader scales them
    alpha, _ = check_source(tmp_path, "alpha.png", 1)
    assert alpha.host_decode
    out = load_rgb(tmp_path, alpha)
    assert np.array_equal(out[100:], rgb[100:])
    assert np.array_equal(out[:100, :100], np.rint(rgb[:100, :100] * (90 / 255)).astype(np.uint8))


def test_integer_compositing_equals_the_rounded_float_product():
    x = np.arange(256, dtype=np.uint8)
    rgb = np.repeat(np.repeat(x[:, None, None], 256, 1), 3, 2)  # every (value, alpha) pair
    alpha = np.repeat(x[None, :], 256, 0)
    want = np.rint(rgb.astype(np.float64) * (alpha[..., None] / 255.0)).astype(np.uint8)
    assert np.array_equal(_composite_on_black(rgb, alpha), want)


def test_sources_far_costlier_than_the_rest_are_named(photos, tmp_path, capsys):
    root, files = photos
    folder = tmp_path / "src"
    folder.mkdir()
    for f in ("rocket.jpg", "camera.png", "coffee.png", "chelsea.png"):  # 0.1-0.3 MP each
        shutil.copy(root / f, folder / f)
    rgb = load_rgb(root, check_source(root, "astronaut.png", 1)[0])
    cv2.imwrite(str(folder / "huge.png"), cv2.resize(rgb, (3000, 3000), interpolation=cv2.INTER_NEAREST))
    from pretextgen.sources import scan

    good, _ = scan(folder, sorted(os.listdir(folder)), 64)
    assert [s["source"] for s in slow_sources(good)] == ["huge.png"]
    assert main(["build", "--task", "rotation", "--source", str(folder), "--out", str(tmp_path / "o"),
                 "--samples", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "slow: 1 source(s)" in out and "huge.png (9.0 MP PNG" in out


def test_build_summary_says_why_files_were_skipped_and_what_next(photos, tmp_path, capsys):
    root, files = photos
    folder = tmp_path / "src"
    folder.mkdir()
    for f in files:
        shutil.copy(root / f, folder / f)
    (folder / "notes.txt").write_text("not a photo")
    (folder / "empty.jpg").write_bytes(b"")
    cv2.imwrite(str(folder / "blank.png"), np.full((100, 100, 3), 7, np.uint8))
    assert main(["build", "--task", "rotation", "--source", str(folder), "--out", str(tmp_path / "o"),
                 "--samples", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "3 skipped" in out
    for line in ("skipped 1: not an image (e.g. notes.txt)", "skipped 1: empty file (e.g. empty.jpg)",
                 "skipped 1: flat image (e.g. blank.png)"):
        assert line in out
    assert f"next: pretextgen inspect {tmp_path / 'o'}" in out and f"pretextgen verify {tmp_path / 'o'}" in out


def test_debug_works_after_the_subcommand(tmp_path, capsys):
    with pytest.raises(Exception, match="unknown task"):
        main(["build", "--task", "nope", "--out", str(tmp_path / "o"), "--debug"])
    assert main(["build", "--task", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "unknown task" in capsys.readouterr().err


def test_relative_source_survives_running_from_another_folder(photos, tmp_path, monkeypatch):
    root, files = photos
    work = tmp_path / "work"
    (work / "photos").mkdir(parents=True)
    for f in files[:5]:
        shutil.copy(root / f, work / "photos" / f)
    monkeypatch.chdir(work)
    m = build("context", "out", source="photos", samples=8, seed=0, backend="opencv", progress=False)
    assert m["source"] == "photos" and m["source_path"] == str((work / "photos").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["verify", str(work / "out"), "--samples", "4"]) == 0  # found through source_path
    shutil.move(str(work / "photos"), str(elsewhere / "photos"))  # moved: the relative path still works here
    assert main(["verify", str(work / "out"), "--samples", "4"]) == 0
    monkeypatch.chdir(tmp_path)
    assert main(["verify", str(work / "out"), "--samples", "4"]) == 2  # found nowhere: one clear error


def test_loader_hands_class_ids_as_int64_and_per_pixel_vectors_channels_first(tmp_path):
    torch = pytest.importorskip("torch")
    from pretextgen.loader import make_loader

    build("colorization", tmp_path / "c", samples=4, seed=0, backend="opencv", progress=False,
          overrides=["size=64", "neighbours=5"])
    batch = next(iter(make_loader(tmp_path / "c", batch_size=4, num_workers=0)))
    t = 16  # 64 / target_stride 4
    assert batch["ab_bins"].dtype == torch.int64 and batch["ab_bins"].shape == (4, 5, t, t)
    assert batch["ab_weights"].shape == (4, 5, t, t) and batch["ab_target"].shape == (4, 2, t, t)
    assert batch["L"].shape == (4, 64, 64)
    logits = torch.zeros(4, 313, t, t)
    torch.nn.functional.cross_entropy(logits, batch["ab_bins"][:, 0])  # ready as given
    build("mae", tmp_path / "m", samples=2, seed=0, backend="opencv", progress=False)
    batch = next(iter(make_loader(tmp_path / "m", batch_size=2, num_workers=0)))
    assert batch["ids_restore"].dtype == torch.int64 and batch["image"].shape[1] == 3


def test_a_failed_build_leaves_nothing_that_blocks_the_same_command(photos, tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    cv2.imwrite(str(folder / "blank.png"), np.zeros((300, 300, 3), np.uint8))
    out = tmp_path / "out"
    args = ["build", "--task", "jigsaw", "--source", str(folder), "--out", str(out), "--samples", "4", "--no-progress"]
    assert main(args) == 2  # no usable image: after the output folder was made
    assert not out.exists()
    out.mkdir()  # an empty folder given by the user stays, empty
    assert main(args) == 2 and out.is_dir() and not any(out.iterdir())
    shutil.copy(photos[0] / "rocket.jpg", folder / "rocket.jpg")
    assert main(args) == 0  # the same command, once the input is fixed
