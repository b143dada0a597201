"""``pretextgen inspect OUT_DIR``: a terminal summary of a build, a contact sheet (``--sheet``), one
self-contained HTML page (``--html``) and the shortcut audit (``--audit``, see ``audit.py``).

Samples are drawn the way a person checks them, by one drawer per task (``DRAWERS``, keyed by task
name; ``draw_generic`` shows any image-like field otherwise): jigsaw tiles shuffled beside the same
tiles put back by the inverse permutation, the context patch pair on its source with the label as
an arrow, rotations with the crop turned back, masks overlaid, L / ab / colour side by side, frame
tuples with their indices, triplets labelled. A drawer returns (RGB uint8 panel, caption); labels
sit on light strips above the pixels (``tagged``, ``labeled``), captions are wrapped, never cut.
"""
from __future__ import annotations

import base64
import html
import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import PretextgenError
from .shards import decode_member, read_manifest

log = logging.getLogger("pretextgen.inspect")
PANEL_HEIGHT = 150
COMPACT_HEIGHT = 120  # context (three samples to a sheet row) and split-brain (two to a row)
SHEET_WIDTH = 1400  # at most; a sheet is as wide as its widest row
GREEN, RED, YELLOW, WHITE = (40, 220, 40), (240, 50, 50), (250, 220, 40), (255, 255, 255)
# Labels: dark text on a light strip beside the pixels (outlined text over pixels misreads "5" as "#").
INK, PAPER, CAPTION_PAPER = (20, 20, 20), (242, 242, 242), (218, 224, 234)
TAG_SIZE, CAPTION_SIZE, PAD = 13, 14, 4


# ---------------------------------------------------------------- reading
def read_samples(out: Path, positions) -> list[dict]:
    """Decoded samples at the given positions (0-based, manifest order): {field: array, "label",
    "json", "index"}. Only the chosen samples' members are read."""
    from .loader import _Damage, _read_segment

    out = Path(out)
    m = read_manifest(out)
    wanted = sorted(set(int(p) for p in positions))
    result, base = [], 0
    for rec in m["shards"]:
        lo, hi = base, base + rec["samples"]
        inside = [p - lo for p in wanted if lo <= p < hi]
        base = hi
        if not inside:
            continue
        chosen = set(inside)
        for p, item in _read_segment(out / rec["name"], rec["first_index"], min(inside), max(inside) + 1,
                                     list(m["fields"]), chosen.__contains__):
            if item is None:
                continue
            if isinstance(item, _Damage):
                raise PretextgenError(item.message + "; run `pretextgen verify` for the full list")
            sample = {}
            for suffix, data in item.items():
                name = suffix.rsplit(".", 1)[0]
                sample["label" if name == "cls" else name] = decode_member(suffix, data)
            sample["index"] = rec["first_index"] + p
            result.append(sample)
    return result


# ---------------------------------------------------------------- summary
def summary_lines(out: Path) -> list[str]:
    from .config import make_params
    from .registry import get_task, stored_ext

    m = read_manifest(out)
    t = get_task(m["task"])
    size = sum(s["bytes"] for s in m["shards"])
    n = written(m)
    params = " ".join(f"{k}={v}" for k, v in m["params"].items())
    lines = [f"task: {m['task']}: {t.summary}", f"  paper: {t.paper}", f"params: {params}",
             f"seed {m['seed']}, backend {m['backend']}/{m['device']}, pretextgen {m['version']}, schema {m['schema']}, "
             f"build {'complete' if m.get('complete') else 'INCOMPLETE'}",
             *([] if m.get("complete") else [f"  {n} of {m['samples']} samples written; "
                                             "finish it with `pretextgen build ... --resume`"]),
             f"samples: {n} in {len(m['shards'])} shard(s), {size / 2**20:.1f} MB ({size / max(n, 1) / 1024:.1f} KiB per sample)"]
    params_ = make_params(t, m["params"])
    pixels = m.get("pixels", "png")
    fields = [f"{f.name}.{stored_ext(f, pixels)} {f.dtype} {tuple(f.shape(params_))}" for f in t.fields]
    lines.append("fields: " + ", ".join(fields) + ", cls (label), json (the plan)")
    lines += histogram_lines(m)
    lines.append(f"sources: {m['source']}: {m['source_files']} file(s), {m['sources_used']} used, "
                 f"{len(m['skipped'])} skipped")
    from .sources import skip_summary, slow_summary

    lines += [f"  {line}" for line in skip_summary(m["skipped"])]
    lines += [f"  redrawn {n}: {reason} (plans drawn again from other sources)"
              for reason, n in m.get("rejected_plans", {}).items()]
    lines += [f"  {line}" for line in slow_summary(m.get("slow_sources", []))]
    return lines


