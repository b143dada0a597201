"""``pretextgen eval --clips DIR``: a frame_order or track trunk's pretext accuracy on clips its build
never saw, beside the random trunks of its recipe and a low-level baseline that needs no learning.

The clips are built into a temporary folder with the run's own sample params (``samples`` of them,
seed ``seed``); track's build turns the appearance check off (``min_ncc`` = -1), so that the
positives are not filtered by the very NCC the baseline scores with; frame_order's is balanced
(``ordered_fraction`` = 0.5), so that chance is 50% whatever mix the run trained on. Each trunk is
scored by its recipe's own ``loss`` accuracy, frozen (eval mode).

Baselines (a trunk no better than these has learned the low-level cue):

- frame_order, **frame differences**: call a tuple ordered when its outer frames differ most (mean
  absolute difference of the gray frames): in an ordered (b, c, d) the middle frame lies between
  the other two, in a shuffled (b, a, d) or (b, e, d) it lies outside them.
- track, **NCC**: the query is nearer its positive when their normalized cross-correlation (gray,
  32 px, as the build's appearance check) beats the query's with the negative.
"""
from __future__ import annotations

import tempfile

import numpy as np

from ..errors import PretextgenError

from ..tasks import frame_order, track

TASKS = ("frame_order", "track")
# what each label means, for the accuracy by label (track's label is the stored negative's kind)
LABELS = {"frame_order": frame_order.LABEL_NAMES, "track": tuple(f"negative: {k}" for k in track.KIND_NAMES)}


def _gray(x: np.ndarray) -> np.ndarray:
    """(..., 3, H, W) uint8 RGB -> (..., H, W) float32 luma."""
    x = x.astype(np.float32)
    return 0.299 * x[..., 0, :, :] + 0.587 * x[..., 1, :, :] + 0.114 * x[..., 2, :, :]


