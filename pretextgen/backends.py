"""Backends turn plans into samples. Each one computes only the plan's *views* (decode, crop,
resize); the task's ``finish`` (NumPy) does the rest identically everywhere, so backends can only
differ by decoding and interpolation.

- ``opencv``: OpenCV decode + resize in a pool of threads (the video backend: processes).
- ``dali``: one DALI graph (decode -> per-view ROI resize), on the GPU (``mixed`` nvJPEG decode,
  GPU resize) or the CPU (``device_id=None``); plans enter through ``fn.external_source``.

``auto`` picks DALI on the GPU when DALI sees one, else OpenCV in threads, faster than DALI-CPU
for every image task (its CPU ``fn.resize`` is the cost; BENCHMARKS.md). Backends register by
name (``register_backend``); the CLI's choices are the registered names.
"""
from __future__ import annotations

import glob
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import PretextgenError
from .geometry import dali_affine, jpeg_scale, render_view
from .parallel import ahead
from .plan import WorkItem
from .sources import Source, encoded_for_decoder, load_bgr, load_rgb


# ---------------------------------------------------------------- the registry of backends
_BACKENDS: dict[str, type] = {}


def register_backend(cls):
    """Register a backend class by its ``name``. A backend has ``name``, ``devices`` (those it runs
    on), ``tolerance`` (grey levels ``verify`` allows against the OpenCV reference), ``libraries()``
    (versions of the libraries whose arithmetic is in its pixels), ``default_processes(device,
    workers)``, and ``create(task, params, root, device, workers, batch_size, batch_key, encode,
    jpeg_scaling)``; its ``run(items)`` yields (item with ``executed`` set, output): the sample's
    fields, or what ``encode`` (the store's ``shards.FieldEncoder``, None: nothing) made of them."""
    if cls.name in _BACKENDS:
        raise ValueError(f"backend {cls.name!r} is registered twice")
    _BACKENDS[cls.name] = cls
    return cls


def list_backends() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: str):
    try:
        return _BACKENDS[name]
    except KeyError:
        raise PretextgenError(f"unknown backend {name!r}; choose one of: {', '.join(list_backends())}") from None


def _opencv_libraries() -> dict:
    import cv2

    return {"numpy": np.__version__, "opencv": cv2.__version__}