def histogram_lines(m: dict, width: int = 40, rows: int = 16) -> list[str]:
    hist = {int(k): v for k, v in m.get("label_histogram", {}).items()}
    k = m["num_classes"]
    if not hist:
        return [f"labels: {k} classes (one per plan: no histogram to show)" if k else "labels: none recorded"]
    counts = np.array([hist.get(c, 0) for c in range(max(k, max(hist) + 1))])
    total = counts.sum()
    out = [f"labels: {k} classes, {int((counts > 0).sum())} used; per class min {counts.min()}, "
           f"max {counts.max()}, expected {total / max(k, 1):.1f}"]
    if len(counts) > rows:  # group classes into equal ranges
        edges = np.linspace(0, len(counts), rows + 1).astype(int)
        groups = [(f"{a}-{b - 1}", counts[a:b].sum()) for a, b in zip(edges[:-1], edges[1:])]
    else:
        groups = [(str(c), v) for c, v in enumerate(counts)]
    top = max(v for _, v in groups) or 1
    out += [f"  {name:>9} {'#' * int(round(width * v / top)):<{width}} {v}" for name, v in groups]
    return out


# ---------------------------------------------------------------- drawing helpers
@dataclass
class Context:
    manifest: dict
    params: object
    source: Callable[[str], np.ndarray | None]  # relative path -> RGB image, or None if unavailable
    looked_in: str = ""  # where the sources were looked for
    root_found: bool = True
    missing: list[str] = field(default_factory=list)  # sources a drawer asked for and did not get

    def missing_note(self) -> str | None:
        """One line for the terminal when samples were drawn without their source, else None."""
        if not self.missing:
            return None
        task = self.manifest["task"]
        if not self.root_found:
            return (f"note: sources not found at {self.looked_in}; {task} samples drawn without their source "
                    "photo (pass --source DIR)")
        return (f"note: {len(set(self.missing))} source file(s) not found under {self.looked_in} (e.g. "
                f"{self.missing[0]}); {task} samples drawn without their source photo (pass --source DIR)")


def to_rgb(a: np.ndarray) -> np.ndarray:
    """Any image-like array as uint8 HxWx3: gray replicated, floats stretched to 0..255."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] == 2:  # ab: as colour at L = 60 (uint8 ab is offset by 128)
        ab = a.astype(np.float32) - (128 if a.dtype == np.uint8 else 0)
        return lab_to_rgb(np.full(a.shape[:2], 60.0), ab)
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        lo, hi = float(a.min()), float(a.max())
        a = np.clip((a - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.ascontiguousarray(a[..., :3])


def lab_to_rgb(L: np.ndarray, ab: np.ndarray) -> np.ndarray:
    import cv2

    lab = np.dstack([np.asarray(L, np.float32), np.asarray(ab, np.float32)])
    return np.clip(np.rint(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB) * 255), 0, 255).astype(np.uint8)


def fit(a: np.ndarray, height: int = PANEL_HEIGHT) -> np.ndarray:
    import cv2

    a = to_rgb(a)
    h, w = a.shape[:2]
    width = max(1, int(round(w * height / h)))
    interp = cv2.INTER_NEAREST if h < height else cv2.INTER_AREA
    return cv2.resize(a, (width, height), interpolation=interp)


def row(images, gap: int = 4, height: int = PANEL_HEIGHT) -> np.ndarray:
    parts = []
    for k, im in enumerate(images):
        if k:
            parts.append(np.full((height, gap, 3), 255, np.uint8))
        parts.append(fit(im, height))
    return np.concatenate(parts, 1)


def grid(tiles, cols: int, gap: int = 2) -> np.ndarray:
    """Equal-sized tiles on a grid (row-major), with white gaps."""
    tiles = [to_rgb(t) for t in tiles]
    h, w = tiles[0].shape[:2]
    rows_ = -(-len(tiles) // cols)
    out = np.full((rows_ * h + (rows_ - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = t
    return out


@lru_cache(maxsize=4)
def _font(size: int):
    """PIL's bundled font at ``size`` px (no font file needed; Pillow >= 10.1 with FreeType), else
    its small bitmap font."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def wrap(s: str, width: int, size: int = TAG_SIZE) -> list[str]:
    """``s`` in lines of at most ``width`` px: broken at spaces, inside a word only when the word
    alone is wider. Nothing is dropped."""
    font = _font(size)
    lines: list[str] = []
    for para in s.split("\n"):
        cur = ""
        for word in para.split(" "):
            cand = f"{cur} {word}" if cur else word
            if font.getlength(cand) <= width:
                cur = cand
                continue
            if cur:
                lines.append(cur)
            while len(word) > 1 and font.getlength(word) > width:
                k = 1
                while k < len(word) - 1 and font.getlength(word[: k + 1]) <= width:
                    k += 1
                lines.append(word[:k])
                word = word[k:]
            cur = word
        lines.append(cur)
    return lines


