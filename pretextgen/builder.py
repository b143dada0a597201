"""``pretextgen build``: the orchestration of the three seams. It lists the sources through their
kind (``registry.source_kind``), writes the manifest, and has shards made by ``make_shards``, the one
code path of a build in this process, in N processes, or (next) on other machines: each sample is
planned from (seed, i) (``plan``), executed by a backend (``backends``) and stored (``shards``).
Resumable: complete shards are kept (sha256-checked), the rest redone.
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .version import __version__
from .backends import get_backend
from .config import load_params, params_to_dict
from .errors import PretextgenError
from .parallel import default_workers
from .plan import WorkItem
from .progress import Progress
from .registry import get_task, source_kind
from .shards import (PIXEL_FORMATS, SCHEMA_VERSION, FieldEncoder, file_sha256, read_manifest, sample_key,
                     sample_members, shard_name, write_json, write_shard)
from .sources import listing_digest

log = logging.getLogger("pretextgen")
DEFAULT_SHARD_BYTES = 256 * 2**20


@dataclass(frozen=True)
class BuildOptions:
    """How a build runs (the CLI's flags; these defaults are its defaults).

    ``processes`` > 1 splits the shards among that many processes, each with its own backend and
    ``workers // processes`` threads, for a GPU that one Python process cannot feed; None: the
    backend's ``default_processes``. Shards are the same bytes whatever the number: DALI batches
    never span two shards, so a sample's batch depends on its shard and ``batch_size`` alone (nvJPEG
    may split a batch between its decoders by the batch, so ``batch_size`` is part of the build's
    identity). ``pixels``: how the fields a task declares as PNG images are stored
    (``shards.PIXEL_FORMATS``). ``full_decode``: the OpenCV backend decodes every JPEG at full size
    (by default a JPEG at least twice as large as a sample's views need is decoded at 1/2 to 1/64:
    ``backends.source_scale``; a resumed build keeps what it started with)."""

    samples: int = 512
    seed: int = 0
    backend: str = "auto"
    device: str = "auto"
    config: object = None  # a YAML file of task parameters
    overrides: object = None  # {name: value} or ["name=value", ...]
    resume: bool = False
    workers: int | None = None  # CPU threads (image tasks) or processes (video tasks); None: all cores
    batch_size: int = 64
    shard_bytes: int = DEFAULT_SHARD_BYTES
    progress: bool | None = None
    processes: int | None = None
    pixels: str = "png"
    full_decode: bool = False

    def check(self) -> None:
        """One clear error for an option out of range, before any work."""
        if self.samples < 1:
            raise PretextgenError("--samples must be at least 1")
        if self.seed < 0:
            raise PretextgenError("--seed must be 0 or more (NumPy seeds are non-negative integers)")
        if self.batch_size < 1:
            raise PretextgenError("--batch-size must be at least 1")
        if self.shard_bytes <= 0:
            raise PretextgenError("--shard-mb must be above 0")
        if self.pixels not in PIXEL_FORMATS:
            raise PretextgenError(f"--pixels must be one of {', '.join(PIXEL_FORMATS)}, not {self.pixels!r}")
        if self.processes is not None and self.processes < 1:
            raise PretextgenError("--processes must be at least 1")
        if self.workers is not None and self.workers < 1:
            raise PretextgenError("--workers must be at least 1")


@dataclass(frozen=True)
class ShardJob:
    """What a process needs to make some of a build's shards (picklable)."""

    task: str
    params: object
    sources: object  # the kind's usable sources: images.ImageSet, video.build.VideoSetup
    out: Path
    seed: int
    samples: int
    per_shard: int
    backend: str
    device: str
    workers: int
    batch_size: int
    pixels: str
    jpeg_scaling: bool


def sample_meta(task, item: WorkItem, seed: int) -> dict:
    """A sample's JSON: provenance, what its backend executed (``WorkItem.executed``), its plan."""
    return {"task": task.name, "schema": SCHEMA_VERSION, "version": __version__, "index": item.index,
            "seed": seed, **item.executed, "source": item.source.path,
            "source_size": [item.source.width, item.source.height], **item.plan}


