"""``pretextgen inspect OUT_DIR``: a terminal summary of a build, a contact sheet (``--sheet``), one
self-contained HTML page (``--html``) and the shortcut audit (``--audit``, see ``audit.py``).

Samples are drawn the way a person checks them, by one drawer per task (``DRAWERS``, keyed by task
name; ``draw_generic`` shows any image-like field otherwise): jigsaw tiles shuffled beside the same
tiles put back by the inverse permutation, the context patch pair on its source with the label as
an arrow, rotations with the crop turned back, masks overlaid, L / ab / colour side by side, frame
tuples with their indices, triplets labelled. A drawer returns (RGB uint8 panel, caption).
"""
from __future__ import annotations

import base64
import html
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import PretextgenError
from .shards import decode_member, read_manifest

log = logging.getLogger("pretextgen.inspect")
PANEL_HEIGHT = 150
SHEET_WIDTH = 1400
GREEN, RED, YELLOW, WHITE = (40, 220, 40), (240, 50, 50), (250, 220, 40), (255, 255, 255)


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
    n = m["samples"]
    params = " ".join(f"{k}={v}" for k, v in m["params"].items())
    lines = [f"task: {m['task']}: {t.summary}", f"  paper: {t.paper}", f"params: {params}",
             f"seed {m['seed']}, backend {m['backend']}/{m['device']}, pretextgen {m['version']}, schema {m['schema']}, "
             f"build {'complete' if m.get('complete') else 'INCOMPLETE'}",
             f"samples: {n} in {len(m['shards'])} shard(s), {size / 2**20:.1f} MB ({size / max(n, 1) / 1024:.1f} KiB per sample)"]
    params_ = make_params(t, m["params"])
    pixels = m.get("pixels", "png")
    fields = [f"{f.name}.{stored_ext(f, pixels)} {f.dtype} {tuple(f.shape(params_))}" for f in t.fields]
    lines.append("fields: " + ", ".join(fields) + ", cls (label), json (the plan)")
    lines += histogram_lines(m)
    lines.append(f"sources: {m['source']}: {m['source_files']} file(s), {m['sources_used']} used, "
                 f"{len(m['skipped'])} skipped")
    reasons = Counter(s["reason"].split(":")[0] for s in m["skipped"])
    for reason, k in reasons.most_common():
        examples = [s["source"] for s in m["skipped"] if s["reason"].split(":")[0] == reason][:3]
        lines.append(f"  skipped {k}: {reason} (e.g. {', '.join(examples)})")
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


def text(img: np.ndarray, s: str, org=(4, 14), color=WHITE, scale: float = 0.4) -> np.ndarray:
    import cv2

    img = np.ascontiguousarray(img)
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
    return img


