"""Per-sample host costs that every backend pays, each against what it replaced, side by side in one
process (best of 5 runs of 2,000 calls each; the CPU as it is):

    python benchmarks/bench_host.py --jpegs DIR    # e.g. the 500x375 JPEGs of bench_gpu.py --make-jpegs

- reading a source file, as the backends do (``read_file(os.path.join(root, rel))``: one raw
  ``readinto``) against what they did before (``np.fromfile(Path(root) / rel)``);
- each image task's plan (``builder.plan_sample``), for the record;
- with ``--writes`` (and ``--jpegs``): whole builds' shard writing (sha256 and file writes) in a writer
  thread (``jobs.write_shards(background=True)``, the default) against the main thread, for rotation,
  jigsaw and context on DALI (``--device``, CPU by default) and OpenCV: the main thread's CPU per sample (``time.thread_time``:
  what limits one process that feeds a GPU) and the build's samples/s, both modes alternated, best
  of ``--repeats``, the same shard bytes checked;
- with ``--opaque-png FILE`` (e.g. the 12 MP one of ``bench_images.py --make-mixed``): one visit of a
  fully opaque RGBA PNG (``load_rgb``: read like a plain PNG) against its decode alone and against
  what a visit cost before (decode, then alpha composited on black in float32).
"""
from __future__ import annotations

import argparse
import dataclasses
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


def shard_writes(root: Path, samples: int, repeats: int, device: str = "cpu") -> None:
    """Main-thread CPU per sample and samples/s of whole builds, shards written in a writer thread
    against in the main thread (see the module docstring)."""
    import shutil
    import tempfile

    from pretextgen.jobs import BuildOptions, make_plan, make_shards

    print("| task | backend | main-thread CPU us/sample: writer thread | main thread | "
          "samples/s: writer thread | main thread | ratio |\n|---|---|---:|---:|---:|---:|---:|")
    for name in ("rotation", "jigsaw", "context"):
        for backend in ("dali", "opencv"):
            dev = device if backend == "dali" else "cpu"
            with tempfile.TemporaryDirectory() as tmp:
                tmp = Path(tmp)
                opts = BuildOptions(samples=samples, backend=backend, device=dev, shard_bytes=32 * 2**20,
                                    progress=False)
                (tmp / "plan").mkdir()
                job = make_plan(name, tmp / "plan", root, opts).job
                shards = list(range(-(-samples // job.per_shard)))
                best: dict = {}
                digests: dict = {}
                for r in range(repeats):
                    for background in (True, False):
                        out = tmp / f"out-{background}"
                        shutil.rmtree(out, ignore_errors=True)
                        out.mkdir()
                        c0, w0 = time.thread_time(), time.perf_counter()
                        recs = make_shards(dataclasses.replace(job, out=out), shards, background=background)
                        cpu, wall = time.thread_time() - c0, time.perf_counter() - w0
                        cur = best.get(background, (float("inf"), float("inf")))
                        best[background] = (min(cur[0], cpu), min(cur[1], wall))
                        digests[background] = [rec["sha256"] for rec in recs]
                assert digests[True] == digests[False]
                (ct, wt), (cf, wf) = best[True], best[False]
                print(f"| {name} | {backend}-{dev} | {1e6 * ct / samples:.0f} | {1e6 * cf / samples:.0f} | "
                      f"{samples / wt:,.0f} | {samples / wf:,.0f} | {wf / wt:.2f}x |", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jpegs", help="a folder of JPEGs")
    ap.add_argument("--opaque-png", help="a fully opaque RGBA PNG")
    ap.add_argument("--writes", action="store_true", help="shard writing in a writer thread against the main thread")
    ap.add_argument("--samples", type=int, default=2048, help="samples per build with --writes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "gpu"], help="DALI's device with --writes")
    args = ap.parse_args(argv)
    if args.opaque_png:
        opaque_png_visit(Path(args.opaque_png))
    if args.writes:
        shard_writes(Path(args.jpegs), args.samples, args.repeats, args.device)
        return
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
