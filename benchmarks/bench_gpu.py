"""GPU throughput: pretextgen's DALI GPU backend against a decode-only DALI pipeline over the same
JPEGs, in one process (the issue's goal: at least 90% of decode-only).

    python benchmarks/bench_gpu.py --make-jpegs /tmp/jpegs     # 500x375 JPEGs cut from scikit-image's photos
    python benchmarks/bench_gpu.py --jpegs DIR --samples 8192 --batch 256

Rates are steady-state (counted after the first batch; see SteadyRate); each task stops after
``--max-seconds``. Both sides read the files in the same Python callback and decode with nvJPEG
(``mixed``, ``hw_decoder_load`` alike); decode-only leaves images on the GPU, pretextgen plans
every sample, crops and resizes on the GPU and makes the fields that a build then encodes: with the
*host* finish it copies the views to the host and runs the task's NumPy ``finish``, with the
*device* finish (tasks with a ``Task.torch_finish``) it finishes whole batches on the GPU and
copies the fields. Host copies go into reused buffers, as in a build. The *live* rows are the loader's path for training: views
handed to torch through DALI's plugin and finished on whole batches on the device. With
``--processes P`` each host-path task also runs in P processes at once, each with its own pipeline
on the same GPU (``pretextgen build --processes``), and so does decode-only at the largest P; the
rate is all processes' steady items over one wall-clock span.
"""
from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path

import numpy as np

from pretextgen.backends import DaliBackend
from pretextgen.plan import plan_sample
from pretextgen.config import load_params as _load_params
from pretextgen.registry import get_task, list_tasks
from pretextgen.sources import default_source, list_files, read_file, scan


OVERRIDES: list[str] = []  # --set key=value, for every task (and in every benchmark process)


def load_params(t):
    return _load_params(t, overrides=OVERRIDES)


