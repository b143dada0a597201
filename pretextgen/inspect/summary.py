"""The terminal summary of a build: task, params, fields, label histogram (or, for per-pixel
targets, the task's ``pixel_targets`` lines), sources."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..shards import read_manifest, read_samples

SAMPLED = 64  # samples a per-pixel summary may decode when the build folder holds no tally


def written(m: dict) -> int:
    """Samples the build's shards hold (fewer than ``m["samples"]`` asked when it is incomplete)."""
    return sum(int(s["samples"]) for s in m["shards"])


def summary_lines(out: Path) -> list[str]:
    from ..config import make_params
    from ..registry import get_task, stored_ext

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
    lines += t.pixel_targets(out, m, params_) if t.pixel_targets else histogram_lines(m)
    lines.append(f"sources: {m['source']}: {m['source_files']} file(s), {m['sources_used']} used, "
                 f"{len(m['skipped'])} skipped")
    from ..sources import quirk_summary, skip_summary, slow_summary

    lines += [f"  {line}" for line in skip_summary(m["skipped"]) + quirk_summary(m.get("quirky_sources", []))]
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


def sampled(out: Path, m: dict, n: int = SAMPLED) -> list[dict]:
    """At most ``n`` decoded samples spread evenly over what the build has written."""
    total = written(m)
    return read_samples(out, np.linspace(0, total - 1, min(n, total)).round().astype(int)) if total else []


def usage_lines(counts, names: list[str], what: str, where: str, top: int = 5) -> list[str]:
    """How per-pixel targets spread over ``len(counts)`` classes (``what``, counted in ``where``):
    classes used, entropy in bits (2^H: as many classes used equally), the ``top`` most frequent."""
    counts = np.asarray(counts, np.float64)
    k, total = len(counts), counts.sum()
    if total <= 0:
        return [f"  {what}: nothing counted ({where})"]
    p = counts[counts > 0] / total
    h = float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: one class used gives -0.0
    order = [i for i in np.argsort(-counts, kind="stable")[:top] if counts[i] > 0]
    return [f"  {what}, {where}: {len(p)} of {k} used; entropy {h:.2f} bits (as {2 ** h:.1f} used equally; "
            f"all {k} equally: {np.log2(k):.2f})",
            "    most frequent: " + ", ".join(f"{names[i]} {counts[i] / total:.1%}" for i in order)]
