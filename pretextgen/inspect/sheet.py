"""Sample panels and the contact sheet: each sample drawn by its task's ``Task.draw`` (the generic
drawer shows any image-like field otherwise), captioned, laid out in rows."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..drawing import CAPTION_PAPER, CAPTION_SIZE, PANEL_HEIGHT, fit, hstack, labeled, row
from ..errors import PretextgenError
from ..shards import read_manifest, read_samples
from .summary import written

log = logging.getLogger("pretextgen.inspect")
SHEET_WIDTH = 1400  # at most; a sheet is as wide as its widest row


@dataclass
class Context:
    """What a drawer may need beyond the sample: the manifest, the params and the sources."""

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


def make_context(out: Path, source=None) -> Context:
    """Params and a source loader: the build's sources (``source`` if given, else where the
    manifest says, see ``verify.source_root``), None for a source that is not on this machine (the
    context records which, for ``Context.missing_note``)."""
    from ..config import make_params
    from ..registry import get_task, source_kind
    from ..sources import check_source, load_rgb
    from ..verify import source_root

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
        if not source_kind(task.input).pictures:
            return None
        src = None if root is None else check_source(root, rel, 1)[0]
        if src is None:
            missing.append(rel)
            return None
        return load_rgb(root, src)

    looked_in = str(root) if root is not None else " or ".join(tried) or "?"
    return Context(m, params, load, looked_in, root is not None, missing)


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


def draw(sample: dict, ctx: Context):
    """(panel, caption) of one decoded sample: the task's drawer, or the generic one."""
    from ..registry import get_task

    meta = sample["json"]
    fields = {k: v for k, v in sample.items() if k not in ("json", "label", "index")}
    fn = get_task(meta["task"]).draw or draw_generic
    try:
        panel, caption = fn(fields, meta, ctx)
    except (KeyError, IndexError, ValueError) as e:  # a task changed its fields: still show the pixels
        log.warning("the %s drawer failed (%s: %s); drawing its fields generically", meta["task"], type(e).__name__, e)
        panel, caption = draw_generic(fields, meta, ctx)
    return panel, f"#{sample['index']}: {caption}"


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
    from ..shards import encode_array

    return encode_array("png", rgb)