def gpu_count() -> int:
    if sys.platform.startswith("linux") and not (glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/dxg")):
        # No NVIDIA device node (nor WSL2's GPU bridge): no GPU, and no need to import DALI (a
        # noticeable part of every CPU build's start-up) to know it.
        return 0
    try:
        from nvidia.dali import backend

        return int(backend.GetCUDADeviceCount())
    except Exception:  # noqa: BLE001 - no driver, no DALI: no GPU for us
        return 0


def resolve(backend: str, device: str) -> tuple[str, str]:
    """Turn ``auto`` choices into a concrete (backend, device); errors say what is missing. ``auto``:
    DALI on the GPU when DALI sees one, else OpenCV in threads (faster than DALI-CPU on CPUs for
    every image task: BENCHMARKS.md)."""
    if backend != "auto":
        get_backend(backend)  # an unknown name lists the registered ones
    if device not in ("auto", "gpu", "cpu"):
        raise PretextgenError(f"--device must be auto, gpu or cpu, not {device!r}")
    if device == "auto":
        device = "gpu" if backend in ("auto", "dali") and gpu_count() > 0 else "cpu"
    if backend == "auto":
        backend = "dali" if device == "gpu" else "opencv"
    if device not in get_backend(backend).devices:
        others = [n for n in list_backends() if device in get_backend(n).devices]
        raise PretextgenError(f"the {backend} backend runs on {' and '.join(get_backend(backend).devices)} only; "
                              f"use --backend {' or '.join(others)} for --device {device}")
    if device == "gpu" and gpu_count() == 0:
        raise PretextgenError("--device gpu: DALI sees no CUDA GPU on this machine; use --device cpu")
    return backend, device


def reference_sample(task, params, image: np.ndarray, plan: dict, bgr: bool = False, scale: int = 1) -> dict:
    """The reference executor: OpenCV views + the task's finish. ``bgr``: ``image`` is
    ``sources.load_bgr``'s, and the views are turned to RGB once cut (the same bytes). ``scale``:
    ``image`` is the source decoded at 1/scale (``source_scale``)."""
    views = [render_view(image, v, scale) for v in plan["views"]]
    if bgr:
        import cv2

        views = [cv2.cvtColor(v, cv2.COLOR_BGR2RGB) for v in views]
    if task.view_post is not None:
        views = [task.view_post(v) for v in views]
    return task.finish(params, views, plan)


def source_scale(src: Source, plan: dict, jpeg_scaling: bool) -> int:
    """1/scale at which the OpenCV executor decodes ``src`` for ``plan``: ``geometry.jpeg_scale`` for
    plain JPEGs in builds with ``jpeg_scaling``, else 1. Stored in the sample's JSON when above 1."""
    if not jpeg_scaling or src.host_decode or src.format != "JPEG":
        return 1
    return jpeg_scale(src.width, src.height, plan["views"])


def execute_plan(task, params, root: Path, src: Source, plan: dict, scale: int = 1) -> dict:
    """One sample's fields by the OpenCV executor from its source file, decoded at 1/``scale``
    (``source_scale``; a stored sample's is its JSON's ``jpeg_scale``, 1 when absent). The
    definition the OpenCV backend's faster BGR path must match byte for byte (tested)."""
    if scale == 1:
        return reference_sample(task, params, load_rgb(root, src), plan)
    import cv2

    rgb = cv2.cvtColor(load_bgr(root, src, scale), cv2.COLOR_BGR2RGB)
    return reference_sample(task, params, rgb, plan, scale=scale)


# ---------------------------------------------------------------- OpenCV, in threads or processes
_WORKER: dict = {}  # a worker process's state; in-process runs pass their own dict


def _init_worker(task_name: str, params, root: str, encode, jpeg_scaling: bool = False, state: dict = _WORKER):
    import cv2

    from .registry import get_task

    cv2.setNumThreads(1)  # one thread or process per core already
    state.update(task=get_task(task_name), params=params, root=Path(root), encode=encode, jpeg_scaling=jpeg_scaling)


def _run_chunk(items: list[WorkItem], state: dict = _WORKER):
    t, p, root = state["task"], state["params"], state["root"]
    out = []
    for it in items:
        s = 1
        if it.source.host_decode:
            fields = reference_sample(t, p, load_rgb(root, it.source), it.plan)
        else:  # BGR: the views are turned to RGB once cut (the same bytes, cheaper)
            s = source_scale(it.source, it.plan, state["jpeg_scaling"])
            fields = reference_sample(t, p, load_bgr(root, it.source, s), it.plan, bgr=True, scale=s)
        out.append((state["encode"](fields) if state["encode"] else fields, s))
    return out


def executed(item: WorkItem, backend: str, device: str, jpeg_scale: int = 1) -> WorkItem:
    """``item`` with what made it: the backend, the device, and the JPEG scale where above 1."""
    record = {"backend": backend, "device": device, **({"jpeg_scale": int(jpeg_scale)} if jpeg_scale > 1 else {})}
    return replace(item, executed=record)


@register_backend
class OpenCVBackend:
    """``workers`` threads in this process (OpenCV's decode, resize and PNG encode release the GIL),
    or worker processes where ``threads`` is False (the video backend: decord readers per process).
    Threads are faster than processes for every image task: nothing is pickled (BENCHMARKS.md)."""

    name, device, devices, tolerance = "opencv", "cpu", ("cpu",), 0.0  # the reference: exact
    batched = False  # samples do not depend on --batch-size
    threads = True
    libraries = staticmethod(_opencv_libraries)
    # Worker functions (module-level, picklable); the video backend swaps in its own.
    init_fn, chunk_fn = staticmethod(_init_worker), staticmethod(_run_chunk)

    def __init__(self, task, params, root: Path, workers: int = 1, encode=None, chunk: int = 16,
                 jpeg_scaling: bool = True):
        """``encode``: the store's encoder (``shards.FieldEncoder``): yield the members it makes rather
        than the fields' arrays. ``jpeg_scaling``: decode large JPEGs at 1/2 to 1/64 where
        the views allow it (``source_scale``)."""
        self.task, self.params, self.root = task, params, Path(root)
        self.workers, self.encode, self.chunk = workers, encode or None, chunk
        self.jpeg_scaling = jpeg_scaling

    @classmethod
    def create(cls, task, params, root, device, workers, batch_size=64, batch_key=None, encode=None, jpeg_scaling=True):
        return cls(task, params, root, workers=workers, encode=encode, jpeg_scaling=jpeg_scaling)

    @staticmethod
    def default_processes(device: str, workers: int) -> int:
        return 1  # its threads use every core already

    def run(self, items: Iterable[WorkItem]) -> Iterator[tuple[WorkItem, object]]:
        """Yields (item with ``executed`` set, encoded members or fields) in the order of ``items``."""
        for item, (out, scale) in self._run(items):
            yield executed(item, self.name, self.device, scale), out

    def _run(self, items: Iterable[WorkItem]):
        chunks = _chunked(items, self.chunk)
        args = (self.task.name, self.params, str(self.root), self.encode, self.jpeg_scaling)
        depth = 4 * self.workers  # chunks in flight: bounded memory
        if self.workers <= 1 or self.threads:
            state: dict = {}
            self.init_fn(*args, state)
            if self.workers <= 1:
                for c in chunks:
                    yield from zip(c, self.chunk_fn(c, state))
                return
            with ThreadPoolExecutor(self.workers) as pool:
                yield from _in_order(lambda c: pool.submit(self.chunk_fn, c, state).result, chunks, depth)
            return
        from .parallel import process_pool

        with process_pool(self.workers, self.init_fn, args) as pool:
            yield from _in_order(lambda c: pool.apply_async(self.chunk_fn, (c,)).get, chunks, depth)

    def close(self):
        pass


def _in_order(submit, chunks, depth: int):
    """(item, result) pairs of every chunk in order, with at most ``depth`` chunks in flight;
    ``submit(chunk)`` starts one and returns a callable that waits for its results."""
    pending: deque = deque()
    for c in chunks:
        pending.append((c, submit(c)))
        if len(pending) >= depth:
            c0, wait = pending.popleft()
            yield from zip(c0, wait())
    while pending:
        c0, wait = pending.popleft()
        yield from zip(c0, wait())


def _chunked(items: Iterable, n: int, key=None):
    """Lists of up to ``n`` consecutive items; with ``key``, a list never holds two keys' items."""
    buf, last = [], None
    for it in items:
        if key is not None:
            k = key(it)
            if buf and k != last:
                yield buf
                buf = []
            last = k
        buf.append(it)
        if len(buf) == n:
            yield buf
            buf = []
    if buf:
        yield buf


# ---------------------------------------------------------------- DALI, CPU or GPU
def _dali_libraries() -> dict:
    import nvidia.dali

    return {**_opencv_libraries(), "dali": nvidia.dali.__version__}


@register_backend
class DaliBackend:
    # DALI's antialiased resize differs from OpenCV's area filter: verify compares after a light blur
    # and allows this many grey levels per piece (interpolation against real errors: BENCHMARKS.md).
    name, devices, tolerance = "dali", ("cpu", "gpu"), 2.5
    batched = True  # --batch-size is part of the build's identity (nvJPEG may split a batch by it)
    libraries = staticmethod(_dali_libraries)

    @classmethod
    def create(cls, task, params, root, device, workers, batch_size=64, batch_key=None, encode=None, jpeg_scaling=True):
        try:
            import nvidia.dali  # noqa: F401
        except ImportError:
            raise PretextgenError("--backend dali needs nvidia-dali-cuda130 (pip install nvidia-dali-cuda130)") from None
        return cls(task, params, root, device=device, batch_size=batch_size, threads=workers, encode=encode,
                   batch_key=batch_key)

    @staticmethod
    def default_processes(device: str, workers: int) -> int:
        """On a GPU one process per two worker threads, at most 8: one Python process cannot feed it
        (BENCHMARKS.md); on CPUs 1, DALI's threads use every core."""
        return max(1, min(8, workers // 2)) if device == "gpu" else 1

    def __init__(self, task, params, root: Path, device: str = "cpu", batch_size: int = 64,
                 threads: int = 2, encode=None, hw_decoder_load: float = 0.65, finish: str = "auto",
                 transient: bool | None = None, batch_key=None, feed_ahead: bool | None = None):
        """``finish``: "host" runs the task's NumPy ``finish`` per sample on the host; "device" runs its
        torch twin (``Task.torch_finish``, same samples) on whole batches where DALI's views
        are, then copies the finished batch to the host once; "auto" is "device" on a GPU for the
        tasks where that is faster (``Task.finish_on_device``).
        ``transient`` (default: ``encode``): batches are copied to the host into buffers reused from
        batch to batch, so the fields ``run`` yields may point into them and stay valid only until
        ``run`` is asked for the next batch's first sample; encoded members never point into them.
        Otherwise every batch gets new arrays.
        ``batch_key(item)``: a batch never mixes items of two keys. Builds key items by shard, so a
        sample's batch (and with it nvJPEG's choice of decoder for it on a GPU) depends on its shard
        and ``batch_size`` alone, not on which process makes the shard or whether it is resumed.
        ``feed_ahead`` (default: on a GPU): DALI's feed (plans drawn, files read, columns made) is
        made one batch ahead in a thread while this one waits for DALI: on a GPU one process's rate is
        bound by its main thread. On CPUs DALI's own threads fill the cores and a second Python
        thread only competes for the GIL (``bench_gpu.py --feed-placement``, BENCHMARKS.md)."""
        self.task, self.params, self.root, self.device = task, params, Path(root), device
        self.batch_size, self.threads, self.encode = batch_size, threads, encode or None
        self.hw_decoder_load, self.batch_key = hw_decoder_load, batch_key
        self.feed_ahead = device == "gpu" if feed_ahead is None else feed_ahead
        if finish == "auto":
            finish = "device" if device == "gpu" and task.finish_on_device else "host"
        if finish == "device" and task.torch_finish is None:
            raise ValueError(f"task {task.name!r} has no device finish (no Task.torch_finish)")
        self.finish = finish
        self.transient = self.encode is not None if transient is None else transient
        self._post = ThreadPoolExecutor(max(1, threads))
        if self.finish == "host":
            import cv2

            # The finishes' OpenCV calls already run in ``threads`` post threads, and with
            # ``build --processes`` in several processes: no thread pool of OpenCV's own inside each.
            cv2.setNumThreads(1)
        self._host = _ReusedHost(device)

    def _pipeline(self, n_views: int, feed, kinds=None):
        from .pipelines.views import views_pipeline

        return views_pipeline(feed, n_views, self.device, self.batch_size, self.threads, self.hw_decoder_load,
                              kinds=kinds, post=self.task.dali_view_post)

    def run(self, items: Iterable[WorkItem]) -> Iterator[tuple[WorkItem, object]]:
        t, p = self.task, self.params

        if self.finish == "device":
            from .device_finish import dali_to_torch

            finish_batch = t.torch_finish

        def post(it, got):  # got: the sample's views (host finish) or its fields (device finish)
            fields = got if self.finish == "device" else t.finish(p, got, it.plan)
            return self.encode(fields) if self.encode else fields

        for batch, outs in self.run_views(items):
            if self.finish == "device":
                # Finished where the views are, then one device-to-host copy per field and batch.
                done = finish_batch(p, [dali_to_torch(o) for o in outs], [it.plan for it in batch])
                if self.transient:
                    host = {name: self._host.from_torch(name, f) for name, f in done.items()}
                else:
                    host = {name: f.cpu().numpy() for name, f in done.items()}
                per_sample = [{name: f[k] for name, f in host.items()} for k in range(len(batch))]
                if not self.encode:
                    yield from zip((executed(it, self.name, self.device) for it in batch), per_sample)
                    continue
            else:
                # One device-to-host copy per view and batch; samples are then views into it.
                host = [self._host.from_dali(j, o) if self.transient else _as_numpy(o) for j, o in enumerate(outs)]
                per_sample = [[h[k] for h in host] for k in range(len(batch))]
            step = -(-len(batch) // self.threads)
            futs = [self._post.submit(lambda a, b: [post(batch[k], per_sample[k]) for k in range(a, b)],
                                      a, min(a + step, len(batch))) for a in range(0, len(batch), step)]
            results = (r for f in futs for r in f.result())
            yield from zip((executed(it, self.name, self.device) for it in batch), results)

    def run_views(self, items: Iterable[WorkItem]):
        """Yields (batch of items, DALI outputs: one TensorList per view) where the views stay (on the
        GPU for device="gpu"); valid until the next step. The loader's live GPU mode reads them."""
        items = iter(items)
        first = next(items, None)
        if first is None:
            return
        n_views = len(first.plan["views"])
        kinds = ["affine" if "affine" in v else "box" for v in first.plan["views"]]
        batches = _chunked(_prepend(first, items), self.batch_size, self.batch_key)
        handed: deque = deque()  # batches given to DALI, in order, awaiting outputs

        def columns(batch):
            enc = [encoded_for_decoder(self.root, it.source) for it in batch]
            cols = [enc]
            # Numeric columns go as one (B, ...) array each: DALI converts a list of B small arrays
            # one by one, in the main thread.
            for j in range(n_views):
                views = [it.plan["views"][j] for it in batch]
                sizes = np.array([v["size"] for v in views], np.float32)[:, ::-1]  # DALI order: (H, W)
                if kinds[j] == "affine":  # (matrix, size) columns; DALI's pixel centres sit at +0.5
                    cols += [np.stack([dali_affine(v["affine"]) for v in views]), np.ascontiguousarray(sizes)]
                    continue
                boxes = np.array([v["box"] for v in views], np.float32)  # (B, 4): x0, y0, x1, y1
                cols += [np.ascontiguousarray(boxes[:, 1::-1]), np.ascontiguousarray(boxes[:, :1:-1]),
                         np.ascontiguousarray(sizes)]
            return tuple(cols)

        prepared = ((batch, columns(batch)) for batch in batches)
        if self.feed_ahead:  # made while this thread waits for DALI and copies its outputs
            prepared = ahead(prepared)

        def feed():
            batch, cols = next(prepared)  # StopIteration ends DALI's epoch
            handed.append(batch)
            return cols

        pipe = self._pipeline(n_views, feed, kinds)
        try:
            while True:
                try:
                    outs = pipe.run()
                except StopIteration:
                    break
                yield handed.popleft(), outs
        finally:
            prepared.close()
            del pipe

    def close(self):
        self._post.shutdown()


class _ReusedHost:
    """Host copies of whole batches into buffers kept from batch to batch (pinned on a GPU): a new
    array per batch costs its page faults at every copy (BENCHMARKS.md)."""

    def __init__(self, device: str):
        self.device, self.bufs = device, {}

    def _buffer(self, key, shape, dtype, torch_dtype=None):
        buf = self.bufs.get(key)
        if buf is None or buf.shape[1:] != tuple(shape[1:]) or buf.shape[0] < shape[0] or buf.dtype != dtype:
            if torch_dtype is not None:
                import torch

                buf = torch.empty(tuple(shape), dtype=torch_dtype, pin_memory=self.device == "gpu")
            else:
                buf = np.empty(tuple(shape), dtype)
            self.bufs[key] = buf
        return buf[: shape[0]]

    def from_torch(self, key, t):
        """A torch batch (CUDA or CPU) as a NumPy view of this key's buffer."""
        buf = self._buffer(key, t.shape, t.dtype, t.dtype)
        buf.copy_(t)
        return buf.numpy()

    def from_dali(self, key, out):
        """A DALI output batch as a NumPy view of this key's buffer (a list of new arrays when its
        samples differ in shape)."""
        if not out.is_dense_tensor():
            return _as_numpy(out)
        if self.device == "gpu":
            from .device_finish import dali_to_torch

            return self.from_torch(key, dali_to_torch(out))
        a = np.asarray(out.as_tensor())
        buf = self._buffer(key, a.shape, a.dtype)
        np.copyto(buf, a)
        return buf


def _as_numpy(out):
    """A DALI output batch as one (B, ...) array when its samples share a shape, else a list."""
    out = out.as_cpu() if hasattr(out, "as_cpu") else out
    # Copies: DALI reuses its output buffers on the next run().
    if out.is_dense_tensor():
        return np.array(out.as_tensor(), copy=True)
    return [np.array(out[k], copy=True) for k in range(len(out))]


def _prepend(x, it):
    yield x
    yield from it


def make_backend(name: str, device: str, task, params, root: Path, workers: int, batch_size: int = 64,
                 encode=None, batch_key=None, jpeg_scaling: bool = True):
    """The registered backend ``name``, made for ``task`` (see ``register_backend``)."""
    return get_backend(name).create(task, params, root, device, workers, batch_size=batch_size, batch_key=batch_key,
                                    encode=encode, jpeg_scaling=jpeg_scaling)
