"""Per-sample host costs that every backend pays, each against what it replaced, side by side in one
process (best of 5 runs of 2,000 calls each; the CPU as it is):

    python benchmarks/bench_host.py --jpegs DIR    # e.g. the 500x375 JPEGs of bench_gpu.py --make-jpegs

- reading a source file, as the backends do (``read_file(os.path.join(root, rel))``: one raw
  ``readinto``) against what they did before (``np.fromfile(Path(root) / rel)``);
- each image task's plan (``builder.plan_sample``), for the record.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from pretextgen.builder import plan_sample
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jpegs", required=True, help="a folder of JPEGs")
    args = ap.parse_args(argv)
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
