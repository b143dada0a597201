"""``pretextgen eval``: did the pretext task teach the trunk anything? Linear probe and kNN top-1 on
labeled images, for every stage of the trained trunk, beside the same for a randomly initialised
trunk of the same recipe and for raw pixels.

Protocol (stated in the printed table and the JSON):

- ``LABELED_DIR/train/<class>/*`` and ``LABELED_DIR/test/<class>/*`` (or ``val/``), searched
  recursively; the classes are train's folder names, sorted. Images are decoded with OpenCV as RGB
  uint8; a non-square image is center-cropped to a square first, then resized to the protocol's size
  or the ``size`` asked (area filter when shrinking, bilinear when enlarging). The protocol
  (``Recipe.eval_protocols``, default its first) is ``whole`` (the image at that size: for jigsaw
  and context the scale their patches were cut at, not the patch size) or, for patch recipes,
  ``grid`` (the training grid's patches cut from it, each converted, features averaged).
- One converted input for all three feature sources: ``x = recipe.eval_input(images)`` (a trunk
  trained on L sees L; its random twin and the raw-pixel baseline read the same ``x``).
- Both recipes in eval mode with frozen parameters under ``torch.no_grad()``: batch-norm statistics
  do not move (checked once the features are extracted: an error, not a silent drift, if they did).
- Per stage: maps average-pooled to ``POOL`` x ``POOL`` (raw pixels to ``PIXEL_POOL`` x
  ``PIXEL_POOL``), token sequences averaged, flattened, standardised with train's mean and std.
- Linear probe: multinomial logistic regression (mean cross-entropy + ``l2``/2 ||W||^2), full-batch
  L-BFGS with a strong-Wolfe line search. ``l2`` is chosen from ``L2_GRID`` on a stratified 80/20
  split of train (fixed seed; test is never seen: held-out top-1, ties by held-out cross-entropy),
  fitting the grid from strong to weak, each fit warm-started from the previous one and given
  ``SELECT_ITER`` iterations (enough to rank them: on CIFAR-10 features of a random small trunk, the
  strengths chosen and the accuracies were those of a selection given 500); then the probe is refit on all of train to convergence (the
  gradient's largest entry below ``GRAD_TOL``, or the loss no longer changing in float32; at most
  ``MAX_ITER`` iterations, and a note names any fit that reached it); top-1 on test.
- kNN: cosine similarity on the same standardised features, the ``K`` nearest train images vote
  with weight exp(similarity / ``TEMPERATURE``) (InstDisc, solo-learn's ``WeightedKNNClassifier``).
- The random baseline: ``RANDOM_SEEDS`` trunks of the recipe, each initialised from its own seed,
  probed alike (the strength ``l2`` chosen once per stage, on the first seed's features, and reused
  by the others); ``random`` is their mean, ``random_seeds`` each one's result.
- Gains (pretext minus the random seeds' mean, linear top-1) carry a ``CONFIDENCE`` interval from a
  paired bootstrap over test images (``BOOTSTRAP`` resamples: the same images score both sides).
- ``alignment_uniformity``: Wang & Isola's two measures of the last stage's embedding (pooled,
  L2-normalised) on ``MEASURE_IMAGES`` test images, for the pretext trunk and the random seeds'
  mean: alignment between two augmented views of each image (``augmented_views``), uniformity of
  the first views. Lower is better for both.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import textwrap
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import PretextgenError

log = logging.getLogger("pretextgen")

POOL = 4  # trunk stages: average-pooled to 4x4 before flattening
PIXEL_POOL = 8  # raw pixels (the converted input): 8x8
K, TEMPERATURE = 20, 0.07
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
HOLDOUT = 0.2  # share of each train class held out to choose l2
SELECT_ITER, MAX_ITER, GRAD_TOL = 100, 1000, 1e-4
RANDOM_SEED = 12345  # the random trunks' initialisations: RANDOM_SEED + seed + 100 k, k < RANDOM_SEEDS
RANDOM_SEEDS = 3  # random trunks of one recipe differ by a few points: their mean is the baseline
BOOTSTRAP, CONFIDENCE = 2000, 0.95  # the gains' paired bootstrap over test images
SHORTCUT_ACCURACY = 0.95
# Alignment and uniformity (Wang & Isola 2020) of the last stage, pooled and L2-normalised, on up to
# MEASURE_IMAGES test images, two augmented views each: a crop of MEASURE_SCALE of the area, a coin
# flip, gain and bias jitter; drawn from (seed, image index).
MEASURE_IMAGES, MEASURE_SCALE, MEASURE_JITTER = 1000, (0.4, 1.0), (0.2, 20.0)
DECIMALS = 4  # accuracies in the JSON: 0.01 of a point, finer than a test set of 10,000 images resolves
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".gif", ".jp2"}
PROBE = (f"multinomial logistic regression, full-batch L-BFGS (strong Wolfe), L2 from "
         f"{{{', '.join(f'{v:g}' for v in L2_GRID)}}} chosen on a stratified {round(100 * (1 - HOLDOUT))}/"
         f"{round(100 * HOLDOUT)} split of train ({SELECT_ITER} iterations each, warm-started), then refit on all "
         f"of train to convergence (max|grad| < {GRAD_TOL:g} or no change; at most {MAX_ITER} iterations)")


# ---------------------------------------------------------------------------------------- labeled data

def labeled_split(data) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]], str]:
    """(classes, train [(path, class id)], test [(path, class id)], test folder name) of LABELED_DIR.
    One-line errors for a missing folder, no train/ or test|val/, fewer than 2 classes, a train class
    without images, a test class that train lacks, an empty test set."""
    root = Path(data)
    if not root.is_dir():
        raise PretextgenError(f"labeled folder {root} does not exist")
    test_name = next((n for n in ("test", "val") if (root / n).is_dir()), None)
    if not (root / "train").is_dir() or test_name is None:
        raise PretextgenError(f"{root} must hold train/<class>/ and test/<class>/ (or val/<class>/) folders of "
                              f"labeled images; it has: {', '.join(sorted(p.name for p in root.iterdir())) or 'nothing'}")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise PretextgenError(f"{root / 'train'} has {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); "
                              "a probe needs at least 2: one folder of images per class")
    test_classes = sorted(p.name for p in (root / test_name).iterdir() if p.is_dir() and not p.name.startswith("."))
    extra = [c for c in test_classes if c not in classes]
    if extra:
        raise PretextgenError(f"{root / test_name} has class {extra[0]!r}, which {root / 'train'} lacks")

    def images(folder: Path) -> list[str]:
        out = []
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            out += [os.path.join(dirpath, f) for f in sorted(filenames)
                    if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTS]
        return out

    train, test = [], []
    for i, c in enumerate(classes):
        files = images(root / "train" / c)
        if not files:
            raise PretextgenError(f"{root / 'train' / c} holds no images ({', '.join(sorted(IMAGE_EXTS))})")
        train += [(f, i) for f in files]
        if (root / test_name / c).is_dir():
            test += [(f, i) for f in images(root / test_name / c)]
    if not test:
        raise PretextgenError(f"{root / test_name} holds no images in the class folders {', '.join(classes)}")
    return classes, train, test, test_name


def load_square(path: str, size: int) -> np.ndarray:
    """The image at ``path`` as size x size x 3 RGB uint8: decoded with OpenCV (gray replicated,
    alpha composited on black, 16-bit scaled; PIL for what OpenCV cannot read), center-cropped to a
    square, then resized (area filter when shrinking, bilinear when enlarging)."""
    import cv2

    from ..sources import Source, load_rgb

    jpeg = Path(path).suffix.lower() in (".jpg", ".jpeg")
    # host_decode=False: OpenCV's IMREAD_COLOR, EXIF orientation applied; True: any other file, decoded
    # unchanged then normalised by load_rgb.
    rgb = load_rgb(Path(path).parent, Source(Path(path).name, 0, 0, "JPEG" if jpeg else "other", "", not jpeg))
    h, w = rgb.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    rgb = rgb[y0:y0 + s, x0:x0 + s]
    if s != size:
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_LINEAR)
    return np.ascontiguousarray(rgb)


def _load_batch(pool: ThreadPoolExecutor, items: list[tuple[str, int]], size: int):
    """(uint8 (B, 3, size, size) array, labels, unreadable [(path, why)])."""

    def one(item):
        try:
            return load_square(item[0], size), None
        except Exception as e:  # noqa: BLE001 - a damaged or non-image file: skipped and counted
            return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"

    images, labels, bad = [], [], []
    for (path, label), (img, why) in zip(items, pool.map(one, items)):
        if img is None:
            bad.append((path, why))
        else:
            images.append(img)
            labels.append(label)
    arr = np.stack(images).transpose(0, 3, 1, 2) if images else np.zeros((0, 3, size, size), np.uint8)
    return np.ascontiguousarray(arr), labels, bad


# ---------------------------------------------------------------------------------------- features

def freeze(recipe):
    """``recipe`` in eval mode with every parameter frozen (batch norm uses its running statistics and
    never updates them)."""
    recipe.eval()
    for p in recipe.parameters():
        p.requires_grad_(False)
    return recipe


def bn_state(module) -> dict:
    """Copies of every batch-norm buffer (running mean, var, batches tracked) of ``module``."""
    from torch import nn

    return {f"{name}.{b}": getattr(m, b).detach().clone()
            for name, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for b in ("running_mean", "running_var", "num_batches_tracked") if getattr(m, b, None) is not None}


def pool_flat(t, side: int):
    """A (B, C, h, w) map average-pooled to at most side x side, a (B, N, D) token sequence averaged
    over tokens, a (B, D) vector as it is; flattened to (B, F) float32 on the CPU."""
    import torch.nn.functional as F

    if t.ndim == 4:
        t = F.adaptive_avg_pool2d(t.float(), (min(side, t.shape[2]), min(side, t.shape[3])))
    elif t.ndim == 3:
        t = t.float().mean(dim=1)
    elif t.ndim != 2:
        raise ValueError(f"eval_features gave a tensor of shape {tuple(t.shape)}; expected (B, C, h, w), (B, N, D) or (B, D)")
    return t.reshape(t.shape[0], -1).float().cpu()


def _input_tensors(x) -> list:
    if isinstance(x, dict):
        return [v for v in x.values()]
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def extract(recipe, x) -> "OrderedDict[str, object]":
    """{stage: pooled, flattened features} of a frozen ``recipe`` for its converted input ``x``, under
    ``torch.no_grad()``, in eval mode: batch-norm statistics are not touched."""
    import torch

    with torch.no_grad():
        return OrderedDict((name, pool_flat(t, POOL)) for name, t in freeze(recipe).eval_features(x).items())


def pixel_features(x):
    """The converted input itself (every tensor of it), average-pooled to PIXEL_POOL x PIXEL_POOL."""
    import torch

    return torch.cat([pool_flat(t, PIXEL_POOL) for t in _input_tensors(x)], dim=1)


def views(images, protocol: dict) -> list:
    """What one protocol (``Recipe.eval_protocols``) shows the trunk of images at its size: the
    images themselves, or the grid's patches, each a (B, 3, p, p) batch; with ``"channels":
    "each"`` every one of them three times, one colour channel kept and the other two set to its
    mean (a trunk trained on patches that kept one channel sees what it learned on)."""
    if "cells" in protocol:
        n, p, step, o = protocol["cells"], protocol["patch"], protocol["step"], protocol["origin"]
        shown = [images[:, :, o + i * step:o + i * step + p, o + j * step:o + j * step + p]
                 for i in range(n) for j in range(n)]
    else:
        shown = [images]
    if protocol.get("channels") != "each":
        return shown
    out = []
    for view in shown:
        for c in range(view.shape[1]):
            kept = view[:, c:c + 1]
            flat = kept.float().mean(dim=(2, 3), keepdim=True).round().to(view.dtype).expand_as(view).clone()
            flat[:, c:c + 1] = kept
            out.append(flat)
    return out


def features(recipe, twins, items, size, device: str, batch_size: int, bar=None, workers: int = 2):
    """({source: {stage: (N, F)}}, labels (N,), unreadable files) for ``items`` streamed in batches:
    each image decoded once for every source; sources "pretext", "random0".. (one per trunk in
    ``twins``) and "pixels" (one stage, "pixels"). ``size``: an int (whole images at that side) or a
    protocol dict (``views``: a grid's patches each converted, features averaged over them). Only
    pooled features are kept."""
    import torch

    protocol = {"size": size} if isinstance(size, int) else size
    size = protocol["size"]
    sources = [("pretext", recipe), *((f"random{k}", twin) for k, twin in enumerate(twins))]
    out = {**{name: OrderedDict() for name, _ in sources}, "pixels": OrderedDict(pixels=[])}
    labels, unreadable = [], []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(items), batch_size):
            arr, lab, bad = _load_batch(pool, items[start:start + batch_size], size)
            unreadable += bad
            if len(lab):
                shown = views(torch.from_numpy(arr).to(device), protocol)
                summed = {}
                for view in shown:  # every source sees the same views; their features are averaged
                    with torch.no_grad():
                        x = recipe.eval_input(view)
                    for name, source in sources:
                        for stage, f in extract(source, x).items():
                            summed[name, stage] = summed.get((name, stage), 0) + f
                    summed["pixels", "pixels"] = summed.get(("pixels", "pixels"), 0) + pixel_features(x)
                for (name, stage), f in summed.items():
                    out[name].setdefault(stage, []).append(f / len(shown))
                labels += lab
            if bar is not None:
                bar.update(len(items[start:start + batch_size]))
    feats = {name: OrderedDict((s, torch.cat(v)) for s, v in stages.items()) for name, stages in out.items()}
    return feats, torch.tensor(labels, dtype=torch.int64), unreadable


def augmented_views(image: np.ndarray, rng) -> list[np.ndarray]:
    """Two views of one RGB uint8 image (H, W, 3), each a random crop of ``MEASURE_SCALE`` of its
    area resized back, flipped with probability 1/2, with a gain and bias of ``MEASURE_JITTER``."""
    import cv2

    h, w = image.shape[:2]
    out = []
    for _ in range(2):
        scale = np.sqrt(rng.uniform(*MEASURE_SCALE))
        ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        v = cv2.resize(image[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            v = v[:, ::-1]
        gain, bias = rng.uniform(1 - MEASURE_JITTER[0], 1 + MEASURE_JITTER[0]), rng.uniform(-MEASURE_JITTER[1], MEASURE_JITTER[1])
        out.append(np.clip(v.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8))
    return out


def embedding(recipe, images, protocol: dict):
    """(B, D) L2-normalised: the last stage of a frozen ``recipe`` for uint8 ``images`` (B, 3, s, s),
    average-pooled (over the protocol's patches too)."""
    import torch
    import torch.nn.functional as F

    total = 0
    shown = views(images, protocol)
    with torch.no_grad():
        for view in shown:
            last = next(reversed(freeze(recipe).eval_features(recipe.eval_input(view)).values()))
            total = total + pool_flat(last, 1)
    return F.normalize(total / len(shown), dim=1)


def alignment_uniformity(recipe, twins, items, protocol: dict, device: str, seed: int = 0,
                         batch_size: int = 256) -> dict:
    """{"pretext": {"alignment", "uniformity"}, "random": the seeds' mean, "images": N} on the first
    ``MEASURE_IMAGES`` of ``items`` (see the module docstring)."""
    import torch

    from .losses import alignment, uniformity

    items = items[:MEASURE_IMAGES]
    size = protocol["size"]
    pairs = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(items), batch_size):
            arr, _, _ = _load_batch(pool, items[start:start + batch_size], size)
            for k, img in enumerate(arr.transpose(0, 2, 3, 1)):
                pairs.append(augmented_views(img, np.random.default_rng([seed, start + k])))
    out = {}
    for name, module in [("pretext", recipe), *((f"random{k}", t) for k, t in enumerate(twins))]:
        e = [torch.cat([embedding(module, torch.from_numpy(np.stack([p[v] for p in pairs[i:i + batch_size]])
                                                           .transpose(0, 3, 1, 2).copy()).to(device), protocol)
                        for i in range(0, len(pairs), batch_size)]) for v in (0, 1)]
        out[name] = {"alignment": float(alignment(e[0], e[1])), "uniformity": float(uniformity(e[0]))}
    randoms = [out[f"random{k}"] for k in range(len(twins))]
    return {"pretext": {k: round(v, DECIMALS) for k, v in out["pretext"].items()},
            "random": {k: round(float(np.mean([r[k] for r in randoms])), DECIMALS) for k in ("alignment", "uniformity")},
            "random_seeds": [{k: round(v, DECIMALS) for k, v in r.items()} for r in randoms], "images": len(pairs)}


# ---------------------------------------------------------------------------------------- probes

def standardise(train, *others):
    """``train`` and ``others`` centred and scaled by train's per-feature mean and std (a feature
    constant on train is only centred, as scikit-learn's StandardScaler does)."""
    mean = train.mean(dim=0)
    std = train.std(dim=0, unbiased=False)
    std = std.where(std > 1e-6 * std.max().clamp_min(1e-12), std.new_ones(()))
    return tuple((t - mean) / std for t in (train, *others))


def fit_logreg(x, y, num_classes: int, l2: float, init=None, max_iter: int = MAX_ITER, grad_tol: float = GRAD_TOL):
    """(W (F, C), b (C,), converged) minimising mean cross-entropy + l2/2 ||W||^2 with full-batch
    L-BFGS (strong-Wolfe line search) from ``init`` (zeros by default). ``converged``: it stopped by
    itself (the gradient's largest entry below ``grad_tol``, or the loss no longer changing in the
    features' precision), not at ``max_iter``."""
    import torch
    import torch.nn.functional as F

    W = (init[0].clone() if init is not None else x.new_zeros(x.shape[1], num_classes)).requires_grad_(True)
    b = (init[1].clone() if init is not None else x.new_zeros(num_classes)).requires_grad_(True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=max_iter, max_eval=4 * max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=grad_tol, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ W + b, y) + 0.5 * l2 * (W * W).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    state = opt.state[W]
    converged = state.get("n_iter", 0) < max_iter and state.get("func_evals", 0) < 4 * max_iter
    return W.detach(), b.detach(), converged


def _holdout(y, share: float, seed: int):
    """(fit indices, held-out indices): ``share`` of each class held out (at least one image of a class
    with two or more), drawn with a generator made from ``seed``."""
    import torch

    rng = np.random.default_rng([seed, 0x9E0B])
    labels = y.numpy()
    fit, held = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n = int(round(share * len(idx))) if len(idx) > 1 else 0
        n = max(n, 1) if len(idx) > 1 else 0
        held += idx[:n].tolist()
        fit += idx[n:].tolist()
    return torch.tensor(sorted(fit)), torch.tensor(sorted(held))


def linear_probe(train_x, train_y, test_x, test_y, num_classes: int, seed: int = 0, grid=L2_GRID,
                 l2: float | None = None) -> dict:
    """{"accuracy": top-1 on test, "correct": per test image (bool), "l2": the chosen strength,
    "converged": whether the final fit converged}. The strength is chosen on a stratified split of
    train, standardised by its fit part (held-out top-1, ties broken by held-out cross-entropy;
    SELECT_ITER iterations per strength), unless ``l2`` is given; the final probe is fit on all of
    train, standardised by train. ``test`` is read only to score it."""
    import torch.nn.functional as F

    fit, held = _holdout(train_y, HOLDOUT, seed)
    best_l2 = grid[len(grid) // 2] if l2 is None else l2
    if len(held) and l2 is None:
        xf, xh = standardise(train_x[fit], train_x[held])
        yf, yh = train_y[fit].to(xf.device), train_y[held].to(xf.device)
        best, init = None, None
        for l2 in sorted(grid, reverse=True):  # strong to weak: each fit starts from the previous optimum
            W, b, _ = fit_logreg(xf, yf, num_classes, l2, init, max_iter=SELECT_ITER)
            init = (W, b)
            logits = xh @ W + b
            # Held-out top-1 first; on a small held-out set many strengths tie, and its cross-entropy
            # tells them apart (then the stronger one).
            score = ((logits.argmax(1) == yh).float().mean().item(), -F.cross_entropy(logits, yh).item())
            if best is None or score > best:
                best, best_l2 = score, l2
    xt, xs = standardise(train_x, test_x)
    W, b, converged = fit_logreg(xt, train_y.to(xt.device), num_classes, best_l2)
    correct = (xs @ W + b).argmax(1).cpu() == test_y
    return {"accuracy": correct.float().mean().item(), "correct": correct, "l2": best_l2, "converged": converged}


def gain_interval(difference, seed: int = 0, resamples: int = BOOTSTRAP, confidence: float = CONFIDENCE):
    """The ``confidence`` interval of a mean over test images by a bootstrap of the images: for a gain,
    ``difference`` is per image (pretext correct minus the random seeds' mean correct), so both sides
    are scored on the same resampled images (a paired bootstrap). Fixed generator: the same interval
    every run."""
    d = np.asarray(difference, np.float64)
    rng = np.random.default_rng([seed, 0xB0075])
    means = np.concatenate([d[rng.integers(0, len(d), (min(200, resamples - s), len(d)))].mean(1)
                            for s in range(0, resamples, 200)])
    tail = 100 * (1 - confidence) / 2
    return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]


def knn_top1(train_x, train_y, test_x, test_y, num_classes: int, k: int = K, temperature: float = TEMPERATURE,
             chunk: int = 512) -> float:
    """Top-1 on test of the weighted kNN vote: cosine similarity, the k nearest train images each add
    exp(similarity / temperature) to their class (ties: the lowest class id)."""
    import torch
    import torch.nn.functional as F

    a = F.normalize(train_x, dim=1)
    ya = train_y.to(a.device)
    k = min(k, len(a))
    correct = 0
    for s in range(0, len(test_x), chunk):
        q = F.normalize(test_x[s:s + chunk], dim=1)
        sim, idx = (q @ a.T).topk(k, dim=1)
        votes = torch.zeros(len(q), num_classes, device=a.device, dtype=sim.dtype)
        votes.scatter_add_(1, ya[idx], (sim / temperature).exp())
        correct += (votes.argmax(1).cpu() == test_y[s:s + chunk]).sum().item()
    return correct / max(len(test_x), 1)


# ---------------------------------------------------------------------------------------- the run

def pretext_accuracy(run_dir) -> float | None:
    """The pretext accuracy of the run's last epoch that has one, from ``RUN_DIR/metrics.csv``: the
    ``accuracy`` of its ``epoch`` rows (the mean over an epoch; the trainer's ``kind`` column), the
    highest epoch's; None without a file or a value (tasks without an accuracy leave it empty)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return None
    found = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                acc, epoch = float((row.get("accuracy") or "").strip()), float(row.get("epoch") or 0)
            except ValueError:  # empty: no accuracy for this task
                continue
            if acc == acc:
                found.append((row.get("kind") or "epoch", epoch, acc))
    epochs = [(e, a) for k, e, a in found if k == "epoch"] or [(e, a) for _, e, a in found]
    return max(epochs, key=lambda ea: ea[0])[1] if epochs else None


def held_out_accuracy(checkpoint, data, batch_size: int = 256, max_samples: int | None = None) -> float | None:
    """The trained recipe's pretext accuracy (its loss's ``accuracy``, eval mode) on another build's
    samples, e.g. one made from photos the run never saw: far below the training accuracy, the run
    memorised its fixed build. None where the task reports no accuracy."""
    import torch

    from ..loader import make_loader
    from .checkpoint import load_run

    task, _, _, recipe = load_run(checkpoint)
    loader = make_loader(data, batch_size=batch_size, num_workers=0, shuffle_buffer=1)
    if loader.dataset.manifest["task"] != task.name:
        raise PretextgenError(f"{data} holds {loader.dataset.manifest['task']} samples, the checkpoint is {task.name}")
    hits, seen = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            n = len(batch["label"])
            _, metrics = recipe(batch)
            if "accuracy" not in metrics:
                return None
            hits, seen = hits + float(metrics["accuracy"]) * n, seen + n
            if max_samples is not None and seen >= max_samples:
                break
    return hits / max(seen, 1)


def _round(v):
    return None if v is None else round(float(v), DECIMALS)


def round_accuracies(result: dict) -> dict:
    """``result`` (``evaluate``'s dict) with every accuracy in it rounded to ``DECIMALS`` places: the
    stages' (the random seeds' each too) and the pixels' linear / kNN top-1, the pretext accuracy, the
    best stage's and the random trunk's top-1 in ``best``. Other numbers are left as they are."""
    out = dict(result)
    for name in ("pretext", "random"):
        out[name] = {stage: {k: _round(v) for k, v in scores.items()} for stage, scores in result.get(name, {}).items()}
    if "random_seeds" in result:
        out["random_seeds"] = [{**r, "stages": {stage: {k: _round(v) for k, v in scores.items()}
                                                for stage, scores in r["stages"].items()}}
                               for r in result["random_seeds"]]
    out["pixels"] = {k: _round(v) for k, v in result.get("pixels", {}).items()}
    out["pretext_accuracy"] = _round(result.get("pretext_accuracy"))
    if "best" in result:
        out["best"] = {**result["best"], **{k: _round(result["best"].get(k))
                                            for k in ("linear", "random_same_stage", "random_best")}}
    return out


def _best(stages: dict) -> tuple[str, float]:
    name = max(stages, key=lambda s: stages[s]["linear"])
    return name, stages[name]["linear"]


def shortcut(pretext_acc: float | None, gain_ci_points) -> bool:
    """The likely-shortcut flag: the pretext task is (nearly) solved, pretext accuracy >=
    SHORTCUT_ACCURACY, yet the best pretext stage's gain over the random trunks' best stage is not
    above zero beyond the noise (its interval reaches zero or lies below it)."""
    return pretext_acc is not None and pretext_acc >= SHORTCUT_ACCURACY and gain_ci_points[0] <= 0


def load_with_random_twins(checkpoint, seed: int = 0, device: str = "cpu"):
    """(task, the run's recipe, ``RANDOM_SEEDS`` random recipes of the same config, their seeds):
    what every evaluation compares. The caller's torch RNG is left alone (building recipes seeds it)."""
    import torch

    from .checkpoint import load_run
    from .recipe import build_recipe

    random_seeds = [RANDOM_SEED + seed + 100 * k for k in range(RANDOM_SEEDS)]
    with torch.random.fork_rng(devices=[]):
        task, params, config, recipe = load_run(checkpoint, device=device)
        twins = [build_recipe(task, params, dataclasses.replace(config, seed=s)).to(device) for s in random_seeds]
    return task, recipe, twins, random_seeds


def evaluate(checkpoint, data, json_path=None, seed: int = 0, device: str = "cpu", progress=None,
             batch_size: int = 256, size: int | None = None, protocol: str | None = None) -> dict:
    """Evaluate the trunk of ``checkpoint`` (RUN_DIR/checkpoint.pt, or RUN_DIR) on the labeled folder
    ``data`` (see the module docstring). Returns (and writes to ``json_path``, when given)::

        {"task": T, "pretext": {stage: {"linear": acc, "knn": acc}}, "random": {stage: {...}},
         "pixels": {"linear": acc, "knn": acc}, "pretext_accuracy": acc or None,
         "pretext_accuracy_meaning": what it measures (the recipe's ``accuracy``), ...}

    accuracies in [0, 1] rounded to ``DECIMALS`` places, with the protocol's settings beside them ("k",
    "temperature", "pool", "probe", "l2", "classes", "train_images", "test_images", "best", "shortcut",
    ...). ``seed`` draws
    the probe's held-out split and (plus RANDOM_SEED) the random trunk. ``print(*report(result),
    sep="\\n")`` shows the table. ``protocol``: one of the recipe's ``eval_protocols`` (default: its
    first); ``size``: the whole images' side instead of the protocol's (for every row alike)."""
    import torch

    from ..progress import Progress

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PretextgenError(f"--device {device}: torch sees no CUDA device here; use --device cpu")
    ckpt = Path(checkpoint)
    run_dir = ckpt if ckpt.is_dir() else ckpt.parent
    if not (ckpt / "checkpoint.pt" if ckpt.is_dir() else ckpt).exists():
        raise PretextgenError(f"checkpoint {checkpoint} does not exist; `pretextgen train ... --out RUN_DIR` "
                              "writes RUN_DIR/checkpoint.pt")
    classes, train_items, test_items, test_name = labeled_split(data)

    task, recipe, twins, random_seeds = load_with_random_twins(checkpoint, seed, device)
    for module in (recipe, *twins):
        freeze(module)
    protocols = recipe.eval_protocols()
    protocol = protocol or next(iter(protocols))
    if protocol not in protocols:
        raise PretextgenError(f"--protocol {protocol}: the {task.name} recipe offers {', '.join(protocols)}")
    spec = dict(protocols[protocol])
    if size is not None and "cells" in spec:
        raise PretextgenError(f"--size: protocol {protocol} cuts patches at the training scale; --size sets whole "
                              "images' side (--protocol whole)")
    if size is None:
        size = spec["size"]
    else:
        spec["size"] = size
        try:
            with torch.no_grad():
                recipe.eval_features(recipe.eval_input(torch.zeros(1, 3, size, size, dtype=torch.uint8, device=device)))
        except Exception as e:  # noqa: BLE001 - a trunk of a fixed input size (ViT), or too small an image
            raise PretextgenError(f"--size {size}: the {task.name} trunk cannot take {size} px images "
                                  f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); its own size is "
                                  f"{int(recipe.eval_size)}") from None
    before = [bn_state(module) for module in (recipe, *twins)]

    bar = Progress(len(train_items) + len(test_items), f"eval {task.name}", "images",
                   enabled=None if progress is None else bool(progress))
    workers = max(1, min(4, os.cpu_count() or 1))
    train_f, train_y, bad_train = features(recipe, twins, train_items, spec, device, batch_size, bar, workers)
    test_f, test_y, bad_test = features(recipe, twins, test_items, spec, device, batch_size, bar, workers)
    bar.close()
    for mod, state in zip((recipe, *twins), before):
        after = bn_state(mod)
        moved = [k for k in state if not torch.equal(state[k], after[k])]
        if moved:  # would make every number below meaningless
            raise RuntimeError(f"batch-norm statistics moved during evaluation ({moved[0]}): the trunk was not frozen")
    unreadable = bad_train + bad_test
    for path, why in unreadable[:5]:
        log.warning("eval: skipped %s (%s)", path, why)
    if len(train_y) == 0 or len(test_y) == 0:
        raise PretextgenError(f"no readable {'train' if len(train_y) == 0 else test_name} image in {data}")
    missing = [classes[c] for c in range(len(classes)) if not (train_y == c).any()]
    if missing:
        raise PretextgenError(f"train class {missing[0]!r} has no readable image in {data}")

    n = len(classes)
    sources = ["pretext", *(f"random{k}" for k in range(len(twins))), "pixels"]
    scores, correct, l2, unconverged = {}, {}, {}, []
    fits = Progress(sum(len(train_f[name]) for name in sources), f"eval {task.name}: probes", "stages", progress)
    for name in sources:
        scores[name], correct[name], l2[name] = {}, {}, {}
        for stage in train_f[name]:
            tr = train_f[name][stage].to(device)
            te = test_f[name][stage].to(device)
            shared = l2["random0"].get(stage) if name.startswith("random") and name != "random0" else None
            probe = linear_probe(tr, train_y, te, test_y, n, seed=seed, l2=shared)
            a, b = standardise(tr, te)
            scores[name][stage] = {"linear": probe["accuracy"], "knn": knn_top1(a, train_y, b, test_y, n)}
            correct[name][stage], l2[name][stage] = probe["correct"].numpy().astype(np.float64), probe["l2"]
            if not probe["converged"]:
                unconverged.append(f"{name} {stage}".replace("pixels pixels", "pixels"))
            fits.update(1, done=f"{name} {stage}".replace("pixels pixels", "pixels"))
    fits.close()

    seeds = [scores[f"random{k}"] for k in range(len(twins))]
    stages = list(scores["pretext"])
    random_correct = {s: np.mean([correct[f"random{k}"][s] for k in range(len(twins))], axis=0) for s in stages}
    result = {"task": task.name, "pretext": scores["pretext"],
              "random": {s: {m: float(np.mean([r[s][m] for r in seeds])) for m in ("linear", "knn")} for s in stages},
              "random_seeds": [{"seed": rs, "stages": r} for rs, r in zip(random_seeds, seeds)],
              "pixels": scores["pixels"]["pixels"],
              "pretext_accuracy": pretext_accuracy(run_dir), "pretext_accuracy_meaning": type(recipe).accuracy}
    # Rounded before anything is derived from them: the ranking, the gain and the shortcut flag agree
    # with the numbers the JSON shows.
    result = round_accuracies(result)
    result["gain"] = {s: _round(result["pretext"][s]["linear"] - result["random"][s]["linear"]) for s in stages}
    result["gain_ci"] = {s: [_round(v) for v in gain_interval(correct["pretext"][s] - random_correct[s], seed)]
                         for s in stages}
    p_stage, p_acc = _best(result["pretext"])
    r_stage, r_acc = _best(result["random"])
    best_ci = gain_interval(correct["pretext"][p_stage] - random_correct[r_stage], seed)
    pa = result["pretext_accuracy"]
    result.update({
        "k": K, "temperature": TEMPERATURE, "pool": {"stages": POOL, "pixels": PIXEL_POOL}, "probe": PROBE,
        "l2": {"pretext": l2["pretext"], "random": l2["random0"], "pixels": l2["pixels"]["pixels"]},
        "unconverged": unconverged, "eval_input": task.trainer.eval_input, "eval_size": size,
        "protocol": {"name": protocol, **spec}, "protocols": list(protocols),
        "recipe_eval_size": int(recipe.eval_size),
        "crop": "center square, then resize (area filter shrinking, bilinear enlarging)",
        "classes": classes, "train_images": int(len(train_y)), "test_images": int(len(test_y)),
        "test_folder": test_name, "unreadable": [p for p, _ in unreadable], "seed": seed,
        "random_seed": random_seeds[0], "bootstrap": {"resamples": BOOTSTRAP, "confidence": CONFIDENCE},
        "checkpoint": str(checkpoint), "data": str(data),
        "best": {"stage": p_stage, "linear": p_acc, "random_same_stage": result["random"].get(p_stage, {}).get("linear"),
                 "random_best_stage": r_stage, "random_best": r_acc, "gain_points": round(100 * (p_acc - r_acc), 2),
                 "gain_ci_points": [round(100 * v, 2) for v in best_ci],
                 # the binomial standard error of one top-1 on this many test images, in points
                 "stderr_points": round(100 * float(np.sqrt(p_acc * (1 - p_acc) / len(test_y))), 2)},
    })
    result["shortcut"] = shortcut(pa, result["best"]["gain_ci_points"])
    result["alignment_uniformity"] = alignment_uniformity(recipe, twins, test_items, spec, device, seed)
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=1) + "\n")
    return result


