"""Shortcut audit (``pretextgen inspect OUT_DIR --audit``): can a deliberately shallow probe predict
the pretext label from low-level cues alone?

Features (``features``): per stored image (or element of a stack: tile, patch, frame) the per-channel
mean and std, a 4x4 grid of mean luminance, and the phase of the JPEG 8x8 block grid (share of the
absolute neighbour differences at each column and row offset modulo 8); for stacks, the seam cost of
every ordered pair of elements, i.e. the mean |difference| across the border if element b sat right
of (or below) element a: the cue that the gaps between jigsaw tiles and context patches exist to
remove; and the resampling phase of every element (the share of its mean |second difference| at
each column and each row): a crop upsampled once and then cut repeats its interpolation pattern with
the upsampling period, so tiles cut at different cells start at different phases and the pattern
alone gives away the cell. The probe is a multinomial logistic regression on standardised features, scored by k-fold
cross-validation, once per kind of cue and once on all of them (the best score decides; it is a
maximum over five scores, so read a marginal verdict with care). Chance is the share of the most
frequent label. Accuracy far above chance means the configuration leaks a shortcut that a network
would learn before anything semantic. With few distinct sources a probe can also memorise each
source's layout (``coarse layout``, ``channel statistics``): audit builds from many sources.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import PretextgenError


@dataclass
class AuditResult:
    task: str
    samples: int
    classes: int
    chance: float
    folds: int
    accuracy: dict  # cue kind (or "all cues") -> cross-validated accuracy
    features: dict  # cue kind -> number of features
    notes: list[str] = field(default_factory=list)

    @property
    def best(self) -> tuple[str, float]:
        return max(self.accuracy.items(), key=lambda kv: kv[1])

    @property
    def interval(self) -> tuple[float, float]:
        """95% Wilson interval of the best accuracy."""
        return wilson(int(round(self.best[1] * self.samples)), self.samples)

    @property
    def leaks(self) -> bool:
        """True when the best cue predicts the label clearly above chance: the lower end of its 95%
        interval is above twice chance, or above chance + 0.2."""
        return self.interval[0] > min(2 * self.chance, self.chance + 0.2)

    def lines(self) -> list[str]:
        cue, acc = self.best
        lo, hi = self.interval
        verdict = (f"SHORTCUT: {cue} predict the label far above chance" if self.leaks
                   else "no strong shortcut found by this probe")
        out = [f"shortcut audit ({self.task}): shallow probe (logistic regression), {self.samples} samples, "
               f"{self.classes} labels, {self.folds}-fold cross-validation; chance {self.chance:.3f}"]
        for k, v in self.accuracy.items():
            n = sum(self.features.values()) if k == "all cues" else self.features[k]
            out.append(f"  {k:<20} {n:>5} features: accuracy {v:.3f}")
        out.append(f"  best: {acc:.3f} (95% interval {lo:.3f}-{hi:.3f}) vs chance {self.chance:.3f}: {verdict}")
        return out + [f"  note: {n}" for n in self.notes]


# ---------------------------------------------------------------- features
def _as_stack(a: np.ndarray) -> np.ndarray | None:
    """An image-like field as float32 (N, H, W, C), or None when it is not image-like."""
    if a.ndim == 2 and min(a.shape) >= 8:
        a = a[None, ..., None]
    elif a.ndim == 3 and a.shape[-1] in (1, 3) and min(a.shape[:2]) >= 8:
        a = a[None]
    elif a.ndim == 3 and min(a.shape[1:]) >= 8:  # a stack of gray frames
        a = a[..., None]
    elif not (a.ndim == 4 and a.shape[-1] in (1, 3) and min(a.shape[1:3]) >= 8):
        return None
    return a.astype(np.float32)


def _grid_phase(x: np.ndarray) -> np.ndarray:
    """(N, 16): share of |horizontal| and |vertical| neighbour differences at offsets 0..7 mod 8."""
    lum = x.mean(-1)
    dx = np.abs(np.diff(lum, axis=2)).mean(1)  # (N, W-1)
    dy = np.abs(np.diff(lum, axis=1)).mean(2)  # (N, H-1)
    out = []
    for d in (dx, dy):
        w = d.shape[1] // 8 * 8
        if w == 0:
            out.append(np.full((len(d), 8), 1 / 8, np.float32))
            continue
        phase = d[:, :w].reshape(len(d), -1, 8).sum(1)
        out.append(phase / np.maximum(phase.sum(1, keepdims=True), 1e-6))
    return np.concatenate(out, 1)


def resampling_phase(x: np.ndarray) -> np.ndarray:
    """(N, (W-2) + (H-2)): each element's mean |second difference| of luminance at each column, then
    at each row, as shares of its sum. Interpolation smooths some positions more than others; the
    profile shows where an element sits on its resampling grid."""
    lum = x.mean(-1)
    out = []
    for d in (np.abs(np.diff(lum, 2, axis=2)).mean(1), np.abs(np.diff(lum, 2, axis=1)).mean(2)):
        out.append(d / np.maximum(d.sum(1, keepdims=True), 1e-6))
    return np.concatenate(out, 1)


def _coarse(x: np.ndarray) -> np.ndarray:
    """(N, 16): mean luminance on a 4x4 grid."""
    lum = x.mean(-1)
    n, h, w = lum.shape
    hs, ws = h // 4, w // 4
    return lum[:, : hs * 4, : ws * 4].reshape(n, 4, hs, 4, ws).mean((2, 4)).reshape(n, 16)


def seam_costs(x: np.ndarray) -> np.ndarray:
    """(2, N, N): [horizontal, vertical] cost of element b right of / below element a: mean |diff|
    between a's last column (row) and b's first; log of the cost over the sample's median."""
    right, left = x[:, :, -1], x[:, :, 0]  # (N, H, C)
    bottom, top = x[:, -1], x[:, 0]
    h = np.abs(right[:, None] - left[None]).mean((2, 3))
    v = np.abs(bottom[:, None] - top[None]).mean((2, 3))
    c = np.stack([h, v])
    return np.log((c + 1.0) / (np.median(c) + 1.0))


