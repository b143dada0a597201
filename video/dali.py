"""DALI for video: NVDEC decoding of the plan's frames, ROI resize of the views, and NVOF flow.

The graph is the same on both devices (``fn.decoders.video`` on ``mixed`` = NVDEC, or ``cpu``); only
the GPU is used by builds, because DALI's CPU video decoder cannot read H.264 or MPEG-4 part 2
(decord is the CPU path). The CPU variant exists so that the tests exercise this exact graph on
MJPEG clips. Where DALI cannot decode a batch (no NVDEC, a codec it lacks), the backend logs it once
and decodes the rest with decord: same plans, same finish, so only interpolation may differ.
"""
from __future__ import annotations

import logging
from collections import OrderedDict, deque
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..backends import _chunked, executed
from ..plan import WorkItem
from .decode import FrameReader
from .plans import read_views_batch

log = logging.getLogger("pretextgen.video")


def slots_of(plan: dict) -> list[int]:
    """Number of views of each clip slot (fixed per task: it shapes the graph)."""
    return [len(c["frames"]) for c in plan["clips"]]


def video_views_pipeline(feed, slots: list[int], device: str, batch_size: int, threads: int):
    """Columns from ``feed``: per clip slot (encoded file, frame indices), then per view (roi_start,
    roi_end, size) in (H, W) order. Outputs: one uint8 HWC view per view, clip-major."""
    from nvidia.dali import fn, pipeline_def, types

    gpu = device == "gpu"
    n_views = sum(slots)

    @pipeline_def(batch_size=batch_size, num_threads=threads, device_id=0 if gpu else None,
                  exec_dynamic=True, prefetch_queue_depth=1)
    def graph():
        cols = fn.external_source(source=feed, num_outputs=2 * len(slots) + 3 * n_views, batch=True,
                                  dtype=[types.UINT8, types.INT32] * len(slots) + [types.FLOAT] * 3 * n_views)
        outs = []
        for s, count in enumerate(slots):
            seq = fn.decoders.video(cols[2 * s], frames=cols[2 * s + 1], device="mixed" if gpu else "cpu")
            for k in range(count):
                frame = fn.element_extract(seq, element_map=[k])
                frame = frame[0] if isinstance(frame, (list, tuple)) else frame
                j = len(outs)
                start, end, size = cols[2 * len(slots) + 3 * j : 2 * len(slots) + 3 * j + 3]
                outs.append(fn.resize(frame, roi_start=start, roi_end=end, size=size, antialias=True,
                                      interp_type=types.INTERP_LINEAR, dtype=types.UINT8))
        return tuple(outs)

    pipe = graph()
    pipe.build()
    return pipe


class DaliVideoBackend:
    """Plans -> views with DALI (``device`` gpu or cpu) -> the task's finish, in plan order."""

    name = "dali"

    def __init__(self, task, params, root: Path, device: str = "gpu", batch_size: int = 16, threads: int = 2,
                 encode=None):
        self.task, self.params, self.root, self.device = task, params, Path(root), device
        self.batch_size, self.threads, self.encode = max(1, batch_size), max(1, threads), encode or None
        self.fallbacks = 0  # batches decoded by decord because DALI could not
        self._bytes: OrderedDict = OrderedDict()

    def _encoded(self, rel: str) -> np.ndarray:
        data = self._bytes.pop(rel, None)
        if data is None:
            data = np.fromfile(self.root / rel, np.uint8)
        self._bytes[rel] = data
        while len(self._bytes) > 8:
            self._bytes.popitem(last=False)
        return data

    def _finish(self, it: WorkItem, views: list[np.ndarray]):
        fields = self.task.finish(self.params, views, it.plan)
        return self.encode(fields) if self.encode else fields

    def run(self, items: Iterable[WorkItem]) -> Iterator[tuple[WorkItem, object]]:
        batches = _chunked(items, self.batch_size)
        first = next(batches, None)
        if first is None:
            return
        slots = slots_of(first[0].plan)
        pending = deque([first])
        handed: deque = deque()

        def feed():
            batch = pending.popleft() if pending else next(batches, None)
            if batch is None:
                raise StopIteration
            handed.append(batch)
            cols: list = []
            for s in range(len(slots)):
                cols.append([self._encoded(it.plan["clips"][s]["source"]) for it in batch])
                cols.append([np.array(it.plan["clips"][s]["frames"], np.int32) for it in batch])
            for j in range(sum(slots)):
                starts, ends, sizes = [], [], []
                for it in batch:
                    v = it.plan["views"][j]
                    x0, y0, x1, y1 = v["box"]
                    starts.append(np.array([y0, x0], np.float32))
                    ends.append(np.array([y1, x1], np.float32))
                    sizes.append(np.array(v["size"][::-1], np.float32))
                cols += [starts, ends, sizes]
            return tuple(cols)

        try:
            pipe = video_views_pipeline(feed, slots, self.device, self.batch_size, self.threads)
        except Exception as e:  # noqa: BLE001 - no NVDEC, no GPU: decord does the work
            log.warning("DALI video pipeline unavailable (%s); decoding with decord", str(e).splitlines()[0][:200])
            pipe = None
        reader = FrameReader(self.root)
        while pipe is not None:
            try:
                outs = pipe.run()
            except StopIteration:
                return
            except Exception as e:  # noqa: BLE001 - a codec DALI lacks: this batch and the rest go to decord
                log.warning("DALI could not decode (%s); decoding the rest with decord", str(e).splitlines()[0][:200])
                self.fallbacks += 1
                pipe = None
                break
            batch = handed.popleft()
            host = [o.as_cpu() if hasattr(o, "as_cpu") else o for o in outs]
            for k, it in enumerate(batch):
                yield executed(it, "dali", self.device), self._finish(it, [np.array(host[j][k]) for j in range(len(host))])
        rest = list(handed) + list(pending)  # batches fed to DALI but not returned, then the others
        for batch in rest + list(batches):  # decoded by decord: their JSON says so
            for it, views in zip(batch, read_views_batch(reader, [it.plan for it in batch])):
                yield executed(it, "decord", "cpu"), self._finish(it, views)

    def close(self):
        pass


class NvofFlow:
    """DALI ``fn.optical_flow`` on the GPU, same interface as ``flow.CpuFlow``."""

    def __init__(self):
        self._pipe = None
        self._seq: list = []

    def _pipeline(self):
        from nvidia.dali import fn, pipeline_def, types

        @pipeline_def(batch_size=1, num_threads=1, device_id=0, exec_dynamic=True, prefetch_queue_depth=1)
        def graph():
            seq = fn.external_source(source=lambda: [self._seq], batch=True, layout="FHWC", dtype=types.UINT8)
            return fn.optical_flow(seq.gpu(), output_grid=4, hint_grid=4, image_type=types.RGB)

        pipe = graph()
        pipe.build()
        return pipe

    def pairs(self, frames: list[np.ndarray], backward: bool = False) -> list[np.ndarray]:
        import cv2

        if self._pipe is None:
            self._pipe = self._pipeline()
        seq = frames[::-1] if backward else frames
        self._seq = np.ascontiguousarray(np.stack([np.repeat(f[..., None], 3, axis=2) for f in seq]))
        (out,) = self._pipe.run()
        flow = np.array(out.as_cpu()[0])
        if flow.dtype == np.int16:  # the hardware's S10.5 fixed point
            flow = flow.astype(np.float32) / 32.0
        h, w = frames[0].shape[:2]
        fields = [cv2.resize(f.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) for f in flow]
        return fields[::-1] if backward else fields