_ITEMSIZE = {"uint8": 1, "int8": 1, "uint16": 2, "int16": 2, "float16": 2, "int32": 4, "float32": 4, "int64": 8, "float64": 8}


def sample_bytes_bound(task, params) -> int:
    """An upper bound of one sample's size in a shard (raw pixels + encoder and tar overheads)."""
    total = 16 * 1024  # json, cls, tar headers
    for f in task.fields:
        shape = f.shape(params)
        # The widest dtype the field may have ("uint8 (float16 with tile_norm)" counts 2 bytes).
        item = max(n for name, n in _ITEMSIZE.items() if name in f.dtype) if any(n in f.dtype for n in _ITEMSIZE) else 8
        total += int(np.prod(shape)) * item + (shape[0] if shape else 0) + 1024
    return total


def _identity(m: dict) -> dict:
    keys = ("task", "params", "seed", "samples", "backend", "device", "source_digest", "samples_per_shard", "batch_size",
            "pixels")
    return {k: m.get(k, "png" if k == "pixels" else None) for k in keys}  # builds of 0.2.0 stored PNG


def shard_indices(shards, per_shard: int, samples: int):
    """The sample indices of ``shards``, in order."""
    return (i for s in shards for i in range(s * per_shard, min((s + 1) * per_shard, samples)))


def write_shards(task, runner, items, out: Path, per_shard: int, samples: int, seed: int, on_sample, on_shard) -> None:
    """Run ``items`` through ``runner``; write each shard once its last sample is made and call
    ``on_shard(number, record)``; ``on_sample()`` after every sample."""
    current: list = []
    hist: Counter = Counter()
    refused: Counter = Counter()
    for item, members in runner.run(items):
        meta = sample_meta(task, item, seed)
        current.append((sample_key(item.index), sample_members(members, meta)))
        if not task.label_is_plan_index:  # one class per plan: a histogram of ones says nothing
            hist[int(meta["label"])] += 1
        refused.update(r["reason"].split(":")[0] for r in meta.get("rejected", ()))
        on_sample()
        s = item.index // per_shard
        if item.index == min((s + 1) * per_shard, samples) - 1:
            rec = write_shard(out / shard_name(task.name, s), current)
            rec.update(number=s, first_index=s * per_shard,
                       label_histogram={str(k): v for k, v in sorted(hist.items())})
            if refused:
                rec["rejected_plans"] = dict(sorted(refused.items()))
            on_shard(s, rec)
            current, hist, refused = [], Counter(), Counter()


def make_shards(job: ShardJob, shards: list[int], on_sample, on_shard) -> None:
    """Make and write ``shards`` of the build ``job`` describes: plan, execute, store."""
    t = get_task(job.task)
    runner = job.sources.runner(t, job.params, job.backend, job.device, job.workers, job.batch_size,
                                FieldEncoder(t, job.pixels), batch_key=lambda item: item.index // job.per_shard,
                                jpeg_scaling=job.jpeg_scaling)
    items = (job.sources.plan(t, job.params, job.seed, i) for i in shard_indices(shards, job.per_shard, job.samples))
    try:
        write_shards(t, runner, items, job.out, job.per_shard, job.samples, job.seed, on_sample, on_shard)
    finally:
        runner.close()


def _build_part(job: ShardJob, shards: list[int], parent: int, queue) -> None:
    """``make_shards`` in a process of a ``processes > 1`` build, reporting ("samples", n),
    ("shard", number, record), then ("done",) or ("error", text) through ``queue``."""
    try:
        made = [0]

        def on_sample():
            # ProcessLookupError when the build was killed (kill -9): stop before writing more shards
            # that a --resume would write again.
            os.kill(parent, 0)
            made[0] += 1
            if made[0] == 64:
                queue.put(("samples", made[0]))
                made[0] = 0

        def on_shard(s, rec):
            queue.put(("samples", made[0]))
            made[0] = 0
            queue.put(("shard", s, rec))

        make_shards(job, shards, on_sample, on_shard)
        queue.put(("done",))
    except ProcessLookupError:
        pass
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises it
        queue.put(("error", f"{type(e).__name__}: {e}"))