def strip(s: str, width: int, size: int = TAG_SIZE, lines: int = 0, paper=PAPER) -> np.ndarray:
    """A light strip ``width`` px wide with ``s`` in dark text, wrapped (at least ``lines`` lines)."""
    from PIL import Image, ImageDraw

    font = _font(size)
    rows_ = wrap(s, max(width - 2 * PAD, 1), size)
    lh = font.getbbox("Agj|")[3] + 3
    im = Image.new("RGB", (width, max(len(rows_), lines) * lh + 4), paper)
    d = ImageDraw.Draw(im)
    for k, r in enumerate(rows_):
        d.text((PAD, 2 + k * lh), r, font=font, fill=INK)
    return np.asarray(im).copy()


def labeled(img: np.ndarray, s: str, lines: int = 0, size: int = TAG_SIZE, paper=PAPER) -> np.ndarray:
    """``img`` under a strip holding ``s``."""
    img = to_rgb(img)
    return np.concatenate([strip(s, img.shape[1], size, lines, paper), img], 0)


def hstack(parts, gap: int = 4) -> np.ndarray:
    """Parts side by side, top-aligned, white below the shorter ones and in the gaps (no scaling)."""
    parts = [to_rgb(p) for p in parts]
    h = max(p.shape[0] for p in parts)
    out = np.full((h, sum(p.shape[1] for p in parts) + gap * (len(parts) - 1), 3), 255, np.uint8)
    x = 0
    for p in parts:
        out[: p.shape[0], x : x + p.shape[1]] = p
        x += p.shape[1] + gap
    return out


def tagged(items, height: int = PANEL_HEIGHT, gap: int = 4) -> np.ndarray:
    """[(image, tag)]: each image fitted to ``height``, its tag on a strip above (equal strips)."""
    fitted = [fit(im, height) for im, _ in items]
    n = max(len(wrap(t, f.shape[1] - 2 * PAD)) for f, (_, t) in zip(fitted, items))
    return hstack([labeled(f, t, n) for f, (_, t) in zip(fitted, items)], gap)


def badge(img: np.ndarray, s: str, size: int = TAG_SIZE) -> np.ndarray:
    """``s`` on a light box in the top-left corner of ``img`` (for labels that need their place)."""
    b = strip(s, int(_font(size).getlength(s)) + 2 * PAD, size)
    img = to_rgb(img).copy()
    h, w = min(b.shape[0], img.shape[0]), min(b.shape[1], img.shape[1])
    img[:h, :w] = b[:h, :w]
    return img