def make_jpegs(out: Path, n: int = 512, size=(500, 375)) -> Path:
    """Real-photo JPEGs of one size: random crops of scikit-image's colour photos, quality 90."""
    import cv2

    from pretextgen.sources import load_rgb

    root, files = default_source()
    good, _ = scan(root, files, min(size))
    photos = [load_rgb(root, s) for s in good if s.width >= size[0] and s.height >= size[1]]
    rng = np.random.default_rng(0)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = photos[i % len(photos)]
        x = rng.integers(0, img.shape[1] - size[0] + 1)
        y = rng.integers(0, img.shape[0] - size[1] + 1)
        crop = img[y : y + size[1], x : x + size[0]]
        cv2.imwrite(str(out / f"{i:05d}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return out


class SteadyRate:
    """Items/s after the first batch: pipeline construction, CUDA and nvJPEG start-up are left out
    of both sides alike (a build pays them once)."""

    def __init__(self):
        self.n, self.t0, self.t = 0, None, None

    def add(self, k: int) -> None:
        self.t = time.perf_counter()
        if self.t0 is None:
            self.t0 = self.t
        else:
            self.n += k

    def elapsed(self) -> float:
        return 0.0 if self.t0 is None else self.t - self.t0

    def rate(self) -> float:
        return self.n / max(self.elapsed(), 1e-9)


def decode_only(root: Path, paths: list[str], samples: int, batch: int, threads: int, load: float, device: str = "gpu",
                meter: SteadyRate | None = None, reader: bool = False) -> float:
    """Decode-only images/s. Files come from a Python callback, as pretextgen feeds its plans' files,
    or with ``reader`` from DALI's own ``fn.readers.file`` (C++ threads, no Python per batch): the
    fastest a DALI pipeline decodes these files, whatever feeds it."""
    from nvidia.dali import fn, pipeline_def, types

    order = [paths[i % len(paths)] for i in range(samples)]
    state = {"k": 0}

    def feed():
        k = state["k"]
        if k >= len(order):
            raise StopIteration
        state["k"] = k + batch
        return [read_file(os.path.join(root, p)) for p in order[k : k + batch]]  # as pretextgen reads them

    gpu = device == "gpu"

    @pipeline_def(batch_size=batch, num_threads=threads, device_id=0 if gpu else None, exec_dynamic=True,
                  prefetch_queue_depth=2)
    def graph():
        if reader:
            enc, _ = fn.readers.file(file_root=str(root), files=paths, name="files")
        else:
            enc = fn.external_source(source=feed, batch=True, dtype=types.UINT8)
        if not gpu:
            return fn.decoders.image(enc, device="cpu", output_type=types.RGB)
        return fn.decoders.image(enc, device="mixed", output_type=types.RGB, hw_decoder_load=load)

    pipe = graph()
    pipe.build()
    meter = meter or SteadyRate()
    steps = range(-(-samples // batch)) if reader else itertools.count()  # the callback ends with StopIteration
    for _ in steps:
        try:
            (out,) = pipe.run()
        except StopIteration:
            break
        meter.add(len(out))
    del pipe
    return meter.rate()


def count_steady(samples, batch: int, max_seconds: float, meter: SteadyRate) -> float:
    """Counts the samples an iterator yields into ``meter``, a batch at a time, for at most
    ``max_seconds`` after the first batch; returns the steady rate."""
    for k, _ in enumerate(samples):
        if k % batch == batch - 1:
            meter.add(batch)
            if meter.elapsed() > max_seconds:
                break
    return meter.rate()


def ours(task: str, root: Path, sources, samples: int, batch: int, threads: int, device: str = "gpu",
         max_seconds: float = 20.0, first: int = 0, meter: SteadyRate | None = None, finish: str = "host",
         load: float = 0.65, feed_ahead: bool | None = None) -> float:
    t = get_task(task)
    p = load_params(t)
    # transient: batches copied into reused host buffers, as a build does (samples valid until the next batch)
    backend = DaliBackend(t, p, root, device=device, batch_size=batch, threads=threads, encode=False,
                          finish=finish, hw_decoder_load=load, transient=True, feed_ahead=feed_ahead)
    items = (plan_sample(t, p, sources, 0, i, root) for i in range(first, first + samples))  # planning is timed too
    rate = count_steady(backend.run(items), batch, max_seconds, meter or SteadyRate())
    backend.close()
    return rate


def opencv_threads(task: str, root: Path, sources, samples: int, batch: int, workers: int,
                   max_seconds: float = 20.0) -> float:
    """The CPU alternative on the same machine: the OpenCV backend in ``workers`` threads (what
    ``auto`` picks without a GPU), steady rate over the same samples, counted per ``batch``."""
    from pretextgen.backends import OpenCVBackend

    t = get_task(task)
    p = load_params(t)
    items = (plan_sample(t, p, sources, 0, i, root) for i in range(samples))
    return count_steady(OpenCVBackend(t, p, root, workers=workers, encode=False).run(items), batch, max_seconds,
                        SteadyRate())


def live(task: str, root: Path, sources, samples: int, batch: int, threads: int, device: str = "gpu",
         max_seconds: float = 20.0, load: float = 0.65) -> float:
    """The loader's live path: DALI views handed to torch (no host copy on a GPU) and finished on
    whole batches by the task's ``torch_finish``; planning is timed too."""
    import torch

    from pretextgen.device_finish import dali_to_torch

    t = get_task(task)
    p = load_params(t)
    backend = DaliBackend(t, p, root, device=device, batch_size=batch, threads=threads, encode=False,
                          hw_decoder_load=load)
    items = (plan_sample(t, p, sources, 0, i, root) for i in range(samples))
    meter = SteadyRate()
    for chunk, outs in backend.run_views(items):
        fields = t.torch_finish(p, [dali_to_torch(o) for o in outs], [it.plan for it in chunk])
        if device == "gpu":
            torch.cuda.synchronize()
        meter.add(len(chunk))
        del fields
        if meter.elapsed() > max_seconds:
            break
    backend.close()
    return meter.rate()


def _ours_job(args):
    task, root, samples, batch, threads, device, max_seconds, part, finish, load, feed_ahead, overrides = args
    OVERRIDES[:] = overrides
    meter = SteadyRate()
    if task is None:  # decode-only, the same JPEGs
        files = list_files(root)
        decode_only(root, files, 2 * batch, batch, threads, load, device)  # warm-up
        decode_only(root, files, samples, batch, threads, load, device, meter=meter)
    else:
        t = get_task(task)
        sources, _ = scan(root, list_files(root), t.min_side(load_params(t)), 1)
        ours(task, root, sources, 2 * batch, batch, threads, device, finish=finish, load=load)  # warm-up
        # Each process makes its own stretch of sample indices, as build processes make their shards.
        ours(task, root, sources, samples, batch, threads, device, max_seconds, first=part * samples, meter=meter,
             finish=finish, load=load, feed_ahead=feed_ahead)
    return meter.n, meter.t0, meter.t


class Utilisation:
    """Polls the machine's CPU busy share (/proc/stat) and the GPU's utilisation (nvidia-smi) every
    0.25 s in a thread, so a rate can say which side was saturated during a given span."""

    def __init__(self):
        import threading

        self.samples: list = []  # (perf_counter, cpu busy jiffies, cpu total jiffies, gpu %)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    @staticmethod
    def _cpu():
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    @staticmethod
    def _gpu():
        import subprocess

        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=2).stdout
            return float(out.split()[0])
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return float("nan")

    def _poll(self):
        while not self._stop.is_set():
            busy, total = self._cpu()
            self.samples.append((time.perf_counter(), busy, total, self._gpu()))
            self._stop.wait(0.25)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def during(self, t0: float, t1: float) -> str:
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return "n/a"
        cpu = (inside[-1][1] - inside[0][1]) / max(inside[-1][2] - inside[0][2], 1)
        gpus = [s[3] for s in inside if s[3] == s[3]]  # nan: nvidia-smi gave nothing
        return f"CPU {100 * cpu:.0f}%, GPU " + (f"{np.mean(gpus):.0f}%" if gpus else "n/a")


def in_processes(task: str | None, root: Path, samples: int, batch: int, threads: int, device: str,
                 max_seconds: float, processes: int, finish: str = "host", load: float = 0.65,
                 feed_ahead: bool | None = None) -> tuple[float, str]:
    """Items/s of ``ours`` (or decode-only when ``task`` is None) in ``processes`` processes at once:
    all their steady items over one span, from the first process's first batch to the last one's end
    (perf_counter is CLOCK_MONOTONIC, one clock for all processes). Summing per-process rates would
    overstate it when warm-ups end at different times. Also returns the CPU and GPU utilisation
    during that span."""
    from pretextgen.parallel import process_pool

    jobs = [(task, root, samples, batch, threads, device, max_seconds, k, finish, load, feed_ahead, OVERRIDES)
            for k in range(processes)]
    with Utilisation() as use, process_pool(processes, with_main=True) as pool:
        runs = pool.map(_ours_job, jobs)
    t0, t1 = min(t0 for _, t0, _ in runs), max(t for _, _, t in runs)
    return sum(n for n, _, _ in runs) / max(t1 - t0, 1e-9), use.during(t0, t1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jpegs", help="folder of JPEGs")
    ap.add_argument("--make-jpegs", help="write 512 real-photo 500x375 JPEGs here and use them")
    ap.add_argument("--samples", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--hw-decoder-load", type=float, default=0.65)
    ap.add_argument("--tasks", nargs="*")
    ap.add_argument("--max-seconds", type=float, default=20.0, help="stop each task after this long")
    ap.add_argument("--device", default="gpu", help="cpu only to dry-run this script without a GPU")
    ap.add_argument("--processes", type=int, nargs="*", default=[],
                    help="also run the host path in this many processes at once (e.g. 2 4 8)")
    ap.add_argument("--finish", nargs="*", default=["host", "device"], choices=["host", "device"],
                    help="where the host path finishes samples: NumPy per sample, or the torch twin per batch "
                         "on the GPU (tasks with a Task.torch_finish)")
    ap.add_argument("--no-live", action="store_true", help="leave out the live (loader) rows")
    ap.add_argument("--only-processes", action="store_true",
                    help="leave out the one-process task rows: only the --processes rows (and decode-only in one "
                         "process, the ratios' base)")
    ap.add_argument("--opencv", action="store_true",
                    help="also run each task on the OpenCV backend in one thread per core (should auto pick it?)")
    ap.add_argument("--profile", action="store_true",
                    help="also profile one single-process host-path run per task: where the main thread's time goes")
    ap.add_argument("--feed-placement", action="store_true",
                    help="instead of the rows above: each task with DALI's feed made in the main thread against "
                         "ahead in a thread, side by side, in one process and in the largest --processes")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="task parameters for every task, as build --set (e.g. size=32: a host-bound run on CPUs)")
    args = ap.parse_args(argv)
    OVERRIDES[:] = args.set
    root = make_jpegs(Path(args.make_jpegs)) if args.make_jpegs else Path(args.jpegs)
    files = list_files(root)
    first = ["rotation", "jigsaw", "context"]  # the goal, measured first
    tasks = args.tasks or first + [n for n in list_tasks() if get_task(n).input == "image" and n not in first]
    load = args.hw_decoder_load
    decode_only(root, files, 2 * args.batch, args.batch, args.threads, load, args.device)  # warm-up
    base = decode_only(root, files, args.samples, args.batch, args.threads, load, args.device)
    print(f"{len(files)} JPEGs in {root}, batch {args.batch}, {args.samples} samples, hw_decoder_load {load}")
    print("\n| task | samples/s (DALI GPU) | decode-only img/s | ratio |\n|---|---:|---:|---:|")
    print(f"| decode only | | {base:,.0f} | 1.00 |", flush=True)
    decode_only(root, files, 2 * args.batch, args.batch, args.threads, load, args.device, reader=True)  # warm-up
    files_rate = decode_only(root, files, args.samples, args.batch, args.threads, load, args.device, reader=True)
    print(f"| decode only, files read by DALI (fn.readers.file) | | {files_rate:,.0f} | {files_rate / base:.2f} |",
          flush=True)
    for procs in args.processes[-1:]:  # the GPU's decode ceiling when several processes share it
        rate, use = in_processes(None, root, args.samples, args.batch, max(1, args.threads // procs), args.device,
                                 args.max_seconds, procs, load=load)
        print(f"| decode only, {procs} processes ({use}) | | {rate:,.0f} | {rate / base:.2f} |", flush=True)
    rows = [] if args.feed_placement else tasks  # --feed-placement: only its own rows
    for name in [n for n in rows if get_task(n).torch_finish is not None and not args.no_live]:
        t = get_task(name)
        sources, _ = scan(root, files, t.min_side(load_params(t)), 4)
        try:
            live(name, root, sources, 2 * args.batch, args.batch, args.threads, args.device, load=load)  # warm-up
            rate = live(name, root, sources, args.samples, args.batch, args.threads, args.device, args.max_seconds, load)
            print(f"| {name} (live: views to torch, batched finish on the device) | {rate:,.0f} | {base:,.0f} | "
                  f"{rate / base:.2f} |", flush=True)
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"| {name} (live) | failed: {type(e).__name__}: {str(e).splitlines()[0][:120]} | | |", flush=True)
    for name in rows:
        t = get_task(name)
        sources, _ = scan(root, files, t.min_side(load_params(t)), 4)
        for finish in [f for f in args.finish if f == "host" or t.torch_finish is not None]:
            label = f"{name}, {finish} finish"
            try:
                if not args.only_processes:
                    ours(name, root, sources, 2 * args.batch, args.batch, args.threads, args.device, finish=finish,
                         load=load)  # warm-up
                    rate = ours(name, root, sources, args.samples, args.batch, args.threads, args.device,
                                args.max_seconds, finish=finish, load=load)
                    print(f"| {label} | {rate:,.0f} | {base:,.0f} | {rate / base:.2f} |", flush=True)
                for procs in args.processes:
                    rate, use = in_processes(name, root, args.samples, args.batch, max(1, args.threads // procs),
                                             args.device, args.max_seconds, procs, finish, load)
                    print(f"| {label}, {procs} processes ({use}) | {rate:,.0f} | {base:,.0f} | {rate / base:.2f} |",
                          flush=True)
            except Exception as e:  # noqa: BLE001 - report and go on with the other tasks
                print(f"| {label} | failed: {type(e).__name__}: {str(e).splitlines()[0][:120]} | | |", flush=True)
        if args.opencv:
            from pretextgen.parallel import default_workers

            cores = default_workers()
            rate = opencv_threads(name, root, sources, args.samples, args.batch, cores, args.max_seconds)
            print(f"| {name}, OpenCV in {cores} threads (CPU only) | {rate:,.0f} | {base:,.0f} | {rate / base:.2f} |",
                  flush=True)
    if args.feed_placement:
        print("\n| task | feed in the main thread | feed ahead in a thread | ratio |\n|---|---:|---:|---:|")
    for name in tasks if args.feed_placement else []:
        feed_placement(name, root, files, args, load)
    for name in tasks if args.profile else []:
        profile_main_thread(name, root, files, args, load)


def feed_placement(name: str, root: Path, files, args, load: float) -> None:
    """Host finish: DALI's feed (plans, file reads, columns) made in the main thread against made one
    batch ahead in a thread (``DaliBackend(feed_ahead=...)``, the default on GPUs), alternating twice
    in one process, then once each in the largest ``--processes``. Prints samples/s (and, for one
    process, the main thread's CPU time per sample: its serial path)."""
    t = get_task(name)
    sources, _ = scan(root, files, t.min_side(load_params(t)), 4)
    got: dict = {False: [], True: []}
    ours(name, root, sources, 2 * args.batch, args.batch, args.threads, args.device, load=load)  # warm-up
    for _ in range(2):
        for ahead in got:
            meter, cpu0 = SteadyRate(), time.thread_time()
            rate = ours(name, root, sources, args.samples, args.batch, args.threads, args.device, args.max_seconds,
                        meter=meter, load=load, feed_ahead=ahead)
            got[ahead].append((rate, 1e6 * (time.thread_time() - cpu0) / max(meter.n + args.batch, 1)))
    inline, ahead = (max(r for r, _ in got[k]) for k in (False, True))
    cells = [f"{max(r for r, _ in v):,.0f} samples/s, main thread {min(c for _, c in v):.0f} us/sample"
             for v in got.values()]
    print(f"| {name}, 1 process | {cells[0]} | {cells[1]} | {ahead / inline:.2f}x |", flush=True)
    for procs in args.processes[-1:]:
        rates = [in_processes(name, root, args.samples, args.batch, max(1, args.threads // procs), args.device,
                              args.max_seconds, procs, load=load, feed_ahead=k) for k in (False, True)]
        print(f"| {name}, {procs} processes | {rates[0][0]:,.0f} samples/s ({rates[0][1]}) | {rates[1][0]:,.0f} "
              f"samples/s ({rates[1][1]}) | {rates[1][0] / rates[0][0]:.2f}x |", flush=True)


def profile_main_thread(name: str, root: Path, files, args, load: float) -> None:
    """cProfile of one host-path run (it sees only the main thread: planning, feeding DALI, waiting
    for its outputs, the host copy, waiting for the finish threads): the functions by own time."""
    import cProfile
    import io
    import pstats

    t = get_task(name)
    sources, _ = scan(root, files, t.min_side(load_params(t)), 4)
    finish = "auto"  # what a build picks (DaliBackend)
    ours(name, root, sources, 2 * args.batch, args.batch, args.threads, args.device, finish=finish, load=load)
    prof = cProfile.Profile()
    prof.enable()
    rate = ours(name, root, sources, args.samples, args.batch, args.threads, args.device, args.max_seconds,
                finish=finish, load=load)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    print(f"\nprofile: {name}, {finish} finish, one process, {rate:,.0f} samples/s under the profiler")
    print("\n".join(lines[lines.index(next(ln for ln in lines if "ncalls" in ln)):]), flush=True)


if __name__ == "__main__":
    main()
