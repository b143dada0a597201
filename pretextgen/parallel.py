"""Worker processes for CPU work (scan, OpenCV backend in processes) and for build processes; a
thread that works ahead of its consumer (``ahead``)."""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import sys
import threading
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


def ahead(iterable, depth: int = 1):
    """The items of ``iterable``, made in a background thread at most ``depth`` items ahead of the
    consumer: its work overlaps the consumer's waits (file reads and numpy release the GIL, and so
    does waiting for DALI). An error raised there is raised here, in order. Closing this generator
    stops the thread after the item it is making."""
    done, stop, made = object(), threading.Event(), queue.SimpleQueue()
    slots = threading.Semaphore(depth)  # one per item made and not yet taken: bounded memory

    def work():
        try:
            for x in iterable:
                made.put((x, None))
                while not slots.acquire(timeout=0.05):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
            made.put((done, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            made.put((done, e))

    slots.acquire()  # the first item is made without waiting
    thread = threading.Thread(target=work, name="pretextgen-ahead", daemon=True)
    thread.start()
    try:
        while True:
            x, err = made.get()
            if x is done:
                if err is not None:
                    raise err
                return
            slots.release()
            yield x
    finally:
        stop.set()
        thread.join()