def _run_processes(parts: list[tuple[ShardJob, list[int]]], on_sample, on_shard) -> None:
    """Run each (job, shards) in its own process (forkserver) and relay their reports until all are done."""
    import queue as queue_mod

    from .parallel import mp_context, start_processes

    ctx = mp_context()
    q = ctx.Queue()
    procs = [ctx.Process(target=_build_part, args=(job, shards, os.getpid(), q), daemon=True) for job, shards in parts]
    start_processes(procs)
    running = len(procs)
    try:
        while running:
            try:
                msg = q.get(timeout=1.0)
            except queue_mod.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise PretextgenError(f"a build process died (exit code {dead[0].exitcode}); "
                                          "rerun with --resume to continue") from None
                continue
            if msg[0] == "samples":
                on_sample(msg[1])
            elif msg[0] == "shard":
                on_shard(msg[1], msg[2])
            elif msg[0] == "done":
                running -= 1
            else:
                raise PretextgenError(f"a build process failed: {msg[1]}")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()


def build(task: str, out, source=None, options: BuildOptions | None = None, **option_values) -> dict:
    """Build ``options.samples`` samples of ``task`` from ``source`` (a folder; None: the task's
    kind's bundled default) into shards under ``out``; returns the manifest. Options come as a
    ``BuildOptions`` or as its fields by name (``samples=1000, backend="opencv"``).
    A build that fails before any shard is complete leaves the output folder as it was (removed if
    the build made it, emptied if it was empty): it never blocks the same command again."""
    options = dataclasses.replace(options or BuildOptions(), **option_values)
    out_path = Path(out)
    made = not out_path.exists()
    empty = made or (out_path.is_dir() and not any(out_path.iterdir()))
    try:
        return _build(task, out_path, source, options)
    except BaseException:
        if empty and out_path.is_dir() and not any(out_path.glob("*.tar")):
            if made:
                shutil.rmtree(out_path, ignore_errors=True)
            else:
                for p in out_path.iterdir():
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        raise


build.__signature__ = inspect.Signature(  # help(build) lists every option
    [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d) for n, d in
     (("task", inspect.Parameter.empty), ("out", inspect.Parameter.empty), ("source", None), ("options", None))]
    + [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
       for f in dataclasses.fields(BuildOptions)])


