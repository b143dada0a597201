"""The plan seam: which source sample i uses and every random choice it makes, from (seed, i) alone.

A task's ``plan`` is pure: it gets a generator made here and the source's size, and returns a
JSON-native dict (boxes in source pixels, permutation, label, views...) that the sample's JSON
stores as its proof. Nothing here reads pixels except tasks that plan from them (``source_stats``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import PretextgenError, UnusablePlan
from .sources import Source, flat_view, load_rgb

_SOURCE_TAG = 0x5E1EC7  # separates the source-order stream from the per-sample plan streams


@dataclass(frozen=True)
class WorkItem:
    """One sample to execute: its global index, its source and its plan."""

    index: int
    source: object  # sources.Source for images, a clip for videos
    plan: dict
    # Set by the backend that made the sample: what it actually executed ({"backend", "device", and
    # "jpeg_scale" where a JPEG was decoded reduced}); the sample's JSON records it.
    executed: dict | None = None


@lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, _SOURCE_TAG, epoch]).permutation(n)


def source_index(seed: int, j: int, n: int) -> int:
    """Which source plan j uses: each run of n plans visits every source once, in a shuffled order."""
    return int(_epoch_order(seed, j // n, n)[j % n])


def sample_rng(seed: int, j: int) -> np.random.Generator:
    """The generator of plan j: from (seed, j) alone, for image and video tasks alike."""
    return np.random.default_rng([seed, j])


# A plan that is not worth a sample (all its views one colour, or refused by the task's own rule) is
# drawn again from another source, at most this many times in all.
PLAN_ATTEMPTS = 16


def plan_sample(task, params, sources: list[Source], seed: int, i: int, root=None) -> WorkItem:
    """Sample i from (seed, i) alone: its source, and the task's plan drawn from default_rng((seed, j)).
    A plan whose views are all one colour (``sources.flat_view``), or that the task refuses
    (``UnusablePlan``), is drawn again from a source and a generator of (seed, j, attempt); the plan
    then lists what was refused under ``rejected``. ``root`` (the sources' folder) is needed only by
    tasks that plan from pixels (``source_stats``)."""
    spp = task.samples_per_plan(params)
    j, part = divmod(i, spp)
    kw = {"index": j} if task.label_is_plan_index else {}
    rejected = []
    for attempt in range(PLAN_ATTEMPTS):
        if attempt == 0:
            src, rng = sources[source_index(seed, j, len(sources))], sample_rng(seed, j)
        else:
            rng = np.random.default_rng([seed, j, attempt])
            src = sources[int(rng.integers(len(sources)))]
        if task.source_stats is not None:
            if root is None:
                raise PretextgenError(f"task {task.name!r} plans from the source's pixels: plan_sample needs root=")
            kw["stats"] = task.source_stats(params, load_rgb(Path(root), src))
        try:
            plan = task.plan(params, rng, src.width, src.height, part, **kw)
        except UnusablePlan as e:
            rejected.append({"source": src.path, "reason": str(e)})
            continue
        if src.flat_cells and all(flat_view(src, v) for v in plan["views"]):
            rejected.append({"source": src.path, "reason": "flat views: every view is one colour"})
            continue
        if rejected:
            plan = {**plan, "rejected": rejected}
        return WorkItem(i, src, plan)
    raise PretextgenError(f"{task.name}: sample {i}: {PLAN_ATTEMPTS} plans in a row were refused (last: "
                          f"{rejected[-1]['source']}: {rejected[-1]['reason']}); the sources are mostly unusable "
                          "for this task")


