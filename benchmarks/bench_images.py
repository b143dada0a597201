"""Samples/s of each image task: pretextgen's backends against a plain PIL + NumPy loader of the
same samples (the task's ``Task.baseline``), side by side in one run, on the same images and the
same number of CPU cores. Also the full ``pretextgen build`` (samples written to shards).

    python benchmarks/bench_images.py                      # all image tasks with a baseline
    python benchmarks/bench_images.py --tasks jigsaw --samples 2000 --workers 2

Prints a Markdown table (ratios are against the baseline of the same row group) and, with
--json FILE, the raw numbers. Peak memory is the largest resident set of the whole process tree
(main process + workers) sampled every 20 ms during the phase.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import pretextgen
from pretextgen.backends import DaliBackend, OpenCVBackend, gpu_count
from pretextgen.plan import plan_sample
from pretextgen.config import load_params
from pretextgen.parallel import default_workers, process_pool
from pretextgen.registry import get_task, list_tasks
from pretextgen.sources import default_source, list_files, scan

HERE = Path(__file__).resolve().parent
SHARED_FLOWERS = HERE.parents[1] / "shared" / "data" / "images" / "flowers5" / "train"


class PeakRSS:
    """Peak resident memory (MiB) of this process and all its descendants while in the block."""

    def __enter__(self):
        self.peak, self._stop = 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _tree(self, pid: int) -> list[int]:
        out = [pid]
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as fh:
                    for c in fh.read().split():
                        out += self._tree(int(c))
        except OSError:
            pass
        return out

    def _run(self):
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            total = 0
            for pid in self._tree(os.getpid()):
                try:
                    with open(f"/proc/{pid}/statm") as fh:
                        total += int(fh.read().split()[1]) * page
                except OSError:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak_mib = self.peak / 2**20


_BASE = {}


def _baseline_init(task, params, root):
    _BASE.update(make=get_task(task).baseline, params=params, root=Path(root))


def _baseline_chunk(chunk):
    make, p, root = _BASE["make"], _BASE["params"], _BASE["root"]
    return [make(root / rel, np.random.default_rng([seed, i]), p)[1] for rel, seed, i in chunk]


def run_baseline(task, params, root, items, workers, seed):
    jobs = [(it.source.path, seed, it.index) for it in items]
    chunks = [jobs[k : k + 16] for k in range(0, len(jobs), 16)]
    with process_pool(workers, _baseline_init, (task, params, str(root)), with_main=True) as pool:
        n = sum(len(r) for r in pool.imap(_baseline_chunk, chunks))
    return n


def make_large_jpegs(out: Path, n: int = 48, size=(4032, 3024)) -> Path:
    """JPEGs of a phone camera's size with real photo detail: each an 8x6 grid of 504 px tiles cut
    from scikit-image's colour photos (random tiles and offsets), quality 92."""
    import cv2

    from pretextgen.sources import load_rgb

    root, files = default_source()
    good, _ = scan(root, files, 504)
    photos = [load_rgb(root, s) for s in good]
    rng = np.random.default_rng(0)
    out.mkdir(parents=True, exist_ok=True)
    tile = size[0] // 8
    for k in range(n):
        canvas = np.empty((size[1], size[0], 3), np.uint8)
        for y in range(0, size[1], tile):
            for x in range(0, size[0], tile):
                img = photos[rng.integers(len(photos))]
                oy, ox = rng.integers(0, img.shape[0] - tile + 1), rng.integers(0, img.shape[1] - tile + 1)
                canvas[y : y + tile, x : x + tile] = img[oy : oy + tile, ox : ox + tile]
        cv2.imwrite(str(out / f"{k:03d}.jpg"), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return out


def make_mixed(out: Path, flowers: int = 66, size=(4032, 3024)) -> Path:
    """A folder as users have them: scikit-image's photos, ``flowers`` flower photos (when
    ../shared/data is here) and one fully opaque RGBA PNG of 12 MP (a screenshot or an export with
    an alpha channel), its content 8x6 tiles of real photos like ``make_large_jpegs``."""
    import shutil

    import cv2

    out.mkdir(parents=True, exist_ok=True)
    root, files = default_source()
    for f in files:
        shutil.copy(root / f, out / f)
    if SHARED_FLOWERS.is_dir():
        for rel in list_files(SHARED_FLOWERS)[:flowers]:
            shutil.copy(SHARED_FLOWERS / rel, out / rel.replace("/", "_"))
    big = make_large_jpegs(out / "_tiles", n=1, size=size)
    rgb = cv2.imread(str(big / "000.jpg"))
    shutil.rmtree(big)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    cv2.imwrite(str(out / "opaque_rgba_12mp.png"), rgba)
    return out


def timed(fn):
    with PeakRSS() as mem:
        t = time.perf_counter()
        n = fn()
        dt = time.perf_counter() - t
    return n / dt, mem.peak_mib


def bench_task(name, root, sources, samples, workers, seed=0, full_decode_row=False, build_variants=False):
    t = get_task(name)
    p = load_params(t)
    items = [plan_sample(t, p, sources, seed, i, root) for i in range(samples)]
    rows = {}
    rows["PIL + NumPy baseline"] = timed(lambda: run_baseline(name, p, root, items, workers, seed))
    rows["opencv (threads)"] = timed(lambda: sum(1 for _ in OpenCVBackend(t, p, root, workers=workers, encode=False).run(items)))
    if full_decode_row:  # the same without decoding large JPEGs at 1/s (build --full-decode)
        rows["opencv (threads), --full-decode"] = timed(lambda: sum(1 for _ in OpenCVBackend(
            t, p, root, workers=workers, encode=False, jpeg_scaling=False).run(items)))

    def dali(device):
        b = DaliBackend(t, p, root, device=device, batch_size=64, threads=workers, encode=False)
        n = sum(1 for _ in b.run(items))
        b.close()
        return n

    rows["dali cpu"] = timed(lambda: dali("cpu"))
    if gpu_count():
        rows["dali gpu"] = timed(lambda: dali("gpu"))

    def build(**options):
        with tempfile.TemporaryDirectory() as d:
            m = pretextgen.build(task=name, source=root, out=Path(d) / "o", samples=samples, seed=seed,
                                 workers=workers, progress=False, **options)
            rows_backend.append(f"{m['backend']}/{m['device']}")
            return m["samples"]

    rows_backend: list = []
    rows["build (auto backend, shards written)"] = timed(build)
    if build_variants:  # the same build with its options changed, one at a time
        rows["build --pixels npy"] = timed(lambda: build(pixels="npy"))
        rows[f"build --processes {workers}"] = timed(lambda: build(processes=workers))
    return rows, rows_backend[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="*", help="default: every image task with a baseline")
    ap.add_argument("--source", help=f"image folder (default: {SHARED_FLOWERS} if present, else scikit-image photos)")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--json", help="write raw numbers here")
    ap.add_argument("--make-large-jpegs", metavar="DIR",
                    help="write 48 JPEGs of 4032x3024 (a phone camera's size) here and use them: 8x6 tiles of "
                         "scikit-image's photos at their own resolution, so the content is real photo detail; "
                         "adds a row of the OpenCV backend with --full-decode")
    ap.add_argument("--make-mixed", metavar="DIR",
                    help="write a folder of real photos with one fully opaque 12 MP RGBA PNG here and use it")
    ap.add_argument("--build-variants", action="store_true",
                    help="also time the build with --pixels npy, and in --workers processes (one thread each)")
    args = ap.parse_args(argv)
    if args.make_large_jpegs:
        args.source = str(make_large_jpegs(Path(args.make_large_jpegs)))
    if args.make_mixed:
        args.source = str(make_mixed(Path(args.make_mixed)))
    if args.source:
        root = Path(args.source)
        files = list_files(root)
    elif SHARED_FLOWERS.is_dir():
        root, files = SHARED_FLOWERS, list_files(SHARED_FLOWERS)
    else:
        root, files = default_source()
    tasks = args.tasks or [n for n in list_tasks() if get_task(n).input == "image" and get_task(n).baseline]
    results = {}
    print(f"source: {root} ({len(files)} files); {args.samples} samples per run; {args.workers} CPU workers; "
          f"GPUs: {gpu_count()}", flush=True)
    print("\n| task | implementation | samples/s | x baseline | peak RSS (MiB) |\n|---|---|---:|---:|---:|")
    for name in tasks:
        sources, _ = scan(root, files, get_task(name).min_side(load_params(get_task(name))), args.workers)
        rows, auto = bench_task(name, root, sources, args.samples, args.workers,
                                full_decode_row=bool(args.make_large_jpegs), build_variants=args.build_variants)
        base = rows["PIL + NumPy baseline"][0]
        results[name] = {k: {"samples_per_s": v[0], "ratio": v[0] / base, "peak_rss_mib": v[1]} for k, v in rows.items()}
        results[name]["auto_backend"] = auto
        for k, (rate, mem) in rows.items():
            label = k.replace("auto backend", f"auto = {auto}")
            print(f"| {name} | {label} | {rate:,.0f} | {rate / base:.2f} | {mem:,.0f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
