"""How well frame_order runs rank order on clips they never saw, whatever mix they trained on: each
run's accuracy, AUC of its "ordered" probability and recall per class, on one balanced build of
the clips (``ordered_fraction`` 0.5, the first run's other sample params, seed 0):

    python benchmarks/bench_order_mix.py --clips CLIPS_DIR RUN_DIR [RUN_DIR ...]

A run trained on a quarter ordered tuples has a prior that shifts its plain accuracy on balanced
tuples; AUC reads the ranking without that threshold (BENCHMARKS.md, frame_order's sample mix).
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch

from pretextgen import build
from pretextgen.config import params_to_dict
from pretextgen.loader import make_loader
from pretextgen.training.checkpoint import load_run


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """The probability that an ordered tuple scores above a shuffled one (ties count one half)."""
    pos, neg = scores[labels == 1][:, None], scores[labels == 0][None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR")
    ap.add_argument("--clips", required=True, metavar="CLIPS_DIR")
    ap.add_argument("--samples", type=int, default=512)
    args = ap.parse_args(argv)
    runs = [load_run(r) for r in args.runs]
    with tempfile.TemporaryDirectory(prefix="order-mix-") as tmp:
        build("frame_order", tmp, source=args.clips, samples=args.samples, seed=0, progress=False,
              overrides={**params_to_dict(runs[0][1]), "ordered_fraction": 0.5})
        batches = list(make_loader(tmp, batch_size=64, num_workers=0, shuffle_buffer=0))
    labels = torch.cat([b["label"] for b in batches]).numpy()
    print(f"{len(labels)} balanced samples from {args.clips}")
    print("run                         accuracy   AUC    recall ordered / shuffled")
    for path, (_, _, _, recipe) in zip(args.runs, runs):
        with torch.no_grad():
            p = torch.cat([torch.softmax(recipe.logits(b["frames"]), 1)[:, 1] for b in batches]).numpy()
        said = p > 0.5
        print(f"{path:<27} {100 * (said == (labels == 1)).mean():6.1f}%  {auc(p, labels):.3f}  "
              f"{100 * said[labels == 1].mean():5.1f}% / {100 * (~said[labels == 0]).mean():5.1f}%")


if __name__ == "__main__":
    main()
