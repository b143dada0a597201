"""Worker processes for CPU work (scan, OpenCV backend)."""
from __future__ import annotations

import multiprocessing as mp
import os


def process_pool(workers: int, initializer=None, initargs=()):
    # forkserver: safe after DALI, OpenCV or torch have started threads in the parent.
    ctx = mp.get_context("forkserver" if os.name == "posix" else "spawn")
    return ctx.Pool(workers, initializer=initializer, initargs=initargs)


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
