"""The DALI graph shared by the crop-and-tile tasks: decode once, then one ROI resize per view.

Inputs come from a Python callback (``fn.external_source``, batch mode) as columns: encoded bytes,
then (roi_start, roi_end, size) per view, all in DALI's (H, W) order. No random op is used: every
number comes from the plan. On the GPU the JPEG decode is ``mixed`` (nvJPEG, hardware decoder for
``hw_decoder_load`` of the batch) and the resize runs on the GPU.
"""
from __future__ import annotations


def views_pipeline(feed, n_views: int, device: str, batch_size: int, threads: int, hw_decoder_load: float = 0.65,
                   kinds=None, post=None):
    """``kinds[j]`` is "box" (columns roi_start, roi_end, size) or "affine" (columns matrix 2x3 in
    DALI's pixel-centre convention, size): an affine view is ``fn.warp_affine`` with the inverse map,
    bilinear, border clamped (OpenCV's BORDER_REPLICATE)."""
    from nvidia.dali import fn, pipeline_def, types

    gpu = device == "gpu"
    kinds = list(kinds or ["box"] * n_views)
    n_cols = sum(2 if k == "affine" else 3 for k in kinds)

    @pipeline_def(batch_size=batch_size, num_threads=threads, device_id=0 if gpu else None,
                  exec_dynamic=True, prefetch_queue_depth=2)
    def graph():
        cols = fn.external_source(source=feed, num_outputs=1 + n_cols, batch=True,
                                  dtype=[types.UINT8] + [types.FLOAT] * n_cols)
        if gpu:
            image = fn.decoders.image(cols[0], device="mixed", output_type=types.RGB,
                                      hw_decoder_load=hw_decoder_load)
        else:
            image = fn.decoders.image(cols[0], device="cpu", output_type=types.RGB)
        outs = []
        c = 1
        for kind in kinds:
            if kind == "affine":
                matrix, size = cols[c : c + 2]
                c += 2
                outs.append(fn.warp_affine(image, matrix=matrix, size=size, inverse_map=True,
                                           interp_type=types.INTERP_LINEAR, dtype=types.UINT8))
                continue
            start, end, size = cols[c : c + 3]
            c += 3
            outs.append(fn.resize(image, roi_start=start, roi_end=end, size=size, antialias=True,
                                  interp_type=types.INTERP_LINEAR, dtype=types.UINT8))
        if post is not None:  # a task's per-view conversion (sRGB -> Lab), on the same device
            outs = [post(o) for o in outs]
        return tuple(outs)

    pipe = graph()
    pipe.build()
    return pipe
