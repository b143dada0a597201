"""Sources that are not worth a sample: damaged JPEGs that still decode (libjpeg fills the damage
with flat grey), images that are one colour. Damaged copies of real photos are made here."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile

import cv2
import numpy as np
import pytest

from pretextgen.builder import build
from pretextgen.jpegs import verdict
from pretextgen.sources import Source, check_source, decode_reporting, load_rgb, scan

JPEGS = ("rocket.jpg", "retina.jpg", "hubble_deep_field.jpg")


def photo_444(root) -> bytes:
    """A real photo as a 4:4:4 JPEG at quality 95 (as editors save at high quality): a block of
    zeros in it desynchronises libjpeg so that its only warning is "extraneous bytes before marker
    0xd9", the hole that the scan once let through."""
    ok, data = cv2.imencode(".jpg", cv2.imread(str(root / "astronaut.png")), [
        cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    return data.tobytes()


def damaged(data: bytes, seed: int = 7) -> dict[str, bytes]:
    """Copies of a JPEG damaged the ways disks, networks and careless scripts damage files."""
    n, rng = len(data), np.random.default_rng(seed)
    out = {}
    for frac, where in ((1 / 3, "third"), (1 / 2, "half"), (2 / 3, "two-thirds")):
        s = int(n * frac)
        out[f"random-at-{where}"] = data[:s] + rng.integers(0, 256, 4000, np.uint8).tobytes() + data[s + 4000:]
        out[f"zeros-at-{where}"] = data[:s] + bytes(2000) + data[s + 2000:]
    dht = data.index(b"\xff\xc4") + 5  # the first Huffman table's count of 1-bit codes
    out["huffman-table-byte-flipped"] = data[:dht] + bytes([data[dht] ^ 0x10]) + data[dht + 1:]
    out["stray-rst"] = data[: n // 2] + b"\xff\xd3" + data[n // 2 + 2:]
    out["zeros-over-the-end"] = data[:-302] + bytes(300) + data[-2:]
    out["truncated"] = data[: n * 2 // 3]
    return out


def harmless(data: bytes) -> dict[str, bytes]:
    """Copies whose pixels are every one the photo's: zero padding after the last scan (short, which
    libjpeg does not even notice, and long), junk between header segments, and what cameras write
    after the end marker (an MPO's second image, a vendor trailer)."""
    dqt = data.index(b"\xff\xdb")
    return {
        "padded-5": data[:-2] + bytes(5) + data[-2:],
        "padded-600": data[:-2] + bytes(600) + data[-2:],
        "header-junk": data[:dqt] + b"\x13\x37\x00" + data[dqt:],
        "camera-trailer": data + data + b"SEFHvendor\x00\x01trailer",
    }


def damaged_copies(root, name: str, out) -> dict[str, str]:
    """{file name: how it was damaged} for copies of the real photo root/name (or its 4:4:4 copy)."""
    data = photo_444(root) if name == "astronaut-444.jpg" else (root / name).read_bytes()
    out.mkdir(parents=True, exist_ok=True)
    names = {}
    for kind, blob in damaged(data).items():
        fname = f"{name.rsplit('.', 1)[0]}_{kind}.jpg"
        (out / fname).write_bytes(blob)
        names[fname] = kind
    return names


@pytest.mark.parametrize("name", JPEGS + ("astronaut-444.jpg",))
def test_damaged_jpegs_are_refused_as_corrupt(photos, tmp_path, name):
    root, _ = photos
    for fname, kind in damaged_copies(root, name, tmp_path).items():
        src, why = check_source(tmp_path, fname, 1)
        assert src is None, f"{kind} damage to {name} was accepted"
        assert why.startswith("corrupt JPEG data"), (kind, why)


def test_a_desynchronised_scan_is_told_from_padding(photos, tmp_path):
    """The hole: zeros in the middle of a 4:4:4 photo make libjpeg finish early with only an
    "extraneous bytes before marker 0xd9" warning; the bytes it left unread are data, not padding."""
    root, _ = photos
    data = photo_444(root)
    for kind in ("zeros-at-third", "zeros-at-half", "zeros-at-two-thirds"):
        blob = damaged(data)[kind]
        _, said = decode_reporting(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
        assert len(said) == 1 and "extraneous bytes before marker 0xd9" in said[0], said  # libjpeg's only word
        assert verdict(blob, said)[0].startswith("corrupt JPEG data: the decoder lost sync"), kind


@pytest.mark.parametrize("name", JPEGS + ("astronaut-444.jpg",))
def test_harmless_quirks_are_kept_with_every_pixel_intact(photos, tmp_path, name):
    root, _ = photos
    data = photo_444(root) if name == "astronaut-444.jpg" else (root / name).read_bytes()
    (tmp_path / "clean.jpg").write_bytes(data)
    clean = cv2.imread(str(tmp_path / "clean.jpg"))
    clean_src = check_source(tmp_path, "clean.jpg", 1)[0]
    for kind, blob in harmless(data).items():
        (tmp_path / f"{kind}.jpg").write_bytes(blob)
        src, why = check_source(tmp_path, f"{kind}.jpg", 1)
        assert why is None, (kind, why)
        assert (src.width, src.height, src.flat_cells) == (clean_src.width, clean_src.height, clean_src.flat_cells)
        assert np.array_equal(cv2.cvtColor(load_rgb(tmp_path, src), cv2.COLOR_RGB2BGR), clean), kind
        if kind != "padded-5":  # five bytes may sit inside libjpeg's read-ahead, unnoticed
            assert bool(src.quirk) == (kind != "camera-trailer"), (kind, src.quirk)


def test_a_png_the_decoder_warns_about_is_kept_and_read_quietly(photos, tmp_path):
    """scikit-image's page.png has an ICC profile libpng warns about; its pixels are fine."""
    root, _ = photos
    shutil.copy(root / "page.png", tmp_path / "page.png")
    src, why = check_source(tmp_path, "page.png", 1)
    assert why is None and src.quirk.startswith("libpng warning")
    r = subprocess.run([sys.executable, "-c", "from pathlib import Path; from pretextgen.sources import "
                        "check_source, load_rgb, load_bgr; root = Path(%r); src = check_source(root, 'page.png', 1)[0];"
                        " load_rgb(root, src); load_bgr(root, src, 2)" % str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_one_colour_images_are_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "black.png"), np.zeros((300, 400, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "grey.jpg"), np.full((300, 400, 3), 128, np.uint8))
    cv2.imwrite(str(tmp_path / "grey16.png"), np.full((300, 400), 40000, np.uint16))
    almost = np.full((300, 400, 3), 200, np.uint8)
    almost[150, 200] = 0  # one dark pixel is not enough to make a view worth anything, but is a spread
    cv2.imwrite(str(tmp_path / "dot.png"), almost)
    for name in ("black.png", "grey.jpg", "grey16.png"):
        src, why = check_source(tmp_path, name, 1)
        assert src is None and why.startswith("flat image: one colour"), (name, why)
    assert check_source(tmp_path, "dot.png", 1)[0] is not None


def mixed_folder(photos, tmp_path):
    """Real photos; damaged copies of one of them and of a 4:4:4 photo; harmless copies (padding,
    header junk, a camera trailer) and a PNG libpng warns about, which are kept; flat images and an
    empty file. Returns (folder, good files, {bad file: kind}, {kept quirky copy: its clean twin})."""
    root, files = photos
    folder = tmp_path / "mixed"
    folder.mkdir()
    for f in files:
        shutil.copy(root / f, folder / f)
    bad = {}
    for name in ("rocket.jpg", "astronaut-444.jpg"):
        bad.update({f"damaged/{k}": v for k, v in damaged_copies(root, name, folder / "damaged").items()})
    (folder / "kept").mkdir()
    twins = {}
    for kind, blob in harmless((root / "retina.jpg").read_bytes()).items():
        (folder / "kept" / f"retina_{kind}.jpg").write_bytes(blob)
        twins[f"kept/retina_{kind}.jpg"] = "retina.jpg"
    shutil.copy(root / "page.png", folder / "kept" / "page.png")
    cv2.imwrite(str(folder / "flat_black.png"), np.zeros((240, 320, 3), np.uint8))
    cv2.imwrite(str(folder / "flat_white.jpg"), np.full((240, 320, 3), 255, np.uint8))
    (folder / "empty.jpg").write_bytes(b"")
    bad.update({"flat_black.png": "flat", "flat_white.jpg": "flat", "empty.jpg": "empty"})
    return folder, files + [*twins, "kept/page.png"], bad, twins


def _sources_used(out) -> set[str]:
    used = set()
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    used.add(json.loads(tar.extractfile(member).read())["source"])
    return used


def test_a_mixed_folder_builds_from_good_photos_only(photos, tmp_path):
    folder, good, bad, twins = mixed_folder(photos, tmp_path)
    m = build("rotation", tmp_path / "out", source=folder, samples=96, seed=3, backend="opencv", progress=False)
    skipped = {s["source"]: s["reason"] for s in m["skipped"]}
    assert set(skipped) == set(bad)
    for name, kind in bad.items():
        want = {"flat": "flat image", "empty": "empty file"}.get(kind, "corrupt JPEG data")
        assert skipped[name].startswith(want), (name, skipped[name])
    used = _sources_used(tmp_path / "out")
    assert used <= set(good) and len(used) > 1 and used & set(twins)
    quirky = {q["source"] for q in m["quirky_sources"]}  # kept, and said so
    assert {"kept/retina_padded-600.jpg", "kept/retina_header-junk.jpg", "kept/page.png"} <= quirky
    assert "kept/retina_camera-trailer.jpg" not in quirky and "retina.jpg" not in quirky
    table = json.loads((tmp_path / "out" / "sources.json").read_text())
    sources = {row[0]: Source(**dict(zip(table["columns"], row))) for row in table["rows"]}
    for copy, clean in twins.items():  # what the backends read of a kept copy is its clean twin, pixel for pixel
        assert np.array_equal(load_rgb(folder, sources[copy]), load_rgb(folder, sources[clean]))


DECODER_WORDS = ("Corrupt JPEG", "premature end", "Premature end", "extraneous", "libpng", "Invalid SOS")


@pytest.mark.parametrize("workers,backend", [("1", "opencv"), ("2", "opencv"), ("2", "dali")])
def test_decoder_messages_never_reach_the_terminal(photos, tmp_path, workers, backend):
    """libjpeg and libpng print their warnings to the process's stderr, without a file name: the
    scan keeps them (a skip reason, or a kept source's quirk) and every later decode of a kept
    quirky source is quiet, in build, inspect and verify, in one process or several."""
    folder, _, _, _ = mixed_folder(photos, tmp_path)
    env = {**os.environ, "PRETEXTGEN_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "out"
    cli = [sys.executable, "-m", "pretextgen.cli"]
    runs = [["build", "--task", "rotation", "--source", str(folder), "--out", str(out), "--samples", "48",
             "--workers", workers, "--backend", backend, "--no-progress"],
            ["inspect", str(out), "--sheet", str(tmp_path / "sheet.png"), "--samples", "12"],
            ["verify", str(out), "--samples", "48"]]
    for args in runs:
        r = subprocess.run(cli + args, capture_output=True, text=True, env=env)
        assert r.returncode == 0, (args[0], r.stdout, r.stderr)
        assert not [w for w in DECODER_WORDS if w in r.stderr], (args[0], r.stderr)
        if args[0] == "build":
            assert "corrupt JPEG data" in r.stdout  # the summary names the reasons instead
            assert "that the decoder warned about" in r.stdout


def test_scan_in_processes_agrees_with_one_process(photos, tmp_path):
    folder, _, _, _ = mixed_folder(photos, tmp_path)
    from pretextgen.sources import list_files

    files = list_files(folder)
    assert scan(folder, files, 64, workers=1) == scan(folder, files, 64, workers=2)
