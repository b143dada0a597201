"""Samples/s that a training loop gets from ``pretextgen.loader``: from built shards and live (no
shards), with 0, 1 and 2 DataLoader workers, batches of 64 collated to torch tensors.

    python benchmarks/bench_loader.py                        # jigsaw and rotation, 2048 samples
    python benchmarks/bench_loader.py --tasks jigsaw --samples 4096 --json loader.json

Each figure is a whole epoch as the loop sees it, worker start-up included (workers restart every
epoch), the best of ``--repeats`` epochs after one warm-up epoch. Live mode runs the OpenCV backend
inside each worker, and DALI (CPU, and GPU when there is one) in the main process.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from pretextgen.backends import gpu_count
from pretextgen.builder import build
from pretextgen.loader import make_live_loader, make_loader


def epoch_rate(loader, repeats: int) -> float:
    """Best samples/s over ``repeats`` full epochs, after one warm-up epoch."""
    best = 0.0
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        n = sum(len(b["label"]) for b in loader)
        rate = n / (time.perf_counter() - t0)
        if r:
            best = max(best, rate)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default="jigsaw,rotation")
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--live-samples", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", help="write the raw numbers here")
    args = ap.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            out = Path(tmp) / task
            build(task, out, samples=args.samples, seed=0, backend="opencv", progress=False)
            mb = sum(p.stat().st_size for p in out.glob("*.tar")) / 2**20
            for workers in (0, 1, 2):
                loader = make_loader(out, batch_size=args.batch, num_workers=workers)
                rows.append({"task": task, "mode": "shards", "backend": "-", "workers": workers,
                             "samples_per_s": epoch_rate(loader, args.repeats), "shard_mb": round(mb, 1)})
                print(rows[-1], file=sys.stderr)
            live = [("opencv", "cpu", w) for w in (0, 1, 2)] + [("dali", "cpu", 0)]
            if gpu_count() > 0:
                live.append(("dali", "gpu", 0))
            for backend, device, workers in live:
                loader = make_live_loader(task, samples=args.live_samples, batch_size=args.batch, num_workers=workers,
                                          backend=backend, device=device)
                rows.append({"task": task, "mode": "live", "backend": f"{backend}/{device}", "workers": workers,
                             "samples_per_s": epoch_rate(loader, args.repeats)})
                print(rows[-1], file=sys.stderr)

    print("| task | mode | backend | DataLoader workers | samples/s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['mode']} | {r['backend']} | {r['workers']} | {r['samples_per_s']:,.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
