"""sRGB -> CIE Lab inside a DALI graph, on the GPU or the CPU (DALI's colour conversion knows RGB,
BGR, GRAY and YCbCr only).

The steps of ``pretextgen.lab.srgb_to_lab``, each a DALI operator that runs on either device:
``fn.lookup_table`` (the 256 linearised 8-bit codes), ``fn.coord_transform`` (a 3x3 matrix on the
channel axis: RGB -> XYZ / white, then f(XYZ) -> Lab) and arithmetic operators for the CIE cube
root with its linear toe (``t > eps`` is a 0/1 mask, so both branches are blended without a
conditional). Float32 throughout; the test states the largest difference from skimage's rgb2lab.
"""
from __future__ import annotations

import numpy as np

from ..lab import CIE_EPSILON, CIE_SLOPE, LAB_FROM_F, LAB_OFFSET, LINEAR_LUT, XYZ_OVER_WHITE


def lab_from_rgb(rgb):
    """A DALI node of uint8 HWC sRGB (CPU or GPU) -> a float32 HWC Lab node on the same device."""
    from nvidia.dali import fn, math, types

    lin = fn.lookup_table(rgb, keys=list(range(256)), values=LINEAR_LUT.astype(np.float32).tolist(),
                          dtype=types.FLOAT, default_value=0.0)
    t = fn.coord_transform(lin, M=XYZ_OVER_WHITE.astype(np.float32).ravel().tolist(), dtype=types.FLOAT)
    cube = t > CIE_EPSILON
    f = cube * math.cbrt(t) + (1 - cube) * (CIE_SLOPE * t + 16.0 / 116.0)
    return fn.coord_transform(f, M=LAB_FROM_F.astype(np.float32).ravel().tolist(),
                              T=LAB_OFFSET.astype(np.float32).tolist(), dtype=types.FLOAT)


def lab_pipeline(images, device: str = "cpu", threads: int = 2):
    """A built DALI pipeline that converts the list ``images`` (uint8 HWC arrays, one batch) to Lab
    on ``device``; ``pipe.run()`` returns the batch. Used by the tests and the GPU check."""
    from nvidia.dali import fn, pipeline_def, types

    gpu = device == "gpu"

    @pipeline_def(batch_size=len(images), num_threads=threads, device_id=0 if gpu else None, exec_dynamic=True)
    def graph():
        x = fn.external_source(source=lambda: list(images), batch=True, dtype=types.UINT8, layout="HWC")
        return lab_from_rgb(x.gpu() if gpu else x)

    pipe = graph()
    pipe.build()
    return pipe


def lab_batch(images, device: str = "cpu") -> list[np.ndarray]:
    """Lab of each uint8 image computed by DALI on ``device`` (host float32 arrays)."""
    pipe = lab_pipeline(images, device)
    (out,) = pipe.run()
    out = out.as_cpu() if hasattr(out, "as_cpu") else out
    return [np.array(out[k]) for k in range(len(images))]
