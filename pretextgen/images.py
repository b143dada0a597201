"""Photos as a source kind: what the builder, ``verify`` and the loader need from a folder of images.

A source kind turns a listing into the usable sources of one build (``prepare``: the scan, the task's
own pass such as colorization's ab prior), stores them for workers (``to_json``, ``load_sources``),
plans sample i over them, makes the backend that executes the plans, and re-derives a stored sample
from its JSON. Clips are the other
kind (``pretextgen.video.kind``); ``registry.source_kind(task.input)`` finds either.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import fields
from functools import lru_cache
from pathlib import Path

from .backends import execute_plan, make_backend, resolve
from .errors import PretextgenError
from .plan import WorkItem, plan_sample
from .sources import Source, check_source, default_source, quirky_sources, scan_cached, slow_sources


class ImageSet:
    """The usable photos of one build (picklable: build processes get a copy)."""

    def __init__(self, root: Path, sources: list[Source], skipped: list[dict], manifest_extra: dict):
        self.root, self.sources, self.skipped, self.manifest_extra = Path(root), sources, skipped, manifest_extra

    def plan(self, task, params, seed: int, i: int) -> WorkItem:
        return plan_sample(task, params, self.sources, seed, i, self.root)

    def to_json(self) -> dict:
        """What workers plan over (``jobs.write_plan``): the usable photos in order, one row each."""
        columns = [f.name for f in fields(Source)]
        return {"kind": "image", "columns": columns,
                "rows": [[getattr(s, c) for c in columns] for s in self.sources]}

    def runner(self, task, params, backend: str, device: str, workers: int, batch_size: int, encode=None,
               batch_key=None, jpeg_scaling: bool = True):
        return make_backend(backend, device, task, params, self.root, workers, batch_size, batch_key=batch_key,
                            encode=encode, jpeg_scaling=jpeg_scaling)


class ImageKind:
    name = "image"
    default_label = "skimage:data"  # scikit-image's bundled photos
    noun = "image"
    max_processes = None  # any number of build processes
    no_replan = None  # verify redraws plans from (seed, index) over the listing
    live = True  # the loader can make samples on the fly
    pictures = True  # a sample's source is a picture inspect can draw its boxes on

    def default(self) -> tuple[Path, list[str]]:
        return default_source()

    def resolve(self, backend: str, device: str) -> tuple[str, str]:
        return resolve(backend, device)

    def jpeg_scaling(self, backend: str, full_decode: bool) -> bool:
        """Whether the build decodes large JPEGs reduced (``backends.source_scale``): OpenCV only."""
        return backend == "opencv" and not full_decode

    def prepare(self, task, params, root: Path, files: list[str], out: Path, workers: int, progress, label: str):
        """The scan (cached), then the task's own pass over the usable photos; refuses a folder with none."""
        sources, skipped = scan_cached(root, files, task.min_side(params), workers, progress)
        extra: dict = {}  # manifest entries of the task's source pass (colorization's ab prior)
        if task.select_sources is not None and sources:
            sources, dropped, extra = task.select_sources(params, root, sources, out, workers, progress)
            skipped = skipped + dropped
        if not sources:
            reasons = Counter(s["reason"].split(":")[0] for s in skipped)
            raise PretextgenError(f"no usable image in {label} ({len(skipped)} files skipped: "
                                  + "; ".join(f"{n} {r}" for r, n in reasons.most_common(3)) + ")")
        slow = slow_sources(sources)
        if slow:
            extra = {**extra, "slow_sources": slow}
        if quirky := quirky_sources(sources):
            extra = {**extra, "quirky_sources": quirky}
        return ImageSet(root, sources, skipped, extra)

    def load_sources(self, task, params, root: Path, data: dict) -> ImageSet:
        """The usable photos of a planned build (``ImageSet.to_json``), under ``root`` on this machine;
        their skips and extras are in the plan's header."""
        return ImageSet(root, [Source(**dict(zip(data["columns"], row))) for row in data["rows"]], [], {})

    def rederive(self, task, params, root: Path, meta: dict) -> dict:
        """A stored sample's fields, re-made by the OpenCV reference from its source and JSON."""
        src = source_header(str(root), meta["source"])
        return execute_plan(task, params, root, src, meta, int(meta.get("jpeg_scale", 1)))


@lru_cache(maxsize=64)
def source_header(root: str, rel: str) -> Source:
    """The Source (size, format, one-colour cells) of one file, read here, not taken from a JSON."""
    src, why = check_source(Path(root), rel, 1)
    if src is None:
        raise PretextgenError(f"source {rel} under {root} cannot be read: {why}")
    return src


KIND = ImageKind()
