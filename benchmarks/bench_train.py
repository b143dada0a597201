"""Training throughput at a preset: samples/s from a build's shards against live samples (made on the
fly by the OpenCV backend), side by side in one process, and the share of each run's wall time the
training loop spent waiting for its next batch (``data_wait`` in metrics.csv: near 0 when the loader
keeps the trainer busy).

    python benchmarks/bench_train.py --tasks rotation jigsaw --source DIR --samples 4096

Prints a Markdown table. Each run trains one epoch from a fresh initialisation (same seed), so the
two rows of a task differ only by where the samples come from.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pretextgen
from pretextgen.registry import get_task, list_tasks


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="*", help="default: every image task with a trainer")
    ap.add_argument("--source", help="photos (default: scikit-image's)")
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--preset", default="cpu")
    args = ap.parse_args(argv)
    tasks = args.tasks or [n for n in list_tasks() if get_task(n).trainer is not None]
    print(f"source: {args.source or 'skimage:data'}; {args.samples} samples, one epoch per run, preset {args.preset}")
    print("\n| task | from | samples/s | x shards | data wait |\n|---|---|---:|---:|---:|")
    for name in tasks:
        spec = get_task(name).trainer
        sample_params = dict(spec.samples.get(args.preset, {}))
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            pretextgen.build(name, d / "build", source=args.source, samples=args.samples, overrides=sample_params,
                             progress=False)
            shards = pretextgen.train(data=d / "build", out=d / "from_shards", preset=args.preset, epochs=1,
                                      progress=False)
            live = pretextgen.train(task=name, source=args.source, samples=args.samples, out=d / "live",
                                    preset=args.preset, epochs=1, progress=False,
                                    overrides=[f"sample.{k}={v}" for k, v in sample_params.items()])
        for label, r in (("shards", shards), ("live", live)):
            print(f"| {name} | {label} | {r['samples_per_s']:,.0f} | {r['samples_per_s'] / shards['samples_per_s']:.2f} "
                  f"| {100 * r['data_wait']:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
