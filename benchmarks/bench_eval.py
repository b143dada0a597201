"""What the random baseline's seeds cost an evaluation: ``evaluate`` with one random trunk (the
protocol before it became the mean of ``RANDOM_SEEDS``) against ``RANDOM_SEEDS`` trunks, in one
process, alternated, best of ``--repeats``:

    python benchmarks/bench_eval.py --checkpoint RUN_DIR --data LABELED_DIR

The seeds share each labeled image's decode and conversion, and the L2 strength chosen on the first
seed's features (``probe.linear_probe(l2=...)``); the first seed's row is the one-trunk protocol's.
"""
from __future__ import annotations

import argparse
import time

import torch

import pretextgen.training.probe as probe


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = probe.RANDOM_SEEDS
    best = {1: float("inf"), seeds: float("inf")}
    rows = {}
    for _ in range(args.repeats):
        for n in best:
            probe.RANDOM_SEEDS = n
            t = time.perf_counter()
            rows[n] = probe.evaluate(args.checkpoint, args.data, progress=False)
            best[n] = min(best[n], time.perf_counter() - t)
    probe.RANDOM_SEEDS = seeds
    one, many = rows[1], rows[seeds]
    assert many["random_seeds"][0]["stages"] == one["random_seeds"][0]["stages"]  # the first seed is the old row
    print(f"evaluate on {one['train_images']} train / {one['test_images']} test images: one random trunk "
          f"{best[1]:.1f} s, {seeds} random trunks {best[seeds]:.1f} s ({best[seeds] / best[1]:.2f}x)")
    b = many["best"]
    print(f"best stage {b['stage']}: gain {b['gain_points']:+.2f} points, interval {b['gain_ci_points']}; "
          f"random seeds' best-stage linear: "
          + ", ".join(f"{100 * s['stages'][b['random_best_stage']]['linear']:.1f}" for s in many["random_seeds"]))


if __name__ == "__main__":
    main()
