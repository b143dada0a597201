"""Video object segmentation by label propagation, scored as DAVIS scores it: is a trunk's feature
space one in which a mask can follow an object through a video?

Frame 0's mask is given. Every later frame's mask comes from feature affinities to frame 0 and the
``CONTEXT`` frames before it (their predicted masks), restricted to a ``RADIUS`` (feature cells)
around each position, the ``TOPK`` strongest kept, softmax at ``TEMPERATURE`` (ajabri/videowalk's
``test.py``: top-k 10, radius 12, temperature 0.05, frame 0 plus the last N frames; N = 20 there,
``CONTEXT`` here: the same for every trunk compared). Scores per sequence (frames 1..T-1, as the
DAVIS protocol: frame 0 is given):

- region similarity J: the mean IoU (1 where both masks are empty, DAVIS's ``db_eval_iou``);
- contour accuracy F: the boundary F-measure of DAVIS's ``db_eval_boundary`` (``seg2bmap``
  boundaries, matched within ``BOUND_TH`` x the image diagonal);
- J&F: their mean.

Baselines beside a trunk (``davis_baselines``): frame 0's mask copied to every frame, the mask
carried along a chain of dense optical flow (OpenCV DIS, ``video.flow``), and raw-pixel features
(Lab, area-averaged to the trunk's stride) through the same propagation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PretextgenError

TOPK, RADIUS, TEMPERATURE, CONTEXT = 10, 12, 0.05, 5
BOUND_TH = 0.008  # DAVIS's boundary tolerance: 0.008 x the image diagonal


@dataclass(frozen=True)
class Sequence:
    name: str
    frames: tuple[Path, ...]
    masks: tuple[Path, ...]


def read_sequences(root, resolution: str | None = None) -> list[Sequence]:
    """The sequences of a DAVIS-layout folder: ``JPEGImages/<res>/<seq>/*.jpg`` and
    ``Annotations/<res>/<seq>/*.png``, frames and masks paired by name; ``resolution`` None: the one
    resolution folder there is (240p, 480p, Full-Resolution)."""
    root = Path(root)
    images = root / "JPEGImages"
    if not images.is_dir() or not (root / "Annotations").is_dir():
        raise PretextgenError(f"--davis {root}: expected DAVIS's layout, JPEGImages/<resolution>/<sequence>/*.jpg "
                              "and Annotations/<resolution>/<sequence>/*.png")
    if resolution is None:
        found = sorted(p.name for p in images.iterdir() if p.is_dir())
        if len(found) != 1:
            raise PretextgenError(f"--davis {root}: {len(found)} resolution folders ({', '.join(found)}); name one")
        resolution = found[0]
    out = []
    for seq in sorted(p for p in (images / resolution).iterdir() if p.is_dir()):
        frames = sorted(seq.glob("*.jpg"))
        masks = [root / "Annotations" / resolution / seq.name / (f.stem + ".png") for f in frames]
        if not frames or not masks[0].exists():
            raise PretextgenError(f"--davis {root}: sequence {seq.name} has no frames or no mask for its first frame")
        out.append(Sequence(seq.name, tuple(frames), tuple(masks)))
    if not out:
        raise PretextgenError(f"--davis {root}: no sequence under {images / resolution}")
    return out


# ---------------------------------------------------------------- the measures
def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two boolean masks; 1 where both are empty (DAVIS's ``db_eval_iou``)."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """DAVIS's boundary map: pixels whose value differs from their right, lower or lower-right
    neighbour (the last row and column compared along the edge)."""
    seg = seg.astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """DAVIS's contour accuracy: boundaries matched within ``ceil(bound_th x diagonal)`` px (a disk)."""
    import cv2

    pred, gt = pred.astype(bool), gt.astype(bool)
    radius = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*pred.shape))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(radius) + 1, 2 * int(radius) + 1))
    fg, gtb = seg2bmap(pred), seg2bmap(gt)
    fg_dil = cv2.dilate(fg.astype(np.uint8), disk).astype(bool)
    gt_dil = cv2.dilate(gtb.astype(np.uint8), disk).astype(bool)
    n_fg, n_gt = int(fg.sum()), int(gtb.sum())
    if n_fg == 0 and n_gt == 0:
        return 1.0
    if n_fg == 0 or n_gt == 0:
        return 0.0  # precision 1 / recall 0, or the reverse: F = 0
    precision = float((fg & gt_dil).sum() / n_fg)
    recall = float((gtb & fg_dil).sum() / n_gt)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def score(preds: list[np.ndarray], gts: list[np.ndarray]) -> dict:
    """{"J", "F", "JF"} over frames 1..T-1 (frame 0 is given, as the DAVIS protocol)."""
    j = float(np.mean([jaccard(p, g) for p, g in zip(preds[1:], gts[1:])]))
    f = float(np.mean([boundary_f(p, g) for p, g in zip(preds[1:], gts[1:])]))
    return {"J": j, "F": f, "JF": (j + f) / 2}


# ---------------------------------------------------------------- propagation
def propagate(features, mask0: np.ndarray, topk: int = TOPK, radius: float = RADIUS,
              temperature: float = TEMPERATURE, context: int = CONTEXT) -> list[np.ndarray]:
    """Masks (bool, the frames' size) for every frame from ``features`` (a list of (C, h, w) torch
    tensors, one per frame; L2-normalised over C here) and frame 0's ``mask0``: each position of
    frame t takes the softmax-weighted labels of its ``topk`` most similar positions (dot product /
    ``temperature``) among frame 0 and the ``context`` frames before t, within ``radius`` feature
    cells of its own place; labels are (background, object) probabilities at the features' size,
    resized to the frame's with bilinear interpolation, object where it beats background."""
    import torch
    import torch.nn.functional as F

    h, w = features[0].shape[-2:]
    size = mask0.shape[:2]
    feats = [F.normalize(f.float().reshape(f.shape[0], -1), dim=0) for f in features]  # (C, hw)
    small = torch.from_numpy(mask0.astype(np.float32))[None, None]
    fg = F.interpolate(small, size=(h, w), mode="area")[0, 0].reshape(-1)
    labels = [torch.stack([1 - fg, fg])]  # (2, hw)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([ys.reshape(-1), xs.reshape(-1)], 1).float()
    near = torch.cdist(pos, pos) <= radius  # (hw, hw): which positions may pass labels
    out = [mask0.astype(bool)]
    for t in range(1, len(feats)):
        refs = [0] + list(range(max(1, t - context), t))
        keys = torch.stack([feats[r] for r in refs])  # (M, C, hw)
        vals = torch.stack([labels[r] for r in refs])  # (M, 2, hw)
        sim = torch.einsum("cq,mcp->qmp", feats[t], keys) / temperature  # (hw, M, hw)
        sim = sim.masked_fill(~near[:, None, :], float("-inf")).reshape(len(pos), -1)
        k = min(topk, sim.shape[1])
        top, idx = sim.topk(k, dim=1)
        weights = torch.softmax(top, dim=1)  # (hw, k)
        flat = vals.permute(1, 0, 2).reshape(2, -1)  # (2, M hw)
        lab = (flat[:, idx] * weights[None]).sum(-1)  # (2, hw)
        labels.append(lab)
        up = F.interpolate(lab.reshape(1, 2, h, w), size=size, mode="bilinear", align_corners=False)[0]
        out.append((up[1] > up[0]).numpy())
    return out


def copy_first(mask0: np.ndarray, n: int) -> list[np.ndarray]:
    """The baseline that does nothing: frame 0's mask in every frame."""
    return [mask0.astype(bool)] * n


def flow_chain(frames: list[np.ndarray], mask0: np.ndarray) -> list[np.ndarray]:
    """Frame 0's mask carried along the chain of dense optical flow (OpenCV DIS, full frame size):
    each frame's mask is the previous one sampled through the backward flow (frame t -> t-1), except
    where the forward and backward flows disagree (Sundaram et al. 2010's check): there the pixel was
    hidden in frame t-1 (background an object uncovers), and it takes no mask."""
    import cv2

    from ..video.flow import CpuFlow

    flow = CpuFlow("dis")
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    h, w = gray[0].shape
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    soft = mask0.astype(np.float32)
    out = [mask0.astype(bool)]
    for t in range(1, len(frames)):
        back = flow(gray[t], gray[t - 1])  # where each pixel of frame t was in frame t-1
        fwd = flow(gray[t - 1], gray[t])
        mx, my = grid_x + back[..., 0], grid_y + back[..., 1]
        fwd_there = cv2.remap(fwd, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        loop = ((fwd_there + back) ** 2).sum(-1)
        hidden = loop > 0.01 * ((fwd_there ** 2).sum(-1) + (back ** 2).sum(-1)) + 0.5
        soft = cv2.remap(soft, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        soft[hidden] = 0.0
        out.append(soft > 0.5)
    return out


def lab_features(frame: np.ndarray, stride: int):
    """Raw-pixel features: the frame in Lab (``pretextgen.lab``), area-averaged to 1/``stride`` of its
    size, (3, h, w) torch float32."""
    import cv2
    import torch

    from ..lab import srgb_to_lab

    h, w = frame.shape[:2]
    small = cv2.resize(srgb_to_lab(frame).astype(np.float32), (max(1, w // stride), max(1, h // stride)),
                       interpolation=cv2.INTER_AREA)
    return torch.from_numpy(small).permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------- pretextgen eval --davis
def trunk_features(recipe, frames: list[np.ndarray], device: str = "cpu", batch: int = 8) -> list:
    """The last stage of a frozen ``recipe``'s trunk for each RGB frame, (C, h, w) on the CPU (a
    token sequence as its map), through the recipe's own ``eval_input`` (a trunk trained on L sees L)."""
    import torch

    from .probe import freeze

    freeze(recipe)
    out = []
    with torch.no_grad():
        for i in range(0, len(frames), batch):
            x = torch.from_numpy(np.stack(frames[i:i + batch]).transpose(0, 3, 1, 2).copy()).to(device)
            last = next(reversed(recipe.eval_features(recipe.eval_input(x)).values()))
            if last.ndim != 4:
                raise PretextgenError(f"--davis needs a trunk whose last stage is a map; it gave {tuple(last.shape)}")
            out += [f.float().cpu() for f in last]
    return out


def _read(seq: Sequence, max_frames: int | None):
    import cv2

    n = len(seq.frames) if max_frames is None else min(max_frames, len(seq.frames))
    frames = [cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for f in seq.frames[:n]]
    masks = [cv2.imread(str(m), cv2.IMREAD_GRAYSCALE) > 127 if m.exists() else np.zeros(frames[0].shape[:2], bool)
             for m in seq.masks[:n]]
    return frames, masks


_BASELINES: dict = {}  # (first frame, frames, stride) -> scores: the same for every trunk of one process


def _baselines(seq: Sequence, frames, masks, stride: int) -> dict:
    """The trunk-free rows of one sequence (Lab pixels at ``stride``, the flow chain, frame 0 copied),
    computed once per process: ``compare`` evaluates several trunks on the same folder."""
    key = (str(Path(seq.frames[0]).resolve()), len(frames), stride)
    if key not in _BASELINES:
        _BASELINES[key] = {
            "pixels": score(propagate([lab_features(f, stride) for f in frames], masks[0]), masks),
            "flow": score(flow_chain(frames, masks[0]), masks),
            "copy_first": score(copy_first(masks[0], len(frames)), masks)}
    return dict(_BASELINES[key])


def evaluate_davis(checkpoint, root, seed: int = 0, device: str = "cpu", progress=None,
                   max_frames: int | None = None) -> dict:
    """``pretextgen eval --davis DIR``: J, F and J&F of the trunk of ``checkpoint`` (label propagation
    on its last stage), of the mean of ``probe.RANDOM_SEEDS`` random trunks of its recipe, of raw
    Lab pixels at the trunk's stride, of a DIS flow chain and of copying frame 0's mask, over every
    sequence of ``root`` (its frames 1.., frame 0's mask given). Returns the JSON's ``davis`` dict:
    {"pretext", "random", "random_seeds", "pixels", "flow", "copy_first": {"J", "F", "JF"},
    "gain": {"JF": pretext minus random, "ci": its 95% interval by a paired bootstrap over the
    sequences}, "sequences": {name: {method: {...}}}, "settings": {...}}."""
    from ..progress import Progress
    from .probe import gain_interval, load_with_random_twins

    seqs = read_sequences(root)
    task, recipe, twins, seeds = load_with_random_twins(checkpoint, seed, device)
    trunks = [("pretext", recipe), *((f"random{k}", t) for k, t in enumerate(twins))]
    bar = Progress(len(seqs), f"eval {task.name} on DAVIS", "sequences", progress)
    per_seq = {}
    for seq in seqs:
        frames, masks = _read(seq, max_frames)
        got = {}
        for name, module in trunks:
            feats = trunk_features(module, frames, device)
            got[name] = score(propagate(feats, masks[0]), masks)
        stride = max(1, round(frames[0].shape[0] / feats[0].shape[-2]))
        got.update(_baselines(seq, frames, masks, stride))
        got["random"] = {k: float(np.mean([got[f"random{i}"][k] for i in range(len(twins))])) for k in ("J", "F", "JF")}
        per_seq[seq.name] = {k: {m: round(v, 4) for m, v in d.items()} for k, d in got.items()}
        bar.update(1, done=seq.name)
    bar.close()
    methods = ["pretext", "random", "pixels", "flow", "copy_first"]
    overall = {m: {k: round(float(np.mean([s[m][k] for s in per_seq.values()])), 4) for k in ("J", "F", "JF")}
               for m in methods}
    seeds_rows = [{"seed": s, **{k: round(float(np.mean([q[f"random{i}"][k] for q in per_seq.values()])), 4)
                                 for k in ("J", "F", "JF")}} for i, s in enumerate(seeds)]
    for q in per_seq.values():
        for i in range(len(twins)):
            q.pop(f"random{i}")
    # the gain read against the noise: a paired bootstrap over the sequences, as the probe's over images
    diff = [q["pretext"]["JF"] - q["random"]["JF"] for q in per_seq.values()]
    gain = {"JF": round(float(np.mean(diff)), 4), "ci": [round(v, 4) for v in gain_interval(diff)],
            "over": "sequences"}
    return {"task": task.name, **overall, "gain": gain, "random_seeds": seeds_rows, "sequences": per_seq,
            "settings": {"topk": TOPK, "radius": RADIUS, "temperature": TEMPERATURE, "context": CONTEXT,
                         "bound_th": BOUND_TH, "features": "the trunk's last stage, L2-normalised per position",
                         "frames": max_frames or "all", "root": str(root)}}


def davis_report(d: dict) -> list[str]:
    """The ``davis`` dict as printed lines: one row per method, J, F and J&F in %."""
    s = d["settings"]
    lines = [f"{d['task']}: label propagation on DAVIS ({len(d['sequences'])} sequences in {s['root']}; top-k "
             f"{s['topk']}, radius {s['radius']}, temperature {s['temperature']}, frame 0 + {s['context']} context "
             "frames; frame 0's mask given)", "method          J %     F %   J&F %"]
    names = {"pretext": "pretext trunk", "random": "random trunks", "pixels": "Lab pixels", "flow": "DIS flow chain",
             "copy_first": "copy frame 0"}
    for m, label in names.items():
        lines.append(f"{label:<14}{100 * d[m]['J']:>6.1f}  {100 * d[m]['F']:>6.1f}  {100 * d[m]['JF']:>6.1f}")
    if "gain" in d:  # an older JSON has none
        g = d["gain"]
        lines.append(f"J&F over the random trunks: {100 * g['JF']:+.1f} points, 95% interval [{100 * g['ci'][0]:+.1f}, "
                     f"{100 * g['ci'][1]:+.1f}] (paired bootstrap over the {len(d['sequences'])} sequences)")
    return lines