CUES = ("channel statistics", "coarse layout", "JPEG grid phase", "border seams", "resampling phase")


def feature_groups(sample: dict) -> dict[str, np.ndarray]:
    """The low-level cues of one sample ({field name: array}) by kind (``CUES``); see the module
    docstring. Kinds without an input (seams of a single image) are absent."""
    groups: dict[str, list] = {c: [] for c in CUES}
    for name in sorted(sample):
        x = _as_stack(np.asarray(sample[name]))
        if x is None:
            continue
        if x.dtype != np.uint8 and np.abs(x).max() <= 16:  # normalised tiles: back to a grey-level scale
            x = (x - x.min()) * (255.0 / max(float(x.max() - x.min()), 1e-6))
        groups["channel statistics"] += [x.mean((1, 2)).ravel(), x.std((1, 2)).ravel()]
        groups["coarse layout"].append(_coarse(x).ravel())
        groups["JPEG grid phase"].append(_grid_phase(x).ravel())
        if 1 < len(x) <= 16:
            groups["border seams"].append(seam_costs(x).ravel())
        if len(x) <= 16:  # not every frame of a long video stack
            groups["resampling phase"].append(resampling_phase(x).ravel())
    out = {k: np.concatenate(v).astype(np.float32) for k, v in groups.items() if v}
    if not out:
        raise PretextgenError("the audit found no image-like field in these samples")
    return out


# ---------------------------------------------------------------- the probe
def _fit_softmax(x: np.ndarray, y: np.ndarray, classes: int, steps: int = 300, l2: float = 1e-2, lr: float = 0.5):
    """Multinomial logistic regression by full-batch gradient descent (Nesterov momentum)."""
    n, d = x.shape
    w = np.zeros((d + 1, classes), np.float64)
    v = np.zeros_like(w)
    xb = np.concatenate([x, np.ones((n, 1))], 1)
    onehot = np.eye(classes)[y]
    for _ in range(steps):
        look = w + 0.9 * v
        z = xb @ look
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        grad = xb.T @ (p - onehot) / n + l2 * np.vstack([look[:-1], np.zeros((1, classes))])
        v = 0.9 * v - lr * grad
        w = w + v
    return w


def _predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (np.concatenate([x, np.ones((len(x), 1))], 1) @ w).argmax(1)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, c - h), min(1.0, c + h)


def probe(x: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> tuple[int, int]:
    """(correct, total) of k-fold cross-validated predictions of ``labels`` from ``x``."""
    uniq, y = np.unique(labels, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(y))
    correct = 0
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
        w = _fit_softmax((x[train] - mu) / sd, y[train], len(uniq))
        correct += int((_predict(w, (x[test] - mu) / sd) == y[test]).sum())
    return correct, len(y)


def audit(out_dir, max_samples: int = 1000, folds: int = 5, seed: int = 0) -> AuditResult:
    """Audit the first ``max_samples`` samples of a build (they are in random order already)."""
    from .registry import get_task
    from .shards import read_manifest, read_samples

    out = Path(out_dir)
    m = read_manifest(out)
    if get_task(m["task"]).label_is_plan_index:
        raise PretextgenError(f"{m['task']}: each plan is its own class; there is no label a probe could learn")
    samples = read_samples(out, range(min(max_samples, m["samples"])))
    notes = []
    labels = np.array([s["label"] for s in samples])
    counts = np.bincount(np.unique(labels, return_inverse=True)[1])
    if len(counts) < 2:
        raise PretextgenError(f"{m['task']}: every audited sample has the same label; nothing to predict")
    if counts.max() < folds * 2 or len(samples) < 10 * len(counts):
        notes.append(f"{len(samples)} samples for {len(counts)} labels is few for a probe: "
                     "a low accuracy may mean too little data, not no shortcut")
    groups = [feature_groups({k: v for k, v in s.items() if k not in ("label", "json", "index")}) for s in samples]
    acc, sizes = {}, {}
    for cue in groups[0]:
        x = np.stack([g[cue] for g in groups])
        sizes[cue] = x.shape[1]
        acc[cue] = probe(x, labels, folds, seed)[0] / len(labels)
    x = np.concatenate([np.stack([g[c] for g in groups]) for c in sizes], 1)
    acc["all cues"] = probe(x, labels, folds, seed)[0] / len(labels)
    return AuditResult(m["task"], len(labels), len(counts), counts.max() / len(labels), folds, acc, sizes, notes)
