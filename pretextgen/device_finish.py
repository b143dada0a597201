"""Torch helpers for task finishes on whole batches, for samples that should not leave the GPU.

A task's ``finish`` (NumPy, one sample) is the definition of its samples. Where a task declares a
torch twin (``Task.torch_finish``, in its own file), it gives the same samples from the same views
(``tests/test_loader.py`` checks equality on CPU tensors, the ``gpu`` tests on CUDA): the loader's
live GPU mode hands its output to training, and DALI GPU builds run it before one device-to-host
copy per batch, so that neither the host's cores nor the copy carry the full crops. Here: what such
twins share.
"""
from __future__ import annotations


def dali_to_torch(out):
    """A dense DALI batch as a torch tensor on the same device (CUDA for GPU outputs), copied there
    by DALI's plugin: DALI reuses its buffers at the next run."""
    import torch
    from nvidia.dali.plugin.pytorch import feed_ndarray, to_torch_type
    from nvidia.dali.tensors import TensorGPU

    t = out.as_tensor()
    device = f"cuda:{t.device_id()}" if isinstance(t, TensorGPU) else "cpu"
    dst = torch.empty(t.shape(), dtype=to_torch_type[t.dtype], device=device)
    feed_ndarray(t, dst, cuda_stream=torch.cuda.current_stream() if device != "cpu" else None)
    return dst


def gray3_torch(image):
    """``geometry.to_gray3`` in torch: BT.601 luma in float64 (as NumPy computes it), rint, x3."""
    import torch

    x = image.double()
    y = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
    y = torch.round(y).clamp(0, 255).to(torch.uint8)
    return y[..., None].expand(*y.shape, 3)