def caption_above(img: np.ndarray, s: str, height: int = 18) -> np.ndarray:
    import cv2

    bar = np.full((height, img.shape[1], 3), 245, np.uint8)
    cv2.putText(bar, s[: max(8, img.shape[1] // 7)], (3, height - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (20, 20, 20), 1,
                cv2.LINE_AA)
    return np.concatenate([bar, img], 0)


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
            parts.append(caption_above(row(list(a), 2, PANEL_HEIGHT // 2 if len(a) > 4 else PANEL_HEIGHT), name))
        elif a.ndim == 3 and a.shape[-1] in (1, 2, 3) and min(a.shape[:2]) >= 8:
            parts.append(caption_above(fit(a), name))
        elif a.ndim == 3 and min(a.shape[1:]) >= 8:  # a stack of gray frames or label maps
            parts.append(caption_above(row(list(a), 2), name))
        elif a.ndim == 2 and min(a.shape) >= 8:
            parts.append(caption_above(fit(a), name))
    if not parts:
        raise PretextgenError(f"task {meta.get('task')}: no image-like field to draw")
    return row(parts, 8, max(p.shape[0] for p in parts)), f"label {meta['label']}"


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
    return row([text(fit(img), f"stored, k={k}"), text(fit(upright(img, k)), "turned back")]), \
        f"rotation {90 * k} deg CCW (label {meta['label']})"


@drawer("jigsaw")
def draw_jigsaw(sample, meta, ctx):
    """Tiles as stored (shuffled), beside the same tiles put back (``put_back``): the right grid
    must show the crop in order, with the gaps."""
    tiles = np.asarray(sample["tiles"])
    g = int(round(np.sqrt(len(tiles))))
    perm = meta["permutation"]
    back = list(put_back(tiles, perm))
    shuffled = grid([text(to_rgb(t), str(j), (2, 10), YELLOW, 0.3) for j, t in enumerate(tiles)], g)
    return row([text(fit(shuffled), "stored"), text(fit(grid(back, g, 6)), "put back")]), \
        f"permutation {meta['label']}: {perm}" + (" gray" if meta.get("gray") else "")


@drawer("context")
def draw_context(sample, meta, ctx):
    """The two patch boxes on the source (centre green, neighbour red) with the label as an arrow,
    then the stored [centre, neighbour] patches."""
    import cv2

    from .tasks.context import NEIGHBOURS

    names = ["top-left", "top", "top-right", "left", "right", "bottom-left", "bottom", "bottom-right"]
    label = int(meta["label"])
    patches = list(np.asarray(sample["patches"]))
    src = ctx.source(meta["source"])
    parts = []
    if src is not None:
        (c0, c1) = meta["boxes"]
        pad = (c0[2] - c0[0]) * 1.5
        x0, y0 = max(0, int(min(c0[0], c1[0]) - pad)), max(0, int(min(c0[1], c1[1]) - pad))
        x1 = min(src.shape[1], int(max(c0[2], c1[2]) + pad))
        y1 = min(src.shape[0], int(max(c0[3], c1[3]) + pad))
        s = PANEL_HEIGHT * 2 / (y1 - y0)
        view = cv2.resize(np.ascontiguousarray(src[y0:y1, x0:x1]), (max(1, int((x1 - x0) * s)), PANEL_HEIGHT * 2),
                          interpolation=cv2.INTER_AREA)

        def pt(x, y):
            return int((x - x0) * s), int((y - y0) * s)

        for b, col in ((c0, GREEN), (c1, RED)):
            cv2.rectangle(view, pt(b[0], b[1]), pt(b[2], b[3]), col, 2)
        start, end = arrow(meta)
        cc, nc = pt(*start), pt(*end)
        cv2.arrowedLine(view, cc, nc, YELLOW, 2, cv2.LINE_AA, tipLength=0.2)
        parts.append(text(view, f"label {label}: {names[label]}"))
    else:  # no source here: the 3x3 layout with the arrow
        lay = np.full((90, 90, 3), 60, np.uint8)
        dx, dy = NEIGHBOURS[label]
        cv2.rectangle(lay, (31, 31), (59, 59), GREEN, 2)
        cv2.rectangle(lay, (31 + 30 * dx, 31 + 30 * dy), (59 + 30 * dx, 59 + 30 * dy), RED, 2)
        cv2.arrowedLine(lay, (45, 45), (45 + 30 * dx, 45 + 30 * dy), YELLOW, 2, tipLength=0.3)
        parts.append(fit(lay))
    parts += [text(fit(patches[0]), "centre"), text(fit(patches[1]), "neighbour")]
    h = max(p.shape[0] for p in parts)
    return row(parts, 4, h), f"neighbour {names[label]} (label {label})"


@drawer("inpainting")
def draw_inpainting(sample, meta, ctx):
    """Masked input, the mask overlaid on it, and the target."""
    img = sample["image"]
    return row([text(fit(img), "input"), text(fit(overlay(img, sample["mask"])), "mask"),
                text(fit(sample["target"]), "target")]), f"{meta.get('kind', '')} coverage {meta.get('coverage', 0):.2f}"


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
    return row([text(fit(img), "image"), text(fit(seen), "visible")]), f"{int(mask.sum())} of {len(mask)} masked"


@drawer("colorization")
@drawer("splitbrain")
def draw_colorization(sample, meta, ctx):
    """L, the ab target (colour at fixed L), and L with the target's colours (ab upsampled)."""
    import cv2

    L = np.asarray(sample["L"], np.float32)
    ab = np.asarray(sample["ab_target"] if "ab_target" in sample else sample["ab"], np.float32)
    ab_up = cv2.resize(ab, L.shape[::-1], interpolation=cv2.INTER_NEAREST)
    return row([text(fit(L), "L"), text(fit(lab_to_rgb(np.full(ab.shape[:2], 60.0), ab)), "ab target"),
                text(fit(lab_to_rgb(L, ab_up)), "L + ab")]), "colour target"


@drawer("frame_order")
def draw_frame_order(sample, meta, ctx):
    """The three frames in the shown order, each with its frame index."""
    frames = list(np.asarray(sample["frames"]))
    idx = meta.get("frames", [None] * len(frames))
    kind = "ordered" if int(meta["label"]) == 1 else "shuffled"
    return row([text(fit(f), f"frame {i}") for f, i in zip(frames, idx)]), \
        f"{kind} ({meta.get('order', '')}), motion {meta.get('motion', 0):.1f}"


@drawer("track")
def draw_track(sample, meta, ctx):
    """Query, positive (tracked), negative, with their frames."""
    q, p, n = list(np.asarray(sample["patches"]))
    tr = meta.get("track", {})
    frames = tr.get("frames", [None, None])
    kinds = ["other clip", "same clip, distant", "same frame"]
    return row([text(fit(q), f"query f{frames[0]}"), text(fit(p), f"positive f{frames[-1]}"),
                text(fit(n), "negative")]), f"negative: {kinds[int(meta['label'])] if int(meta['label']) < 3 else meta['label']}"


@drawer("video_colorization")
def draw_video_colorization(sample, meta, ctx):
    """Reference in colour, then each frame's gray input above its cluster-id target."""
    gray = list(np.asarray(sample["gray"]))
    bins = np.asarray(sample["bins"])
    colours = _palette(int(bins.max()) + 1)
    parts = [text(fit(sample["reference"]), "reference")]
    for k, (g, b) in enumerate(zip(gray, bins)):
        label = "ref" if k == 0 else f"t{k}"
        parts.append(np.concatenate([fit(g, PANEL_HEIGHT // 2), fit(colours[b], PANEL_HEIGHT // 2)], 0))
        parts[-1] = text(parts[-1], label)
    return row(parts, 4), f"frames {meta.get('frames')}"


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
    return row([text(fit(v), f"view {k}") for k, v in enumerate(views)]), f"positive pair, group {meta['label']}"


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


def make_context(out: Path) -> Context:
    """Params and a source loader (None when the build's sources are not on this machine)."""
    from .config import make_params
    from .registry import get_task
    from .sources import check_source, load_rgb
    from .verify import source_root

    m = read_manifest(out)
    params = make_params(get_task(m["task"]), m["params"])
    try:
        root = source_root(m)
    except PretextgenError:
        root = None

    def source(rel: str):
        if root is None or get_task(m["task"]).input != "image":
            return None
        src, _ = check_source(root, rel, 1)
        return None if src is None else load_rgb(root, src)

    return Context(m, params, source)


def pick(total: int, n: int) -> list[int]:
    """n positions spread evenly over the build."""
    return sorted(set(np.linspace(0, total - 1, min(n, total)).round().astype(int).tolist()))


def drawn_samples(out: Path, n: int):
    """[(panel, caption, sample)] for n samples spread over the build."""
    ctx = make_context(out)
    samples = read_samples(out, pick(ctx.manifest["samples"], n))
    return [(*draw(s, ctx), s) for s in samples]


def contact_sheet(panels: list[tuple[np.ndarray, str]], width: int = SHEET_WIDTH) -> np.ndarray:
    """Captioned panels laid out in rows (a panel wider than the sheet is shrunk)."""
    import cv2

    boxes = []
    for panel, caption in panels:
        if panel.shape[1] > width - 8:
            s = (width - 8) / panel.shape[1]
            panel = cv2.resize(panel, (width - 8, max(1, int(panel.shape[0] * s))), interpolation=cv2.INTER_AREA)
        boxes.append(caption_above(panel, caption))
    rows_, cur, used = [], [], 0
    for b in boxes:
        if cur and used + b.shape[1] + 8 > width:
            rows_.append(cur)
            cur, used = [], 0
        cur.append(b)
        used += b.shape[1] + 8
    if cur:
        rows_.append(cur)
    strips = []
    for r in rows_:
        h = max(b.shape[0] for b in r)
        strip = np.full((h + 8, width, 3), 255, np.uint8)
        x = 4
        for b in r:
            strip[4 : 4 + b.shape[0], x : x + b.shape[1]] = b
            x += b.shape[1] + 8
        strips.append(strip)
    return np.concatenate(strips, 0)


def png_bytes(rgb: np.ndarray) -> bytes:
    from .shards import encode_array

    return encode_array("png", rgb)


# ---------------------------------------------------------------- HTML
def _svg_bars(values: list[tuple[str, int]], title: str, width: int = 720, height: int = 160) -> str:
    top = max((v for _, v in values), default=0) or 1
    bw = width / max(len(values), 1)
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
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>pretextgen inspect: "
             f"{html.escape(m['task'])}</title><style>body{{font-family:sans-serif;margin:1.5em;max-width:1500px}}"
             "figure{display:inline-block;margin:.5em;vertical-align:top}img{display:block;image-rendering:pixelated}"
             "rect{fill:#4a7fb5}pre{background:#f4f4f4;padding:.5em;overflow-x:auto}</style></head><body>",
             f"<h1>{html.escape(m['task'])}: {m['samples']} samples</h1>",
             f"<pre id='summary'>{html.escape(chr(10).join(summary))}</pre>", "<h2>Histograms</h2>"]
    if hist:
        parts.append(_svg_bars([(f"label {c}", hist.get(c, 0)) for c in range(k)], "samples per label"))
    parts.append(_svg_bars([(s["name"], s["bytes"]) for s in m["shards"]], "bytes per shard"))
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


def inspect_cmd(out_dir, sheet=None, page=None, samples: int = 12, audit: bool = False) -> int:
    """The ``pretextgen inspect`` command: prints the summary; writes the sheet / page if asked."""
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
        drawn = drawn_samples(out, samples)
        if sheet:
            Path(sheet).write_bytes(png_bytes(contact_sheet([(p, c) for p, c, _ in drawn])))
            print(f"contact sheet: {sheet} ({len(drawn)} samples)")
        if page:
            Path(page).write_text(html_page(out, drawn, lines, audit_lines))
            print(f"page: {page}")
    return 0
