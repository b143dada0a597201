"""Lossless encodings of image fields, per image on one core: encode and decode time and bytes, side by side.

    python benchmarks/bench_encode.py                      # 224 px crops of scikit-image's photos (rotation's size)
    python benchmarks/bench_encode.py --size 128 --source ../shared/data/images/flowers5

The candidates a build could store (issue 16, item 3): raw ``.npy`` (``--pixels npy``), PNG as
pretextgen writes it (``shards._encode_png``: zlib level 1, the RLE strategy, the "up" filter on
every row), PNG at other zlib levels and filters, lossless WebP and PPM (raw pixels behind a short
header). All of them are readable by webdataset's image decoder and by OpenCV; every encoded image
is decoded back and checked equal to its source. One thread (OpenCV's pool off): a build encodes
in as many threads as it has cores. "cores at 25k/s": how many such cores encoding alone takes at
25,000 samples/s, the rate of an H200's decode-only nvJPEG on 500x375 JPEGs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from bench_host import per_call_us  # this folder is on sys.path when a script here runs
from pretextgen.shards import _decode_png, _encode_npy, _encode_png
from pretextgen.sources import default_source, list_files, load_rgb, scan


def crops(source: str | None, size: int, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` square crops of real photos resized to ``size`` (area filter), RGB uint8."""
    root, files = default_source() if source is None else (Path(source), list_files(Path(source)))
    good, _ = scan(root, files, 32, 1)
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        src = good[int(rng.integers(len(good)))]
        rgb = load_rgb(root, src)
        side = int(min(src.width, src.height) * rng.uniform(0.5, 1.0))
        x, y = int(rng.integers(src.width - side + 1)), int(rng.integers(src.height - side + 1))
        out.append(np.ascontiguousarray(cv2.resize(rgb[y:y + side, x:x + side], (size, size),
                                                   interpolation=cv2.INTER_AREA)))
    return out


def png(level: int, strategy=None, filt=None):
    def encode(a: np.ndarray) -> bytes:
        params = [cv2.IMWRITE_PNG_COMPRESSION, level]
        if strategy is not None:
            params += [cv2.IMWRITE_PNG_STRATEGY, strategy]
        if filt is not None:
            params += [cv2.IMWRITE_PNG_FILTER, filt]
        return cv2.imencode(".png", cv2.cvtColor(a, cv2.COLOR_RGB2BGR), params)[1].tobytes()
    return encode


def via_cv2(ext: str, params=()):
    def encode(a: np.ndarray) -> bytes:
        return cv2.imencode(ext, cv2.cvtColor(a, cv2.COLOR_RGB2BGR), list(params))[1].tobytes()
    return encode


def cv2_decode(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def npy_decode(data: bytes) -> np.ndarray:
    import io

    return np.load(io.BytesIO(data), allow_pickle=False)


CANDIDATES = {
    "npy (raw; --pixels npy)": (_encode_npy, npy_decode),
    "PNG as written now: level 1, RLE, up filter": (_encode_png, _decode_png),
    "PNG level 1, RLE, no filter": (png(1, cv2.IMWRITE_PNG_STRATEGY_RLE, cv2.IMWRITE_PNG_FILTER_NONE), cv2_decode),
    "PNG level 1, default strategy, adaptive filters": (png(1), cv2_decode),
    "PNG level 0 (stored, no compression)": (png(0), cv2_decode),
    "PNG level 3 (OpenCV's default)": (png(3), cv2_decode),
    "PNG level 6 (zlib's default)": (png(6), cv2_decode),
    "WebP lossless": (via_cv2(".webp", (cv2.IMWRITE_WEBP_QUALITY, 101)), cv2_decode),
    "PPM (raw + header)": (via_cv2(".ppm"), cv2_decode),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", help="image folder (default: scikit-image's photos)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="write the raw numbers here")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    images = crops(args.source, args.size, args.images)
    raw = np.mean([len(_encode_npy(a)) for a in images])
    rows = []
    print(f"{args.images} crops of {args.size}x{args.size}x3 from {args.source or 'scikit-image photos'}; "
          f"raw .npy {raw / 1024:.0f} KB each", file=sys.stderr)
    print("| encoding | encode us | decode us | KB | bytes vs npy | cores at 25k/s |\n|---|---:|---:|---:|---:|---:|")
    for name, (encode, decode) in CANDIDATES.items():
        blobs = [encode(a) for a in images]
        assert all(np.array_equal(decode(b), a) for a, b in zip(images, blobs)), f"{name} is not lossless"
        enc, dec = per_call_us(encode, images, args.repeats), per_call_us(decode, blobs, args.repeats)
        size = float(np.mean([len(b) for b in blobs]))
        rows.append({"encoding": name, "encode_us": enc, "decode_us": dec, "bytes": size})
        print(f"| {name} | {enc:,.0f} | {dec:,.0f} | {size / 1024:.0f} | {size / raw:.2f} | {enc * 25000 / 1e6:.1f} |",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "raw_bytes": raw, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
