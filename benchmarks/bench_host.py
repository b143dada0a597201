"""Per-sample host costs that every backend pays, each against what it replaced, side by side in one
process (best of 5 runs of 2,000 calls each; the CPU as it is):

    python benchmarks/bench_host.py --jpegs DIR    # e.g. the 500x375 JPEGs of bench_gpu.py --make-jpegs

- reading a source file, as the backends do (``read_file(os.path.join(root, rel))``: one raw
  ``readinto``) against what they did before (``np.fromfile(Path(root) / rel)``);
- each image task's plan (``builder.plan_sample``), for the record;
- with ``--opaque-png FILE`` (e.g. the 12 MP one of ``bench_images.py --make-mixed``): one visit of a
  fully opaque RGBA PNG (``load_rgb``: read like a plain PNG) against its decode alone and against
  what a visit cost before (decode, then alpha composited on black in float32).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from pretextgen.plan import plan_sample
from pretextgen.config import load_params
from pretextgen.registry import get_task, list_tasks
from pretextgen.sources import list_files, read_file, scan


def per_call_us(fn, args: list, runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        for a in args:
            fn(a)
        best = min(best, time.perf_counter() - t)
    return 1e6 * best / len(args)


def opaque_png_visit(path: Path) -> None:
    import cv2

    from pretextgen.sources import check_source, load_rgb

    src, why = check_source(path.parent, path.name, 1)
    assert src is not None, why

    def before(_):
        a = cv2.imdecode(read_file(str(path)), cv2.IMREAD_UNCHANGED)
        rgb = cv2.cvtColor(a[..., :3], cv2.COLOR_BGR2RGB)
        alpha = a[..., 3].astype(np.float32)[..., None] / 255.0
        return np.rint(rgb.astype(np.float32) * alpha).astype(np.uint8)

    calls = [None] * 3
    decode = per_call_us(lambda _: cv2.imdecode(read_file(str(path)), cv2.IMREAD_UNCHANGED), calls) / 1e3
    ours = per_call_us(lambda _: load_rgb(path.parent, src), calls) / 1e3
    old = per_call_us(before, calls) / 1e3
    print(f"| one visit of {src.width}x{src.height} opaque RGBA PNG (ms) | {ours:.0f} | {old:.0f} | {old / ours:.2f}x |")
    print(f"| its decode alone (ms) | {decode:.0f} | | ours / decode {ours / decode:.2f}x |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jpegs", help="a folder of JPEGs")
    ap.add_argument("--opaque-png", help="a fully opaque RGBA PNG")
    args = ap.parse_args(argv)
    if args.opaque_png:
        opaque_png_visit(Path(args.opaque_png))
    if not args.jpegs:
        return
    root = Path(args.jpegs)
    files = list_files(root)
    rels = [files[k % len(files)] for k in range(2000)]
    print("| what | ours (us) | replaced (us) | ratio |\n|---|---:|---:|---:|")
    ours = per_call_us(lambda rel: read_file(os.path.join(root, rel)), rels)
    old = per_call_us(lambda rel: np.fromfile(Path(root) / rel, np.uint8), rels)
    kb = np.mean([os.path.getsize(root / rel) for rel in rels]) / 1024
    print(f"| read a source file (mean {kb:.0f} KB) | {ours:.1f} | {old:.1f} | {old / ours:.2f}x |")
    js = list(range(2000))
    for name in [n for n in list_tasks() if get_task(n).input == "image" and get_task(n).source_stats is None]:
        t = get_task(name)
        p = load_params(t)
        sources, _ = scan(root, files, t.min_side(p), 1)
        plan_sample(t, p, sources, 0, 0, root)  # tables built once (jigsaw's permutation set)
        us = per_call_us(lambda i: plan_sample(t, p, sources, 0, i, root), js)
        print(f"| {name} plan_sample | {us:.1f} | | |")


if __name__ == "__main__":
    main()