def overlay(image: np.ndarray, mask: np.ndarray, color=RED, alpha: float = 0.5) -> np.ndarray:
    """``mask`` (nonzero = marked) tinted over ``image``."""
    import cv2

    img = to_rgb(image).astype(np.float32)
    m = np.asarray(mask) > 0
    if m.shape != img.shape[:2]:
        m = cv2.resize(m.astype(np.uint8), img.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
    img[m] = img[m] * (1 - alpha) + np.array(color, np.float32) * alpha
    return img.astype(np.uint8)


# ---------------------------------------------------------------- drawers
DRAWERS: dict[str, Callable] = {}


def drawer(name: str):
    def register(fn):
        DRAWERS[name] = fn
        return fn

    return register


def draw_generic(sample: dict, meta: dict, ctx: Context):
    """Every image-like field: images, stacks (as a row), masks (gray), ab (colour at fixed L)."""
    parts = []
    for name, a in sample.items():
        a = np.asarray(a)
        if a.ndim == 4 and min(a.shape[1:3]) >= 8:
            parts.append(labeled(row(list(a), 2, PANEL_HEIGHT // 2 if len(a) > 4 else PANEL_HEIGHT), name))
        elif a.ndim == 3 and a.shape[-1] in (1, 2, 3) and min(a.shape[:2]) >= 8:
            parts.append(labeled(fit(a), name))
        elif a.ndim == 3 and min(a.shape[1:]) >= 8:  # a stack of gray frames or label maps
            parts.append(labeled(row(list(a), 2), name))
        elif a.ndim == 2 and min(a.shape) >= 8:
            parts.append(labeled(fit(a), name))
    if not parts:
        raise PretextgenError(f"task {meta.get('task')}: no image-like field to draw")
    return hstack(parts, 8), f"label {meta['label']}"


def upright(image: np.ndarray, k: int) -> np.ndarray:
    """A rotation sample turned back by -k x 90 deg: the crop as it was."""
    return np.rot90(image, -k)


def put_back(tiles: np.ndarray, permutation) -> np.ndarray:
    """Jigsaw tiles in grid order (row-major): stored tile j goes back to cell permutation[j]."""
    back = np.empty_like(tiles)
    back[list(permutation)] = tiles
    return back


def arrow(plan: dict) -> tuple[tuple[float, float], tuple[float, float]]:
    """Context: (centre of the centre box, centre of the neighbour box) in source px."""
    (a, b) = plan["boxes"]
    return ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2), ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)


@drawer("rotation")
def draw_rotation(sample, meta, ctx):
    """The sample as stored, then turned back by -k x 90 deg: the second must stand upright."""
    img, k = sample["image"], int(meta["k"])
    return tagged([(img, f"stored, k={k}"), (upright(img, k), "turned back")]), \
        f"rotation {90 * k} deg CCW (label {meta['label']})"


@drawer("jigsaw")
def draw_jigsaw(sample, meta, ctx):
    """Tiles as stored (shuffled, each with its number), beside the same tiles put back
    (``put_back``): the right grid must show the crop in order, with the gaps."""
    tiles = np.asarray(sample["tiles"])
    g = int(round(np.sqrt(len(tiles))))
    perm = [int(v) for v in meta["permutation"]]
    cell = max(8, (PANEL_HEIGHT - 2 * (g - 1)) // g)
    shuffled = grid([badge(fit(t, cell), str(j)) for j, t in enumerate(tiles)], g)
    back = grid([fit(t, cell) for t in put_back(tiles, perm)], g, 6)
    return tagged([(shuffled, "stored (tile numbers)"), (back, "put back")]), \
        f"permutation {meta['label']}: {perm}" + (", gray" if meta.get("gray") else "")


CONTEXT_NAMES = ["top-left", "top", "top-right", "left", "right", "bottom-left", "bottom", "bottom-right"]


def _context_view(src: np.ndarray, plan: dict, height: int, aspect=(0.75, 1.5)) -> np.ndarray:
    """The source around the two boxes (centre green, neighbour red, the label as a yellow arrow),
    ``height`` px tall, its width/height kept within ``aspect`` where the source allows."""
    import cv2

    (c0, c1) = plan["boxes"]
    H, W = src.shape[:2]
    pad = (c0[2] - c0[0]) * 1.5
    x0, y0 = max(0, min(c0[0], c1[0]) - pad), max(0, min(c0[1], c1[1]) - pad)
    x1, y1 = min(W, max(c0[2], c1[2]) + pad), min(H, max(c0[3], c1[3]) + pad)
    if x1 - x0 > aspect[1] * (y1 - y0):  # a left/right pair: show more above and below
        cy, half = (y0 + y1) / 2, (x1 - x0) / aspect[1] / 2
        y0, y1 = max(0, cy - half), min(H, cy + half)
    elif x1 - x0 < aspect[0] * (y1 - y0):
        cx, half = (x0 + x1) / 2, (y1 - y0) * aspect[0] / 2
        x0, x1 = max(0, cx - half), min(W, cx + half)
    x0, y0, x1, y1 = int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1))
    s = height / (y1 - y0)
    view = cv2.resize(np.ascontiguousarray(src[y0:y1, x0:x1]), (max(1, round((x1 - x0) * s)), height),
                      interpolation=cv2.INTER_AREA)

    def pt(x, y):
        return int((x - x0) * s), int((y - y0) * s)

    for b, col in ((c0, GREEN), (c1, RED)):
        cv2.rectangle(view, pt(b[0], b[1]), pt(b[2], b[3]), col, 2)
    start, end = arrow(plan)
    cv2.arrowedLine(view, pt(*start), pt(*end), YELLOW, 2, cv2.LINE_AA, tipLength=0.2)
    return view


def _context_layout(label: int) -> np.ndarray:
    """The 3x3 layout with the labelled neighbour and the arrow (drawn when the source is missing)."""
    import cv2

    from .tasks.context import NEIGHBOURS

    lay = np.full((90, 90, 3), 60, np.uint8)
    dx, dy = NEIGHBOURS[label]
    cv2.rectangle(lay, (31, 31), (59, 59), GREEN, 2)
    cv2.rectangle(lay, (31 + 30 * dx, 31 + 30 * dy), (59 + 30 * dx, 59 + 30 * dy), RED, 2)
    cv2.arrowedLine(lay, (45, 45), (45 + 30 * dx, 45 + 30 * dy), YELLOW, 2, tipLength=0.3)
    return lay


@drawer("context")
def draw_context(sample, meta, ctx):
    """The two patch boxes on the source (centre green, neighbour red) with the label as an arrow
    (the bare 3x3 layout, marked "source not found", when the source is not here), then the stored
    [centre, neighbour] patches, each with the channel it kept when the build dropped channels."""
    label = int(meta["label"])
    patches = list(np.asarray(sample["patches"]))
    src = ctx.source(meta["source"])
    first = (_context_view(src, meta, COMPACT_HEIGHT), "source") if src is not None else \
        (_context_layout(label), "source not found")
    who = ["centre", "neighbour"]
    keep = meta.get("keep_channel")
    tags = [f"{w}, kept {'RGB'[c]}" for w, c in zip(who, keep)] if keep else who
    caption = f"neighbour {CONTEXT_NAMES[label]} (label {label})"
    if keep:
        caption += f"; channel kept: {'RGB'[keep[0]]} (centre), {'RGB'[keep[1]]} (neighbour)"
    elif getattr(ctx.params, "chroma", None) == "project":
        caption += "; green-magenta removed"
    shrunk = [f"{w} {d[0]}x{d[1]}" for w, d in zip(who, meta.get("downsample") or []) if d]
    if shrunk:
        caption += "; downsampled: " + ", ".join(shrunk)
    return tagged([first, (patches[0], tags[0]), (patches[1], tags[1])], COMPACT_HEIGHT), caption


@drawer("inpainting")
def draw_inpainting(sample, meta, ctx):
    """Masked input, the mask overlaid on it, and the target."""
    img = sample["image"]
    return tagged([(img, "input"), (overlay(img, sample["mask"]), "mask"), (sample["target"], "target")]), \
        f"{meta.get('kind', '')} coverage {meta.get('coverage', 0):.2f}"


@drawer("mae")
def draw_mae(sample, meta, ctx):
    """The image, and the image with masked patches greyed out (what the encoder sees)."""
    img = np.asarray(sample["image"])
    mask = np.asarray(sample["mask"]).astype(bool)
    side = int(round(np.sqrt(len(mask))))
    p = img.shape[0] // side
    seen = img.copy()
    for k in np.flatnonzero(mask):
        r, c = divmod(int(k), side)
        seen[r * p : (r + 1) * p, c * p : (c + 1) * p] = 128
    return tagged([(img, "image"), (seen, "visible")]), f"{int(mask.sum())} of {len(mask)} masked"


def _ab_colour(ab: np.ndarray) -> np.ndarray:
    return lab_to_rgb(np.full(ab.shape[:2], 60.0), ab)


def _upsample(a: np.ndarray, shape) -> np.ndarray:
    import cv2

    return cv2.resize(np.asarray(a, np.float32), tuple(shape[::-1]), interpolation=cv2.INTER_NEAREST)


@drawer("colorization")
def draw_colorization(sample, meta, ctx):
    """L, the ab target (colour at fixed L), and L with the target's colours (ab upsampled)."""
    L = np.asarray(sample["L"], np.float32)
    ab = np.asarray(sample["ab_target"], np.float32)
    return tagged([(L, "L"), (_ab_colour(ab), "ab target"), (lab_to_rgb(L, _upsample(ab, L.shape)), "L + ab")]), \
        "colour target"


@drawer("splitbrain")
def draw_splitbrain(sample, meta, ctx):
    """Both halves of the crop: L -> ab (L, the nearest ab bin of each target pixel, L in those
    colours) and ab -> L (ab at fixed L, the target L bins as gray)."""
    from .lab import gamut_bins

    q = meta.get("quantization", {})
    L = np.asarray(sample["L"], np.float32)
    ab = np.asarray(sample["ab"], np.float32)
    ab_t = gamut_bins(int(q.get("grid_step", 10)))[np.asarray(sample["ab_bins"])[..., 0]]
    nl = int(q.get("l_bins", 100))
    L_t = (np.asarray(sample["L_bins"], np.float32) + 0.5) * (100.0 / nl)
    h = COMPACT_HEIGHT
    to_ab = tagged([(L, "L (input)"), (_ab_colour(ab_t), "ab bins (target)"),
                    (lab_to_rgb(L, _upsample(ab_t, L.shape)), "L + target")], h)
    to_l = tagged([(_ab_colour(ab), "ab (input)"), (lab_to_rgb(L_t, np.zeros((*L_t.shape, 2))), "L bins (target)")], h)
    return hstack([labeled(to_ab, "L -> ab", paper=WHITE), labeled(to_l, "ab -> L", paper=WHITE)], 12), \
        f"L -> ab ({len(gamut_bins(int(q.get('grid_step', 10))))} ab bins) and ab -> L ({nl} L bins)" + \
        (", flipped" if meta.get("flip") else "")


@drawer("frame_order")
def draw_frame_order(sample, meta, ctx):
    """The three frames in the shown order, each with its frame index."""
    frames = list(np.asarray(sample["frames"]))
    idx = meta.get("frames", [None] * len(frames))
    kind = "ordered" if int(meta["label"]) == 1 else "shuffled"
    return tagged([(f, f"frame {i}") for f, i in zip(frames, idx)]), \
        f"{kind} ({meta.get('order', '')}), motion {meta.get('motion', 0):.1f}"


@drawer("track")
def draw_track(sample, meta, ctx):
    """Query, positive (tracked), negative, with their frames."""
    q, p, n = list(np.asarray(sample["patches"]))
    tr = meta.get("track", {})
    frames = tr.get("frames", [None, None])
    kinds = ["other clip", "same clip, distant", "same frame"]
    label = int(meta["label"])
    return tagged([(q, f"query f{frames[0]}"), (p, f"positive f{frames[-1]}"), (n, "negative")]), \
        f"negative: {kinds[label] if label < 3 else label}"


@drawer("video_colorization")
def draw_video_colorization(sample, meta, ctx):
    """Reference in colour, then each frame's gray input above its cluster-id target."""
    gray = list(np.asarray(sample["gray"]))
    bins = np.asarray(sample["bins"])
    colours = _palette(int(bins.max()) + 1)
    items = [(sample["reference"], "reference")]
    for k, (g, b) in enumerate(zip(gray, bins)):
        items.append((np.concatenate([fit(g, PANEL_HEIGHT // 2), fit(colours[b], PANEL_HEIGHT // 2)], 0),
                      "ref" if k == 0 else f"t{k}"))
    return tagged(items), f"frames {meta.get('frames')}"


def _palette(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(40, 256, size=(max(n, 1), 3)).astype(np.uint8)


@drawer("exemplar")
def draw_exemplar(sample, meta, ctx):
    """All transformed patches of the surrogate class."""
    patches = list(np.asarray(sample["patches"]))
    return fit(grid(patches, 8), PANEL_HEIGHT), f"surrogate class {meta['label']}: {len(patches)} patches"


@drawer("contrastive")
def draw_contrastive(sample, meta, ctx):
    views = list(np.asarray(sample["views"]))
    return tagged([(v, f"view {k}") for k, v in enumerate(views)]), f"positive pair, group {meta['label']}"


def draw(sample: dict, ctx: Context):
    """(panel, caption) of one decoded sample: the task's drawer, or the generic one."""
    meta = sample["json"]
    fields = {k: v for k, v in sample.items() if k not in ("json", "label", "index")}
    fn = DRAWERS.get(meta["task"], draw_generic)
    try:
        panel, caption = fn(fields, meta, ctx)
    except (KeyError, IndexError, ValueError) as e:  # a task changed its fields: still show the pixels
        log.warning("the %s drawer failed (%s: %s); drawing its fields generically", meta["task"], type(e).__name__, e)
        panel, caption = draw_generic(fields, meta, ctx)
    return panel, f"#{sample['index']}: {caption}"


def make_context(out: Path, source=None) -> Context:
    """Params and a source loader: the build's sources (``source`` if given, else where the
    manifest says, see ``verify.source_root``), None for a source that is not on this machine (the
    context records which, for ``Context.missing_note``)."""
    from .config import make_params
    from .registry import get_task
    from .sources import check_source, load_rgb
    from .verify import source_root

    m = read_manifest(out)
    task = get_task(m["task"])
    params = make_params(task, m["params"])
    tried = [str(source)] if source is not None else list(dict.fromkeys(
        str(v) for v in (m.get("source_path"), m.get("source")) if v))
    try:
        root = source_root(m, source)
    except PretextgenError:
        root = None
    missing: list[str] = []

    def load(rel: str):
        if task.input != "image":
            return None
        src = None if root is None else check_source(root, rel, 1)[0]
        if src is None:
            missing.append(rel)
            return None
        return load_rgb(root, src)

    looked_in = str(root) if root is not None else " or ".join(tried) or "?"
    return Context(m, params, load, looked_in, root is not None, missing)


def written(m: dict) -> int:
    """Samples the build's shards hold (fewer than ``m["samples"]`` asked when it is incomplete)."""
    return sum(int(s["samples"]) for s in m["shards"])


def pick(total: int, n: int) -> list[int]:
    """n positions spread evenly over the build."""
    return sorted(set(np.linspace(0, total - 1, min(n, total)).round().astype(int).tolist()))


def drawn_samples(out: Path, n: int, ctx: Context | None = None):
    """[(panel, caption, sample)] for n samples spread over what the build has written."""
    ctx = ctx or make_context(out)
    samples = read_samples(out, pick(written(ctx.manifest), n))
    return [(*draw(s, ctx), s) for s in samples]


def contact_sheet(panels: list[tuple[np.ndarray, str]], width: int = SHEET_WIDTH) -> np.ndarray:
    """Captioned panels laid out in rows of at most ``width`` px (a wider panel is shrunk); the
    sheet is as wide as its widest row. Captions are wrapped, never cut."""
    import cv2

    boxes = []
    for panel, caption in panels:
        if panel.shape[1] > width - 8:
            s = (width - 8) / panel.shape[1]
            panel = cv2.resize(panel, (width - 8, max(1, int(panel.shape[0] * s))), interpolation=cv2.INTER_AREA)
        boxes.append(labeled(panel, caption, size=CAPTION_SIZE, paper=CAPTION_PAPER))
    rows_, cur, used = [], [], 0
    for b in boxes:
        if cur and used + b.shape[1] + 8 > width:
            rows_.append(cur)
            cur, used = [], 0
        cur.append(b)
        used += b.shape[1] + 8
    if cur:
        rows_.append(cur)
    width = max(sum(b.shape[1] + 8 for b in r) for r in rows_)
    bands = []
    for r in rows_:
        band = np.full((max(b.shape[0] for b in r) + 8, width, 3), 255, np.uint8)
        x = 4
        for b in r:
            band[4 : 4 + b.shape[0], x : x + b.shape[1]] = b
            x += b.shape[1] + 8
        bands.append(band)
    return np.concatenate(bands, 0)


def png_bytes(rgb: np.ndarray) -> bytes:
    from .shards import encode_array

    return encode_array("png", rgb)


# ---------------------------------------------------------------- HTML
def _svg_bars(values: list[tuple[str, int]], title: str, width: int = 720, height: int = 160,
              max_bar: int = 40) -> str:
    """Bars at most ``max_bar`` px wide: a few values make a narrow chart, not wide blocks."""
    top = max((v for _, v in values), default=0) or 1
    bw = min(width / max(len(values), 1), max_bar)
    width = max(int(np.ceil(bw * len(values))), 160)
    bars = []
    for k, (name, v) in enumerate(values):
        h = (height - 20) * v / top
        bars.append(f'<rect x="{k * bw:.2f}" y="{height - 20 - h:.2f}" width="{max(bw - 1, 0.5):.2f}" '
                    f'height="{h:.2f}"><title>{html.escape(name)}: {v}</title></rect>')
    return (f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'role="img" aria-label="{html.escape(title)}">{"".join(bars)}'
            f'<text x="0" y="{height - 4}" font-size="11">{html.escape(values[0][0]) if values else ""}</text>'
            f'<text x="{width}" y="{height - 4}" font-size="11" text-anchor="end">'
            f'{html.escape(values[-1][0]) if values else ""}</text></svg>'
            f'<figcaption>{html.escape(title)}</figcaption></figure>')


def html_page(out: Path, drawn, summary: list[str], audit_lines: list[str] | None = None) -> str:
    """One page, no external resource: images inline as data: URIs, histograms as inline SVG."""
    m = read_manifest(out)
    hist = {int(k): v for k, v in m.get("label_histogram", {}).items()}
    k = max(m["num_classes"], max(hist, default=-1) + 1)
    incomplete = "" if m.get("complete") else f" (INCOMPLETE build: {m['samples']} asked)"
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>pretextgen inspect: "
             f"{html.escape(m['task'])}</title><style>body{{font-family:sans-serif;margin:1.5em;max-width:1500px}}"
             "figure{display:inline-block;margin:.5em;vertical-align:top}img{display:block;image-rendering:pixelated}"
             "rect{fill:#4a7fb5}pre{background:#f4f4f4;padding:.5em;white-space:pre-wrap;overflow-wrap:anywhere}"
             "</style></head><body>",
             f"<h1>{html.escape(m['task'])}: {written(m)} samples{incomplete}</h1>",
             f"<pre id='summary'>{html.escape(chr(10).join(summary))}</pre>", "<h2>Histograms</h2>"]
    if hist:
        parts.append(_svg_bars([(f"label {c}", hist.get(c, 0)) for c in range(k)], "samples per label"))
    if len(m["shards"]) > 1:
        parts.append(_svg_bars([(s["name"], s["bytes"]) for s in m["shards"]], "bytes per shard"))
    else:  # one bar says nothing
        parts.append("<p id='shards'>" + "".join(f"one shard: {html.escape(s['name'])}, {s['bytes'] / 2**20:.1f} MB"
                                                 for s in m["shards"]) + ("" if m["shards"] else "no shard yet") + "</p>")
    if audit_lines:
        parts.append(f"<h2>Shortcut audit</h2><pre id='audit'>{html.escape(chr(10).join(audit_lines))}</pre>")
    parts.append("<h2>Samples</h2>")
    for panel, caption, sample in drawn:
        uri = "data:image/png;base64," + base64.b64encode(png_bytes(panel)).decode()
        plan = json.dumps(sample["json"], indent=1, sort_keys=True)
        parts.append(f"<figure class='sample'><img src='{uri}' width='{panel.shape[1]}' height='{panel.shape[0]}' "
                     f"alt='{html.escape(caption, quote=True)}'><figcaption>{html.escape(caption)}</figcaption>"
                     f"<details><summary>plan (JSON)</summary><pre>{html.escape(plan)}</pre></details></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def inspect_cmd(out_dir, sheet=None, page=None, samples: int = 12, audit: bool = False, source=None) -> int:
    """The ``pretextgen inspect`` command: prints the summary; writes the sheet / page if asked.
    ``source``: where the build's sources are now (default: the manifest's)."""
    out = Path(out_dir)
    if not (out / "manifest.json").exists():
        raise PretextgenError(f"{out} holds no manifest.json: not a pretextgen build")
    if samples < 1:
        raise PretextgenError("--samples must be at least 1")
    lines = summary_lines(out)
    print("\n".join(lines))
    audit_lines = None
    if audit:
        from .audit import audit as run_audit

        try:
            audit_lines = run_audit(out).lines()
        except PretextgenError as e:  # a task without classes to predict: say so, draw anyway
            audit_lines = [f"shortcut audit: not applicable: {e}"]
        print("\n".join(audit_lines))
    if sheet or page:
        ctx = make_context(out, source)
        drawn = drawn_samples(out, samples, ctx)
        note = ctx.missing_note()
        if note:
            print(note)
        if sheet and not drawn:
            print("contact sheet: not written (the build holds no samples yet)")
        elif sheet:
            Path(sheet).write_bytes(png_bytes(contact_sheet([(p, c) for p, c, _ in drawn])))
            print(f"contact sheet: {sheet} ({len(drawn)} samples)")
        if page:
            Path(page).write_text(html_page(out, drawn, lines, audit_lines))
            print(f"page: {page}")
    return 0
