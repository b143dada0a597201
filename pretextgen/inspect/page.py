"""The self-contained HTML page of ``pretextgen inspect --html``: summary, histograms (no label
histogram for per-pixel targets: the summary's ``pixel_targets`` lines say what they are), samples."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from ..registry import get_task
from ..shards import read_manifest
from .sheet import png_bytes
from .summary import written


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
    if get_task(m["task"]).pixel_targets is not None:  # cls is always 0: one bar would say nothing
        parts.append("<p id='labels'>labels: per pixel, no class histogram; what the targets are and how they "
                     "spread is in the summary above</p>")
    elif hist:
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
