"""The DALI graph shared by the crop-and-tile tasks: decode once, then one ROI resize per view.

Inputs come from a Python callback (``fn.external_source``, batch mode) as columns: encoded bytes,
then (roi_start, roi_end, size) per view, all in DALI's (H, W) order. No random op is used: every
number comes from the plan. On the GPU the JPEG decode is ``mixed`` (nvJPEG, hardware decoder for
``hw_decoder_load`` of the batch) and the resize runs on the GPU.
"""
from __future__ import annotations


def views_pipeline(feed, n_views: int, device: str, batch_size: int, threads: int, hw_decoder_load: float = 0.65):
    from nvidia.dali import fn, pipeline_def, types

    gpu = device == "gpu"

    @pipeline_def(batch_size=batch_size, num_threads=threads, device_id=0 if gpu else None,
                  exec_dynamic=True, prefetch_queue_depth=2)
    def graph():
        cols = fn.external_source(source=feed, num_outputs=1 + 3 * n_views, batch=True,
                                  dtype=[types.UINT8] + [types.FLOAT] * 3 * n_views)
        if gpu:
            image = fn.decoders.image(cols[0], device="mixed", output_type=types.RGB,
                                      hw_decoder_load=hw_decoder_load)
        else:
            image = fn.decoders.image(cols[0], device="cpu", output_type=types.RGB)
        outs = []
        for j in range(n_views):
            start, end, size = cols[1 + 3 * j : 4 + 3 * j]
            outs.append(fn.resize(image, roi_start=start, roi_end=end, size=size, antialias=True,
                                  interp_type=types.INTERP_LINEAR, dtype=types.UINT8))
        return tuple(outs)

    pipe = graph()
    pipe.build()
    return pipe
