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


def map_chunks(fn, jobs: list, workers: int, progress=None) -> list:
    """``[x for job in jobs for x in fn(job)]``, in order, over ``workers`` processes when there is
    more than one job; ``progress.update`` gets the size of each chunk as it arrives."""
    out: list = []

    def take(r):
        out.extend(r)
        if progress:
            progress.update(len(r))

    if workers > 1 and len(jobs) > 1:
        with process_pool(workers) as pool:
            for r in pool.imap(fn, jobs):
                take(r)
    else:
        for job in jobs:
            take(fn(job))
    return out
