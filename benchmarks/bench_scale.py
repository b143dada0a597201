"""Samples/s of one build run plainly, as a job array, and on 1 and 2 local Ray workers, side by side.

    python benchmarks/bench_scale.py                           # jigsaw, 2000 samples, OpenCV
    python benchmarks/bench_scale.py --task rotation --samples 4000 --source ../shared/data/images

Every run builds the same shards (checked: byte-identical to the plain build). The plain build
uses ``--workers`` threads in this process (and one thread, for the per-worker figures); the job
array plans (``plan``), runs ``--workers`` worker processes of one thread each side by side, as a
cluster would, then ``merge``; each Ray run starts a local instance with that many CPUs (its start-up is
timed apart) and one thread per task. The scan cache is warmed first, so no run pays for the scan.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pretextgen.builder import build, plan
from pretextgen.jobs import merge
from pretextgen.parallel import default_workers


def shard_bytes(out: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(out.glob("*.tar"))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="jigsaw")
    ap.add_argument("--source", help="image folder (default: scikit-image's photos)")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--shard-mb", type=float, default=4, help="small shards: Ray schedules one task per shard")
    ap.add_argument("--backend", default="opencv")
    ap.add_argument("--workers", type=int, default=min(2, default_workers()))
    ap.add_argument("--json", help="write the raw numbers here")
    args = ap.parse_args(argv)
    opts = {"samples": args.samples, "backend": args.backend, "shard_bytes": int(args.shard_mb * 2**20),
            "progress": False}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build(args.task, tmp / "warm", source=args.source, **{**opts, "samples": 8})  # the scan cache

        t0 = time.perf_counter()
        m = build(args.task, tmp / "plain", source=args.source, workers=args.workers, **opts)
        plain = time.perf_counter() - t0
        reference = shard_bytes(tmp / "plain")
        rows.append({"run": f"plain build, {args.workers} threads", "seconds": plain, "start_s": 0.0})
        print(f"{m['shards_total']} shards of {m['samples_per_shard']} samples", file=sys.stderr)
        t0 = time.perf_counter()
        build(args.task, tmp / "plain1", source=args.source, workers=1, **opts)
        rows.append({"run": "plain build, 1 thread", "seconds": time.perf_counter() - t0, "start_s": 0.0})

        # A job array: the plan step, then --workers processes of one thread each, side by side, then merge.
        out = tmp / "array"
        t0 = time.perf_counter()
        plan(args.task, out, source=args.source, **opts)
        planned = time.perf_counter() - t0
        cmd = [sys.executable, "-m", "pretextgen.cli", "build", "--out", str(out), "--workers", "1", "--no-progress",
               "--num-workers", str(args.workers)]
        procs = [subprocess.Popen(cmd + ["--worker-index", str(k)], stdout=subprocess.DEVNULL)
                 for k in range(args.workers)]
        for p in procs:
            assert p.wait() == 0
        merge(out)
        rows.append({"run": f"job array: plan-sources, {args.workers} workers x 1 thread, merge",
                     "seconds": time.perf_counter() - t0, "start_s": 0.0, "plan_s": planned})
        assert shard_bytes(out) == reference

        import ray

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        for cpus in (1, 2):
            t0 = time.perf_counter()
            ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=100 * 2**20,
                     _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
            started = time.perf_counter() - t0
            t0 = time.perf_counter()
            build(args.task, tmp / f"ray{cpus}", source=args.source, ray="local", ray_cpus=1, workers=1, **opts)
            rows.append({"run": f"Ray, {cpus} local worker(s) x 1 thread", "seconds": time.perf_counter() - t0,
                         "start_s": started})
            ray.shutdown()
            assert shard_bytes(tmp / f"ray{cpus}") == reference

    print(f"| run | s | samples/s | vs plain | Ray start-up s |\n|---|---|---|---|---|")
    for r in rows:
        r["rate"] = args.samples / r["seconds"]
        print(f"| {r['run']} | {r['seconds']:.1f} | {r['rate']:,.0f} | {plain / r['seconds']:.2f}x | "
              f"{r['start_s']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