def frame_difference_correct(frames: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(B,) bool: the frame-difference rule's verdict on (B, 3, 3, H, W) frames equals the label."""
    g = _gray(frames)
    d = lambda i, j: np.abs(g[:, i] - g[:, j]).mean(axis=(1, 2))  # noqa: E731
    ordered = d(0, 2) > np.maximum(d(0, 1), d(1, 2))
    return ordered == (labels == 1)


def ncc_correct(patches: np.ndarray) -> np.ndarray:
    """(B,) bool: NCC(query, positive) > NCC(query, negative) for (B, 3, 3, H, W) patches."""
    import cv2

    from ..video.track import NCC_SIDE, ncc

    out = []
    for q, p, n in _gray(patches):
        q, p, n = (cv2.resize(a, (NCC_SIDE, NCC_SIDE), interpolation=cv2.INTER_AREA) for a in (q, p, n))
        out.append(ncc(q, p) > ncc(q, n))
    return np.array(out, bool)


def evaluate_clips(checkpoint, clips, samples: int = 512, seed: int = 0, device: str = "cpu", progress=None,
                   batch_size: int = 64) -> dict:
    """The JSON's ``clips`` dict: {"pretext", "random", "random_seeds", "baseline": accuracies in [0, 1],
    "baseline_rule", "accuracy" (what the recipe's accuracy measures), "by_label" (the three accuracies
    and the count per label: frame_order's classes, track's negative kinds), "samples", "skipped",
    "clips", "params_changed"}."""
    import torch

    from ..builder import build
    from ..config import params_to_dict
    from ..loader import make_loader
    from ..progress import Progress
    from .probe import freeze, load_with_random_twins
    from .trainer import to_device

    if samples < 1:
        raise PretextgenError("--clips-samples: must be at least 1")
    task, recipe, twins, seeds = load_with_random_twins(checkpoint, seed, device)
    if task.name not in TASKS:
        raise PretextgenError(f"--clips scores frame_order and track on unseen clips; a {task.name} trunk is read "
                              f"with --data (an image probe) or --davis")
    values = params_to_dict(recipe.params)
    changed = {"min_ncc": -1.0} if task.name == "track" else {"ordered_fraction": 0.5}
    changed = {k: v for k, v in changed.items() if values.get(k) != v}
    trunks = [recipe, *twins]
    for module in trunks:
        freeze(module)
    names = LABELS[task.name]
    right = np.zeros((len(names), len(trunks) + 1))  # per label: each trunk, then the baseline
    count = np.zeros(len(names), int)
    with tempfile.TemporaryDirectory(prefix="pretextgen-clips-") as tmp:
        m = build(task.name, tmp, source=str(clips), samples=samples, seed=seed, overrides={**values, **changed},
                  progress=progress)
        bar = Progress(samples, f"eval {task.name} on unseen clips", "samples", progress)
        with torch.no_grad():
            for batch in make_loader(tmp, batch_size=batch_size, num_workers=0, shuffle_buffer=0):
                labels = batch["label"].numpy()
                if task.name == "frame_order":
                    base = frame_difference_correct(batch["frames"].numpy(), labels)
                else:
                    base = ncc_correct(batch["patches"].numpy())
                for k in np.unique(labels):  # each sample's accuracy is its own, so a label's part is scored alone
                    keep = labels == k
                    part = to_device(_rows(batch, keep), device)
                    right[k, :-1] += [float(t.loss(part)[1]["accuracy"]) * keep.sum() for t in trunks]
                    right[k, -1] += base[keep].sum()
                    count[k] += keep.sum()
                bar.update(len(labels))
        bar.close()
    n = int(count.sum())
    acc = right.sum(0) / n
    rule = ("frame differences: ordered when the outer frames differ most" if task.name == "frame_order" else
            "NCC: the query correlates more with its positive than with its negative (gray, 32 px)")
    by_label = {names[k]: {"samples": int(count[k]), "pretext": round(float(right[k, 0] / count[k]), 4),
                           "random": round(float(right[k, 1:-1].mean() / count[k]), 4),
                           "baseline": round(float(right[k, -1] / count[k]), 4)}
                for k in range(len(names)) if count[k]}
    return {"task": task.name, "pretext": round(float(acc[0]), 4),
            "random": round(float(acc[1:-1].mean()), 4),
            "random_seeds": [{"seed": s, "accuracy": round(float(a), 4)} for s, a in zip(seeds, acc[1:-1])],
            "baseline": round(float(acc[-1]), 4), "baseline_rule": rule, "accuracy": recipe.accuracy,
            "by_label": by_label, "samples": n, "skipped": len(m.get("skipped", [])), "clips": str(clips),
            "params_changed": changed}


def _rows(batch: dict, keep: np.ndarray) -> dict:
    """The samples of a loader batch where ``keep`` is true (tensors and per-sample lists alike)."""
    import torch

    idx = np.flatnonzero(keep)
    return {k: (v[torch.from_numpy(idx)] if isinstance(v, torch.Tensor) else [v[i] for i in idx]
                if isinstance(v, list) else v) for k, v in batch.items()}


def clips_report(d: dict) -> list[str]:
    """The ``clips`` dict as printed lines."""
    changed = "".join(f", {k}={v:g}" for k, v in d["params_changed"].items())
    return [f"{d['task']} on unseen clips ({d['samples']} samples from {d['clips']}, the run's sample params{changed}):"
            f" {d['accuracy']}",
            f"  pretext trunk  {100 * d['pretext']:5.1f}%",
            f"  random trunks  {100 * d['random']:5.1f}%  (mean of {len(d['random_seeds'])})",
            f"  baseline       {100 * d['baseline']:5.1f}%  ({d['baseline_rule']})",
            "  by label (samples): pretext / random / baseline"] + [
            f"    {name} ({r['samples']}): {100 * r['pretext']:.1f} / {100 * r['random']:.1f} / {100 * r['baseline']:.1f}%"
            for name, r in d.get("by_label", {}).items()]
