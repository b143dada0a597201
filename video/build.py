"""What ``pretextgen build`` does differently for video tasks: probe the clips, index their motion,
plan over (clip, motion index), and execute plans with decord (CPU) or DALI (GPU). Shards, the
manifest and resume are the image builder's own code.
"""
from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path

from ..backends import OpenCVBackend, register_backend
from ..plan import WorkItem
from ..plan import sample_rng
from ..errors import PretextgenError
from .decode import FrameReader, probe
from .motion import build_index
from ..clips import flat_reason
from .plans import check_frames, read_views, read_views_batch

log = logging.getLogger("pretextgen.video")


def min_frames(task, params) -> int:
    """Frames a clip needs to give this task a sample."""
    for name, extra in (("span", 0), ("track_len", 1)):
        if hasattr(params, name):
            return getattr(params, name) + extra
    if hasattr(params, "targets"):
        return params.targets * params.gap + 1
    return 2


def probe_all(root: Path, files: list[str], need: int, min_side: int, progress=None):
    sources, skipped = [], []
    for rel in files:
        src, reason = probe(root, rel, need, min_side)
        if src is None:
            skipped.append({"source": rel, "reason": reason})
        else:
            sources.append(src)
        if progress:
            progress.update()
    return sources, skipped


def usable_clips(task, params, root: Path, sources: list) -> tuple[list, list[dict]]:
    """(kept, skipped [{source, reason}]): the one-colour rule of every video task, then the task's own
    (``VideoHooks.usable``), both on the clip's fixed check frames (``plans.check_frames``)."""
    reader = FrameReader(Path(root))
    kept, skipped = [], []
    for src in sources:
        try:
            frames = check_frames(reader, src)
        except Exception as e:  # noqa: BLE001 - a clip that breaks mid-way is skipped, not the build
            reason = f"decoding failed while checking frames: {str(e).strip().splitlines()[-1][:200]}"
        else:
            reason = flat_reason(params, frames)
            if reason is None and task.video.usable is not None:
                reason = task.video.usable(params, frames)
        if reason is None:
            kept.append(src)
        else:
            skipped.append({"source": src.path, "reason": reason})
    return kept, skipped


