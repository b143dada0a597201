"""Damaged JPEGs against the scan's rules, and the scan's speed, before and after a change of rules.

    python benchmarks/bench_damage.py                      # the verdicts on damaged and harmless copies
    python benchmarks/bench_damage.py --speed --before REV # + check_source per 1,000 photos, REV's and ours

Verdicts: real JPEGs (scikit-image's three; four of its photos encoded as 4:2:0 q90, progressive,
optimised and 4:4:4 q95; with ``../shared/data``, DAVIS frames and flower photos too) are damaged the
ways item 2 of the damaged-JPEG issue lists (random bytes or zeros over a block at 15 places, a
stray RST, a flipped Huffman-table byte, truncation, zeros over the scan's end) and given harmless
quirks (zero padding after the scan, junk between header segments, data after the end marker). Each
copy is decoded once and judged by the rules before (any libjpeg warning but "extraneous bytes
before marker 0xd9" is damage) and by ``jpegs.verdict``. Printed: per kind, how many copies each
rule set keeps, and how many damaged copies libjpeg decoded without a word (no rule on warnings can
see those).

Speed: ``check_source`` of REV (loaded from git) and of the working tree on the same files, one
process, alternated, best of ``--repeats``: 1,000 real JPEGs and 300 of them as PNG.
"""
from __future__ import annotations

import argparse
import collections
import importlib.util
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from pretextgen.jpegs import verdict
from pretextgen.sources import check_source, decode_reporting, skimage_data_dir

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
OLD_HARMLESS = "extraneous bytes before marker 0xd9"


def photos() -> dict[str, bytes]:
    from PIL import Image

    sk = skimage_data_dir()
    out = {n: (sk / n).read_bytes() for n in ("rocket.jpg", "retina.jpg", "hubble_deep_field.jpg")}
    for n in ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png"):
        im = Image.open(sk / n).convert("RGB")
        for tag, kw in {"q90": dict(quality=90), "progressive": dict(quality=90, progressive=True),
                        "optimised": dict(quality=85, optimize=True), "444": dict(quality=95, subsampling=0)}.items():
            b = io.BytesIO()
            im.save(b, "JPEG", **kw)
            out[f"{n}-{tag}"] = b.getvalue()
    if SHARED.is_dir():
        for f in sorted((SHARED / "davis2016-dev" / "JPEGImages").rglob("00020.jpg"))[:6]:
            out[f"davis-{f.parent.name}"] = f.read_bytes()
        for f in sorted((SHARED / "images" / "flowers5" / "train").rglob("*.jpg"))[:40:4]:
            out[f"flowers-{f.name}"] = f.read_bytes()
    return out


def copies(data: bytes, rng) -> dict[str, list[bytes]]:
    n = len(data)
    kinds = collections.defaultdict(list)
    for frac in np.linspace(0.2, 0.9, 15):
        s = int(n * frac)
        for size in (4000, 2000, 200):
            if s + size > n - 2:
                continue
            kinds[f"random {size} B"].append(data[:s] + rng.integers(0, 256, size, np.uint8).tobytes() + data[s + size:])
            kinds[f"zeros {size} B"].append(data[:s] + bytes(size) + data[s + size:])
        kinds["stray RST"].append(data[:s] + b"\xff\xd3" + data[s + 2:])
        kinds["truncated"].append(data[:s])
    dht = data.index(b"\xff\xc4") + 5
    for bit in range(8):
        kinds["Huffman table byte flipped"].append(data[:dht] + bytes([data[dht] ^ (1 << bit)]) + data[dht + 1:])
    for size in (100, 1000):
        kinds["zeros over the scan's end"].append(data[:-2 - size] + bytes(size) + data[-2:])
    dqt = data.index(b"\xff\xdb")
    for size in (1, 2, 7, 8, 9, 16, 100, 1000):
        kinds["harmless: zero padding after the scan"].append(data[:-2] + bytes(size) + data[-2:])
        kinds["harmless: junk between header segments"].append(data[:dqt] + rng.integers(0, 255, size, np.uint8).tobytes() + data[dqt:])
    kinds["harmless: data after the end marker"].append(data + data + b"vendor trailer")
    return kinds


