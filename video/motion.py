"""The motion index of a set of clips: what video tasks plan over, like image tasks plan over headers.

Per clip (computed once, then cached on disk under ``$PRETEXTGEN_CACHE`` or ``~/.cache/pretextgen``,
keyed by the file's sha256 and the flow settings, so a second build does not recompute it):

- ``motion``: mean flow magnitude (source px per frame) between frames k*step and (k+1)*step;
- ``tracks`` (only for tasks that ask): moving patches followed over ``track_len`` consecutive
  frames in the clip's highest-motion windows, each with its box (source px) in every frame, kept
  when they pass the forward-backward check (``fb_max``) and the appearance check (``min_ncc``);
  with the count of candidates dropped per reason (``tracks_rejected`` in the manifest's videos).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..clips import FlowSettings, TrackSettings
from ..errors import PretextgenError
from .decode import VideoSource, open_reader
from .flow import analysis_scale, magnitude, make_flow, to_analysis

log = logging.getLogger("pretextgen.video")
CACHE_VERSION = 2  # 2: tracks carry their ncc, and the cache the counts of rejected candidates
_CHUNK = 32  # frames decoded at a time: memory stays bounded on long clips


def cache_dir() -> Path:
    from ..sources import cache_dir as root

    return root() / "motion"


def file_digest(path: Path) -> str:
    from ..shards import file_sha256

    return file_sha256(path)


def _cached(key: dict, path: Path, compute):
    """compute() unless a cache file for (file digest, key) exists; returns (value, was_cached)."""
    name = hashlib.sha256(json.dumps({**key, "file": file_digest(path), "v": CACHE_VERSION},
                                     sort_keys=True).encode()).hexdigest()[:32]
    target = cache_dir() / f"{name}.json"
    if target.exists():
        try:
            return json.loads(target.read_text()), True
        except (OSError, ValueError):
            pass  # a damaged cache entry is recomputed
    value = compute()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(value))
        os.replace(tmp, target)
    except OSError as e:  # a read-only home must not stop a build
        log.warning("motion cache not written (%s)", e)
    return value, False


def clip_motion(root: Path, src: VideoSource, fs: FlowSettings) -> list[float]:
    """Mean flow magnitude between frames k*step and (k+1)*step, in source px per frame."""
    scale = analysis_scale(src.width, src.height, fs.size)
    flow = make_flow(fs.method)
    vr = open_reader(Path(root) / src.path)
    idx = list(range(0, src.frames, fs.step))
    out: list[float] = []
    prev = None
    for k in range(0, len(idx), _CHUNK):
        grays = [to_analysis(f, scale) for f in vr.get_batch(idx[k : k + _CHUNK]).asnumpy()]
        seq = grays if prev is None else [prev] + grays
        out += [round(float(magnitude(f).mean()) * scale / fs.step, 5) for f in flow.pairs(seq)]
        prev = grays[-1]
    return out


def window_motion(motion: list[float], step: int, start: int, span: int) -> float:
    """Mean motion of the pairs that lie inside frames [start, start + span)."""
    k0 = -(-start // step)
    k1 = (start + span - 1) // step  # pair k covers frames k*step .. (k+1)*step
    vals = motion[k0:k1]
    return float(np.mean(vals)) if vals else 0.0


def clip_tracks(root: Path, src: VideoSource, motion: list[float], fs: FlowSettings, ts: TrackSettings) -> dict:
    """``tracks`` in the clip's ``ts.windows`` highest-motion windows of ``ts.length + 1`` frames, each:
    ``frames`` (indices), ``boxes`` (source px per frame), ``fb_error``, ``motion`` (source px/frame),
    ``ncc`` (first vs last patch, on the source frames at the boxes a plan uses); ``rejected``: the
    candidates dropped per reason (left_frame, forward_backward, appearance)."""
    from ..clips import int_box
    from .track import patch_ncc, track_window

    span = ts.length + 1
    rejected = {"left_frame": 0, "forward_backward": 0, "appearance": 0}
    if src.frames < span:
        return {"tracks": [], "rejected": rejected}
    starts = list(range(0, src.frames - span + 1, max(1, span // 2)))
    ranked = sorted(starts, key=lambda s: (-window_motion(motion, fs.step, s, span), s))
    chosen: list[int] = []
    for s in ranked:
        if len(chosen) == ts.windows:
            break
        if all(abs(s - c) >= span for c in chosen):
            chosen.append(s)
    scale = analysis_scale(src.width, src.height, fs.size)
    flow = make_flow(fs.method)
    vr = open_reader(Path(root) / src.path)
    out = []
    for s in sorted(chosen):
        batch = vr.get_batch(list(range(s, s + span))).asnumpy()
        grays = [to_analysis(f, scale) for f in batch]
        first, last = batch[0].copy(), batch[-1].copy()
        del batch
        side = max(4, int(round(ts.patch * min(grays[0].shape))))

        def box(centre, side=side):
            cx, cy = centre
            return [round((cx - side / 2) * scale, 2), round((cy - side / 2) * scale, 2),
                    round((cx + side / 2) * scale, 2), round((cy + side / 2) * scale, 2)]

        def appearance(centres, first=first, last=last, box=box):
            # the boxes a plan cuts (int_box of the stored float boxes), so the check sees the sample
            return patch_ncc(first, last, int_box(box(centres[0]), src.width, src.height),
                             int_box(box(centres[-1]), src.width, src.height))

        fwd, bwd = flow.pairs(grays), flow.pairs(grays, backward=True)
        for t in track_window(fwd, bwd, side, ts.per_window, ts.min_motion, ts.fb_max, appearance, ts.min_ncc,
                              rejected):
            out.append({"frames": list(range(s, s + span)), "boxes": [box(c) for c in t["centres"]],
                        "fb_error": round(t["fb_error"], 4), "motion": round(t["motion"] * scale, 4),
                        "ncc": round(t["ncc"], 4)})
    return {"tracks": out, "rejected": rejected}


def _index_one(args):
    root, src, fs, ts = args
    try:
        motion, hit_m = _cached({"kind": "motion", **fs.__dict__}, Path(root) / src.path,
                                lambda: clip_motion(root, src, fs))
        tracks, hit_t = None, True
        if ts is not None:  # every TrackSettings field (min_ncc included) is part of the cache key
            tracks, hit_t = _cached({"kind": "tracks", **fs.__dict__, **ts.__dict__}, Path(root) / src.path,
                                    lambda: clip_tracks(root, src, motion, fs, ts))
        return motion, tracks, hit_m and hit_t, None
    except Exception as e:  # noqa: BLE001 - a clip that breaks mid-way is skipped, not the build
        return None, None, False, f"decoding failed while measuring motion: {str(e).strip().splitlines()[-1][:200]}"


@dataclass
class VideoIndex:
    root: Path
    sources: list[VideoSource]
    motion: list[list[float]]
    flow: FlowSettings
    tracks: list[list[dict]] | None = None
    skipped: list[dict] = field(default_factory=list)
    cached: int = 0  # clips whose index came from the cache (not stored in the manifest)
    rejected: list[dict] | None = None  # per clip (with tracks): candidates dropped per reason
    extras: dict = field(default_factory=dict)  # task artefacts plans read (the ab cluster centres)
    _memo: dict = field(default_factory=dict, repr=False)

    def cached_windows(self, span: int, percentile: float) -> list[tuple[int, int, float]]:
        """``windows`` computed once per (span, percentile); an error if none qualifies."""
        key = ("windows", span, percentile)
        if key not in self._memo:
            wins = self.windows(span, percentile)
            if not wins:
                raise PretextgenError(f"no clip has {span} frames: lower span or add longer clips")
            self._memo[key] = wins
        return self._memo[key]

    def all_tracks(self) -> list[tuple[int, dict]]:
        """(clip, track) of every kept track, clip by clip; an error if there is none."""
        if "tracks" not in self._memo:
            flat = [(c, t) for c, ts in enumerate(self.tracks or []) for t in ts]
            if not flat:
                raise PretextgenError("no patch could be tracked in these clips (too little motion, or clips "
                                      "shorter than track_len + 1 frames); lower min_patch_motion or fb_max")
            self._memo["tracks"] = flat
        return self._memo["tracks"]

    def windows(self, span: int, percentile: float) -> list[tuple[int, int, float]]:
        """(clip, start, motion) of every window of ``span`` frames (starts every span//2 frames)
        whose motion is at or above the ``percentile`` of all windows of all clips."""
        allw = []
        for c, src in enumerate(self.sources):
            for s in range(0, src.frames - span + 1, max(1, span // 2)):
                allw.append((c, s, round(window_motion(self.motion[c], self.flow.step, s, span), 5)))
        if not allw:
            return []
        cut = float(np.percentile([w[2] for w in allw], percentile))
        return [w for w in allw if w[2] >= cut]

    def summary(self) -> list[dict]:
        out = []
        for c, src in enumerate(self.sources):
            rec = {**src.to_dict(), "motion_mean": round(float(np.mean(self.motion[c])) if self.motion[c] else 0.0, 4)}
            if self.tracks is not None:
                rec["tracks"] = len(self.tracks[c])
                if self.rejected is not None:
                    rec["tracks_rejected"] = dict(self.rejected[c])
            out.append(rec)
        return out


def build_index(root: Path, sources: list[VideoSource], fs: FlowSettings, ts: TrackSettings | None,
                workers: int = 1, progress=None) -> VideoIndex:
    """Motion (and tracks) of every clip, from the cache or computed (in ``workers`` processes)."""
    jobs = [(str(root), s, fs, ts) for s in sources]
    if workers > 1 and len(jobs) > 1 and fs.method != "nvof":
        from ..parallel import process_pool

        with process_pool(min(workers, len(jobs))) as pool:
            results = []
            for r in pool.imap(_index_one, jobs):
                results.append(r)
                if progress:
                    progress.update()
    else:
        results = []
        for j in jobs:
            results.append(_index_one(j))
            if progress:
                progress.update()
    kept, motion, tracks, rejected, skipped, cached = [], [], [], [], [], 0
    for src, (m, t, hit, reason) in zip(sources, results):
        if reason is not None:
            skipped.append({"source": src.path, "reason": reason})
            continue
        kept.append(src)
        motion.append(m)
        tracks.append(t["tracks"] if t is not None else None)
        rejected.append(t["rejected"] if t is not None else None)
        cached += int(hit)
    has = ts is not None
    return VideoIndex(Path(root), kept, motion, fs, tracks if has else None, skipped, cached,
                      rejected=rejected if has else None)
