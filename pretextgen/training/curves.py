"""The curves of a training run: ``curves.png`` drawn from ``metrics.csv``, and TensorBoard scalars.

``curves.png`` holds four panels against step: loss, pretext accuracy, learning rate and data wait
(the share of wall time spent waiting for the next batch). The trainer's ``steps`` rows (means over
a logging window) are a thin line, its ``epoch`` rows (means over an epoch) dots. Drawn with OpenCV
and NumPy, labelled with ``pretextgen.drawing``'s text; the whole file is read each time, so a
resumed run's picture holds its first part too.

TensorBoard event files go to ``RUN_DIR/tensorboard/`` when ``torch.utils.tensorboard`` imports
(the optional ``tensorboard`` package: ``pip install 'pretextgen[tensorboard]'``); tags are
``steps/loss``, ``epoch/loss`` and so on for ``SCALARS``, at ``global_step=step``.

Nothing here imports torch at module level or the trainer (which imports this), so ``pretextgen
inspect RUN_DIR`` can redraw a run's curves quickly.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from ..drawing import CAPTION_PAPER, CAPTION_SIZE, WHITE, hstack, strip, text_box

log = logging.getLogger("pretextgen.training")
CURVES = "curves.png"
TENSORBOARD = "tensorboard"
SCALARS = ("loss", "accuracy", "lr", "samples_per_s", "data_wait", "alignment", "uniformity")
# (metrics.csv column, panel title, fixed y range or None for the data's own, tick format)
PANELS = (
    ("loss", "loss", None, "{:.4g}"),
    ("accuracy", "pretext accuracy", (0.0, 1.0), "{:.0%}"),
    ("lr", "learning rate", None, "{:.3g}"),
    ("data_wait", "data wait (share of wall time waiting for batches)", (0.0, 1.0), "{:.0%}"),
)
# Drawn only for runs that record them (the contrastive recipes): Wang & Isola's two measures.
EMBEDDING_PANELS = (
    ("alignment", "alignment (lower: views closer)", None, "{:.3g}"),
    ("uniformity", "uniformity (lower: spread wider)", None, "{:.3g}"),
)
PANEL_WIDTH, PLOT_HEIGHT, COLUMNS, GAP = 460, 180, 2, 10
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, AXIS_HEIGHT, INSET = 64, 14, 10, 22, 6
LINE_COLOUR, DOT_COLOUR, FRAME, GRID = (40, 90, 200), (215, 70, 20), (150, 150, 150), (228, 228, 228)
NOT_RECORDED = {"accuracy": "not recorded: this task has no pretext accuracy"}


def read_metrics(path) -> list[dict]:
    """The rows of a run's metrics.csv (column -> string), [] without the file."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(value) -> float:
    """A metrics.csv cell as a float; NaN for an empty or unreadable one (a task without accuracy)."""
    try:
        v = float(str(value).strip())
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def _series(rows: list[dict], column: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the rows of ``kind`` that have a value in ``column``, by step."""
    pairs = sorted((number(r.get("step")), number(r.get(column))) for r in rows if r.get("kind") == kind)
    pairs = [(s, v) for s, v in pairs if not (math.isnan(s) or math.isnan(v))]
    return np.array([s for s, _ in pairs], np.float64), np.array([v for _, v in pairs], np.float64)


def _paste(canvas: np.ndarray, box: np.ndarray, x: int, y: int) -> None:
    """``box`` onto ``canvas`` with its top-left at (x, y), clipped to the canvas."""
    x, y = max(x, 0), max(y, 0)
    h, w = min(box.shape[0], canvas.shape[0] - y), min(box.shape[1], canvas.shape[1] - x)
    if h > 0 and w > 0:
        canvas[y:y + h, x:x + w] = box[:h, :w]


def _panel(rows: list[dict], column: str, title: str, fixed, fmt: str, steps: tuple[float, float]) -> np.ndarray:
    """One panel: a title strip over the plot of ``column`` against step, min/max ticks on both axes."""
    import cv2

    line_s, line_v = _series(rows, column, "steps")
    dot_s, dot_v = _series(rows, column, "epoch")
    body = np.full((MARGIN_TOP + PLOT_HEIGHT + AXIS_HEIGHT, PANEL_WIDTH, 3), WHITE, np.uint8)
    x0, x1 = MARGIN_LEFT, PANEL_WIDTH - MARGIN_RIGHT
    y0, y1 = MARGIN_TOP, MARGIN_TOP + PLOT_HEIGHT
    d0, d1 = x0 + INSET, x1 - INSET  # where the first and last step go: dots there stay whole
    s_lo, s_hi = steps
    values = np.concatenate([line_v, dot_v])
    if values.size:
        lo, hi = (float(values.min()), float(values.max())) if fixed is None else fixed
        ticks = [lo] if hi - lo <= 1e-12 * max(1.0, abs(hi)) else [lo, hi]
        # a constant gets a range around it; the data's own range a margin, so its extremes stay visible
        pad = (abs(lo) * 0.1 or 1.0) if len(ticks) == 1 else (0.06 * (hi - lo) if fixed is None else 0.0)
        lo, hi = lo - pad, hi + pad

        def at(s, v):  # 1/16 px, for cv2's shift=4: lines that move by less than a pixel still move
            x = d0 + (d1 - d0) * ((s - s_lo) / (s_hi - s_lo) if s_hi > s_lo else np.full_like(s, 0.5))
            y = np.clip(y1 - (y1 - y0) * (v - lo) / (hi - lo), y0, y1)
            return np.round(np.stack([x, y], -1) * 16).astype(np.int32)

        for t in ticks:
            y = int(at(np.array([s_lo]), np.array([t]))[0, 1]) // 16
            cv2.line(body, (x0, y), (x1, y), GRID, 1)
            label = text_box(fmt.format(t), paper=WHITE)
            _paste(body, label, x0 - 2 - label.shape[1], y - label.shape[0] // 2)
        cv2.rectangle(body, (x0, y0), (x1, y1), FRAME, 1)
        if line_s.size > 1:
            cv2.polylines(body, [at(line_s, line_v)], False, LINE_COLOUR, 1, cv2.LINE_AA, shift=4)
        if line_s.size == 1:  # one logging window so far: a mark, not yet a line
            x, y = at(line_s, line_v)[0]
            cv2.circle(body, (int(x), int(y)), 2 * 16, LINE_COLOUR, -1, cv2.LINE_AA, shift=4)
        for (x, y) in at(dot_s, dot_v):
            cv2.circle(body, (int(x), int(y)), 3 * 16, DOT_COLOUR, -1, cv2.LINE_AA, shift=4)
    else:
        cv2.rectangle(body, (x0, y0), (x1, y1), FRAME, 1)
        note = text_box(NOT_RECORDED.get(column, "not recorded") if math.isfinite(s_lo) else "no rows yet",
                        paper=WHITE)
        _paste(body, note, (x0 + x1 - note.shape[1]) // 2, (y0 + y1 - note.shape[0]) // 2)
    if math.isfinite(s_lo):
        labels = [(d0, f"{s_lo:.0f}"), ((d0 + d1) // 2, "step")] + ([(d1, f"{s_hi:.0f}")] if s_hi > s_lo else [])
        for x, text in labels:  # centred under their place, kept inside the panel
            box = text_box(text, paper=WHITE)
            _paste(body, box, min(max(x - box.shape[1] // 2, 0), PANEL_WIDTH - box.shape[1]), y1 + 2)
    return np.concatenate([strip(title, PANEL_WIDTH, CAPTION_SIZE, paper=CAPTION_PAPER), body], 0)


def draw_curves(rows: list[dict], title: str = "") -> np.ndarray:
    """The curves picture (RGB uint8) of metrics.csv ``rows``: ``title`` and a legend on top, then the
    ``PANELS`` two to a row. Any rows draw: none, one, without accuracy, constant values."""
    steps = np.concatenate([_series(rows, "loss", kind)[0] for kind in ("steps", "epoch")])
    if not steps.size:  # no loss anywhere: fall back to any row's step for the axis
        steps = np.array([s for s in (number(r.get("step")) for r in rows) if not math.isnan(s)])
    span = (0.0, max(float(steps.max()), 1.0)) if steps.size else (math.nan, math.nan)  # training starts at 0
    shown = PANELS + tuple(p for p in EMBEDDING_PANELS if any(_series(rows, p[0], kind)[1].size
                                                              for kind in ("steps", "epoch")))
    panels = [_panel(rows, column, name, fixed, fmt, span) for column, name, fixed, fmt in shown]
    grid = [hstack(panels[k:k + COLUMNS], GAP) for k in range(0, len(panels), COLUMNS)]
    gap = np.full((GAP, grid[0].shape[1], 3), WHITE, np.uint8)
    body = np.concatenate([part for r in grid for part in (gap, r)][1:], 0)
    epochs = sum(1 for r in rows if r.get("kind") == "epoch")
    head = (f"{title}: " if title else "") + (
        f"{epochs} epoch(s), {span[1]:.0f} steps. " if steps.size else "no rows yet. ")
    legend = _legend(body.shape[1], head)
    return np.ascontiguousarray(np.concatenate([legend, body], 0))


def _legend(width: int, head: str) -> np.ndarray:
    """A header strip: ``head``, then the line and the dot drawn as in the panels, with their meaning."""
    import cv2

    texts = [text_box(t, paper=WHITE) for t in (head, "means over each logging window", "means over each epoch")]
    h = texts[0].shape[0] + 8
    out = np.full((h, width, 3), WHITE, np.uint8)
    mid, x = h // 2, 4
    for k, box in enumerate(texts):
        if k == 1:
            cv2.line(out, (x, mid), (x + 24, mid), LINE_COLOUR, 1, cv2.LINE_AA)
            x += 28
        elif k == 2:
            cv2.circle(out, (x + 4, mid), 3, DOT_COLOUR, -1, cv2.LINE_AA)
            x += 12
        _paste(out, box, x, (h - box.shape[0]) // 2)
        x += box.shape[1] + 4
    return out


def write_curves(run_dir) -> Path:
    """Redraw ``RUN_DIR/curves.png`` from ``RUN_DIR/metrics.csv`` (the whole file); returns its path.
    Written to a temporary file first and renamed, so a reader never sees half a picture."""
    from ..inspect.sheet import png_bytes

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / "metrics.csv")
    title = run_dir.name
    try:
        title = f"{json.loads((run_dir / 'config.json').read_text())['task']} ({run_dir.name})"
    except (OSError, ValueError, KeyError, TypeError):  # a run folder without its config: the folder's name
        pass
    path = run_dir / CURVES
    tmp = path.with_name(f".{CURVES}.{os.getpid()}.tmp")
    tmp.write_bytes(png_bytes(draw_curves(rows, title)))
    os.replace(tmp, path)
    return path


def _summary_writer(log_dir: Path, purge_step: int):
    """A TensorBoard SummaryWriter, or None when the ``tensorboard`` package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


class RunRecorder:
    """What a run shows besides metrics.csv: curves.png redrawn at each epoch's end, and TensorBoard
    event files when the optional `tensorboard` package is installed.

    The trainer (rank 0) calls ``row`` with each metrics.csv row as it is written, ``epoch_end`` after
    an epoch's row, ``close`` at the end. A failure to draw or write is logged, never raised: curves
    must not stop a training run."""

    def __init__(self, out: Path, resume: bool):
        self.out, self.resume = Path(out), resume
        self._writer = None
        self._tensorboard = True  # until the import fails or a write does
        self._undrawn = False  # rows came since the last picture

    def row(self, row: dict) -> None:
        """Log ``row`` (a dict of metrics.csv's columns, values as written) to TensorBoard."""
        self._undrawn = True
        if not self._tensorboard:
            return
        step, kind = number(row.get("step")), row.get("kind") or "steps"
        if math.isnan(step):
            return
        try:
            if self._writer is None:
                # Hide what a run wrote in this folder at or after this step (resumed: its interrupted
                # part, whose rows metrics.csv dropped; new: an older run's), as metrics.csv does.
                self._writer = _summary_writer(self.out / TENSORBOARD, purge_step=0 if not self.resume else int(step))
                if self._writer is None:
                    self._tensorboard = False
                    return
            for name in SCALARS:
                value = number(row.get(name))
                if not math.isnan(value):
                    self._writer.add_scalar(f"{kind}/{name}", value, global_step=int(step))
        except Exception as e:  # noqa: BLE001 - a full disk or a broken install must not stop training
            log.warning("TensorBoard logging stopped (%s); metrics.csv has every row", e)
            self._tensorboard = False

    def epoch_end(self) -> None:
        """Redraw curves.png from metrics.csv, and flush TensorBoard's events."""
        self._undrawn = False
        try:
            write_curves(self.out)
        except Exception as e:  # noqa: BLE001 - a picture must never end a run; metrics.csv holds the numbers
            log.warning("%s/%s not drawn (%s); pretextgen inspect %s redraws it", self.out, CURVES, e, self.out)
        if self._writer is not None:
            try:
                self._writer.flush()
            except Exception as e:  # noqa: BLE001
                log.warning("TensorBoard logging stopped (%s); metrics.csv has every row", e)
                self._tensorboard = False

    def close(self) -> None:
        """Redraw if rows came after the last picture (a run stopped mid-epoch), close TensorBoard's file."""
        if self._undrawn:
            self.epoch_end()
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception as e:  # noqa: BLE001
                log.warning("TensorBoard's event file was not closed cleanly (%s)", e)
            self._writer = None
