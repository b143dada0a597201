"""Worker processes for CPU work (scan, OpenCV backend in processes) and for build processes."""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
from contextlib import contextmanager


def mp_context():
    # forkserver: safe after DALI, OpenCV or torch have started threads in the parent.
    return mp.get_context("forkserver" if os.name == "posix" else "spawn")


@contextmanager
def _main_hidden():
    """New processes (and the forkserver) first import the parent's ``__main__`` again: a script
    that calls ``pretextgen.build`` without ``if __name__ == "__main__":`` would run its build in
    each of them, they would fail, and a pool would wait forever. Our processes need only
    pretextgen's modules, so ``__main__`` is kept from them while they start."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    file, spec = main.__dict__.pop("__file__", None), getattr(main, "__spec__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__spec__ = spec
        if file is not None:
            main.__file__ = file


def process_pool(workers: int, initializer=None, initargs=(), with_main: bool = False):
    """A pool of ``workers`` processes. ``with_main``: they import the parent's ``__main__``, for
    callers whose worker functions live there (the benchmark scripts); pretextgen's own do not."""
    if with_main:
        return mp_context().Pool(workers, initializer=initializer, initargs=initargs)
    with _main_hidden():
        return mp_context().Pool(workers, initializer=initializer, initargs=initargs)


def start_processes(procs) -> None:
    """``p.start()`` for each process, without the parent's ``__main__`` (see ``_main_hidden``)."""
    with _main_hidden():
        for p in procs:
            p.start()


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