class VideoSetup:
    """The clips of a video build, their motion index, and the task's prepared artefacts."""

    def __init__(self, task, params, root: Path, files: list[str], out: Path | None, workers: int = 1, progress=None):
        self.task, self.params, self.root = task, params, Path(root)
        hooks = task.video
        self.sources, skipped = probe_all(self.root, files, min_frames(task, params), params.min_side, progress)
        self.sources, ruled = usable_clips(task, params, self.root, self.sources)
        skipped += ruled
        if not self.sources:
            reasons = Counter(s["reason"].split(":")[0] for s in skipped)
            raise PretextgenError(f"no usable video in {root} ({len(skipped)} files skipped: "
                                  + "; ".join(f"{n} {r}" for r, n in reasons.most_common(3)) + ")")
        fs = params.flow_settings()
        if fs.method == "nvof":
            from ..backends import gpu_count

            if gpu_count() == 0:
                raise PretextgenError(f"{task.name}.flow: nvof needs a GPU; use dis or farneback on this machine")
        ts = hooks.tracks(params) if hooks.tracks else None
        if hooks.motion or ts is not None:
            self.index = build_index(self.root, self.sources, fs, ts, workers)
        else:
            from .motion import VideoIndex

            self.index = VideoIndex(self.root, self.sources, [[] for _ in self.sources], fs)
        self.sources = self.index.sources
        self.skipped = sorted(skipped + self.index.skipped, key=lambda s: s["source"])
        if not self.sources:
            raise PretextgenError(f"no usable video in {root}: every clip failed to decode ({self.skipped[0]['reason']})")
        log.info("motion index: %d clips, %d from the cache", len(self.sources), self.index.cached)
        self.manifest_extra = {"videos": self.index.summary()}
        if self.index.rejected is not None:  # tracked candidates dropped by the track checks, all clips
            total: Counter = Counter()
            for r in self.index.rejected:
                total.update(r)
            self.manifest_extra["tracks_rejected"] = {
                "kept": sum(len(t) for t in self.index.tracks), **{k: total[k] for k in sorted(total)}}
        if hooks.prepare is not None:
            self.manifest_extra.update(hooks.prepare(params, self.index, out, FrameReader(self.root)))
        self._by_path = {s.path: s for s in self.sources}

    def to_json(self) -> dict:
        """What workers plan over (``jobs.write_plan``): the clips in order and their motion index."""
        ix = self.index
        return {"kind": "video", "sources": [s.to_dict() for s in self.sources], "motion": ix.motion,
                "flow": dataclasses.asdict(ix.flow), "tracks": ix.tracks, "extras": ix.extras}

    @classmethod
    def from_json(cls, task, params, root: Path, data: dict) -> VideoSetup:
        """A planned build's clips and index (``to_json``), read back without probing or indexing again;
        skips and manifest extras are in the plan's header."""
        from ..clips import FlowSettings
        from .decode import VideoSource
        from .motion import VideoIndex

        self = cls.__new__(cls)
        self.task, self.params, self.root = task, params, Path(root)
        self.sources = [VideoSource(**s) for s in data["sources"]]
        self.index = VideoIndex(self.root, self.sources, data["motion"], FlowSettings(**data["flow"]), data["tracks"],
                                extras=data["extras"])
        self.skipped, self.manifest_extra = [], {}
        self._by_path = {s.path: s for s in self.sources}
        return self

    def plan_sample(self, seed: int, i: int) -> WorkItem:
        """Sample i's plan, from ``sample_rng(seed, i)`` (``default_rng([seed, i])``'s stream) and the
        motion index alone."""
        plan = self.task.plan(self.params, sample_rng(seed, i), self.index, 0)
        return WorkItem(i, self._by_path[plan["clips"][0]["source"]], plan)

    def plan(self, task, params, seed: int, i: int) -> WorkItem:
        """``plan_sample`` under the source-kind interface (``pretextgen.images.ImageSet.plan``)."""
        return self.plan_sample(seed, i)

    def runner(self, task, params, backend: str, device: str, workers: int, batch_size: int, encode=None,
               batch_key=None, jpeg_scaling: bool = False):
        """DALI (NVDEC) on a GPU, decord in ``workers`` processes on CPUs. Frames are not JPEG files:
        ``jpeg_scaling`` does not apply, and DALI's video batches need no shard key."""
        if device == "gpu":
            from .dali import DaliVideoBackend

            return DaliVideoBackend(self.task, self.params, self.root, "gpu", batch_size, workers, encode=encode)
        return DecordBackend(self.task, self.params, self.root, workers=workers, chunk=64, encode=encode)


def backend_name(device: str) -> str:
    """The name a video build records: frames come from decord on CPUs, from DALI (NVDEC) on a GPU."""
    return "dali" if device == "gpu" else "decord"


# ---------------------------------------------------------------- decord + OpenCV, worker processes
_WORKER: dict = {}


def _init_worker(task_name: str, params, root: str, encode, jpeg_scaling: bool = False,
                 state: dict = _WORKER):  # jpeg_scaling: for the image backend's signature; frames are not JPEG files
    import cv2

    from ..registry import get_task

    cv2.setNumThreads(1)
    state.update(task=get_task(task_name), params=params, reader=FrameReader(Path(root)), encode=encode)


def _run_chunk(items: list[WorkItem], state: dict = _WORKER):
    t, p = state["task"], state["params"]
    out = []
    for it, views in zip(items, read_views_batch(state["reader"], [it.plan for it in items])):
        fields = t.finish(p, views, it.plan)
        out.append((state["encode"](fields) if state["encode"] else fields, 1))
    return out


@register_backend
class DecordBackend(OpenCVBackend):
    """The OpenCV backend's process pool, reading frames with decord instead of images."""

    # Compared like interpolating backends: frames a build decoded in sequence are re-derived by seeking.
    name, device, devices, tolerance = "decord", "cpu", ("cpu",), 2.5
    threads = False  # one decord reader (and its frame cache) per process

    @staticmethod
    def libraries() -> dict:
        from .decode import import_decord

        return {**OpenCVBackend.libraries(), "decord": import_decord().__version__}
    init_fn, chunk_fn = staticmethod(_init_worker), staticmethod(_run_chunk)


def rederive(task, params, source_root, meta: dict) -> dict:
    """A stored sample's fields re-created from its JSON (``meta``) and the clips under ``source_root``;
    ``params`` may be the params object or the manifest's ``params`` dict."""
    from ..config import make_params
    from ..registry import get_task

    t = get_task(task) if isinstance(task, str) else task
    if isinstance(params, dict):
        params = make_params(t, params)
    return t.finish(params, read_views(FrameReader(Path(source_root)), meta), meta)
