"""Sources that are not worth a sample: damaged JPEGs that still decode (libjpeg fills the damage
with flat grey), images that are one colour. Damaged copies of real photos are made here."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile

import cv2
import numpy as np
import pytest

from pretextgen.builder import build
from pretextgen.sources import check_source, scan

JPEGS = ("rocket.jpg", "retina.jpg", "hubble_deep_field.jpg")


def _entropy_middle(data: bytes) -> int:
    """A position in the middle of the entropy-coded data (after the start-of-scan marker)."""
    sos = data.index(b"\xff\xda")
    return (sos + len(data)) // 2


def damaged_copies(root, name: str, out) -> dict[str, str]:
    """{file name: how it was damaged} for copies of the real photo root/name."""
    data = (root / name).read_bytes()
    mid = _entropy_middle(data)
    rng = np.random.default_rng(7)
    stem = name.rsplit(".", 1)[0]
    kinds = {
        "random": data[:mid] + rng.integers(0, 256, 2048, dtype=np.uint8).tobytes() + data[mid + 2048:],
        "zeroed": data[:mid] + bytes(2048) + data[mid + 2048:],
        "eoi": data[:mid] + b"\xff\xd9" + data[mid + 2:],  # an end-of-image marker inside the scan
        "rst": data[:mid] + b"\xff\xd3" + data[mid + 2:],  # a restart marker where none belongs
        "truncated": data[:mid],
    }
    out.mkdir(parents=True, exist_ok=True)
    names = {}
    for kind, blob in kinds.items():
        fname = f"{stem}_{kind}.jpg"
        (out / fname).write_bytes(blob)
        names[fname] = kind
    return names


@pytest.mark.parametrize("name", JPEGS)
def test_damaged_jpegs_are_refused_as_corrupt(photos, tmp_path, name):
    root, _ = photos
    names = damaged_copies(root, name, tmp_path)
    shutil.copy(root / name, tmp_path / name)
    for fname, kind in names.items():
        src, why = check_source(tmp_path, fname, 1)
        assert src is None, f"{kind} damage to {name} was accepted"
        assert why.startswith("corrupt JPEG data"), (kind, why)
    src, why = check_source(tmp_path, name, 1)
    assert src is not None and why is None


def test_padding_before_the_end_marker_is_harmless(photos, tmp_path):
    """libjpeg warns about bytes between the last scan and the end marker; every pixel is intact."""
    root, _ = photos
    data = (root / "rocket.jpg").read_bytes()
    assert data.endswith(b"\xff\xd9")
    (tmp_path / "padded.jpg").write_bytes(data[:-2] + bytes(12) + b"\xff\xd9")
    src, why = check_source(tmp_path, "padded.jpg", 1)
    assert why is None and (src.width, src.height) == (640, 427)
    assert np.array_equal(cv2.imread(str(tmp_path / "padded.jpg")), cv2.imread(str(root / "rocket.jpg")))


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
    """Real photos, damaged copies of three of them, flat images and an empty file."""
    root, files = photos
    folder = tmp_path / "mixed"
    folder.mkdir()
    for f in files:
        shutil.copy(root / f, folder / f)
    bad = {}
    for name in JPEGS:
        bad.update({f"damaged/{k}": v for k, v in damaged_copies(root, name, folder / "damaged").items()})
    cv2.imwrite(str(folder / "flat_black.png"), np.zeros((240, 320, 3), np.uint8))
    cv2.imwrite(str(folder / "flat_white.jpg"), np.full((240, 320, 3), 255, np.uint8))
    (folder / "empty.jpg").write_bytes(b"")
    bad.update({"flat_black.png": "flat", "flat_white.jpg": "flat", "empty.jpg": "empty"})
    return folder, files, bad


def test_a_mixed_folder_builds_from_good_photos_only(photos, tmp_path):
    folder, good, bad = mixed_folder(photos, tmp_path)
    m = build("rotation", tmp_path / "out", source=folder, samples=64, seed=3, backend="opencv", progress=False)
    skipped = {s["source"]: s["reason"] for s in m["skipped"]}
    assert set(skipped) == set(bad)
    for name, kind in bad.items():
        want = {"flat": "flat image", "empty": "empty file"}.get(kind, "corrupt JPEG data")
        assert skipped[name].startswith(want), (name, skipped[name])
    used = set()
    for rec in m["shards"]:
        with tarfile.open(tmp_path / "out" / rec["name"]) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    used.add(json.loads(tar.extractfile(member).read())["source"])
    assert used <= set(good) and len(used) > 1


def test_decoder_messages_never_reach_the_terminal(photos, tmp_path):
    """libjpeg prints its warnings to the process's stderr, without a file name: the scan keeps
    them (as the skipped file's reason), in the main process and in worker processes alike."""
    folder, _, _ = mixed_folder(photos, tmp_path)
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        r = subprocess.run([sys.executable, "-m", "pretextgen.cli", "build", "--task", "rotation", "--source",
                            str(folder), "--out", str(out), "--samples", "8", "--workers", workers, "--backend",
                            "opencv", "--no-progress"], capture_output=True, text=True,
                           env={**__import__("os").environ, "PRETEXTGEN_CACHE": str(tmp_path / f"cache{workers}")})
        assert r.returncode == 0, r.stderr
        assert "Corrupt JPEG" not in r.stderr and "premature end" not in r.stderr, r.stderr
        assert "corrupt JPEG data" in r.stdout  # the summary names the reason instead


def test_scan_in_processes_agrees_with_one_process(photos, tmp_path):
    folder, _, _ = mixed_folder(photos, tmp_path)
    from pretextgen.sources import list_files

    files = list_files(folder)
    assert scan(folder, files, 64, workers=1) == scan(folder, files, 64, workers=2)
