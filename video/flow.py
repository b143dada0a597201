"""Dense optical flow between two frames, at the reduced *analysis* size used for motion and tracking.

``dis`` (OpenCV DIS, the default) and ``farneback`` run on the CPU; ``nvof`` is DALI's
``fn.optical_flow`` (NVIDIA optical-flow hardware) and needs a GPU. Every method returns an
(h, w, 2) float32 field in analysis pixels: frame ``a`` at (x, y) moves to (x + fx, y + fy) in ``b``.
"""
from __future__ import annotations

import numpy as np

from ..errors import PretextgenError

METHODS = ("dis", "farneback", "nvof")


def analysis_scale(width: int, height: int, flow_size: int) -> float:
    """Source px per analysis px: the longer side is brought down to ``flow_size`` (never enlarged)."""
    return max(1.0, max(width, height) / flow_size)


def to_analysis(frame: np.ndarray, scale: float) -> np.ndarray:
    """Grayscale uint8 frame at the analysis size (area filter)."""
    import cv2

    h, w = frame.shape[:2]
    size = (max(8, int(round(w / scale))), max(8, int(round(h / scale))))
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA) if size != (w, h) else gray


class CpuFlow:
    """OpenCV flow; one object per process (DIS keeps its buffers between calls)."""

    def __init__(self, method: str = "dis"):
        import cv2

        if method not in ("dis", "farneback"):
            raise PretextgenError(f"flow method {method!r} is not a CPU method; use dis or farneback")
        self.method = method
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) if method == "dis" else None

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        import cv2

        if self._dis is not None:
            return self._dis.calc(a, b, None)
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)

    def pairs(self, frames: list[np.ndarray], backward: bool = False) -> list[np.ndarray]:
        """Flows frames[k] -> frames[k+1] (or frames[k+1] -> frames[k] when ``backward``)."""
        if backward:
            return [self(frames[k + 1], frames[k]) for k in range(len(frames) - 1)]
        return [self(frames[k], frames[k + 1]) for k in range(len(frames) - 1)]


def make_flow(method: str):
    """A callable object with ``pairs(frames, backward)`` for ``method``."""
    if method == "nvof":
        from .dali import NvofFlow

        return NvofFlow()
    return CpuFlow(method)


def magnitude(flow: np.ndarray) -> np.ndarray:
    return np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2)