def verdicts() -> None:
    rng = np.random.default_rng(0)
    rows = collections.defaultdict(collections.Counter)
    for name, data in photos().items():
        clean = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        for kind, blobs in copies(data, rng).items():
            for blob in blobs:
                image, said = decode_reporting(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
                wrong = image is not None and not (image.shape == clean.shape and np.array_equal(image, clean))
                old_kept = image is not None and all(OLD_HARMLESS in line for line in said)
                now_kept = image is not None and verdict(blob, said)[0] is None
                row = rows[kind]
                row["copies"] += 1
                row["kept before"] += old_kept
                row["wrong before"] += old_kept and wrong
                row["kept now"] += now_kept
                row["wrong now"] += now_kept and wrong
                row["silent"] += wrong and not said
    print("copies kept (of which with pixels unlike the photo's), by the rules before and now; the last column:")
    print("copies with pixels unlike the photo's that libjpeg decoded without a word\n")
    print("| kind | copies | kept before | kept now | wrong pixels, no warning |\n|---|---|---|---|---|")
    for kind, r in rows.items():
        print(f"| {kind} | {r['copies']} | {r['kept before']} ({r['wrong before']}) | {r['kept now']} ({r['wrong now']}) "
              f"| {r['silent']} |")


def load_before(rev: str):
    """``pretextgen.sources`` as it was at ``rev``, as the module ``pretextgen._sources_before``."""
    text = subprocess.run(["git", "show", f"{rev}:pretextgen/sources.py"], check=True, capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1]).stdout
    spec = importlib.util.spec_from_loader("pretextgen._sources_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "pretextgen"
    sys.modules[spec.name] = module  # dataclasses look their module up there
    exec(compile(text, f"{rev}:pretextgen/sources.py", "exec"), module.__dict__)
    return module


def speed(rev: str, repeats: int) -> None:
    before = load_before(rev).check_source
    files = sorted((SHARED / "davis2016-dev" / "JPEGImages").rglob("*.jpg"))
    files += sorted((SHARED / "images" / "flowers5" / "train").rglob("*.jpg"))[: 1000 - len(files)]
    with tempfile.TemporaryDirectory() as tmp:
        jpg, png = Path(tmp) / "jpg", Path(tmp) / "png"
        jpg.mkdir(), png.mkdir()
        for i, f in enumerate(files):
            shutil.copy(f, jpg / f"{i:04d}.jpg")
            if i % 10 < 3:
                cv2.imwrite(str(png / f"{i:04d}.png"), cv2.imread(str(f)))
        for label, root in (("1,000 JPEGs", jpg), ("300 PNGs", png)):
            rels = sorted(p.name for p in root.iterdir())
            best = {"before": float("inf"), "now": float("inf")}
            for _ in range(repeats):
                for tag, fn in (("before", before), ("now", check_source)):
                    t = time.perf_counter()
                    results = [fn(root, r, 1) for r in rels]
                    best[tag] = min(best[tag], time.perf_counter() - t)
                    assert all(s is not None for s, _ in results), tag
            per = {k: v / len(rels) * 1000 for k, v in best.items()}
            print(f"{label}: check_source {per['before']:.2f} s per 1,000 files at {rev}, {per['now']:.2f} s now "
                  f"({per['now'] / per['before']:.2f}x)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speed", action="store_true", help="also time check_source against --before (needs ../shared/data)")
    ap.add_argument("--before", default="HEAD", help="the git revision whose check_source is the baseline")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    verdicts()
    if args.speed:
        speed(args.before, args.repeats)


if __name__ == "__main__":
    sys.exit(main())