def _build(task: str, out: Path, source, o: BuildOptions) -> dict:
    t = get_task(task)
    kind = source_kind(t.input)
    params = load_params(t, o.config, o.overrides)
    o.check()
    if o.processes is not None and kind.max_processes is not None and o.processes > kind.max_processes:
        raise PretextgenError(f"--processes: task {task!r} reads {kind.noun}s, whose builds already use --workers "
                              "processes")
    workers = o.workers or default_workers()
    backend, device = kind.resolve(o.backend, o.device)
    if source is None:
        (root, files), label = kind.default(), kind.default_label
    else:
        root, label = Path(source), str(source)
        files = kind.list(root)
    if source is not None and out.resolve().is_relative_to(Path(root).resolve()):
        raise PretextgenError(f"--out {out} is inside --source {root}: its shards would be listed as sources "
                              "(and change the listing a --resume checks); choose an output folder outside it")
    old = None
    if out.exists() and any(out.iterdir()):
        if not o.resume:
            raise PretextgenError(f"{out} is not empty; pass --resume to continue the build there, or choose a new directory")
        if (out / "manifest.json").exists():
            old = read_manifest(out)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob("*.tmp"):
        tmp.unlink()

    t0 = time.perf_counter()
    usable = kind.prepare(t, params, root, files, out, workers, o.progress, label)
    per_shard = max(1, min(o.samples, o.shard_bytes // sample_bytes_bound(t, params)))
    n_shards = -(-o.samples // per_shard)
    manifest = {
        "task": t.name, "params": params_to_dict(params), "seed": o.seed, "samples": o.samples,
        "version": __version__, "schema": SCHEMA_VERSION, "backend": backend, "device": device,
        "libraries": get_backend(backend).libraries(),
        "batch_size": o.batch_size if get_backend(backend).batched else None,
        "source": label, **({"source_path": str(Path(root).resolve())} if source is not None else {}),
        "source_files": len(files), "source_digest": listing_digest(root, files),
        "sources_used": len(usable.sources), "skipped": usable.skipped, "samples_per_shard": per_shard,
        "num_classes": -(-o.samples // t.samples_per_plan(params)) if t.label_is_plan_index else t.num_classes(params),
        "pixels": o.pixels, "fields": t.doc_fields(o.pixels) + ["cls", "json"],
        "jpeg_scaling": kind.jpeg_scaling(backend, o.full_decode),
        "shards": [], "label_histogram": {}, "complete": False,
    }
    if t.prepare is not None:
        manifest.update(t.prepare(params, out))
    manifest.update(usable.manifest_extra)
    kept: dict[int, dict] = {}
    if old is not None:
        # A resumed build decodes as it started (builds of 0.2.0 decoded every JPEG at full size).
        manifest["jpeg_scaling"] = bool(old.get("jpeg_scaling", False))
        if _identity(old) != _identity(manifest):
            diff = [k for k in _identity(manifest) if _identity(old)[k] != _identity(manifest)[k]]
            raise PretextgenError(f"--resume: {out} was built with different settings ({', '.join(diff)}); "
                                  "use the same command or a new directory")
        for rec in old.get("shards", []):
            p = out / rec["name"]
            if p.exists() and file_sha256(p) == rec["sha256"]:
                kept[rec["number"]] = rec
        log.info("resuming: %d of %d shards complete", len(kept), n_shards)
    write_json(out / "manifest.json", {**manifest, "shards": [kept[k] for k in sorted(kept)]})

    todo = [s for s in range(n_shards) if s not in kept]
    bar = Progress(o.samples, f"{t.name} ({backend}/{device})", "samples", o.progress)
    bar.update(sum(r["samples"] for r in kept.values()))
    records = dict(kept)

    def on_shard(s, rec):
        records[s] = rec
        write_json(out / "manifest.json", {**manifest, "shards": [records[k] for k in sorted(records)]})

    processes = o.processes or get_backend(backend).default_processes(device, workers)
    processes = min(processes, kind.max_processes or processes, len(todo))
    job = ShardJob(t.name, params, usable, out, o.seed, o.samples, per_shard, backend, device, workers, o.batch_size,
                   o.pixels, manifest["jpeg_scaling"])
    try:
        if processes > 1:
            job = dataclasses.replace(job, workers=max(1, workers // processes))
            _run_processes([(job, todo[k::processes]) for k in range(processes)], bar.update, on_shard)
        else:
            make_shards(job, todo, bar.update, on_shard)
    finally:
        bar.close()
    total: Counter = Counter()
    refused: Counter = Counter()
    for rec in records.values():
        total.update({int(k): v for k, v in rec["label_histogram"].items()})
        refused.update(rec.get("rejected_plans", {}))
    manifest["shards"] = [records[k] for k in sorted(records)]
    manifest["label_histogram"] = {str(k): total[k] for k in sorted(total)}
    if refused:  # plans drawn again because they were not worth a sample, by reason
        manifest["rejected_plans"] = dict(sorted(refused.items()))
    manifest["complete"] = True
    write_json(out / "manifest.json", manifest)
    manifest["_seconds"] = time.perf_counter() - t0  # not stored: runs must stay byte-identical
    return manifest