def _protocol_text(r: dict) -> str:
    p = r.get("protocol") or {"name": "whole"}
    if "cells" not in p:
        what = f"{p['name']}: whole images at {r['eval_size']} px"
    else:
        what = (f"{p['name']}: the image at {p['size']} px cut into {p['cells']}x{p['cells']} patches of {p['patch']} px "
                f"(every {p['step']} px from {p['origin']}), features averaged over them")
    if p.get("channels") == "each":
        what += "; each colour channel kept alone in turn (the others at its mean), features averaged"
    others = [n for n in r.get("protocols", []) if n != p["name"]]
    return what + (f" (also: --protocol {', '.join(others)})" if others else "")


def report(result: dict) -> list[str]:
    """The evaluation as printed lines: the protocol, a table (rows: pretext trunk per stage, random
    trunk per stage, raw pixels; columns linear / kNN top-1 in %), the pretext accuracy and what it
    measures for this task, the best stage's gain over random, and a "likely shortcut" line when it
    applies."""
    r = result
    pool = r["pool"]
    seeds = [str(x["seed"]) for x in r["random_seeds"]]
    confidence = f"{100 * r['bootstrap']['confidence']:.0f}%"
    lines = [f"{r['task']}: linear probe and kNN top-1 on {r['data']} ({r['train_images']} train / {r['test_images']} "
             f"{r['test_folder']} images, {len(r['classes'])} classes)",
             f"  input: {r['eval_input']} at {r['eval_size']} px for all three sources (non-square images: "
             "center square, then resized)",
             f"  protocol: {_protocol_text(r)}",
             f"  pooling: stages average-pooled to {pool['stages']}x{pool['stages']}, pixels to "
             f"{pool['pixels']}x{pool['pixels']}; features standardised with train statistics",
             *textwrap.wrap("  linear: " + r["probe"], width=100, subsequent_indent=" " * 10, break_on_hyphens=False),
             f"  kNN: cosine on the standardised features, k={r['k']}, T={r['temperature']:g} weighted votes",
             f"  random trunk: the same recipe initialised with seeds {', '.join(seeds)}, the mean of their",
             "          results; every trunk frozen in eval mode (batch-norm statistics fixed)",
             f"  gain: pretext minus the random seeds' mean (linear, points), with its {confidence} interval",
             f"          from a paired bootstrap over the test images ({r['bootstrap']['resamples']} resamples)",
             ""]
    width = max(len("features"), *(len(f"random {s}") for s in r["pretext"])) + 2
    lines.append(f"{'features':<{width}}{'linear %':>9}{'kNN %':>9}   gain, {confidence} interval")
    for s, v in r["pretext"].items():
        lo, hi = (100 * x for x in r["gain_ci"][s])
        lines.append(f"{'pretext ' + s:<{width}}{100 * v['linear']:>9.1f}{100 * v['knn']:>9.1f}"
                     f"   {100 * r['gain'][s]:+.1f} [{lo:+.1f}, {hi:+.1f}]")
    for s, v in r["random"].items():
        each = " / ".join(f"{100 * x['stages'][s]['linear']:.1f}" for x in r["random_seeds"])
        lines.append(f"{'random ' + s:<{width}}{100 * v['linear']:>9.1f}{100 * v['knn']:>9.1f}   seeds: {each}")
    lines.append(f"{'raw pixels':<{width}}{100 * r['pixels']['linear']:>9.1f}{100 * r['pixels']['knn']:>9.1f}")
    lines.append("")
    pa, meaning = r["pretext_accuracy"], r.get("pretext_accuracy_meaning")
    if pa is None:
        line = "pretext accuracy (last epoch): not recorded" + (f" ({r['task']}: {meaning})" if meaning else "")
    else:
        meaning = meaning or "its recipe does not say what it measures"
        line = f"pretext accuracy (last epoch): {100 * pa:.1f}% ({r['task']}: {meaning})"
    lines += textwrap.wrap(line, width=100, subsequent_indent="  ", break_on_hyphens=False)
    b = r["best"]
    same = "" if b["random_same_stage"] is None else \
        f"{100 * (b['linear'] - b['random_same_stage']):+.1f} points over the random trunk at {b['stage']}, "
    lo, hi = b["gain_ci_points"]
    verdict = "above the random trunks" if lo > 0 else "below the random trunks" if hi < 0 else "within the noise"
    lines += textwrap.wrap(
        f"best pretext stage: {b['stage']} {100 * b['linear']:.1f}% linear; {same}{b['gain_points']:+.1f} points "
        f"[{lo:+.1f}, {hi:+.1f}] over the random trunks' best stage ({b['random_best_stage']} "
        f"{100 * b['random_best']:.1f}%, mean of {len(seeds)} seeds): {verdict}", width=100, subsequent_indent="  ")
    if r["shortcut"] and pa is not None:
        lines += textwrap.wrap(
            f"likely shortcut: pretext accuracy {100 * pa:.1f}% but the best pretext stage ({b['stage']}, "
            f"{100 * b['linear']:.1f}%) is not above the random trunks' best stage ({b['random_best_stage']}, "
            f"{100 * b['random_best']:.1f}%) beyond the noise: the task was solved without learning features "
            "that transfer (`pretextgen inspect BUILD --audit` looks for low-level cues)", width=100,
            subsequent_indent="  ")
    au = r.get("alignment_uniformity")
    if au:
        lines += textwrap.wrap(
            f"alignment / uniformity (Wang & Isola; last stage, pooled, L2-normalised; {au['images']} test images, "
            f"two augmented views; lower is better): pretext {au['pretext']['alignment']:.3f} / "
            f"{au['pretext']['uniformity']:.3f}, random {au['random']['alignment']:.3f} / {au['random']['uniformity']:.3f}",
            width=100, subsequent_indent="  ")
    if r["unconverged"]:
        lines.append(f"note: the final probe stopped at {MAX_ITER} L-BFGS iterations before converging for: "
                     + ", ".join(r["unconverged"]))
    if r["unreadable"]:
        lines.append(f"note: {len(r['unreadable'])} unreadable image(s) skipped, e.g. {r['unreadable'][0]}")
    return lines
