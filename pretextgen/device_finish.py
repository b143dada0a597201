"""Task finishes on whole batches of torch tensors, for samples that should not leave the GPU.

A task's ``finish`` (NumPy, one sample) is the definition of its samples. Where a torch version is
listed in ``TORCH_FINISH``, it gives the same samples from the same views (``tests/test_loader.py``
checks equality on CPU tensors, the ``gpu`` tests on CUDA): the loader's live GPU mode hands its
output to training, and DALI GPU builds run it before one device-to-host copy per batch, so that
neither the host's cores nor the copy carry the full crops.
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


def _gray3_torch(image):
    """``geometry.to_gray3`` in torch: BT.601 luma in float64 (as NumPy computes it), rint, x3."""
    import torch

    x = image.double()
    y = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
    y = torch.round(y).clamp(0, 255).to(torch.uint8)
    return y[..., None].expand(*y.shape, 3)


def rotation_finish_torch(p, views, plans) -> dict:
    """``tasks.rotation.finish`` for a whole batch of torch tensors (B, H, W, C): one rot90 per k."""
    import torch

    v = views[0]
    out = torch.empty_like(v)
    ks = torch.tensor([plan["k"] for plan in plans])
    for k in range(4):
        idx = torch.nonzero(ks == k).flatten().to(v.device)
        if len(idx):
            out[idx] = torch.rot90(v[idx], k, dims=(1, 2))
    return {"image": out}


def jigsaw_finish_torch(p, views, plans) -> dict:
    """``tasks.jigsaw.finish`` for a whole batch (B, crop, crop, C): gray, then every stored tile of
    every sample cut by one gather at its cell's offset, jitter, norm."""
    import torch

    crop, dev = views[0], views[0].device
    b, n, cell = crop.shape[0], p.grid * p.grid, p.crop // p.grid
    gray = torch.tensor([plan["gray"] for plan in plans], device=dev)
    if bool(gray.any()):
        crop = torch.where(gray[:, None, None, None], _gray3_torch(crop), crop)
    perm = torch.tensor([plan["permutation"] for plan in plans], device=dev)  # (B, n): stored j <- cell
    offsets = torch.tensor([plan["offsets"] for plan in plans], device=dev)  # (B, n cells, (dx, dy))
    d = torch.gather(offsets, 1, perm[..., None].expand(b, n, 2))  # offsets of the stored tiles' cells
    y0 = torch.div(perm, p.grid, rounding_mode="floor") * cell + d[..., 1]
    x0 = perm % p.grid * cell + d[..., 0]
    span = torch.arange(p.tile, device=dev)
    ys, xs = (y0[..., None] + span)[:, :, :, None], (x0[..., None] + span)[:, :, None, :]
    tiles = crop[torch.arange(b, device=dev)[:, None, None, None], ys, xs]  # (B, n, tile, tile, C)
    if plans[0]["jitter"] is not None:
        j = torch.tensor([plan["jitter"] for plan in plans], dtype=torch.float32, device=dev)  # (B, n, 3, 2)
        tiles = torch.round(tiles * j[:, :, None, None, :, 0] + j[:, :, None, None, :, 1]).clamp(0, 255).to(torch.uint8)
    if p.tile_norm:
        t = tiles.float()
        mean = t.mean(dim=(2, 3, 4), keepdim=True)
        std = t.std(dim=(2, 3, 4), keepdim=True, correction=0)
        tiles = ((t - mean) / std.clamp(min=1.0)).half()
    return {"tiles": tiles.contiguous()}


# Tasks whose live GPU samples never leave the device: finish(params, views (B, ...), plans) -> {field:
# (B, ...)} on whole batches (a handful of kernels per batch, no per-sample kernels). The other
# tasks' views are finished on the host.
TORCH_FINISH = {"rotation": rotation_finish_torch, "jigsaw": jigsaw_finish_torch}

# Tasks whose DALI GPU *builds* finish on the device by default (``DaliBackend(finish="auto")``).
# Measured on an H200, 500x375 JPEGs, batch 256, host path into NumPy (benchmarks/bench_gpu.py):
# jigsaw 3,542 samples/s with the device finish against 1,879 with NumPy's per-sample finish in one
# process, 12,340 against 11,054 in 8 processes; rotation 5,053 against 5,421 and 14,772 against
# 15,360, so rotation (one cv2.rotate per sample) stays on the host.
FASTER_ON_DEVICE = {"jigsaw"}
